"""What a web process gathers and writes together, at most every few seconds: last-seen times
(cpms/ocpp/seen.py), the portal's live status events (cpms/portal/live.py), the jobs after boots and session
starts (cpms/ocpp/task_queue.py). Each keeps its own pending state; this runs its flush in one task per event
loop while something is pending, and stops when nothing is."""

import asyncio
from collections.abc import Awaitable, Callable


class PeriodicFlush:
    def __init__(
        self,
        flush: Callable[[], Awaitable[object]],
        *,
        pending: Callable[[], bool],
        interval_s: Callable[[], float],
    ):
        self._flush = flush
        self._pending = pending
        self._interval_s = interval_s
        self._task: asyncio.Task | None = None

    def wake(self) -> None:
        """Something is pending: make sure a flush comes within the interval (call from the event loop)."""
        loop = asyncio.get_running_loop()
        # A task of a loop that ended (a test's) is replaced: each loop flushes its own process's state.
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        while self._pending():
            await asyncio.sleep(self._interval_s())
            await self._flush()
