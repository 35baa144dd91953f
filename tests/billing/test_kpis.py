"""KPI computation on hand-built histories, with exact expected values (docs/kpis.md)."""

from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from io import StringIO
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from billing.models import CdrCredit, ChargeDetailRecord, KpiDay
from billing.services.kpis import (
    StationHistory,
    day_bounds,
    kpi_days_compute,
    kpi_days_compute_recent,
    kpi_summary,
    port_seconds,
)
from billing.tasks import kpis_compute_recent
from cpms.errors import NotFound, ValidationFailed
from stations.models import Incident, StationEvent, StatusChange
from tests.factories import ChargingSessionFactory, ChargingStationFactory, EvseFactory, SiteFactory

BERLIN = ZoneInfo("Europe/Berlin")
DAY = date(2026, 11, 10)  # CET, UTC+1
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
HOUR = 3600


def berlin(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=BERLIN)


def status(station, evse_id, value: str, at: datetime) -> StatusChange:
    return StatusChange.objects.create(
        station=station,
        evse_id=evse_id,
        connector_id=None if evse_id is None else 1,
        status=value,
        occurred_at=at,
        received_at=at,
    )


def connection(station, connected: bool, at: datetime) -> StationEvent:
    return StationEvent.objects.create(
        station=station,
        kind="connected" if connected else "disconnected",
        detail={},
        occurred_at=at,
        received_at=at,
    )


def two_port_station(site, *, identity: str, since: datetime | None = None):
    """A station with EVSEs 1 and 2, connected and Available since `since` (if given)."""
    station = ChargingStationFactory(identity=identity, site=site, organisation=site.organisation)
    EvseFactory(station=station, evse_id=1)
    EvseFactory(station=station, evse_id=2)
    if since is not None:
        connection(station, True, since)
        status(station, 1, "Available", since)
        status(station, 2, "Available", since)
    return station


@contextmanager
def frozen_now(moment: datetime):
    with mock.patch("django.utils.timezone.now", return_value=moment):
        yield


def make_cdr(session, *, subtotal: str, energy_cost: str | None, currency: str = "EUR") -> ChargeDetailRecord:
    station = session.station
    with frozen_now(session.stopped_at):
        return ChargeDetailRecord.objects.create(
            session=session,
            organisation=station.organisation,
            site=station.site,
            station=station,
            station_identity=station.identity,
            time_zone=station.site.time_zone,
            started_at=session.started_at,
            stopped_at=session.stopped_at,
            energy_wh=session.energy_wh,
            charging_s=Decimal(0),
            parking_s=Decimal(0),
            currency=currency,
            tax_rate=Decimal("0.19"),
            flat_amount=Decimal(0),
            energy_amount=Decimal(subtotal),
            time_amount=Decimal(0),
            parking_amount=Decimal(0),
            adjustment_amount=Decimal(0),
            subtotal=Decimal(subtotal),
            tax=(Decimal(subtotal) * Decimal("0.19")).quantize(Decimal("0.01")),
            total=(Decimal(subtotal) * Decimal("1.19")).quantize(Decimal("0.01")),
            energy_cost=None if energy_cost is None else Decimal(energy_cost),
        )


def make_credit(cdr, *, subtotal: str, at: datetime) -> CdrCredit:
    with frozen_now(at):
        return CdrCredit.objects.create(
            cdr=cdr,
            organisation=cdr.organisation,
            currency=cdr.currency,
            subtotal=Decimal(subtotal),
            tax=Decimal(subtotal) * Decimal("0.19"),
            total=Decimal(subtotal) * Decimal("1.19"),
            reason="Customer complaint",
        )


def session(station, *, started: datetime, stopped: datetime, energy_wh: int, tx: str):
    return ChargingSessionFactory(
        station=station,
        transaction_id=tx,
        started_at=started,
        start_received_at=started,
        stopped_at=stopped,
        energy_wh=energy_wh,
        status="completed",
    )


