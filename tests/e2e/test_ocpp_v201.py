"""OCPP 2.0.1 end to end: a real server process, the built-in simulator (and a raw WebSocket client for
what the simulator never does, such as delivering one TransactionEvent twice), the test database."""

import asyncio
import base64
import datetime as dt
import json
import uuid

import pytest
from websockets.asyncio.client import connect

from cpms.simulator.meter import ocpp_timestamp
from sessions.enums import IdTokenStatus, SessionStatus
from sessions.models import ChargingSession, MeterValue, TransactionEvent
from stations.enums import OcppVersion
from tests.e2e.helpers import assert_session_stored, simulate, status_history
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory, IdTokenFactory

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

METER_SAMPLES = 3
# Frames a raw client reads while waiting for one answer (CSMS calls in between are refused).
MAX_FRAMES_PER_CALL = 20


def test_e2e_v201_full_session(cpms_server):
    station = ChargingStationFactory(identity="E2E-V201-001")
    id_token = IdTokenFactory(
        organisation=station.organisation, value="E2E-TAG-201", status=IdTokenStatus.ACCEPTED
    )

    summary = simulate(
        cpms_server,
        (station.identity,),
        id_tag=id_token.value,
        meter_samples=METER_SAMPLES,
        seed=9,
        protocol="2.0.1",
    )

    assert summary.ok, summary.format()
    [charger] = summary.chargers
    assert (charger.call_errors, charger.errors) == ([], [])
    [record] = charger.sessions
    station.refresh_from_db()
    assert station.protocol == OcppVersion.V201
    assert (station.vendor, station.model, station.firmware_version) == ("CPMS", "Simulator", "sim-1.0")
    session = assert_session_stored(station, record)
    assert (session.stop_reason, session.id_token_id) == ("Local", id_token.pk)
    events = TransactionEvent.objects.filter(session=session).order_by("seq_no")
    assert [(e.seq_no, e.event_type, e.trigger_reason) for e in events] == [
        (0, "Started", "Authorized"),
        *[(n, "Updated", "MeterValuePeriodic") for n in range(1, METER_SAMPLES + 1)],
        (METER_SAMPLES + 1, "Ended", "StopAuthorized"),
    ]
    contexts = MeterValue.objects.filter(session=session, measurand="Energy.Active.Import.Register")
    assert sorted(contexts.values_list("context", flat=True)) == sorted(
        ["Transaction.Begin", *["Sample.Periodic"] * METER_SAMPLES, "Transaction.End"]
    )
    assert status_history(station, 1) == ["Available", "Occupied", "Available"]
    assert status_history(station, 2) == ["Available"]


async def _call(connection, action: str, payload: dict) -> list:
    """Send a CALL, return the frame that answers it (CALLRESULT or CALLERROR)."""
    unique_id = str(uuid.uuid4())
    await connection.send(json.dumps([2, unique_id, action, payload]))
    for _ in range(MAX_FRAMES_PER_CALL):
        frame = json.loads(await asyncio.wait_for(connection.recv(), timeout=15))
        if frame[0] == 2:
            await connection.send(json.dumps([4, frame[1], "NotImplemented", "raw test client", {}]))
        elif frame[1] == unique_id:
            return frame
    raise AssertionError(f"{action}: no answer in {MAX_FRAMES_PER_CALL} frames")


# The raw client's transaction: (eventType, triggerReason, register Wh, reading context, transactionInfo).
RAW_EVENTS = (
    ("Started", "Authorized", 1_000_000, "Transaction.Begin", {}),
    ("Updated", "MeterValuePeriodic", 1_000_500, "Sample.Periodic", {"chargingState": "Charging"}),
    ("Ended", "EVCommunicationLost", 1_000_800, "Transaction.End", {"stoppedReason": "EVDisconnected"}),
)


