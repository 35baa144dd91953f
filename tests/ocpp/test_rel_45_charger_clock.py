"""docs/reliability.md case 45 (and 26): a charger's timestamp outside the accepted window
(OCPP_TIMESTAMP_MAX_AGE_DAYS before our receive time, OCPP_TIMESTAMP_MAX_AHEAD_S after it) is kept as received
on a SessionAnomaly, the session is flagged `clock_out_of_window`, and the receive time is the billing time
instead: for starts, stops, meter values and 2.0.1/2.1 TransactionEvents. Written once, run in every OCPP
version."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from cpms.ocpp.mappers import charger_time
from sessions.models import ChargingSession, MeterValue, SessionAnomaly, TransactionEvent
from stations.models import Connector, StatusChange
from tests.factories import ChargingStationFactory, IdTokenFactory
from tests.ocpp.dialects import DIALECTS
from tests.ocpp.harness import Harness, inline_db  # noqa: F401

END_OF_TIME = "9999-12-31T23:59:59.000Z"
EPOCH = "1970-01-01T00:00:00.000Z"


pytestmark = pytest.mark.usefixtures("inline_db")


@pytest.fixture(params=DIALECTS, ids=lambda d: d.name)
def dialect(request):
    return request.param()


@pytest.fixture
def station(db):
    station = ChargingStationFactory(identity="CP-CLOCK")
    IdTokenFactory(organisation=station.organisation, value="GOOD")
    return station


@pytest.fixture
def cp(dialect, station):
    return Harness(dialect.cp_class, station)


def send(cp, message, unique_id="m"):
    action, payload = message
    return cp.call(action, payload, unique_id)


def dated(message, raw: str):
    """`message` with every timestamp of its payload (and its meter values) replaced by `raw`."""
    action, payload = message
    payload = {**payload, **({"timestamp": raw} if "timestamp" in payload else {})}
    for key in ("meterValue", "transactionData"):
        if key in payload:
            payload[key] = [{**mv, "timestamp": raw} for mv in payload[key]]
    return action, payload


def anomalies(session) -> list[tuple[str, dict]]:
    return [
        (a.kind, {k: a.detail[k] for k in ("field", "charger_value")})
        for a in SessionAnomaly.objects.filter(session=session).order_by("pk")
    ]


# --- the window (pure) ---------------------------------------------------------------------------------


def test_rel_45_the_window_runs_from_max_age_before_to_max_ahead_after_the_receive_time(settings):
    settings.OCPP_TIMESTAMP_MAX_AGE_DAYS = 30
    settings.OCPP_TIMESTAMP_MAX_AHEAD_S = 3600
    received = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    inside = ["2026-05-02T12:00:00Z", "2026-06-01T13:00:00Z", "2026-06-01T14:00:00+01:00", "2026-06-01T12:00"]
    assert [charger_time(raw, "timestamp", received) for raw in inside] == [
        (datetime(2026, 5, 2, 12, tzinfo=UTC), ""),
        (datetime(2026, 6, 1, 13, tzinfo=UTC), ""),
        (datetime(2026, 6, 1, 13, tzinfo=UTC), ""),
        (datetime(2026, 6, 1, 12, tzinfo=UTC), ""),
    ]
    outside = [
        "2026-05-02T11:59:59Z",
        "2026-06-01T13:00:01Z",
        END_OF_TIME,
        "9999-12-31T23:59:59-05:00",
        EPOCH,
    ]
    assert [charger_time(raw, "timestamp", received) for raw in outside] == [
        (received, raw) for raw in outside
    ]


# --- scenarios in every version ------------------------------------------------------------------------


def test_rel_45_a_start_dated_9999_is_billed_at_its_receive_time_and_closes_nothing_in_the_future(
    cp, dialect, station
):
    t0 = timezone.now().replace(microsecond=0) - timedelta(minutes=3)
    first = send(cp, dialect.start("TX-1", "GOOD", 1_000, t0), "s1")
    dialect.started("TX-1", first)
    before = timezone.now()
    answer = send(cp, dated(dialect.start("TX-2", "GOOD", 3_000, t0), END_OF_TIME), "s2")
    assert answer[0] == 3
    dialect.started("TX-2", answer)

    old, new = ChargingSession.objects.filter(station=station).order_by("pk")
    assert before <= new.start_received_at <= timezone.now()
    assert (new.started_at, new.flags, new.held_for_review) == (
        new.start_received_at,
        ["clock_out_of_window"],
        False,
    )
    assert anomalies(new) == [("clock_out_of_window", {"field": "started_at", "charger_value": END_OF_TIME})]
    # The previous session, never stopped, is closed at the new start: its receive time, not year 9999.
    assert (old.status, old.stopped_at, old.flags, old.held_for_review) == (
        "completed",
        new.start_received_at,
        ["stopped_by_new_session"],
        True,
    )
    if dialect.name != "1.6":  # the 2.0.1 Transaction.Begin reading is dated 9999 as well
        assert list(MeterValue.objects.filter(session=new).values_list("timestamp", flat=True)) == [
            new.start_received_at
        ]
        [event] = TransactionEvent.objects.filter(session=new)
        assert (event.timestamp, event.payload["timestamp"]) == (new.start_received_at, END_OF_TIME)


def test_rel_45_meter_values_and_a_stop_dated_1970_use_the_receive_time(cp, dialect, station):
    t0 = timezone.now().replace(microsecond=0) - timedelta(minutes=3)
    dialect.started("TX-E", send(cp, dialect.start("TX-E", "GOOD", 10_000, t0), "s"))
    answer = send(cp, dated(dialect.meter("TX-E", 12_000, t0), EPOCH), "mv")
    assert answer[0] == 3, answer
    send(cp, dated(dialect.stop("TX-E", 15_000, t0), EPOCH), "e")

    session = ChargingSession.objects.get(station=station)
    assert session.started_at == t0
    assert (session.status, session.stopped_at, session.energy_wh) == (
        "completed",
        session.stop_received_at,
        5_000,
    )
    assert (session.flags, session.held_for_review) == (["clock_out_of_window"], False)
    readings = MeterValue.objects.filter(session=session).order_by("timestamp", "pk")
    # Every stored time is one of ours or the charger's sane start: nothing in 1970.
    assert all(value.timestamp == value.received_at for value in readings if value.timestamp != t0)
    assert [int(v.value) for v in readings] == (
        [12_000] if dialect.name == "1.6" else [10_000, 12_000, 15_000]
    )
    fields = [detail["field"] for _kind, detail in anomalies(session)]
    assert fields == ["meter_value", "stopped_at"]


def test_rel_45_a_status_dated_9999_does_not_freeze_the_connector_status(cp, dialect, station):
    action, payload = (
        ("StatusNotification", {"connectorId": 1, "status": "Charging", "errorCode": "NoError"})
        if dialect.name == "1.6"
        else ("StatusNotification", {"evseId": 1, "connectorId": 1, "connectorStatus": "Occupied"})
    )
    send(cp, (action, {**payload, "timestamp": END_OF_TIME}), "st1")
    later = {**payload, "timestamp": timezone.now().isoformat()}
    later["status" if dialect.name == "1.6" else "connectorStatus"] = "Available"
    send(cp, (action, later), "st2")
    connector = Connector.objects.get(evse__station=station, evse__evse_id=1, connector_id=1)
    # Before: the 9999 status was "newer" than every later one, and the connector stayed Charging forever.
    assert connector.status == "Available"
    assert StatusChange.objects.filter(station=station, occurred_at__year=9999).count() == 0
