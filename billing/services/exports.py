"""Finance CSV exports: charge detail records, sessions, and revenue per site or per port and month.

One chunked reader (`ExportReader`) makes the CSV of every kind. The API streams it (`export_stream`: an
async iterator, one worker-thread database call per chunk) and the export job writes it to a file
(`export_job_run`): both produce the same bytes for the same filters and scope.

Rows are read with keyset pagination (`WHERE id > last ORDER BY id LIMIT CHUNK_ROWS`, within the id
range the period had when the export started; the chunk's ids first, then their columns): no server-side
cursor and no transaction stays open between chunks, so memory is constant and a chunk may run on any
pooled connection. Rows inserted after the export started are not in it.

Period. `from`/`to` are both dates or both aware datetimes; `to` is exclusive. Datetimes are exact instants.
Dates are local dates at each site: a row belongs to [from, to) when its local date, in the time zone of
its site, is in it. The database is asked for a UTC window widened by WINDOW_MARGIN on both sides (UTC+14
to UTC-12 fit in it; the indexes are on the UTC instants), and each row is then checked in Python.
The time zone is the CDR's own copy (`ChargeDetailRecord.time_zone`, also for its credits), or for a
session its site's; a session of a station without a site, and a zone name that zoneinfo does not know,
count as UTC (the `time_zone` column says which zone the local times are in).

Columns (header first, then one row per record; `\\r\\n` line ends, minimal quoting, UTF-8 without BOM):
- money: the stored amounts with the currency's minor unit of decimals (`billing.money.minor_unit`);
  kWh with 3 decimals, hours with 6, `tax_rate` (a fraction) with 4; empty for "none".
- `*_utc`: `YYYY-MM-DDTHH:MM:SSZ`; `*_local`: `YYYY-MM-DD HH:MM:SS` in `time_zone`.
- text cells from users or chargers (names, identities, id tokens, tariff labels, credit reasons, flags,
  transaction ids, currencies, zones) lose NUL bytes and, when they start with `=`, `+`, `-`, `@`, TAB or
  CR, get a leading `'` so that a spreadsheet does not run them as formulas (CSV injection). Numbers we
  format ourselves, negative credits included, are never altered.
- never a sum across currencies: the revenue kinds have one row per currency.

cdrs: a `cdr` row per CDR whose stop is in the period, then a `credit` row per credit issued in the period
(whatever the period of its CDR), each part in id order. A credit row repeats the CDR's identification and
times (cdr_id, session, site, station, port, token, tariff, time zone, started/stopped), carries its own
subtotal/tax/total (negative), the CDR's tax_rate, its reason and its own created_at; the quantities
(energy_kwh, hours) and the per-dimension amounts stay empty, so that summing any column over the file
counts each session once. `margin` is what the row adds to the margin: subtotal - energy_cost on a CDR
(empty when the CDR has no energy cost), the credit's subtotal on a credit (a credit returns revenue and
buys no energy); `energy_cost` is empty on credits.

sessions: every session started in the period, any status, in id order. Amounts, `tariff`, `currency` and
`cdr_id` come from its CDR and are empty without one; `credited` sums all the credits of that CDR issued
so far (whatever their date), `net_total` = total + credited. `energy_kwh` is the session's own.
`billing_status`: billed (has a CDR), held (held for review), active (not completed), else pending.

revenue_sites / revenue_ports: one row per (month, organisation, site, currency), resp. per (month, site,
station, evse, connector, currency); the month is the local month of a CDR's stop and of a credit's
creation; sorted by month, organisation name, site name, [station, evse, connector,] currency (ids break
ties between equal names). `sessions` counts CDRs; revenue_* sum the CDRs; credits_* sum the credits
(negative); net_excl_tax = revenue_excl_tax + credits_excl_tax. `energy_cost` sums the CDRs that have one
(0 when the row has only credits; empty when it has CDRs and none has a cost) and margin = net_excl_tax -
energy_cost (empty with it; CDRs without an energy cost count as costing nothing). `energy_cost_per_kwh`
= energy_cost / kWh of the CDRs that have a cost, 4 decimals, empty without such kWh.
"""

import csv
import io
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path
from time import monotonic as time_monotonic
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, transaction
from django.db.models import Max, Min, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.enums import Capability
from accounts.models import AuditAction, Organisation, User
from accounts.selectors import organisation_access, organisation_ids_with
from accounts.services import audit_record
from billing import drill_hook
from billing.enums import ExportKind, ExportStatus
from billing.models import CdrCredit, ChargeDetailRecord, ExportJob
from billing.money import minor_unit, round_half_up
from cpms.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationFailed
from cpms.jobs import Heartbeat, Recovered, job_claim, jobs_recover
from sessions.enums import SessionStatus
from sessions.models import ChargingSession
from stations.models import Site

logger = logging.getLogger(__name__)

# Rows per database round trip: big enough to amortise the query, small enough to keep memory flat.
CHUNK_ROWS = 2000
# A running job writes its progress this often (one conditional UPDATE), in records or seconds.
PROGRESS_EVERY = 5000
PROGRESS_EVERY_S = 5.0
# Local dates are UTC+14 (Line Islands) to UTC-12 (Baker Island): a local day lies within its UTC day
# widened by 14 hours on both sides.
WINDOW_MARGIN = timedelta(hours=14)
# The streaming endpoint answers within one HTTP response; longer periods go through an export job.
MAX_STREAM_SPAN_DAYS = 400
# Bounds accepted for `from`/`to` (chargers without a clock report 1970; nothing is billed after 3000).
EARLIEST_BOUND = date(1900, 1, 1)
LATEST_BOUND = date(3000, 1, 1)
EXPORTS_DIR = "exports"

CONTENT_TYPE = "text/csv; charset=utf-8"

_UTC_ZONE = ZoneInfo("UTC")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_EXPONENTS = {places: Decimal(1).scaleb(-places) for places in range(7)}

Bound = date | datetime


