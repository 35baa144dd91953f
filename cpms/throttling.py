"""REST API throttling (docs/reliability.md case 41): failed token authentications per client address, and
request rates per user (and per address for the few anonymous endpoints).

Counters live in the `throttle` cache (cpms/settings.py): Redis when REDIS_URL is set, so that every web
process counts together; otherwise this process's memory (the embedded mode runs one web process). Each key
counts in a window that starts at its first count, with `add` + `incr` (atomic in Redis); DRF's own
throttles keep a list of every request's time per key and rewrite it on each request (6,000 entries at
6000/min), and their read-modify-write loses counts between processes.
When the shared cache is unreachable, counting goes on in this process's memory rather than failing the
request or letting everything through.
"""

import logging
import time

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.throttling import BaseThrottle

from accounts.backends import client_ip

logger = logging.getLogger(__name__)

_fallback = LocMemCache("cpms-throttle-fallback", {"OPTIONS": {"MAX_ENTRIES": 100_000}})
_warned_at = float("-inf")


def _shared(operation, *args):
    """`operation(cache, *args)` on the shared cache, or on this process's memory when it is unreachable."""
    global _warned_at
    try:
        return operation(caches["throttle"], *args)
    except Exception:
        if time.monotonic() - _warned_at >= 60:  # once a minute, not once per request
            _warned_at = time.monotonic()
            logger.warning("throttle cache unavailable; counting in this process only", exc_info=True)
        return operation(_fallback, *args)


def _redis(cache):
    """The redis-py client behind Django's Redis cache, or None for another backend. A count is then one
    round trip (SET NX EX + INCR pipelined) instead of Django's four (add; EXISTS + INCR; set)."""
    client = getattr(getattr(cache, "_cache", None), "get_client", None)
    return client(write=True) if client is not None else None


def _count(cache, key: str, window_s: int) -> int:
    """Counts one more in the key's window and returns the count. A window starts at its first count and
    lasts `window_s` (not aligned to the clock, so a burst across a boundary is not split in two)."""
    client = _redis(cache)
    if client is not None:
        with client.pipeline(transaction=False) as pipe:
            pipe.set(cache.make_and_validate_key(key), 0, ex=window_s, nx=True)
            pipe.incr(cache.make_and_validate_key(key))
            return pipe.execute()[1]
    if cache.add(key, 0, timeout=window_s):
        cache.set(f"{key}:start", time.time(), timeout=window_s)
    try:
        return cache.incr(key)
    except ValueError:  # the window ended between add and incr
        cache.set(key, 1, timeout=window_s)
        cache.set(f"{key}:start", time.time(), timeout=window_s)
        return 1


def _current(cache, key: str) -> int:
    client = _redis(cache)
    if client is not None:
        return int(client.get(cache.make_and_validate_key(key)) or 0)
    return cache.get(key, 0)


def _wait(cache, key: str, window_s: int) -> float:
    """Seconds until the key's window ends."""
    client = _redis(cache)
    if client is not None:
        return max(1.0, float(client.ttl(cache.make_and_validate_key(key))))
    now = time.time()
    start = cache.get(f"{key}:start")
    return max(1.0, (now if start is None else start) + window_s - now)


class ThrottledTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>`, with failed attempts counted per client address: past
    API_AUTH_FAILURES_PER_ADDRESS within API_AUTH_FAILURE_WINDOW_S, every token from that address is refused
    with 429 and Retry-After until the window ends (a right one too: otherwise the answers would tell a
    guesser which keys exist). Other addresses are not affected.

    Every refused key gets the same answer, "Invalid token.", whether it exists for an inactive user or not at
    all (DRF says "User inactive or deleted." for the former): no enumeration.
    """

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None  # not token authentication: session auth (CSRF-checked) or anonymous
        limit = settings.API_AUTH_FAILURES_PER_ADDRESS
        if limit <= 0:
            return super().authenticate(request)
        window_s = settings.API_AUTH_FAILURE_WINDOW_S
        key = f"api-auth-failures:{client_ip(request) or 'unknown'}"
        if _shared(_current, key) >= limit:
            raise exceptions.Throttled(
                wait=_shared(_wait, key, window_s),
                detail="Too many failed authentications from your address.",
            )
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            failures = _shared(_count, key, window_s)
            if failures == limit:
                logger.warning("API token authentication throttled for %s after %d failures", key, failures)
            raise

    def authenticate_credentials(self, key):
        try:
            return super().authenticate_credentials(key)
        except exceptions.AuthenticationFailed:
            raise exceptions.AuthenticationFailed("Invalid token.") from None


def _parse_rate(rate: str) -> tuple[int, int] | None:
    """ "6000/min" -> (6000, 60); "" / "off" / "0" -> None (no limit)."""
    if not rate or rate.strip().lower() in {"off", "none", "0"}:
        return None
    count, _, period = rate.partition("/")
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period.strip().lower()[:1]]
    return int(count), seconds


class ApiRateThrottle(BaseThrottle):
    """API_THROTTLE_USER_RATE per authenticated user, API_THROTTLE_ANON_RATE per address for the endpoints
    that take anonymous requests (the API root, the schema). Read from settings at each request."""

    def allow_request(self, request, view):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            rate, key = settings.API_THROTTLE_USER_RATE, f"api-rate:user:{user.pk}"
        else:
            rate, key = settings.API_THROTTLE_ANON_RATE, f"api-rate:anon:{client_ip(request) or 'unknown'}"
        parsed = _parse_rate(rate)
        if parsed is None:
            return True
        limit, self._window_s = parsed
        self._key = key
        return _shared(_count, key, self._window_s) <= limit

    def wait(self):
        return _shared(_wait, self._key, self._window_s)


def rate_exceeded(key: str, *, limit: int, window_s: int) -> float | None:
    """Counts one request under `key` (e.g. "pay:<address>") in the shared counters; the seconds to wait when
    this one is over `limit` per `window_s`, None when it may go on. For pages outside DRF (the drivers'
    public pages); `limit` 0 means no limit."""
    if limit <= 0:
        return None
    if _shared(_count, key, window_s) <= limit:
        return None
    return _shared(_wait, key, window_s)
