"""docs/reliability.md case 23 (issue 15, item 5): a 2.0.1/2.1 transaction whose first events arrive out of
order and without a Started (Updated seq 2, then Updated seq 1 with an earlier time, then Ended) is billed
from its register readings ordered by the charger's timestamps, not by arrival."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cpms.ocpp.mappers import format_datetime
from sessions.models import ChargingSession
from tests.factories import ChargingStationFactory
from tests.ocpp.dialects import V21, V201
from tests.ocpp.harness import Harness, inline_db  # noqa: F401

pytestmark = pytest.mark.usefixtures("inline_db")


@pytest.fixture(params=[V201, V21], ids=lambda d: d.name)
def dialect(request):
    return request.param()


@pytest.fixture
def station(db):
    return ChargingStationFactory(identity="CP-OOO")


def event(seq: int, event_type: str, at, wh: int, context: str, **info) -> dict:
    return {
        "eventType": event_type,
        "timestamp": format_datetime(at),
        "triggerReason": "MeterValuePeriodic" if event_type == "Updated" else "EVCommunicationLost",
        "seqNo": seq,
        "transactionInfo": {"transactionId": "TX-OOO", **info},
        **({"evse": {"id": 1, "connectorId": 1}} if seq == 2 else {}),
        "meterValue": [
            {
                "timestamp": format_datetime(at),
                "sampledValue": [
                    {"value": wh, "measurand": "Energy.Active.Import.Register", "context": context}
                ],
            }
        ],
    }


def test_rel_23_updated_events_out_of_order_without_started_bill_the_register_span(dialect, station):
    cp = Harness(dialect.cp_class, station)
    # Within the last 5 minutes: not an offline start.
    t1 = timezone.now().replace(microsecond=0) - timedelta(minutes=4)
    t2, t3 = t1 + timedelta(minutes=1), t1 + timedelta(minutes=2)
    assert cp.call("TransactionEvent", event(2, "Updated", t2, 1_100, "Sample.Periodic"), "u2") == [
        3,
        "u2",
        {},
    ]
    assert cp.call("TransactionEvent", event(1, "Updated", t1, 1_000, "Sample.Periodic"), "u1") == [
        3,
        "u1",
        {},
    ]
    ended = event(3, "Ended", t3, 1_200, "Transaction.End", stoppedReason="EVDisconnected")
    assert cp.call("TransactionEvent", ended, "e") == [3, "e", {}]

    session = ChargingSession.objects.get(station=station, transaction_id="TX-OOO")
    # Register readings: 1,000 Wh at t1 (the earliest), 1,200 Wh at t3 (the latest): 200 Wh, not 100.
    assert (session.meter_start_wh, session.meter_stop_wh, session.energy_wh) == (1_000, 1_200, 200)
    # The transaction was running at t1 already.
    assert (session.started_at, session.stopped_at) == (t1, t3)
    assert (session.status, session.flags, session.held_for_review) == ("completed", [], False)


def test_rel_23_an_ended_transaction_without_any_register_reading_is_held(dialect, station):
    cp = Harness(dialect.cp_class, station)
    t1 = timezone.now().replace(microsecond=0) - timedelta(minutes=2)
    first = event(2, "Updated", t1, 0, "Sample.Periodic")
    del first["meterValue"]
    ended = event(3, "Ended", t1 + timedelta(minutes=1), 0, "Transaction.End")
    del ended["meterValue"]
    cp.call("TransactionEvent", first, "u")
    cp.call("TransactionEvent", ended, "e")
    session = ChargingSession.objects.get(station=station, transaction_id="TX-OOO")
    assert (session.energy_wh, session.flags, session.held_for_review) == (None, ["energy_unknown"], True)


def test_rel_23_a_started_arriving_after_ended_corrects_the_energy(dialect, station):
    cp = Harness(dialect.cp_class, station)
    t1 = timezone.now().replace(microsecond=0) - timedelta(minutes=3)
    ended = event(1, "Ended", t1 + timedelta(minutes=2), 5_000, "Transaction.End", stoppedReason="Local")
    ended["evse"] = {"id": 1, "connectorId": 1}
    started = event(0, "Started", t1, 1_000, "Transaction.Begin")
    assert cp.call("TransactionEvent", ended, "e")[0] == 3
    assert cp.call("TransactionEvent", started, "s")[0] == 3
    session = ChargingSession.objects.get(station=station, transaction_id="TX-OOO")
    assert (session.started_at, session.stopped_at) == (t1, t1 + timedelta(minutes=2))
    assert (session.meter_start_wh, session.meter_stop_wh, session.energy_wh) == (1_000, 5_000, 4_000)
    assert (session.status, session.flags) == ("completed", [])