# --- filters and scope -------------------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportScope:
    """The organisations (and, if not empty, the sites) an export reads; nothing outside them."""

    organisation_ids: tuple[int, ...]
    site_ids: tuple[int, ...] = ()
    # Who asked (the audit record of a streamed export names them); not part of what is read.
    requested_by_id: int | None = field(default=None, compare=False)


def _is_datetime(value: Bound) -> bool:
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


def export_filters_validate(*, filters: ExportFilters, streaming: bool) -> ExportFilters:
    """Refuse a period that is empty, mixes a date with a datetime, lies outside EARLIEST_BOUND..
    LATEST_BOUND, or (`streaming`) spans more than MAX_STREAM_SPAN_DAYS."""
    start, end = filters.period_from, filters.period_to
    if _is_datetime(start) != _is_datetime(end):
        raise ValidationFailed("Give 'from' and 'to' both as dates or both as datetimes.")
    if start >= end:
        raise ValidationFailed("'from' must be before 'to' ('to' is exclusive).")
    for name, bound in (("from", start), ("to", end)):
        day = bound.astimezone(UTC).date() if _is_datetime(bound) else bound
        if not EARLIEST_BOUND <= day <= LATEST_BOUND:
            raise ValidationFailed(f"'{name}' must lie between {EARLIEST_BOUND} and {LATEST_BOUND}.")
    span = end - start
    if streaming and span > timedelta(days=MAX_STREAM_SPAN_DAYS):
        raise ValidationFailed(
            f"The period spans more than {MAX_STREAM_SPAN_DAYS} days: create an export job "
            "(POST /api/v1/exports/) for longer periods."
        )
    return filters


def _exportable_organisation_ids(*, user: User) -> list[int]:
    if user.is_superuser:
        return list(Organisation.objects.order_by("pk").values_list("pk", flat=True))
    return sorted(organisation_ids_with(user=user, capability=Capability.EXPORT))


def export_scope_access(*, user: User, filters: ExportFilters) -> ExportScope:
    """What `user` may export with `filters`: the organisations where their role grants the export
    capability (superusers: all), narrowed to the filters.

    PermissionDenied when the user may export nothing, or names an organisation they belong to without the
    capability (a site host, operator staff, support). NotFound for an organisation or site outside their
    organisations. ValidationFailed for a site of another organisation than the one named.
    """
    exportable = _exportable_organisation_ids(user=user)
    if filters.organisation_id is not None:
        # NotFound outside the user's organisations, PermissionDenied without the capability.
        organisation_access(user=user, pk=filters.organisation_id, capability=Capability.EXPORT)
    elif not exportable:
        raise PermissionDenied("Your role may not export finance data.")
    site_ids = tuple(dict.fromkeys(filters.site_ids))
    if site_ids:
        sites = dict(
            Site.objects.filter(pk__in=site_ids, organisation_id__in=exportable).values_list(
                "pk", "organisation_id"
            )
        )
        for site_id in site_ids:
            if site_id not in sites:
                raise NotFound(f"Site {site_id} not found.")
            if filters.organisation_id is not None and sites[site_id] != filters.organisation_id:
                raise ValidationFailed(f"Site {site_id} is not in organisation {filters.organisation_id}.")
    organisation_ids = (
        (filters.organisation_id,) if filters.organisation_id is not None else tuple(exportable)
    )
    return ExportScope(organisation_ids=organisation_ids, site_ids=site_ids, requested_by_id=user.pk)


def export_file_name(*, kind: str, filters: ExportFilters, job_id: int | None = None) -> str:
    """The download name, made of validated values only."""

    def bound(value: Bound) -> str:
        if _is_datetime(value):
            return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        return value.isoformat()

    suffix = f"_job{job_id}" if job_id is not None else ""
    return f"{kind}_{bound(filters.period_from)}_{bound(filters.period_to)}{suffix}.csv"


# --- formatting ----------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A text cell from user or charger data, neutralised for spreadsheets (see the module docstring)."""
    if value is None:
        return ""
    value = str(value)
    if "\x00" in value:
        value = value.replace("\x00", "")
    if value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _fixed(value: Decimal | None, places: int) -> str:
    if value is None:
        return ""
    value = value.quantize(_EXPONENTS[places], rounding=ROUND_HALF_UP)
    # str() of a Decimal with an exponent of -6..0 is never in scientific notation; abs(): never "-0.00".
    return str(value) if value else str(abs(value))


def _int(value: int | None) -> str:
    return "" if value is None else str(value)


def _kwh(energy_wh: int | None) -> str:
    return "" if energy_wh is None else _fixed(Decimal(energy_wh).scaleb(-3), 3)


def _hours(seconds: Decimal | None) -> str:
    return "" if seconds is None else _fixed(seconds / 3600, 6)


def _utc(moment: datetime | None) -> str:
    if moment is None:
        return ""
    m = moment.astimezone(UTC)
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}Z"


def _local_in(moment: datetime, zone: ZoneInfo) -> str:
    """`moment` in `zone`; empty when it is not representable there (past year 9999 or before year 1: a
    charger's absurd clock in rows older than the timestamp window, docs/reliability.md case 45). Its `*_utc`
    cell still carries it."""
    try:
        return _local(moment.astimezone(zone))
    except OverflowError:
        return ""


def _local(moment: datetime | None) -> str:
    """`moment`, already in the local zone."""
    if moment is None:
        return ""
    m = moment
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d} {m.hour:02d}:{m.minute:02d}:{m.second:02d}"


class _Zones:
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


# --- the period ----------------------------------------------------------------------------------


class _Period:
    """[from, to) as local dates at each site, or as instants."""

    def __init__(self, filters: ExportFilters, zones: _Zones):
        self.local = not _is_datetime(filters.period_from)
        self.start = filters.period_from
        self.end = filters.period_to
        self._zones = zones

    def query_window(self) -> tuple[datetime, datetime]:
        """The UTC window to ask the database for: exact for instants, widened for local dates."""
        if not self.local:
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


