"""Incidents from real frames through the OCPP consumer (services in worker threads, committed before the
answer): once the CALLRESULT is back, the incident exists."""

import asyncio
import base64
from datetime import timedelta

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from cpms.ocpp.chargepoint import run_db
from cpms.ocpp.mappers import format_datetime
from cpms.ocpp.routing import websocket_urlpatterns
from stations.models import Incident
from stations.services.incidents import incidents_detect_offline
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory

pytestmark = pytest.mark.django_db(transaction=True)

application = URLRouter(websocket_urlpatterns)


def communicator(identity: str, subprotocol: str) -> WebsocketCommunicator:
    token = base64.b64encode(f"{identity}:{DEFAULT_STATION_PASSWORD}".encode())
    comm = WebsocketCommunicator(
        application,
        f"/ocpp/{identity}",
        headers=[(b"authorization", b"Basic " + token)],
        subprotocols=[subprotocol],
    )
    comm.scope["extensions"] = {"websocket.http.response": {}}
    comm.scope["client"] = ["10.1.2.3", 5555]
    return comm


def open_incidents(station_id: int) -> list[tuple]:
    return list(
        Incident.objects.filter(station_id=station_id)
        .order_by("pk")
        .values_list("kind", "evse_id", "connector_id", "code", "resolved_at")
    )


def exchange(identity: str, subprotocol: str, frames: list[list], station_id: int) -> list[tuple]:
    """Send each frame, wait for its CALLRESULT; after each answer read the station's incidents (in the
    consumer's own thread pool, as a second process would)."""

    async def scenario():
        comm = communicator(identity, subprotocol)
        connected, _ = await comm.connect(timeout=5)
        assert connected
        seen = []
        for frame in frames:
            await comm.send_json_to(frame)
            answer = await comm.receive_json_from(timeout=10)
            assert answer == [3, frame[1], {}], answer
            seen.append(await run_db(open_incidents, station_id=station_id))
        await comm.disconnect(timeout=10)
        return seen

    return asyncio.run(scenario())


def test_1_6_status_notification_opens_and_resolves_a_fault(queued_tasks):
    station = ChargingStationFactory(identity="CP-F16")
    now = timezone.now().replace(microsecond=0)

    def status(status: str, error: str, offset: int) -> dict:
        return {
            "connectorId": 2,
            "status": status,
            "errorCode": error,
            "timestamp": format_datetime(now - timedelta(seconds=60 - offset)),
        }

    seen = exchange(
        "CP-F16",
        "ocpp1.6",
        [
            [2, "s1", "StatusNotification", status("Faulted", "GroundFailure", 0)],
            [2, "s2", "StatusNotification", status("Faulted", "GroundFailure", 5)],
            [2, "s3", "StatusNotification", status("Available", "NoError", 10)],
        ],
        station.pk,
    )
    assert seen[0] == [("fault", 2, 1, "GroundFailure", None)]
    assert seen[1] == seen[0]
    assert seen[2] == [("fault", 2, 1, "GroundFailure", now - timedelta(seconds=50))]
    # The new incident's alert was queued at once, off the reply path; the repeated Faulted queued nothing.
    assert [task for task in queued_tasks if task[0].startswith("stations.tasks.incident")] == [
        ("stations.tasks.incidents_notify_pending", ())
    ]


def test_2_0_1_status_and_notify_event_open_incidents():
    station = ChargingStationFactory(identity="CP-F201")
    now = timezone.now().replace(microsecond=0)
    stamp = format_datetime(now - timedelta(seconds=30))
    problem = {
        "eventId": 7,
        "timestamp": stamp,
        "trigger": "Delta",
        "actualValue": "true",
        "eventNotificationType": "HardWiredMonitor",
        "component": {"name": "EVSE", "evse": {"id": 1}},
        "variable": {"name": "Problem"},
    }
    seen = exchange(
        "CP-F201",
        "ocpp2.0.1",
        [
            [
                2,
                "s1",
                "StatusNotification",
                {"timestamp": stamp, "connectorStatus": "Faulted", "evseId": 1, "connectorId": 1},
            ],
            [2, "e1", "NotifyEvent", {"generatedAt": stamp, "seqNo": 0, "eventData": [problem]}],
            [
                2,
                "e2",
                "NotifyEvent",
                {
                    "generatedAt": stamp,
                    "seqNo": 1,
                    "eventData": [{**problem, "eventId": 8, "actualValue": "false"}],
                },
            ],
        ],
        station.pk,
    )
    assert seen[0] == [("fault", 1, 1, "Faulted", None)]
    assert seen[1] == [("fault", 1, 1, "Faulted", None), ("event", 1, 0, "EVSE.Problem", None)]
    assert seen[2] == [
        ("fault", 1, 1, "Faulted", None),
        ("event", 1, 0, "EVSE.Problem", now - timedelta(seconds=30)),
    ]


def test_connecting_resolves_the_offline_incident(settings):
    settings.INCIDENT_OFFLINE_AFTER_S = 60
    station = ChargingStationFactory(identity="CP-OFF", last_seen_at=timezone.now() - timedelta(hours=1))
    assert incidents_detect_offline(now=timezone.now()) == 1
    assert exchange("CP-OFF", "ocpp1.6", [], station.pk) == []
    station.refresh_from_db()
    incident = Incident.objects.get(station=station)
    assert (incident.kind, incident.resolved_remotely, incident.resolved_by) == ("offline", True, None)
    assert incident.resolved_at == station.connected_at
