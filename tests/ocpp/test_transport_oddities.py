"""docs/reliability.md case 46 in-process (through cpms.asgi's router): binary frames, identities with encoded
slashes and other transport oddities get a clear refusal, are logged and throttled like any failed handshake,
and never raise. The same against a real server process: tests/e2e/test_transport_oddities.py."""

import asyncio
import base64
import json

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from cpms.asgi import application
from cpms.ocpp.throttle import HandshakeThrottle, handshake_throttle
from stations.models import ChargingStation, SecurityEvent
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

ADDRESS = "10.4.6.46"
# Generous: the test machine is shared, and a refusal is checked for what it is, not for its speed.
TIMEOUT_S = 20


@pytest.fixture(autouse=True)
def _fresh_throttle():
    handshake_throttle._failures.clear()
    yield
    handshake_throttle._failures.clear()


def basic(identity: str, password: str = DEFAULT_STATION_PASSWORD) -> tuple[bytes, bytes]:
    return (b"authorization", b"Basic " + base64.b64encode(f"{identity}:{password}".encode()))


def communicator(raw_path: str, *, headers=(), subprotocols=("ocpp1.6",)) -> WebsocketCommunicator:
    """A charger's handshake for `raw_path` as a server hands it over: `path` percent-decoded (as Daphne
    and uvicorn do, invalid UTF-8 replaced) and `raw_path` as sent."""
    comm = WebsocketCommunicator(
        application, raw_path, headers=list(headers), subprotocols=list(subprotocols)
    )
    comm.scope["raw_path"] = raw_path.encode("ascii")
    comm.scope["extensions"] = {"websocket.http.response": {}}
    comm.scope["client"] = [ADDRESS, 5046]
    return comm


async def handshake(comm: WebsocketCommunicator):
    """('accepted', subprotocol) or ('refused', http status, body)."""
    await comm.send_input({"type": "websocket.connect"})
    first = await comm.receive_output(timeout=TIMEOUT_S)
    if first["type"] == "websocket.accept":
        return "accepted", first.get("subprotocol")
    assert first["type"] == "websocket.http.response.start", first
    body = await comm.receive_output(timeout=TIMEOUT_S)
    assert body["type"] == "websocket.http.response.body"
    return "refused", first["status"], body["body"].decode()


def run(coro):
    return asyncio.run(coro)


# (raw path, identity as recorded in the security log, its detail)
ODD_IDENTITIES = [
    ("/ocpp/CP%2F1", "CP/1", "malformed identity: contains '/'"),
    ("/ocpp/CP%2f1", "CP/1", "malformed identity: contains '/'"),
    ("/ocpp/CP-1%2F", "CP-1/", "malformed identity: contains '/'"),
    ("/ocpp/CP/1", "CP/1", "malformed identity: contains '/'"),
    ("/ocpp/../admin", "../admin", "malformed identity: contains '/'"),
    ("/ocpp/", "", "malformed identity: empty"),
    ("/ocpp", "", "malformed identity: empty"),
    ("/ocpp/" + "X" * 49, "X" * 49, "malformed identity: longer than 48 characters"),
    ("/ocpp/" + "%C3%A9" * 49, "\u00e9" * 49, "malformed identity: longer than 48 characters"),
    ("/ocpp/CP%001", "CP\\x001", "malformed identity: control characters"),
    ("/ocpp/CP%0D%0A1", "CP\\r\\n1", "malformed identity: control characters"),
    ("/ocpp/CP%FF%FE1", "CP%FF%FE1", "malformed identity: not UTF-8"),
    ("/ocpp/CP%C31", "CP%C31", "malformed identity: not UTF-8"),
    ("/ocpp/CP%zz1", "CP%zz1", "handshake for an unregistered identity"),
    ("/ocpp/..", "..", "handshake for an unregistered identity"),
    ("/ocpp/%2E%2E", "..", "handshake for an unregistered identity"),
]


@pytest.mark.parametrize(("raw_path", "identity", "detail"), ODD_IDENTITIES)
def test_rel_46_odd_identity_is_404_logged_and_counted(raw_path, identity, detail):
    assert run(handshake(communicator(raw_path, headers=[basic("CP-1")]))) == (
        "refused",
        404,
        "Unknown charging station",
    )
    event = SecurityEvent.objects.get()
    assert (event.identity, event.kind, event.detail, event.remote_addr, event.station_id) == (
        identity,
        "unknown_identity",
        detail,
        ADDRESS,
        None,
    )
    assert len(handshake_throttle._failures[("address", ADDRESS)]) == 1  # counted by the throttle
    assert not ChargingStation.objects.exists()


def test_rel_46_encoded_slash_never_reaches_the_station_it_ends_like(settings):
    """`CP-1%2F` is not `CP-1/` (a trailing slash the router allows): the encoded slash is part of the
    identity, so the registered CP-1 with its right password is not connected by it."""
    ChargingStationFactory(identity="CP-1")
    assert run(handshake(communicator("/ocpp/CP-1%2F", headers=[basic("CP-1")])))[:2] == ("refused", 404)

    async def trailing_slash():
        comm = communicator("/ocpp/CP-1/", headers=[basic("CP-1")])
        result = await handshake(comm)
        await comm.disconnect(timeout=TIMEOUT_S)
        return result

    assert run(trailing_slash()) == ("accepted", "ocpp1.6")


def test_rel_46_percent_encoded_identity_is_decoded():
    """docs/contract.md#url-and-identity: the identity is URL-decoded."""
    ChargingStationFactory(identity="Zäpf stelle")

    async def scenario():
        comm = communicator("/ocpp/Z%C3%A4pf%20stelle", headers=[basic("Zäpf stelle")])
        result = await handshake(comm)
        await comm.disconnect(timeout=TIMEOUT_S)
        return result

    assert run(scenario()) == ("accepted", "ocpp1.6")


