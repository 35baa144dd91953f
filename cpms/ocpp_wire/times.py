"""OCPP dateTime values on the wire (RFC 3339)."""

from datetime import UTC, datetime

from cpms.ocpp_wire.errors import ErrorKind, OcppError


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