# --- reading -------------------------------------------------------------------------------------


@dataclass
class _Scan:
    """Keyset pagination over one queryset, by primary key: `WHERE pk > last ORDER BY pk LIMIT n`."""

    queryset: QuerySet
    fields: tuple[str, ...]
    instant: str  # the field the period applies to
    zone: str  # the field holding the time zone of that instant
    handle: Callable[[list[tuple]], list[list[str]]]
    # Computed columns, selected by `fetch` only (counting does not need them).
    annotations: dict[str, Any] = field(default_factory=dict)
    last_id: int | None = None
    max_id: int | None = None
    done: bool = False

    def fetch(self, limit: int) -> list[tuple]:
        if self.last_id is None:
            # The id range of the window, once: with `id <= max_id` the planner can walk the primary key
            # from `last_id` (ids grow with time) instead of reading the rest of the window through the
            # time index and sorting it for every chunk. Rows added after this are left out.
            bounds = self.queryset.aggregate(first=Min("pk"), last=Max("pk"))
            if bounds["first"] is None:
                self.done = True
                return []
            self.last_id, self.max_id = bounds["first"] - 1, bounds["last"]
        # The chunk's ids first, then their columns: whatever plan the database picks for the window,
        # the joins and subqueries run for `limit` rows, not for every row it has to sort.
        ids = (
            self.queryset.filter(pk__gt=self.last_id, pk__lte=self.max_id).order_by("pk").values("pk")[:limit]
        )
        rows = list(
            self.queryset.model.objects.filter(pk__in=ids)
            .annotate(**self.annotations)
            .order_by("pk")
            .values_list("pk", *self.fields, *self.annotations)
        )
        if rows:
            self.last_id = rows[-1][0]
        if len(rows) < limit:
            self.done = True
        return rows

    def count(self, period: _Period) -> int:
        """Rows in the period, exactly: per time zone, over that zone's exact UTC window."""
        if not period.local:
            return self.queryset.count()
        total = 0
        zones = self.queryset.order_by().values_list(self.zone, flat=True).distinct()
        for zone_name in list(zones):
            start, end = period.zone_window(zone_name)
            in_zone = (
                Q(**{self.zone: zone_name}) if zone_name is not None else Q(**{f"{self.zone}__isnull": True})
            )
            total += self.queryset.filter(
                in_zone, **{f"{self.instant}__gte": start, f"{self.instant}__lt": end}
            ).count()
        return total


CDR_HEADER = (
    "record_type",
    "record_id",
    "cdr_id",
    "session_id",
    "transaction_id",
    "organisation",
    "site",
    "station",
    "evse",
    "connector",
    "id_token",
    "tariff",
    "time_zone",
    "started_at_local",
    "stopped_at_local",
    "started_at_utc",
    "stopped_at_utc",
    "energy_kwh",
    "charging_hours",
    "parking_hours",
    "currency",
    "flat_amount",
    "energy_amount",
    "time_amount",
    "parking_amount",
    "adjustment_amount",
    "subtotal",
    "tax_rate",
    "tax",
    "total",
    "energy_cost",
    "margin",
    "credit_reason",
    "created_at_utc",
)
SESSION_HEADER = (
    "session_id",
    "transaction_id",
    "organisation",
    "site",
    "station",
    "evse",
    "connector",
    "id_token",
    "status",
    "billing_status",
    "flags",
    "time_zone",
    "started_at_local",
    "stopped_at_local",
    "started_at_utc",
    "stopped_at_utc",
    "energy_kwh",
    "tariff",
    "currency",
    "flat_amount",
    "energy_amount",
    "time_amount",
    "parking_amount",
    "adjustment_amount",
    "subtotal",
    "tax",
    "total",
    "credited",
    "net_total",
    "cdr_id",
)
REVENUE_SITES_HEADER = (
    "month",
    "organisation",
    "site",
    "currency",
    "sessions",
    "energy_kwh",
    "revenue_excl_tax",
    "tax",
    "revenue_incl_tax",
    "credits_excl_tax",
    "credits_tax",
    "net_excl_tax",
    "energy_cost",
    "margin",
    "energy_cost_per_kwh",
)
REVENUE_PORTS_HEADER = (
    "month",
    "organisation",
    "site",
    "station",
    "evse",
    "connector",
    "currency",
    "sessions",
    "energy_kwh",
    "revenue_excl_tax",
    "tax",
    "revenue_incl_tax",
    "credits_excl_tax",
    "net_excl_tax",
    "energy_cost",
    "margin",
)
HEADERS = {
    ExportKind.CDRS: CDR_HEADER,
    ExportKind.SESSIONS: SESSION_HEADER,
    ExportKind.REVENUE_SITES: REVENUE_SITES_HEADER,
    ExportKind.REVENUE_PORTS: REVENUE_PORTS_HEADER,
}

