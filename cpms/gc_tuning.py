"""Freeze the long-lived heap after warm-up and after bursts of admissions (docs/performance.md).

With 10,000+ connections, CPython's full collections walk every consumer, task and frame the process holds
and pause the server for 0.5-2.6 s (../shared/PERFORMANCE.md, item 2). `gc.freeze()` moves what is alive
into a permanent generation that collections skip, which removes those pauses.

The policy (`GcFreezer`):
- once at server start, after Django setup and the application's imports (`freeze_now("start")`, from
  cpms/server.py);
- after a burst of admissions: a consumer calls `connection_opened()` for every accepted connection (an
  increment and a clock read, nothing else); once `min_connections` have been admitted since the last
  freeze, one loop timer waits until no connection has been admitted for `quiet_s` (a reconnect storm is
  over) and freezes then, or after `max_wait_s` if the admissions never pause (steady churn).

A freeze is `gc.collect()` (which skips what is already frozen, so it is short) then `gc.freeze()`. Frozen
objects are never collected: what a connection that has since closed left in reference cycles would stay
in the permanent generation for ever. So at most every `reclaim_s` a freeze starts with `gc.unfreeze()`
and its collection walks the whole heap, the one long pause, taken when admissions are quiet; memory then
returns to its baseline.

Settings (read with defaults, so a missing one changes nothing): OCPP_GC_FREEZE (True),
OCPP_GC_FREEZE_QUIET_S (3.0), OCPP_GC_FREEZE_MIN_CONNECTIONS (100), OCPP_GC_FREEZE_MAX_WAIT_S (60.0),
OCPP_GC_RECLAIM_S (3600.0).
"""

import asyncio
import gc
import logging
import time

logger = logging.getLogger(__name__)


class GcFreezer:
    """The freeze policy of one process. Not thread-safe: call it from the event loop's thread.

    `loop`, `gc_module` and `clock` (of the reclaims) are for tests (a fake loop and clock, a recording gc);
    by default the running loop at the first `connection_opened()`, the real `gc` and time.monotonic.
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        quiet_s: float = 3.0,
        min_connections: int = 100,
        max_wait_s: float = 60.0,
        reclaim_s: float = 3600.0,
        loop=None,
        gc_module=gc,
        clock=time.monotonic,
    ):
        self.enabled = enabled
        self.quiet_s = quiet_s
        self.min_connections = max(1, min_connections)
        self.max_wait_s = max_wait_s
        self.reclaim_s = reclaim_s
        self.reclaimed_at: float | None = None
        self.loop = loop
        self._given_loop = loop
        self.gc = gc_module
        self.clock = clock
        self.opened_since_freeze = 0
        self.last_opened_at = 0.0
        self.armed_at = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.freezes = 0

    @classmethod
    def from_settings(cls) -> "GcFreezer":
        from django.conf import settings

        return cls(
            enabled=bool(getattr(settings, "OCPP_GC_FREEZE", True)),
            quiet_s=float(getattr(settings, "OCPP_GC_FREEZE_QUIET_S", 3.0)),
            min_connections=int(getattr(settings, "OCPP_GC_FREEZE_MIN_CONNECTIONS", 100)),
            max_wait_s=float(getattr(settings, "OCPP_GC_FREEZE_MAX_WAIT_S", 60.0)),
            reclaim_s=float(getattr(settings, "OCPP_GC_RECLAIM_S", 3600.0)),
        )

    def connection_opened(self) -> None:
        """Count an accepted connection; arms the one timer when a burst is big enough. O(1), no task."""
        if not self.enabled:
            return
        loop = self._given_loop or asyncio.get_running_loop()
        if loop is not self.loop:
            # The first call, or a new loop (tests run several in one process): a timer of the old one goes.
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.loop = loop
        now = loop.time()
        self.opened_since_freeze += 1
        self.last_opened_at = now
        if self.timer is None and self.opened_since_freeze >= self.min_connections:
            self.armed_at = now
            self.timer = self.loop.call_later(self.quiet_s, self._on_timer)

    def _on_timer(self) -> None:
        # Re-armed at most once per quiet_s, not per connection: the admissions of a storm cost no timer.
        self.timer = None
        now = self.loop.time()
        quiet_for = now - self.last_opened_at
        if quiet_for < self.quiet_s and now - self.armed_at < self.max_wait_s:
            delay = min(self.quiet_s - quiet_for, self.armed_at + self.max_wait_s - now)
            self.timer = self.loop.call_later(delay, self._on_timer)
            return
        self.freeze_now("after a burst of admissions")

    def freeze_now(self, reason: str) -> int:
        """Collect then freeze (unfreezing first when the last reclaim is `reclaim_s` old); log and return
        how many objects are frozen."""
        if not self.enabled:
            return 0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        admitted = self.opened_since_freeze
        self.opened_since_freeze = 0
        now = self.clock()
        reclaim = self.reclaimed_at is None or now - self.reclaimed_at >= self.reclaim_s
        started = time.perf_counter()
        if reclaim:
            self.gc.unfreeze()
            self.reclaimed_at = now
        collected = self.gc.collect()
        self.gc.freeze()
        frozen = self.gc.get_freeze_count()
        self.freezes += 1
        logger.info(
            "gc.freeze() %s (%d connections admitted since the last%s): %d objects frozen, %d collected, "
            "%.0f ms",
            reason,
            admitted,
            ", frozen objects collected again" if reclaim else "",
            frozen,
            collected,
            (time.perf_counter() - started) * 1000,
        )
        return frozen


_freezer: GcFreezer | None = None


def freezer() -> GcFreezer:
    """This process's GcFreezer, built from the settings at first use."""
    global _freezer
    if _freezer is None:
        _freezer = GcFreezer.from_settings()
    return _freezer


def connection_opened() -> None:
    """For the consumer, at each accepted connection (from the event loop)."""
    freezer().connection_opened()
