"""Connections opened and closed in batches (stations.services.ocpp.stations_connected and
stations_disconnected, the services behind cpms/ocpp/admission.py): the same rows and results as the
single-item services called for each item in turn, the same newest-connection rule, and a bad item that
fails alone."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from stations.models import ChargingStation, Incident, StationEvent
from stations.services.ocpp import (
    StationConnection,
    StationDisconnection,
    station_auth_get,
    station_auths_get,
    station_connected,
    station_disconnected,
    stations_connected,
    stations_disconnected,
)
from stations.types import StationConnected, StationDisconnected
from tests.factories import ChargingStationFactory

# What only PostgreSQL refuses (a value longer than its column, a NUL in a text) or does in one statement.
postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL behaviour")
T0 = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def offline_incident(station, *, began: datetime) -> Incident:
    return Incident.objects.create(
        organisation_id=station.organisation_id,
        station=station,
        kind="offline",
        code="Offline",
        occurred_at=began,
        detected_at=began + timedelta(seconds=300),
    )


@pytest.fixture
def fleet(db):
    """Stations in every state a connection can find: never connected; connected by a newer connection;
    connected by an older (stale) one; offline with a later time (a clock gone back) and an open offline
    incident; offline with an incident that began after the connections below."""
    never = ChargingStationFactory(identity="NEVER")
    newer = ChargingStationFactory(identity="NEWER")
    stale = ChargingStationFactory(identity="STALE")
    offline = ChargingStationFactory(identity="OFFLINE")
    late_incident = ChargingStationFactory(identity="LATE-INCIDENT")
    ChargingStation.objects.filter(pk=newer.pk).update(
        is_connected=True, connection_id="live", protocol="ocpp2.0.1", connected_at=at(50)
    )
    ChargingStation.objects.filter(pk=stale.pk).update(
        is_connected=True, connection_id="dead", protocol="ocpp1.6", connected_at=at(-3600)
    )
    ChargingStation.objects.filter(pk=offline.pk).update(is_connected=False, connected_at=at(99))
    offline_incident(offline, began=at(-600))
    offline_incident(late_incident, began=at(40))
    return never, newer, stale, offline, late_incident


def connections(fleet) -> list[StationConnection]:
    never, newer, stale, offline, late_incident = fleet

    def conn(station, connection_id: str, seconds: float, protocol: str = "ocpp1.6") -> StationConnection:
        return StationConnection(
            station_id=station.pk, connection_id=connection_id, protocol=protocol, at=at(seconds)
        )

    return [
        conn(never, "n-new", 20),
        conn(never, "n-old", 10),  # an older connection's write arriving after the newer one's
        conn(newer, "too-old", 30),
        conn(stale, "fresh", 30, "ocpp2.0.1"),
        conn(offline, "o1", 10),
        conn(offline, "o2", 30),
        conn(late_incident, "l1", 30),
        conn(never, "n-same-time", 20),  # the same time as the newest: the later write wins, as in turn
    ]


def snapshot() -> tuple[list, list, list]:
    stations = list(
        ChargingStation.objects.order_by("pk").values_list(
            "pk", "is_connected", "connection_id", "protocol", "connected_at", "last_seen_at"
        )
    )
    events = list(
        StationEvent.objects.order_by("pk").values_list(
            "station_id", "kind", "detail", "occurred_at", "received_at"
        )
    )
    incidents = list(
        Incident.objects.order_by("pk").values_list(
            "pk", "resolved_at", "resolved_remotely", "resolved_by_id"
        )
    )
    return stations, events, incidents


def one_by_one(fn, items: list) -> tuple[list, tuple]:
    """The single-item service for each item in turn; the rows it left, then rolled back."""
    with transaction.atomic():
        results = [fn(**{field: getattr(item, field) for field in item.__slots__}) for item in items]
        rows = snapshot()
        transaction.set_rollback(True)
    return results, rows


def test_batched_connections_leave_the_rows_and_results_of_one_by_one(fleet):
    items = connections(fleet)
    expected_results, expected_rows = one_by_one(station_connected, items)
    before = snapshot()

    results = stations_connected(items=items)

    assert results == expected_results
    assert snapshot() == expected_rows != before
    offline, late_incident = fleet[3], fleet[4]
    assert list(
        ChargingStation.objects.filter(pk__in=[s.pk for s in fleet])
        .order_by("pk")
        .values_list("connection_id", "connected_at", "is_connected")
    ) == [
        ("n-same-time", at(20), True),
        ("live", at(50), True),  # a newer connection holds it: the older one's write changes nothing
        ("fresh", at(30), True),
        ("o2", at(30), True),  # offline with a later time: any connection is recorded, the last in turn
        ("l1", at(30), True),
    ]
    assert list(
        Incident.objects.order_by("pk").values_list("station_id", "resolved_at", "resolved_remotely")
    ) == [
        (offline.pk, at(10), True),  # resolved by the first connection after it began
        (late_incident.pk, None, None),  # began after the connection: left open
    ]
    assert StationEvent.objects.filter(kind="connected").count() == len(items)


@postgres_only
def test_batched_connections_in_a_handful_of_statements(fleet):
    items = connections(fleet) * 20
    # Savepoint, lock the stations, update them, insert the events, lock and resolve the incidents, release.
    with CaptureQueriesContext(transaction.get_connection()) as queries:
        stations_connected(items=items)
    assert len(queries) <= 7, [q["sql"][:80] for q in queries]


def test_a_missing_station_fails_alone(fleet):
    never = fleet[0]
    items = [
        StationConnection(station_id=never.pk, connection_id="a", protocol="ocpp1.6", at=at(1)),
        StationConnection(station_id=999_999, connection_id="x", protocol="ocpp1.6", at=at(1)),
    ]
    results = stations_connected(items=items)
    assert results[0] == (StationConnected(station_id=never.pk, at=at(1)),)
    assert isinstance(results[1], ChargingStation.DoesNotExist)
    assert ChargingStation.objects.get(pk=never.pk).connection_id == "a"
    assert list(StationEvent.objects.values_list("station_id", flat=True)) == [never.pk]


def test_batched_disconnects_leave_the_rows_and_results_of_one_by_one(fleet):
    never, newer, stale = fleet[:3]
    items = [
        StationDisconnection(station_id=newer.pk, connection_id="too-old", at=at(60), reason="old one"),
        StationDisconnection(station_id=newer.pk, connection_id="live", at=at(61), reason="close code 1000"),
        StationDisconnection(station_id=newer.pk, connection_id="live", at=at(62), reason="again"),
        StationDisconnection(station_id=stale.pk, connection_id="dead", at=at(63)),
        StationDisconnection(station_id=never.pk, connection_id="never", at=at(64)),
        StationDisconnection(station_id=999_999, connection_id="gone", at=at(65)),
    ]
    expected_results, expected_rows = one_by_one(station_disconnected, items)

    results = stations_disconnected(items=items)

    assert (
        results
        == expected_results
        == [
            (),
            (StationDisconnected(station_id=newer.pk, at=at(61)),),
            (),
            (StationDisconnected(station_id=stale.pk, at=at(63)),),
            (),
            (),
        ]
    )
    assert snapshot() == expected_rows
    assert list(StationEvent.objects.order_by("pk").values_list("station_id", "detail")) == [
        (newer.pk, {"reason": "close code 1000"}),
        (stale.pk, {"reason": ""}),
    ]


def test_the_older_connections_close_never_marks_the_newer_offline(fleet):
    never = fleet[0]
    stations_connected(
        items=[
            StationConnection(station_id=never.pk, connection_id="new", protocol="ocpp1.6", at=at(2)),
            StationConnection(station_id=never.pk, connection_id="old", protocol="ocpp1.6", at=at(1)),
        ]
    )
    assert stations_disconnected(
        items=[StationDisconnection(station_id=never.pk, connection_id="old", at=at(3))]
    ) == [()]
    row = ChargingStation.objects.get(pk=never.pk)
    assert (row.is_connected, row.connection_id) == (True, "new")
    assert not StationEvent.objects.filter(kind="disconnected").exists()


def test_station_auths_get_is_station_auth_get_for_many_in_one_query(fleet):
    names = ["NEVER", "STALE", "UNKNOWN", "NEVER"]
    with CaptureQueriesContext(transaction.get_connection()) as queries:
        found = station_auths_get(identities=names)
    assert len(queries) == 1
    assert found == {name: station_auth_get(identity=name) for name in ("NEVER", "STALE")}
    assert "UNKNOWN" not in found and station_auth_get(identity="UNKNOWN") is None
    assert station_auths_get(identities=[]) == {}
