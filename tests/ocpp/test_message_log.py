"""The OCPP frame log is best-effort but bounded (docs/ocpp.md#the-frame-log): a write that fails because the
database is restarting keeps its rows for the next flush; only an overflow of MAX_QUEUED drops (the oldest)."""

import asyncio
import logging

import psycopg
import pytest
from django.db import IntegrityError, OperationalError

from cpms.ocpp import message_log as message_log_module
from cpms.ocpp.message_log import MessageLog
from stations.models import OcppMessage
from tests.factories import ChargingStationFactory


@pytest.fixture
def log(settings):
    settings.OCPP_MESSAGE_LOG = "all"
    return MessageLog()


def _record(log: MessageLog, station, n: int) -> None:
    log.record(
        station_id=station.pk,
        identity=station.identity,
        direction="in",
        message_type=2,
        unique_id=f"m{n}",
        action="Heartbeat",
        payload=f'[2,"m{n}","Heartbeat",{{}}]',
    )


def _failing_once(monkeypatch, exc: Exception) -> list:
    real, attempts = message_log_module._write, []

    def write(rows):
        attempts.append(len(rows))
        if len(attempts) == 1:
            raise exc
        real(rows)

    monkeypatch.setattr(message_log_module, "_write", write)
    return attempts


def test_rel_31_frame_log_rows_survive_a_failed_write(transactional_db, log, monkeypatch):
    station = ChargingStationFactory()
    attempts = _failing_once(
        monkeypatch, OperationalError("terminating connection due to administrator command")
    )

    async def scenario():
        for n in range(3):
            _record(log, station, n)
        assert await log.flush() == 0  # the database is down
        _record(log, station, 3)  # a frame arriving during the outage
        assert await log.flush() == 4

    asyncio.run(scenario())

    assert attempts == [3, 4]
    assert list(OcppMessage.objects.order_by("id").values_list("unique_id", flat=True)) == [
        "m0",
        "m1",
        "m2",
        "m3",
    ]
    assert (log.queued, log.dropped) == (0, 0)


def test_frame_log_drops_the_oldest_past_its_bound(transactional_db, log, monkeypatch):
    station = ChargingStationFactory()
    monkeypatch.setattr(message_log_module, "MAX_QUEUED", 3)
    _failing_once(monkeypatch, OperationalError("connection refused"))

    async def scenario():
        for n in range(2):
            _record(log, station, n)
        assert await log.flush() == 0
        for n in range(2, 4):
            _record(log, station, n)
        assert await log.flush() == 3

    asyncio.run(scenario())

    assert list(OcppMessage.objects.order_by("id").values_list("unique_id", flat=True)) == ["m1", "m2", "m3"]
    assert log.dropped == 1


def test_frame_log_drops_rows_that_cannot_be_written(transactional_db, log, monkeypatch):
    """Not a connection error: retrying the same rows cannot help, so they are dropped and counted."""
    station = ChargingStationFactory()
    _failing_once(monkeypatch, IntegrityError("insert or update violates foreign key constraint"))

    async def scenario():
        _record(log, station, 0)
        assert await log.flush() == 0
        _record(log, station, 1)
        assert await log.flush() == 1

    asyncio.run(scenario())

    assert list(OcppMessage.objects.values_list("unique_id", flat=True)) == ["m1"]
    assert (log.queued, log.dropped) == (0, 1)


def test_a_write_that_lost_a_deadlock_is_written_at_the_next_flush_without_an_error(
    transactional_db, log, monkeypatch, caplog
):
    station = ChargingStationFactory()
    try:
        raise psycopg.errors.DeadlockDetected("deadlock detected")
    except psycopg.Error as cause:
        deadlock = OperationalError("deadlock detected")
        deadlock.__cause__ = cause
    attempts = _failing_once(monkeypatch, deadlock)

    async def scenario():
        for n in range(2):
            _record(log, station, n)
        first = await log.flush()
        second = await log.flush()
        return first, second

    with caplog.at_level(logging.INFO, logger="cpms.ocpp.message_log"):
        assert asyncio.run(scenario()) == (0, 2)
    assert attempts == [2, 2]
    assert OcppMessage.objects.count() == 2
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("lost a deadlock" in r.getMessage() for r in caplog.records)