def incident(station, *, occurred, detected, resolved=None, remotely=None, evse_id=1) -> Incident:
    return Incident.objects.create(
        organisation=station.organisation,
        site=station.site,
        station=station,
        evse_id=evse_id,
        kind="fault",
        code="GroundFailure",
        occurred_at=occurred,
        detected_at=detected,
        resolved_at=resolved,
        resolved_remotely=remotely,
    )


def row(station, day: date) -> KpiDay:
    return KpiDay.objects.get(station=station, day=day)


# --- uptime: the pure function ----------------------------------------------------------------------------


def t(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, 5, hour, minute, tzinfo=UTC)


def test_port_seconds_before_any_state_is_not_observed():
    history = StationHistory(ports=(1,), port_status={1: ((t(6), "Available"),)})
    assert port_seconds(history, t(0), t(12)) == (6 * HOUR, 6 * HOUR)


def test_port_seconds_carries_the_state_in_from_before_the_window():
    history = StationHistory(
        ports=(1,), port_status={1: ((t(0) - timedelta(days=3), "Faulted"), (t(4), "Available"))}
    )
    assert port_seconds(history, t(0), t(10)) == (10 * HOUR, 6 * HOUR)


def test_port_seconds_a_disconnected_station_takes_every_port_out_and_a_known_connection_is_observed():
    history = StationHistory(
        ports=(1, 2),
        connectivity=((t(1), True), (t(5), False), (t(6), True)),
        port_status={1: ((t(2), "Charging"),), 2: ((t(3), "Unavailable"), (t(7), "Available"))},
    )
    # Port 1: observed 1..10 (9 h), down 5..6. Port 2: observed 1..10, down 3..7.
    assert port_seconds(history, t(0), t(10)) == (18 * HOUR, 8 * HOUR + 5 * HOUR)


def test_port_seconds_empty_or_reversed_window():
    history = StationHistory(ports=(1,), port_status={1: ((t(0), "Available"),)})
    assert port_seconds(history, t(5), t(5)) == (0, 0)
    assert port_seconds(history, t(6), t(5)) == (0, 0)


def test_day_bounds_dst_day_is_23_hours_in_berlin():
    start, end = day_bounds(date(2026, 3, 29), "Europe/Berlin")
    assert (start, end) == (datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 29, 22, tzinfo=UTC))
    start, end = day_bounds(date(2026, 10, 25), "Europe/Berlin")
    assert end - start == timedelta(hours=25)


# --- uptime: computed rows --------------------------------------------------------------------------------


def test_uptime_two_evses_fault_and_offline(world):
    station = two_port_station(world.site_a1, identity="UP-1", since=berlin(DAY - timedelta(days=1), 12))
    status(station, 1, "Faulted", berlin(DAY, 10))
    status(station, 1, "Available", berlin(DAY, 12, 30))
    connection(station, False, berlin(DAY, 20))
    connection(station, True, berlin(DAY, 21))

    assert kpi_days_compute(station_ids=[station.pk], days=[DAY], now=NOW) == 1

    kpi = row(station, DAY)
    assert (kpi.ports, kpi.observed_s, kpi.in_service_s) == (2, 48 * HOUR, 48 * HOUR - 2.5 * HOUR - 2 * HOUR)
    summary = kpi_summary(user=world.operator_a, start=DAY, end=DAY)
    assert summary.uptime_pct == (48 - 2.5 - 2) / 48 * 100 == 90.625
    assert [(p.day, p.uptime_pct) for p in summary.series] == [(DAY, 90.625)]


def test_uptime_day_starting_mid_outage(world):
    before = DAY - timedelta(days=1)
    station = two_port_station(world.site_a1, identity="UP-2", since=berlin(before, 8))
    status(station, 1, "Faulted", berlin(before, 22))
    status(station, 1, "Available", berlin(DAY, 2))

    kpi_days_compute(station_ids=[station.pk], days=[before, DAY], now=NOW)
    # Observed from 08:00 on the day before: 16 h x 2 ports, of which EVSE 1 is out 22:00-24:00.
    assert (row(station, before).observed_s, row(station, before).in_service_s) == (32 * HOUR, 30 * HOUR)
    assert (row(station, DAY).observed_s, row(station, DAY).in_service_s) == (48 * HOUR, 46 * HOUR)
    # A day computed alone carries the outage in from the day before.
    KpiDay.objects.all().delete()
    kpi_days_compute(station_ids=[station.pk], days=[DAY], now=NOW)
    assert row(station, DAY).in_service_s == 46 * HOUR