_CDR_FIELDS = (
    "session_id",
    "session__transaction_id",
    "organisation__name",
    "site__name",
    "station_identity",
    "evse_number",
    "connector_number",
    "id_tag",
    "tariff_label",
    "time_zone",
    "started_at",
    "stopped_at",
    "energy_wh",
    "charging_s",
    "parking_s",
    "currency",
    "flat_amount",
    "energy_amount",
    "time_amount",
    "parking_amount",
    "adjustment_amount",
    "subtotal",
    "tax_rate",
    "tax",
    "total",
    "energy_cost",
    "created_at",
)
_CREDIT_FIELDS = (
    "cdr_id",
    "cdr__session_id",
    "cdr__session__transaction_id",
    "organisation__name",
    "cdr__site__name",
    "cdr__station_identity",
    "cdr__evse_number",
    "cdr__connector_number",
    "cdr__id_tag",
    "cdr__tariff_label",
    "cdr__time_zone",
    "cdr__started_at",
    "cdr__stopped_at",
    "currency",
    "subtotal",
    "cdr__tax_rate",
    "tax",
    "total",
    "reason",
    "created_at",
)
_SESSION_FIELDS = (
    "transaction_id",
    "station__organisation__name",
    "station__site__name",
    "station__identity",
    "evse__evse_id",
    "connector__connector_id",
    "id_tag",
    "status",
    "held_for_review",
    "flags",
    "station__site__time_zone",
    "started_at",
    "stopped_at",
    "energy_wh",
    "cdr__id",
    "cdr__tariff_label",
    "cdr__currency",
    "cdr__flat_amount",
    "cdr__energy_amount",
    "cdr__time_amount",
    "cdr__parking_amount",
    "cdr__adjustment_amount",
    "cdr__subtotal",
    "cdr__tax",
    "cdr__total",
)
_REVENUE_CDR_FIELDS = (
    "organisation_id",
    "organisation__name",
    "site_id",
    "site__name",
    "station_identity",
    "evse_number",
    "connector_number",
    "currency",
    "time_zone",
    "stopped_at",
    "energy_wh",
    "subtotal",
    "tax",
    "total",
    "energy_cost",
)
_REVENUE_CREDIT_FIELDS = (
    "organisation_id",
    "organisation__name",
    "cdr__site_id",
    "cdr__site__name",
    "cdr__station_identity",
    "cdr__evse_number",
    "cdr__connector_number",
    "currency",
    "cdr__time_zone",
    "created_at",
    "subtotal",
    "tax",
    "total",
)

_ZERO = Decimal(0)


@dataclass(slots=True)
class _Totals:
    """One revenue row being summed."""

    sort_key: tuple
    labels: tuple  # organisation, site[, station, evse, connector]
    currency: str
    cdrs: int = 0
    energy_wh: int = 0
    subtotal: Decimal = _ZERO
    tax: Decimal = _ZERO
    total: Decimal = _ZERO
    credit_subtotal: Decimal = _ZERO
    credit_tax: Decimal = _ZERO
    energy_cost: Decimal = _ZERO
    costed_cdrs: int = 0
    costed_wh: int = 0


