"""The part of a simulated charger that its protocol clients call while answering a CSMS call (remote
start and stop, reservations, reset, unlock, availability, triggered messages): mixed into SimulatedCharger
(charger.py), whose state it reads and changes."""

import asyncio
import datetime as dt
from collections.abc import Coroutine
from typing import Any

from cpms.simulator.connectors import ActiveSession, ConnectorState, Reservation
from cpms.simulator.meter import Sample, parse_time, utc_now
from cpms.simulator.protocol import ProtocolClient
from cpms.simulator.summary import SessionRecord


class CsmsRequestsMixin:
    # Kept and implemented by SimulatedCharger (charger.py).
    connectors: dict[int, ConnectorState]
    station_status: str
    client: ProtocolClient | None
    _reboot: asyncio.Event
    _connector_freed: asyncio.Event

    @property
    def connected_client(self) -> ProtocolClient:
        """The client of the connection in progress: calls to the CSMS are made while connected only."""
        if self.client is None:
            raise RuntimeError("the charger is not connected")
        return self.client

    def spawn(self, coro: Coroutine[Any, Any, Any], *, session: bool = False) -> asyncio.Task:
        raise NotImplementedError

    async def run_session(
        self, connector: ConnectorState, *, id_tag: str, remote: bool, remote_start_id: int | None = None
    ) -> SessionRecord:
        raise NotImplementedError

    async def _set_status(self, connector: ConnectorState, status: str) -> None:
        raise NotImplementedError

    # --- called by protocol clients on CSMS requests --------------------------------------------
    # These run inside the handler of a CSMS call: they decide and change state synchronously, and
    # start any calls of our own with spawn(), never awaiting them (the reply must go out first).

    def session_by_transaction(self, transaction_id: str) -> ActiveSession | None:
        for connector in self.connectors.values():
            if connector.session is not None and connector.session.record.transaction_id == transaction_id:
                return connector.session
        return None

    def transaction_start(self, connector_id: int) -> dt.datetime | None:
        """When the session on `connector_id` started (a Relative charging schedule starts then)."""
        connector = self.connectors.get(connector_id)
        if connector is None or connector.session is None:
            return None
        return parse_time(connector.session.record.started_at)

    def remote_start_claim(self, connector_id: int | None, id_tag: str) -> ConnectorState | None:
        """Pick (and claim) the connector for a RemoteStart; None means Rejected. Without a connector,
        one reserved for `id_tag` comes first."""
        if self._reboot.is_set():
            return None
        if connector_id is not None:
            connector = self.connectors.get(connector_id)
            candidates = [connector] if connector is not None else []
        else:
            candidates = sorted(
                self.connectors.values(),
                key=lambda c: c.reservation is None or c.reservation.id_tag != id_tag,
            )
        for connector in candidates:
            if connector.usable_by(id_tag):
                connector.claimed = True
                return connector
        return None

    def remote_start_begin(
        self, connector: ConnectorState, id_tag: str, remote_start_id: int | None = None
    ) -> None:
        self.spawn(
            self.run_session(connector, id_tag=id_tag, remote=True, remote_start_id=remote_start_id),
            session=True,
        )

    def remote_stop(self, transaction_id: str) -> bool:
        session = self.session_by_transaction(transaction_id)
        if session is None or session.stop.is_set():
            return False
        session.request_stop("Remote")
        return True

    def reserve(
        self, *, reservation_id: int, connector_id: int | None, id_tag: str, expires_at: dt.datetime
    ) -> tuple[str, ConnectorState | None]:
        """ReserveNow: ("Accepted", the connector), else ("Occupied" | "Unavailable" | "Rejected", None).

        `connector_id` None: any connector (2.0.1 without evseId; the simulator holds the first free one).
        A reservation with the id of an existing one replaces it (OCPP 1.6 5.13). After "Accepted" the
        caller starts `reservation_begin` (status Reserved, then expiry)."""
        previous = next(
            (
                c
                for c in self.connectors.values()
                if c.reservation and c.reservation.reservation_id == reservation_id
            ),
            None,
        )
        held = previous.reservation if previous is not None else None
        if previous is not None:
            previous.reservation = None
        if connector_id is not None:
            connector = self.connectors.get(connector_id)
            candidates = [connector] if connector is not None else []
        else:
            candidates = list(self.connectors.values())
        status = "Rejected"
        if candidates:
            status = "Unavailable" if all(not c.operative for c in candidates) else "Occupied"
        for connector in candidates:
            if connector.free:
                connector.reservation = Reservation(reservation_id, id_tag, expires_at)
                return "Accepted", connector
        if previous is not None:
            previous.reservation = held
        return status, None

    async def reservation_begin(self, connector: ConnectorState) -> None:
        """After an accepted ReserveNow: status Reserved, then the expiry."""
        reservation = connector.reservation
        if reservation is None:
            return
        if connector.session is None and not connector.claimed:
            await self._set_status(connector, connector.idle_status())
        await self._reservation_expiry(connector, reservation)

    async def _reservation_expiry(self, connector: ConnectorState, reservation: Reservation) -> None:
        # Bounded by the connection: the task ends with it, and the next connection starts a new one.
        await asyncio.sleep(max(0.0, (reservation.expires_at - utc_now()).total_seconds()))
        if connector.reservation is not reservation:
            return  # used, cancelled or replaced meanwhile
        connector.reservation = None
        self._connector_freed.set()
        await self.connected_client.reservation_ended(reservation.reservation_id)
        if (
            connector.session is None
            and not connector.claimed
            and connector.status != connector.idle_status()
        ):
            await self._set_status(connector, connector.idle_status())

    def cancel_reservation(self, reservation_id: int) -> ConnectorState | None:
        """CancelReservation: the connector it held (the caller sends its status), None: no such one."""
        for connector in self.connectors.values():
            if connector.reservation is not None and connector.reservation.reservation_id == reservation_id:
                connector.reservation = None
                self._connector_freed.set()
                return connector
        return None

    def request_reboot(self, kind: str) -> None:
        """Reset: stop every session gracefully (reason SoftReset/HardReset), then reconnect and boot."""
        for connector in self.connectors.values():
            if connector.session is not None:
                connector.session.request_stop(f"{kind}Reset")
        self._reboot.set()

    def unlock(self, connector_id: int) -> bool:
        """UnlockConnector: a running session on it is stopped first (OCPP 1.6 5.18). False: no such connector."""
        connector = self.connectors.get(connector_id)
        if connector is None:
            return False
        if connector.session is not None:
            connector.session.request_stop("UnlockCommand")
        return True

    def change_availability(self, connector_id: int, operative: bool) -> str | None:
        """ "Accepted", "Scheduled" (a session runs: applied when it ends) or None (no such connector).
        After "Accepted", the caller sends the new statuses with availability_notify()."""
        if connector_id == 0:
            targets = list(self.connectors.values())
        elif connector_id in self.connectors:
            targets = [self.connectors[connector_id]]
        else:
            return None
        scheduled = False
        for connector in targets:
            if connector.session is not None or connector.claimed:
                connector.scheduled_operative = operative
                scheduled = True
            else:
                connector.operative = operative
        if connector_id == 0:
            self.station_status = "Available" if operative else "Unavailable"
        return "Scheduled" if scheduled else "Accepted"

    async def availability_notify(self, connector_id: int) -> None:
        if connector_id == 0:
            await self.connected_client.status_notification(connector_id=0, status=self.station_status)
        for connector in self.connectors.values():
            in_scope = connector_id in (0, connector.connector_id)
            if in_scope and connector.session is None and connector.status != connector.idle_status():
                await self._set_status(connector, connector.idle_status())

    async def send_status(self, connector_id: int | None) -> None:
        """Triggered StatusNotification: the current status of one connector (0: the station) or all."""
        if connector_id in (None, 0):
            await self.connected_client.status_notification(connector_id=0, status=self.station_status)
        for connector in self.connectors.values():
            if connector_id in (None, connector.connector_id):
                await self.connected_client.status_notification(
                    connector_id=connector.connector_id, status=connector.status
                )

    async def send_meter_values(self, connector_id: int | None) -> None:
        """Triggered MeterValues: a reading (context Trigger) of one connector or all."""
        for connector in self.connectors.values():
            if connector_id not in (None, 0, connector.connector_id):
                continue
            session = connector.session
            if session is not None and session.record.transaction_id is not None:
                samples = [session.ev.sample("Trigger")]
                transaction_id = session.record.transaction_id
            else:
                # An idle connector: the register only.
                samples = [
                    Sample(timestamp=utc_now(), context="Trigger", energy_wh=connector.meter.register_wh)
                ]
                transaction_id = None
            await self.connected_client.meter_values(
                connector_id=connector.connector_id, transaction_id=transaction_id, samples=samples
            )
