"""BootNotifications and StatusNotifications in batches (stations.services.ocpp.stations_boot and
connector_statuses_update, behind the shared writers of cpms/ocpp/common.py): the same rows and results as
station_boot and connector_status_update called for each item in turn."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction

from stations.models import ChargingStation, Connector, Evse, Incident, StationEvent, StatusChange
from stations.services.ocpp import (
    connector_status_update,
    connector_statuses_update,
    station_boot,
    stations_boot,
)
from stations.types import ConnectorStatusReport, StationInfo
from tests.factories import ChargingStationFactory

# What only PostgreSQL refuses (a value longer than its column, a NUL in a text) or does in one statement.
postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL behaviour")
T0 = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def report(
    evse: int | None, connector: int | None, status: str, *, occurred: float, error: str = "NoError"
) -> ConnectorStatusReport:
    return ConnectorStatusReport(
        evse_id=evse,
        connector_id=connector,
        status=status,
        error_code=error,
        info="",
        vendor_id="",
        vendor_error_code="",
        occurred_at=at(occurred),
        received_at=at(100),
    )


def fault(station, *, evse: int, connector: int, began: float) -> None:
    Incident.objects.create(
        organisation_id=station.organisation_id,
        station=station,
        evse_id=evse,
        connector_id=connector,
        kind="fault",
        code="GroundFailure",
        occurred_at=at(began),
        detected_at=at(began),
    )


def snapshot() -> tuple:
    return (
        list(
            ChargingStation.objects.order_by("pk").values_list(
                "pk",
                "status",
                "error_code",
                "last_seen_at",
                "vendor",
                "model",
                "firmware_version",
                "last_boot_at",
                "heartbeat_interval_s",
            )
        ),
        list(Evse.objects.order_by("station_id", "evse_id").values_list("station_id", "evse_id")),
        list(
            Connector.objects.order_by("evse__station_id", "evse__evse_id", "connector_id").values_list(
                "evse__station_id",
                "evse__evse_id",
                "connector_id",
                "status",
                "error_code",
                "status_changed_at",
            )
        ),
        sorted(
            StatusChange.objects.values_list(
                "station_id", "evse_id", "connector_id", "status", "error_code", "occurred_at", "received_at"
            ),
            key=str,  # evse_id None for the station's own status
        ),
        list(StationEvent.objects.order_by("pk").values_list("station_id", "kind", "detail", "occurred_at")),
        sorted(
            Incident.objects.values_list(
                "station_id", "kind", "evse_id", "connector_id", "code", "occurred_at", "resolved_at"
            )
        ),
    )


def one_by_one(service, items: list[dict]) -> tuple[list, tuple]:
    """The single-item service for each item in turn; the rows it left, then rolled back."""
    with transaction.atomic():
        results = [service(**item) for item in items]
        rows = snapshot()
        transaction.set_rollback(True)
    return results, rows


@pytest.fixture
def stations(db):
    """Known connectors, one with a newer stored status; an open fault incident; a station whose items go
    the careful way (an unknown connector, a fault)."""
    known = ChargingStationFactory(identity="KNOWN", registration_status="Accepted")
    other = ChargingStationFactory(identity="OTHER", registration_status="Pending", heartbeat_interval_s=77)
    careful = ChargingStationFactory(identity="CAREFUL", registration_status="Accepted")
    for evse_id in (1, 2):
        evse = Evse.objects.create(station=known, evse_id=evse_id)
        Connector.objects.create(evse=evse, connector_id=1, status="Available", status_changed_at=at(0))
    Connector.objects.filter(evse__station=known, evse__evse_id=2).update(status_changed_at=at(50))
    evse = Evse.objects.create(station=other, evse_id=1)
    Connector.objects.create(evse=evse, connector_id=1)
    fault(known, evse=1, connector=1, began=5)
    fault(other, evse=0, connector=0, began=5)
    fault(careful, evse=1, connector=1, began=200)  # began after the reports below: stays open
    return known, other, careful


def test_batched_statuses_leave_the_rows_and_results_of_one_by_one(stations):
    known, other, careful = stations
    items = [
        {"station_id": known.pk, "report": report(1, 1, "Charging", occurred=20)},
        {
            "station_id": known.pk,
            "report": report(2, 1, "Occupied", occurred=40),
        },  # older than stored: history only
        {
            "station_id": other.pk,
            "report": report(None, None, "Available", occurred=10),
        },  # resolves the fault
        {"station_id": known.pk, "report": report(1, 1, "Finishing", occurred=10)},  # late: history only
        {
            "station_id": careful.pk,
            "report": report(1, 1, "Available", occurred=10),
        },  # a connector not stored
        {"station_id": other.pk, "report": report(1, 1, "Unavailable", occurred=10)},
        {
            "station_id": other.pk,
            "report": report(None, None, "Unavailable", occurred=11),
        },  # the later one stays
        {
            "station_id": known.pk,
            "report": report(1, 1, "SuspendedEV", occurred=20),
        },  # same time: the later stays
        {"station_id": careful.pk, "report": report(1, 1, "Faulted", occurred=11, error="GroundFailure")},
        {"station_id": known.pk, "report": report(2, 1, "Available", occurred=60)},
    ]
    expected_results, expected_rows = one_by_one(connector_status_update, items)

    results = connector_statuses_update(items=items)

    assert results == expected_results
    assert snapshot() == expected_rows
    connectors = dict(Connector.objects.filter(evse__station=known).values_list("evse__evse_id", "status"))
    assert connectors == {1: "SuspendedEV", 2: "Available"}
    assert list(Incident.objects.order_by("pk").values_list("station_id", "resolved_at")) == [
        (known.pk, at(20)),
        (other.pk, at(10)),
        (careful.pk, None),
    ]


@postgres_only
def test_a_status_that_fails_fails_alone(stations):
    known, other, careful = stations
    items = [
        {"station_id": known.pk, "report": report(1, 1, "Charging", occurred=20)},
        {"station_id": careful.pk, "report": report(1, 1, "Faulted", occurred=11, error="x" * 100)},
        {"station_id": other.pk, "report": report(1, 1, "Charging", occurred=20)},
    ]
    results = connector_statuses_update(items=items)
    assert type(results[1]).__name__ == "DataError"  # the error code is longer than its column
    assert [type(results[0][0]).__name__, type(results[2][0]).__name__] == ["StatusReported"] * 2
    assert sorted(StatusChange.objects.values_list("station_id", flat=True)) == sorted([known.pk, other.pk])
    assert not Evse.objects.filter(station=careful).exists()  # its savepoint rolled back


def info(vendor: str) -> StationInfo:
    return StationInfo(vendor=vendor, model="M", serial_number="S", firmware_version="1.0", iccid="I")


def test_batched_boots_leave_the_rows_and_results_of_one_by_one(stations, settings):
    settings.OCPP_HEARTBEAT_INTERVAL_S = 123
    known, other, _careful = stations
    items = [
        {"station_id": known.pk, "info": info("First"), "received_at": at(1)},
        {"station_id": other.pk, "info": info("Pending"), "received_at": at(2)},
        {"station_id": known.pk, "info": info("Second"), "received_at": at(3)},  # the later boot stays
    ]
    expected_results, expected_rows = one_by_one(station_boot, items)

    results = stations_boot(
        items=[*items, {"station_id": 999_999, "info": info("Nobody"), "received_at": at(4)}]
    )

    assert results[:3] == expected_results
    assert isinstance(results[3], ChargingStation.DoesNotExist)
    assert snapshot() == expected_rows
    assert [(r.status, r.interval_s, len(r.outcomes)) for r in results[:3]] == [
        ("Accepted", 123, 1),
        ("Pending", 60, 0),
        ("Accepted", 123, 1),
    ]
    assert ChargingStation.objects.values_list("vendor", "heartbeat_interval_s").get(pk=other.pk) == (
        "Pending",
        77,
    )
