"""TransactionEventResponse as 2.0.1 / 2.1 chargers and conformance suites expect it: exact frames."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import ChargeDetailRecord
from billing.services.cdrs import session_bill
from billing.services.tariffs import TariffVersionInput, tariff_assign, tariff_create, tariff_version_create
from cpms.ocpp.mappers import format_datetime
from cpms.ocpp.v21.handlers import V21ChargePoint
from cpms.ocpp.v201.handlers import V201ChargePoint
from sessions.models import ChargingSession, TransactionEvent
from tests.factories import ChargingStationFactory, IdTokenFactory
from tests.ocpp.harness import Harness, inline_db  # noqa: F401

pytestmark = pytest.mark.usefixtures("inline_db")


def ts(seconds: int = 0) -> str:
    return format_datetime(timezone.now().replace(microsecond=0) - timedelta(minutes=3, seconds=-seconds))


@pytest.fixture
def station(db):
    station = ChargingStationFactory(identity="CP-TE")
    IdTokenFactory(organisation=station.organisation, value="GOOD", type="ISO14443")
    return station


@pytest.fixture(params=[V201ChargePoint, V21ChargePoint], ids=["2.0.1", "2.1"])
def cp(request, station):
    return Harness(request.param, station)


def event(
    event_type: str, seq: int, *, trigger: str, tx: str = "TX-1", wh: int | None = None, **extra
) -> dict:
    at = ts(seq * 10)
    payload = {
        "eventType": event_type,
        "timestamp": at,
        "triggerReason": trigger,
        "seqNo": seq,
        "transactionInfo": {"transactionId": tx, **extra.pop("info", {})},
        **extra,
    }
    if wh is not None:
        payload["meterValue"] = [{"timestamp": at, "sampledValue": [{"value": wh}]}]
    return payload


GOOD = {"idToken": "GOOD", "type": "ISO14443"}


def test_started_without_id_token_carries_no_id_token_info(cp):
    """Cable plugged in first: the Started event has no idToken, so the answer has no idTokenInfo
    (OCPP 2.0.1 E01/E02, TransactionEventResponse.idTokenInfo: "required when the transactionEventRequest
    contained an idToken"; a charger may stop the transaction on an Unknown status)."""
    started = event("Started", 0, trigger="CablePluggedIn", evse={"id": 1, "connectorId": 1}, wh=100)
    assert cp.call("TransactionEvent", started, "e0") == [3, "e0", {}]
    session = ChargingSession.objects.get()
    assert (session.id_tag, session.id_token_id, session.id_token_status, session.flags) == ("", None, "", [])


def test_remote_start_token_comes_later(cp):
    """A remote start: the first event names only the remoteStartId; the idToken arrives in a later event,
    which alone gets idTokenInfo."""
    started = event(
        "Started",
        0,
        trigger="RemoteStart",
        evse={"id": 1, "connectorId": 1},
        info={"remoteStartId": 42},
    )
    assert cp.call("TransactionEvent", started, "e0") == [3, "e0", {}]
    authorized = event("Updated", 1, trigger="Authorized", idToken=GOOD)
    assert cp.call("TransactionEvent", authorized, "e1") == [3, "e1", {"idTokenInfo": {"status": "Accepted"}}]
    ended = event("Ended", 2, trigger="EVCommunicationLost", info={"stoppedReason": "EVDisconnected"})
    assert cp.call("TransactionEvent", ended, "e2") == [3, "e2", {}]
    assert ChargingSession.objects.get().id_tag == "GOOD"


def test_ended_opening_a_session_without_id_token_carries_no_id_token_info(cp):
    # An offline batch whose Ended event arrives first (no idToken in it) opens the session.
    ended = event("Ended", 3, trigger="EVDeparted", evse={"id": 1, "connectorId": 1}, wh=900)
    assert cp.call("TransactionEvent", ended, "e3") == [3, "e3", {}]


def test_started_with_id_token_known_and_unknown(cp):
    known = event("Started", 0, trigger="Authorized", idToken=GOOD, evse={"id": 1, "connectorId": 1})
    assert cp.call("TransactionEvent", known, "a") == [3, "a", {"idTokenInfo": {"status": "Accepted"}}]
    unknown = event(
        "Started",
        0,
        tx="TX-2",
        trigger="Authorized",
        idToken={"idToken": "WHO", "type": "ISO14443"},
        evse={"id": 2, "connectorId": 1},
    )
    assert cp.call("TransactionEvent", unknown, "b") == [3, "b", {"idTokenInfo": {"status": "Unknown"}}]


def test_duplicate_event_answered_alike(cp):
    # The same Started redelivered with a new message id: the same answer, without idTokenInfo.
    started = event("Started", 0, trigger="CablePluggedIn", evse={"id": 1, "connectorId": 1})
    assert cp.call("TransactionEvent", started, "a") == [3, "a", {}]
    assert cp.call("TransactionEvent", started, "b") == [3, "b", {}]


# --- totalCost in the answer to Ended (OCPP 2.0.1 I03, TransactionEventResponse.totalCost) ----------------


@pytest.fixture
def priced(station):
    """A tariff with a fee, energy and time, and tax: every part of the engine the CDR uses."""
    tariff = tariff_create(organisation=station.organisation, name="standard")
    tariff_version_create(
        tariff=tariff,
        data=TariffVersionInput(
            valid_from=timezone.now() - timedelta(days=1),
            currency="EUR",
            tax_rate=Decimal("0.19"),
            elements=[
                {
                    "price_components": [
                        {"type": "FLAT", "price": "0.50"},
                        {"type": "ENERGY", "price": "0.37"},
                        {"type": "TIME", "price": "2.40", "step_size": 60},
                    ]
                }
            ],
        ),
    )
    tariff_assign(tariff=tariff)


def run_priced_session(cp, *, tx: str = "TX-P", stop_wh: int = 9_876) -> list:
    """Started 1,000 Wh, Updated 5,123 Wh, Ended `stop_wh` 47 minutes after the start: the Ended answer."""
    t0 = timezone.now().replace(microsecond=0) - timedelta(hours=1)

    def at(minutes: int) -> str:
        return format_datetime(t0 + timedelta(minutes=minutes))

    def sampled(minutes: int, wh: int) -> list:
        return [{"timestamp": at(minutes), "sampledValue": [{"value": wh}]}]

    started = {
        "eventType": "Started",
        "timestamp": at(0),
        "triggerReason": "Authorized",
        "seqNo": 0,
        "transactionInfo": {"transactionId": tx, "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1},
        "idToken": GOOD,
        "meterValue": sampled(0, 1_000),
    }
    assert cp.call("TransactionEvent", started, "s")[2] == {"idTokenInfo": {"status": "Accepted"}}
    updated = {
        "eventType": "Updated",
        "timestamp": at(20),
        "triggerReason": "MeterValuePeriodic",
        "seqNo": 1,
        "transactionInfo": {"transactionId": tx},
        "meterValue": sampled(20, 5_123),
    }
    assert cp.call("TransactionEvent", updated, "u") == [3, "u", {}]
    ended = {
        "eventType": "Ended",
        "timestamp": at(47),
        "triggerReason": "StopAuthorized",
        "seqNo": 2,
        "transactionInfo": {"transactionId": tx, "stoppedReason": "Local"},
        "meterValue": sampled(47, stop_wh),
    }
    return cp.call("TransactionEvent", ended, "e")


@pytest.mark.usefixtures("priced")
def test_ended_of_a_priced_session_carries_the_cdr_total(cp):
    answer = run_priced_session(cp)
    session = ChargingSession.objects.get()
    assert session_bill(session_id=session.pk).outcome == "billed"
    cdr = ChargeDetailRecord.objects.get()
    # By hand: FLAT 0.50; ENERGY 8.876 kWh x 0.37 = 3.28412 -> 3.28; TIME 47 min x 2.40/h = 1.88;
    # subtotal 5.66; tax 19 % = 1.0754 -> 1.08; total 6.74.
    assert (cdr.flat_amount, cdr.energy_amount, cdr.time_amount, cdr.total) == (
        Decimal("0.50"),
        Decimal("3.28"),
        Decimal("1.88"),
        Decimal("6.74"),
    )
    assert answer == [3, "e", {"totalCost": 6.74}]
    assert Decimal(str(answer[2]["totalCost"])) == cdr.total


@pytest.mark.usefixtures("priced")
def test_ended_redelivered_gets_the_same_total(cp):
    # The charger did not get our answer (a crash after commit) and sends the same Ended again, before and
    # after the CDR is written: the same total each time.
    assert run_priced_session(cp) == [3, "e", {"totalCost": 6.74}]
    frame = TransactionEvent.objects.get(seq_no=2).payload
    assert cp.call("TransactionEvent", frame, "e2") == [3, "e2", {"totalCost": 6.74}]
    session_bill(session_id=ChargingSession.objects.get().pk)
    assert cp.call("TransactionEvent", frame, "e3") == [3, "e3", {"totalCost": 6.74}]


def test_ended_of_a_session_without_tariff_carries_no_total_cost(cp):
    # No tariff: the platform does not price the session (billing may happen elsewhere), so it says nothing
    # rather than 0.00, which would tell the driver the charge was free.
    assert run_priced_session(cp) == [3, "e", {}]


@pytest.mark.usefixtures("priced")
def test_ended_of_a_session_held_from_billing_carries_no_total_cost(cp):
    # The register went backwards: the session is held for review, its final cost is not known yet.
    assert run_priced_session(cp, stop_wh=500) == [3, "e", {}]
    assert ChargingSession.objects.get().held_for_review is True
