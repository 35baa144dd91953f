"""Frozen value types returned by station services (no ORM objects cross into the async OCPP loop), and the
outcomes they report: what a committed report changed, mapped to what follows it in cpms/ocpp/effects.py."""

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class StationAuth:
    """What the handshake needs to know about a station."""

    station_id: int
    identity: str
    organisation_id: int
    registration_status: str
    security_profile: int
    password_hash: str
    site_id: int | None = None
    # A password sent to the charger whose answer is not committed yet (credentials.station_password_check).
    pending_password_hash: str = ""
    # The highest security profile it connected with: it is never accepted lower (transport_security).
    security_profile_seen: int = 0


@dataclass(frozen=True, slots=True)
class ConnectorStatusReport:
    """A status notification in version-neutral form. evse_id None = the whole station."""

    evse_id: int | None
    connector_id: int | None
    status: str
    error_code: str
    info: str
    vendor_id: str
    vendor_error_code: str
    occurred_at: datetime
    received_at: datetime


@dataclass(frozen=True, slots=True)
class StationInfo:
    vendor: str
    model: str
    serial_number: str = ""
    firmware_version: str = ""
    iccid: str = ""
    imsi: str = ""
    meter_type: str = ""
    meter_serial_number: str = ""


@dataclass(frozen=True, slots=True)
class StationBooted:
    """The station booted and is Accepted (a Pending or Rejected one gets nothing until it is)."""

    station_id: int


@dataclass(frozen=True, slots=True)
class StationConnected:
    station_id: int
    at: datetime


@dataclass(frozen=True, slots=True)
class StationDisconnected:
    """The station's current connection closed (not one that a newer connection had replaced)."""

    station_id: int
    at: datetime


@dataclass(frozen=True, slots=True)
class StatusReported:
    """A connector (or the whole station) reported a status, stored; repeats included."""

    station_id: int
    report: ConnectorStatusReport


@dataclass(frozen=True, slots=True)
class IncidentOpened:
    """A report opened a fault incident: its alert is due."""

    station_id: int
    incident_id: int


StationOutcome = StationBooted | StationConnected | StationDisconnected | StatusReported | IncidentOpened


@dataclass(frozen=True, slots=True)
class BootResult:
    """`outcomes`: (StationBooted,) when the station is Accepted."""

    status: str
    interval_s: int
    current_time: datetime
    outcomes: tuple[StationOutcome, ...] = ()
