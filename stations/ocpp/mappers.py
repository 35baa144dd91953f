"""Wire-format helpers shared by the version mappers (pure functions, no database)."""

from datetime import UTC, datetime

from stations.ocpp.errors import ErrorKind, OcppError


def parse_datetime(value: str, field: str) -> datetime:
    """An OCPP dateTime (RFC 3339). A missing offset is taken as UTC (some chargers omit the 'Z')."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise OcppError(
            ErrorKind.PROPERTY, f"{field}: not an RFC 3339 date-time: {str(value)[:40]!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def format_datetime(value: datetime) -> str:
    """UTC with a 'Z' and millisecond precision, the form chargers parse most reliably."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def text(value, limit: int) -> str:
    return "" if value is None else str(value)[:limit]


def wire_id(value: int, field: str) -> int:
    """An EVSE/connector number or sequence number: never negative (the schemas do not say so). An int even
    when sent as 1.0, which the 2.0.1 schemas (JSON Schema draft 6) accept and integer columns refuse."""
    if value < 0:
        raise OcppError(ErrorKind.PROPERTY, f"{field}: must not be negative")
    return int(value)
