"""Small helpers for assertions shared by the API and admin tests."""

from datetime import UTC, datetime


def at(hour: int, minute: int = 0) -> datetime:
    """A fixed, aware instant on the test day."""
    return datetime(2025, 3, 1, hour, minute, tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    """A datetime as DRF renders it (UTC as Z)."""
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def row(obj) -> dict:
    """The object's row as stored now: compare before and after a refused write."""
    return type(obj).objects.filter(pk=obj.pk).values().get()
