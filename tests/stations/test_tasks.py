from datetime import timedelta

import pytest
from django.utils import timezone

from stations.enums import StationEventKind
from stations.models import ChargingStation, OcppMessage, StationEvent
from stations.tasks import message_log_purge, stations_mark_silent_offline
from tests.factories import ChargingStationFactory


def _message(station, age_days: float) -> OcppMessage:
    return OcppMessage.objects.create(
        station=station,
        identity=station.identity,
        direction="in",
        message_type=2,
        unique_id="1",
        action="Heartbeat",
        payload="[]",
        created_at=timezone.now() - timedelta(days=age_days),
    )


@pytest.mark.django_db
def test_message_log_purge_keeps_recent_rows(settings):
    settings.OCPP_MESSAGE_LOG_DAYS = 14
    station = ChargingStationFactory()
    old = [_message(station, 20) for _ in range(3)]
    recent = _message(station, 1)
    assert message_log_purge() == 3
    assert list(OcppMessage.objects.values_list("pk", flat=True)) == [recent.pk]
    assert message_log_purge() == 0  # idempotent
    assert not OcppMessage.objects.filter(pk__in=[m.pk for m in old]).exists()


@pytest.mark.django_db
def test_rel_33_silent_station_marked_offline():
    now = timezone.now()
    silent = ChargingStationFactory(
        is_connected=True,
        connection_id="c1",
        heartbeat_interval_s=60,
        last_seen_at=now - timedelta(minutes=10),
    )
    alive = ChargingStationFactory(
        is_connected=True,
        connection_id="c2",
        heartbeat_interval_s=60,
        last_seen_at=now - timedelta(seconds=30),
    )
    assert stations_mark_silent_offline() == 1
    assert ChargingStation.objects.get(pk=silent.pk).is_connected is False
    assert ChargingStation.objects.get(pk=alive.pk).is_connected is True
    [event] = StationEvent.objects.filter(station=silent)
    assert (event.kind, event.detail) == (StationEventKind.DISCONNECTED, {"reason": "silent"})
    assert not StationEvent.objects.filter(station=alive).exists()
    assert stations_mark_silent_offline() == 0
    assert StationEvent.objects.filter(station=silent).count() == 1
