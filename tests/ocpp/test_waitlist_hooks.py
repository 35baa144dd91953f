"""A connector reporting Available queues its site's waitlist advance, through the real consumer of each
version (the answer is not held up by the broker: the `queued_tasks` fixture records the publish made off the
reply path). Only Available does; nothing is queued where nobody waits."""

import asyncio
import base64
import json

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from cpms.ocpp import effects
from cpms.ocpp.mappers import format_datetime
from cpms.ocpp.routing import websocket_urlpatterns
from cpms.ocpp.throttle import handshake_throttle
from sessions.models import WaitlistEntry
from stations.models import Connector
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory, IdTokenFactory

pytestmark = pytest.mark.django_db(transaction=True)

application = URLRouter(websocket_urlpatterns)
TASK = "sessions.tasks.waitlist_advance_site"


@pytest.fixture(autouse=True)
def _fresh_throttle():
    handshake_throttle._failures.clear()
    yield
    handshake_throttle._failures.clear()


def status_frame(protocol: str, status: str) -> tuple[str, dict]:
    if protocol == "ocpp1.6":
        return "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": status}
    return "StatusNotification", {
        "timestamp": format_datetime(timezone.now()),
        "connectorStatus": status,
        "evseId": 1,
        "connectorId": 1,
    }


async def exchange(
    identity: str, protocol: str, frames: list[tuple[str, dict]], queued, expected: int
) -> list:
    """Connect as the charger, send `frames` one by one (each answered before the next), then wait until
    `expected` jobs were queued (or a moment, for none) and close."""
    token = base64.b64encode(f"{identity}:{DEFAULT_STATION_PASSWORD}".encode())
    comm = WebsocketCommunicator(
        application,
        f"/ocpp/{identity}",
        headers=[(b"authorization", b"Basic " + token)],
        subprotocols=[protocol],
    )
    comm.scope["extensions"] = {"websocket.http.response": {}}
    comm.scope["client"] = ["10.1.2.3", 5555]
    connected, _ = await comm.connect(timeout=10)
    assert connected
    answers = []
    for number, (action, payload) in enumerate(frames):
        await comm.send_to(text_data=json.dumps([2, f"m{number}", action, payload]))
        answers.append(json.loads(await comm.receive_from(timeout=10)))
    for _ in range(40):  # the publish runs in a worker thread, after the answer
        if len(queued) >= expected and expected:
            break
        await asyncio.sleep(0.05)
    await comm.disconnect(timeout=10)
    return answers


def waitlist_jobs(queued_tasks) -> list:
    return [(name, args) for name, args in queued_tasks if name == TASK]


@pytest.fixture(params=["ocpp1.6", "ocpp2.0.1"])
def protocol(request):
    return request.param


@pytest.fixture
def station(db):
    station = ChargingStationFactory(identity="CP-WAIT")
    token = IdTokenFactory(organisation=station.organisation, value="DRIVER")
    WaitlistEntry.objects.create(
        site=station.site, id_token=token, contact_email="d@example.com", joined_at=timezone.now()
    )
    return station


def test_available_queues_the_advance_once(station, protocol, queued_tasks):
    answers = asyncio.run(
        exchange("CP-WAIT", protocol, [status_frame(protocol, "Available")], queued_tasks, expected=1)
    )
    assert answers == [[3, "m0", {}]]
    assert waitlist_jobs(queued_tasks) == [(TASK, (station.site_id,))]
    # The status was committed before the job was queued (the job reads it).
    assert Connector.objects.get(evse__station=station).status == "Available"


def test_other_statuses_queue_nothing(station, protocol, queued_tasks):
    others = ["Charging", "Faulted", "Unavailable"] if protocol == "ocpp1.6" else ["Occupied", "Faulted"]
    frames = [status_frame(protocol, status) for status in others]
    answers = asyncio.run(exchange("CP-WAIT", protocol, frames, queued_tasks, expected=0))
    assert answers == [[3, f"m{n}", {}] for n in range(len(frames))]
    assert waitlist_jobs(queued_tasks) == []


def test_available_where_nobody_waits_queues_nothing(station, protocol, queued_tasks):
    WaitlistEntry.objects.update(status="cancelled")
    answers = asyncio.run(
        exchange("CP-WAIT", protocol, [status_frame(protocol, "Available")], queued_tasks, expected=0)
    )
    assert answers == [[3, "m0", {}]]
    assert waitlist_jobs(queued_tasks) == []


def test_a_storm_of_available_statuses_costs_one_lookup_and_one_job_per_site(
    station, queued_tasks, settings, monkeypatch
):
    """With OCPP_TASK_BATCH_S the stations that reported Available are looked up together (issue 13): three
    stations of a site where someone waits, one of a site where nobody does, are one lookup (one query) and
    one job."""
    settings.OCPP_TASK_BATCH_S = 0.05
    others = [ChargingStationFactory(identity=f"CP-WAIT-{n}", site=station.site) for n in range(2)]
    quiet = ChargingStationFactory(identity="CP-QUIET")
    lookups: list[list[int]] = []
    real_lookup = effects.waitlist_sites_for_stations

    def lookup(*, station_ids):
        lookups.append(list(station_ids))
        return real_lookup(station_ids=station_ids)

    monkeypatch.setattr(effects, "waitlist_sites_for_stations", lookup)

    async def scenario():
        for station_id in [station.pk, *(o.pk for o in others), quiet.pk]:
            effects._waitlist_check_soon(station_id)
        for _ in range(40):
            if waitlist_jobs(queued_tasks):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # nothing more comes

    asyncio.run(scenario())
    assert lookups == [sorted([station.pk, *(o.pk for o in others), quiet.pk])]
    assert waitlist_jobs(queued_tasks) == [(TASK, (station.site_id,))]
