"""uvicorn as the server (`python -m cpms.server` with CPMS_ASGI_SERVER=uvicorn, cpms/uvicorn_compat.py): a real
server process shows what the Daphne tests show (test_ocpp_*, test_transport_oddities.py, test_slow_reader.py,
test_commands_two_processes.py): chargers of both versions boot, refusals carry their HTTP status, oversized
and binary frames are closed with 1009 and 1003, a charger that stops reading is disconnected within
WS_PING_INTERVAL_S + WS_PING_TIMEOUT_S or at OCPP_SEND_BUFFER_MAX_BYTES, one that reads stays, and a command
from the API reaches its charger."""

import asyncio
import base64
import json
import socket
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from stations.enums import StationEventKind
from stations.models import ChargingStation, Command, SecurityEvent, StationEvent
from tests.e2e.conftest import _process_env, server_process
from tests.e2e.helpers import api_post, operator_token
from tests.e2e.test_slow_reader import DeafCharger, rss_kib, wait_connected
from tests.e2e.test_transport_oddities import ADDRESS_LIMIT, ODD_PATHS, status_line
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

MAX_FRAME_BYTES = 4096


@pytest.fixture
def uvicorn_serve(request, transactional_db, tmp_path):
    """`serve(**env)`: a uvicorn server process on this test's database, with `env` over the test's own."""

    def serve(**env):
        return server_process(
            {**_process_env(request), "CPMS_ASGI_SERVER": "uvicorn", **env}, tmp_path / "server.log"
        )

    return serve


