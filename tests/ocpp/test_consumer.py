"""The OCPP WebSocket endpoint in-process (channels WebsocketCommunicator): handshake rules of
docs/contract.md and docs/reliability.md section A. The same rules against a real Daphne process are in
tests/e2e."""

import asyncio
import base64
import logging

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from accounts.models import Organisation
from cpms.ocpp.chargepoint import run_db
from cpms.ocpp.routing import websocket_urlpatterns
from cpms.ocpp.throttle import HandshakeThrottle, handshake_throttle
from stations.models import ChargingStation, SecurityEvent, StationEvent
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory

pytestmark = pytest.mark.django_db(transaction=True)

application = URLRouter(websocket_urlpatterns)


@pytest.fixture(autouse=True)
def _fresh_throttle():
    """Every test starts with no failed handshakes on record (the throttle lives in the process)."""
    handshake_throttle._failures.clear()
    yield
    handshake_throttle._failures.clear()


def basic(username: str, password: str) -> tuple[bytes, bytes]:
    return (b"authorization", b"Basic " + base64.b64encode(f"{username}:{password}".encode()))


def communicator(identity: str, *, headers=(), subprotocols=("ocpp1.6",)) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(
        application, f"/ocpp/{identity}", headers=list(headers), subprotocols=list(subprotocols)
    )
    comm.scope["extensions"] = {"websocket.http.response": {}}
    comm.scope["client"] = ["10.1.2.3", 5555]
    return comm


async def handshake(comm: WebsocketCommunicator):
    """('accepted', subprotocol) or ('refused', http status)."""
    await comm.send_input({"type": "websocket.connect"})
    first = await comm.receive_output(timeout=5)
    if first["type"] == "websocket.accept":
        return "accepted", first.get("subprotocol")
    assert first["type"] == "websocket.http.response.start", first
    body = await comm.receive_output(timeout=5)
    assert body["type"] == "websocket.http.response.body"
    return "refused", first["status"]


def station_flag(*, pk: int, field: str):
    return ChargingStation.objects.values_list(field, flat=True).get(pk=pk)


def run(coro):
    return asyncio.run(coro)


def test_rel_01_unknown_identity_404_no_row_and_security_log():
    async def scenario():
        return await handshake(communicator("GHOST", headers=[basic("GHOST", "whatever-1")]))

    assert run(scenario()) == ("refused", 404)
    assert not ChargingStation.objects.filter(identity="GHOST").exists()
    event = SecurityEvent.objects.get()
    assert (event.identity, event.kind, event.remote_addr) == ("GHOST", "unknown_identity", "10.1.2.3")


def test_rel_01_auto_registration_creates_pending_station_and_never_accepts(db):
    org = Organisation.objects.create(name="Auto", slug="auto", auto_register_stations=True)

    async def scenario():
        comm = communicator("NEWBIE", headers=[basic("NEWBIE", "first-password-1")])
        assert await handshake(comm) == ("accepted", "ocpp1.6")
        await comm.send_to(
            text_data='[2,"b1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
        )
        boot = await comm.receive_json_from(timeout=5)
        await comm.send_to(text_data='[2,"h1","Heartbeat",{}]')
        heartbeat = await comm.receive_json_from(timeout=5)
        await comm.disconnect(timeout=10)
        return boot, heartbeat

    boot, heartbeat = run(scenario())
    assert boot[2]["status"] == "Pending"
    assert heartbeat[:3] == [4, "h1", "SecurityError"]
    station = ChargingStation.objects.get(identity="NEWBIE")
    assert (station.organisation_id, station.registration_status) == (org.pk, "Pending")
    # Trust on first use: the password it presented is now required.
    assert run(handshake(communicator("NEWBIE", headers=[basic("NEWBIE", "another-password")]))) == (
        "refused",
        401,
    )


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [basic("CP-A", "wrong-password")],
        [basic("SOMEONE-ELSE", DEFAULT_STATION_PASSWORD)],
        [(b"authorization", b"Basic !!!not-base64")],
        [(b"authorization", b"Bearer abc")],
    ],
    ids=["missing", "wrong-password", "username-not-identity", "garbage", "not-basic"],
)
def test_rel_02_bad_credentials_401_and_password_never_logged(headers, caplog):
    ChargingStationFactory(identity="CP-A")
    with caplog.at_level(logging.DEBUG):
        assert run(handshake(communicator("CP-A", headers=headers))) == ("refused", 401)
    assert SecurityEvent.objects.get().kind == "auth_failed"
    assert "wrong-password" not in caplog.text
    assert DEFAULT_STATION_PASSWORD not in caplog.text
    assert ChargingStation.objects.get(identity="CP-A").is_connected is False