class ExportReader:
    """The CSV of one export, in chunks of bytes: `read()` returns the header first, then one chunk per
    database round trip (possibly empty), then None. Holds no database connection between calls, so each
    call may run in another thread. `records` counts the records of the period read so far (the data rows
    of cdrs/sessions; the CDRs and credits summed for the revenue kinds); `count()` says how many there
    are in all."""

    def __init__(
        self, *, kind: str, filters: ExportFilters, scope: ExportScope, chunk_rows: int | None = None
    ):
        if kind not in ExportKind.values:
            raise NotFound(f"Unknown export kind {kind!r}.")
        self.kind = kind
        self.header = HEADERS[kind]
        self.records = 0
        self._chunk_rows = chunk_rows or CHUNK_ROWS
        self._zones = _Zones()
        self._period = _Period(filters, self._zones)
        self._scope = scope
        self._header_sent = False
        self._totals: dict[tuple, _Totals] | None = None
        self._pending: list[list[str]] | None = None  # revenue rows left to write
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        self._scans = self._make_scans()

    # -- public

    def read(self) -> bytes | None:
        if not self._header_sent:
            self._header_sent = True
            return self._encode([self.header])
        while self._scans:
            scan = self._scans[0]
            rows = scan.fetch(self._chunk_rows)
            if scan.done:
                self._scans.pop(0)
            return self._encode(scan.handle(rows))
        if self._totals is not None:
            if self._pending is None:
                self._pending = self._revenue_rows()
            if self._pending:
                part, self._pending = self._pending[: self._chunk_rows], self._pending[self._chunk_rows :]
                return self._encode(part)
        return None

    def count(self) -> int:
        return sum(scan.count(self._period) for scan in self._scans)

    # -- plumbing

    def _encode(self, rows: Iterable[Iterable[str]]) -> bytes:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerows(rows)
        return self._buffer.getvalue().encode()

    def _cdrs(self) -> QuerySet:
        start, end = self._period.query_window()
        qs = ChargeDetailRecord.objects.filter(
            organisation_id__in=self._scope.organisation_ids, stopped_at__gte=start, stopped_at__lt=end
        )
        if self._scope.site_ids:
            qs = qs.filter(site_id__in=self._scope.site_ids)
        return qs

    def _credits(self) -> QuerySet:
        start, end = self._period.query_window()
        qs = CdrCredit.objects.filter(
            organisation_id__in=self._scope.organisation_ids, created_at__gte=start, created_at__lt=end
        )
        if self._scope.site_ids:
            qs = qs.filter(cdr__site_id__in=self._scope.site_ids)
        return qs

    def _sessions(self) -> QuerySet:
        start, end = self._period.query_window()
        qs = ChargingSession.objects.filter(
            station__organisation_id__in=self._scope.organisation_ids,
            started_at__gte=start,
            started_at__lt=end,
        )
        if self._scope.site_ids:
            qs = qs.filter(station__site_id__in=self._scope.site_ids)
        return qs

    def _make_scans(self) -> list[_Scan]:
        if self.kind == ExportKind.CDRS:
            return [
                _Scan(self._cdrs(), _CDR_FIELDS, "stopped_at", "time_zone", self._cdr_rows),
                _Scan(self._credits(), _CREDIT_FIELDS, "created_at", "cdr__time_zone", self._credit_rows),
            ]
        if self.kind == ExportKind.SESSIONS:
            return [
                _Scan(
                    self._sessions(),
                    _SESSION_FIELDS,
                    "started_at",
                    "station__site__time_zone",
                    self._session_rows,
                    # A correlated subquery (index on cdr_id): no second round trip per chunk.
                    annotations={
                        "credited": Subquery(
                            CdrCredit.objects.filter(cdr_id=OuterRef("cdr__id"))
                            .order_by()
                            .values("cdr_id")
                            .annotate(credited=Sum("total"))
                            .values("credited")
                        )
                    },
                )
            ]
        self._totals = {}
        return [
            _Scan(self._cdrs(), _REVENUE_CDR_FIELDS, "stopped_at", "time_zone", self._sum_cdrs),
            _Scan(self._credits(), _REVENUE_CREDIT_FIELDS, "created_at", "cdr__time_zone", self._sum_credits),
        ]

    # -- cdrs

    def _cdr_rows(self, rows: list[tuple]) -> list[list[str]]:
        zones, period, out = self._zones, self._period, []
        for (
            cdr_id,
            session_id,
            transaction_id,
            organisation,
            site,
            station,
            evse,
            connector,
            id_tag,
            tariff,
            zone_name,
            started_at,
            stopped_at,
            energy_wh,
            charging_s,
            parking_s,
            currency,
            flat,
            energy,
            time_amount,
            parking,
            adjustment,
            subtotal,
            tax_rate,
            tax,
            total,
            energy_cost,
            created_at,
        ) in rows:
            zone = zones.get(zone_name)
            stopped_local = stopped_at.astimezone(zone)
            if not period.contains(stopped_at, stopped_local):
                continue
            places = minor_unit(currency)
            out.append(
                [
                    "cdr",
                    str(cdr_id),
                    str(cdr_id),
                    str(session_id),
                    _text(transaction_id),
                    _text(organisation),
                    _text(site),
                    _text(station),
                    _int(evse),
                    _int(connector),
                    _text(id_tag),
                    _text(tariff),
                    _text(zone.key),
                    _local_in(started_at, zone),
                    _local(stopped_local),
                    _utc(started_at),
                    _utc(stopped_at),
                    _kwh(energy_wh),
                    _hours(charging_s),
                    _hours(parking_s),
                    _text(currency),
                    _fixed(flat, places),
                    _fixed(energy, places),
                    _fixed(time_amount, places),
                    _fixed(parking, places),
                    _fixed(adjustment, places),
                    _fixed(subtotal, places),
                    _fixed(tax_rate, 4),
                    _fixed(tax, places),
                    _fixed(total, places),
                    _fixed(energy_cost, places),
                    "" if energy_cost is None else _fixed(subtotal - energy_cost, places),
                    "",
                    _utc(created_at),
                ]
            )
        self.records += len(out)
        return out

    def _credit_rows(self, rows: list[tuple]) -> list[list[str]]:
        zones, period, out = self._zones, self._period, []
        for (
            credit_id,
            cdr_id,
            session_id,
            transaction_id,
            organisation,
            site,
            station,
            evse,
            connector,
            id_tag,
            tariff,
            zone_name,
            started_at,
            stopped_at,
            currency,
            subtotal,
            tax_rate,
            tax,
            total,
            reason,
            created_at,
        ) in rows:
            zone = zones.get(zone_name)
            if not period.contains(created_at, created_at.astimezone(zone)):
                continue
            places = minor_unit(currency)
            out.append(
                [
                    "credit",
                    str(credit_id),
                    str(cdr_id),
                    str(session_id),
                    _text(transaction_id),
                    _text(organisation),
                    _text(site),
                    _text(station),
                    _int(evse),
                    _int(connector),
                    _text(id_tag),
                    _text(tariff),
                    _text(zone.key),
                    _local_in(started_at, zone),
                    _local_in(stopped_at, zone),
                    _utc(started_at),
                    _utc(stopped_at),
                    "",
                    "",
                    "",
                    _text(currency),
                    "",
                    "",
                    "",
                    "",
                    "",
                    _fixed(subtotal, places),
                    _fixed(tax_rate, 4),
                    _fixed(tax, places),
                    _fixed(total, places),
                    "",
                    _fixed(subtotal, places),
                    _text(reason),
                    _utc(created_at),
                ]
            )
        self.records += len(out)
        return out

    # -- sessions

    def _session_rows(self, rows: list[tuple]) -> list[list[str]]:
        zones, period, out = self._zones, self._period, []
        for (
            session_id,
            transaction_id,
            organisation,
            site,
            station,
            evse,
            connector,
            id_tag,
            status,
            held,
            flags,
            zone_name,
            started_at,
            stopped_at,
            energy_wh,
            cdr_id,
            tariff,
            currency,
            flat,
            energy,
            time_amount,
            parking,
            adjustment,
            subtotal,
            tax,
            total,
            credited,
        ) in rows:
            zone = zones.get(zone_name)
            started_local = started_at.astimezone(zone)
            if not period.contains(started_at, started_local):
                continue
            if cdr_id is not None:
                billing_status = "billed"
            elif held:
                billing_status = "held"
            elif status != SessionStatus.COMPLETED:
                billing_status = "active"
            else:
                billing_status = "pending"
            if cdr_id is None:
                money = [""] * 11
            else:
                places = minor_unit(currency)
                credit = credited or _ZERO
                money = [
                    _fixed(flat, places),
                    _fixed(energy, places),
                    _fixed(time_amount, places),
                    _fixed(parking, places),
                    _fixed(adjustment, places),
                    _fixed(subtotal, places),
                    _fixed(tax, places),
                    _fixed(total, places),
                    _fixed(credit, places),
                    _fixed(total + credit, places),
                    str(cdr_id),
                ]
            out.append(
                [
                    str(session_id),
                    _text(transaction_id),
                    _text(organisation),
                    _text(site),
                    _text(station),
                    _int(evse),
                    _int(connector),
                    _text(id_tag),
                    _text(status),
                    billing_status,
                    _text(";".join(map(str, flags)) if isinstance(flags, list) else ""),
                    _text(zone.key),
                    _local(started_local),
                    _local_in(stopped_at, zone) if stopped_at is not None else "",
                    _utc(started_at),
                    _utc(stopped_at),
                    _kwh(energy_wh),
                    _text(tariff),
                    _text(currency),
                    *money,
                ]
            )
        self.records += len(out)
        return out

    # -- revenue

    def _group(
        self,
        *,
        local: datetime,
        organisation_id: int,
        organisation: str,
        site_id: int,
        site: str,
        station: str,
        evse: int | None,
        connector: int | None,
        currency: str,
    ) -> _Totals:
        month = f"{local.year:04d}-{local.month:02d}"
        if self.kind == ExportKind.REVENUE_SITES:
            key: tuple = (month, organisation_id, site_id, currency)
        else:
            key = (month, organisation_id, site_id, station, evse, connector, currency)
        totals = self._totals.get(key)
        if totals is None:
            if self.kind == ExportKind.REVENUE_SITES:
                sort_key: tuple = (month, organisation, organisation_id, site, site_id, currency)
                labels: tuple = (month, organisation, site)
            else:
                sort_key = (
                    month,
                    organisation,
                    organisation_id,
                    site,
                    site_id,
                    station,
                    -1 if evse is None else evse,
                    -1 if connector is None else connector,
                    currency,
                )
                labels = (month, organisation, site, station, evse, connector)
            totals = self._totals[key] = _Totals(sort_key=sort_key, labels=labels, currency=currency)
        return totals

    def _sum_cdrs(self, rows: list[tuple]) -> list[list[str]]:
        zones, period = self._zones, self._period
        for (
            _pk,
            organisation_id,
            organisation,
            site_id,
            site,
            station,
            evse,
            connector,
            currency,
            zone_name,
            stopped_at,
            energy_wh,
            subtotal,
            tax,
            total,
            energy_cost,
        ) in rows:
            local = stopped_at.astimezone(zones.get(zone_name))
            if not period.contains(stopped_at, local):
                continue
            self.records += 1
            totals = self._group(
                local=local,
                organisation_id=organisation_id,
                organisation=organisation,
                site_id=site_id,
                site=site,
                station=station,
                evse=evse,
                connector=connector,
                currency=currency,
            )
            totals.cdrs += 1
            totals.energy_wh += energy_wh
            totals.subtotal += subtotal
            totals.tax += tax
            totals.total += total
            if energy_cost is not None:
                totals.energy_cost += energy_cost
                totals.costed_cdrs += 1
                totals.costed_wh += energy_wh
        return []

    def _sum_credits(self, rows: list[tuple]) -> list[list[str]]:
        zones, period = self._zones, self._period
        for (
            _pk,
            organisation_id,
            organisation,
            site_id,
            site,
            station,
            evse,
            connector,
            currency,
            zone_name,
            created_at,
            subtotal,
            tax,
            _total,
        ) in rows:
            local = created_at.astimezone(zones.get(zone_name))
            if not period.contains(created_at, local):
                continue
            self.records += 1
            totals = self._group(
                local=local,
                organisation_id=organisation_id,
                organisation=organisation,
                site_id=site_id,
                site=site,
                station=station,
                evse=evse,
                connector=connector,
                currency=currency,
            )
            totals.credit_subtotal += subtotal
            totals.credit_tax += tax
        return []

    def _revenue_rows(self) -> list[list[str]]:
        sites = self.kind == ExportKind.REVENUE_SITES
        out = []
        for totals in sorted(self._totals.values(), key=lambda t: t.sort_key):
            places = minor_unit(totals.currency)
            net = totals.subtotal + totals.credit_subtotal
            has_cost = totals.costed_cdrs > 0 or totals.cdrs == 0
            cost = totals.energy_cost if has_cost else None
            money = [
                str(totals.cdrs),
                _kwh(totals.energy_wh),
                _fixed(totals.subtotal, places),
                _fixed(totals.tax, places),
                _fixed(totals.total, places),
                _fixed(totals.credit_subtotal, places),
            ]
            if sites:
                money.append(_fixed(totals.credit_tax, places))
            money += [
                _fixed(net, places),
                _fixed(cost, places),
                "" if cost is None else _fixed(net - cost, places),
            ]
            if sites:
                per_kwh = ""
                if totals.costed_wh:
                    per_kwh = _fixed(
                        round_half_up(Fraction(totals.energy_cost) * 1000 / totals.costed_wh, 4), 4
                    )
                money.append(per_kwh)
            if sites:
                month, organisation, site = totals.labels
                labels = [month, _text(organisation), _text(site), _text(totals.currency)]
            else:
                month, organisation, site, station, evse, connector = totals.labels
                labels = [
                    month,
                    _text(organisation),
                    _text(site),
                    _text(station),
                    _int(evse),
                    _int(connector),
                    _text(totals.currency),
                ]
            out.append(labels + money)
        return out