def _transaction_events(transaction_id: str, id_tag: str) -> list[dict]:
    """RAW_EVENTS as TransactionEvent payloads, 10 s apart (in the past); seqNo 0, 1, 2. Only the first
    names the EVSE and the token (the spec sends them once)."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    events = []
    for seq_no, (event_type, trigger, wh, context, info) in enumerate(RAW_EVENTS):
        moment = ocpp_timestamp(start + dt.timedelta(seconds=10 * seq_no))
        reading = {
            "value": wh,
            "context": context,
            "measurand": "Energy.Active.Import.Register",
            "unitOfMeasure": {"unit": "Wh"},
        }
        events.append(
            {
                "eventType": event_type,
                "timestamp": moment,
                "triggerReason": trigger,
                "seqNo": seq_no,
                "transactionInfo": {"transactionId": transaction_id, **info},
                "meterValue": [{"timestamp": moment, "sampledValue": [reading]}],
            }
        )
    events[0].update(evse={"id": 1, "connectorId": 1}, idToken={"idToken": id_tag, "type": "ISO14443"})
    return events


async def _deliver_twice(server, identity: str, transaction_id: str, id_tag: str) -> list[list]:
    """Boot, Started, the same Updated twice (two message ids, as after a reconnect), Ended. The answers."""
    auth = base64.b64encode(f"{identity}:{DEFAULT_STATION_PASSWORD}".encode()).decode()
    started, updated, ended = _transaction_events(transaction_id, id_tag)
    async with connect(
        f"{server.ws_url}/{identity}",
        subprotocols=["ocpp2.0.1"],
        additional_headers={"Authorization": f"Basic {auth}"},
        open_timeout=10,
        proxy=None,
        compression=None,
    ) as connection:
        boot = await _call(
            connection,
            "BootNotification",
            {"chargingStation": {"vendorName": "CPMS", "model": "RawClient"}, "reason": "PowerUp"},
        )
        assert boot[2]["status"] == "Accepted", boot
        return [
            await _call(connection, "TransactionEvent", event) for event in (started, updated, updated, ended)
        ]


def test_e2e_v201_duplicate_transaction_event_is_stored_once(cpms_server):
    station = ChargingStationFactory(identity="E2E-V201-DUP")
    id_token = IdTokenFactory(
        organisation=station.organisation, value="E2E-TAG-DUP", status=IdTokenStatus.ACCEPTED
    )

    answers = asyncio.run(_deliver_twice(cpms_server, station.identity, "E2E-DUP-TX-1", id_token.value))

    started, first, second, ended = answers
    assert [frame[0] for frame in answers] == [3, 3, 3, 3], answers
    assert started[2] == {"idTokenInfo": {"status": "Accepted"}}
    # The duplicate is answered like the original (the charger must not retry it) ...
    assert first[2] == second[2] == {}
    assert ended[2] == {}
    # ... and stored and applied once.
    [session] = ChargingSession.objects.filter(station=station)
    assert (session.transaction_id, session.status, session.stop_reason) == (
        "E2E-DUP-TX-1",
        SessionStatus.COMPLETED,
        "EVDisconnected",
    )
    assert (session.meter_start_wh, session.meter_stop_wh, session.energy_wh) == (1_000_000, 1_000_800, 800)
    events = TransactionEvent.objects.filter(station=station).order_by("seq_no")
    assert [(e.seq_no, e.event_type) for e in events] == [(0, "Started"), (1, "Updated"), (2, "Ended")]
    rows = MeterValue.objects.filter(station=station).order_by("timestamp")
    assert [(row.context, int(row.value), row.session_id) for row in rows] == [
        ("Transaction.Begin", 1_000_000, session.pk),
        ("Sample.Periodic", 1_000_500, session.pk),
        ("Transaction.End", 1_000_800, session.pk),
    ]


def test_e2e_v201_meter_values_are_on_the_session_evse(cpms_server):
    station = ChargingStationFactory(identity="E2E-V201-EVSE")
    id_token = IdTokenFactory(
        organisation=station.organisation, value="E2E-TAG-EVSE", status=IdTokenStatus.ACCEPTED
    )

    asyncio.run(_deliver_twice(cpms_server, station.identity, "E2E-EVSE-TX-1", id_token.value))

    rows = MeterValue.objects.filter(station=station).order_by("timestamp")
    assert [(row.context, row.evse_id) for row in rows] == [
        ("Transaction.Begin", 1),
        ("Sample.Periodic", 1),
        ("Transaction.End", 1),
    ]
