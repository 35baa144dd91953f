"""Last-seen bookkeeping coalesced per web process (issue 13: no database write per connection per interval).

A Heartbeat (and, at most every SEEN_WRITE_INTERVAL_S, any other message) marks its station seen. Instead of an
UPDATE per mark, the marks of this process are kept in memory, the latest per station, and written every
OCPP_SEEN_FLUSH_S in a few statements (stations.services.ocpp.stations_seen). `last_seen_at` is bookkeeping, not
the charger's data: the Heartbeat's answer does not wait for it, and a process that dies loses at most
OCPP_SEEN_FLUSH_S of it, far inside the offline detector's OCPP_OFFLINE_AFTER_HEARTBEATS intervals (its
connections' disconnects are recorded by the detector instead). A failed write is merged back and retried at
the next flush. OCPP_SEEN_FLUSH_S = 0 writes each mark at once.
"""

import logging
from datetime import datetime

from django.conf import settings

from cpms.flushing import PeriodicFlush
from cpms.ocpp.chargepoint import run_db
from stations.services.ocpp import station_seen, stations_seen

logger = logging.getLogger(__name__)

_pending: dict[int, datetime] = {}


async def mark(station_id: int, at: datetime) -> None:
    """`station_id` was seen at `at` (written within OCPP_SEEN_FLUSH_S, or now when it is 0)."""
    if settings.OCPP_SEEN_FLUSH_S <= 0:
        await run_db(station_seen, station_id=station_id, at=at)
        return
    previous = _pending.get(station_id)
    if previous is None or at > previous:
        _pending[station_id] = at
    _flusher.wake()


async def flush() -> int:
    """Write what this process has gathered; what fails to be written waits for the next flush."""
    global _pending
    if not _pending:
        return 0
    batch, _pending = _pending, {}
    try:
        return await run_db(stations_seen, seen=batch)
    except Exception:
        logger.warning(
            "last-seen times of %d stations not written; retried at the next flush", len(batch), exc_info=True
        )
        for station_id, at in batch.items():
            if station_id not in _pending or _pending[station_id] < at:
                _pending[station_id] = at
        return 0


_flusher = PeriodicFlush(flush, pending=lambda: bool(_pending), interval_s=lambda: settings.OCPP_SEEN_FLUSH_S)