def basic(identity: str, password: str = DEFAULT_STATION_PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{identity}:{password}".encode()).decode()}


def handshake_status(
    server, identity: str, *, password=DEFAULT_STATION_PASSWORD, subprotocol="ocpp1.6"
) -> int:
    """The HTTP status a raw WebSocket handshake gets."""
    request = (
        f"GET /ocpp/{identity} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        + (f"Sec-WebSocket-Protocol: {subprotocol}\r\n" if subprotocol else "")
        + f"Authorization: {basic(identity, password)['Authorization']}\r\n\r\n"
    )
    with socket.create_connection((server.host, server.port), timeout=20) as sock:
        sock.sendall(request.encode("ascii"))
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


BOOTS = {
    "ocpp1.6": {"chargePointVendor": "Uv", "chargePointModel": "Corn"},
    "ocpp2.0.1": {"chargingStation": {"vendorName": "Uv", "model": "Corn"}, "reason": "PowerUp"},
}


async def booted(server, identity: str, subprotocol: str):
    ws = await websockets.connect(
        f"{server.ws_url}/{identity}", subprotocols=[subprotocol], additional_headers=basic(identity)
    )
    assert ws.subprotocol == subprotocol
    await ws.send(json.dumps([2, "boot-1", "BootNotification", BOOTS[subprotocol]]))
    answer = json.loads(await asyncio.wait_for(ws.recv(), 15))
    return ws, answer


def test_uvicorn_serves_a_16_and_a_201_charger_that_boot_and_are_answered(uvicorn_serve):
    ChargingStationFactory(identity="UV-16")
    ChargingStationFactory(identity="UV-201")
    with uvicorn_serve() as server:

        async def scenario():
            answers = {}
            for identity, subprotocol in (("UV-16", "ocpp1.6"), ("UV-201", "ocpp2.0.1")):
                ws, answer = await booted(server, identity, subprotocol)
                await ws.send(json.dumps([2, "hb-1", "Heartbeat", {}]))
                heartbeat = json.loads(await asyncio.wait_for(ws.recv(), 15))
                await ws.close()
                answers[identity] = (answer, heartbeat)
            return answers

        answers = asyncio.run(scenario())
    for identity in ("UV-16", "UV-201"):
        (kind, unique_id, payload), (hb_kind, hb_id, hb_payload) = answers[identity]
        assert (kind, unique_id, payload["status"]) == (3, "boot-1", "Accepted"), answers[identity]
        assert (hb_kind, hb_id, list(hb_payload)) == (3, "hb-1", ["currentTime"])
    assert set(
        StationEvent.objects.filter(kind=StationEventKind.CONNECTED).values_list(
            "station__identity", flat=True
        )
    ) == {"UV-16", "UV-201"}
    # The server's log says nothing went wrong.
    assert " ERROR " not in server.log_path.read_text()


def test_uvicorn_refusals_carry_their_http_status(uvicorn_serve):
    ChargingStationFactory(identity="UV-OK")
    ChargingStationFactory(identity="UV-TLS", security_profile=2)
    with uvicorn_serve(OCPP_HANDSHAKE_FAILURES_PER_ADDRESS="4") as server:
        statuses = [
            handshake_status(server, "UV-NOBODY"),  # unknown identity
            handshake_status(server, "UV-OK", password="wrong-password-123"),
            handshake_status(server, "UV-TLS"),  # profile 2 required, plain ws reached 1
            handshake_status(server, "UV-OK", subprotocol=None),  # no OCPP subprotocol
        ]
        # Failed handshakes from this address past the limit: even the right password is refused.
        tries = [handshake_status(server, "UV-NOBODY-2") for _ in range(4)]
        throttled = handshake_status(server, "UV-OK")
    assert statuses == [404, 401, 403, 400]
    assert 429 in tries and throttled == 429, (tries, throttled)


def test_uvicorn_refuses_odd_identities_with_404_logged_and_throttled(uvicorn_serve):
    """test_transport_oddities.py's case 46 under uvicorn: the same statuses and security events (uvicorn's
    status line carries the standard reason phrase, "Not Found", where Daphne's patch puts the body)."""
    ChargingStationFactory(identity="CP-1")
    with uvicorn_serve(OCPP_HANDSHAKE_FAILURES_PER_ADDRESS=str(ADDRESS_LIMIT)) as server:
        lines = [status_line(server, path) for path, _, _ in ODD_PATHS]
        assert lines == ["HTTP/1.1 404 Not Found"] * len(ODD_PATHS)
        events = list(
            SecurityEvent.objects.order_by("id").values_list("identity", "kind", "detail", "remote_addr")
        )
        assert events == [
            (identity, "unknown_identity", detail, "127.0.0.1") for _, identity, detail in ODD_PATHS
        ]
        assert status_line(server, "/ocpp/A%2FB").startswith("HTTP/1.1 404")
        assert status_line(server, "/ocpp/CP-1").startswith("HTTP/1.1 429")
    assert SecurityEvent.objects.count() == ADDRESS_LIMIT


def test_uvicorn_closes_an_oversized_frame_with_1009_and_a_binary_frame_with_1003(uvicorn_serve):
    ChargingStationFactory(identity="UV-BIG")
    ChargingStationFactory(identity="UV-BIN")
    with uvicorn_serve(OCPP_MAX_FRAME_BYTES=str(MAX_FRAME_BYTES)) as server:

        async def close_code(identity: str, frame) -> int:
            ws, answer = await booted(server, identity, "ocpp1.6")
            assert answer[2]["status"] == "Accepted"
            await ws.send(frame)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 15)
            return ws.close_code

        big = json.dumps([2, "big", "DataTransfer", {"vendorId": "V", "data": "x" * MAX_FRAME_BYTES}])
        codes = asyncio.run(close_code("UV-BIG", big)), asyncio.run(close_code("UV-BIN", b"\x00\x01binary"))
    assert codes == (1009, 1003)


def test_uvicorn_disconnects_a_charger_that_sends_but_never_reads_within_the_ping_bound(uvicorn_serve):
    ChargingStationFactory(identity="UV-DEAF")
    with uvicorn_serve(WS_PING_INTERVAL_S="1", WS_PING_TIMEOUT_S="2") as server:
        baseline_kib = rss_kib(server.process.pid)
        charger = DeafCharger(server, "UV-DEAF")
        wait_connected("UV-DEAF")
        closed_after_s = charger.heartbeat_until_closed(timeout_s=20)
        charger.close()
        # 1 s to the first ping, 2 s for its pong, and the reset's trip: well under the 20 s given.
        assert closed_after_s is not None and closed_after_s < 6, (closed_after_s, server.log_tail())
        deadline = time.monotonic() + 10
        while ChargingStation.objects.get(identity="UV-DEAF").is_connected:
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.1)
        assert rss_kib(server.process.pid) < baseline_kib + 8 * 1024
        log = server.log_path.read_text()
    assert "/ocpp/UV-DEAF: no pong within the ping timeout: closed" in log
    assert StationEvent.objects.filter(
        station__identity="UV-DEAF", kind=StationEventKind.DISCONNECTED
    ).exists()


