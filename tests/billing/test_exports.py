"""Finance CSV exports (billing/services/exports/): the exact files, the local-date period, CSV injection,
scope, and export jobs run by the task function."""

import csv
import io
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from unittest import mock

import pytest
from django.db import OperationalError

from accounts.services import membership_set
from billing.enums import ExportKind, ExportStatus
from billing.models import CdrCredit, ChargeDetailRecord, ExportJob
from billing.services.exports import columns, jobs, readers
from billing.services.exports import csv as export_csv
from billing.services.exports.csv import ExportReader, export_write
from billing.services.exports.filters import ExportFilters, export_filters_validate
from billing.services.exports.jobs import export_job_create, export_job_path
from billing.services.exports.scope import ExportScope, export_scope_access
from billing.tasks_exports import export_job_run
from cpms.errors import NotFound, PermissionDenied, ValidationFailed
from tests.factories import (
    ChargingSessionFactory,
    ChargingStationFactory,
    ConnectorFactory,
    EvseFactory,
    SiteFactory,
    UserFactory,
)

MARCH = {"period_from": date(2025, 3, 1), "period_to": date(2025, 4, 1)}


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@contextmanager
def frozen_now(moment: datetime):
    """created_at is auto_now_add, and billing rows can never be updated afterwards: pin the clock."""
    with mock.patch("django.utils.timezone.now", return_value=moment):
        yield


def make_cdr(session, *, created_at: datetime, currency: str = "EUR", **values) -> ChargeDetailRecord:
    """A CDR with every field filled from the session and `values` (amounts as strings)."""
    station = session.station
    fields = {
        "session": session,
        "organisation": station.organisation,
        "site": station.site,
        "station": station,
        "station_identity": station.identity,
        "evse_number": session.evse.evse_id if session.evse else None,
        "connector_number": session.connector.connector_id if session.connector else None,
        "id_tag": session.id_tag,
        "time_zone": station.site.time_zone,
        "tariff_label": "",
        "started_at": session.started_at,
        "stopped_at": session.stopped_at,
        "energy_wh": session.energy_wh,
        "charging_s": "0",
        "parking_s": "0",
        "currency": currency,
        "tax_rate": "0.19",
        "flat_amount": "0",
        "energy_amount": "0",
        "time_amount": "0",
        "parking_amount": "0",
        "adjustment_amount": "0",
        "subtotal": "0",
        "tax": "0",
        "total": "0",
        "energy_cost": None,
    }
    fields.update(values)
    for name, value in fields.items():
        if isinstance(value, str) and name.endswith(("_amount", "_s", "subtotal", "tax", "total", "_cost")):
            fields[name] = Decimal(value)
    fields["tax_rate"] = Decimal(fields["tax_rate"])
    with frozen_now(created_at):
        return ChargeDetailRecord.objects.create(**fields)


def make_credit(cdr, *, created_at: datetime, subtotal: str, tax: str, total: str, reason: str) -> CdrCredit:
    with frozen_now(created_at):
        return CdrCredit.objects.create(
            cdr=cdr,
            organisation=cdr.organisation,
            currency=cdr.currency,
            subtotal=Decimal(subtotal),
            tax=Decimal(tax),
            total=Decimal(total),
            reason=reason,
        )


def completed(station, connector, *, tx: str, started: datetime, stopped: datetime, energy_wh: int, **kw):
    return ChargingSessionFactory(
        station=station,
        evse=connector.evse,
        connector=connector,
        transaction_id=tx,
        id_tag=kw.pop("id_tag", f"TAG-{tx[-1]}"),
        started_at=started,
        stopped_at=stopped,
        energy_wh=energy_wh,
        status="completed",
        **kw,
    )


@dataclass
class Ledger:
    site_utc: object
    station_utc: object
    sessions: dict  # s0..s7
    cdrs: dict  # cdr0..cdr4
    credits: dict  # c0, c1
    cdr_b: object


