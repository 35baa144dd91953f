"""cpms/uvicorn_compat.py: uvicorn's websockets-sansio protocol, bounded for a peer that stops reading
(docs/reliability.md case 35). Driven here with a fake transport and loop; against a real uvicorn server
process: tests/e2e/test_uvicorn_server.py."""

import logging

import pytest
import uvicorn
from uvicorn.server import ServerState
from websockets.frames import Frame, Opcode

from cpms import uvicorn_compat
from cpms.uvicorn_compat import OcppWebSocketProtocol

HANDSHAKE = (
    b"GET /ocpp/CP-1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
)


class FakeLoop:
    """Records what the protocol schedules; `fire()` runs it."""

    def __init__(self):
        self.now = 0.0
        self.soon: list = []
        self.later: list[Handle] = []

    def time(self) -> float:
        return self.now

    def call_soon(self, callback, *args):
        self.soon.append((callback, args))

    def call_later(self, delay, callback, *args):
        handle = Handle(self.now + delay, callback, args)
        self.later.append(handle)
        return handle

    def create_task(self, coro):
        coro.close()  # the ASGI application does not run here
        return Task()

    def run_soon(self) -> None:
        calls, self.soon = self.soon, []
        for callback, args in calls:
            callback(*args)

    def fire(self, callback_name: str) -> None:
        [handle] = [h for h in self.later if not h.cancelled and h.callback.__name__ == callback_name]
        handle.cancelled = True
        self.now = handle.when
        handle.callback(*handle.args)


class Handle:
    def __init__(self, when, callback, args):
        self.when, self.callback, self.args = when, callback, args
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class Task:
    def add_done_callback(self, callback):
        pass


class Transport:
    """An asyncio transport whose write buffer holds what the test says the peer has not read."""

    def __init__(self):
        self.written = b""
        self.buffered = 0
        self.closed = False
        self.aborted = 0
        self.high_water = None
        self.reading = True

    def get_extra_info(self, name, default=None):
        return default

    def set_write_buffer_limits(self, high=None, low=None):
        self.high_water = high

    def get_write_buffer_size(self):
        return self.buffered

    def write(self, data):
        self.written += data

    def is_closing(self):
        return self.closed or bool(self.aborted)

    def close(self):
        self.closed = True

    def abort(self):
        self.aborted += 1

    def pause_reading(self):
        self.reading = False

    def resume_reading(self):
        self.reading = True


async def app(scope, receive, send):  # never run: FakeLoop.create_task closes it
    raise AssertionError


def run(coro):
    """Drive a coroutine that never really waits (the protocol's `send` when writable)."""
    try:
        coro.send(None)
    except StopIteration:
        return
    raise AssertionError("the coroutine waited")


@pytest.fixture
def limit(settings):
    settings.OCPP_SEND_BUFFER_MAX_BYTES = 65536
    return 65536


def protocol(loop, **config):
    cfg = uvicorn.Config(
        app, ws=OcppWebSocketProtocol, log_config=None, ws_ping_interval=1.0, ws_ping_timeout=2.0, **config
    )
    cfg.load()
    proto = OcppWebSocketProtocol(config=cfg, server_state=ServerState(), app_state={}, _loop=loop)
    transport = Transport()
    proto.connection_made(transport)
    return proto, transport


def accepted(loop):
    proto, transport = protocol(loop)
    proto.data_received(HANDSHAKE)
    run(proto.send({"type": "websocket.accept", "subprotocol": "ocpp1.6"}))
    assert transport.written.startswith(b"HTTP/1.1 101")
    transport.written = b""
    return proto, transport


def close_code(written: bytes) -> int:
    assert written[0] == 0x88, written  # FIN + close opcode, unmasked (server to client)
    return int.from_bytes(written[2:4], "big")


def test_the_uvicorn_read_is_the_one_the_overrides_were_written_against():
    uvicorn_compat.check_compatible()


def test_check_compatible_refuses_a_uvicorn_without_an_overridden_internal(monkeypatch):
    monkeypatch.setattr(uvicorn_compat, "_REQUIRED", (*uvicorn_compat._REQUIRED, "handle_frames_v2"))
    with pytest.raises(RuntimeError, match="lacks handle_frames_v2"):
        uvicorn_compat.check_compatible()


