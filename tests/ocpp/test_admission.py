"""Admission on group commit (cpms/ocpp/admission.py) and BootNotification/StatusNotification through the
shared writers (cpms/ocpp/common.py): concurrent handshakes share one lookup and one transaction, each caller
gets what the single-item service gives it, and a bad item fails alone."""

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cpms.ocpp import admission, common
from cpms.ocpp.v16.handlers import V16ChargePoint
from stations.models import ChargingStation, Connector, Incident, StationEvent, StatusChange
from stations.services.ocpp import connector_status_update, station_auth_get
from stations.types import (
    BootResult,
    ConnectorStatusReport,
    IncidentOpened,
    StationConnected,
    StationDisconnected,
    StationInfo,
    StatusReported,
)
from tests.factories import ChargingStationFactory
from tests.ocpp.harness import Harness, inline_db  # noqa: F401

# What only PostgreSQL refuses (a value longer than its column, a NUL in a text) or does in one statement.
postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL behaviour")
T0 = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def gather(*awaitables) -> list:
    async def run():
        return await asyncio.gather(*awaitables, return_exceptions=True)

    return asyncio.run(run())


@pytest.fixture
def recorded(monkeypatch):
    """The sizes of the batches each writer flushes; a wait long enough to gather every caller in one."""
    sizes: dict[str, list[int]] = {}
    writers = {
        "auth": admission.auth_reader,
        "opened": admission.connections_opened,
        "closed": admission.connections_closed,
        "boot": common.boot_writer,
        "status": common.status_writer,
    }
    for name, writer in writers.items():
        sizes[name] = []

        def flush(*, items, _original=writer._flush, _name=name):
            sizes[_name].append(len(items))
            return _original(items=items)

        monkeypatch.setattr(writer, "_flush", flush)
        monkeypatch.setattr(writer, "max_wait_s", 0.2)
    return sizes


@pytest.mark.usefixtures("inline_db")
def test_concurrent_lookups_cost_one_query(recorded):
    for n in range(30):
        ChargingStationFactory(identity=f"CP-{n}")
    names = [f"CP-{n}" for n in range(30)] + ["UNKNOWN", "CP-3"]

    with CaptureQueriesContext(connection) as queries:
        found = gather(*(admission.station_auth(name) for name in names))

    assert len(queries) == 1
    assert recorded["auth"] == [32]
    assert found == [station_auth_get(identity=name) for name in names]
    assert found[30] is None and found[3] == found[31] and found[3].identity == "CP-3"


@pytest.mark.django_db(transaction=True)
def test_connections_opened_and_closed_in_shared_transactions_keep_the_newest(recorded):
    """Through the worker threads, as in production: two connections of one station in one batch (the older
    one's write last), other stations beside them, and a station that does not exist, which fails alone."""
    a, b, c = (ChargingStationFactory(identity=name) for name in ("A", "B", "C"))

    opened = gather(
        admission.connection_opened(station_id=a.pk, connection_id="a-new", protocol="ocpp1.6", at=at(2)),
        admission.connection_opened(station_id=b.pk, connection_id="b", protocol="ocpp2.0.1", at=at(1)),
        admission.connection_opened(station_id=999_999, connection_id="x", protocol="ocpp1.6", at=at(1)),
        admission.connection_opened(station_id=a.pk, connection_id="a-old", protocol="ocpp1.6", at=at(1)),
        admission.connection_opened(station_id=c.pk, connection_id="c", protocol="ocpp1.6", at=at(1)),
    )

    assert recorded["opened"] == [5]
    assert opened[0] == (StationConnected(station_id=a.pk, at=at(2)),)
    assert opened[1] == (StationConnected(station_id=b.pk, at=at(1)),)
    assert isinstance(opened[2], ChargingStation.DoesNotExist)
    assert opened[3] == (StationConnected(station_id=a.pk, at=at(1)),)
    assert list(ChargingStation.objects.order_by("identity").values_list("identity", "connection_id")) == [
        ("A", "a-new"),
        ("B", "b"),
        ("C", "c"),
    ]
    assert StationEvent.objects.filter(kind="connected").count() == 4

    closed = gather(
        admission.connection_closed(station_id=a.pk, connection_id="a-old", at=at(3), reason="superseded"),
        admission.connection_closed(station_id=b.pk, connection_id="b", at=at(3), reason="close code 1000"),
    )

    assert recorded["closed"] == [2]
    assert closed == [(), (StationDisconnected(station_id=b.pk, at=at(3)),)]
    assert list(ChargingStation.objects.order_by("identity").values_list("identity", "is_connected")) == [
        ("A", True),  # the older connection's close never marks the newer one offline
        ("B", False),
        ("C", True),
    ]
    assert list(StationEvent.objects.filter(kind="disconnected").values_list("station_id", "detail")) == [
        (b.pk, {"reason": "close code 1000"})
    ]