def export_reader(*, kind: str, filters: ExportFilters, scope: ExportScope) -> ExportReader:
    return ExportReader(kind=kind, filters=filters, scope=scope)


def _read_attempts() -> int:
    """One more than the connections the pool may hold (each failed read discards one), or 2."""
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    return (pool.get("max_size", 1) if isinstance(pool, dict) else 1) + 1


def _read(reader: ExportReader) -> bytes | None:
    """`reader.read()`, again on another connection if the connection failed.

    The pool does no health check at checkout (cpms/settings.py): a pooled connection cut while idle (a
    database restart, a firewall) fails its first query, and after a restart every pooled connection
    does. A read that fails leaves the reader as it was (its keyset moves only after a fetch succeeds), so
    reading again is safe.
    """
    attempts = _read_attempts()
    for attempt in range(1, attempts + 1):
        try:
            return reader.read()
        except (OperationalError, InterfaceError):
            if attempt == attempts:
                raise
            logger.warning("export read failed on a broken connection; reading again", exc_info=True)
            close_old_connections()  # drops the broken connection (errors_occurred is set on it)
    raise AssertionError("unreachable")


def export_write(*, reader: ExportReader, out, on_chunk: Callable[[int], None] | None = None) -> int:
    """Write the whole CSV of `reader` to the binary file `out`; `on_chunk(records)` after each chunk.
    Returns the records written."""
    while (data := _read(reader)) is not None:
        if data:
            out.write(data)
        if on_chunk is not None:
            on_chunk(reader.records)
    return reader.records


