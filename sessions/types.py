"""Version-neutral inputs and results of the session services, and the outcomes they report.

An outcome (SessionOpened, SessionEnded) says what a committed report changed; the OCPP layer maps each one to
what follows it (billing, energy, ...) in one place, cpms/ocpp/effects.py.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """The answer to "may this token charge?" (1.6 IdTagInfo, 2.0.1 IdTokenInfo)."""

    status: str
    expires_at: datetime | None = None
    group_value: str | None = None
    group_type: str | None = None
    known: bool = True


@dataclass(frozen=True, slots=True)
class Sample:
    """One sampled value as the charger sent it."""

    timestamp: datetime
    value: Decimal | None
    measurand: str = "Energy.Active.Import.Register"
    phase: str = ""
    location: str = ""
    unit: str = ""
    context: str = ""
    signed_data: str = ""
    # The charger's timestamp as sent when it was outside the accepted window (docs/reliability.md case 45):
    # then `timestamp` is our receive time. Empty when `timestamp` is the charger's.
    charger_timestamp: str = ""


@dataclass(frozen=True, slots=True)
class StartRequest:
    station_id: int
    evse_id: int
    connector_id: int
    id_tag: str
    meter_start_wh: int | None
    started_at: datetime
    received_at: datetime
    reservation_id: int | None = None
    remote_start_id: int | None = None
    # The charger's own transaction id (2.0.1); None means we issue one (1.6).
    transaction_id: str | None = None
    offline: bool = False
    # The charger's timestamp as sent when it was outside the accepted window: `started_at` is then
    # our receive time (docs/reliability.md case 45).
    charger_started_at: str = ""


@dataclass(frozen=True, slots=True)
class SessionOpened:
    """The report opened this session (committed)."""

    session_id: int
    station_id: int


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The report ended this session (committed). `repeated`: the session had already ended (a redelivered or
    late end, a duplicate stop): nothing that follows an end may happen twice, but a 2.0.1 answer still
    carries the final cost."""

    session_id: int
    station_id: int
    repeated: bool = False


SessionOutcome = SessionOpened | SessionEnded


@dataclass(frozen=True, slots=True)
class StartResult:
    """`outcomes`: (SessionOpened,) when this start opened the session, () for a start re-sent."""

    session_id: int
    transaction_id: str
    token: TokenInfo
    outcomes: tuple[SessionOutcome, ...] = ()


@dataclass(frozen=True, slots=True)
class StopRequest:
    station_id: int
    transaction_id: str
    meter_stop_wh: int | None
    stopped_at: datetime
    received_at: datetime
    reason: str = ""
    id_tag: str = ""
    samples: tuple[Sample, ...] = ()
    # As StartRequest.charger_started_at, for `stopped_at`.
    charger_stopped_at: str = ""


@dataclass(frozen=True, slots=True)
class StopResult:
    """`outcomes`: SessionEnded, `repeated` for a duplicate stop; () for a stop of an unknown transaction."""

    session_id: int | None
    token: TokenInfo | None
    outcomes: tuple[SessionOutcome, ...] = ()


@dataclass(frozen=True, slots=True)
class TransactionEventRequest:
    """A 2.0.1 TransactionEvent in neutral form."""

    station_id: int
    transaction_id: str
    seq_no: int
    event_type: str  # Started | Updated | Ended
    trigger_reason: str
    timestamp: datetime
    received_at: datetime
    payload: dict[str, Any]
    offline: bool = False
    evse_id: int | None = None
    connector_id: int | None = None
    id_tag: str = ""
    samples: tuple[Sample, ...] = ()
    charging_state: str = ""
    stopped_reason: str = ""
    remote_start_id: int | None = None
    reservation_id: int | None = None
    # As StartRequest.charger_started_at, for `timestamp`.
    charger_timestamp: str = ""


@dataclass(frozen=True, slots=True)
class TransactionEventResult:
    """`outcomes`: SessionOpened when this event created the session; SessionEnded for every Ended event
    (`repeated` unless this one completed the session)."""

    session_id: int
    token: TokenInfo | None
    duplicate: bool
    outcomes: tuple[SessionOutcome, ...] = ()
