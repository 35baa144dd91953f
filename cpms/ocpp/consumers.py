"""The OCPP-J WebSocket endpoint: `ws(s)://HOST/ocpp/<identity>`
(docs/contract.md#chargers-ocpp-j-over-websocket).

Handshake: subprotocol negotiation, station lookup (404 unknown), HTTP Basic auth (401) or a client
certificate, the station's security profile (403 below it: stations.services.transport_security), then the
version's ChargePoint takes every frame. The consumer joins a channel-layer group per station so any
process can reach the charger, and a newer connection of the same identity replaces an older one.

The handshake and the first answers never wait on the channel layer (docs/reliability.md case 43). The
channel-layer work of a connection, its *link* (the per-connection channel, the station's group, the
"superseded" broadcast), runs in the background once the charger is accepted: each call bounded by
LAYER_TIMEOUT_S and retried with a growing pause, logged by `layer_health` (an ERROR when the layer fails, a
WARNING when a link has waited LAYER_SLOW_S; nothing while it is merely busy). Until the membership is in
place, the process's `command_poller` delivers the charger's commands from the database (the outbox), and
`command_claim` keeps a command from being sent twice when the word of the layer comes too.
"""

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import unquote_to_bytes

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings
from django.utils import timezone

from cpms.ocpp import effects
from cpms.ocpp.chargepoint import CallErrorReceived, ChargePoint, StationContext, run_db
from cpms.ocpp.errors import OcppError
from cpms.ocpp.throttle import MessageRate, handshake_throttle
from cpms.ocpp.transport import station_group
from cpms.ocpp.v16.handlers import V16ChargePoint
from cpms.ocpp.v21.handlers import V21ChargePoint
from cpms.ocpp.v201.handlers import V201ChargePoint
from cpms.ocpp_wire import actions
from cpms.ocpp_wire.redaction import request_redacted
from sessions.services.command_answers import answer_hook
from stations.enums import CommandStatus, SecurityEventKind
from stations.services.commands import (
    DISCONNECTED,
    command_claim,
    command_finish,
    command_pending_for,
)
from stations.services.credentials import basic_auth_parse, station_password_check, station_password_promote
from stations.services.ocpp import (
    security_event_record,
    station_auth_get,
    station_auto_register,
    station_connected,
    station_disconnected,
)
from stations.services.transport_security import (
    Transport,
    profile_required,
    station_certificate_check,
    station_profile_seen_raise,
    transport_of,
)
from stations.types import StationAuth

logger = logging.getLogger(__name__)

# Subprotocol -> ChargePoint class. The charger's list is in its order of preference: we take the first
# one we speak (docs/contract.md#subprotocols).
CHARGE_POINTS: dict[str, type[ChargePoint]] = {
    "ocpp1.6": V16ChargePoint,
    "ocpp2.0.1": V201ChargePoint,
    "ocpp2.1": V21ChargePoint,
}
MAX_IDENTITY_LENGTH = 48
# What each security profile a connection reaches is (stations.services.transport_security).
PROFILE_MEANS = {
    0: "no authentication",
    1: "HTTP Basic over plain ws://",
    2: "HTTP Basic over TLS",
    3: "TLS client certificate",
}
# The body of a refused handshake: what was wrong, never why in detail (that is in the security log).
REFUSAL_TEXT = {
    401: "Authentication required",
    403: "Security profile not met: see the operator",
}
# One channel-layer call of a connection's link (new_channel, group_add, the superseded broadcast) may take
# this long before it is given up (a layer that hangs) and tried again, after a pause that starts at
# LAYER_RETRY_S and doubles up to LAYER_RETRY_MAX_S (jittered: a storm's links do not retry in step). A call
# that is merely slow is waited for (OcppConsumer._layer_retry).
LAYER_TIMEOUT_S = 60.0
LAYER_RETRY_S = 1.0
LAYER_RETRY_MAX_S = 60.0
# A link still not in place after this long is worth a WARNING (at most one per LAYER_SLOW_S per process).
LAYER_SLOW_S = 30.0
# A one-shot call (group_discard at the close, the word to a command's issuer): not retried, since the
# database covers both (the issuer re-reads the record; a channel that left is unsubscribed anyway).
LAYER_CALL_TIMEOUT_S = 3.0