def _in_worker_thread(func: Callable[[], Any]):
    # channels' database_sync_to_async closes the thread's connection before and after the call when it
    # is not persistent (CONN_MAX_AGE 0: pooled connections go back to the pool), as OCPP handlers do
    # (cpms/ocpp/chargepoint.py:run_db). thread_sensitive=False: chunks do not queue behind the
    # request threads, and nothing holds a connection between two chunks.
    return database_sync_to_async(func, thread_sensitive=False)()


async def _release_request_connection() -> None:
    # The view ran on this request's thread and left that thread's connection checked out of the pool;
    # Django gives it back at request_finished, after the last byte. An export streams for minutes: give
    # it back now. Under ASGI the request's thread is the thread-sensitive one of this context.
    await sync_to_async(close_old_connections, thread_sensitive=True)()


# Tests that keep their data in the test transaction swap both for runners on the test's own thread
# (closing the test's connection would end its transaction).
_db_runner = _in_worker_thread
_request_connection_release = _release_request_connection


class ExportStreamFailed(Exception):
    """A streamed export failed after its first bytes (the cause is logged); the server drops the
    connection without ending the chunked body."""


def export_failure_line(*, records: int) -> bytes:
    """The last line of a streamed export that failed: one cell, in no column of the header, so that a
    tool that reads the partial file anyway finds a malformed last row rather than a shorter file that
    looks complete (chunks end at row boundaries)."""
    return (
        f"#EXPORT FAILED: this file is incomplete ({records} records written); see the server log\r\n"
    ).encode()


async def export_stream(*, reader: ExportReader) -> AsyncIterator[bytes]:
    """The CSV of `reader` as an async iterator, one database round trip per chunk in a worker thread.

    Async because under ASGI Django consumes a synchronous streaming iterator into a list before sending
    the first byte (django.http.StreamingHttpResponse.__aiter__): the whole export would sit in memory.

    A failure after the first byte (docs/reliability.md case 45) is logged, ends the body with
    `export_failure_line`, and raises ExportStreamFailed: the server then closes the connection without the
    chunked terminator (Daphne through cpms.daphne_compat, uvicorn by itself), so that an HTTP client reports
    an incomplete transfer (curl exit 18, `http.client.IncompleteRead`, a browser's failed download)
    instead of waiting forever or keeping a file that looks complete.
    """
    await _request_connection_release()
    while True:
        try:
            if not reader._header_sent:  # the status line and headers are already on their way
                await _db_runner(
                    lambda: _export_audit(kind=reader.kind, period=reader._period, scope=reader._scope)
                )
            data = await _db_runner(lambda: _read(reader))
        except Exception as exc:
            logger.exception("%s export failed after %d records", reader.kind, reader.records)
            yield export_failure_line(records=reader.records)
            raise ExportStreamFailed(f"{reader.kind} export failed after {reader.records} records") from exc
        if data is None:
            return
        if data:
            yield data


async def export_file_stream(*, path: Path, block_bytes: int = 256 * 1024) -> AsyncIterator[bytes]:
    """A stored export file in blocks, read in a worker thread (FileResponse would be buffered whole under
    ASGI, for the reason given in `export_stream`)."""
    await _request_connection_release()
    handle = await sync_to_async(open, thread_sensitive=False)(path, "rb")
    try:
        while block := await sync_to_async(handle.read, thread_sensitive=False)(block_bytes):
            yield block
    finally:
        handle.close()


# --- jobs ----------------------------------------------------------------------------------------


def _export_audit(*, kind: str, period: "_Period", scope: ExportScope, job: ExportJob | None = None) -> None:
    """docs/reliability.md case 42: who exported what (a streamed export when it starts, a job when it is
    created)."""
    organisation_ids = list(scope.organisation_ids)
    audit_record(
        actor=User.objects.filter(pk=scope.requested_by_id).first() if job is None else job.requested_by,
        action=AuditAction.EXPORT_CREATED,
        obj=job,
        organisation_id=organisation_ids[0] if len(organisation_ids) == 1 else None,
        changes={
            "kind": kind,
            "streamed": job is None,
            "from": period.start.isoformat(),
            "to": period.end.isoformat(),
            "organisations": organisation_ids,
            "sites": list(scope.site_ids),
        },
    )


def export_job_path(*, job_id: int) -> Path:
    """Where a job's file lives: named by the job id only, never by user input."""
    return Path(settings.MEDIA_ROOT) / EXPORTS_DIR / f"job-{job_id}.csv"


def export_job_list(*, user: User) -> QuerySet[ExportJob]:
    """The user's own export jobs, newest first."""
    return ExportJob.objects.filter(requested_by=user).order_by("-created_at", "-id")


def export_job_access(*, user: User, pk: int) -> ExportJob:
    """The job `pk` if the user asked for it (superusers: any); NotFound otherwise."""
    jobs = ExportJob.objects.all() if user.is_superuser else ExportJob.objects.filter(requested_by=user)
    job = jobs.filter(pk=pk).first()
    if job is None:
        raise NotFound(f"Export {pk} not found.")
    return job


def export_job_download_access(*, user: User, pk: int) -> tuple[ExportJob, Path]:
    """The job and its file, for a download: the job is done, its file exists, and the user may still
    export every organisation it read (a finance role withdrawn since takes the file away too)."""
    job = export_job_access(user=user, pk=pk)
    if not user.is_superuser:
        allowed = set(organisation_ids_with(user=user, capability=Capability.EXPORT))
        if not set(job.organisation_ids) <= allowed:
            raise PermissionDenied(f"You may no longer export the organisations of export {pk}.")
    if job.status != ExportStatus.DONE:
        raise Conflict(f"Export {pk} is {job.status}; its file can be downloaded once it is done.")
    path = export_job_path(job_id=job.pk)
    if not path.is_file():
        raise NotFound(f"The file of export {pk} is missing.")
    return job, path


