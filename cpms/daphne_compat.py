"""Let Daphne answer a refused WebSocket handshake with the status the application chose, close
oversized frames with 1009 instead of dropping the connection, and let the application close with the
RFC 6455 codes about a peer's data (1003 for a binary OCPP frame).

docs/contract.md#chargers-ocpp-j-over-websocket promises HTTP 404 for an unknown charger and 401 for wrong
credentials. The ASGI "WebSocket Denial Response" extension (`websocket.http.response.start` / `.body`)
carries that status; uvicorn implements it, Daphne 4.2 does not and answers every refusal 403. This adds the
extension to Daphne's protocol class (status and body only), and advertises it in the scope so the consumer
knows it may use it.

It also makes an HTTP response whose application fails after the first byte end visibly (see
`_install_http_abort`).
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
