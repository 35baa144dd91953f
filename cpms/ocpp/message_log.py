"""The OCPP frame log, written off the message path: a best-effort diagnostic, not a record of truth.

Sessions, meter values and every other fact are committed before the charger is answered; this log is the
raw frames for troubleshooting. Writing it durably would put a second write on every message's way: in the
charger's transaction (a row per frame in the batch that holds the data) or as a commit awaited before each
answer. It is queued in memory instead and written with COPY by one task per event loop, every
FLUSH_INTERVAL_S, so what it can lose is bounded and documented (docs/ocpp.md#the-frame-log):

- a process that ends (kill -9, out of memory, power, and a normal stop: nothing flushes at shutdown) loses
  the frames of its last FLUSH_INTERVAL_S, and those held from a database outage in progress (below);
- a write that fails (database restart or outage) keeps its rows and is tried again at the next interval, so
  an outage loses nothing unless more than MAX_QUEUED frames wait: then the oldest are dropped, counted and
  logged. The queue never blocks a charger.
"""

import asyncio
import logging
from collections import deque

import psycopg
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from cpms.db import rows_append
from stations.models import OcppMessage

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
MAX_QUEUED = 20_000
MAX_PAYLOAD_CHARS = 64 * 1024


class MessageLog:
    def __init__(self) -> None:
        self._queue: deque[tuple] = deque()
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Rows dropped because the queue was full (only while the database refuses writes).
        self.dropped = 0
        self._failing = False
        self._dropped_before = 0

    @property
    def enabled(self) -> bool:
        return settings.OCPP_MESSAGE_LOG != "none"

    @property
    def queued(self) -> int:
        return len(self._queue)

    def record(
        self,
        *,
        station_id: int | None,
        identity: str,
        direction: str,
        message_type: int,
        unique_id: str,
        action: str,
        payload: str,
    ) -> None:
        if not self.enabled:
            return
        if len(self._queue) >= MAX_QUEUED:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(
            (
                station_id,
                identity[:48],
                direction,
                message_type,
                unique_id[:64],
                action[:64],
                payload[:MAX_PAYLOAD_CHARS].replace("\x00", "\ufffd"),
                timezone.now(),
            )
        )
        self._ensure_flusher()

    def _ensure_flusher(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._task is None or self._task.done() or self._loop is not loop:
            self._loop = loop
            self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self.flush()

    async def flush(self) -> int:
        """Write what is queued; returns how many rows were written. Rows whose write failed stay queued
        (ahead of newer ones) for the next flush."""
        rows = list(self._queue)
        self._queue.clear()
        if not rows:
            return 0
        try:
            await database_sync_to_async(_write, thread_sensitive=False)(rows)
        except (OperationalError, InterfaceError) as exc:  # the database is restarting or unreachable
            self._requeue(rows)
            if isinstance(exc.__cause__, psycopg.errors.DeadlockDetected):
                # The COPY's foreign-key checks share-lock station rows that a batch of boots or connections
                # locked in another order; PostgreSQL rolled this write back whole: the next flush writes it.
                logger.info("OCPP log write of %d rows lost a deadlock; written at the next flush", len(rows))
                return 0
            if not self._failing:  # once per outage, not once a second
                logger.error("could not write %d OCPP log rows (kept, retried): %s", len(rows), exc)
                self._dropped_before = self.dropped
            self._failing = True
            return 0
        except Exception:
            # Not the connection: these rows themselves (a station deleted meanwhile); retrying cannot help.
            logger.exception("could not write %d OCPP log rows; dropped", len(rows))
            self.dropped += len(rows)
            return 0
        if self._failing:
            lost = self.dropped - self._dropped_before
            logger.warning("OCPP log written again (%d rows dropped while it failed)", lost)
            self._failing = False
        return len(rows)

    def _requeue(self, rows: list[tuple]) -> None:
        # Frames recorded while the write was running come after the failed rows; the oldest overflow.
        newer = list(self._queue)
        kept = (rows + newer)[-MAX_QUEUED:]
        self.dropped += len(rows) + len(newer) - len(kept)
        self._queue.clear()
        self._queue.extend(kept)


_COLUMNS = (
    "station_id",
    "identity",
    "direction",
    "message_type",
    "unique_id",
    "action",
    "payload",
    "created_at",
)


def _write(rows: list[tuple]) -> None:
    with transaction.atomic():
        rows_append(OcppMessage, _COLUMNS, rows)


message_log = MessageLog()
