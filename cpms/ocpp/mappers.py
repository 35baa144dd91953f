"""Wire-format helpers shared by the version mappers (pure functions, no database)."""

from datetime import datetime, timedelta

from django.conf import settings

from cpms.ocpp.errors import ErrorKind, OcppError
from cpms.ocpp_wire.times import format_datetime, parse_datetime

# The wire's date-time forms; the version mappers import them from here with the rest.
__all__ = ["charger_time", "format_datetime", "parse_datetime", "text", "timestamp_window", "wire_id"]


_spans: dict[tuple[int, int], tuple[timedelta, timedelta]] = {}


def timestamp_window(received_at: datetime) -> tuple[datetime, datetime]:
    """The charger timestamps we accept as times of events received at `received_at`
    (docs/reliability.md case 45): from OCPP_TIMESTAMP_MAX_AGE_DAYS before it to OCPP_TIMESTAMP_MAX_AHEAD_S
    after it. Once per message on the hot path: the two spans are built once per setting values."""
    key = (settings.OCPP_TIMESTAMP_MAX_AGE_DAYS, settings.OCPP_TIMESTAMP_MAX_AHEAD_S)
    spans = _spans.get(key)
    if spans is None:
        spans = _spans[key] = (timedelta(days=key[0]), timedelta(seconds=key[1]))
    return received_at - spans[0], received_at + spans[1]


def charger_time(
    value: str, field: str, received_at: datetime, window: tuple[datetime, datetime] | None = None
) -> tuple[datetime, str]:
    """A charger's timestamp as a time we may use: `(parsed, "")` inside `timestamp_window(received_at)`,
    else `(received_at, value as sent)`. A broken clock (1970 after a reset, 9999-12-31) is recorded by the
    session services (flag `clock_out_of_window`, the value as sent on a SessionAnomaly) but never becomes
    a session, meter value or billing time, nor a status time that no later status could overwrite."""
    parsed = parse_datetime(value, field)
    earliest, latest = window or timestamp_window(received_at)
    if earliest <= parsed <= latest:
        return parsed, ""
    return received_at, str(value)[:64]


def text(value: object, limit: int) -> str:
    return "" if value is None else str(value)[:limit]


def wire_id(value: int, field: str) -> int:
    """An EVSE/connector number or sequence number: never negative (the schemas do not say so). An int even
    when sent as 1.0, which the 2.0.1 schemas (JSON Schema draft 6) accept and integer columns refuse."""
    if value < 0:
        raise OcppError(ErrorKind.PROPERTY, f"{field}: must not be negative")
    return int(value)
