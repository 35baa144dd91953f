"""Group commit for the OCPP hot path: messages from many connections written in one transaction.

A handler `await`s `submit(item)`; a task per event loop collects what arrives within a few milliseconds
(or up to `max_batch` items), runs the batch service in a worker thread (one transaction), then resolves
every waiting handler with its own result, so each charger is answered only after its data committed.
While one batch is being written the next one fills up, so batches grow with load.

One charger's message must not fail the others' (docs/reliability.md case 44): when the batch's transaction
fails (a value the database refuses, a bug in one item's path), it has rolled back, and the items are written
again in parts (halves, then halves of the failing halves, down to single items), so only an item that fails
alone gets an error. Not when the connection itself failed (database down, connection lost, perhaps during
COMMIT, so the outcome is unknown): writing the items again could store one twice, and would wait out the
outage once per part; every caller gets the error and retries.
"""

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import psycopg
from django.db import InterfaceError, OperationalError

from cpms.ocpp.chargepoint import run_db

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        flush: Callable[..., Sequence[R | Exception]],
        *,
        max_batch: int = 500,
        max_wait_s: float = 0.004,
    ):
        """`flush(items=[...])` runs in a worker thread and returns one result per item, in order; a result
        that is an exception is raised to that item's caller."""
        self._flush = flush
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._pending: list[tuple[T, asyncio.Future]] = []
        # Replaced by one of its own for each event loop that submits (see submit).
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            # One writer task per event loop (tests run several loops in one process).
            self._loop = loop
            self._pending = []
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run())
        future = loop.create_future()
        self._pending.append((item, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._pending:
                continue
            if len(self._pending) < self.max_batch:
                await asyncio.sleep(self.max_wait_s)  # let other connections join this batch
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            await self._write(batch)
            if self._pending:
                self._wakeup.set()

    async def _write(self, batch: list[tuple[T, asyncio.Future]]) -> None:
        try:
            results = await run_db(_flush_or_fall_back, flush=self._flush, items=[item for item, _ in batch])
        except Exception as exc:
            # The connection failed: nothing of the batch is known to be written; every charger retries.
            logger.exception("group commit of %d items failed", len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # the connection may have gone away meanwhile
                continue
            if isinstance(result, Exception):  # that item alone failed (its own transaction rolled back)
                future.set_exception(result)
            else:
                future.set_result(result)


# The database is unreachable, the connection broke, a lock or a statement timed out. psycopg's own classes
# too: COPY runs on the raw cursor, whose errors Django does not wrap. Data errors (DataError, IntegrityError)
# and bugs are none of these.
_CONNECTION_ERRORS = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


def _connection_failed(exc: Exception) -> bool:
    return isinstance(exc, _CONNECTION_ERRORS)


# PostgreSQL chose this transaction to end a deadlock, or could not serialise it: it rolled back whole and
# nothing in it was wrong, so it is simply written again (a batch locks hundreds of rows; two processes'
# batches, or a batch and another writer, can meet in a different order).
_RETRIED_ERRORS = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
RETRIES = 3


def _conflicted(exc: BaseException) -> bool:
    return isinstance(exc, _RETRIED_ERRORS) or isinstance(exc.__cause__, _RETRIED_ERRORS)


def _flush_retried(flush: Callable[..., list], items: list) -> list:
    """`flush(items=items)`, written again (after a short random pause) when it lost a deadlock."""
    for attempt in range(RETRIES + 1):
        try:
            return flush(items=items)
        except Exception as exc:
            if not _conflicted(exc) or attempt == RETRIES:
                raise
            logger.info(
                "group commit of %d items lost a deadlock; written again (%s)", len(items), attempt + 1
            )
            time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
    raise AssertionError("unreachable")


def _flush_or_fall_back(*, flush: Callable[..., list], items: list) -> list:
    """`flush(items=items)` in one transaction; if that fails (and rolled back), the items in parts.

    A failed part is halved and each half written in a transaction of its own, down to single items, so
    that one bad item among 500 costs about 2 x log2(500) = 18 transactions, not 500 (measured on
    PostgreSQL, 500 MeterValues of 5 values with one refused: 0.4-0.6 s in parts, 6-10 s one by one, the
    batch itself 0.15-0.27 s); every item is committed once, in exactly one part. Runs in one worker
    thread; the callers are answered once all parts are done (each item after its own part's commit).
    Raises when the connection failed on the whole batch (see the module doc); when it fails on a part,
    the parts already committed keep their results and the others get that error.
    """
    try:
        return _flush_retried(flush, items)
    except Exception as exc:
        if _connection_failed(exc):
            raise
        if len(items) == 1:
            return [exc]  # that item's own error, answered (and logged) by its handler
        batch_error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    results: list = [None] * len(items)
    middle = len(items) // 2
    parts = [(middle, len(items)), (0, middle)]  # a stack: the first half is written first
    transactions = 1
    while parts:
        start, end = parts.pop()
        transactions += 1
        try:
            results[start:end] = _flush_retried(flush, items[start:end])
        except Exception as exc:
            if _connection_failed(exc):  # the database went away meanwhile: the rest waits for the retry
                for first, last in [(start, end), *parts]:
                    results[first:last] = [exc] * (last - first)
                break
            if end - start == 1:
                results[start] = exc  # logged once, with the charger's identity, by the handler that gets it
            else:
                middle = (start + end) // 2
                parts += [(middle, end), (start, middle)]
    failed = sum(isinstance(r, Exception) for r in results)
    logger.warning(
        "group commit of %d items failed (%s); written again in parts: %d failed alone (%d transactions)",
        len(items),
        batch_error[:300],
        failed,
        transactions,
    )
    return results
