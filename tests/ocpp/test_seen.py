"""Last-seen times coalesced per process (cpms/ocpp/seen.py; issue 13): a Heartbeat's mark is written with the
others of its flush interval in a few UPDATEs, never backwards, and a failed write is retried."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cpms.ocpp import seen
from stations.models import ChargingStation
from stations.services.ocpp import stations_seen
from tests.factories import ChargingStationFactory

T0 = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)


def test_one_update_per_whole_second_and_never_backwards(db):
    a, b, c = (ChargingStationFactory(last_seen_at=None) for _ in range(3))
    later = ChargingStationFactory(last_seen_at=T0 + timedelta(minutes=5))
    with CaptureQueriesContext(connection) as queries:
        written = stations_seen(
            seen={
                a.pk: T0.replace(microsecond=100),
                b.pk: T0.replace(microsecond=900_000),
                c.pk: T0 + timedelta(seconds=1),
                later.pk: T0,  # older than what is stored: left alone
            }
        )
    assert written == 3
    assert len([q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]) == 2
    stored = dict(ChargingStation.objects.values_list("pk", "last_seen_at"))
    assert (stored[a.pk], stored[b.pk], stored[c.pk], stored[later.pk]) == (
        T0, T0, T0 + timedelta(seconds=1), T0 + timedelta(minutes=5),
    )  # fmt: skip


@pytest.fixture
def flush_every(settings):
    settings.OCPP_SEEN_FLUSH_S = 0.2
    seen._pending.clear()
    yield
    seen._pending.clear()


def test_marks_wait_for_the_flush_and_the_latest_per_station_wins(transactional_db, flush_every):
    a, b = ChargingStationFactory(last_seen_at=None), ChargingStationFactory(last_seen_at=None)

    async def scenario():
        await seen.mark(a.pk, T0)
        await seen.mark(a.pk, T0 + timedelta(seconds=3))
        await seen.mark(a.pk, T0 + timedelta(seconds=2))  # out of order: the latest stays
        await seen.mark(b.pk, T0)
        before = await asyncio.to_thread(
            lambda: list(ChargingStation.objects.values_list("last_seen_at", flat=True))
        )
        await asyncio.sleep(0.5)
        return before

    assert asyncio.run(scenario()) == [None, None]
    stored = dict(ChargingStation.objects.values_list("pk", "last_seen_at"))
    assert (stored[a.pk], stored[b.pk]) == (T0 + timedelta(seconds=3), T0)
    assert seen._pending == {}


def test_a_failed_write_is_kept_for_the_next_flush(transactional_db, flush_every, monkeypatch):
    station = ChargingStationFactory(last_seen_at=None)
    calls = []

    def failing_once(*, seen):
        calls.append(dict(seen))
        if len(calls) == 1:
            raise RuntimeError("database away")
        return stations_seen(seen=seen)

    monkeypatch.setattr(seen, "stations_seen", failing_once)

    async def scenario():
        await seen.mark(station.pk, T0)
        await asyncio.sleep(0.3)  # first flush fails
        await seen.mark(station.pk, T0 - timedelta(seconds=10))  # older than the one kept: it stays T0
        await asyncio.sleep(0.5)

    asyncio.run(scenario())
    assert calls == [{station.pk: T0}, {station.pk: T0}]
    station.refresh_from_db()
    assert station.last_seen_at == T0