def test_uptime_station_level_faulted_takes_every_port_out(world):
    station = two_port_station(world.site_a1, identity="UP-3", since=berlin(DAY - timedelta(days=1), 0))
    status(station, None, "Faulted", berlin(DAY, 6))
    status(station, None, "Available", berlin(DAY, 7, 30))
    # A port's own Available does not end a station-wide fault.
    status(station, 2, "Available", berlin(DAY, 7))

    kpi_days_compute(station_ids=[station.pk], days=[DAY], now=NOW)
    assert (row(station, DAY).observed_s, row(station, DAY).in_service_s) == (48 * HOUR, 45 * HOUR)


def test_uptime_unknown_time_before_the_first_status_is_not_counted(world):
    station = two_port_station(world.site_a1, identity="UP-4")
    status(station, 1, "Available", berlin(DAY, 8))
    status(station, 2, "Unavailable", berlin(DAY, 9))
    status(station, 2, "Available", berlin(DAY, 10))

    kpi_days_compute(station_ids=[station.pk], days=[DAY - timedelta(days=1), DAY], now=NOW)
    assert (row(station, DAY).observed_s, row(station, DAY).in_service_s) == (31 * HOUR, 30 * HOUR)
    assert (
        row(station, DAY - timedelta(days=1)).observed_s,
        row(station, DAY - timedelta(days=1)).in_service_s,
    ) == (
        0,
        0,
    )
    summary = kpi_summary(user=world.operator_a, station=station.pk, start=DAY - timedelta(days=1), end=DAY)
    assert summary.uptime_pct == 3000 / 31
    assert [p.uptime_pct for p in summary.series] == [None, 3000 / 31]


def test_uptime_today_is_clipped_to_now(world):
    station = two_port_station(world.site_a1, identity="UP-5", since=berlin(DAY - timedelta(days=1), 0))
    now = berlin(DAY, 12).astimezone(UTC)
    kpi_days_compute(station_ids=[station.pk], days=[DAY, DAY + timedelta(days=1)], now=now)
    assert (row(station, DAY).observed_s, row(station, DAY).in_service_s) == (24 * HOUR, 24 * HOUR)
    assert not KpiDay.objects.filter(day=DAY + timedelta(days=1)).exists()  # tomorrow is not computed


def test_uptime_dst_day_in_berlin_has_23_hours(world):
    dst = date(2026, 3, 29)
    station = two_port_station(world.site_a1, identity="UP-6", since=berlin(dst - timedelta(days=1), 0))
    status(station, 2, "Faulted", berlin(dst, 1))
    status(station, 2, "Available", berlin(dst, 4))  # 02:00-03:00 does not exist that night: 2 h out
    kpi_days_compute(station_ids=[station.pk], days=[dst], now=NOW)
    assert (row(station, dst).observed_s, row(station, dst).in_service_s) == (46 * HOUR, 44 * HOUR)


def test_station_without_a_site_counts_utc_days(world):
    station = ChargingStationFactory(identity="NOSITE", site=None, organisation=world.org_a)
    EvseFactory(station=station, evse_id=1)
    status(station, 1, "Available", datetime(2026, 11, 9, 23, 0, tzinfo=UTC))
    session(
        station,
        started=datetime(2026, 11, 9, 23, 30, tzinfo=UTC),
        stopped=datetime(2026, 11, 10, 0, 30, tzinfo=UTC),
        energy_wh=1000,
        tx="NS1",
    )
    kpi_days_compute(station_ids=[station.pk], days=[date(2026, 11, 9), DAY], now=NOW)
    assert (row(station, date(2026, 11, 9)).observed_s, row(station, date(2026, 11, 9)).sessions) == (HOUR, 1)
    assert (row(station, DAY).observed_s, row(station, DAY).sessions, row(station, DAY).site_id) == (
        24 * HOUR,
        0,
        None,
    )