def ledger_make(world) -> Ledger:
    """Org A: site A1 (Europe/Berlin, station A1-CP1, EVSE 1 connector 1) and site "A3 Depot" (UTC, station
    A3-CP1, EVSE 2 connector 3). Billed sessions s0 (February), s1 (across the Berlin DST change, with a
    credit on 31 March 23:59:59 Berlin time), s2 (no energy cost), s3 (JPY), s4 (31 March 22:00 UTC: April
    in Berlin); unbilled s5 (active), s6 (held for review), s7 (completed, not billed yet); a credit in
    March on s0's February CDR. Org B: one billed session with a credit in March."""
    a1_port = ConnectorFactory(evse=EvseFactory(station=world.station_a1, evse_id=1), connector_id=1)
    site_utc = SiteFactory(organisation=world.org_a, name="A3 Depot", time_zone="UTC")
    station_utc = ChargingStationFactory(identity="A3-CP1", site=site_utc)
    utc_port = ConnectorFactory(evse=EvseFactory(station=station_utc, evse_id=2), connector_id=3)
    s = {}
    s["s0"] = completed(
        station_utc,
        utc_port,
        tx="900",
        started=utc(2025, 2, 20, 10),
        stopped=utc(2025, 2, 20, 11),
        energy_wh=5000,
    )
    s["s1"] = completed(
        world.station_a1,
        a1_port,
        tx="901",
        id_tag="04A1B2C3",
        started=utc(2025, 3, 30, 0, 15),
        stopped=utc(2025, 3, 30, 1, 30),
        energy_wh=12345,
    )
    s["s2"] = completed(
        station_utc,
        utc_port,
        tx="902",
        started=utc(2025, 3, 10, 9),
        stopped=utc(2025, 3, 10, 10, 0, 30),
        energy_wh=7000,
    )
    s["s3"] = completed(
        station_utc,
        utc_port,
        tx="903",
        started=utc(2025, 3, 31, 23),
        stopped=utc(2025, 3, 31, 23, 50),
        energy_wh=3700,
    )
    s["s4"] = completed(
        world.station_a1,
        a1_port,
        tx="904",
        started=utc(2025, 3, 31, 22),
        stopped=utc(2025, 3, 31, 22, 30),
        energy_wh=1000,
    )
    s["s5"] = ChargingSessionFactory(
        station=world.station_a1,
        evse=a1_port.evse,
        connector=a1_port,
        transaction_id="905",
        id_tag="TAG-5",
        started_at=utc(2025, 3, 15, 12),
    )
    s["s6"] = completed(
        station_utc,
        utc_port,
        tx="906",
        started=utc(2025, 3, 20, 8),
        stopped=utc(2025, 3, 20, 9),
        energy_wh=1000,
        held_for_review=True,
        flags=["meter_backwards", "clock_skew"],
    )
    s["s7"] = completed(
        world.station_a1,
        a1_port,
        tx="907",
        started=utc(2025, 3, 25, 12),
        stopped=utc(2025, 3, 25, 13),
        energy_wh=2000,
    )
    c = {}
    c["cdr0"] = make_cdr(
        s["s0"],
        created_at=utc(2025, 2, 20, 11, 0, 5),
        tariff_label="AC 0.40/kWh v1",
        charging_s="3600",
        energy_amount="2.00",
        subtotal="2.00",
        tax="0.38",
        total="2.38",
        energy_cost="1.00",
    )
    c["cdr1"] = make_cdr(
        s["s1"],
        created_at=utc(2025, 3, 30, 1, 30, 2),
        tariff_label="Standard v2",
        charging_s="3900.5",
        parking_s="599.5",
        flat_amount="1.00",
        energy_amount="4.32",
        time_amount="0.50",
        subtotal="5.82",
        tax="1.11",
        total="6.93",
        energy_cost="2.47",
    )
    c["cdr2"] = make_cdr(
        s["s2"],
        created_at=utc(2025, 3, 10, 10, 0, 31),
        tariff_label="Min 3 EUR v1",
        charging_s="3630",
        energy_amount="2.80",
        adjustment_amount="0.20",
        subtotal="3.00",
        tax="0.57",
        total="3.57",
    )
    c["cdr3"] = make_cdr(
        s["s3"],
        created_at=utc(2025, 3, 31, 23, 50, 1),
        currency="JPY",
        tariff_label="JP v1",
        charging_s="3000",
        tax_rate="0.10",
        flat_amount="100",
        energy_amount="1850",
        subtotal="1950",
        tax="195",
        total="2145",
        energy_cost="900",
    )
    c["cdr4"] = make_cdr(
        s["s4"],
        created_at=utc(2025, 3, 31, 22, 30, 1),
        tariff_label="Standard v2",
        energy_amount="0.35",
        subtotal="0.35",
        tax="0.07",
        total="0.42",
        energy_cost="0.20",
    )
    credits = {
        "c0": make_credit(
            c["cdr0"],
            created_at=utc(2025, 3, 5, 8),
            subtotal="-2.00",
            tax="-0.38",
            total="-2.38",
            reason="Refund",
        ),
        "c1": make_credit(
            c["cdr1"],
            created_at=utc(2025, 3, 31, 21, 59, 59),
            subtotal="-5.00",
            tax="-0.95",
            total="-5.95",
            reason="Goodwill, charger fault",
        ),
    }
    b_port = ConnectorFactory(evse=EvseFactory(station=world.station_b1, evse_id=1), connector_id=1)
    s_b = completed(
        world.station_b1,
        b_port,
        tx="990",
        started=utc(2025, 3, 12, 9),
        stopped=utc(2025, 3, 12, 10),
        energy_wh=4000,
    )
    cdr_b = make_cdr(
        s_b, created_at=utc(2025, 3, 12, 10), subtotal="9.00", tax="1.71", total="10.71", energy_cost="1.00"
    )
    make_credit(cdr_b, created_at=utc(2025, 3, 13), subtotal="-1.00", tax="-0.19", total="-1.19", reason="B")
    return Ledger(
        site_utc=site_utc, station_utc=station_utc, sessions=s, cdrs=c, credits=credits, cdr_b=cdr_b
    )