def test_the_send_buffer_limit_is_the_transports_high_water_mark(limit):
    _, transport = protocol(FakeLoop())
    assert transport.high_water == limit


def test_past_the_limit_the_connection_is_aborted_once_with_a_warning(limit, caplog):
    loop = FakeLoop()
    proto, transport = accepted(loop)
    transport.buffered = limit + 1
    with caplog.at_level(logging.WARNING, logger="cpms.uvicorn_compat"):
        proto.pause_writing()  # what asyncio calls past the high-water mark
        proto.pause_writing()
    assert transport.aborted == 0  # not from inside the transport's write()
    loop.run_soon()
    assert transport.aborted == 1
    assert [r.getMessage() for r in caplog.records if r.name == "cpms.uvicorn_compat"] == [
        f"/ocpp/CP-1: closed: it does not read ({limit + 1} bytes waiting to be sent, limit {limit})"
    ]


def test_without_a_limit_pausing_is_asyncios_flow_control_only(settings):
    settings.OCPP_SEND_BUFFER_MAX_BYTES = 0
    loop = FakeLoop()
    proto, transport = accepted(loop)
    assert transport.high_water is None
    proto.pause_writing()
    loop.run_soon()
    assert transport.aborted == 0
    assert not proto.writable.is_set()


def test_a_ping_goes_out_every_interval_whatever_the_peer_sends(limit):
    loop = FakeLoop()
    proto, transport = accepted(loop)
    for n in range(3):  # incoming text frames do not postpone the ping
        proto.handle_text(Frame(Opcode.TEXT, f'[2,"hb{n}","Heartbeat",{{}}]'.encode()))
    loop.fire("send_keepalive_ping")
    assert transport.written[0] == 0x89  # a ping
    assert loop.now == 1.0


def test_a_missing_pong_sends_1011_and_aborts_a_peer_that_left_bytes_unread(limit):
    loop = FakeLoop()
    _proto, transport = accepted(loop)
    loop.fire("send_keepalive_ping")
    transport.written = b""
    transport.buffered = 300  # the peer does not read: close() would wait for these for ever
    loop.fire("keepalive_timeout")
    assert close_code(transport.written) == 1011
    assert transport.aborted == 1


def test_a_missing_pong_closes_when_nothing_is_left_to_flush(limit):
    loop = FakeLoop()
    _proto, transport = accepted(loop)
    loop.fire("send_keepalive_ping")
    transport.written = b""
    loop.fire("keepalive_timeout")
    assert close_code(transport.written) == 1011
    assert (transport.closed, transport.aborted) == (True, 0)


def test_a_pong_in_time_keeps_the_connection(limit):
    loop = FakeLoop()
    proto, transport = accepted(loop)
    loop.fire("send_keepalive_ping")
    proto.handle_pong(Frame(Opcode.PONG, proto.pending_ping_payload))
    assert not [h for h in loop.later if not h.cancelled and h.callback.__name__ == "keepalive_timeout"]
    assert (transport.closed, transport.aborted) == (False, 0)


def test_the_application_closes_with_1003_and_a_peer_that_does_not_answer_is_aborted(limit):
    loop = FakeLoop()
    proto, transport = accepted(loop)
    run(proto.send({"type": "websocket.close", "code": 1003, "reason": "binary"}))
    assert close_code(transport.written) == 1003
    transport.buffered = 10
    loop.fire("close_or_abort")  # uvicorn's closing-handshake timeout, now closing or aborting
    assert transport.aborted == 1


def test_a_handshake_the_application_never_answers_is_refused_with_503(limit, caplog, monkeypatch):
    monkeypatch.setattr(uvicorn_compat, "deadline_log", uvicorn_compat._DeadlineLog())
    loop = FakeLoop()
    proto, transport = protocol(loop)
    proto.data_received(HANDSHAKE)
    with caplog.at_level(logging.WARNING, logger="cpms.uvicorn_compat"):
        loop.fire("handshake_timeout")
    assert transport.written.startswith(b"HTTP/1.1 503 ")
    assert transport.closed
    assert "no answer to the handshake in 10 s" in caplog.text