def negotiate(offered: list[str]) -> str | None:
    for protocol in offered:
        if protocol in CHARGE_POINTS:
            return protocol
    return None


def identity_parse(scope) -> tuple[str, str]:
    """The identity in the charger's URL, and what is wrong with it ("" when nothing).

    Taken from the raw path when the server gives it (Daphne and uvicorn do): their decoded `path` cannot
    tell an encoded slash (`CP%2F1`) from a separator and replaces invalid UTF-8 with U+FFFD.
    docs/contract.md#url-and-identity: the identity is URL-decoded, 1-48 characters; identity_validate never
    registers one with a '/' or a non-printable character, so such an identity is unknown
    (docs/reliability.md case 46).
    """
    identity = scope["url_route"]["kwargs"].get("identity") or ""
    raw_path = scope.get("raw_path")
    if raw_path:
        _, found, segment = bytes(raw_path).split(b"?", 1)[0].partition(b"/ocpp/")
        segment = segment if found else b""
        if segment.endswith(b"/"):
            segment = segment[:-1]  # the router's optional trailing slash (`/ocpp/CP1/`)
        try:
            identity = unquote_to_bytes(segment).decode("utf-8")
        except UnicodeDecodeError:
            return segment.decode("ascii", "backslashreplace"), "not UTF-8"
    if "/" in identity:
        return identity, "contains '/'"
    if not identity:
        return identity, "empty"
    if len(identity) > MAX_IDENTITY_LENGTH:
        return identity, f"longer than {MAX_IDENTITY_LENGTH} characters"
    if not identity.isprintable():
        return identity, "control characters"
    return identity, ""


def identity_shown(identity: str) -> str:
    """For logs and the security log: control characters escaped (a NUL would fail PostgreSQL), and
    bounded."""
    if not identity.isprintable():
        identity = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in identity)
    return identity[:100]


async def refuse(scope, send, status: int, reason: str) -> None:
    """Refuse a handshake with an HTTP status (ASGI WebSocket Denial Response), or a plain close (403) on a
    server without that extension."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        if status == 401:
            headers.append((b"www-authenticate", b'Basic realm="OCPP"'))
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": reason.encode()})
    else:
        await send({"type": "websocket.close"})


class LayerHealth:
    """What this process says about its channel layer, said once rather than per connection (a storm is
    thousands of connections): an ERROR with the traceback when a call fails, and nothing more until a call
    succeeds again (then an INFO); a WARNING when some link has waited LAYER_SLOW_S, at most once per
    LAYER_SLOW_S. A layer that is merely busy (calls that take long but succeed) logs nothing before that:
    the chargers are served meanwhile and their commands go by the database."""

    def __init__(self):
        self.failing = False
        self._slow_said_at: float | None = None

    def ok(self) -> None:
        if self.failing:
            self.failing = False
            logger.info("channel layer answering again")

    def failed(self, what: str, station: str, exc: BaseException) -> None:
        if self.failing:
            logger.debug("channel layer still failing (%s for %s): %r", what, station, exc)
            return
        self.failing = True
        logger.error(
            "channel layer failed (%s for %s); the chargers are served and their commands go by the "
            "database until it answers again",
            what,
            station,
            exc_info=exc,
        )

    def slow(self, what: str, station: str, waited_s: float) -> None:
        if waited_s < LAYER_SLOW_S:
            return
        now = asyncio.get_running_loop().time()
        if self._slow_said_at is not None and now - self._slow_said_at < LAYER_SLOW_S:
            return
        self._slow_said_at = now
        logger.warning(
            "channel layer slow: %s for %s still not done after %.0f s (retrying); commands reach such "
            "chargers through the database meanwhile",
            what,
            station,
            waited_s,
        )


layer_health = LayerHealth()


class CommandPoller:
    """Per server process: the stations whose connection this process holds, and a loop that sends
    them the pending commands the channel layer did not bring (see stations.services.commands): a lost
    word, no layer at all, and the window before a new connection's group membership is in place."""

    def __init__(self):
        self.consumers: dict[int, OcppConsumer] = {}
        self._task: asyncio.Task | None = None

    def hold(self, station_id: int, consumer: "OcppConsumer") -> None:
        """`consumer` holds the station from now on. An older connection of the same station in this
        process is closed at once (docs/reliability.md case 6), without waiting for the channel layer's
        broadcast, which only other processes need."""
        loop = asyncio.get_running_loop()
        previous = self.consumers.get(station_id)
        self.consumers[station_id] = consumer
        if previous is not None and previous is not consumer and previous.loop is loop:
            previous.supersede()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._run())

    def release(self, station_id: int, consumer: "OcppConsumer") -> None:
        if self.consumers.get(station_id) is consumer:
            del self.consumers[station_id]

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(settings.OCPP_COMMAND_POLL_S)
            if not self.consumers:
                continue
            try:
                pending = await run_db(command_pending_for, station_ids=list(self.consumers))
            except Exception:
                logger.exception("looking for pending commands failed")
                continue
            for command_id, station_id in pending:
                consumer = self.consumers.get(station_id)
                if consumer is not None:
                    consumer.command_start(command_id, reply_to=None)


