"""Operational and financial KPIs: per station and local day components (KpiDay), and summaries over them.

Definitions (docs/kpis.md):
- A port is an EVSE. It is *observed* from the first moment any of its state is known (its station's
  connection, a station-wide status, or its own status) and *in service* while observed, its station is not
  disconnected and neither the last station-wide status (evse null) nor its own last status is Faulted or
  Unavailable. A state not known yet takes nothing out of service. Uptime % = in-service port-seconds /
  observed port-seconds * 100, over [day start, day end) clipped to now.
- Sessions and their energy count on the local day they started; CDRs (revenue, energy cost, CDR energy) on the
  day their session stopped; credits on the day they were issued; an incident is detected on the day of
  `detected_at` and resolved on the day of `resolved_at`.
- Every ratio is computed from summed components (never an average of averages); None when its denominator
  is 0.

`port_seconds` is a pure function over event lists, so that uptime is tested exactly without a database.
"""

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Count, Min, QuerySet, Sum
from django.utils import timezone

from accounts.models import User
from billing.models import CdrCredit, ChargeDetailRecord, KpiDay
from cpms.errors import NotFound, ValidationFailed
from sessions.models import ChargingSession
from stations.enums import ConnectorStatus, StationEventKind
from stations.models import ChargingStation, Evse, Incident, Site, StationEvent, StatusChange
from stations.scope import site_scope_q, station_scope_q

OUT_OF_SERVICE = frozenset({ConnectorStatus.FAULTED, ConnectorStatus.UNAVAILABLE})
# Revenue per port is shown per average month: 365.25 / 12 days.
DAYS_PER_MONTH = Decimal("30.4375")
ZERO = Decimal(0)

# The KpiDay fields computed here (what an idempotent recompute compares).
KPI_FIELDS = (
    "organisation_id",
    "site_id",
    "ports",
    "observed_s",
    "in_service_s",
    "sessions",
    "energy_wh",
    "incidents_detected",
    "detect_s",
    "incidents_resolved",
    "repair_s",
    "resolved_remotely",
    "cdrs",
    "cdr_energy_wh",
    "currency",
    "revenue",
    "energy_cost",
    "disputed_sessions",
    "other_currency_cdrs",
)
# The components a summary adds up (the rest say where and in which currency).
SUMMED_FIELDS = tuple(
    field for field in KPI_FIELDS if field not in {"organisation_id", "site_id", "currency"}
)


# --- uptime: pure -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StationHistory:
    """Everything that decides a station's ports' service state, in time order, including the last event of
    each kind before the period (so that a period starting mid-outage starts in the outage).

    connectivity: (at, connected); station_status: (at, status) with evse null; port_status: evse_id ->
    [(at, status)] (any connector of the EVSE: its last report is the EVSE's state)."""

    ports: tuple[int, ...]
    connectivity: tuple[tuple[datetime, bool], ...] = ()
    station_status: tuple[tuple[datetime, str], ...] = ()
    port_status: dict[int, tuple[tuple[datetime, str], ...]] | None = None


def port_seconds(history: StationHistory, start: datetime, end: datetime) -> tuple[int, int]:
    """(observed, in service) port-seconds of the station's ports over [start, end), whole seconds."""
    if end <= start:
        return 0, 0
    observed = timedelta(0)
    in_service = timedelta(0)
    port_status = history.port_status or {}
    for port in history.ports:
        # One merged timeline per port: (at, order, kind, value). `order` keeps the input order of ties.
        events: list[tuple[datetime, int, str, object]] = []
        events += [(at, i, "conn", value) for i, (at, value) in enumerate(history.connectivity)]
        events += [(at, i, "station", value) for i, (at, value) in enumerate(history.station_status)]
        events += [(at, i, "port", value) for i, (at, value) in enumerate(port_status.get(port, ()))]
        events.sort(key=lambda e: (e[0], e[1]))
        state: dict[str, object] = {}
        cursor = start
        for at, _, kind, value in events:
            if at > cursor:
                segment_end = min(at, end)
                o, s = _segment(state, segment_end - cursor)
                observed += o
                in_service += s
                cursor = segment_end
                if cursor >= end:
                    break
            state[kind] = value
        if cursor < end:
            o, s = _segment(state, end - cursor)
            observed += o
            in_service += s
    return round(observed.total_seconds()), round(in_service.total_seconds())


