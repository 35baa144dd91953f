"""The per-connection OCPP endpoint: routes a charger's frames to handlers and correlates our calls.

This is our own `route_message` rather than `ocpp.charge_point.ChargePoint`'s: the package swaps
NotImplemented/NotSupported, accepts numeric message ids, drops unparsable frames silently and validates
with jsonschema at ~0.5 ms per message (docs/performance.md#json-parsing-and-schema-validation). We keep its
JSON schemas (cpms.ocpp_wire.schemas) and its action enums, and use its ChargePoint on the charger side (the
simulator).

One ChargePoint lives as long as one WebSocket. Channels delivers one message per connection at a time, so
a handler must never await a CSMS->charger call of the same connection (the reply could not be read);
`call()` is for other tasks (remote commands).
"""

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from cpms.ocpp import drill_hook, framing
from cpms.ocpp.errors import ErrorKind, OcppError
from cpms.ocpp.message_log import message_log
from cpms.ocpp_wire import schemas
from cpms.ocpp_wire.redaction import request_redacted
from stations.enums import MessageDirection, RegistrationStatus

logger = logging.getLogger(__name__)

# Recent CALL ids and our answers, per connection: a re-sent CALL (same id) is answered again with the
# stored answer and never processed twice (docs/reliability.md case 14). A charger has one CALL in flight at a
# time (OCPP-J), so what it re-sends is its last CALL, or one of the last few across a reconnect; the sessions'
# services recognise an older start or stop sent again by its content. Kept short: this is held for every
# connected charger: 64 Heartbeat answers took 18 KiB per connection (tracemalloc), 8 take 2.4 KiB (issue 13).
RECENT_CALLS = 8
# last_seen_at is written at most this often per station outside of Heartbeat (a write per message
# would double the database work of the message loop).
SEEN_WRITE_INTERVAL_S = 60


def _in_worker_thread(func, /, **kwargs) -> Awaitable:
    return database_sync_to_async(func, thread_sensitive=False)(**kwargs)


# Handler-level tests swap this for an inline runner so they can run inside the test's transaction.
_db_runner = _in_worker_thread


def run_db(func, /, **kwargs) -> Awaitable:
    """Run a service in a worker thread with its own database connection (one transaction inside)."""
    return _db_runner(func, **kwargs)


@dataclass
class StationContext:
    """What a connection knows about its station; mutable where the station's state changes by OCPP."""

    station_id: int
    identity: str
    organisation_id: int
    registration_status: str
    # As at the handshake: the portal's live status goes to this site's group (a station moved to another
    # site while connected is published to its old site until it reconnects).
    site_id: int | None = None


@dataclass(frozen=True, slots=True)
class Request:
    station: StationContext
    payload: dict
    unique_id: str
    received_at: datetime
    # The connection's OCPP version (ChargePoint.version): what follows a report may differ (cpms.ocpp.effects).
    version: str = ""


Handler = Callable[[Request], Awaitable[dict]]