@pytest.fixture
def ledger(world) -> Ledger:
    return ledger_make(world)


def lines(*rows: str) -> str:
    return "".join(row + "\r\n" for row in rows)


CDR_HEADER = (
    "record_type,record_id,cdr_id,session_id,transaction_id,organisation,site,station,evse,connector,id_token,"
    "tariff,time_zone,started_at_local,stopped_at_local,started_at_utc,stopped_at_utc,energy_kwh,"
    "charging_hours,parking_hours,currency,flat_amount,energy_amount,time_amount,parking_amount,"
    "adjustment_amount,subtotal,tax_rate,tax,total,energy_cost,margin,credit_reason,created_at_utc"
    ",payment_status,payment_hold,payment_captured,payment_refunded,payment_unpaid"
)


def expected_cdrs_march(ledger: Ledger) -> str:
    """The CDRs stopped in March (local dates) in id order, then the credits issued in March."""
    s, c, k = ledger.sessions, ledger.cdrs, ledger.credits
    cdr0, cdr1, cdr2, cdr3 = c["cdr0"].pk, c["cdr1"].pk, c["cdr2"].pk, c["cdr3"].pk
    return lines(
        CDR_HEADER,
        # Berlin: 00:15 UTC is 01:15 CET, 01:30 UTC is 03:30 CEST (the clocks moved at 01:00 UTC).
        f"cdr,{cdr1},{cdr1},{s['s1'].pk},901,Org A,A1,A1-CP1,1,1,04A1B2C3,Standard v2,Europe/Berlin,"
        "2025-03-30 01:15:00,2025-03-30 03:30:00,2025-03-30T00:15:00Z,2025-03-30T01:30:00Z,12.345,1.083472,"
        "0.166528,EUR,1.00,4.32,0.50,0.00,0.00,5.82,0.1900,1.11,6.93,2.47,3.35,,2025-03-30T01:30:02Z,,,,,",
        f"cdr,{cdr2},{cdr2},{s['s2'].pk},902,Org A,A3 Depot,A3-CP1,2,3,TAG-2,Min 3 EUR v1,UTC,"
        "2025-03-10 09:00:00,2025-03-10 10:00:30,2025-03-10T09:00:00Z,2025-03-10T10:00:30Z,7.000,1.008333,"
        "0.000000,EUR,0.00,2.80,0.00,0.00,0.20,3.00,0.1900,0.57,3.57,,,,2025-03-10T10:00:31Z,,,,,",
        f"cdr,{cdr3},{cdr3},{s['s3'].pk},903,Org A,A3 Depot,A3-CP1,2,3,TAG-3,JP v1,UTC,"
        "2025-03-31 23:00:00,2025-03-31 23:50:00,2025-03-31T23:00:00Z,2025-03-31T23:50:00Z,3.700,0.833333,"
        "0.000000,JPY,100,1850,0,0,0,1950,0.1000,195,2145,900,1050,,2025-03-31T23:50:01Z,,,,,",
        f"credit,{k['c0'].pk},{cdr0},{s['s0'].pk},900,Org A,A3 Depot,A3-CP1,2,3,TAG-0,AC 0.40/kWh v1,UTC,"
        "2025-02-20 10:00:00,2025-02-20 11:00:00,2025-02-20T10:00:00Z,2025-02-20T11:00:00Z,,,,EUR,,,,,,"
        "-2.00,0.1900,-0.38,-2.38,,-2.00,Refund,2025-03-05T08:00:00Z,,,,,",
        f"credit,{k['c1'].pk},{cdr1},{s['s1'].pk},901,Org A,A1,A1-CP1,1,1,04A1B2C3,Standard v2,Europe/Berlin,"
        "2025-03-30 01:15:00,2025-03-30 03:30:00,2025-03-30T00:15:00Z,2025-03-30T01:30:00Z,,,,EUR,,,,,,"
        '-5.00,0.1900,-0.95,-5.95,,-5.00,"Goodwill, charger fault",2025-03-31T21:59:59Z,,,,,',
    )


SESSION_HEADER = (
    "session_id,transaction_id,organisation,site,station,evse,connector,id_token,status,billing_status,flags,"
    "time_zone,started_at_local,stopped_at_local,started_at_utc,stopped_at_utc,energy_kwh,tariff,currency,"
    "flat_amount,energy_amount,time_amount,parking_amount,adjustment_amount,subtotal,tax,total,credited,"
    "net_total,cdr_id,payment_status,payment_hold,payment_captured,payment_refunded,payment_unpaid"
)


