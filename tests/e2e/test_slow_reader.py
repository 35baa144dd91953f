"""docs/reliability.md case 35 (issue 13, acceptance 5): a charger that stops reading is disconnected within a
configured bound, and the memory the server held for it is given back.

A real server process and a raw TCP client that does the WebSocket handshake, boots, then keeps sending
Heartbeats and never reads again, with a 4 KiB receive buffer (so what the server sends piles up on its
side). Two bounds, each shown alone:
- the ping bound: WS_PING_INTERVAL_S + WS_PING_TIMEOUT_S (here 1 + 2 s); the charger's own traffic no longer
  postpones pings, and only a pong answers one (cpms/daphne_compat.py);
- the buffer bound: OCPP_SEND_BUFFER_MAX_BYTES of unsent data (here 64 KiB, with pings far off): a 200 KB
  command that the charger does not read closes it at the next frame sent.
A charger that reads, with the same settings, stays connected.
"""

import asyncio
import base64
import json
import os
import socket
import time
from pathlib import Path

import pytest
import websockets

from stations.enums import StationEventKind
from stations.models import ChargingStation, StationEvent
from tests.e2e.conftest import _process_env, server_process
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def frame(text: str) -> bytes:
    """A masked client text frame (RFC 6455 5.2)."""
    payload = text.encode()
    mask = os.urandom(4)
    header = bytearray([0x81])
    if len(payload) < 126:
        header.append(0x80 | len(payload))
    else:
        header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    return bytes(header) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class DeafCharger:
    """A 1.6 charger that connects, boots and then sends without ever reading."""

    def __init__(self, server, identity: str):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((server.host, server.port))
        token = base64.b64encode(f"{identity}:{DEFAULT_STATION_PASSWORD}".encode()).decode()
        self.sock.sendall(
            (
                f"GET /ocpp/{identity} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
                f"Authorization: Basic {token}\r\n\r\n"
            ).encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += self.sock.recv(1)
        assert answer.startswith(b"HTTP/1.1 101"), answer
        boot = {"chargePointVendor": "Deaf", "chargePointModel": "NoRead"}
        self.send(json.dumps([2, "boot", "BootNotification", boot]))
        self.sent = 0

    def send(self, text: str) -> None:
        self.sock.sendall(frame(text))

    def heartbeat_until_closed(self, timeout_s: float) -> float | None:
        """Heartbeats (10/s, under the flood limit) until the server's reset; seconds taken, or None."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            try:
                self.send(json.dumps([2, f"hb{self.sent}", "Heartbeat", {}]))
            except (ConnectionResetError, BrokenPipeError):
                return time.monotonic() - started
            self.sent += 1
            time.sleep(0.1)
        return None

    def close(self) -> None:
        self.sock.close()


def wait_connected(identity: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ChargingStation.objects.filter(identity=identity, is_connected=True).exists():
        assert time.monotonic() < deadline, f"{identity} never connected"
        time.sleep(0.1)


def serve(request, tmp_path, **env):
    return server_process({**_process_env(request), **env}, tmp_path / "server.log")


def test_rel_35_a_charger_that_keeps_sending_but_never_reads_is_closed_within_the_ping_bound(
    request, transactional_db, tmp_path
):
    ChargingStationFactory(identity="DEAF-PING")
    with serve(request, tmp_path, WS_PING_INTERVAL_S="1", WS_PING_TIMEOUT_S="2") as server:
        baseline_kib = rss_kib(server.process.pid)
        charger = DeafCharger(server, "DEAF-PING")
        wait_connected("DEAF-PING")
        closed_after_s = charger.heartbeat_until_closed(timeout_s=20)
        charger.close()
        # 1 s to the first ping, 2 s for its pong, up to 1 s of Daphne's timeout sweep, and the reset's trip.
        assert closed_after_s is not None and closed_after_s < 6, (closed_after_s, server.log_tail())
        deadline = time.monotonic() + 10
        while ChargingStation.objects.get(identity="DEAF-PING").is_connected:
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.1)
        assert StationEvent.objects.filter(
            station__identity="DEAF-PING", kind=StationEventKind.DISCONNECTED
        ).exists()
        assert rss_kib(server.process.pid) < baseline_kib + 8 * 1024


def test_a_charger_that_reads_stays_connected_across_pings(request, transactional_db, tmp_path):
    ChargingStationFactory(identity="READER-01")
    with serve(request, tmp_path, WS_PING_INTERVAL_S="1", WS_PING_TIMEOUT_S="2") as server:

        async def scenario() -> int:
            headers = {
                "Authorization": "Basic "
                + base64.b64encode(f"READER-01:{DEFAULT_STATION_PASSWORD}".encode()).decode()
            }
            async with websockets.connect(
                f"{server.ws_url}/READER-01", subprotocols=["ocpp1.6"], additional_headers=headers
            ) as ws:
                await ws.send(
                    json.dumps(
                        [2, "boot", "BootNotification", {"chargePointVendor": "R", "chargePointModel": "R"}]
                    )
                )
                await ws.recv()
                answered = 0
                for n in range(60):  # 6 s: six ping intervals, each longer than nothing but traffic
                    await ws.send(json.dumps([2, f"hb{n}", "Heartbeat", {}]))
                    await ws.recv()
                    answered += 1
                    await asyncio.sleep(0.1)
                return answered

        assert asyncio.run(scenario()) == 60
        assert "ping timeout" not in server.log_path.read_text().lower()
