"""Simulated OCPP chargers, for demos, end-to-end tests and load (`python manage.py simulate`).

Entry point: `run_fleet(FleetConfig(...))` -> FleetSummary. The flow (boot, heartbeats, sessions, answering
the CSMS) is protocol-independent (charger.py); each OCPP version brings its client (charger_v16.py).
"""

from stations.ocpp.simulator.charger import PROTOCOLS, SimulatedCharger
from stations.ocpp.simulator.config import ChargerConfig, FleetConfig
from stations.ocpp.simulator.fleet import run_fleet
from stations.ocpp.simulator.summary import ChargerResult, FleetSummary, SessionRecord

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