def boot(station_id: int, vendor: str = "Acme") -> dict:
    return {"station_id": station_id, "info": StationInfo(vendor=vendor, model="M1"), "received_at": at(5)}


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_boots_share_a_transaction_and_a_bad_one_fails_alone(recorded):
    stations = [ChargingStationFactory(identity=f"B{n}", registration_status="Accepted") for n in range(4)]
    pending = ChargingStationFactory(identity="PENDING", registration_status="Pending")

    results = gather(
        common.boot_writer.submit(boot(stations[3].pk)),
        common.boot_writer.submit(boot(stations[0].pk, vendor="x" * 51)),  # refused by the database
        common.boot_writer.submit(boot(999_999)),  # no such station
        common.boot_writer.submit(boot(pending.pk)),
        common.boot_writer.submit(boot(stations[1].pk)),
    )

    # The refused value rolled the batch back; written again in parts, it failed alone (batching.py). The
    # missing station never failed a transaction: its item alone got the error.
    assert recorded["boot"] == [5, 2, 1, 1, 3]
    assert isinstance(results[0], BootResult) and results[0].outcomes
    assert type(results[1]).__name__ == "DataError"
    assert isinstance(results[2], ChargingStation.DoesNotExist)
    assert (results[3].status, results[3].interval_s, results[3].outcomes) == ("Pending", 60, ())
    assert results[4].status == "Accepted"
    assert dict(ChargingStation.objects.values_list("identity", "vendor")) == {
        "B0": "",
        "B1": "Acme",
        "B2": "",
        "B3": "Acme",
        "PENDING": "Acme",
    }
    assert StationEvent.objects.filter(kind="boot").count() == 3


def report(
    evse: int | None, connector: int | None, status: str, error: str = "NoError"
) -> ConnectorStatusReport:
    return ConnectorStatusReport(
        evse_id=evse,
        connector_id=connector,
        status=status,
        error_code=error,
        info="",
        vendor_id="",
        vendor_error_code="",
        occurred_at=at(1),
        received_at=at(2),
    )


REPORTS = [
    report(None, None, "Available"),
    report(1, 1, "Available"),
    report(2, 1, "Faulted", "GroundFailure"),
    report(1, 1, "Charging"),
]


def status_rows(station) -> tuple:
    return (
        list(Connector.objects.filter(evse__station=station).order_by("evse__evse_id").values_list("status")),
        list(
            StatusChange.objects.filter(station=station)
            .order_by("pk")
            .values_list("evse_id", "connector_id", "status", "error_code")
        ),
        list(Incident.objects.filter(station=station).values_list("kind", "evse_id", "code", "resolved_at")),
        ChargingStation.objects.filter(pk=station.pk).values_list("status", "error_code").get(),
    )


def without_ids(outcomes: tuple, station) -> list:
    """Outcomes with the station's pk and the incident's pk out, for comparing two stations' outcomes."""
    out = []
    for outcome in outcomes:
        assert outcome.station_id == station.pk
        if isinstance(outcome, IncidentOpened):
            out.append(("incident", Incident.objects.get(pk=outcome.incident_id).code))
        else:
            assert isinstance(outcome, StatusReported)
            out.append(("status", outcome.report))
    return out


@pytest.mark.django_db(transaction=True)
def test_status_notifications_batched_leave_what_one_by_one_leaves(recorded):
    single, batched, other = (
        ChargingStationFactory(identity=name) for name in ("SINGLE", "BATCHED", "OTHER")
    )
    expected = [connector_status_update(station_id=single.pk, report=r) for r in REPORTS]

    async def one_charger_in_turn_beside_another():
        # A charger sends its next message after the answer; other chargers' messages share the batches.
        results = []
        for r in REPORTS:
            mine, _theirs = await asyncio.gather(
                common.status_writer.submit({"station_id": batched.pk, "report": r}),
                common.status_writer.submit({"station_id": other.pk, "report": r}),
            )
            results.append(mine)
        return results

    results = asyncio.run(one_charger_in_turn_beside_another())

    assert recorded["status"] == [2, 2, 2, 2]
    assert [without_ids(r, batched) for r in results] == [without_ids(r, single) for r in expected]
    assert status_rows(batched) == status_rows(single)
    assert status_rows(batched)[2] == [("fault", 2, "GroundFailure", None)]


@pytest.mark.django_db(transaction=True)
def test_boot_and_status_through_the_handlers_of_many_chargers_at_once(recorded):
    chargers = [
        Harness(V16ChargePoint, ChargingStationFactory(identity=f"H{n}", registration_status="Accepted"))
        for n in range(6)
    ]
    frames = [
        [2, "b", "BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "M"}],
        [2, "s", "StatusNotification", {"connectorId": 1, "status": "Available", "errorCode": "NoError"}],
    ]
    for frame in frames:

        async def all_at_once(frame=frame):
            await asyncio.gather(*(c.cp.route_message(json.dumps(frame)) for c in chargers))

        asyncio.run(all_at_once())
    answers = [[json.loads(frame) for frame in c.sent] for c in chargers]

    assert recorded["boot"] == [6] and recorded["status"] == [6]
    for answer in answers:
        assert answer[0][:2] == [3, "b"] and answer[0][2]["status"] == "Accepted"
        assert answer[1] == [3, "s", {}]
    assert StatusChange.objects.filter(status="Available").count() == 6


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_lookup_the_database_refuses_fails_alone(recorded):
    """The consumer refuses malformed identities before the lookup; should one get through all the same,
    the others' handshakes in its batch are not failed with it."""
    ChargingStationFactory(identity="GOOD-1")
    ChargingStationFactory(identity="GOOD-2")

    found = gather(*(admission.station_auth(name) for name in ("GOOD-1", "BAD\x00", "GOOD-2")))

    assert [auth.identity for auth in (found[0], found[2])] == ["GOOD-1", "GOOD-2"]
    assert "NUL" in str(found[1])
    assert recorded["auth"] == [3, 1, 2, 1, 1]  # the batch, then halves down to the refused lookup alone
