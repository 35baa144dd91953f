"""Typed rows of an export from the database (rows.py), in chunks: the CSV writer (csv.py) and the portal's
revenue page read the same rows.

DatabaseRows are read with keyset pagination (`WHERE id > last ORDER BY id LIMIT CHUNK_ROWS`, within the id range
the period had when the export started; the chunk's ids first, then their columns): no server-side cursor
and no transaction stays open between chunks, so memory is constant and a chunk may run on any pooled
connection. DatabaseRows inserted after the export started are not in it.

cdrs: the CDRs, then the credits of the period, each part in id order; sessions: the sessions of the
period in id order (records.py). revenue_sites / revenue_ports: the CDRs and credits of the period summed
per month, site [and port] and currency (revenue.py).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Max, Min, OuterRef, Q, QuerySet, Subquery, Sum

from accounts.models import User
from billing.enums import ExportKind
from billing.models import CdrCredit, ChargeDetailRecord
from billing.services.exports.filters import ExportFilters, Period, Zones, export_filters_validate
from billing.services.exports.records import (
    CDR_FIELDS,
    CREDIT_FIELDS,
    SESSION_FIELDS,
    DatabaseRows,
    cdr_records,
    credit_records,
    session_records,
)
from billing.services.exports.revenue import REVENUE_CDR_FIELDS, REVENUE_CREDIT_FIELDS, RevenueSums
from billing.services.exports.rows import RevenueRow
from billing.services.exports.scope import ExportScope, export_scope_access
from cpms.errors import NotFound
from sessions.models import ChargingSession

# DatabaseRows per database round trip: big enough to amortise the query, small enough to keep memory flat.
CHUNK_ROWS = 2000


@dataclass
class _Scan:
    """Keyset pagination over one queryset, by primary key: `WHERE pk > last ORDER BY pk LIMIT n`."""

    queryset: QuerySet[Any]
    fields: tuple[str, ...]
    instant: str  # the field the period applies to
    zone: str  # the field holding the time zone of that instant
    handle: Callable[[DatabaseRows], list[Any]]  # database rows -> typed rows of the period
    # Computed columns, selected by `fetch` only (counting does not need them).
    annotations: dict[str, Any] = field(default_factory=dict)
    last_id: int | None = None
    max_id: int | None = None
    done: bool = False

    def fetch(self, limit: int) -> DatabaseRows:
        if self.last_id is None:
            # The id range of the window, once: with `id <= max_id` the planner can walk the primary key
            # from `last_id` (ids grow with time) instead of reading the rest of the window through the
            # time index and sorting it for every chunk. DatabaseRows added after this are left out.
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

    def count(self, period: Period) -> int:
        """DatabaseRows in the period, exactly: per time zone, over that zone's exact UTC window."""
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