def test_rel_46_odd_identities_are_throttled_like_any_failed_handshake(settings):
    """Past OCPP_HANDSHAKE_FAILURES_PER_ADDRESS malformed handshakes, that address gets 429 (even for a
    registered charger with the right password); another address is unaffected."""
    settings.OCPP_HANDSHAKE_FAILURES_PER_ADDRESS = 3
    ChargingStationFactory(identity="CP-OK")
    paths = ["/ocpp/A%2FB", "/ocpp/", "/ocpp/CP%00"]
    assert [run(handshake(communicator(p)))[:2] for p in paths] == [("refused", 404)] * 3
    assert run(handshake(communicator("/ocpp/A%2FB")))[:2] == ("refused", 429)
    assert run(handshake(communicator("/ocpp/CP-OK", headers=[basic("CP-OK")])))[:2] == ("refused", 429)
    assert SecurityEvent.objects.count() == 3

    async def elsewhere():
        comm = communicator("/ocpp/CP-OK", headers=[basic("CP-OK")])
        comm.scope["client"] = ["10.9.9.9", 4444]
        result = await handshake(comm)
        await comm.disconnect(timeout=TIMEOUT_S)
        return result

    assert run(elsewhere()) == ("accepted", "ocpp1.6")


def test_rel_46_other_websocket_paths_are_404_without_a_station_lookup():
    """Not an OCPP URL at all: a plain 404 (no identity, so no security event), never a router error."""
    for raw_path in ["/", "/ocppx/CP-1", "/ws/other/", "/%2F"]:
        assert run(handshake(communicator(raw_path))) == ("refused", 404, "Not found")
    assert not SecurityEvent.objects.exists()


def test_rel_46_binary_frame_closes_1003_logged_without_traceback(caplog):
    """OCPP-J is text frames only. A binary frame closes the connection with 1003 (RFC 6455 7.4.1,
    unsupported data), as SteVe does; a security event records why; nothing raises."""
    station = ChargingStationFactory(identity="CP-BIN")

    async def scenario():
        comm = communicator("/ocpp/CP-BIN", headers=[basic("CP-BIN")])
        assert await handshake(comm) == ("accepted", "ocpp1.6")
        await comm.send_to(bytes_data=b'[2,"h1","Heartbeat",{}]')
        closed = await comm.receive_output(timeout=TIMEOUT_S)
        await comm.send_input({"type": "websocket.disconnect", "code": 1003})
        await comm.wait(timeout=TIMEOUT_S)
        return closed

    closed = run(scenario())
    assert closed == {
        "type": "websocket.close",
        "code": 1003,
        "reason": "Binary frames are not supported: OCPP-J uses text frames",
    }
    event = SecurityEvent.objects.get()
    assert (event.station_id, event.kind, event.detail) == (
        station.pk,
        "protocol_violation",
        "binary WebSocket frame (23 bytes); OCPP-J uses text frames only: closed with 1003",
    )
    assert "Traceback" not in caplog.text
    station.refresh_from_db()
    assert station.is_connected is False


def test_rel_46_binary_frame_is_refused_with_the_message_log_on(settings, caplog):
    """The failure found from outside: with the frame log on, a binary frame raised in the log and the server
    closed the socket with 1011. It must be refused the same way as with the log off."""
    settings.OCPP_MESSAGE_LOG = "all"
    ChargingStationFactory(identity="CP-BIN2")

    async def scenario():
        comm = communicator("/ocpp/CP-BIN2", headers=[basic("CP-BIN2")])
        assert await handshake(comm) == ("accepted", "ocpp1.6")
        await comm.send_to(bytes_data=b"\x00\xff binary garbage")
        closed = await comm.receive_output(timeout=TIMEOUT_S)
        await comm.send_input({"type": "websocket.disconnect", "code": 1003})
        await comm.wait(timeout=TIMEOUT_S)
        return closed

    assert run(scenario())["code"] == 1003
    assert "Traceback" not in caplog.text


def session_cookie(user) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (
        b"cookie",
        f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode(),
    )


def test_rel_46_live_status_socket_ignores_binary_and_garbage():
    """The portal's live socket is read-only: whatever a browser sends (binary, not JSON) is ignored, the
    socket stays open and nothing raises."""
    cookie = session_cookie(UserFactory(username="watcher"))

    async def scenario():
        comm = WebsocketCommunicator(
            application, "/ws/live/", headers=[(b"origin", b"http://localhost"), cookie]
        )
        connected, _ = await comm.connect(timeout=TIMEOUT_S)
        assert connected
        hello = json.loads(await comm.receive_from(timeout=TIMEOUT_S))
        await comm.send_to(bytes_data=b"\x00\x01binary")
        await comm.send_to(text_data="not json {")
        quiet = await comm.receive_nothing(timeout=0.5)
        await comm.disconnect(timeout=TIMEOUT_S)
        return hello["type"], quiet

    assert run(scenario()) == ("hello", True)


def test_throttle_forgets_stale_keys():
    """One-off identities (each malformed path is its own key) must not pile up in memory for ever."""
    throttle = HandshakeThrottle()
    for n in range(1000):
        throttle.failed(identity=f"odd-{n}", address="1.2.3.4", now=100.0)
    throttle.failed(identity="late", address="5.6.7.8", now=300.0)
    assert set(throttle._failures) == {("pair", "late", "5.6.7.8"), ("address", "5.6.7.8")}
