"""uvicorn's websockets-sansio protocol with the guarantees `cpms/daphne_compat.py` gives Daphne.

`python -m cpms.server --server uvicorn` passes `OcppWebSocketProtocol` as uvicorn's `ws` class: nothing of
uvicorn is patched, and nothing here runs under Daphne.

What uvicorn 0.55's `websockets_sansio_impl.WebSocketsSansIOProtocol` already does (read, then shown
against a real server by tests/e2e/test_uvicorn_server.py):
- the handshake refusal statuses: it advertises and implements the ASGI "websocket.http.response"
  extension, so the consumer's 401/403/404/400/429 reach the charger;
- a frame over `ws_max_size` (OCPP_MAX_FRAME_BYTES) is answered with a close frame 1009;
- the application may close with any RFC 6455 code (1003 for a binary OCPP frame, 1007, 1008, 1011);
- pings go out every `ws_ping_interval` whatever the peer sends (incoming frames do not postpone them) and
  only the pong of the ping in flight answers it; without one within `ws_ping_timeout` it sends a close
  1011 and closes the transport.

What it lacks, added here (docs/reliability.md case 35, a charger that keeps sending but stops reading):
- its ping timeout and its closing-handshake timeout call `transport.close()`, which waits until the
  write buffer is flushed: to a peer that does not read, never. The connection, its consumer and its
  buffer stayed forever. Here they abort the transport when bytes are still waiting.
- no bound on what the process buffers for a connection other than asyncio's flow control: past the
  high-water mark the application's `send()` waits, for ever if the peer never reads, and the consumer
  behind it stalls. Here the high-water mark is OCPP_SEND_BUFFER_MAX_BYTES and reaching it aborts the
  connection once, with a WARNING, like daphne_compat: a charger that stops reading cannot grow memory.
- no handshake deadline (Daphne's `--websocket_connect_timeout 10`): an application that neither
  accepts nor refuses within `HANDSHAKE_TIMEOUT_S` gets the connection refused with 503.

The subclass overrides internals (method and attribute names of 0.55): `check_compatible()` refuses to run
on a uvicorn without them rather than silently losing a guarantee.
"""

import logging
import time

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

logger = logging.getLogger(__name__)

# As Daphne's --websocket_connect_timeout in cpms.server.daphne_argv.
HANDSHAKE_TIMEOUT_S = 10.0
# Handshakes cut at the deadline are a storm's symptom, thousands at once: a WARNING with their count at most
# this often, each one at INFO.
DEADLINE_LOG_S = 10.0


class _DeadlineLog:
    def __init__(self):
        self.count = 0
        self._said_at = float("-inf")

    def cut(self, path: str) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._said_at >= DEADLINE_LOG_S:
            self._said_at = now
            logger.warning(
                "%s: no answer to the handshake in %.0f s: refused with 503 (%d so far in this process)",
                path,
                HANDSHAKE_TIMEOUT_S,
                self.count,
            )
        else:
            logger.info(
                "%s: no answer to the handshake in %.0f s: refused with 503", path, HANDSHAKE_TIMEOUT_S
            )


deadline_log = _DeadlineLog()

# What the overrides below rely on in uvicorn's class.
_REQUIRED = (
    "connection_made",
    "connection_lost",
    "pause_writing",
    "handle_connect",
    "keepalive_timeout",
    "send",
    "conn",
    "close_timer",
    "close_timeout",
    "close_sent",
    "handshake_complete",
    "pong_timer",
    "pending_ping_payload",
)


def check_compatible() -> None:
    """Raise RuntimeError when uvicorn's websockets-sansio protocol lacks what this module overrides."""
    probe = WebSocketsSansIOProtocol.__init__.__code__.co_names + tuple(dir(WebSocketsSansIOProtocol))
    missing = [name for name in _REQUIRED if name not in probe]
    if missing:
        import uvicorn

        raise RuntimeError(
            f"cpms.uvicorn_compat was written against uvicorn 0.55; uvicorn {uvicorn.__version__} lacks "
            f"{', '.join(missing)} in websockets_sansio_impl: check the overrides before running it"
        )


def _send_buffer_limit() -> int:
    from django.conf import settings

    return int(getattr(settings, "OCPP_SEND_BUFFER_MAX_BYTES", 0) or 0)


class OcppWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, bounded for peers that stop reading (module docstring)."""

    send_buffer_aborted = False
    handshake_timer = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        limit = _send_buffer_limit()
        if limit:
            # asyncio calls pause_writing() once the buffer passes `high`: that is the bound.
            transport.set_write_buffer_limits(high=limit)

    def connection_lost(self, exc) -> None:
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()
            self.handshake_timer = None
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        limit = _send_buffer_limit()
        if not limit or self.send_buffer_aborted:
            return
        self.send_buffer_aborted = True
        scope = getattr(self, "scope", None) or {}
        logger.warning(
            "%s: closed: it does not read (%d bytes waiting to be sent, limit %d)",
            scope.get("path", "?"),
            self.transport.get_write_buffer_size(),
            limit,
        )
        # Not from inside the transport's write(), which called us: on the next turn of the loop.
        self.loop.call_soon(self.transport.abort)

    def handle_connect(self, event) -> None:
        super().handle_connect(event)
        if not self.handshake_complete:
            self.handshake_timer = self.loop.call_later(HANDSHAKE_TIMEOUT_S, self.handshake_timeout)

    def handshake_timeout(self) -> None:
        self.handshake_timer = None
        if self.handshake_complete or self.transport.is_closing():
            return
        deadline_log.cut(self.scope["path"])
        # The application's late accept or refusal then finds the connection gone (ClientDisconnected).
        self.handshake_complete = True
        self.close_sent = True
        response = self.conn.reject(503, "The server did not answer the handshake in time.\n")
        self.conn.send_response(response)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.transport.close()

    def keepalive_timeout(self) -> None:
        """No pong in time: uvicorn's close 1011, then abort if the peer left bytes unread (it never will)."""
        if not (self.close_sent or self.transport.is_closing()):
            logger.info(
                "%s: no pong within the ping timeout: closed", getattr(self, "scope", {}).get("path", "?")
            )
        super().keepalive_timeout()
        self.close_or_abort()

    def close_or_abort(self) -> None:
        """Close the transport; abort it when bytes are still waiting for a peer that does not read them
        (asyncio's close() would wait for them, so the connection would never end)."""
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        else:
            self.transport.close()

    async def send(self, message) -> None:
        had_timer = self.close_timer is not None
        await super().send(message)
        if not had_timer and self.close_timer is not None:
            # The application closed: uvicorn waits `close_timeout` for the peer's close frame, then closes
            # the transport; abort instead if the peer has not read what we sent.
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self.close_or_abort)