def test_a_storm_of_cut_handshakes_is_one_warning_with_the_count(limit, caplog, monkeypatch):
    monkeypatch.setattr(uvicorn_compat, "deadline_log", uvicorn_compat._DeadlineLog())
    with caplog.at_level(logging.INFO, logger="cpms.uvicorn_compat"):
        for _ in range(3):
            loop = FakeLoop()
            proto, _transport = protocol(loop)
            proto.data_received(HANDSHAKE)
            loop.fire("handshake_timeout")
    cut = [r for r in caplog.records if "no answer to the handshake" in r.getMessage()]
    assert [r.levelname for r in cut] == ["WARNING", "INFO", "INFO"]
    assert "(1 so far in this process)" in cut[0].getMessage()


def test_an_answered_handshake_cancels_its_deadline(limit):
    loop = FakeLoop()
    proto, transport = protocol(loop)
    proto.data_received(HANDSHAKE)
    run(proto.send({"type": "websocket.http.response.start", "status": 404, "headers": []}))
    run(proto.send({"type": "websocket.http.response.body", "body": b"Unknown charging station"}))
    proto.connection_lost(None)
    assert transport.written.startswith(b"HTTP/1.1 404 Not Found")
    assert [h.cancelled for h in loop.later if h.callback.__name__ == "handshake_timeout"] == [True]


def test_cpms_server_runs_uvicorn_with_the_csms_settings(settings, monkeypatch):
    from cpms import server

    settings.OCPP_MAX_FRAME_BYTES = 12345
    settings.OCPP_TRUSTED_PROXIES = ["10.0.0.0/8", "192.0.2.7"]
    monkeypatch.setenv("WS_PING_INTERVAL_S", "7")
    monkeypatch.delenv("WS_PING_TIMEOUT_S", raising=False)
    config = server.uvicorn_config(bind="127.0.0.3", port=8123, proxy_headers=False)
    assert (config.host, config.port, config.loop, config.http, config.ws) == (
        "127.0.0.3",
        8123,
        "uvloop",
        "httptools",
        OcppWebSocketProtocol,
    )
    assert (config.ws_max_size, config.ws_ping_interval, config.ws_ping_timeout) == (12345, 7.0, 60.0)
    assert (config.ws_per_message_deflate, config.lifespan, config.access_log) == (False, "off", False)
    assert config.proxy_headers is False
    behind = server.uvicorn_config(bind="127.0.0.1", port=8123, proxy_headers=True)
    assert behind.proxy_headers is True
    assert behind.forwarded_allow_ips == "10.0.0.0/8,192.0.2.7"  # never "*": a forged proto would claim TLS


@pytest.mark.parametrize(
    ("argv", "env", "ran"),
    [
        ([], None, "daphne"),
        (["--server", "uvicorn"], None, "uvicorn"),
        ([], "uvicorn", "uvicorn"),
        (["--server", "daphne"], "uvicorn", "daphne"),
    ],
)
def test_cpms_server_picks_the_server_from_the_flag_then_the_environment(monkeypatch, argv, env, ran):
    from cpms import server

    calls = []
    monkeypatch.setattr(server, "run_daphne", lambda **kw: calls.append(("daphne", kw)))
    monkeypatch.setattr(server, "run_uvicorn", lambda **kw: calls.append(("uvicorn", kw)))
    if env is None:
        monkeypatch.delenv("CPMS_ASGI_SERVER", raising=False)
    else:
        monkeypatch.setenv("CPMS_ASGI_SERVER", env)
    server.main([*argv, "--bind", "127.0.0.2", "--port", "8124", "--proxy-headers"])
    assert calls == [(ran, {"bind": "127.0.0.2", "port": 8124, "proxy_headers": True})]


def test_cpms_server_refuses_an_unknown_server_in_the_environment(monkeypatch):
    from cpms import server

    monkeypatch.setenv("CPMS_ASGI_SERVER", "hypercorn")
    monkeypatch.setattr(server, "run_daphne", lambda **kw: pytest.fail("ran daphne"))
    with pytest.raises(SystemExit):
        server.main([])
