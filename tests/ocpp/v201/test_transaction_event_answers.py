"""TransactionEventResponse as 2.0.1 / 2.1 chargers and conformance suites expect it: exact frames."""

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions.models import ChargingSession
from stations.ocpp.mappers import format_datetime
from stations.ocpp.v21.handlers import V21ChargePoint
from stations.ocpp.v201.handlers import V201ChargePoint
from tests.factories import ChargingStationFactory, IdTokenFactory
from tests.ocpp.harness import Harness, inline_db  # noqa: F401

pytestmark = pytest.mark.usefixtures("inline_db")


def ts(seconds: int = 0) -> str:
    return format_datetime(timezone.now().replace(microsecond=0) - timedelta(minutes=3, seconds=-seconds))


@pytest.fixture(params=[V201ChargePoint, V21ChargePoint], ids=["2.0.1", "2.1"])
def cp(request, db):
    station = ChargingStationFactory(identity="CP-TE")
    IdTokenFactory(organisation=station.organisation, value="GOOD", type="ISO14443")
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
