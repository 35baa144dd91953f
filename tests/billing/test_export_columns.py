"""The CDR fields the API and the admin show (one column table with the CSV), and the exact bytes of every export
kind over the cases the ledger of test_exports.py does not have: a 3-decimal currency, half-up rounding of
amounts stored with more decimals, a CDR without a site, port or known time zone, a half-hour zone, a station
without a site, and text that needs quoting."""

from datetime import date

from django.contrib import admin
from django.test import RequestFactory

from billing.api.serializers import CdrDetailOutputSerializer, CdrOutputSerializer
from billing.models import ChargeDetailRecord
from tests.billing.test_exports import completed, export_text, make_cdr, make_credit, utc
from tests.factories import ChargingStationFactory, ConnectorFactory, EvseFactory, SiteFactory

CDR_API = [
    "id",
    "session",
    "organisation",
    "site",
    "station",
    "evse_number",
    "connector_number",
    "id_tag",
    "time_zone",
    "tariff_version",
    "tariff_label",
    "started_at",
    "stopped_at",
    "energy_wh",
    "charging_s",
    "parking_s",
    "currency",
    "tax_rate",
    "flat_amount",
    "energy_amount",
    "time_amount",
    "parking_amount",
    "adjustment_amount",
    "subtotal",
    "tax",
    "total",
    "energy_cost",
    "created_at",
]


def test_the_api_shows_the_cdr_fields_it_always_did_in_their_order():
    assert list(CdrOutputSerializer().fields) == CDR_API
    assert list(CdrDetailOutputSerializer().fields) == [
        *CDR_API,
        "lines",
        "credits",
        "credited_subtotal",
        "credited_total",
        "net_total",
    ]


def test_the_admin_shows_every_cdr_field_and_lists_the_main_ones(world):
    cdr_admin = admin.site._registry[ChargeDetailRecord]
    assert set(cdr_admin.list_display) == {
        "id",
        "stopped_at",
        "station_identity",
        "site",
        "organisation",
        "energy_wh",
        "currency",
        "subtotal",
        "tax",
        "total",
        "tariff_label",
    }
    request = RequestFactory().get("/")
    request.user = world.host_a1
    fields = ["station", "station_identity", *CDR_API[5:]]
    assert list(cdr_admin.get_fields(request)) == ["session", "organisation", "site", *fields]


def edge_ledger(world):
    """Org A: a BHD CDR at a half-hour zone (Asia/Kolkata) with amounts stored with 4 decimals and a credit;
    a CDR without a site, port or known time zone, alone in its month; a session of a station without a
    site; names that need CSV quoting."""
    site = SiteFactory(organisation=world.org_a, name='Kolkata "East", Hub', time_zone="Asia/Kolkata")
    station = ChargingStationFactory(identity="IN-CP1", site=site)
    port = ConnectorFactory(evse=EvseFactory(station=station, evse_id=3), connector_id=2)
    s1 = completed(
        station,
        port,
        tx="tx;1",
        id_tag="TAG\n1",
        started=utc(2025, 3, 14, 18, 29, 59),
        stopped=utc(2025, 3, 14, 19, 0, 1),
        energy_wh=1,
    )
    cdr1 = make_cdr(
        s1,
        created_at=utc(2025, 3, 14, 19, 0, 2),
        currency="BHD",
        tariff_label="BHD, night",
        charging_s="1800.0005",
        parking_s="0.000001",
        tax_rate="0.105",
        flat_amount="0.0005",
        energy_amount="1.2345",
        time_amount="-0.0005",
        subtotal="1.2345",
        tax="0.1296",
        total="1.3641",
        energy_cost="0.0004",
    )
    credit = make_credit(
        cdr1, created_at=utc(2025, 3, 20, 10), subtotal="-0.0005", tax="0", total="-0.0005", reason="a,b"
    )
    bare_station = ChargingStationFactory(identity="NOSITE-1", site=None, organisation=world.org_a)
    bare_port = ConnectorFactory(evse=EvseFactory(station=bare_station, evse_id=1), connector_id=1)
    s2 = completed(
        station,
        port,
        tx="77",
        started=utc(2025, 1, 10, 23),
        stopped=utc(2025, 1, 11, 0, 30),
        energy_wh=999,
    )
    cdr2 = make_cdr(
        s2,
        created_at=utc(2025, 1, 11, 0, 31),
        site=None,
        evse_number=None,
        connector_number=None,
        time_zone="Mars/Olympus",
        subtotal="0.005",
        tax="0.0009",
        total="0.0059",
        energy_cost="0.0051",
    )
    s3 = completed(
        bare_station,
        bare_port,
        tx="78",
        started=utc(2025, 3, 31, 23, 59, 59),
        stopped=utc(2025, 4, 1, 0, 0, 1),
        energy_wh=0,
    )
    return {"cdr1": cdr1.pk, "credit": credit.pk, "cdr2": cdr2.pk, "s1": s1.pk, "s2": s2.pk, "s3": s3.pk}