# --- incidents ---------------------------------------------------------------------------------------------


def test_mttd_mttr_and_remote_resolution_across_three_incidents_one_open(world):
    station = two_port_station(world.site_a1, identity="INC-1", since=berlin(DAY, 0))
    incident(
        station,
        occurred=berlin(DAY, 10),
        detected=berlin(DAY, 10, 5),
        resolved=berlin(DAY, 11, 5),
        remotely=True,
    )
    incident(
        station,
        occurred=berlin(DAY, 12),
        detected=berlin(DAY, 12, 2),
        resolved=berlin(DAY, 14, 2),
        remotely=False,
        evse_id=2,
    )
    incident(station, occurred=berlin(DAY, 15), detected=berlin(DAY, 15, 10))  # still open
    # Detected the day before, resolved this day: counts for MTTR here, for MTTD the day before.
    incident(
        station,
        occurred=berlin(DAY - timedelta(days=1), 23),
        detected=berlin(DAY - timedelta(days=1), 23, 1),
        resolved=berlin(DAY, 1, 1),
        remotely=True,
        evse_id=0,
    )

    kpi_days_compute(station_ids=[station.pk], days=[DAY], now=NOW)
    kpi = row(station, DAY)
    assert (kpi.incidents_detected, kpi.detect_s) == (3, 300 + 120 + 600)
    assert (kpi.incidents_resolved, kpi.repair_s, kpi.resolved_remotely) == (3, 3600 + 7200 + 7200, 2)

    summary = kpi_summary(user=world.operator_a, start=DAY, end=DAY)
    assert summary.mttd_s == 340
    assert summary.mttr_s == 6000
    assert summary.remote_resolution_pct == 200 / 3


# --- utilisation, revenue, disputes, energy cost -----------------------------------------------------------


@pytest.fixture
def trading(world):
    """Two days of a 2-EVSE Berlin station: sessions (one crossing midnight), CDRs, credits."""
    station = two_port_station(world.site_a1, identity="TR-1", since=berlin(DAY - timedelta(days=1), 0))
    next_day = DAY + timedelta(days=1)
    s1 = session(station, started=berlin(DAY, 10), stopped=berlin(DAY, 11), energy_wh=5000, tx="T1")
    s2 = session(station, started=berlin(DAY, 23, 30), stopped=berlin(next_day, 1), energy_wh=10000, tx="T2")
    s3 = session(station, started=berlin(next_day, 12), stopped=berlin(next_day, 13), energy_wh=6000, tx="T3")
    s4 = session(station, started=berlin(DAY, 15), stopped=berlin(DAY, 16), energy_wh=2000, tx="T4")
    cdr1 = make_cdr(s1, subtotal="10.00", energy_cost="1.50")
    cdr2 = make_cdr(s2, subtotal="5.00", energy_cost="3.00")  # stopped on the next day
    make_cdr(s3, subtotal="4.00", energy_cost="1.80")
    make_cdr(s4, subtotal="9.99", energy_cost="0.50", currency="USD")  # skipped, counted
    make_credit(cdr1, subtotal="-2.00", at=berlin(next_day, 9))
    make_credit(cdr1, subtotal="-1.00", at=berlin(next_day, 10))  # not a second dispute
    make_credit(cdr2, subtotal="-0.50", at=berlin(next_day + timedelta(days=1), 9))
    kpi_days_compute(station_ids=[station.pk], days=[DAY, next_day], now=NOW)
    return station


def test_sessions_count_on_their_start_day(world, trading):
    first, second = row(trading, DAY), row(trading, DAY + timedelta(days=1))
    assert (first.sessions, first.energy_wh) == (3, 17000)
    assert (second.sessions, second.energy_wh) == (1, 6000)