def expected_sessions_march(ledger: Ledger) -> str:
    s, c = ledger.sessions, ledger.cdrs
    return lines(
        SESSION_HEADER,
        f"{s['s1'].pk},901,Org A,A1,A1-CP1,1,1,04A1B2C3,completed,billed,,Europe/Berlin,2025-03-30 01:15:00,"
        "2025-03-30 03:30:00,2025-03-30T00:15:00Z,2025-03-30T01:30:00Z,12.345,Standard v2,EUR,1.00,4.32,0.50,"
        f"0.00,0.00,5.82,1.11,6.93,-5.95,0.98,{c['cdr1'].pk},,,,,",
        f"{s['s2'].pk},902,Org A,A3 Depot,A3-CP1,2,3,TAG-2,completed,billed,,UTC,2025-03-10 09:00:00,"
        "2025-03-10 10:00:30,2025-03-10T09:00:00Z,2025-03-10T10:00:30Z,7.000,Min 3 EUR v1,EUR,0.00,2.80,0.00,"
        f"0.00,0.20,3.00,0.57,3.57,0.00,3.57,{c['cdr2'].pk},,,,,",
        f"{s['s3'].pk},903,Org A,A3 Depot,A3-CP1,2,3,TAG-3,completed,billed,,UTC,2025-03-31 23:00:00,"
        "2025-03-31 23:50:00,2025-03-31T23:00:00Z,2025-03-31T23:50:00Z,3.700,JP v1,JPY,100,1850,0,0,0,1950,195,"
        f"2145,0,2145,{c['cdr3'].pk},,,,,",
        f"{s['s5'].pk},905,Org A,A1,A1-CP1,1,1,TAG-5,active,active,,Europe/Berlin,2025-03-15 13:00:00,,"
        "2025-03-15T12:00:00Z,,,,,,,,,,,,,,,,,,,,",
        f"{s['s6'].pk},906,Org A,A3 Depot,A3-CP1,2,3,TAG-6,completed,held,meter_backwards;clock_skew,UTC,"
        "2025-03-20 08:00:00,2025-03-20 09:00:00,2025-03-20T08:00:00Z,2025-03-20T09:00:00Z,1.000,,,,,,,,,,,,,,,,,,",
        f"{s['s7'].pk},907,Org A,A1,A1-CP1,1,1,TAG-7,completed,pending,,Europe/Berlin,2025-03-25 13:00:00,"
        "2025-03-25 14:00:00,2025-03-25T12:00:00Z,2025-03-25T13:00:00Z,2.000,,,,,,,,,,,,,,,,,,",
    )


REVENUE_SITES_HEADER = (
    "month,organisation,site,currency,sessions,energy_kwh,revenue_excl_tax,tax,revenue_incl_tax,"
    "credits_excl_tax,credits_tax,net_excl_tax,energy_cost,margin,energy_cost_per_kwh"
)
REVENUE_PORTS_HEADER = (
    "month,organisation,site,station,evse,connector,currency,sessions,energy_kwh,revenue_excl_tax,tax,"
    "revenue_incl_tax,credits_excl_tax,net_excl_tax,energy_cost,margin"
)


def expected_revenue_sites_feb_to_april() -> str:
    return lines(
        REVENUE_SITES_HEADER,
        "2025-02,Org A,A3 Depot,EUR,1,5.000,2.00,0.38,2.38,0.00,0.00,2.00,1.00,1.00,0.2000",
        # 2.47 EUR for 12.345 kWh: 0.200081 per kWh.
        "2025-03,Org A,A1,EUR,1,12.345,5.82,1.11,6.93,-5.00,-0.95,0.82,2.47,-1.65,0.2001",
        # CDR2 has no energy cost: cost and margin unknown; the credit is on February's CDR.
        "2025-03,Org A,A3 Depot,EUR,1,7.000,3.00,0.57,3.57,-2.00,-0.38,1.00,,,",
        "2025-03,Org A,A3 Depot,JPY,1,3.700,1950,195,2145,0,0,1950,900,1050,243.2432",
        "2025-04,Org A,A1,EUR,1,1.000,0.35,0.07,0.42,0.00,0.00,0.35,0.20,0.15,0.2000",
    )


def expected_revenue_ports_march() -> str:
    return lines(
        REVENUE_PORTS_HEADER,
        "2025-03,Org A,A1,A1-CP1,1,1,EUR,1,12.345,5.82,1.11,6.93,-5.00,0.82,2.47,-1.65",
        "2025-03,Org A,A3 Depot,A3-CP1,2,3,EUR,1,7.000,3.00,0.57,3.57,-2.00,1.00,,",
        "2025-03,Org A,A3 Depot,A3-CP1,2,3,JPY,1,3.700,1950,195,2145,0,1950,900,1050",
    )


