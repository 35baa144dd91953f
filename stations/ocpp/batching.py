"""Group commit for the OCPP hot path: messages from many connections written in one transaction.

A handler `await`s `submit(item)`; a task per event loop collects what arrives within a few milliseconds
(or up to `max_batch` items), runs the batch service in a worker thread (one transaction), then resolves
every waiting handler with its own result, so each charger is answered only after its data committed.
While one batch is being written the next one fills up, so batches grow with load.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from stations.ocpp.chargepoint import run_db

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(self, flush: Callable[..., list[R]], *, max_batch: int = 500, max_wait_s: float = 0.004):
        """`flush(items=[...])` runs in a worker thread and returns one result per item, in order; a result
        that is an exception is raised to that item's caller."""
        self._flush = flush
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._pending: list[tuple[T, asyncio.Future]] = []
        self._wakeup: asyncio.Event | None = None
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
            results = await run_db(self._flush, items=[item for item, _ in batch])
        except Exception as exc:
            # Nothing of the batch committed: every charger in it gets an error and retries.
            logger.exception("group commit of %d items failed", len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # the connection may have gone away meanwhile
                continue
            if isinstance(result, Exception):  # that item alone failed (its savepoint rolled back)
                future.set_exception(result)
            else:
                future.set_result(result)