def test_station_without_password_refused_unless_profile_0():
    ChargingStationFactory(identity="NOPW", password_hash="", security_profile=1)
    ChargingStationFactory(identity="OPEN", password_hash="", security_profile=0)
    assert run(handshake(communicator("NOPW"))) == ("refused", 401)
    assert run(handshake(communicator("OPEN"))) == ("accepted", "ocpp1.6")


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        (["ocpp0.1"], ("refused", 400)),
        ([], ("refused", 400)),
        (["ocpp0.1", "ocpp1.6"], ("accepted", "ocpp1.6")),
        (["ocpp1.6"], ("accepted", "ocpp1.6")),
    ],
)
def test_rel_04_subprotocol_negotiation(offered, expected):
    ChargingStationFactory(identity="CP-S")
    comm = communicator("CP-S", headers=[basic("CP-S", DEFAULT_STATION_PASSWORD)], subprotocols=offered)
    assert run(handshake(comm)) == expected


def test_without_denial_extension_refusal_is_a_close():
    async def scenario():
        comm = WebsocketCommunicator(application, "/ocpp/GHOST", subprotocols=["ocpp1.6"])
        return await comm.connect()

    assert run(scenario()) == (False, 1000)


def test_connect_and_disconnect_track_the_station():
    station = ChargingStationFactory(identity="CP-C")

    async def connected_then_closed():
        comm = communicator("CP-C", headers=[basic("CP-C", DEFAULT_STATION_PASSWORD)])
        assert await handshake(comm) == ("accepted", "ocpp1.6")
        state = (
            await run_db(station_flag, pk=station.pk, field="is_connected"),
            await run_db(station_flag, pk=station.pk, field="protocol"),
        )
        await comm.disconnect(timeout=10)
        return state

    assert run(connected_then_closed()) == (True, "ocpp1.6")
    station.refresh_from_db()
    assert station.is_connected is False and station.connection_id == ""
    kinds = list(StationEvent.objects.filter(station=station).order_by("id").values_list("kind", flat=True))
    assert kinds == ["connected", "disconnected"]


def test_rel_06_new_connection_replaces_half_open_one():
    station = ChargingStationFactory(identity="CP-R")
    auth = [basic("CP-R", DEFAULT_STATION_PASSWORD)]

    async def scenario():
        old = communicator("CP-R", headers=auth)
        assert await handshake(old) == ("accepted", "ocpp1.6")
        new = communicator("CP-R", headers=auth)
        assert await handshake(new) == ("accepted", "ocpp1.6")
        closed = await old.receive_output(timeout=5)
        # The old socket's disconnect arrives after the new one took over: it must not mark us offline.
        await old.send_input({"type": "websocket.disconnect", "code": 1006})
        await old.wait(timeout=5)
        await new.send_to(text_data='[2,"h","Heartbeat",{}]')
        answer = await new.receive_json_from(timeout=5)
        await new.disconnect(timeout=10)
        return closed, answer

    closed, answer = run(scenario())
    assert closed == {"type": "websocket.close", "code": 1000}
    assert answer[:2] == [3, "h"]
    station.refresh_from_db()
    assert station.is_connected is False  # the new one disconnected last, cleanly


def test_rel_06_old_disconnect_does_not_mark_new_connection_offline():
    station = ChargingStationFactory(identity="CP-H")
    auth = [basic("CP-H", DEFAULT_STATION_PASSWORD)]

    async def scenario():
        old = communicator("CP-H", headers=auth)
        await handshake(old)
        new = communicator("CP-H", headers=auth)
        await handshake(new)
        await old.receive_output(timeout=5)
        await old.send_input({"type": "websocket.disconnect", "code": 1006})
        await old.wait(timeout=5)
        connected = await run_db(station_flag, pk=station.pk, field="is_connected")
        await new.disconnect(timeout=10)
        return connected

    assert run(scenario()) is True


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        (["ocpp2.0.1"], "ocpp2.0.1"),
        (["ocpp2.1", "ocpp2.0.1"], "ocpp2.1"),
        (["ocpp2.0.1", "ocpp1.6"], "ocpp2.0.1"),
        (["ocpp1.6", "ocpp2.0.1"], "ocpp1.6"),
    ],
)
def test_rel_04_charger_preference_order_decides(offered, expected):
    station = ChargingStationFactory(identity="CP-V")
    comm = communicator("CP-V", headers=[basic("CP-V", DEFAULT_STATION_PASSWORD)], subprotocols=offered)

    async def scenario():
        result = await handshake(comm)
        await comm.disconnect(timeout=10)
        return result

    assert run(scenario()) == ("accepted", expected)
    station.refresh_from_db()
    assert station.protocol == expected