def export_text(kind: str, user, **filters) -> str:
    """The CSV as the API and the jobs make it, through the same reader."""
    export_filters = ExportFilters(**filters)
    scope = export_scope_access(user=user, filters=export_filters)
    out = io.BytesIO()
    export_write(reader=ExportReader(kind=kind, filters=export_filters, scope=scope), out=out)
    return out.getvalue().decode()


# --- the files -----------------------------------------------------------------------------------


def test_cdrs_export_is_exact(world, ledger):
    assert export_text("cdrs", world.finance_a, **MARCH) == expected_cdrs_march(ledger)


def test_sessions_export_is_exact(world, ledger):
    assert export_text("sessions", world.finance_a, **MARCH) == expected_sessions_march(ledger)


def test_revenue_per_site_keeps_months_and_currencies_apart(world, ledger):
    text = export_text(
        "revenue_sites", world.finance_a, period_from=date(2025, 2, 1), period_to=date(2025, 5, 1)
    )
    assert text == expected_revenue_sites_feb_to_april()


def test_revenue_per_port_is_exact(world, ledger):
    assert export_text("revenue_ports", world.finance_a, **MARCH) == expected_revenue_ports_march()


@pytest.mark.parametrize("kind", ExportKind.values)
def test_an_empty_period_gives_the_header_only(world, ledger, kind):
    text = export_text(kind, world.finance_a, period_from=date(2024, 1, 1), period_to=date(2024, 2, 1))
    assert text == ",".join(columns.HEADERS[kind]) + "\r\n"


@pytest.mark.parametrize("kind", ExportKind.values)
def test_small_chunks_give_the_same_file(world, ledger, kind):
    """Keyset pagination: chunks of 1 row (and chunks whose rows all fall outside the period) change
    nothing."""
    filters = ExportFilters(period_from=date(2025, 2, 1), period_to=date(2025, 5, 1))
    scope = export_scope_access(user=world.finance_a, filters=filters)
    whole, chunked = io.BytesIO(), io.BytesIO()
    export_write(reader=ExportReader(kind=kind, filters=filters, scope=scope), out=whole)
    export_write(reader=ExportReader(kind=kind, filters=filters, scope=scope, chunk_rows=1), out=chunked)
    assert chunked.getvalue() == whole.getvalue()
    assert whole.getvalue().count(b"\r\n") > 1


@pytest.mark.parametrize(
    ("kind", "records"),
    [("cdrs", 5), ("sessions", 6), ("revenue_sites", 5), ("revenue_ports", 5)],
)
def test_count_is_exact_before_reading(world, ledger, kind, records):
    filters = ExportFilters(**MARCH)
    reader = ExportReader(
        kind=kind, filters=filters, scope=export_scope_access(user=world.finance_a, filters=filters)
    )
    assert reader.count() == records
    export_write(reader=reader, out=io.BytesIO())
    assert reader.records == records


def test_a_chunk_read_on_a_broken_connection_is_read_again(world, ledger, monkeypatch):
    """A pooled connection cut while idle fails its first query; the same chunk is read again."""
    fetch, calls = readers._Scan.fetch, []

    def cut_once(self, limit):
        calls.append(limit)
        if len(calls) == 2:
            raise OperationalError("server closed the connection unexpectedly")
        return fetch(self, limit)

    monkeypatch.setattr(readers._Scan, "fetch", cut_once)
    closed = mock.Mock()
    monkeypatch.setattr(export_csv, "close_old_connections", closed)
    assert export_text("cdrs", world.finance_a, **MARCH) == expected_cdrs_march(ledger)
    closed.assert_called_once_with()


def test_an_export_gives_up_when_every_connection_fails(world, monkeypatch):
    def cut(self, limit):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(readers._Scan, "fetch", cut)
    closed = mock.Mock()
    monkeypatch.setattr(export_csv, "close_old_connections", closed)
    with pytest.raises(OperationalError):
        export_text("cdrs", world.finance_a, **MARCH)
    assert closed.call_count == export_csv._read_attempts() - 1 >= 1


# --- the period ----------------------------------------------------------------------------------


