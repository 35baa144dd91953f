"""The OCPP-J WebSocket endpoint: `ws(s)://HOST/ocpp/<identity>`
(docs/contract.md#chargers-ocpp-j-over-websocket).

Handshake: subprotocol negotiation, station lookup (404 unknown), HTTP Basic auth (401) or a client
certificate, the station's security profile (403 below it: stations.services.transport_security), then the
version's ChargePoint takes every frame. The consumer joins a channel-layer group per station so any
process can reach the charger, and a newer connection of the same identity replaces an older one.

The handshake and the answers never wait on the channel layer (docs/reliability.md case 43), and a connection
has no channel of its own (issue 13): the process holds its connections in one registry and has one channel on
the layer, through which commands and the word of a newer connection of the same charger in another process
arrive (cpms.ocpp.process_link). Until that link is in place, and whenever the layer is down, commands reach
the chargers from the database (the poller), and `command_claim` keeps a command from being sent twice.
"""

import asyncio
import logging
import time
import uuid
from urllib.parse import unquote_to_bytes

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from cpms import gc_tuning
from cpms.ocpp import admission, effects
from cpms.ocpp.chargepoint import CallErrorReceived, ChargePoint, StationContext, run_db
from cpms.ocpp.errors import OcppError
from cpms.ocpp.process_link import held, layer_health
from cpms.ocpp.throttle import MessageRate, QueueFull, handshake_queue, handshake_throttle
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
)
from stations.services.credentials import basic_auth_parse, station_password_check, station_password_promote
from stations.services.ocpp import (
    security_event_record,
    station_auto_register,
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
    503: "Too many chargers connecting; retry later",
}
# What a charger refused because the handshake queue is full is told (seconds), and how often that is logged.
RETRY_AFTER_S = 10
QUEUE_FULL_LOG_S = 10.0
# A one-shot call (the word to a command's issuer): not retried, since the database covers it (the issuer
# re-reads the record).
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
    server without that extension. Nothing to do when the server already gave up on the handshake (its
    connect deadline) or the charger left."""
    try:
        await _refusal_send(scope, send, status, reason)
    except (RuntimeError, OSError) as exc:
        logger.info("refusal %s not sent: the handshake had ended (%s)", status, exc)


async def _refusal_send(scope, send, status: int, reason: str) -> None:
    if "websocket.http.response" in (scope.get("extensions") or {}):
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        if status == 401:
            headers.append((b"www-authenticate", b'Basic realm="OCPP"'))
        if status == 503:
            headers.append((b"retry-after", str(RETRY_AFTER_S).encode()))
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": reason.encode()})
    else:
        await send({"type": "websocket.close"})


class QueueFullLog:
    """Handshakes refused because the queue was full, said once per QUEUE_FULL_LOG_S with their number rather
    than a line each (a storm is thousands)."""

    def __init__(self):
        self.count = 0
        self._said_at = float("-inf")

    def refused(self, remote: str) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._said_at >= QUEUE_FULL_LOG_S:
            self._said_at = now
            logger.warning(
                "handshake queue full (%d in flight, %d waiting): %d handshake(s) refused with 503 so far, "
                "the last from %s",
                settings.OCPP_HANDSHAKES_IN_FLIGHT,
                settings.OCPP_HANDSHAKE_BACKLOG,
                self.count,
                remote,
            )


queue_full_log = QueueFullLog()


class OcppConsumer(AsyncWebsocketConsumer):
    cp: ChargePoint | None = None
    connection_id: str = ""
    connected_at: float = 0.0  # orders this connection against others of its charger (`heard`)
    identity: str = ""  # for the logs, set once accepted
    _closing: bool = False
    _superseded: bool = False

    async def __call__(self, scope, receive, send):
        """channels' AsyncConsumer.__call__ without a channel of its own (docs/reliability.md cases 32 and 43,
        issue 13): Channels awaits `new_channel()` before dispatching `websocket.connect`, and keeps a receive on
        it for the connection's life. Here what the channel layer brings for this charger (commands, a newer
        connection elsewhere) comes through its process's one channel (cpms.ocpp.process_link), so a handshake
        never waits on the layer and a connection costs it nothing. One source, read in a plain loop: no task
        per message as await_many_dispatch makes."""
        self.scope = scope
        self.base_send = send
        self.loop = asyncio.get_running_loop()
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self._side_tasks: set[asyncio.Task] = set()
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:
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

        try:
            async with handshake_queue.slot():
                connected = await self._admit(identity, protocol, transport)
        except QueueFull:
            queue_full_log.refused(remote)
            await self._refuse(503, REFUSAL_TEXT[503])
            return
        if self.cp is not None:
            # docs/reliability.md case 43: nothing here waits on the channel layer; the process announces the
            # connection to the others (an older one elsewhere closes) in the background.
            held.hold(self)
            if settings.OCPP_GC_FREEZE:
                gc_tuning.connection_opened()
            await effects.apply(connected, station=self.cp.station, version=self.cp.version)

    async def _admit(self, identity: str, protocol: str, transport: Transport) -> tuple:
        """The checks of a handshake that take the database, then the connection recorded and accepted: its
        outcomes (an empty tuple when it was refused, the refusal sent)."""
        remote = transport.remote_addr
        headers = dict(self.scope.get("headers") or [])
        credentials = basic_auth_parse(headers.get(b"authorization"))
        found = await admission.station_auth(identity)
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
                return ()
        else:
            station, seen = found, found.security_profile_seen
            if not await self._admitted(station, seen, identity, credentials, transport):
                return ()
        handshake_throttle.succeeded(identity=identity, address=remote)

        self.connection_id = uuid.uuid4().hex
        self.identity = identity
        connected_at = timezone.now()
        # Orders this connection against others of the same station (`heard`): the time recorded as the
        # station's connected_at.
        self.connected_at = connected_at.timestamp()
        self._commands: dict[int, asyncio.Task] = {}
        self._replies: dict[int, str] = {}
        connected = await admission.connection_opened(
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
        try:
            await self.accept(protocol)
        except (RuntimeError, OSError) as exc:
            # The server gave up on the handshake meanwhile (its connect deadline, or the charger left): the
            # connection recorded above is closed again, and nothing is held.
            logger.info("%s: the handshake ended before it was accepted (%s)", identity, exc)
            self.cp = None
            await admission.connection_closed(
                station_id=station.station_id,
                connection_id=self.connection_id,
                at=timezone.now(),
                reason="handshake ended before the accept",
            )
            return ()
        return connected

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
            layer_health.failed(f"{method} for {self.identity}", exc)
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

    def heard(self, *, connection_id: str, connected_at: float) -> None:
        """Another connection of this charger announced itself (from any process; cpms.ocpp.process_link). The
        older of the two closes: ordered by connected_at, then connection id. Since announcements go out late
        when the layer is slow, an older connection's may arrive after a newer one's: the newer then announces
        again, and the older, whose process may not have heard the first announcement, hears that one."""
        if self.cp is None or self._superseded or connection_id == self.connection_id:
            return
        if (connected_at, connection_id) < (self.connected_at, self.connection_id):
            logger.info(
                "%s: an older connection announced itself late; announcing again", self.cp.station.identity
            )
            held.announce(self)
            return
        self._side(self._close_superseded())

    def supersede(self) -> None:
        """A newer connection of this station in the same process (ProcessConnections.hold): close this one."""
        if self.cp is not None and not self._superseded:
            self._side(self._close_superseded())

    async def _close_superseded(self) -> None:
        if self.cp is None or self._superseded:
            return
        self._superseded = True
        logger.info("%s: replaced by a newer connection", self.cp.station.identity)
        await self.close(code=1000)

    # --- remote commands (stations.services.commands) -----------------------------------------------
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
        held.release(self)
        self.cp.close()
        disconnected = await admission.connection_closed(
            station_id=self.cp.station.station_id,
            connection_id=self.connection_id,
            at=timezone.now(),
            reason=f"close code {code}",
        )
        await effects.apply(disconnected, station=self.cp.station, version=self.cp.version)
        self.cp = None


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
