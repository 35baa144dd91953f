"""Group commit: many connections' messages in one transaction, each caller answered with its own result."""

import asyncio
from datetime import timedelta

import pytest
from django.utils import timezone

from sessions.models import ChargingSession, TransactionEvent
from sessions.services.transactions import transaction_events_record_many
from sessions.types import TransactionEventRequest
from stations.ocpp.batching import GroupCommit
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
    assert [type(r).__name__ for r in results] == [
        "TransactionEventResult",
        "IntegrityError",
        "TransactionEventResult",
    ] or (
        not isinstance(results[0], Exception)
        and isinstance(results[1], Exception)
        and not isinstance(results[2], Exception)
    )
    assert set(ChargingSession.objects.values_list("transaction_id", flat=True)) == {"A", "C"}
    assert TransactionEvent.objects.count() == 2