def test_a_local_date_decides_the_period_at_each_site(world):
    """23:30 UTC on 31 January is 00:30 on 1 February in Berlin, and still January at a UTC site."""
    a1_port = ConnectorFactory(evse=EvseFactory(station=world.station_a1, evse_id=1), connector_id=1)
    site_utc = SiteFactory(organisation=world.org_a, name="A3 Depot", time_zone="UTC")
    utc_port = ConnectorFactory(
        evse=EvseFactory(station=ChargingStationFactory(identity="A3-CP1", site=site_utc), evse_id=1)
    )
    moment = utc(2025, 1, 31, 23, 30)
    berlin = make_cdr(
        completed(
            world.station_a1, a1_port, tx="1", started=utc(2025, 1, 31, 22), stopped=moment, energy_wh=1
        ),
        created_at=moment,
    )
    at_utc = make_cdr(
        completed(
            utc_port.evse.station, utc_port, tx="2", started=utc(2025, 1, 31, 22), stopped=moment, energy_wh=1
        ),
        created_at=moment,
    )

    def cdr_ids(start: date, end: date) -> list[int]:
        text = export_text("cdrs", world.finance_a, period_from=start, period_to=end)
        return [int(row[1]) for row in list(csv.reader(io.StringIO(text)))[1:]]

    assert cdr_ids(date(2025, 2, 1), date(2025, 3, 1)) == [berlin.pk]
    assert cdr_ids(date(2025, 1, 1), date(2025, 2, 1)) == [at_utc.pk]
    assert cdr_ids(date(2025, 1, 31), date(2025, 2, 1)) == [at_utc.pk]
    assert cdr_ids(date(2025, 2, 1), date(2025, 2, 2)) == [berlin.pk]


def test_datetimes_are_exact_instants(world, ledger):
    text = export_text(
        "cdrs",
        world.finance_a,
        period_from=utc(2025, 3, 30, 1, 30),
        period_to=utc(2025, 3, 30, 1, 30, 1),
    )
    assert [row[:2] for row in csv.reader(io.StringIO(text))][1:] == [["cdr", str(ledger.cdrs["cdr1"].pk)]]


@pytest.mark.parametrize(
    ("start", "end", "streaming", "message"),
    [
        (date(2025, 3, 2), date(2025, 3, 1), False, "'from' must be before 'to' ('to' is exclusive)."),
        (date(2025, 3, 1), date(2025, 3, 1), False, "'from' must be before 'to' ('to' is exclusive)."),
        (
            date(2025, 3, 1),
            utc(2025, 4, 1),
            False,
            "Give 'from' and 'to' both as dates or both as datetimes.",
        ),
        (
            date(2024, 1, 1),
            date(2025, 2, 5),
            True,
            "The period spans more than 400 days: create an export job (POST /api/v1/exports/) for longer "
            "periods.",
        ),
        (date(1899, 12, 31), date(2025, 1, 1), False, "'from' must lie between 1900-01-01 and 3000-01-01."),
    ],
)
def test_bad_periods_are_refused(start, end, streaming, message):
    with pytest.raises(ValidationFailed) as refused:
        export_filters_validate(filters=ExportFilters(period_from=start, period_to=end), streaming=streaming)
    assert refused.value.message == message


def test_400_days_stream_and_longer_periods_need_a_job():
    filters = ExportFilters(period_from=date(2024, 1, 1), period_to=date(2025, 2, 4))
    assert export_filters_validate(filters=filters, streaming=True) is filters
    longer = ExportFilters(period_from=date(2020, 1, 1), period_to=date(2025, 1, 1))
    assert export_filters_validate(filters=longer, streaming=False) is longer


# --- CSV injection -------------------------------------------------------------------------------


def test_text_cells_cannot_become_formulas_but_negative_amounts_stay_numbers(world):
    site = SiteFactory(organisation=world.org_a, name="@site", time_zone="UTC")
    station = ChargingStationFactory(identity='=HYPERLINK("http://evil.example","x")', site=site)
    port = ConnectorFactory(evse=EvseFactory(station=station, evse_id=1), connector_id=1)
    session = completed(
        station,
        port,
        tx="-1",
        id_tag="+1",
        started=utc(2025, 3, 3, 9),
        stopped=utc(2025, 3, 3, 10),
        energy_wh=1000,
        flags=["-x", "y"],
    )
    cdr = make_cdr(
        session,
        created_at=utc(2025, 3, 3, 10),
        tariff_label="\tx",
        subtotal="1.00",
        tax="0.19",
        total="1.19",
    )
    make_credit(cdr, created_at=utc(2025, 3, 4), subtotal="-1.00", tax="-0.19", total="-1.19", reason="\rx")
    make_credit(cdr, created_at=utc(2025, 3, 5), subtotal="-0.01", tax="0", total="-0.01", reason="=1+1")
    make_credit(cdr, created_at=utc(2025, 3, 6), subtotal="-0.01", tax="0", total="-0.01", reason="a-b")

    cdr_rows = list(csv.reader(io.StringIO(export_text("cdrs", world.finance_a, **MARCH))))
    columns = cdr_rows[0]
    rows = [dict(zip(columns, row, strict=True)) for row in cdr_rows[1:]]
    first = rows[0]
    assert (first["transaction_id"], first["site"], first["station"], first["id_token"], first["tariff"]) == (
        "'-1",
        "'@site",
        '\'=HYPERLINK("http://evil.example","x")',
        "'+1",
        "'\tx",
    )
    assert [
        (r["record_type"], r["credit_reason"], r["subtotal"], r["tax"], r["total"], r["margin"]) for r in rows
    ] == [
        ("cdr", "", "1.00", "0.19", "1.19", ""),
        ("credit", "'\rx", "-1.00", "-0.19", "-1.19", "-1.00"),
        ("credit", "'=1+1", "-0.01", "0.00", "-0.01", "-0.01"),
        ("credit", "a-b", "-0.01", "0.00", "-0.01", "-0.01"),
    ]
    session_rows = list(csv.reader(io.StringIO(export_text("sessions", world.finance_a, **MARCH))))
    session_row = dict(zip(session_rows[0], session_rows[1], strict=True))
    assert (session_row["flags"], session_row["credited"], session_row["net_total"]) == (
        "'-x;y",
        "-1.21",
        "-0.02",
    )
    # The raw file: the quote sits inside the CSV field, and a CR inside a field is quoted.
    raw = export_text("cdrs", world.finance_a, **MARCH)
    assert ",'@site," in raw
    assert ',"\'\rx",' in raw


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        # PostgreSQL refuses NUL in text; SQLite stores it, and a NUL must not hide a formula.
        ("\x00=1+1", "'=1+1"),
        ("a\x00b", "ab"),
        ("@x", "'@x"),
        (" =x", " =x"),
        ("", ""),
        (None, ""),
    ],
)
def test_text_cells_lose_nul_bytes_before_the_formula_check(value, cell):
    assert columns._text(value) == cell


