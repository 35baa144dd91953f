"""The OCPP message log, written off the message path.

Writing one row per frame inside the charger's transaction would double the database work of every
message. Frames are queued in memory and written in batches by one task per event loop; the queue is
bounded (a database outage drops the oldest log rows, never blocks chargers). This is a troubleshooting
log, not a record of truth: sessions and meter values are committed before the charger is answered.
"""

import asyncio
import logging
from collections import deque

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cpms.db import rows_append
from stations.models import OcppMessage

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
MAX_QUEUED = 20_000
MAX_PAYLOAD_CHARS = 64 * 1024


class MessageLog:
    def __init__(self) -> None:
        self._queue: deque[tuple] = deque(maxlen=MAX_QUEUED)
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def enabled(self) -> bool:
        return settings.OCPP_MESSAGE_LOG != "none"

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
        rows = []
        while self._queue:
            rows.append(self._queue.popleft())
        if not rows:
            return 0
        try:
            await database_sync_to_async(_write, thread_sensitive=False)(rows)
        except Exception:
            logger.exception("could not write %d OCPP log rows; dropped", len(rows))
            return 0
        return len(rows)


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