JAN_TO_APRIL = {"period_from": date(2025, 1, 1), "period_to": date(2025, 4, 1)}


def test_cdrs_edge_cases_are_exact(world):
    k = edge_ledger(world)
    assert export_text("cdrs", world.finance_a, **JAN_TO_APRIL) == (
        "record_type,record_id,cdr_id,session_id,transaction_id,organisation,site,station,evse,connector,"
        "id_token,tariff,time_zone,started_at_local,stopped_at_local,started_at_utc,stopped_at_utc,energy_kwh,"
        "charging_hours,parking_hours,currency,flat_amount,energy_amount,time_amount,parking_amount,"
        "adjustment_amount,subtotal,tax_rate,tax,total,energy_cost,margin,credit_reason,created_at_utc,"
        "payment_status,payment_hold,payment_captured,payment_refunded,payment_unpaid\r\n"
        # Kolkata is UTC+05:30; BHD has 3 decimals: 0.0005 -> 0.001 and -0.0005 -> -0.001 (half up).
        f'cdr,{k["cdr1"]},{k["cdr1"]},{k["s1"]},tx;1,Org A,"Kolkata ""East"", Hub",IN-CP1,3,2,"TAG\n1",'
        '"BHD, night",Asia/Kolkata,2025-03-14 23:59:59,2025-03-15 00:30:01,2025-03-14T18:29:59Z,'
        "2025-03-14T19:00:01Z,0.001,0.500000,0.000000,BHD,0.001,1.235,-0.001,0.000,0.000,1.235,0.1050,0.130,"
        "1.364,0.000,1.234,,2025-03-14T19:00:02Z,,,,,\r\n"
        # No site, no port, a zone zoneinfo does not know (UTC).
        f"cdr,{k['cdr2']},{k['cdr2']},{k['s2']},77,Org A,,IN-CP1,,,TAG-7,,UTC,2025-01-10 23:00:00,"
        "2025-01-11 00:30:00,2025-01-10T23:00:00Z,2025-01-11T00:30:00Z,0.999,0.000000,0.000000,EUR,0.00,0.00,"
        "0.00,0.00,0.00,0.01,0.1900,0.00,0.01,0.01,0.00,,2025-01-11T00:31:00Z,,,,,\r\n"
        f'credit,{k["credit"]},{k["cdr1"]},{k["s1"]},tx;1,Org A,"Kolkata ""East"", Hub",IN-CP1,3,2,"TAG\n1",'
        '"BHD, night",Asia/Kolkata,2025-03-14 23:59:59,2025-03-15 00:30:01,2025-03-14T18:29:59Z,'
        '2025-03-14T19:00:01Z,,,,BHD,,,,,,-0.001,0.1050,0.000,-0.001,,-0.001,"a,b",2025-03-20T10:00:00Z,,,,,\r\n'
    )


def test_sessions_edge_cases_are_exact(world):
    k = edge_ledger(world)
    assert export_text("sessions", world.finance_a, **JAN_TO_APRIL) == (
        "session_id,transaction_id,organisation,site,station,evse,connector,id_token,status,billing_status,"
        "flags,time_zone,started_at_local,stopped_at_local,started_at_utc,stopped_at_utc,energy_kwh,tariff,"
        "currency,flat_amount,energy_amount,time_amount,parking_amount,adjustment_amount,subtotal,tax,total,"
        "credited,net_total,cdr_id,payment_status,payment_hold,payment_captured,payment_refunded,payment_unpaid\r\n"
        f'{k["s1"]},tx;1,Org A,"Kolkata ""East"", Hub",IN-CP1,3,2,"TAG\n1",completed,billed,,Asia/Kolkata,'
        "2025-03-14 23:59:59,2025-03-15 00:30:01,2025-03-14T18:29:59Z,2025-03-14T19:00:01Z,0.001,"
        f'"BHD, night",BHD,0.001,1.235,-0.001,0.000,0.000,1.235,0.130,1.364,-0.001,1.364,{k["cdr1"]},,,,,\r\n'
        # The session's zone is its site's, whatever its CDR says.
        f'{k["s2"]},77,Org A,"Kolkata ""East"", Hub",IN-CP1,3,2,TAG-7,completed,billed,,Asia/Kolkata,'
        "2025-01-11 04:30:00,2025-01-11 06:00:00,2025-01-10T23:00:00Z,2025-01-11T00:30:00Z,0.999,,EUR,0.00,"
        f"0.00,0.00,0.00,0.00,0.01,0.00,0.01,0.00,0.01,{k['cdr2']},,,,,\r\n"
        # A station without a site: UTC, no site name.
        f"{k['s3']},78,Org A,,NOSITE-1,1,1,TAG-8,completed,pending,,UTC,2025-03-31 23:59:59,"
        "2025-04-01 00:00:01,2025-03-31T23:59:59Z,2025-04-01T00:00:01Z,0.000,,,,,,,,,,,,,,,,,,\r\n"
    )


