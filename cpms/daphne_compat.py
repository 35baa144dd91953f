"""Let Daphne answer a refused WebSocket handshake with the status the application chose, close
oversized frames with 1009 instead of dropping the connection, and let the application close with the
RFC 6455 codes about a peer's data (1003 for a binary OCPP frame).

docs/contract.md#chargers-ocpp-j-over-websocket promises HTTP 404 for an unknown charger and 401 for wrong
credentials. The ASGI "WebSocket Denial Response" extension (`websocket.http.response.start` / `.body`)
carries that status; uvicorn implements it, Daphne 4.2 does not and answers every refusal 403. This adds the
extension to Daphne's protocol class (status and body only), and advertises it in the scope so the consumer
knows it may use it.

It also makes an HTTP response whose application fails after the first byte end visibly (see
`_install_http_abort`), and bounds what a WebSocket peer that stops reading can cost (see
`_install_slow_reader_bound`).
"""

import logging

logger = logging.getLogger(__name__)

_installed = False
# RFC 6455 7.4.1 codes an endpoint may send about the peer's data: unsupported data (1003), invalid
# payload (1007), policy violation (1008), too big (1009), internal error (1011).
PROTOCOL_CLOSE_CODES = frozenset({1003, 1007, 1008, 1009, 1011})


def install() -> None:
    global _installed
    if _installed:
        return
    try:
        from autobahn.websocket.types import ConnectionDeny
        from daphne import ws_protocol
    except ImportError:  # Daphne not installed: nothing to patch.
        return

    protocol = ws_protocol.WebSocketProtocol
    original_handle_reply = protocol.handle_reply
    original_on_connect = protocol.onConnect

    def on_connect(self, request):
        self._denial_status = None
        return original_on_connect(self, request)

    def handle_reply(self, message):
        kind = message.get("type")
        if kind == "websocket.http.response.start" and self.state == self.STATE_CONNECTING:
            self._denial_status = int(message.get("status", 403))
            return None
        if kind == "websocket.http.response.body" and self.state == self.STATE_CONNECTING:
            if message.get("more_body"):
                return None
            status = self._denial_status or 403
            reason = (message.get("body") or b"").decode("utf-8", "replace")[:200] or "Refused"
            self.handshake_deferred.errback(ConnectionDeny(code=status, reason=reason))
            del self.handshake_deferred
            self.server.protocol_disconnected(self)
            return None
        if (
            kind == "websocket.close"
            and message.get("code") in PROTOCOL_CLOSE_CODES
            and self.state == self.STATE_OPEN
        ):
            # autobahn's sendClose lets an application use only 1000 and 3000-4999; a charger that sent
            # something the protocol cannot take is told so with the RFC 6455 code (1003 for a binary
            # frame, docs/reliability.md case 46), and the reason Daphne would drop.
            reason = (message.get("reason") or "").encode()[:123].decode("utf-8", "ignore").encode() or None
            self.sendCloseFrame(code=message["code"], reasonUtf8=reason, isReply=False)
            return None
        return original_handle_reply(self, message)

    protocol.onConnect = on_connect
    protocol.handle_reply = handle_reply

    # autobahn drops the TCP connection on a protocol failure by default (failByDrop); a charger that sent
    # an oversized frame should get a close frame with 1009 (docs/reliability.md case 12) and know why.
    factory = ws_protocol.WebSocketFactory
    original_set_options = factory.setProtocolOptions

    def set_protocol_options(self, **options):
        options.setdefault("failByDrop", False)
        # Only a pong proves that the peer reads: autobahn's default cancels a pending ping's timeout on any
        # incoming frame, so a charger that keeps sending but never reads was never timed out
        # (docs/reliability.md case 35).
        options.setdefault("autoPingRestartOnAnyTraffic", False)
        return original_set_options(self, **options)

    factory.setProtocolOptions = set_protocol_options

    # Advertise the extension in the scope (the ASGI spec's "websocket.http.response").
    server_cls = __import__("daphne.server", fromlist=["Server"]).Server
    original_create = server_cls.create_application

    def create_application(self, protocol_obj, scope):
        if scope.get("type") == "websocket":
            scope = {
                **scope,
                "extensions": {**(scope.get("extensions") or {}), "websocket.http.response": {}},
            }
        return original_create(self, protocol_obj, scope)

    server_cls.create_application = create_application
    _install_http_abort()
    _install_slow_reader_bound()
    _installed = True


def _install_http_abort() -> None:
    """An application that fails after its HTTP response started (a streamed export,
    docs/reliability.md case 45) must leave a connection the client sees fail. Daphne answers every
    application exception with a 500 page: once the response has started that raises "HTTP response has
    already been started" inside Daphne's application checker, which then never runs again, and the chunked
    body is never ended, so the client hangs. Here the connection is closed instead, without the chunked
    terminator (what uvicorn does): the client gets an incomplete transfer, everything sent before it
    included."""
    from daphne import http_protocol

    request_cls = http_protocol.WebRequest
    original_handle_exception = request_cls.handle_exception

    def handle_exception(self, exception):
        if not self._response_started:
            return original_handle_exception(self, exception)
        logger.warning("response to %s aborted after an application error: %s", self.client_addr, exception)
        if self.channel is not None and self.channel.transport is not None:
            self.channel.transport.loseConnection()
        return None

    request_cls.handle_exception = handle_exception


def send_buffer_bytes(transport) -> int:
    """Bytes the process holds for a connection that the kernel has not taken yet (Twisted's write buffer:
    `dataBuffer` from `offset`, plus the writes queued in `_tempDataBuffer`)."""
    try:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except AttributeError:  # another transport (TLS wrapper, test double): nothing to measure
        return 0


def _install_slow_reader_bound() -> None:
    """A WebSocket peer that stops reading (docs/reliability.md case 35) is disconnected within
    WS_PING_INTERVAL_S + WS_PING_TIMEOUT_S, and what the process buffers for it is capped.

    - Pings go out every ping interval whatever the peer sends. Daphne restarts its ping clock on every
      incoming frame, so a charger that keeps sending was never pinged; and with autoPingRestartOnAnyTraffic
      off (set_protocol_options above) its unanswered ping times out and autobahn aborts the connection.
    - Each frame we send first checks the connection's write buffer: past OCPP_SEND_BUFFER_MAX_BYTES
      (what the kernel already refused to take) the connection is aborted at once instead of growing the
      process's memory with every answer and command; the buffer is freed with the connection.
    """
    from daphne import ws_protocol
    from django.conf import settings

    protocol = ws_protocol.WebSocketProtocol
    original_on_message = protocol.onMessage
    original_server_send = protocol.serverSend

    def on_message(self, payload, is_binary):
        last_ping = getattr(self, "last_ping", None)
        original_on_message(self, payload, is_binary)
        if last_ping is not None:
            self.last_ping = last_ping

    def server_send(self, content, binary=False):
        transport = getattr(self, "transport", None)
        limit = settings.OCPP_SEND_BUFFER_MAX_BYTES
        if transport is not None and limit and send_buffer_bytes(transport) > limit:
            if not getattr(self, "_send_buffer_aborted", False):
                self._send_buffer_aborted = True
                logger.warning(
                    "%s: closed: it does not read (%d bytes waiting to be sent, limit %d)",
                    bytes(getattr(self, "path", b"?")).decode("utf-8", "replace"),
                    send_buffer_bytes(transport),
                    limit,
                )
                self.wasNotCleanReason = "send buffer limit: the peer does not read"
                self.dropConnection(abort=True)
            return None
        return original_server_send(self, content, binary)

    protocol.onMessage = on_message
    protocol.serverSend = server_send
