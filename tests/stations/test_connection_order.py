"""The station row names the newest connection even when two connections' writes arrive out of order
(stations.services.ocpp.station_connected; docs/reliability.md cases 6 and 43): the older connection's late
write changes nothing, and its disconnect leaves the newer one connected."""

from datetime import timedelta

from django.utils import timezone

from stations.models import ChargingStation
from stations.services.ocpp import station_connected, station_disconnected
from tests.factories import ChargingStationFactory


def test_an_older_connection_written_late_does_not_replace_the_newer(db):
    station = ChargingStationFactory()
    t_old = timezone.now()
    t_new = t_old + timedelta(milliseconds=300)
    station_connected(station_id=station.pk, connection_id="new", protocol="ocpp1.6", at=t_new)
    station_connected(station_id=station.pk, connection_id="old", protocol="ocpp1.6", at=t_old)
    row = ChargingStation.objects.get(pk=station.pk)
    assert (row.connection_id, row.connected_at, row.is_connected) == ("new", t_new, True)
    assert station_disconnected(station_id=station.pk, connection_id="old", at=t_new) == ()
    assert ChargingStation.objects.get(pk=station.pk).is_connected


def test_a_reconnect_after_a_stale_row_takes_over(db):
    """A process that died left the row 'connected' with an older time: the charger's new connection wins."""
    station = ChargingStationFactory()
    earlier = timezone.now() - timedelta(hours=1)
    station_connected(station_id=station.pk, connection_id="dead", protocol="ocpp1.6", at=earlier)
    station_connected(station_id=station.pk, connection_id="fresh", protocol="ocpp2.0.1", at=timezone.now())
    row = ChargingStation.objects.get(pk=station.pk)
    assert (row.connection_id, row.protocol) == ("fresh", "ocpp2.0.1")


def test_after_a_disconnect_any_connection_is_recorded(db):
    station = ChargingStationFactory()
    now = timezone.now()
    station_connected(station_id=station.pk, connection_id="a", protocol="ocpp1.6", at=now)
    station_disconnected(station_id=station.pk, connection_id="a", at=now)
    # A clock that went back (another host's) still records a connection of a station that is offline.
    station_connected(
        station_id=station.pk, connection_id="b", protocol="ocpp1.6", at=now - timedelta(seconds=1)
    )
    assert ChargingStation.objects.get(pk=station.pk).connection_id == "b"