def test_revenue_sites_edge_cases_are_exact(world):
    edge_ledger(world)
    assert export_text("revenue_sites", world.finance_a, **JAN_TO_APRIL) == (
        "month,organisation,site,currency,sessions,energy_kwh,revenue_excl_tax,tax,revenue_incl_tax,"
        "credits_excl_tax,credits_tax,net_excl_tax,energy_cost,margin,energy_cost_per_kwh\r\n"
        "2025-01,Org A,,EUR,1,0.999,0.01,0.00,0.01,0.00,0.00,0.01,0.01,0.00,0.0051\r\n"
        '2025-03,Org A,"Kolkata ""East"", Hub",BHD,1,0.001,1.235,0.130,1.364,-0.001,0.000,1.234,0.000,1.234,'
        "0.4000\r\n"
    )


def test_revenue_ports_edge_cases_are_exact(world):
    edge_ledger(world)
    assert export_text("revenue_ports", world.finance_a, **JAN_TO_APRIL) == (
        "month,organisation,site,station,evse,connector,currency,sessions,energy_kwh,revenue_excl_tax,tax,"
        "revenue_incl_tax,credits_excl_tax,net_excl_tax,energy_cost,margin\r\n"
        "2025-01,Org A,,IN-CP1,,,EUR,1,0.999,0.01,0.00,0.01,0.00,0.01,0.01,0.00\r\n"
        '2025-03,Org A,"Kolkata ""East"", Hub",IN-CP1,3,2,BHD,1,0.001,1.235,0.130,1.364,-0.001,1.234,0.000,'
        "1.234\r\n"
    )


def test_revenue_rows_without_a_site_sort_beside_rows_with_one(world):
    """A CDR without a site and one with a site in the same month and organisation: the site-less row sorts
    first (its name is empty), and neither export fails comparing a missing site with a named one."""
    site = SiteFactory(organisation=world.org_a, name="Depot")
    station = ChargingStationFactory(identity="DE-CP9", site=site)
    port = ConnectorFactory(evse=EvseFactory(station=station, evse_id=1), connector_id=1)
    with_site = completed(
        station, port, tx="91", started=utc(2025, 2, 3, 8), stopped=utc(2025, 2, 3, 9), energy_wh=1000
    )
    make_cdr(with_site, created_at=utc(2025, 2, 3, 9, 1), subtotal="1.00", tax="0.19", total="1.19")
    without_site = completed(
        station, port, tx="92", started=utc(2025, 2, 4, 8), stopped=utc(2025, 2, 4, 9), energy_wh=2000
    )
    make_cdr(
        without_site,
        created_at=utc(2025, 2, 4, 9, 1),
        site=None,
        evse_number=None,
        connector_number=None,
        subtotal="2.00",
        tax="0.38",
        total="2.38",
    )
    february = {"period_from": date(2025, 2, 1), "period_to": date(2025, 3, 1)}
    sites = export_text("revenue_sites", world.finance_a, **february).splitlines()
    assert [line.split(",")[:6] for line in sites[1:]] == [
        ["2025-02", "Org A", "", "EUR", "1", "2.000"],
        ["2025-02", "Org A", "Depot", "EUR", "1", "1.000"],
    ]
    ports = export_text("revenue_ports", world.finance_a, **february).splitlines()
    assert [line.split(",")[:9] for line in ports[1:]] == [
        ["2025-02", "Org A", "", "DE-CP9", "", "", "EUR", "1", "2.000"],
        ["2025-02", "Org A", "Depot", "DE-CP9", "1", "1", "EUR", "1", "1.000"],
    ]