def _segment(state: dict[str, Any], length: timedelta) -> tuple[timedelta, timedelta]:
    if not state:  # nothing known yet: not observed
        return timedelta(0), timedelta(0)
    down = (
        state.get("conn") is False
        or state.get("station") in OUT_OF_SERVICE
        or state.get("port") in OUT_OF_SERVICE
    )
    return length, (timedelta(0) if down else length)


# --- local days ---------------------------------------------------------------------------------------------


def day_bounds(day: date, time_zone: str) -> tuple[datetime, datetime]:
    """[start, end) of a local day in UTC (23 or 25 hours on a DST change)."""
    zone = ZoneInfo(time_zone or "UTC")
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return start, end


def local_today(time_zone: str, now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(ZoneInfo(time_zone or "UTC")).date()


# --- computing KpiDay rows ------------------------------------------------------------------------------


def _history_load(
    station: ChargingStation, ports: tuple[int, ...], start: datetime, end: datetime
) -> StationHistory:
    """The station's events in [start, end), plus the last one of each kind before `start`."""
    events = StationEvent.objects.filter(
        station=station, kind__in=[StationEventKind.CONNECTED, StationEventKind.DISCONNECTED]
    )
    connectivity = []
    before = events.filter(occurred_at__lt=start).order_by("-occurred_at", "-id").first()
    if before is not None:
        connectivity.append((before.occurred_at, before.kind == StationEventKind.CONNECTED))
    connectivity += [
        (at, kind == StationEventKind.CONNECTED)
        for at, kind in events.filter(occurred_at__gte=start, occurred_at__lt=end)
        .order_by("occurred_at", "id")
        .values_list("occurred_at", "kind")
    ]

    changes = StatusChange.objects.filter(station=station)

    def timeline(qs: QuerySet[StatusChange]) -> tuple[tuple[datetime, str], ...]:
        carried = (
            qs.filter(occurred_at__lt=start)
            .order_by("-occurred_at", "-id")
            .values_list("occurred_at", "status")[:1]
        )
        within = qs.filter(occurred_at__gte=start, occurred_at__lt=end).order_by("occurred_at", "id")
        return (*carried, *within.values_list("occurred_at", "status"))

    return StationHistory(
        ports=ports,
        connectivity=tuple(connectivity),
        station_status=timeline(changes.filter(evse_id__isnull=True)),
        port_status={port: timeline(changes.filter(evse_id=port)) for port in ports},
    )


def _by_day(
    values: Iterable[tuple[datetime, Any]], days: Sequence[date], starts: Sequence[datetime]
) -> dict[date, list[Any]]:
    """Groups (at, value) by the day whose window holds `at` (`starts` are the day starts, ascending)."""
    grouped: dict[date, list[Any]] = defaultdict(list)
    for at, value in values:
        index = bisect_left(starts, at + timedelta(microseconds=1)) - 1
        if 0 <= index < len(days):
            grouped[days[index]].append(value)
    return grouped


def _station_days(station: ChargingStation, days: list[date], now: datetime) -> dict[date, dict[str, Any]]:
    """The KPI components of one station for consecutive local days."""
    time_zone = station.site.time_zone if station.site is not None else "UTC"
    currency = station.organisation.currency
    bounds = [day_bounds(day, time_zone) for day in days]
    starts = [b[0] for b in bounds]
    period_start, period_end = bounds[0][0], bounds[-1][1]
    ports = tuple(Evse.objects.filter(station=station).order_by("evse_id").values_list("evse_id", flat=True))
    history = _history_load(station, ports, period_start, min(period_end, now))

    def window(field: str) -> dict[str, datetime]:
        return {f"{field}__gte": period_start, f"{field}__lt": period_end}

    sessions = _by_day(
        ChargingSession.objects.filter(station=station, **window("started_at")).values_list(
            "started_at", "energy_wh"
        ),
        days,
        starts,
    )
    detected = _by_day(
        (
            (i.detected_at, i.detected_at - i.occurred_at)
            for i in Incident.objects.filter(station=station, **window("detected_at"))
        ),
        days,
        starts,
    )
    resolved = _by_day(
        (
            (i.resolved_at, (max(i.resolved_at - i.detected_at, timedelta(0)), bool(i.resolved_remotely)))
            for i in Incident.objects.filter(station=station, **window("resolved_at"))
            if i.resolved_at is not None  # always: the window's filter excludes NULL
        ),
        days,
        starts,
    )
    cdrs = _by_day(
        (
            (c.stopped_at, c)
            for c in ChargeDetailRecord.objects.filter(station=station, **window("stopped_at")).only(
                "stopped_at", "currency", "energy_wh", "subtotal", "energy_cost"
            )
        ),
        days,
        starts,
    )
    own_credits = CdrCredit.objects.filter(cdr__station=station, cdr__currency=currency)
    credits = _by_day(
        own_credits.filter(**window("created_at")).values_list("created_at", "subtotal"), days, starts
    )
    first_credits = _by_day(
        (
            (row["first"], row["cdr_id"])
            for row in own_credits.values("cdr_id")
            .annotate(first=Min("created_at"))
            .filter(first__gte=period_start, first__lt=period_end)
        ),
        days,
        starts,
    )

    result = {}
    for day, (start, end) in zip(days, bounds, strict=True):
        observed, in_service = port_seconds(history, start, min(end, now))
        day_cdrs = cdrs.get(day, [])
        own = [c for c in day_cdrs if c.currency == currency]
        day_resolved = resolved.get(day, [])
        result[day] = {
            "organisation_id": station.organisation_id,
            "site_id": station.site_id,
            "ports": len(ports),
            "observed_s": observed,
            "in_service_s": in_service,
            "sessions": len(sessions.get(day, [])),
            "energy_wh": sum(wh or 0 for wh in sessions.get(day, [])),
            "incidents_detected": len(detected.get(day, [])),
            "detect_s": round(sum(detected.get(day, []), timedelta(0)).total_seconds()),
            "incidents_resolved": len(day_resolved),
            "repair_s": round(sum((r[0] for r in day_resolved), timedelta(0)).total_seconds()),
            "resolved_remotely": sum(1 for r in day_resolved if r[1]),
            "cdrs": len(own),
            "cdr_energy_wh": sum(c.energy_wh for c in own),
            "currency": currency,
            "revenue": sum((c.subtotal for c in own), ZERO) + sum(credits.get(day, []), ZERO),
            "energy_cost": sum((c.energy_cost for c in own if c.energy_cost is not None), ZERO),
            "disputed_sessions": len(first_credits.get(day, [])),
            "other_currency_cdrs": len(day_cdrs) - len(own),
        }
    return result


def _same(row: KpiDay, values: dict[str, Any]) -> bool:
    for field, value in values.items():
        current = getattr(row, field)
        if isinstance(value, Decimal):
            if Decimal(current) != value:
                return False
        elif current != value:
            return False
    return True


def kpi_days_compute(*, station_ids: Iterable[int], days: Iterable[date], now: datetime | None = None) -> int:
    """Computes and upserts the KpiDay rows of these stations and local days; returns the rows written.

    Idempotent: a row whose components did not change is not touched (its `computed_at` stays). Days after
    today (at the station's site) are skipped; today is computed up to now.
    """
    now = now or timezone.now()
    wanted = sorted(set(days))
    written = 0
    stations = ChargingStation.objects.filter(pk__in=list(station_ids)).select_related("site", "organisation")
    for station in stations.order_by("pk"):
        today = local_today(station.site.time_zone if station.site is not None else "UTC", now)
        station_days = [day for day in wanted if day <= today]
        if not station_days:
            continue
        computed: dict[date, dict[str, Any]] = {}
        # Consecutive runs share one load of the history.
        run: list[date] = []
        for day in station_days:
            if run and day != run[-1] + timedelta(days=1):
                computed.update(_station_days(station, run, now))
                run = []
            run.append(day)
        computed.update(_station_days(station, run, now))
        written += _upsert(station, computed, now)
    return written


@transaction.atomic
def _upsert(station: ChargingStation, computed: dict[date, dict[str, Any]], now: datetime) -> int:
    existing = {
        row.day: row
        for row in KpiDay.objects.select_for_update().filter(station=station, day__in=list(computed))
    }
    written = 0
    missing = []
    for day, values in computed.items():
        row = existing.get(day)
        if row is None:
            missing.append(KpiDay(station=station, day=day, computed_at=now, **values))
        elif not _same(row, values):
            KpiDay.objects.filter(pk=row.pk).update(computed_at=now, **values)
            written += 1
    if missing:
        # Another worker may insert the same day meanwhile: the unique (station, day) makes it one row.
        KpiDay.objects.bulk_create(
            missing,
            update_conflicts=True,
            unique_fields=["station", "day"],
            update_fields=[*KPI_FIELDS, "computed_at"],
        )
        written += len(missing)
    return written


def kpi_days_recent_targets() -> list[int]:
    """Every station's pk, in order (the periodic job computes today and yesterday for each)."""
    return list(ChargingStation.objects.order_by("pk").values_list("pk", flat=True))


def kpi_days_compute_recent(*, station_ids: Sequence[int], now: datetime | None = None) -> int:
    """Today and yesterday (local to each station's site) for these stations."""
    now = now or timezone.now()
    written = 0
    stations = ChargingStation.objects.filter(pk__in=list(station_ids)).select_related("site")
    for station in stations.order_by("pk"):
        today = local_today(station.site.time_zone if station.site is not None else "UTC", now)
        written += kpi_days_compute(
            station_ids=[station.pk], days=[today - timedelta(days=1), today], now=now
        )
    return written


# --- summaries --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KpiPoint:
    day: date
    uptime_pct: float | None
    sessions_per_port: float | None
    kwh_per_port: float | None
    revenue: Decimal | None


@dataclass(frozen=True)
class KpiSummary:
    start: date
    end: date
    days: int
    stations: int
    port_days: int
    observed_s: int
    in_service_s: int
    uptime_pct: float | None
    sessions: int
    energy_wh: int
    sessions_per_port_day: float | None
    kwh_per_port_day: float | None
    incidents_detected: int
    detect_s: int
    mttd_s: float | None
    incidents_resolved: int
    repair_s: int
    mttr_s: float | None
    resolved_remotely: int
    remote_resolution_pct: float | None
    cdrs: int
    cdr_energy_wh: int
    currency: str | None
    revenue: Decimal | None
    revenue_per_port_month: Decimal | None
    energy_cost: Decimal | None
    energy_cost_per_kwh: Decimal | None
    disputed_sessions: int
    dispute_rate_pct: float | None
    other_currency_cdrs: int
    computed_at: datetime | None
    series: tuple[KpiPoint, ...]


def _ratio(numerator: Any, denominator: Any, scale: int | Decimal = 1) -> Any:
    if not denominator:
        return None
    return numerator * scale / denominator


def _money(value: Decimal | None, places: str = "0.01") -> Decimal | None:
    return None if value is None else value.quantize(Decimal(places))


def kpi_scope(
    *,
    user: User,
    site_id: int | None = None,
    station_id: int | None = None,
    station_identity: str | None = None,
) -> QuerySet[KpiDay]:
    """The KpiDay rows the user may see, narrowed to a site or station (NotFound if outside the scope)."""
    rows = KpiDay.objects.filter(station_scope_q(user=user, prefix="station__"))
    if station_identity is not None:
        found = ChargingStation.objects.filter(station_scope_q(user=user), identity=station_identity).first()
        if found is None:
            raise NotFound(f"Station {station_identity!r} not found.")
        station_id = found.pk
    if site_id is not None:
        if not Site.objects.filter(site_scope_q(user=user), pk=site_id).exists():
            raise NotFound(f"Site {site_id} not found.")
        rows = rows.filter(station__site_id=site_id)
    if station_id is not None:
        if not ChargingStation.objects.filter(station_scope_q(user=user), pk=station_id).exists():
            raise NotFound(f"Station {station_id} not found.")
        rows = rows.filter(station_id=station_id)
    return rows


def kpi_summary(
    *,
    user: User,
    site: int | None = None,
    station: int | None = None,
    station_identity: str | None = None,
    start: date,
    end: date,
) -> KpiSummary:
    """Every KPI over the local days start..end (inclusive) of what the user may see, and per-day series.
    `site` and `station` are primary keys (the portal's filters); the API names a station by its identity."""
    if end < start:
        raise ValidationFailed("The end date is before the start date.")
    if (end - start).days > 366 * 3:
        raise ValidationFailed("The period is limited to three years.")
    rows = kpi_scope(user=user, site_id=site, station_id=station, station_identity=station_identity).filter(
        day__gte=start, day__lte=end
    )

    total = rows.aggregate(
        **{field: Sum(field) for field in SUMMED_FIELDS},
        stations=Count("station_id", distinct=True),
    )
    t = {field: total[field] or 0 for field in SUMMED_FIELDS}
    currency_list = list(rows.order_by().values_list("currency", flat=True).distinct()[:2])
    # Amounts of different currencies are not added: no money figures then.
    currency = currency_list[0] if len(currency_list) == 1 else None
    money_ok = len(currency_list) <= 1
    revenue = Decimal(t["revenue"]) if money_ok else None
    energy_cost = Decimal(t["energy_cost"]) if money_ok else None
    port_days = t["ports"]

    per_day = (
        rows.values("day")
        .annotate(
            ports=Sum("ports"),
            observed_s=Sum("observed_s"),
            in_service_s=Sum("in_service_s"),
            sessions=Sum("sessions"),
            energy_wh=Sum("energy_wh"),
            revenue=Sum("revenue"),
        )
        .order_by("day")
    )
    series = tuple(
        KpiPoint(
            day=row["day"],
            uptime_pct=_ratio(row["in_service_s"], row["observed_s"], 100),
            sessions_per_port=_ratio(row["sessions"], row["ports"]),
            kwh_per_port=_ratio(row["energy_wh"], row["ports"] * 1000 if row["ports"] else 0),
            revenue=_money(Decimal(row["revenue"])) if money_ok else None,
        )
        for row in per_day
    )
    last_computed = rows.order_by("-computed_at").values_list("computed_at", flat=True).first()
    return KpiSummary(
        start=start,
        end=end,
        days=(end - start).days + 1,
        stations=total["stations"],
        port_days=port_days,
        observed_s=t["observed_s"],
        in_service_s=t["in_service_s"],
        uptime_pct=_ratio(t["in_service_s"], t["observed_s"], 100),
        sessions=t["sessions"],
        energy_wh=t["energy_wh"],
        sessions_per_port_day=_ratio(t["sessions"], port_days),
        kwh_per_port_day=_ratio(t["energy_wh"], port_days * 1000),
        incidents_detected=t["incidents_detected"],
        detect_s=t["detect_s"],
        mttd_s=_ratio(t["detect_s"], t["incidents_detected"]),
        incidents_resolved=t["incidents_resolved"],
        repair_s=t["repair_s"],
        mttr_s=_ratio(t["repair_s"], t["incidents_resolved"]),
        resolved_remotely=t["resolved_remotely"],
        remote_resolution_pct=_ratio(t["resolved_remotely"], t["incidents_resolved"], 100),
        cdrs=t["cdrs"],
        cdr_energy_wh=t["cdr_energy_wh"],
        currency=currency,
        revenue=_money(revenue),
        revenue_per_port_month=_money(_ratio(revenue, port_days, DAYS_PER_MONTH)) if money_ok else None,
        energy_cost=_money(energy_cost),
        energy_cost_per_kwh=(
            _money(_ratio(energy_cost * 1000, Decimal(t["cdr_energy_wh"])), "0.0001")
            if money_ok and energy_cost is not None
            else None
        ),
        disputed_sessions=t["disputed_sessions"],
        dispute_rate_pct=_ratio(t["disputed_sessions"], t["cdrs"], 100),
        other_currency_cdrs=t["other_currency_cdrs"],
        computed_at=last_computed,
        series=series,
    )