def test_rel_07_failed_handshakes_throttled_per_identity_and_address(settings):
    settings.OCPP_HANDSHAKE_FAILURES_PER_IDENTITY = 3
    ChargingStationFactory(identity="CP-T")
    wrong = [basic("CP-T", "not-the-password")]
    results = [run(handshake(communicator("CP-T", headers=wrong))) for _ in range(4)]
    assert results == [("refused", 401)] * 3 + [("refused", 429)]
    # Throttled attempts are not even looked up: three security events, not four.
    assert SecurityEvent.objects.filter(identity="CP-T").count() == 3
    # The right password from the throttled address is refused too, until the window passes...
    right = [basic("CP-T", DEFAULT_STATION_PASSWORD)]
    assert run(handshake(communicator("CP-T", headers=right))) == ("refused", 429)

    # ...but the same charger from another address is unaffected.
    async def elsewhere():
        comm = communicator("CP-T", headers=right)
        comm.scope["client"] = ["10.9.9.9", 4444]
        result = await handshake(comm)
        await comm.disconnect(timeout=10)
        return result

    assert run(elsewhere()) == ("accepted", "ocpp1.6")


def test_throttle_window_expires():
    throttle = HandshakeThrottle()
    for _ in range(10):
        throttle.failed(identity="X", address="1.2.3.4", now=100.0)
    assert throttle.blocked(identity="X", address="1.2.3.4", now=159.0)
    assert not throttle.blocked(identity="X", address="1.2.3.4", now=160.5)
    assert not throttle.blocked(identity="X", address="5.6.7.8", now=120.0)


def test_rel_32_redis_down_charger_still_served(settings):
    # A Redis nobody listens on: the channel layer fails at every step.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1/0", "socket_timeout": 1}]},
        }
    }
    ChargingStationFactory(identity="CP-NR")

    async def scenario():
        comm = communicator("CP-NR", headers=[basic("CP-NR", DEFAULT_STATION_PASSWORD)])
        assert await handshake(comm) == ("accepted", "ocpp1.6")
        await comm.send_to(text_data='[2,"h","Heartbeat",{}]')
        answer = await comm.receive_json_from(timeout=10)
        await comm.disconnect(timeout=10)
        return answer

    assert run(scenario())[:2] == [3, "h"]
    assert ChargingStation.objects.get(identity="CP-NR").is_connected is False


def test_rate_bucket_allows_a_burst_then_spaces_messages_at_the_rate():
    from cpms.ocpp.throttle import MessageRate

    bucket = MessageRate(rate_per_s=10, burst=3)
    start = bucket._stamp
    assert [bucket.delay(now=start) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.delay(now=start) == pytest.approx(0.1)  # the 4th waits one token's refill
    assert bucket.delay(now=start + 0.1) == pytest.approx(0.1)  # handled after its wait: still in debt
    assert bucket.delay(now=start + 10) == 0.0  # refilled (to the burst, no more)
    assert MessageRate(rate_per_s=0, burst=0).delay() == 0.0  # 0: no limit


def test_rel_13_flooding_connection_is_throttled_answered_and_logged(settings):
    """docs/reliability.md case 13: past the burst, a connection's messages are handled at the configured
    rate; every message is still answered, and the flood is logged once."""
    settings.OCPP_MESSAGES_PER_S = 50
    settings.OCPP_MESSAGE_BURST = 5
    ChargingStationFactory(identity="CP-FLOOD")

    async def scenario():
        comm = communicator("CP-FLOOD", headers=[basic("CP-FLOOD", DEFAULT_STATION_PASSWORD)])
        assert await handshake(comm) == ("accepted", "ocpp1.6")
        for n in range(20):
            await comm.send_to(text_data=f'[2,"h{n}","Heartbeat",{{}}]')
        answers = [await comm.receive_json_from(timeout=10) for _ in range(20)]
        await comm.disconnect(timeout=10)
        return answers

    answers = run(scenario())
    assert [a[:2] for a in answers] == [[3, f"h{n}"] for n in range(20)]
    [event] = SecurityEvent.objects.filter(identity="CP-FLOOD")
    assert event.kind == "protocol_violation"
    assert event.detail == "message flood: more than 50/s after a burst of 5; throttled"