# --- scope ---------------------------------------------------------------------------------------


def test_finance_of_another_organisation_never_sees_a_row_of_org_a(world, ledger):
    finance_b = UserFactory(username="finance_b")
    membership_set(user=finance_b, organisation=world.org_b, role="finance")
    text = export_text("cdrs", finance_b, **MARCH)
    rows = list(csv.reader(io.StringIO(text)))[1:]
    assert [(row[0], row[5]) for row in rows] == [("cdr", "Org B"), ("credit", "Org B")]
    for kind in ("sessions", "revenue_sites", "revenue_ports"):
        assert "Org A" not in export_text(kind, finance_b, **MARCH)
    with pytest.raises(NotFound):
        export_scope_access(user=finance_b, filters=ExportFilters(**MARCH, organisation_id=world.org_a.pk))
    with pytest.raises(NotFound):
        export_scope_access(user=finance_b, filters=ExportFilters(**MARCH, site_ids=(world.site_a1.pk,)))


@pytest.mark.parametrize("role", ["operator_staff", "support"])
def test_roles_without_the_export_right_are_refused(world, role):
    user = UserFactory(username=role)
    membership_set(user=user, organisation=world.org_a, role=role)
    with pytest.raises(PermissionDenied):
        export_scope_access(user=user, filters=ExportFilters(**MARCH))
    with pytest.raises(PermissionDenied):
        export_scope_access(user=user, filters=ExportFilters(**MARCH, organisation_id=world.org_a.pk))


def test_scope_narrows_to_the_organisation_and_sites_asked(world):
    assert export_scope_access(user=world.finance_a, filters=ExportFilters(**MARCH)) == ExportScope(
        organisation_ids=(world.org_a.pk,)
    )
    assert export_scope_access(
        user=world.superuser, filters=ExportFilters(**MARCH, site_ids=(world.site_b1.pk, world.site_b1.pk))
    ) == ExportScope(
        organisation_ids=tuple(sorted((world.org_a.pk, world.org_b.pk))), site_ids=(world.site_b1.pk,)
    )
    with pytest.raises(ValidationFailed) as refused:
        export_scope_access(
            user=world.superuser,
            filters=ExportFilters(**MARCH, organisation_id=world.org_a.pk, site_ids=(world.site_b1.pk,)),
        )
    assert refused.value.message == f"Site {world.site_b1.pk} is not in organisation {world.org_a.pk}."


def test_a_site_filter_limits_every_kind(world, ledger):
    text = export_text("cdrs", world.finance_a, **MARCH, site_ids=(ledger.site_utc.pk,))
    assert {row[6] for row in list(csv.reader(io.StringIO(text)))[1:]} == {"A3 Depot"}
    text = export_text("sessions", world.finance_a, **MARCH, site_ids=(world.site_a1.pk,))
    assert [row[1] for row in list(csv.reader(io.StringIO(text)))[1:]] == ["901", "905", "907"]


# --- jobs ----------------------------------------------------------------------------------------


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def job_for(user, kind="cdrs", **filters) -> ExportJob:
    with mock.patch("billing.tasks_exports.export_job_run.delay"):
        return export_job_create(user=user, kind=kind, filters=ExportFilters(**(filters or MARCH)))


