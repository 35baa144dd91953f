"""Group commit: many connections' messages in one transaction, each caller answered with its own result."""

import asyncio
import logging
from datetime import timedelta

import psycopg
import pytest
from django.db import IntegrityError, OperationalError
from django.utils import timezone

from cpms.ocpp import batching
from cpms.ocpp.batching import GroupCommit
from sessions.models import ChargingSession, TransactionEvent
from sessions.services.ingest import transaction_events_record_many
from sessions.types import TransactionEventRequest
from tests.factories import ChargingStationFactory


def test_group_commit_batches_concurrent_submissions_and_routes_results():
    batches: list[list[int]] = []

    def flush(*, items):
        batches.append(list(items))
        return [ValueError(f"bad {i}") if i == 7 else i * 10 for i in items]

    writer = GroupCommit(flush, max_batch=50, max_wait_s=0.01)

    async def scenario():
        return await asyncio.gather(*(writer.submit(i) for i in range(20)), return_exceptions=True)

    results = asyncio.run(scenario())
    assert [r for i, r in enumerate(results) if i != 7] == [i * 10 for i in range(20) if i != 7]
    assert isinstance(results[7], ValueError) and str(results[7]) == "bad 7"
    assert sorted(i for batch in batches for i in batch) == list(range(20))
    assert len(batches) <= 2  # they arrived together: one batch (two if the first woke early)


def test_group_commit_respects_max_batch():
    batches: list[int] = []

    def flush(*, items):
        batches.append(len(items))
        return list(items)

    writer = GroupCommit(flush, max_batch=4, max_wait_s=0.005)

    async def scenario():
        return await asyncio.gather(*(writer.submit(i) for i in range(10)))

    assert asyncio.run(scenario()) == list(range(10))
    assert max(batches) <= 4 and sum(batches) == 10


def test_group_commit_failure_of_whole_batch_reaches_every_caller():
    def flush(*, items):
        raise RuntimeError("database down")

    writer = GroupCommit(flush)

    async def scenario():
        return await asyncio.gather(*(writer.submit(i) for i in range(3)), return_exceptions=True)

    assert [str(r) for r in asyncio.run(scenario())] == ["database down"] * 3


def _gather(writer: GroupCommit, items: list) -> list:
    async def scenario():
        return await asyncio.gather(*(writer.submit(i) for i in items), return_exceptions=True)

    return asyncio.run(scenario())


def test_rel_44_failed_batch_is_written_item_by_item_so_only_the_bad_item_fails(caplog):
    calls: list[list[str]] = []

    def flush(*, items):
        calls.append(list(items))
        if "bad" in items:  # the database refuses this item: the whole transaction rolls back
            raise IntegrityError('new row violates check constraint "x"')
        return [f"stored {i}" for i in items]

    writer = GroupCommit(flush, max_wait_s=0.05)
    with caplog.at_level(logging.INFO, logger="cpms.ocpp.batching"):
        results = _gather(writer, ["a", "bad", "b", "c"])

    assert [results[0], results[2], results[3]] == ["stored a", "stored b", "stored c"]
    assert isinstance(results[1], IntegrityError)
    assert str(results[1]) == 'new row violates check constraint "x"'
    # The batch once (rolled back), then halves of what failed, down to the bad item: each good item is
    # committed in exactly one part, none twice.
    assert calls == [["a", "bad", "b", "c"], ["a", "bad"], ["a"], ["bad"], ["b", "c"]]
    # One line for the batch, no traceback; the failing item's own error is logged by its handler.
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records] == [
        (
            "WARNING",
            'group commit of 4 items failed (IntegrityError: new row violates check constraint "x"); '
            "written again in parts: 1 failed alone (5 transactions)",
            None,
        )
    ]


def test_rel_44_per_item_results_that_are_errors_stay_with_their_item_in_the_fallback():
    def flush(*, items):
        if "bad" in items:
            raise IntegrityError("refused")
        return [ValueError(i) if i == "careful" else i for i in items]

    results = _gather(GroupCommit(flush, max_wait_s=0.05), ["a", "careful", "bad"])
    assert [type(r).__name__ for r in results] == ["str", "ValueError", "IntegrityError"]
    assert results[0] == "a"


def test_rel_44_lost_connection_fails_the_batch_without_writing_items_again():
    # The connection died (perhaps during COMMIT: the outcome is unknown) or the database is down: writing
    # each item again could store it twice and would wait out the outage once per item.
    calls: list[list[int]] = []

    def flush(*, items):
        calls.append(list(items))
        raise OperationalError("server closed the connection unexpectedly")

    results = _gather(GroupCommit(flush, max_wait_s=0.05), [1, 2, 3])
    assert calls == [[1, 2, 3]]
    assert [str(r) for r in results] == ["server closed the connection unexpectedly"] * 3


