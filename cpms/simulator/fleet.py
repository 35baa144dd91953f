"""N simulated chargers at once, in one event loop."""

import asyncio
import time

from cpms.simulator.charger import PROTOCOLS, SimulatedCharger
from cpms.simulator.config import MIXED, FleetConfig
from cpms.simulator.summary import FleetSummary


async def run_fleet(config: FleetConfig) -> FleetSummary:
    """Run every charger of `config` to the end and summarise. Never raises for a charger's failure:
    refusals, CALLERRORs and disconnects are in the summary."""
    if config.protocol not in PROTOCOLS and config.protocol != MIXED:
        supported = ", ".join([*PROTOCOLS, MIXED])
        raise ValueError(f"Unsupported protocol {config.protocol!r}; supported: {supported}")
    identities = config.identity_list()
    if len(set(identities)) != len(identities):
        raise ValueError("Identities must be unique: two chargers with one identity replace each other.")
    chargers = [
        SimulatedCharger(config.charger(identity, index)) for index, identity in enumerate(identities)
    ]
    slots = asyncio.Semaphore(max(1, config.max_concurrent_handshakes))
    started = time.monotonic()
    results = await asyncio.gather(*(charger.run(handshake_slots=slots) for charger in chargers))
    return FleetSummary(
        url=config.url, protocol=config.protocol, chargers=list(results), elapsed_s=time.monotonic() - started
    )