class RowReader:
    """The typed rows of one export, in chunks: `read()` returns one chunk per database round trip (possibly
    empty), then None. Holds no database connection between calls, so each call may run in another thread.
    `records` counts the records of the period read so far (the rows of cdrs/sessions; the CDRs and credits
    summed for the revenue kinds); `count()` says how many there are in all."""

    def __init__(
        self, *, kind: str, filters: ExportFilters, scope: ExportScope, chunk_rows: int | None = None
    ):
        if kind not in ExportKind.values:
            raise NotFound(f"Unknown export kind {kind!r}.")
        self.kind = kind
        self.filters = filters
        self.scope = scope
        self.records = 0
        self._chunk_rows = chunk_rows or CHUNK_ROWS
        self._zones = Zones()
        self._period = Period(filters, self._zones)
        self._sums: RevenueSums | None = None
        self._pending: list[RevenueRow] | None = None  # revenue rows left to hand out
        self._scans = self._make_scans()

    def read(self) -> list[Any] | None:
        while self._scans:
            scan = self._scans[0]
            rows = scan.fetch(self._chunk_rows)
            if scan.done:
                self._scans.pop(0)
            return scan.handle(rows)
        if self._sums is not None:
            if self._pending is None:
                self._pending = self._sums.rows()
            if self._pending:
                part, self._pending = self._pending[: self._chunk_rows], self._pending[self._chunk_rows :]
                return part
        return None

    def count(self) -> int:
        return sum(scan.count(self._period) for scan in self._scans)

    # -- querysets

    def _cdrs(self) -> QuerySet[ChargeDetailRecord]:
        start, end = self._period.query_window()
        qs = ChargeDetailRecord.objects.filter(
            organisation_id__in=self.scope.organisation_ids, stopped_at__gte=start, stopped_at__lt=end
        )
        if self.scope.site_ids:
            qs = qs.filter(site_id__in=self.scope.site_ids)
        return qs

    def _credits(self) -> QuerySet[CdrCredit]:
        start, end = self._period.query_window()
        qs = CdrCredit.objects.filter(
            organisation_id__in=self.scope.organisation_ids, created_at__gte=start, created_at__lt=end
        )
        if self.scope.site_ids:
            qs = qs.filter(cdr__site_id__in=self.scope.site_ids)
        return qs

    def _sessions(self) -> QuerySet[ChargingSession]:
        start, end = self._period.query_window()
        qs = ChargingSession.objects.filter(
            station__organisation_id__in=self.scope.organisation_ids,
            started_at__gte=start,
            started_at__lt=end,
        )
        if self.scope.site_ids:
            qs = qs.filter(station__site_id__in=self.scope.site_ids)
        return qs

    def _make_scans(self) -> list[_Scan]:
        if self.kind == ExportKind.CDRS:
            return [
                _Scan(self._cdrs(), CDR_FIELDS, "stopped_at", "time_zone", self._records(cdr_records)),
                _Scan(
                    self._credits(),
                    CREDIT_FIELDS,
                    "created_at",
                    "cdr__time_zone",
                    self._records(credit_records),
                ),
            ]
        if self.kind == ExportKind.SESSIONS:
            return [
                _Scan(
                    self._sessions(),
                    SESSION_FIELDS,
                    "started_at",
                    "station__site__time_zone",
                    self._records(session_records),
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
        sums = self._sums = RevenueSums(kind=self.kind, zones=self._zones, period=self._period)
        return [
            _Scan(self._cdrs(), REVENUE_CDR_FIELDS, "stopped_at", "time_zone", self._summed(sums.add_cdrs)),
            _Scan(
                self._credits(),
                REVENUE_CREDIT_FIELDS,
                "created_at",
                "cdr__time_zone",
                self._summed(sums.add_credits),
            ),
        ]

    def _records(
        self, build: Callable[[DatabaseRows, Zones, Period], list[Any]]
    ) -> Callable[[DatabaseRows], list[Any]]:
        def handle(rows: DatabaseRows) -> list[Any]:
            records = build(rows, self._zones, self._period)
            self.records += len(records)
            return records

        return handle

    def _summed(self, add: Callable[[DatabaseRows], int]) -> Callable[[DatabaseRows], list[Any]]:
        def handle(rows: DatabaseRows) -> list[Any]:
            self.records += add(rows)
            return []  # the revenue rows come once every record is summed

        return handle


def rows_read(*, kind: str, filters: ExportFilters, scope: ExportScope) -> list[Any]:
    """Every typed row of an export at once: for exports known to be small (the revenue kinds)."""
    reader = RowReader(kind=kind, filters=filters, scope=scope)
    rows: list[Any] = []
    while (chunk := reader.read()) is not None:
        rows.extend(chunk)
    return rows


def revenue_site_rows(*, user: User, filters: ExportFilters) -> list[RevenueRow]:
    """The rows of the `revenue_sites` export for `filters` and the user's export scope, as the CSV states
    them (the portal's revenue page). PermissionDenied without the export capability; the period is checked
    as for a streamed export (ValidationFailed beyond MAX_STREAM_SPAN_DAYS)."""
    filters = export_filters_validate(filters=filters, streaming=True)
    scope = export_scope_access(user=user, filters=filters)
    return rows_read(kind=ExportKind.REVENUE_SITES, filters=filters, scope=scope)