command_poller = CommandPoller()


class OcppConsumer(AsyncWebsocketConsumer):
    cp: ChargePoint | None = None
    connection_id: str = ""
    channel_name: str = ""
    group: str = ""
    identity: str = ""  # for the logs, set once accepted
    _closing: bool = False
    _superseded: bool = False

    async def __call__(self, scope, receive, send):
        """channels' AsyncConsumer.__call__, without waiting on the channel layer (docs/reliability.md cases
        32 and 43). Channels awaits `new_channel()` before dispatching `websocket.connect`: with a busy Redis
        every handshake would wait behind the pub/sub layer's lock, and with Redis down it would fail. Here the
        layer is a second message source (`_layer_next`) that creates its channel lazily, in its own task, once
        connect() accepted the charger (`_link_wanted`); a refused handshake costs the layer nothing. Messages of
        both sources are still dispatched one at a time, as Channels does."""
        self.scope = scope
        self.base_send = send
        self.loop = asyncio.get_running_loop()
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self._join_task: asyncio.Task | None = None
        self._side_tasks: set[asyncio.Task] = set()
        sources = [receive]
        if self.channel_layer is not None:
            self._link_wanted = asyncio.Event()
            self._channel_ready = asyncio.Event()
            sources.append(self._layer_next)
        try:
            with contextlib.suppress(StopConsumer):
                await await_many_dispatch(sources, self.dispatch)
        finally:
            # await_many_dispatch cancelled the layer source (a pending pub/sub receive unsubscribes then).
            self._link_stop()

    # --- the link: this connection's channel-layer presence, in the background -------------------------
    async def _layer_next(self):
        """The next channel-layer message for this connection (await_many_dispatch's second source). The
        first call waits until the charger is accepted, then creates the channel (retried while the layer is
        slow or down); no await separates the channel's creation from the receive that the consumer's exit
        cancels, so a channel is never left subscribed."""
        if not self.channel_name:
            await self._link_wanted.wait()
            self.channel_name = await self._layer_retry("new_channel", self.channel_layer.new_channel)
            self._channel_ready.set()
        delay = LAYER_RETRY_S
        while True:
            try:
                message = await self.channel_layer.receive(self.channel_name)
            except Exception as exc:
                layer_health.failed("receive", self.identity, exc)
                await asyncio.sleep(random.uniform(0.5, 1.5) * delay)
                delay = min(2 * delay, LAYER_RETRY_MAX_S)
                continue
            layer_health.ok()
            return message

    def _link_start(self) -> None:
        """Called by connect() once the charger is accepted (self.group, connection_id and connected_at are
        set): the channel is created by `_layer_next`, the membership and the broadcast by `_join`."""
        if self.channel_layer is None:
            return
        self._link_started_at = self.loop.time()
        self._link_wanted.set()
        self._join_task = asyncio.ensure_future(self._join())

    async def _join(self) -> None:
        """Join the station's group, then tell every other connection of the station that this one is the
        newest (ocpp.superseded; docs/reliability.md case 6). In this order: a connection announces only once
        it can hear the others' announcements, so that of two connections linking late, each hears whichever
        announces after it (see ocpp_superseded)."""
        await self._channel_ready.wait()
        await self._layer_retry(
            "group_add", lambda: self.channel_layer.group_add(self.group, self.channel_name)
        )
        if not self._superseded:
            await self._layer_retry(
                "group_send", lambda: self.channel_layer.group_send(self.group, self._announcement())
            )

    async def _layer_retry(self, what: str, call: Callable[[], Awaitable]):
        """`call()` until it succeeds. A slow attempt is waited for, not cancelled early: the pub/sub layer
        serves a process's calls in turn behind one lock, and a cancelled call would lose its place in that
        queue. It is given up after LAYER_TIMEOUT_S (a layer that hangs), and a failed or given-up attempt is
        tried again after a growing, jittered pause. Slowness is not an error: layer_health.slow says so only
        once the link has waited LAYER_SLOW_S; a failure is (layer_health.failed)."""
        delay = LAYER_RETRY_S
        while True:
            attempt = asyncio.ensure_future(call())
            deadline = self.loop.time() + LAYER_TIMEOUT_S
            try:
                while not attempt.done() and self.loop.time() < deadline:
                    await asyncio.wait({attempt}, timeout=min(LAYER_SLOW_S, deadline - self.loop.time()))
                    if not attempt.done():
                        layer_health.slow(what, self.identity, self.loop.time() - self._link_started_at)
            except asyncio.CancelledError:
                attempt.cancel()
                raise
            if not attempt.done():
                attempt.cancel()
            elif (failure := attempt.exception()) is None:
                layer_health.ok()
                return attempt.result()
            else:
                layer_health.failed(what, self.identity, failure)
            await asyncio.sleep(random.uniform(0.5, 1.5) * delay)
            delay = min(2 * delay, LAYER_RETRY_MAX_S)

    def _link_stop(self) -> None:
        if self._join_task is not None:
            self._join_task.cancel()
        for task in list(self._side_tasks):
            task.cancel()

    def _side(self, coro) -> None:
        """A fire-and-forget task of this connection, referenced until it ends (and cancelled at the close)."""
        task = asyncio.ensure_future(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def dispatch(self, message):
        # Channels >= 4.2 runs aclose_old_connections() in a thread before every message: 25-29% of the
        # server's CPU (docs/performance.md#channels-connection-cleanup-before-every-message). Our database
        # work runs in worker threads through database_sync_to_async, which closes stale connections itself,
        # so we skip it here.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self):
        identity, problem = identity_parse(self.scope)
        # TLS, the client certificate and the charger's address, as far as the peer may tell them (a trusted
        # TLS terminator; stations.services.transport_security).
        transport = transport_of(self.scope)
        remote = transport.remote_addr
        protocol = negotiate(self.scope.get("subprotocols") or [])
        if protocol is None:
            logger.info(
                "refused %r from %s: no supported subprotocol in %s",
                identity_shown(identity),
                remote,
                self.scope.get("subprotocols"),
            )
            await self._refuse(400, "No supported OCPP subprotocol (" + ", ".join(CHARGE_POINTS) + ")")
            return

        shown = identity_shown(identity)
        if handshake_throttle.blocked(identity=shown, address=remote):
            logger.warning("throttled handshake for %r from %s", shown[:48], remote)
            await self._refuse(429, "Too many failed attempts; retry later")
            return
        if problem:
            # No station can have this identity (docs/reliability.md case 46): refused like any unknown one,
            # without a lookup, and counted and logged like any failed handshake.
            await run_db(
                security_event_record,
                identity=shown,
                kind=SecurityEventKind.UNKNOWN_IDENTITY,
                detail=f"malformed identity: {problem}",
                remote_addr=remote,
            )
            handshake_throttle.failed(identity=shown, address=remote)
            await self._refuse(404, "Unknown charging station")
            return

        headers = dict(self.scope.get("headers") or [])
        credentials = basic_auth_parse(headers.get(b"authorization"))
        found = await run_db(station_auth_get, identity=identity)
        if found is None:
            password = credentials[1] if credentials and credentials[0] == identity else None
            station = await run_db(station_auto_register, identity=identity, password=password)
            if station is None:
                await run_db(
                    security_event_record,
                    identity=identity,
                    kind=SecurityEventKind.UNKNOWN_IDENTITY,
                    detail="handshake for an unregistered identity",
                    remote_addr=remote,
                )
                handshake_throttle.failed(identity=identity, address=remote)
                await self._refuse(404, "Unknown charging station")
                return
        else:
            station, seen = found, found.security_profile_seen
            if not await self._admitted(station, seen, identity, credentials, transport):
                return
        handshake_throttle.succeeded(identity=identity, address=remote)

        self.connection_id = uuid.uuid4().hex
        self.group = station_group(identity)
        self.identity = identity
        connected_at = timezone.now()
        # Orders this connection against others of the same station (ocpp_superseded): the time recorded as
        # the station's connected_at.
        self._connected_at = connected_at.timestamp()
        self._commands: dict[int, asyncio.Task] = {}
        self._replies: dict[int, str] = {}
        # docs/reliability.md case 43: nothing below waits on the channel layer. The link (channel, group,
        # the broadcast that closes an older connection in another process) proceeds in the background, in
        # parallel with the station's bookkeeping; commands sent before it is in place come by the poller.
        self._link_start()
        connected = await run_db(
            station_connected,
            station_id=station.station_id,
            connection_id=self.connection_id,
            protocol=protocol,
            at=connected_at,
        )
        self.cp = CHARGE_POINTS[protocol](
            station=StationContext(
                station_id=station.station_id,
                identity=identity,
                organisation_id=station.organisation_id,
                registration_status=station.registration_status,
                site_id=station.site_id,
            ),
            send=self._send_text,
        )
        self._rate = MessageRate(rate_per_s=settings.OCPP_MESSAGES_PER_S, burst=settings.OCPP_MESSAGE_BURST)
        self._throttled = False
        await self.accept(protocol)
        command_poller.hold(station.station_id, self)
        await effects.apply(connected, station=self.cp.station, version=self.cp.version)

    async def _layer_once(self, method: str, *args) -> None:
        """One channel-layer call that nothing waits for and the database covers (see LAYER_CALL_TIMEOUT_S):
        bounded, not retried; a failure goes to layer_health, a slow call is let go silently."""
        if self.channel_layer is None:
            return
        try:
            await asyncio.wait_for(getattr(self.channel_layer, method)(*args), timeout=LAYER_CALL_TIMEOUT_S)
        except TimeoutError:
            logger.debug(
                "channel layer: %s for %s given up after %s s", method, self.identity, LAYER_CALL_TIMEOUT_S
            )
        except Exception as exc:
            layer_health.failed(method, self.identity, exc)
        else:
            layer_health.ok()

    async def _admitted(
        self,
        station: StationAuth,
        seen: int,
        identity: str,
        credentials: tuple[str, str] | None,
        transport: Transport,
    ) -> bool:
        """Whether the station may connect over this transport with these credentials; if not, the refusal is
        recorded (a SecurityEvent), counted by the throttle and sent. docs/contract.md#security-profiles.

        The connection reaches profile 3 with a client certificate that passes every check (OCPP 2.0.1
        A00.FR.403-405), else 2 or 1 with HTTP Basic over TLS or plain ws, else 0 for a station without a
        password. It is refused below the profile the station requires: its configured one, and the highest it
        was ever seen at. A station configured lower that reaches higher (the profile-upgrade procedure, A05)
        is accepted, and from then on never below that. Database work added to the handshake: one query to check
        a client certificate (only when one is presented) and raising `security_profile_seen` (once per new
        level, 2 or 3); none for a profile-1 station."""
        required = profile_required(security_profile=station.security_profile, security_profile_seen=seen)
        refusal = ""  # why the client certificate was refused, when one was presented
        achieved: int | None = None
        if transport.tls and transport.certificate_presented:
            refusal = await run_db(
                station_certificate_check,
                organisation_id=station.organisation_id,
                identity=identity,
                pem=transport.client_cert_pem,
                verify=transport.verify,
                now=timezone.now(),
            )
            if not refusal:
                achieved = 3
        if achieved is None:
            if refusal and required >= 3:
                await self._refused(
                    station, identity, transport, SecurityEventKind.CERTIFICATE_REFUSED, refusal, 403
                )
                return False
            if not await self._authenticated(station, identity, credentials):
                if refusal:
                    await self._refused(
                        station, identity, transport, SecurityEventKind.CERTIFICATE_REFUSED, refusal, 403
                    )
                else:
                    # Never the password itself (docs/reliability.md case 2): only what was wrong.
                    detail = "missing credentials" if credentials is None else "wrong username or password"
                    await self._refused(
                        station, identity, transport, SecurityEventKind.AUTH_FAILED, detail, 401
                    )
                return False
            with_password = credentials is not None and bool(
                station.password_hash or station.pending_password_hash
            )
            achieved = (2 if transport.tls else 1) if with_password else 0
        if achieved < required:
            detail = (
                f"connected at profile {achieved} ({PROFILE_MEANS[achieved]}); the station requires "
                f"{required} (configured {station.security_profile}, seen at {seen})"
            )
            await self._refused(
                station, identity, transport, SecurityEventKind.PROFILE_DOWNGRADE, detail, 403
            )
            return False
        if refusal:
            logger.warning(
                "%s: client certificate not accepted (%s); connected at profile %s",
                identity,
                refusal,
                achieved,
            )
        if achieved >= 2 and achieved > seen:
            await run_db(station_profile_seen_raise, station_id=station.station_id, profile=achieved)
        return True

    async def _refused(
        self, station: StationAuth, identity: str, transport: Transport, kind: str, detail: str, status: int
    ) -> None:
        await run_db(
            security_event_record,
            identity=identity,
            station_id=station.station_id,
            kind=kind,
            detail=detail,
            remote_addr=transport.remote_addr,
        )
        handshake_throttle.failed(identity=identity, address=transport.remote_addr)
        await self._refuse(status, REFUSAL_TEXT[status])

    @staticmethod
    async def _authenticated(station, identity: str, credentials: tuple[str, str] | None) -> bool:
        if station.security_profile == 0 and not station.password_hash:
            return True  # profile 0: no authentication (for trusted networks only)
        if credentials is None or not (station.password_hash or station.pending_password_hash):
            return False
        username, password = credentials
        if username != identity:
            return False
        matched = station_password_check(
            password_hash=station.password_hash,
            pending_password_hash=station.pending_password_hash,
            password=password,
        )
        if matched == "pending":
            # docs/reliability.md case 5: a password sent to the charger whose answer we have not committed;
            # connecting with it confirms the charger took it, so it becomes the only one.
            await run_db(
                station_password_promote,
                station_id=station.station_id,
                pending_password_hash=station.pending_password_hash,
            )
        return matched is not None

    async def _refuse(self, status: int, reason: str) -> None:
        await refuse(self.scope, self.base_send, status, reason)

    async def _send_text(self, frame: str) -> None:
        await self.send(text_data=frame)

    async def receive(self, text_data=None, bytes_data=None):
        if self.cp is None or self._closing:
            return
        if text_data is None:
            await self._refuse_binary(len(bytes_data or b""))
            return
        wait = self._rate.delay()
        if wait:
            await self._throttle(wait)
        await self.cp.route_message(text_data)

    async def _refuse_binary(self, size: int) -> None:
        """OCPP-J carries every message as a WebSocket text frame (UTF-8 JSON; OCPP-J 1.6 section 4, 2.0.1
        Part 4 section 4.1). A binary frame is closed with 1003, "unsupported data" (RFC 6455 7.4.1), as
        SteVe does: answering it with a CALLERROR would suggest we read it. docs/reliability.md case 46."""
        self._closing = True
        assert self.cp is not None  # set in connect(), before any frame
        station = self.cp.station
        logger.warning("%s: binary frame of %d bytes; closing with 1003", station.identity, size)
        # Recorded before the close, so that the event is there by the time the charger sees the close.
        await run_db(
            security_event_record,
            identity=station.identity,
            station_id=station.station_id,
            kind=SecurityEventKind.PROTOCOL_VIOLATION,
            detail=f"binary WebSocket frame ({size} bytes); OCPP-J uses text frames only: closed with 1003",
        )
        await self.close(code=1003, reason="Binary frames are not supported: OCPP-J uses text frames")

    async def _throttle(self, wait: float) -> None:
        """docs/reliability.md case 13: a connection sending faster than OCPP_MESSAGES_PER_S (past its burst)
        is slowed to that rate; the first time, it is logged as a protocol violation."""
        if not self._throttled:
            self._throttled = True
            assert self.cp is not None  # set in connect(), before any frame
            station = self.cp.station
            logger.warning(
                "%s: message flood; throttled to %s/s", station.identity, settings.OCPP_MESSAGES_PER_S
            )
            await run_db(
                security_event_record,
                identity=station.identity,
                station_id=station.station_id,
                kind=SecurityEventKind.PROTOCOL_VIOLATION,
                detail=f"message flood: more than {settings.OCPP_MESSAGES_PER_S:g}/s after a burst of "
                f"{settings.OCPP_MESSAGE_BURST}; throttled",
            )
        await asyncio.sleep(wait)

    async def ocpp_superseded(self, event):
        """Another connection of this station announced itself (`_join`, from any process). The older of the
        two closes: ordered by connected_at, then connection id (an announcement without connected_at, from
        an older version of this server, counts as newer). Since announcements go out late when the layer is
        slow, an older connection's may arrive after a newer one's: the newer then announces again, and the
        older, which joined the group too late to hear the first announcement, hears that one and closes."""
        if self.cp is None or self._superseded or event["connection_id"] == self.connection_id:
            return
        theirs = (event.get("connected_at", float("inf")), event["connection_id"])
        if theirs < (self._connected_at, self.connection_id):
            logger.info(
                "%s: an older connection announced itself late; announcing again", self.cp.station.identity
            )
            self._side(self._layer_once("group_send", self.group, self._announcement()))
            return
        await self._close_superseded()

    def _announcement(self) -> dict:
        return {
            "type": "ocpp.superseded",
            "connection_id": self.connection_id,
            "connected_at": self._connected_at,
        }

    def supersede(self) -> None:
        """A newer connection of this station in the same process (CommandPoller.hold): close this one."""
        if self.cp is not None and not self._superseded:
            self._side(self._close_superseded())

    async def _close_superseded(self) -> None:
        if self.cp is None or self._superseded:
            return
        self._superseded = True
        if self._join_task is not None:
            self._join_task.cancel()  # its announcement would only make the newer one announce again
        logger.info("%s: replaced by a newer connection", self.cp.station.identity)
        await self.close(code=1000)

    # --- remote commands (stations.services.commands) -----------------------------------------------
    async def ocpp_command(self, event):
        self.command_start(event["command_id"], reply_to=event.get("reply_to"))

    def command_start(self, command_id: int, *, reply_to: str | None) -> None:
        """Send a command as a task of its own: this consumer must keep reading frames, the answer among
        them (docs/contributing.md#ocpp-and-channels: never await a CSMS->charger call inside the consumer's
        message handling).

        The word of the channel layer and the poller may both bring the same command: one task per command
        runs here, and `command_claim` (pending -> sent, once) stops any other (another process, or a later
        start here once this one ended) from sending it again. A word that finds the poller's task running
        leaves its `reply_to`, told when that task ends."""
        if self.cp is None:
            return
        if command_id in self._commands:
            if reply_to:
                self._replies[command_id] = reply_to
            return
        self._commands[command_id] = asyncio.ensure_future(self._command_run(self.cp, command_id, reply_to))

    async def _command_run(self, cp: ChargePoint, command_id: int, reply_to: str | None) -> None:
        try:
            unique_id = str(uuid.uuid4())
            command = await run_db(
                command_claim, command_id=command_id, station_id=cp.station.station_id, unique_id=unique_id
            )
            if command is None:
                return  # another process or task took it, or it was given up
            outcome = await self._command_call(cp, command, unique_id)
            redacted = request_redacted(command.action, command.request)
            if redacted is not command.request:
                outcome["request"] = redacted  # sent: the secret need not be kept any longer
            await run_db(command_finish, command_id=command_id, **outcome)
        except Exception:
            logger.exception("%s: command %s failed", cp.station.identity, command_id)
        finally:
            self._commands.pop(command_id, None)
            reply_to = reply_to or self._replies.pop(command_id, None)
            self._replies.pop(command_id, None)
            if reply_to:
                await self._layer_once(
                    "send", reply_to, {"type": "ocpp.command.done", "command_id": command_id}
                )

    @staticmethod
    async def _command_call(cp: ChargePoint, command, unique_id: str) -> dict:
        try:
            response = await cp.call(
                command.action, command.request, timeout=command.timeout_s, unique_id=unique_id
            )
        except CallErrorReceived as exc:
            return {
                "status": CommandStatus.FAILED,
                "response": {
                    "errorCode": exc.code,
                    "errorDescription": exc.description,
                    "errorDetails": exc.details,
                },
                "error_code": exc.code,
                "error_description": exc.description or exc.code,
            }
        except TimeoutError:
            return {
                "status": CommandStatus.TIMED_OUT,
                "error_code": "Timeout",
                "error_description": f"No answer within {command.timeout_s:g} s.",
            }
        except ConnectionError:
            return {
                "status": CommandStatus.FAILED,
                "error_code": DISCONNECTED,
                "error_description": "The connection closed before the charger answered.",
            }
        try:
            actions.response_validate(protocol=cp.version, action=command.action, payload=response)
        except OcppError as exc:
            return {
                "status": CommandStatus.FAILED,
                "response": response,
                "error_code": "InvalidResponse",
                "error_description": f"The charger's answer does not match the schema: {exc.description}",
            }
        return {
            "status": CommandStatus.ANSWERED,
            "response": response,
            "on_answer": answer_hook(cp.version, command.action),
        }

    async def disconnect(self, code):
        if self.cp is None:
            return
        command_poller.release(self.cp.station.station_id, self)
        self.cp.close()
        # A link still joining stops here; the membership goes after the station's bookkeeping, which must
        # not wait on the layer either.
        self._link_stop()
        disconnected = await run_db(
            station_disconnected,
            station_id=self.cp.station.station_id,
            connection_id=self.connection_id,
            at=timezone.now(),
            reason=f"close code {code}",
        )
        await effects.apply(disconnected, station=self.cp.station, version=self.cp.version)
        self.cp = None
        if self.channel_name and self._join_task is not None:
            # Also after a group_add cut short: discarding a channel that is not a member does nothing.
            await self._layer_once("group_discard", self.group, self.channel_name)


class NotFoundConsumer(AsyncWebsocketConsumer):
    """Every WebSocket path that is neither an OCPP URL nor the portal's: refused with 404 (a router error
    would answer 500 with a traceback; docs/reliability.md case 46). No identity, so nothing for the security
    log."""

    async def connect(self):
        logger.info(
            "refused WebSocket for unknown path %r from %s",
            self.scope.get("path", "")[:200],
            (self.scope.get("client") or ["", 0])[0],
        )
        await refuse(self.scope, self.base_send, 404, "Not found")
