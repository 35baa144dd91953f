"""docs/reliability.md case 44 / issue 15 acceptance 2: one hostile charger causes zero failures for the other
chargers whose messages share its group-commit batch, on PostgreSQL, with the real worker threads (no inline
runner).

Two ways a hostile value can reach the batch, one per case:
- `out_of_range`: a value beyond the column (1e400, 1e300): refused at the boundary with
  PropertyConstraintViolation; the others' batch commits without it.
- `database_refuses`: a value that passes every check of ours but that the database refuses (here a CHECK
  constraint added for the test): the batch rolls back, each of its messages is written again in a
  transaction of its own, and only the hostile one is answered InternalError.
"""

import asyncio
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from cpms.ocpp import common
from cpms.ocpp.mappers import format_datetime
from cpms.ocpp.v16.handlers import V16ChargePoint
from cpms.ocpp.v201.handlers import V201ChargePoint
from sessions.models import ChargingSession, MeterValue, TransactionEvent
from tests.factories import ChargingStationFactory, IdTokenFactory
from tests.ocpp.harness import Harness

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="the batch path under test is PostgreSQL's (COPY)",
    ),
]

GOOD_V16, GOOD_V201 = 6, 4
REFUSED = "424242.5"  # what the test's CHECK constraint refuses; well inside our range check
HOSTILE = {"out_of_range": ("1e400", 1e300), "database_refuses": (REFUSED, float(REFUSED))}


def ts(seconds: int = 0) -> str:
    return format_datetime(timezone.now().replace(microsecond=0) - timedelta(minutes=2, seconds=-seconds))


@pytest.fixture
def refusing_database():
    table = MeterValue._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT rel44_refused CHECK (value IS DISTINCT FROM {REFUSED})"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT rel44_refused")


@pytest.fixture
def batches(monkeypatch):
    """Record what each writer flushes, and give it time to gather every charger's message into one batch."""
    seen: dict[str, list[int]] = {"meter_values": [], "transaction_events": []}
    for name in seen:
        writer = getattr(common, f"{name}_writer")
        original = writer._flush

        def recording(*, items, _original=original, _name=name):
            seen[_name].append(len(items))
            return _original(items=items)

        monkeypatch.setattr(writer, "_flush", recording)
        monkeypatch.setattr(writer, "max_wait_s", 0.5)
    return seen


def _chargers(cp_class, count: int, prefix: str) -> list[Harness]:
    chargers = []
    for n in range(count):
        station = ChargingStationFactory(identity=f"{prefix}-{n}")
        IdTokenFactory(organisation=station.organisation, value="GOOD")
        chargers.append(Harness(cp_class, station))
    return chargers


def _v16_meter_values(tx: int, value: str) -> dict:
    return {
        "connectorId": 1,
        "transactionId": tx,
        "meterValue": [{"timestamp": ts(30), "sampledValue": [{"value": value}]}],
    }


def _v201_updated(value: float) -> dict:
    return {
        "eventType": "Updated",
        "timestamp": ts(30),
        "triggerReason": "MeterValuePeriodic",
        "seqNo": 1,
        "transactionInfo": {"transactionId": "TX-1", "chargingState": "Charging"},
        "meterValue": [{"timestamp": ts(30), "sampledValue": [{"value": value}]}],
    }