def test_cdrs_revenue_and_disputes_per_day(world, trading):
    first, second = row(trading, DAY), row(trading, DAY + timedelta(days=1))
    assert (first.cdrs, first.cdr_energy_wh, first.revenue, first.energy_cost) == (
        1,
        5000,
        Decimal("10.00"),
        Decimal("1.50"),
    )
    assert (first.other_currency_cdrs, first.disputed_sessions, first.currency) == (1, 0, "EUR")
    # CDR 2 and 3 stopped that day; the credits of CDR 1 (-3.00) were issued that day.
    assert (second.cdrs, second.cdr_energy_wh, second.revenue, second.energy_cost) == (
        2,
        16000,
        Decimal("6.00"),
        Decimal("4.80"),
    )
    assert (second.other_currency_cdrs, second.disputed_sessions) == (0, 1)


def test_summary_of_two_days(world, trading):
    summary = kpi_summary(user=world.operator_a, start=DAY, end=DAY + timedelta(days=1))
    assert (summary.days, summary.stations, summary.port_days) == (2, 1, 4)
    assert summary.sessions_per_port_day == 4 / 4
    assert summary.kwh_per_port_day == 23 / 4 == 5.75
    assert (summary.revenue, summary.currency) == (Decimal("16.00"), "EUR")
    assert summary.revenue_per_port_month == Decimal("121.75")  # 16.00 / 4 port-days x 30.4375
    assert summary.energy_cost == Decimal("6.30")
    assert summary.energy_cost_per_kwh == Decimal("0.3000")  # 6.30 / 21 kWh of the EUR CDRs
    assert summary.dispute_rate_pct == 100 / 3
    assert summary.other_currency_cdrs == 1
    assert [(p.day, p.sessions_per_port, p.kwh_per_port, p.revenue) for p in summary.series] == [
        (DAY, 1.5, 8.5, Decimal("10.00")),
        (DAY + timedelta(days=1), 0.5, 3.0, Decimal("6.00")),
    ]


def test_recompute_is_idempotent(world, trading):
    before = list(KpiDay.objects.order_by("day").values())
    assert (
        kpi_days_compute(
            station_ids=[trading.pk], days=[DAY, DAY + timedelta(days=1)], now=NOW + timedelta(hours=1)
        )
        == 0
    )
    assert list(KpiDay.objects.order_by("day").values()) == before
    # A late credit changes the day it was issued on, and only that day.
    cdr = ChargeDetailRecord.objects.get(session__transaction_id="T3")
    make_credit(cdr, subtotal="-4.00", at=berlin(DAY + timedelta(days=1), 20))
    later = NOW + timedelta(hours=2)
    assert kpi_days_compute(station_ids=[trading.pk], days=[DAY, DAY + timedelta(days=1)], now=later) == 1
    assert row(trading, DAY + timedelta(days=1)).revenue == Decimal("2.00")
    assert row(trading, DAY + timedelta(days=1)).computed_at == later
    assert row(trading, DAY).computed_at == NOW


def test_recent_computes_today_and_yesterday_local(world):
    station = two_port_station(world.site_a1, identity="REC-1", since=berlin(DAY - timedelta(days=3), 0))
    now = berlin(DAY, 0, 30).astimezone(UTC)  # still the day before in UTC
    assert kpi_days_compute_recent(station_ids=[station.pk], now=now) == 2
    assert sorted(KpiDay.objects.filter(station=station).values_list("day", flat=True)) == [
        DAY - timedelta(days=1),
        DAY,
    ]
    assert row(station, DAY).observed_s == 2 * 30 * 60


# --- scope ----------------------------------------------------------------------------------------------------