class ChargePoint:
    version: ClassVar[str]
    error_codes: ClassVar[dict[ErrorKind, str]]
    # Every action the version defines, either direction: a known action we do not take from a charger
    # is NotSupported, an unknown one NotImplemented (OCPP-J 1.6 4.2.3 / 2.0.1 Part 4 4.3).
    known_actions: ClassVar[frozenset[str]]
    handlers: ClassVar[dict[str, Handler]]
    boot_action: ClassVar[str] = "BootNotification"

    def __init__(self, *, station: StationContext, send: Callable[[str], Awaitable[None]]):
        self.station = station
        self._send = send
        self._recent: OrderedDict[str, str] = OrderedDict()
        self._pending: dict[str, tuple[str, asyncio.Future]] = {}
        self._call_lock = asyncio.Lock()
        self._seen_written = 0.0
        self._closed = False

    # --- incoming -------------------------------------------------------------------------------
    async def route_message(self, raw: str) -> None:
        received_at = timezone.now()
        try:
            message = framing.parse(raw)
        except framing.FrameError as exc:
            self._log(MessageDirection.IN, 0, exc.unique_id, "", raw)
            logger.info("%s: bad frame: %s", self.station.identity, exc.error.description)
            if exc.answer:
                await self._reply(self._error_frame(exc.unique_id, exc.error), exc.unique_id, "")
            return

        if isinstance(message, framing.Call):
            self._log(MessageDirection.IN, framing.CALL, message.unique_id, message.action, raw)
            cached = self._recent.get(message.unique_id)
            if cached is not None:
                logger.info(
                    "%s: duplicate CALL id %s answered again", self.station.identity, message.unique_id
                )
                await self._reply(cached, message.unique_id, message.action)
                return
            if drill_hook.ARMED:
                drill_hook.reached("received", message.action)
            reply = await self._handle_call(message, received_at)
            self._remember(message.unique_id, reply)
            if drill_hook.ARMED:
                drill_hook.reached("committed", message.action)
            await self._reply(reply, message.unique_id, message.action)
            if drill_hook.ARMED:
                drill_hook.reached("answered", message.action)
            await self._maybe_touch(received_at)
        else:
            self._handle_response(message, raw)

    async def _handle_call(self, call: framing.Call, received_at: datetime) -> str:
        try:
            handler = self.handlers.get(call.action)
            if handler is None:
                kind = (
                    ErrorKind.NOT_SUPPORTED
                    if call.action in self.known_actions
                    else ErrorKind.NOT_IMPLEMENTED
                )
                raise OcppError(kind, f"{call.action} is not accepted from a charging station")
            if (
                call.action != self.boot_action
                and self.station.registration_status != RegistrationStatus.ACCEPTED
            ):
                # B02.FR.09 / B03.FR.07: until accepted, only BootNotification.
                raise OcppError(
                    ErrorKind.SECURITY,
                    f"Station is {self.station.registration_status}: BootNotification first",
                )
            schemas.validate(self.version, schemas.request_schema(self.version, call.action), call.payload)
            result = await handler(
                Request(self.station, call.payload, call.unique_id, received_at, self.version)
            )
            if settings.OCPP_VALIDATE_RESPONSES:
                schemas.validate(self.version, schemas.response_schema(call.action), result)
            return framing.call_result(call.unique_id, result)
        except OcppError as exc:
            return self._error_frame(call.unique_id, exc)
        except Exception:
            # Database down, a bug: the charger gets InternalError and retries; nothing is acknowledged
            # that was not committed.
            logger.exception("%s: handler for %s failed", self.station.identity, call.action)
            return self._error_frame(
                call.unique_id, OcppError(ErrorKind.INTERNAL, "Internal error; retry later")
            )

    def _error_frame(self, unique_id: str, error: OcppError) -> str:
        return framing.call_error(unique_id, self.error_codes[error.kind], error.description, error.details)

    def _remember(self, unique_id: str, reply: str) -> None:
        self._recent[unique_id] = reply
        if len(self._recent) > RECENT_CALLS:
            self._recent.popitem(last=False)

    async def _reply(self, frame: str, unique_id: str, action: str) -> None:
        self._log(MessageDirection.OUT, int(frame[1]), unique_id, action, frame)
        await self._send(frame)

    async def _maybe_touch(self, at: datetime) -> None:
        from cpms.ocpp import seen

        now = at.timestamp()
        if now - self._seen_written >= SEEN_WRITE_INTERVAL_S:
            self._seen_written = now
            await seen.mark(self.station.station_id, at)

    def _log(self, direction: str, message_type: int, unique_id: str, action: str, payload: str) -> None:
        message_log.record(
            station_id=self.station.station_id,
            identity=self.station.identity,
            direction=direction,
            message_type=message_type,
            unique_id=unique_id,
            action=action,
            payload=payload,
        )

    # --- outgoing (CSMS -> charger) -------------------------------------------------------------
    async def call(
        self, action: str, payload: dict, *, timeout: float | None = None, unique_id: str | None = None
    ) -> dict:
        """Send a CALL and wait for its answer. Raises OcppError for a CALLERROR, TimeoutError on timeout,
        ConnectionError when the connection closes first.

        One outstanding call per connection (OCPP-J: a sender waits for the answer before the next CALL);
        the timeout counts from now, the wait for our turn included.
        """
        timeout = settings.OCPP_CALL_TIMEOUT_S if timeout is None else timeout
        async with asyncio.timeout(timeout), self._call_lock:
            if self._closed:
                raise ConnectionError("charger disconnected")
            unique_id = unique_id or str(uuid.uuid4())
            future: asyncio.Future = asyncio.get_running_loop().create_future()
            self._pending[unique_id] = (action, future)
            try:
                frame = framing.call(unique_id, action, payload)
                shown = request_redacted(action, payload)
                logged = frame if shown is payload else framing.call(unique_id, action, shown)
                self._log(MessageDirection.OUT, framing.CALL, unique_id, action, logged)
                await self._send(frame)
                return await future
            finally:
                self._pending.pop(unique_id, None)

    def _handle_response(self, message: framing.CallResult | framing.CallError, raw: str) -> None:
        pending = self._pending.get(message.unique_id)
        kind = framing.CALL_RESULT if isinstance(message, framing.CallResult) else framing.CALL_ERROR
        self._log(MessageDirection.IN, kind, message.unique_id, pending[0] if pending else "", raw)
        if pending is None:
            # docs/reliability.md case 15: an answer to nothing we asked is logged and ignored.
            logger.info("%s: answer for unknown call id %s ignored", self.station.identity, message.unique_id)
            return
        _action, future = pending
        if future.done():
            return
        if isinstance(message, framing.CallResult):
            future.set_result(message.payload)
        else:
            future.set_exception(CallErrorReceived(message.error_code, message.description, message.details))

    def close(self) -> None:
        self._closed = True
        for _action, future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("charger disconnected"))
        self._pending.clear()


class CallErrorReceived(Exception):
    def __init__(self, code: str, description: str, details):
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details