@pytest.mark.parametrize("case", ["out_of_range", "database_refuses"])
def test_rel_44_hostile_charger_fails_alone_in_a_shared_batch(request, batches, case):
    if case == "database_refuses":
        request.getfixturevalue("refusing_database")
    v16 = _chargers(V16ChargePoint, GOOD_V16 + 1, "V16")  # the last one is hostile
    v201 = _chargers(V201ChargePoint, GOOD_V201 + 1, "V201")
    txs = []
    for charger in v16:
        started = charger.call(
            "StartTransaction", {"connectorId": 1, "idTag": "GOOD", "meterStart": 0, "timestamp": ts()}
        )
        txs.append(started[2]["transactionId"])
    for charger in v201:
        started = {
            "eventType": "Started",
            "timestamp": ts(),
            "triggerReason": "Authorized",
            "seqNo": 0,
            "transactionInfo": {"transactionId": "TX-1"},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": ts(), "sampledValue": [{"value": 100}]}],
        }
        assert charger.call("TransactionEvent", started)[0] == 3
    batches["meter_values"].clear()
    batches["transaction_events"].clear()

    hostile_v16, hostile_v201 = HOSTILE[case]
    frames = [
        (charger, [2, f"mv-{n}", "MeterValues", _v16_meter_values(tx, str(1000 + n))])
        for n, (charger, tx) in enumerate(zip(v16[:-1], txs, strict=False))
    ]
    frames.append((v16[-1], [2, "mv-hostile", "MeterValues", _v16_meter_values(txs[-1], hostile_v16)]))
    frames += [
        (charger, [2, f"te-{n}", "TransactionEvent", _v201_updated(200 + n)])
        for n, charger in enumerate(v201[:-1])
    ]
    frames.append((v201[-1], [2, "te-hostile", "TransactionEvent", _v201_updated(hostile_v201)]))

    async def all_at_once():
        await asyncio.gather(*(charger.cp.route_message(json.dumps(frame)) for charger, frame in frames))

    asyncio.run(all_at_once())
    answers = {frame[1]: json.loads(charger.sent[-1]) for charger, frame in frames}

    # Every well-behaved charger is answered with a CALLRESULT: zero failures.
    assert {i: a for i, a in answers.items() if "hostile" not in i} == {
        **{f"mv-{n}": [3, f"mv-{n}", {}] for n in range(GOOD_V16)},
        **{f"te-{n}": [3, f"te-{n}", {}] for n in range(GOOD_V201)},
    }
    if case == "out_of_range":
        refusal = "is out of range (the magnitude must be below 10^14)"
        assert answers["mv-hostile"] == [
            4,
            "mv-hostile",
            "PropertyConstraintViolation",
            f"sampledValue.value: 1e400 {refusal}",
            {},
        ]
        assert answers["te-hostile"] == [
            4,
            "te-hostile",
            "PropertyConstraintViolation",
            f"sampledValue.value: 1e+300 {refusal}",
            {},
        ]
        # The others shared one batch per writer; the hostile messages never reached it.
        assert batches == {"meter_values": [GOOD_V16], "transaction_events": [GOOD_V201]}
    else:
        internal = "Internal error; retry later"
        assert answers["mv-hostile"] == [4, "mv-hostile", "InternalError", internal, {}]
        assert answers["te-hostile"] == [4, "te-hostile", "InternalError", internal, {}]
        # One batch with the hostile message (the last) in it, rolled back; then halves of what failed, down
        # to the hostile message alone: 7 = 3 + 4, 4 = 2 + 2, 2 = 1 + 1 (and 5 = 2 + 3, 3 = 1 + 2, 2 = 1 + 1).
        assert batches == {"meter_values": [7, 3, 4, 2, 2, 1, 1], "transaction_events": [5, 2, 3, 1, 2, 1, 1]}

    # Each well-behaved charger's values stored exactly once, its session moved on; nothing of the hostile
    # ones.
    stored_v16 = {
        identity: sorted(
            MeterValue.objects.filter(station__identity=identity).values_list("value", flat=True)
        )
        for identity in (f"V16-{n}" for n in range(GOOD_V16 + 1))
    }
    assert stored_v16 == {**{f"V16-{n}": [Decimal(1000 + n)] for n in range(GOOD_V16)}, f"V16-{GOOD_V16}": []}
    stored_v201 = {
        identity: (
            sorted(MeterValue.objects.filter(station__identity=identity).values_list("value", flat=True)),
            sorted(
                TransactionEvent.objects.filter(station__identity=identity).values_list("seq_no", flat=True)
            ),
        )
        for identity in (f"V201-{n}" for n in range(GOOD_V201 + 1))
    }
    assert stored_v201 == {
        **{f"V201-{n}": ([Decimal(100), Decimal(200 + n)], [0, 1]) for n in range(GOOD_V201)},
        f"V201-{GOOD_V201}": ([Decimal(100)], [0]),
    }
    last_wh = dict(ChargingSession.objects.values_list("station__identity", "meter_last_wh"))
    assert last_wh == {
        **{f"V16-{n}": 1000 + n for n in range(GOOD_V16)},
        f"V16-{GOOD_V16}": 0,
        **{f"V201-{n}": 200 + n for n in range(GOOD_V201)},
        f"V201-{GOOD_V201}": 100,
    }
