"""A simulated charger's connectors: their status, availability, reservation and running session."""

import asyncio
import datetime as dt
from dataclasses import dataclass, field

from cpms.simulator.meter import EnergyMeter, EvSession
from cpms.simulator.summary import SessionRecord


@dataclass
class ActiveSession:
    record: SessionRecord
    ev: EvSession
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: str = "Local"

    def request_stop(self, reason: str) -> None:
        if not self.stop.is_set():
            self.stop_reason = reason
            self.stop.set()


@dataclass(frozen=True)
class Reservation:
    """A connector held for one id token until `expires_at` (1.6 ReserveNow, 2.0.1 H01)."""

    reservation_id: int
    id_tag: str
    expires_at: dt.datetime


@dataclass
class ConnectorState:
    connector_id: int
    meter: EnergyMeter
    status: str = "Available"
    operative: bool = True
    # Set by ChangeAvailability while a session runs ("Scheduled"): applied when the session ends.
    scheduled_operative: bool | None = None
    # A RemoteStart was accepted for this connector and its session is about to begin.
    claimed: bool = False
    session: ActiveSession | None = None
    reservation: Reservation | None = None

    @property
    def free(self) -> bool:
        """Nobody uses or holds it: it can be reserved, or used by anyone."""
        return self.usable_by(None)

    def usable_by(self, id_tag: str | None) -> bool:
        """A session for `id_tag` may start here (a reserved connector only for its token)."""
        if not self.operative or self.claimed or self.session is not None:
            return False
        return self.reservation is None or (id_tag is not None and self.reservation.id_tag == id_tag)

    def idle_status(self) -> str:
        if not self.operative:
            return "Unavailable"
        return "Reserved" if self.reservation is not None else "Available"