def test_job_creation_stores_the_scope_and_queues_the_task_on_commit(
    world, django_capture_on_commit_callbacks
):
    with (
        mock.patch("billing.tasks_exports.export_job_run.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        job = export_job_create(
            user=world.finance_a,
            kind="sessions",
            filters=ExportFilters(**MARCH, site_ids=(world.site_a1.pk,)),
        )
    delay.assert_called_once_with(job.pk)
    job.refresh_from_db()
    assert (job.kind, job.status, job.filters, job.organisation_ids, job.requested_by) == (
        "sessions",
        "queued",
        {"from": "2025-03-01", "to": "2025-04-01", "organisation": None, "site": [world.site_a1.pk]},
        [world.org_a.pk],
        world.finance_a,
    )


def test_a_refused_job_is_not_created(world):
    with pytest.raises(PermissionDenied):
        job_for(world.host_a1)
    with pytest.raises(NotFound):
        job_for(world.finance_a, **MARCH, organisation_id=world.org_b.pk)
    assert ExportJob.objects.count() == 0


def test_job_writes_the_same_file_as_the_stream_and_reports_progress(world, ledger, media):
    job = job_for(world.finance_a)
    assert export_job_run(job.pk) == {"job": job.pk, "status": "done", "rows": 5}
    job.refresh_from_db()
    assert (job.status, job.rows_done, job.rows_total, job.file_name, job.error) == (
        ExportStatus.DONE,
        5,
        5,
        f"exports/job-{job.pk}.csv",
        "",
    )
    assert job.started_at <= job.finished_at
    path = export_job_path(job_id=job.pk)
    assert path == media / "exports" / f"job-{job.pk}.csv"
    assert path.read_bytes().decode() == expected_cdrs_march(ledger)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_rerun_of_a_done_job_changes_nothing(world, ledger, media):
    job = job_for(world.finance_a)
    export_job_run(job.pk)
    path = export_job_path(job_id=job.pk)
    before = ExportJob.objects.filter(pk=job.pk).values().get()
    os.utime(path, ns=(1, 1))  # a rewrite would move the time again
    assert export_job_run(job.pk) == {"job": job.pk, "status": "done", "rows": 5}
    assert ExportJob.objects.filter(pk=job.pk).values().get() == before
    assert path.stat().st_mtime_ns == 1


def test_a_job_left_running_by_a_dead_worker_is_run_again_cleanly(world, ledger, media):
    job = job_for(world.finance_a, kind="revenue_ports")
    path = export_job_path(job_id=job.pk)
    path.parent.mkdir(parents=True)
    path.write_text("half a file")
    (path.parent / f".job-{job.pk}-dead.part").write_text("half")
    ExportJob.objects.filter(pk=job.pk).update(status="running", started_at=utc(2025, 4, 1), rows_done=3)
    assert export_job_run(job.pk) == {"job": job.pk, "status": "done", "rows": 5}
    assert path.read_bytes().decode() == expected_revenue_ports_march()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_a_run_that_lost_its_claim_stops_without_touching_the_job(world, ledger, media, monkeypatch):
    job = job_for(world.finance_a)
    later = utc(2030, 1, 1)
    count = ExportReader.count

    def claimed_meanwhile(self):
        ExportJob.objects.filter(pk=job.pk).update(started_at=later)  # a redelivered task took it over
        return count(self)

    monkeypatch.setattr(ExportReader, "count", claimed_meanwhile)
    export_job_run(job.pk)
    job.refresh_from_db()
    assert (job.status, job.started_at, job.rows_total, job.file_name) == ("running", later, None, "")
    assert list((media / "exports").iterdir()) == []


def test_a_failing_job_ends_failed_and_leaves_no_file(world, ledger, media, monkeypatch):
    job = job_for(world.finance_a)

    def broken(self):
        raise RuntimeError("database went away")

    monkeypatch.setattr(ExportReader, "read", broken)
    assert export_job_run(job.pk) == {"job": job.pk, "status": "failed", "rows": 0}
    job.refresh_from_db()
    assert (job.status, job.error, job.file_name) == ("failed", "Internal error; see the worker log.", "")
    assert job.finished_at is not None
    assert list((media / "exports").iterdir()) == []
    assert export_job_run(job.pk)["status"] == "failed"  # failed is final: a new job is the retry


def test_progress_is_written_every_5000_records(world, ledger, media, monkeypatch):
    monkeypatch.setattr(jobs, "PROGRESS_EVERY", 2)
    job = job_for(world.finance_a, kind="sessions")
    seen = []
    update = jobs._job_update

    def recording(**kwargs):
        seen.append({k: v for k, v in kwargs.items() if k in ("rows_done", "rows_total", "status")})
        return update(**kwargs)

    monkeypatch.setattr(jobs, "_job_update", recording)
    monkeypatch.setattr(readers, "CHUNK_ROWS", 1)
    export_job_run(job.pk)
    assert seen == [
        {"rows_total": 6},
        {"rows_done": 2},
        {"rows_done": 4},
        {"rows_done": 6},
        {"rows_done": 6},
        {"status": "done", "rows_done": 6, "rows_total": 6},
    ]