def test_summary_is_scoped(world):
    a1 = two_port_station(world.site_a1, identity="SC-A1", since=berlin(DAY, 0))
    a2 = two_port_station(world.site_a2, identity="SC-A2", since=berlin(DAY, 0))
    b1 = two_port_station(world.site_b1, identity="SC-B1", since=berlin(DAY, 0))
    session(a1, started=berlin(DAY, 10), stopped=berlin(DAY, 11), energy_wh=1000, tx="A1")
    session(a2, started=berlin(DAY, 10), stopped=berlin(DAY, 11), energy_wh=1000, tx="A2")
    session(b1, started=berlin(DAY, 10), stopped=berlin(DAY, 11), energy_wh=1000, tx="B1")
    kpi_days_compute(station_ids=[a1.pk, a2.pk, b1.pk], days=[DAY], now=NOW)

    assert kpi_summary(user=world.operator_a, start=DAY, end=DAY).sessions == 2
    assert kpi_summary(user=world.finance_a, start=DAY, end=DAY).sessions == 2
    assert kpi_summary(user=world.host_a1, start=DAY, end=DAY).sessions == 1
    assert kpi_summary(user=world.operator_b, start=DAY, end=DAY).sessions == 1
    assert kpi_summary(user=world.operator_a, site=world.site_a2.pk, start=DAY, end=DAY).stations == 1
    for user, kwargs in (
        (world.operator_b, {"station": a1.pk}),
        (world.operator_b, {"site": world.site_a1.pk}),
        (world.host_a1, {"site": world.site_a2.pk}),
        (world.host_a1, {"station": a2.pk}),
    ):
        with pytest.raises(NotFound):
            kpi_summary(user=user, start=DAY, end=DAY, **kwargs)


def test_summary_without_rows_has_no_ratios(world):
    summary = kpi_summary(user=world.operator_a, start=DAY, end=DAY)
    assert (summary.uptime_pct, summary.mttr_s, summary.mttd_s, summary.sessions_per_port_day) == (None,) * 4
    assert (summary.dispute_rate_pct, summary.energy_cost_per_kwh, summary.revenue_per_port_month) == (
        None,
    ) * 3
    assert (summary.revenue, summary.computed_at, summary.series) == (Decimal("0.00"), None, ())


def test_summary_refuses_a_reversed_period(world):
    with pytest.raises(ValidationFailed):
        kpi_summary(user=world.operator_a, start=DAY, end=DAY - timedelta(days=1))


def test_other_site_time_zone(world):
    """A New York station's day runs from 05:00 to 05:00 UTC (EST)."""
    site = SiteFactory(organisation=world.org_a, time_zone="America/New_York")
    station = two_port_station(site, identity="NY-1")
    status(station, 1, "Available", datetime(2026, 11, 10, 4, 0, tzinfo=UTC))
    kpi_days_compute(station_ids=[station.pk], days=[date(2026, 11, 9), DAY], now=NOW)
    assert row(station, date(2026, 11, 9)).observed_s == HOUR
    assert row(station, DAY).observed_s == 24 * HOUR


# --- the periodic job and the backfill command ---------------------------------------------------------------


def test_periodic_job_computes_today_and_yesterday_of_every_station_once(world):
    assert kpis_compute_recent() == 6  # 3 standing stations x (yesterday, today)
    assert KpiDay.objects.count() == 6
    assert kpis_compute_recent() == 0  # nothing changed: nothing written


def test_backfill_command(world):
    station = two_port_station(world.site_a1, identity="BF-1", since=berlin(DAY - timedelta(days=5), 0))
    out = StringIO()
    call_command(
        "kpis_compute",
        "--start",
        "2026-11-08",
        "--end",
        "2026-11-10",
        "--station",
        str(station.pk),
        stdout=out,
    )
    assert out.getvalue().splitlines() == [
        "1/1 stations, 3 day rows written",
        "Done: 3 day(s) x 1 station(s), 3 rows written.",
    ]
    assert [(r.day, r.observed_s) for r in KpiDay.objects.order_by("day")] == [
        (date(2026, 11, 8), 48 * HOUR),
        (date(2026, 11, 9), 48 * HOUR),
        (DAY, 48 * HOUR),
    ]
    with pytest.raises(CommandError):
        call_command("kpis_compute", "--start", "2026-11-10", "--end", "2026-11-08")
    with pytest.raises(CommandError):
        call_command("kpis_compute", "--start", "10.11.2026", "--end", "2026-11-08")