def test_uvicorn_aborts_a_charger_that_does_not_read_a_command_past_the_send_buffer_bound(uvicorn_serve):
    station = ChargingStationFactory(identity="UV-FULL")
    token = operator_token(station.organisation, "uv-operator")
    # Pings far off: only the buffer bound can end this connection.
    with uvicorn_serve(OCPP_SEND_BUFFER_MAX_BYTES="65536", WS_PING_INTERVAL_S="300") as server:
        charger = DeafCharger(server, "UV-FULL")
        wait_connected("UV-FULL")
        # 2 MB commands that the charger never reads (Django takes 2.5 MB per request): the kernel holds ~4 MB
        # for a loopback socket with a zero window, so the third one leaves the rest in the process.
        statuses = []
        for n in range(4):
            status, _body = api_post(
                server,
                "/api/v1/stations/UV-FULL/ocpp/DataTransfer/?timeout=2",
                {"vendorId": "Bulk", "messageId": str(n), "data": "z" * 2_000_000},
                token=token,
            )
            statuses.append(status)
            if "closed: it does not read" in server.log_path.read_text():
                break
        closed_after_s = charger.heartbeat_until_closed(timeout_s=15)
        charger.close()
        log = server.log_path.read_text()
    assert 200 not in statuses, statuses  # never answered
    assert len(statuses) >= 2, statuses  # the kernel's buffers took the first
    assert closed_after_s is not None, log[-3000:]
    assert "/ocpp/UV-FULL: closed: it does not read" in log
    assert "limit 65536" in log


def test_uvicorn_keeps_a_charger_that_reads_across_pings(uvicorn_serve):
    ChargingStationFactory(identity="UV-READER")
    with uvicorn_serve(WS_PING_INTERVAL_S="1", WS_PING_TIMEOUT_S="2") as server:

        async def scenario() -> int:
            ws, _answer = await booted(server, "UV-READER", "ocpp1.6")
            answered = 0
            for n in range(60):  # 6 s: six ping intervals
                await ws.send(json.dumps([2, f"hb{n}", "Heartbeat", {}]))
                await ws.recv()
                answered += 1
                await asyncio.sleep(0.1)
            await ws.close()
            return answered

        assert asyncio.run(scenario()) == 60
        log = server.log_path.read_text()
    assert "ping timeout" not in log
    assert "does not read" not in log


def test_uvicorn_delivers_a_command_from_the_api_to_its_charger(uvicorn_serve):
    station = ChargingStationFactory(identity="UV-CMD")
    token = operator_token(station.organisation, "uv-cmd")
    with uvicorn_serve() as server:

        async def charger(received: list):
            ws, answer = await booted(server, "UV-CMD", "ocpp1.6")
            assert answer[2]["status"] == "Accepted"
            call = json.loads(await asyncio.wait_for(ws.recv(), 30))
            received.append(call)
            key = {"key": "HeartbeatInterval", "readonly": False, "value": "300"}
            await ws.send(json.dumps([3, call[1], {"configurationKey": [key]}]))
            await asyncio.sleep(1)
            await ws.close()

        async def scenario():
            received: list = []
            task = asyncio.create_task(charger(received))
            await asyncio.to_thread(wait_connected, "UV-CMD")
            status, body = await asyncio.to_thread(
                api_post,
                server,
                "/api/v1/stations/UV-CMD/ocpp/GetConfiguration/?timeout=15",
                {"key": ["HeartbeatInterval"]},
                token=token,
            )
            await task
            return received, status, body

        received, status, body = asyncio.run(scenario())
    [(kind, _, action, payload)] = received
    assert (kind, action, payload) == (2, "GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert status == 200, body
    assert body["response"] == {
        "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]
    }
    command = Command.objects.get(pk=body["command"]["id"])
    assert (command.status, command.source) == ("answered", "api")