def test_rel_44_fallback_stops_when_the_database_goes_away_meanwhile():
    calls: list[list[int]] = []

    def flush(*, items):
        calls.append(list(items))
        if len(items) > 1 or items == [2]:
            raise IntegrityError("refused") if len(items) > 1 else OperationalError("connection lost")
        return list(items)

    results = _gather(GroupCommit(flush, max_wait_s=0.05), [1, 2, 3])
    assert calls == [[1, 2, 3], [1], [2, 3], [2]]
    assert results[0] == 1
    assert [str(r) for r in results[1:]] == ["connection lost", "connection lost"]


@pytest.mark.django_db
def test_one_bad_transaction_event_fails_alone():
    station = ChargingStationFactory()
    now = timezone.now()

    def event(tx: str, seq: int) -> tuple[TransactionEventRequest, int]:
        request = TransactionEventRequest(
            station_id=station.pk,
            transaction_id=tx,
            seq_no=seq,
            event_type="Started",
            trigger_reason="Authorized",
            timestamp=now - timedelta(seconds=10),
            received_at=now,
            payload={},
            evse_id=1,
            connector_id=1,
        )
        return request, station.organisation_id

    # seqNo -1 breaks the database's check on seq_no: that event's savepoint is rolled back.
    results = transaction_events_record_many(items=[event("A", 0), event("B", -1), event("C", 0)])
    assert [isinstance(r, Exception) for r in results] == [False, True, False]
    assert set(ChargingSession.objects.values_list("transaction_id", flat=True)) == {"A", "C"}
    assert TransactionEvent.objects.count() == 2


@pytest.mark.django_db
def test_updated_events_written_set_wise_with_duplicates_and_unknowns_decided_carefully():
    from decimal import Decimal

    from sessions.models import MeterValue
    from sessions.types import Sample

    station = ChargingStationFactory()
    org = station.organisation_id
    now = timezone.now()

    def request(
        tx: str, seq: int, event_type: str = "Updated", wh: int | None = None, state: str = "Charging"
    ):
        samples = (Sample(timestamp=now - timedelta(seconds=60 - seq), value=Decimal(wh)),) if wh else ()
        return (
            TransactionEventRequest(
                station_id=station.pk,
                transaction_id=tx,
                seq_no=seq,
                event_type=event_type,
                trigger_reason="MeterValuePeriodic",
                timestamp=now - timedelta(seconds=60 - seq),
                received_at=now,
                payload={"seqNo": seq},
                evse_id=2 if event_type == "Started" else None,
                connector_id=1,
                samples=samples,
                charging_state=state,
            ),
            org,
        )

    transaction_events_record_many(items=[request("A", 0, "Started", 1000), request("B", 0, "Started", 5000)])
    results = transaction_events_record_many(
        items=[
            request("A", 1, wh=1500, state="SuspendedEV"),
            request("B", 1, wh=5200),
            request("B", 1, wh=5200),  # the same event twice in one batch (two connections)
            request("GHOST", 4, wh=10),  # an Updated for a transaction never started: opened carefully
        ]
    )
    assert [r.duplicate for r in results] == [False, False, True, False]
    a, b = ChargingSession.objects.get(transaction_id="A"), ChargingSession.objects.get(transaction_id="B")
    assert (a.meter_last_wh, a.charging_state, b.meter_last_wh, b.charging_state) == (
        1500,
        "SuspendedEV",
        5200,
        "Charging",
    )
    assert TransactionEvent.objects.filter(transaction_id="B").count() == 2
    assert list(
        MeterValue.objects.filter(session=a).order_by("timestamp").values_list("evse_id", "value")
    ) == [
        (2, Decimal("1000")),
        (2, Decimal("1500")),
    ]
    assert ChargingSession.objects.filter(transaction_id="GHOST").count() == 1


def _deadlock() -> OperationalError:
    """What Django raises when PostgreSQL ends a deadlock by rolling this transaction back."""
    try:
        raise psycopg.errors.DeadlockDetected("deadlock detected")
    except psycopg.Error as cause:
        try:
            raise OperationalError("deadlock detected") from cause
        except OperationalError as exc:
            return exc


def test_a_batch_that_lost_a_deadlock_is_written_again_and_nobody_gets_an_error():
    calls: list[list[int]] = []

    def flush(*, items):
        calls.append(list(items))
        if len(calls) <= 2:
            raise _deadlock()  # rolled back whole: nothing of it was written
        return [i * 10 for i in items]

    results = _gather(GroupCommit(flush, max_wait_s=0.05), [1, 2, 3])
    assert results == [10, 20, 30]
    assert calls == [[1, 2, 3]] * 3


def test_a_batch_that_keeps_losing_deadlocks_fails_after_the_retries():
    calls: list[list[int]] = []

    def flush(*, items):
        calls.append(list(items))
        raise _deadlock()

    results = _gather(GroupCommit(flush, max_wait_s=0.05), [1, 2])
    assert all(isinstance(r, OperationalError) for r in results)
    assert len(calls) == batching.RETRIES + 1
