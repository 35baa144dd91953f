"""Core charger scenarios written once and run in both OCPP versions: they must end in the same domain state."""

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions.models import ChargingSession, MeterValue
from tests.factories import ChargingStationFactory, IdTokenFactory
from tests.ocpp.dialects import DIALECTS
from tests.ocpp.harness import Harness, inline_db  # noqa: F401

pytestmark = pytest.mark.usefixtures("inline_db")


@pytest.fixture(params=DIALECTS, ids=lambda d: d.name)
def dialect(request):
    return request.param()


@pytest.fixture
def station():
    station = ChargingStationFactory(identity="CP-SCN")
    org = station.organisation
    IdTokenFactory(organisation=org, value="GOOD")
    IdTokenFactory(organisation=org, value="BLOCKED", status="Blocked")
    IdTokenFactory(organisation=org, value="OLD", expires_at=timezone.now() - timedelta(days=1))
    return station


@pytest.fixture
def cp(dialect, station):
    return Harness(dialect.cp_class, station)


def send(cp, message, unique_id="m"):
    action, payload = message
    return cp.call(action, payload, unique_id)


def test_boot_accepted(cp, dialect, station):
    answer = send(cp, dialect.boot())
    assert answer[0] == 3 and answer[2]["status"] == "Accepted" and answer[2]["interval"] == 300
    station.refresh_from_db()
    assert (station.vendor, station.model, station.firmware_version) == ("Acme", "Dual", "9.1")


@pytest.mark.parametrize(
    ("tag", "expected"), [("GOOD", "Accepted"), ("BLOCKED", "Blocked"), ("OLD", "Expired"), ("NOBODY", None)]
)
def test_authorize(cp, dialect, tag, expected):
    answer = send(cp, dialect.authorize(tag))
    assert dialect.token_status(answer) == (expected or dialect.unknown_token_status)


def test_full_session_with_meter_values(cp, dialect, station):
    t0 = timezone.now().replace(microsecond=0) - timedelta(minutes=3)
    start = send(cp, dialect.start("TX-1", "GOOD", 10_000, t0), "s")
    assert dialect.start_token_status(start) == "Accepted"
    tx = dialect.started("TX-1", start)
    for i, wh in enumerate([11_000, 12_500, 14_000], start=1):
        assert send(cp, dialect.meter("TX-1", wh, t0 + timedelta(seconds=30 * i)), f"mv{i}")[0] == 3
    assert send(cp, dialect.stop("TX-1", 15_000, t0 + timedelta(minutes=2)), "e")[0] == 3

    session = ChargingSession.objects.get(station=station)
    assert (
        session.transaction_id,
        session.status,
        session.meter_start_wh,
        session.meter_stop_wh,
        session.energy_wh,
    ) == (
        tx,
        "completed",
        10_000,
        15_000,
        5_000,
    )
    assert (session.id_tag, session.id_token.value, session.stop_reason) == ("GOOD", "GOOD", "EVDisconnected")
    assert (session.evse.evse_id, session.connector.connector_id) == (1, 1)
    assert session.started_at == t0 and session.stopped_at == t0 + timedelta(minutes=2)
    assert session.flags == [] and session.held_for_review is False
    energy = MeterValue.objects.filter(session=session, measurand="Energy.Active.Import.Register")
    assert [int(v) for v in energy.order_by("timestamp").values_list("value", flat=True)] == (
        [11_000, 12_500, 14_000] if dialect.name == "1.6" else [10_000, 11_000, 12_500, 14_000, 15_000]
    )


def test_offline_transaction_with_unknown_token_is_accepted_and_flagged(cp, dialect, station):
    hours_ago = timezone.now().replace(microsecond=0) - timedelta(hours=4)
    start = send(cp, dialect.start("TX-OFF", "STRANGER", 500, hours_ago), "s")
    assert start[0] == 3
    assert dialect.start_token_status(start) == dialect.unknown_token_status
    dialect.started("TX-OFF", start)
    send(cp, dialect.stop("TX-OFF", 2_500, hours_ago + timedelta(hours=1)), "e")
    session = ChargingSession.objects.get(station=station)
    assert session.status == "completed" and session.energy_wh == 2_000
    assert set(session.flags) == {"unknown_token", "offline_start"}
    assert session.id_token is None and session.id_tag == "STRANGER"


def test_duplicate_delivery_changes_nothing_twice(cp, dialect, station):
    t0 = timezone.now().replace(microsecond=0) - timedelta(minutes=3)
    start = dialect.start("TX-D", "GOOD", 1_000, t0)
    first = send(cp, start, "s1")
    tx = dialect.started("TX-D", first)
    meter = dialect.meter("TX-D", 2_000, t0 + timedelta(minutes=1))
    send(cp, meter, "m1")
    # The charger reconnects and re-sends both with new message ids.
    again = Harness(dialect.cp_class, station)
    second = send(again, start, "s2")
    assert dialect.started("TX-D", second) == tx
    send(again, meter, "m2")
    session = ChargingSession.objects.get(station=station)
    assert session.transaction_id == tx
    # 1.6: the one periodic reading; 2.0.1: also the Transaction.Begin reading inside Started.
    assert MeterValue.objects.filter(session=session).count() == (1 if dialect.name == "1.6" else 2)
