"""cpms/daphne_compat.py's bound on what the process holds for a WebSocket peer that stops reading
(docs/reliability.md case 35): past OCPP_SEND_BUFFER_MAX_BYTES of data the kernel has not taken, the next frame
aborts the connection instead of joining the buffer. The time bound (pings) is tests/e2e/test_slow_reader.py."""

import pytest
from daphne.ws_protocol import WebSocketProtocol

from cpms import daphne_compat


class Transport:
    """Twisted's write buffer as FileDescriptor keeps it."""

    def __init__(self, buffered: int, offset: int = 0, queued: int = 0):
        self.dataBuffer = b"x" * buffered
        self.offset = offset
        self._tempDataBuffer = [b"y" * queued] if queued else []
        self._tempDataLen = queued


class Protocol(WebSocketProtocol):
    """The patched protocol class, with autobahn's sending and dropping recorded."""

    def __init__(self, transport):
        self.transport = transport
        self.state = self.STATE_OPEN
        self.path = b"/ocpp/CP-1"
        self.client_addr = ["127.0.0.1", 50000]
        self.sent: list[bytes] = []
        self.dropped: list[bool] = []

    def sendMessage(self, payload, isBinary=False, **kwargs):
        self.sent.append(payload)

    def dropConnection(self, abort=False):
        self.dropped.append(abort)


@pytest.fixture(autouse=True)
def _installed(settings):
    daphne_compat.install()
    settings.OCPP_SEND_BUFFER_MAX_BYTES = 64 * 1024


def test_the_unsent_bytes_are_the_buffer_past_its_offset_plus_the_queued_writes():
    assert daphne_compat.send_buffer_bytes(Transport(100, offset=40, queued=7)) == 67
    assert daphne_compat.send_buffer_bytes(object()) == 0


def test_a_frame_is_sent_while_the_peer_keeps_up():
    protocol = Protocol(Transport(64 * 1024))  # at the limit, not past it
    protocol.serverSend('[3,"1",{}]')
    assert (protocol.sent, protocol.dropped) == ([b'[3,"1",{}]'], [])


def test_past_the_limit_the_connection_is_aborted_once_and_nothing_more_is_buffered(caplog):
    protocol = Protocol(Transport(60 * 1024, queued=8 * 1024))
    protocol.serverSend('[3,"1",{}]')
    protocol.serverSend('[3,"2",{}]')
    assert (protocol.sent, protocol.dropped) == ([], [True])
    assert "/ocpp/CP-1: closed: it does not read (69632 bytes waiting to be sent, limit 65536)" in caplog.text


def test_no_limit_when_it_is_zero(settings):
    settings.OCPP_SEND_BUFFER_MAX_BYTES = 0
    protocol = Protocol(Transport(10 * 1024 * 1024))
    protocol.serverSend("x")
    assert (protocol.sent, protocol.dropped) == ([b"x"], [])


def test_incoming_frames_no_longer_postpone_the_ping():
    protocol = Protocol(Transport(0))
    protocol.muted = False
    protocol.last_ping = 100.0
    queued = []
    protocol.application_queue = type("Q", (), {"put_nowait": staticmethod(queued.append)})()
    protocol.onMessage(b'[2,"1","Heartbeat",{}]', False)
    assert protocol.last_ping == 100.0
    assert queued == [{"type": "websocket.receive", "text": '[2,"1","Heartbeat",{}]'}]
