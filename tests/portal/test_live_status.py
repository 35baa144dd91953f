"""The portal's live-status websocket through the real ASGI application (cpms.asgi): Origin checked, anonymous
refused, and each browser receives the events of exactly the stations its user may see (scoped groups), pushed
by what a charger reports over OCPP."""

import asyncio
import base64
import json

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from cpms.asgi import application
from cpms.portal.live import user_live_groups
from tests.factories import DEFAULT_STATION_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")


def session_cookie(user) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (
        b"cookie",
        f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode(),
    )


def browser(*headers) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(application, "/ws/live/", headers=list(headers))
    comm.scope["extensions"] = {"websocket.http.response": {}}
    return comm


async def open_browser(*headers) -> tuple[str, object]:
    """('accepted', hello message) or ('refused', HTTP status)."""
    comm = browser(*headers)
    await comm.send_input({"type": "websocket.connect"})
    first = await comm.receive_output(timeout=5)
    if first["type"] != "websocket.accept":
        assert first["type"] in {"websocket.close", "websocket.http.response.start"}, first
        return "refused", first.get("status", 403)
    hello = json.loads((await comm.receive_output(timeout=5))["text"])
    return "accepted", (comm, hello)


def charger(identity: str) -> WebsocketCommunicator:
    auth = b"Basic " + base64.b64encode(f"{identity}:{DEFAULT_STATION_PASSWORD}".encode())
    comm = WebsocketCommunicator(
        application, f"/ocpp/{identity}", headers=[(b"authorization", auth)], subprotocols=["ocpp1.6"]
    )
    comm.scope["extensions"] = {"websocket.http.response": {}}
    comm.scope["client"] = ["10.0.0.9", 4000]
    return comm


async def charger_reports(identity: str, status: str) -> None:
    comm = charger(identity)
    connected, _ = await comm.connect(timeout=5)
    assert connected
    frame = [2, "s1", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": status}]
    await comm.send_to(text_data=json.dumps(frame))
    assert json.loads(await comm.receive_from(timeout=5)) == [3, "s1", {}]
    await comm.disconnect()


async def events_of(comm: WebsocketCommunicator, wait_s: float = 0.5) -> list[dict]:
    """Everything the browser received until it has been quiet for `wait_s` (receive_nothing does not cancel the
    application the way a timed-out receive does)."""
    events = []
    while not await comm.receive_nothing(timeout=wait_s):
        events.append(json.loads(await comm.receive_from(timeout=5)))
    return events


def run(coro):
    return asyncio.run(coro)


def test_anonymous_browser_is_refused(world):
    assert run(open_browser(ORIGIN)) == ("refused", 403)


def test_foreign_or_missing_origin_is_refused_even_when_logged_in(world):
    cookie = session_cookie(world.operator_a)
    assert run(open_browser(cookie, (b"origin", b"https://evil.example"))) == ("refused", 403)
    assert run(open_browser(cookie)) == ("refused", 403)


def test_groups_are_scoped_per_role(world):
    org_a = [f"live.org.{world.org_a.pk}", f"live.site.{world.site_a1.pk}", f"live.site.{world.site_a2.pk}"]
    org_b = [f"live.org.{world.org_b.pk}", f"live.site.{world.site_b1.pk}"]
    assert user_live_groups(user=world.operator_a) == org_a
    assert user_live_groups(user=world.operator_b) == org_b
    assert user_live_groups(user=world.finance_a) == org_a
    assert user_live_groups(user=world.host_a1) == [f"live.site.{world.site_a1.pk}"]
    assert sorted(user_live_groups(user=world.superuser)) == sorted(org_a + org_b)
    assert user_live_groups(user=UserFactory(username="nobody")) == []


def test_each_browser_gets_exactly_the_stations_it_may_see(world):
    """A1-CP1 (org A, site A1) and A2-CP1 (org A, site A2) report Charging. The operator of A sees both, the
    site host of A1 only A1-CP1, the operator of B neither."""

    cookies = {name: session_cookie(getattr(world, name)) for name in ("operator_a", "host_a1", "operator_b")}

    async def scenario():
        browsers = {}
        for name, cookie in cookies.items():
            state, (comm, hello) = await open_browser(ORIGIN, cookie)
            assert state == "accepted" and hello["type"] == "hello"
            browsers[name] = comm
        await charger_reports("A1-CP1", "Charging")
        await charger_reports("A2-CP1", "Charging")
        seen = {name: await events_of(comm) for name, comm in browsers.items()}
        for comm in browsers.values():
            await comm.disconnect()
        return seen

    seen = run(scenario())

    def summary(events):
        return [
            (
                e["type"],
                e["identity"],
                e.get("status", e.get("connected")),
                e.get("evse_id"),
                e.get("connector_id"),
            )
            for e in events
        ]

    a1 = [
        ("connection", "A1-CP1", True, None, None),
        ("status", "A1-CP1", "Charging", 1, 1),
        ("connection", "A1-CP1", False, None, None),
    ]
    a2 = [
        ("connection", "A2-CP1", True, None, None),
        ("status", "A2-CP1", "Charging", 1, 1),
        ("connection", "A2-CP1", False, None, None),
    ]
    assert summary(seen["operator_a"]) == a1 + a2
    assert summary(seen["host_a1"]) == a1
    assert summary(seen["operator_b"]) == []


def test_the_browser_cannot_send_anything_that_matters(world):
    cookie = session_cookie(world.operator_b)

    async def scenario():
        state, (comm, _) = await open_browser(ORIGIN, cookie)
        assert state == "accepted"
        # A browser asking to join another organisation's group is ignored.
        await comm.send_json_to({"type": "live.event", "event": {"join": f"live.org.{world.org_a.pk}"}})
        await charger_reports("A1-CP1", "Faulted")
        events = await events_of(comm)
        await comm.disconnect()
        return events

    assert run(scenario()) == []


def test_a_station_without_a_site_reaches_its_organisation_only(world):
    world.station_a1.site = None
    world.station_a1.save()
    cookies = {name: session_cookie(getattr(world, name)) for name in ("operator_a", "host_a1", "operator_b")}

    async def scenario():
        browsers = {}
        for name, cookie in cookies.items():
            state, (comm, _) = await open_browser(ORIGIN, cookie)
            assert state == "accepted"
            browsers[name] = comm
        await charger_reports("A1-CP1", "Available")
        seen = {name: await events_of(comm) for name, comm in browsers.items()}
        for comm in browsers.values():
            await comm.disconnect()
        return seen

    seen = run(scenario())
    assert [e["type"] for e in seen["operator_a"]] == ["connection", "status", "connection"]
    assert seen["host_a1"] == [] and seen["operator_b"] == []
