"""What an export reads: the period and the organisation and site filters, as given by the API, the portal or a
stored job; their checks; the download name made from them; the period applied to rows.

Period. `from`/`to` are both dates or both aware datetimes; `to` is exclusive. Datetimes are exact instants.
Dates are local dates at each site: a row belongs to [from, to) when its local date, in the time zone of
its site, is in it. The database is asked for a UTC window widened by WINDOW_MARGIN on both sides (UTC+14
to UTC-12 fit in it; the indexes are on the UTC instants), and each row is then checked in Python.
The time zone is the CDR's own copy (`ChargeDetailRecord.time_zone`, also for its credits), or for a
session its site's; a session of a station without a site, and a zone name that zoneinfo does not know,
count as UTC (the `time_zone` column says which zone the local times are in).
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils.dateparse import parse_datetime

from cpms.errors import ValidationFailed

# The streaming endpoint answers within one HTTP response; longer periods go through an export job.
MAX_STREAM_SPAN_DAYS = 400
# Bounds accepted for `from`/`to` (chargers without a clock report 1970; nothing is billed after 3000).
EARLIEST_BOUND = date(1900, 1, 1)
LATEST_BOUND = date(3000, 1, 1)
# Local dates are UTC+14 (Line Islands) to UTC-12 (Baker Island): a local day lies within its UTC day
# widened by 14 hours on both sides.
WINDOW_MARGIN = timedelta(hours=14)

_UTC_ZONE = ZoneInfo("UTC")

Bound = date | datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportFilters:
    """What to export: a period ([period_from, period_to), two dates or two aware datetimes), optionally one
    organisation and some sites. Stored as JSON on an ExportJob (`as_json`/`from_json`)."""

    period_from: Bound
    period_to: Bound
    organisation_id: int | None = None
    site_ids: tuple[int, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.period_from.isoformat(),
            "to": self.period_to.isoformat(),
            "organisation": self.organisation_id,
            "site": list(self.site_ids),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ExportFilters":
        return cls(
            period_from=period_bound_parse(data["from"]),
            period_to=period_bound_parse(data["to"]),
            organisation_id=data.get("organisation"),
            site_ids=tuple(data.get("site") or ()),
        )


def is_instant(value: Bound) -> bool:
    """Whether a bound is an instant (a datetime) rather than a local date."""
    return isinstance(value, datetime)  # a datetime is also a date: test for it first


def period_bound_parse(text: str) -> Bound:
    """`YYYY-MM-DD` (a local date) or an ISO 8601 datetime with an offset (an instant). ValueError else."""
    text = text.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        moment = parse_datetime(text)
    except ValueError as exc:  # well-formed but impossible: 2025-02-30, hour 25
        raise ValueError(f"{text!r} is not a valid date or datetime: {exc}.") from None
    if moment is None:
        raise ValueError("Expected a date (YYYY-MM-DD) or a datetime with a time zone offset.")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("A datetime needs a time zone offset (e.g. Z or +01:00); or give a date.")
    return moment


def _day(bound: Bound) -> date:
    return bound.astimezone(UTC).date() if isinstance(bound, datetime) else bound


def export_filters_validate(*, filters: ExportFilters, streaming: bool) -> ExportFilters:
    """Refuse a period that is empty, mixes a date with a datetime, lies outside EARLIEST_BOUND..
    LATEST_BOUND, or (`streaming`) spans more than MAX_STREAM_SPAN_DAYS."""
    start, end = filters.period_from, filters.period_to
    if is_instant(start) != is_instant(end):
        raise ValidationFailed("Give 'from' and 'to' both as dates or both as datetimes.")
    # Both dates or both datetimes from here on (comparing a date with a datetime raises TypeError).
    if start >= end:
        raise ValidationFailed("'from' must be before 'to' ('to' is exclusive).")
    for name, bound in (("from", start), ("to", end)):
        if not EARLIEST_BOUND <= _day(bound) <= LATEST_BOUND:
            raise ValidationFailed(f"'{name}' must lie between {EARLIEST_BOUND} and {LATEST_BOUND}.")
    span: timedelta = end - start  # type: ignore[operator]
    if streaming and span > timedelta(days=MAX_STREAM_SPAN_DAYS):
        raise ValidationFailed(
            f"The period spans more than {MAX_STREAM_SPAN_DAYS} days: create an export job "
            "(POST /api/v1/exports/) for longer periods."
        )
    return filters


def export_file_name(*, kind: str, filters: ExportFilters, job_id: int | None = None) -> str:
    """The download name, made of validated values only."""

    def bound(value: Bound) -> str:
        if isinstance(value, datetime):
            return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        return value.isoformat()

    suffix = f"_job{job_id}" if job_id is not None else ""
    return f"{kind}_{bound(filters.period_from)}_{bound(filters.period_to)}{suffix}.csv"


class Zones:
    """ZoneInfo by name, cached; unknown or empty names are UTC."""

    def __init__(self) -> None:
        self._zones: dict[str | None, ZoneInfo] = {}

    def get(self, name: str | None) -> ZoneInfo:
        zone = self._zones.get(name)
        if zone is None:
            try:
                zone = ZoneInfo(name) if name else _UTC_ZONE
            except (ZoneInfoNotFoundError, ValueError):
                zone = _UTC_ZONE
            self._zones[name] = zone
        return zone


class Period:
    """[from, to) of validated filters, as local dates at each site or as instants."""

    def __init__(self, filters: ExportFilters, zones: Zones):
        self.local = not is_instant(filters.period_from)
        self.start = filters.period_from
        self.end = filters.period_to
        self._zones = zones

    def query_window(self) -> tuple[datetime, datetime]:
        """The UTC window to ask the database for: exact for instants, widened for local dates."""
        if isinstance(self.start, datetime) and isinstance(self.end, datetime):
            return self.start, self.end
        return (
            datetime.combine(self.start, time(0), UTC) - WINDOW_MARGIN,
            datetime.combine(self.end, time(0), UTC) + WINDOW_MARGIN,
        )

    def zone_window(self, zone_name: str | None) -> tuple[datetime, datetime]:
        """The exact UTC window of the local dates in `zone_name`: from the first instant of `from` to the
        first instant of `to` there (midnight, or the end of a DST gap at midnight)."""
        zone = self._zones.get(zone_name)
        return (
            datetime.combine(self.start, time(0), zone).astimezone(UTC),
            datetime.combine(self.end, time(0), zone).astimezone(UTC),
        )

    def contains(self, moment: datetime, local: datetime) -> bool:
        """Whether a row at `moment` (`local` in its zone) belongs to the period."""
        if self.local:
            return self.start <= local.date() < self.end
        return self.start <= moment < self.end
