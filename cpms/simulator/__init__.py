"""Simulated OCPP chargers, for demos, end-to-end tests and load (`python manage.py simulate`).

Entry point: `run_fleet(FleetConfig(...))` -> FleetSummary. The flow (boot, heartbeats, sessions,
reservations, answering the CSMS) is protocol-independent (charger.py); each OCPP version brings its client
(charger_v16.py with csms_commands_v16.py; charger_v201.py with device_model_v201.py and
csms_commands_v201.py). Together they answer every CSMS-initiated action of `cpms.ocpp_wire.actions` with a
valid result, so the simulator can be the charger in end-to-end tests of remote commands.

What the answers imply is shared by both versions: file transfers (transfers.py: firmware downloads by
HTTP GET, log uploads by HTTP PUT, recorded in ChargerResult.transfers), charging profiles and composite
schedules (smart_charging.py), the local authorization list (local_list.py) and certificates
(certificates.py).
"""

from cpms.simulator.charger import PROTOCOLS, SimulatedCharger
from cpms.simulator.config import ChargerConfig, FleetConfig
from cpms.simulator.fleet import run_fleet
from cpms.simulator.summary import ChargerResult, FleetSummary, SessionRecord

__all__ = [
    "PROTOCOLS",
    "ChargerConfig",
    "ChargerResult",
    "FleetConfig",
    "FleetSummary",
    "SessionRecord",
    "SimulatedCharger",
    "run_fleet",
]
