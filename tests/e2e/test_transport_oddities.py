"""docs/reliability.md case 46 against a real server process (`python -m cpms.server`, Daphne): the status
line a charger reads for odd identities, the security log, the handshake throttle, and a binary frame's close
code. The same rules in-process, with more cases: tests/ocpp/test_transport_oddities.py."""

import asyncio
import base64
import socket
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from stations.models import ChargingStation, SecurityEvent
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

# Failed handshakes one address may make per minute before 429 (the server reads it at start).
ADDRESS_LIMIT = 8


def status_line(server, raw_path: str, *, identity: str = "CP-1") -> str:
    """The HTTP status line of a WebSocket handshake for `raw_path`, sent byte for byte (client libraries
    normalise or refuse such paths)."""
    token = base64.b64encode(f"{identity}:{DEFAULT_STATION_PASSWORD}".encode()).decode()
    request = (
        f"GET {raw_path} HTTP/1.1\r\n"
        f"Host: {server.host}:{server.port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: ocpp1.6\r\n"
        f"Authorization: Basic {token}\r\n"
        "\r\n"
    )
    with socket.create_connection((server.host, server.port), timeout=20) as sock:
        sock.sendall(request.encode("ascii"))
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode("latin-1")


@pytest.fixture
def throttling_server(request, monkeypatch, transactional_db):
    monkeypatch.setenv("OCPP_HANDSHAKE_FAILURES_PER_ADDRESS", str(ADDRESS_LIMIT))
    return request.getfixturevalue("cpms_server")


ODD_PATHS = [
    ("/ocpp/CP%2F1", "CP/1", "malformed identity: contains '/'"),
    ("/ocpp/", "", "malformed identity: empty"),
    ("/ocpp/" + "X" * 49, "X" * 49, "malformed identity: longer than 48 characters"),
    ("/ocpp/CP%001", "CP\\x001", "malformed identity: control characters"),
    ("/ocpp/CP%FF1", "CP%FF1", "malformed identity: not UTF-8"),
    ("/ocpp/..", "..", "handshake for an unregistered identity"),
    ("/ocpp/CP-1%2F", "CP-1/", "malformed identity: contains '/'"),
]


def test_rel_46_odd_identities_404_logged_and_throttled_by_a_real_server(throttling_server):
    ChargingStationFactory(identity="CP-1")
    lines = [status_line(throttling_server, path) for path, _, _ in ODD_PATHS]
    assert lines == ["HTTP/1.1 404 Unknown charging station"] * len(ODD_PATHS)
    events = list(
        SecurityEvent.objects.order_by("id").values_list("identity", "kind", "detail", "remote_addr")
    )
    assert events == [
        (identity, "unknown_identity", detail, "127.0.0.1") for _, identity, detail in ODD_PATHS
    ]
    # Counted by the throttle: one more failure reaches the limit, and then even the registered charger with
    # its right password is refused from this address until the minute has passed.
    assert status_line(throttling_server, "/ocpp/A%2FB").startswith("HTTP/1.1 404")
    assert status_line(throttling_server, "/ocpp/CP-1").startswith("HTTP/1.1 429")
    assert SecurityEvent.objects.count() == ADDRESS_LIMIT
    # Not an OCPP path at all: 404 too, never a 500.
    assert status_line(throttling_server, "/elsewhere").startswith("HTTP/1.1 404")
    assert "Traceback" not in throttling_server.log_tail(400)


def test_rel_46_binary_frame_closes_1003_without_traceback(cpms_server):
    """A binary frame got 1011 and a traceback (with the frame log on, as the server runs by default)."""
    ChargingStationFactory(identity="BIN-1")
    token = base64.b64encode(f"BIN-1:{DEFAULT_STATION_PASSWORD}".encode()).decode()

    async def scenario():
        ws = await connect(
            f"{cpms_server.ws_url}/BIN-1",
            subprotocols=["ocpp1.6"],
            additional_headers={"Authorization": f"Basic {token}"},
            open_timeout=20,
        )
        await ws.send(b'[2,"h1","Heartbeat",{}]')
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), timeout=20)
        return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(scenario()) == 1003
    event = SecurityEvent.objects.get()
    assert (event.identity, event.kind) == ("BIN-1", "protocol_violation")
    assert "Traceback" not in cpms_server.log_tail(400)
    # The server records the disconnect after the close: bounded wait for it.
    for _ in range(100):
        if not ChargingStation.objects.get(identity="BIN-1").is_connected:
            break
        time.sleep(0.1)
    assert ChargingStation.objects.get(identity="BIN-1").is_connected is False
