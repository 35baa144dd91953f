"""Throttling of charger handshakes, per server process: failed ones (docs/reliability.md case 7), handshakes
in a storm (HandshakeQueue, issue 13) and a connection's message rate (MessageRate, case 13).

Failures are counted in a sliding window per (identity, address) and per address. Past a limit, further
handshakes from there are refused with HTTP 429 without touching the database, until the window has
passed. A legitimate charger of the same identity connecting from another address is not affected, and a
successful handshake clears its (identity, address) count.
"""

import asyncio
import contextlib
import time
from collections import defaultdict, deque

from django.conf import settings

WINDOW_S = 60.0


class HandshakeThrottle:
    def __init__(self) -> None:
        self._failures: dict[tuple, deque[float]] = defaultdict(deque)
        self._swept_at = float("-inf")

    def _recent(self, key: tuple, now: float) -> deque[float]:
        window = self._failures.get(key)
        if window is None:
            return deque()
        while window and window[0] <= now - WINDOW_S:
            window.popleft()
        if not window:
            del self._failures[key]
        return window

    def blocked(self, *, identity: str, address: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return (
            len(self._recent(("pair", identity, address), now))
            >= settings.OCPP_HANDSHAKE_FAILURES_PER_IDENTITY
            or len(self._recent(("address", address), now)) >= settings.OCPP_HANDSHAKE_FAILURES_PER_ADDRESS
        )

    def failed(self, *, identity: str, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now - self._swept_at >= WINDOW_S:
            self._sweep(now)
        self._failures[("pair", identity, address)].append(now)
        self._failures[("address", address)].append(now)

    def _sweep(self, now: float) -> None:
        """Forget keys whose failures have all left the window: an identity tried once (every malformed
        path is a key of its own) is never looked up again, and would otherwise stay for ever. At most
        once a window, one pass over the keys."""
        self._swept_at = now
        stale = [key for key, window in self._failures.items() if not window or window[-1] <= now - WINDOW_S]
        for key in stale:
            del self._failures[key]

    def succeeded(self, *, identity: str, address: str) -> None:
        self._failures.pop(("pair", identity, address), None)


handshake_throttle = HandshakeThrottle()


class MessageRate:
    """A token bucket per connection (docs/reliability.md case 13): `burst` messages at once, then
    `rate_per_s` sustained. A connection past it is slowed down, not served faster than the rate: its messages
    wait their turn, so one charger cannot take more than its share of the server's CPU and database, and the
    other connections keep their latency. A charger replaying an offline backlog waits for each answer
    (OCPP-J allows one CALL in flight), so it is slowed at worst, never refused."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate_per_s")

    def __init__(self, *, rate_per_s: float, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    def delay(self, now: float | None = None) -> float:
        """Seconds to wait before handling the next message (0 while within the rate); takes its token."""
        if self.rate_per_s <= 0:
            return 0.0  # no limit configured
        now = time.monotonic() if now is None else now
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate_per_s)
        self._stamp = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate_per_s


class QueueFull(Exception):
    """More handshakes are waiting in this process than OCPP_HANDSHAKE_BACKLOG."""


class HandshakeQueue:
    """Admission under a storm (issue 13): at most OCPP_HANDSHAKES_IN_FLIGHT handshakes of a process do their
    checks (database, certificate) at once, and up to OCPP_HANDSHAKE_BACKLOG more wait their turn in arrival
    order, each at most OCPP_HANDSHAKE_QUEUE_WAIT_S. Past that a handshake is refused (HTTP 503 with
    Retry-After): a charger told so early
    retries later, whereas one left to wait out the server's connect timeout retries at once, having cost the
    server its handshake for nothing, and a storm then feeds itself. The bound applies per event loop (one per
    server process; tests run several)."""

    def __init__(self) -> None:
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.waiting = 0

    @contextlib.asynccontextmanager
    async def slot(self):
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._slots is None:
            self._loop, self.waiting = loop, 0
            self._slots = asyncio.Semaphore(settings.OCPP_HANDSHAKES_IN_FLIGHT)
        slots = self._slots
        if slots.locked():
            if self.waiting >= settings.OCPP_HANDSHAKE_BACKLOG:
                raise QueueFull
            self.waiting += 1
            try:
                # A turn that comes too late is no use: the server cuts a handshake at its connect deadline
                # (10 s), and the charger would have waited for nothing.
                await asyncio.wait_for(slots.acquire(), settings.OCPP_HANDSHAKE_QUEUE_WAIT_S)
            except TimeoutError:
                raise QueueFull from None
            finally:
                self.waiting -= 1
        else:
            await slots.acquire()
        try:
            yield
        finally:
            slots.release()


handshake_queue = HandshakeQueue()