def export_job_create(*, user: User, kind: str, filters: ExportFilters) -> ExportJob:
    """Check the filters and the user's scope now, store the job with the organisations it may read, and
    queue `export_job_run` once the job is committed."""
    from billing.tasks_exports import export_job_run as export_job_run_task  # tasks import services

    if kind not in ExportKind.values:
        raise ValidationFailed(f"Unknown export kind {kind!r}; one of {', '.join(ExportKind.values)}.")
    export_filters_validate(filters=filters, streaming=False)
    scope = export_scope_access(user=user, filters=filters)
    with transaction.atomic():
        job = ExportJob.objects.create(
            requested_by=user,
            kind=kind,
            filters=filters.as_json(),
            organisation_ids=list(scope.organisation_ids),
        )
        _export_audit(kind=kind, period=_Period(filters, _Zones()), scope=scope, job=job)
        transaction.on_commit(lambda: export_job_run_task.delay(job.pk))
    return job


class _Superseded(Exception):
    """Another run took the job over (a redelivered task): this one stops without touching it."""


def _job_update(*, job_id: int, claim: datetime, **values) -> None:
    """A conditional update that only the run holding the claim (status running, its started_at) can make."""
    updated = ExportJob.objects.filter(pk=job_id, status=ExportStatus.RUNNING, started_at=claim).update(
        **values
    )
    if updated != 1:
        raise _Superseded


def _job_partials_remove(job: ExportJob) -> None:
    """Temporary files of runs of `job` that died (a killed worker leaves its half-written file)."""
    folder = export_job_path(job_id=job.pk).parent
    for leftover in folder.glob(f".job-{job.pk}-*.part"):
        leftover.unlink(missing_ok=True)


def export_job_run(*, job_id: int) -> ExportJob | None:
    """Write the job's CSV to its file. Idempotent.

    Claims the job (cpms/jobs.py `job_claim`): a queued job, or a running one whose run was lost (no
    heartbeat for JOB_LEASE_S: its worker was killed), becomes running with a new `started_at`, which is
    this run's claim; a job that is running alive elsewhere (a duplicate delivery), done or failed is left
    as it is. While it runs a heartbeat thread keeps its lease. A run that loses its claim to a later one
    stops at its next progress update. Counts the rows first (rows_total), writes to a temporary file next
    to the final one (removing those of dead runs), updates rows_done every PROGRESS_EVERY records or
    PROGRESS_EVERY_S seconds, and renames the file into place at the end, so a rerun replaces the file
    instead of adding one. Ends `done` (rows_total = rows_done = records written) or `failed` with a
    message. Returns the job as it is afterwards (None if it no longer exists).
    """
    claim = job_claim(
        model=ExportJob,
        job_id=job_id,
        reset_fields={"rows_done": 0, "rows_total": None},
        on_failed=_job_partials_remove,
    )
    if claim is None:
        return ExportJob.objects.filter(pk=job_id).first()
    job = ExportJob.objects.get(pk=job_id)
    path = export_job_path(job_id=job_id)
    temporary: str | None = None
    mine = ExportJob.objects.filter(pk=job_id, status=ExportStatus.RUNNING, started_at=claim)
    try:
        with Heartbeat(mine):
            path.parent.mkdir(parents=True, exist_ok=True)
            _job_partials_remove(job)
            filters = ExportFilters.from_json(job.filters)
            scope = ExportScope(organisation_ids=tuple(job.organisation_ids), site_ids=filters.site_ids)
            reader = ExportReader(kind=job.kind, filters=filters, scope=scope)
            _job_update(job_id=job_id, claim=claim, rows_total=reader.count())
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".job-{job_id}-", suffix=".part")
            reported, reported_at = 0, time_monotonic()

            def progress(records: int) -> None:
                nonlocal reported, reported_at
                if drill_hook.ARMED and records:  # test hook (worker-kill drill): a half-written file
                    drill_hook.reached("export", f"job {job_id}")
                now = time_monotonic()
                if records - reported >= PROGRESS_EVERY or now - reported_at >= PROGRESS_EVERY_S:
                    _job_update(job_id=job_id, claim=claim, rows_done=records)
                    reported, reported_at = records, now

            with os.fdopen(handle, "wb") as out:
                records = export_write(reader=reader, out=out, on_chunk=progress)
                out.flush()
                os.fsync(out.fileno())
            _job_update(job_id=job_id, claim=claim, rows_done=records)  # still ours: the file may be placed
            os.replace(temporary, path)
            temporary = None
            _job_update(
                job_id=job_id,
                claim=claim,
                status=ExportStatus.DONE,
                rows_done=records,
                rows_total=records,
                file_name=f"{EXPORTS_DIR}/{path.name}",
                heartbeat_at=None,
                finished_at=timezone.now(),
            )
    except _Superseded:
        logger.info("export job %s: taken over by another run", job_id)
    except Exception as exc:
        logger.exception("export job %s failed", job_id)
        message = exc.message if isinstance(exc, DomainError) else "Internal error; see the worker log."
        mine.update(status=ExportStatus.FAILED, error=message, heartbeat_at=None, finished_at=timezone.now())
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
    return ExportJob.objects.filter(pk=job_id).first()


def export_jobs_recover() -> Recovered:
    """The sweep of export jobs (Celery beat every JOB_SWEEP_S; cpms/jobs.py): a job whose worker died
    is queued again as its next attempt (its progress reset; the rerun replaces its half-written file), or
    failed after JOB_MAX_ATTEMPTS lost attempts (its half-written files removed); a queued job nobody took
    within the lease has its task sent again."""
    from billing.tasks_exports import export_job_run as export_job_run_task  # tasks import services

    return jobs_recover(
        model=ExportJob,
        enqueue=lambda job: export_job_run_task.delay(job.pk),
        requeue_fields={"rows_done": 0, "rows_total": None},
        on_failed=_job_partials_remove,
    )
