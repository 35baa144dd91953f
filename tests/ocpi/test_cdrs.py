"""OCPI CDRs, Sender (cpms/ocpi/services/cdrs.py): the CDR of a roaming session billed by billing's own
service, pushed once after the session's last update, its totals equal to our CDR's to the cent; credit CDRs;
the GET list scoped to the caller and paginated. Shapes are checked field by field against OCPI 2.2.1
mod_cdrs 4.1."""

import json
from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from django.test import Client

from billing.models import ChargeDetailRecord
from billing.services.cdrs import cdr_credit_create, session_bill
from cpms.ocpi import client
from cpms.ocpi.enums import Role
from cpms.ocpi.models import OcpiOutboxItem, OcpiSession
from cpms.ocpi.services.cdrs import cdrs_push_pending
from cpms.ocpi.services.outbox import outbox_deliver
from cpms.ocpi.services.sessions import sessions_push_changes
from sessions.models import MeterValue
from tests.ocpi.conftest import OcpiCaller, partner_registered
from tests.ocpi.test_sessions import (
    active_session,
    energy_tariff,
    fmt,
    quarter_hour,
    reading,
    roaming_token,
    stop,
)
from tests.ocpi_parties.checks import object_problems
from tests.ocpi_parties.emsp import Emsp
from tests.ocpi_parties.platform import VERSION_PREFIX

pytestmark = pytest.mark.django_db


def _body(response):
    return orjson.loads(response.content)


def decimals(body) -> dict:
    """The body as a receiver that reads numbers as decimals sees it."""
    return json.loads(json.dumps(body), parse_float=Decimal)


@pytest.fixture
def hub(roaming):
    partner, token = partner_registered(
        roaming.party_a, name="hub", country_code="NL", party_id="HUB", role=Role.HUB
    )
    return partner, OcpiCaller(token, Client())


def push_sweep() -> None:
    """The sessions' and CDRs' part of cpms.ocpi.tasks.push_sweep, in its order (the other modules' sweeps
    would queue their own pushes to the same partners)."""
    sessions_push_changes()
    cdrs_push_pending()


@pytest.fixture
def start():
    return quarter_hour(3)


def billed_session(station, token, *, start, parked_minutes: int = 0):
    """A roaming session: 1 000 Wh at the start, 6 000 after 30 min, 11 000 after 60 min, then parked
    `parked_minutes`; stopped and billed by billing's session_bill."""
    session = active_session(station, token, started_at=start)
    reading(session, at=start + timedelta(minutes=30), wh=6_000)
    reading(session, at=start + timedelta(minutes=60), wh=11_000)
    stop(session, at=start + timedelta(minutes=60 + parked_minutes), wh=11_000)
    result = session_bill(session_id=session.pk)
    assert result.outcome == "billed"
    return session, result.cdr


@pytest.fixture
def placed(world):
    site = world.site_a1
    site.address, site.city, site.postal_code, site.country = "Damrak 1", "Amsterdam", "1012 LG", "NL"
    site.latitude, site.longitude = Decimal("52.376000"), Decimal("4.897000")
    site.save()
    world.station_a1.meter_serial_number = "MTR-1"
    world.station_a1.save()
    return world


def test_the_cdr_of_a_billed_roaming_session_is_posted_once_after_the_sessions_updates(
    roaming, placed, start
):
    world = placed
    tariff = energy_tariff(world.org_a)
    token = roaming_token(roaming.partner_a, uid="UID-1")
    session, cdr = billed_session(world.station_a1, token, start=start, parked_minutes=15)
    # By hand: FLAT 1.00 + 10 kWh x 0.30 = 4.00 excl. VAT; 19 % = 0.76; 4.76 incl. (no parking price).
    assert (cdr.subtotal, cdr.total) == (Decimal("4.00"), Decimal("4.76"))

    push_sweep()

    items = list(OcpiOutboxItem.objects.filter(partner=roaming.partner_a).order_by("id"))
    assert [(i.module, i.method, i.object_key) for i in items] == [
        ("sessions", "PUT", f"session:{session.pk}"),
        ("cdrs", "POST", f"session:{session.pk}"),
    ]
    post = items[1]
    assert (post.path, post.url, post.to_country_code, post.to_party_id) == ("", "", "DE", "EMS")
    evse = session.evse
    tariffs = post.body.pop("tariffs")
    assert post.body == {
        "country_code": "NL",
        "party_id": "AAA",
        "id": str(cdr.pk),
        "start_date_time": fmt(start),
        "end_date_time": fmt(start + timedelta(minutes=75)),
        "session_id": str(session.pk),
        "cdr_token": {
            "country_code": "DE",
            "party_id": "EMS",
            "uid": "UID-1",
            "type": "RFID",
            "contract_id": "DE-EMS-CUID-1",
        },
        "auth_method": "WHITELIST",
        "cdr_location": {
            "id": str(world.site_a1.pk),
            "name": "A1",
            "address": "Damrak 1",
            "city": "Amsterdam",
            "postal_code": "1012 LG",
            "country": "NLD",
            "coordinates": {"latitude": "52.376000", "longitude": "4.897000"},
            "evse_uid": str(evse.pk),
            "evse_id": f"NL*AAA*E{world.station_a1.pk}*1",
            "connector_id": "1",
            "connector_standard": "IEC_62196_T2_COMBO",
            "connector_format": "CABLE",
            "connector_power_type": "DC",
        },
        "meter_id": "MTR-1",
        "currency": "EUR",
        # Quarter-hour periods (5 kWh per half hour at constant power), then a quarter hour parked.
        "charging_periods": [
            {
                "start_date_time": fmt(start + timedelta(minutes=minutes)),
                "dimensions": [{"type": "ENERGY", "volume": 2.5}, {"type": "TIME", "volume": 0.25}],
                "tariff_id": str(tariff.pk),
            }
            for minutes in (0, 15, 30, 45)
        ]
        + [
            {
                "start_date_time": fmt(start + timedelta(minutes=60)),
                "dimensions": [{"type": "ENERGY", "volume": 0.0}, {"type": "PARKING_TIME", "volume": 0.25}],
                "tariff_id": str(tariff.pk),
            },
        ],
        "total_cost": {"excl_vat": 4.0, "incl_vat": 4.76},
        "total_fixed_cost": {"excl_vat": 1.0, "incl_vat": 1.19},
        "total_energy": 10.0,
        "total_energy_cost": {"excl_vat": 3.0, "incl_vat": 3.57},
        "total_time": 1.25,
        "total_parking_time": 0.25,
        "last_updated": fmt(cdr.created_at),
    }
    assert [(t["id"], t["currency"], len(t["elements"])) for t in tariffs] == [(str(tariff.pk), "EUR", 2)]
    # And as the spec-written eMSP of tests/ocpi_parties reads it.
    assert object_problems("CDR", {**post.body, "tariffs": tariffs}) == []
    # The totals as a receiver reads them: our CDR's Decimals exactly.
    total = decimals(post.body)["total_cost"]
    assert (total["excl_vat"], total["incl_vat"]) == (cdr.subtotal, cdr.total)
    assert OcpiSession.objects.get(session=session).cdr_pushed_at is not None

    # Posted once.
    assert cdrs_push_pending() == 0
    push_sweep()
    assert OcpiOutboxItem.objects.filter(partner=roaming.partner_a).count() == 2


def test_a_session_billed_before_the_sweep_saw_it_is_put_completed_before_its_cdr(roaming, world, start):
    energy_tariff(world.org_a)
    _, cdr = billed_session(world.station_a1, roaming_token(roaming.partner_a, uid="UID-1"), start=start)

    assert cdrs_push_pending() == 2

    put, post = OcpiOutboxItem.objects.order_by("id")
    assert (put.method, put.body["status"], put.body["total_cost"]) == (
        "PUT",
        "COMPLETED",
        {"excl_vat": 4.0, "incl_vat": 4.76},
    )
    assert (post.method, post.body["id"]) == ("POST", str(cdr.pk))
    # A site without a position: the required coordinates are 0, 0 (cdr_location).
    assert post.body["cdr_location"]["coordinates"] == {"latitude": "0.000000", "longitude": "0.000000"}
    assert sessions_push_changes() == 0


def test_a_session_pushed_while_active_gets_its_final_cost_before_the_cdr(roaming, world, start):
    energy_tariff(world.org_a)
    token = roaming_token(roaming.partner_a, uid="UID-1")
    session = active_session(world.station_a1, token, started_at=start)
    reading(session, at=start + timedelta(minutes=30), wh=6_000)
    assert sessions_push_changes() == 1  # 5 kWh, 2.98 so far
    reading(session, at=start + timedelta(minutes=60), wh=11_000)
    stop(session, at=start + timedelta(minutes=60), wh=11_000)
    session_bill(session_id=session.pk)

    assert cdrs_push_pending() == 2

    patch, post = OcpiOutboxItem.objects.order_by("id")[1:]
    assert (patch.method, patch.body["status"], patch.body["total_cost"]) == (
        "PATCH",
        "COMPLETED",
        {"excl_vat": 4.0, "incl_vat": 4.76},
    )
    assert post.method == "POST"


def test_a_credit_is_pushed_as_a_credit_cdr_once(roaming, placed, start):
    world = placed
    energy_tariff(world.org_a)
    session, cdr = billed_session(
        world.station_a1, roaming_token(roaming.partner_a, uid="UID-1"), start=start
    )
    push_sweep()
    credit = cdr_credit_create(cdr=cdr, user=None, reason="Connector fault", subtotal=Decimal("1.00"))
    # By hand: 1.00 excl. VAT credited, VAT 0.19, 1.19 incl.
    assert (credit.subtotal, credit.total) == (Decimal("-1.00"), Decimal("-1.19"))

    assert cdrs_push_pending() == 1
    assert cdrs_push_pending() == 0

    original, credited = OcpiOutboxItem.objects.filter(module="cdrs").order_by("id")
    assert (credited.method, credited.object_key) == ("POST", f"session:{session.pk}")
    expected = {
        **original.body,
        "id": f"{cdr.pk}-C{credit.pk}",
        "total_cost": {"excl_vat": -1.0, "incl_vat": -1.19},
        "remark": "Connector fault",
        "credit": True,
        "credit_reference_id": str(cdr.pk),
        "last_updated": fmt(credit.created_at),
    }
    assert credited.body == expected
    assert object_problems("CDR", credited.body) == []
    total = decimals(credited.body)["total_cost"]
    assert (total["excl_vat"], total["incl_vat"]) == (credit.subtotal, credit.total)


def test_get_lists_the_callers_cdrs_and_credits_only_by_pages(roaming, world, start):
    energy_tariff(world.org_a)
    token = roaming_token(roaming.partner_a, uid="UID-1")
    _, first = billed_session(world.station_a1, token, start=start)
    _, second = billed_session(world.station_a2, token, start=start + timedelta(minutes=5))
    billed_session(
        world.station_a1,
        roaming_token(roaming.partner_a2, uid="UID-2", country_code="FR", party_id="OTH"),
        start=start + timedelta(minutes=10),
    )
    billed_session(world.station_b1, roaming_token(roaming.partner_b, uid="UID-1"), start=start)
    credit = cdr_credit_create(cdr=first, user=None, reason="Goodwill")
    push_sweep()

    page_one = roaming.caller_a.get("/ocpi/2.2.1/cdrs?limit=2")
    page_two = roaming.caller_a.get("/ocpi/2.2.1/cdrs?limit=2&offset=2")

    assert (page_one.status_code, page_one["X-Total-Count"], page_one["X-Limit"]) == (200, "3", "2")
    assert page_one["Link"] == '<http://testserver/ocpi/2.2.1/cdrs?limit=2&offset=2>; rel="next"'
    assert "Link" not in page_two
    listed = _body(page_one)["data"] + _body(page_two)["data"]
    assert [item["id"] for item in listed] == [str(first.pk), str(second.pk), f"{first.pk}-C{credit.pk}"]
    # Served as pushed (the same object, built from the same immutable records).
    pushed = {item.body["id"]: item.body for item in OcpiOutboxItem.objects.filter(module="cdrs")}
    assert listed == [pushed[item["id"]] for item in listed]
    # Fully credited: the credit CDR nets the CDR to zero.
    assert (decimals(listed[2])["total_cost"]["excl_vat"], decimals(listed[2])["total_cost"]["incl_vat"]) == (
        -first.subtotal,
        -first.total,
    )

    others = _body(roaming.caller_a2.get("/ocpi/2.2.1/cdrs"))["data"]
    assert [item["cdr_token"]["uid"] for item in others] == ["UID-2"]
    org_b = _body(roaming.caller_b.get("/ocpi/2.2.1/cdrs"))["data"]
    assert [(item["party_id"], item["cdr_token"]["uid"]) for item in org_b] == [("BBB", "UID-1")]
    assert ChargeDetailRecord.objects.count() == 4

    # last_updated = creation; date_from inclusive, date_to exclusive (fmt drops the microseconds).
    since = fmt(first.created_at)
    assert len(_body(roaming.caller_a.get(f"/ocpi/2.2.1/cdrs?date_from={since}"))["data"]) == 3
    assert _body(roaming.caller_a.get(f"/ocpi/2.2.1/cdrs?date_to={since}"))["data"] == []


def test_through_a_hub_only_the_cdrs_of_the_party_it_speaks_for(roaming, world, start, hub):
    partner, caller = hub
    energy_tariff(world.org_a)
    _, ems = billed_session(world.station_a1, roaming_token(partner, uid="UID-1"), start=start)
    _, oth = billed_session(
        world.station_a2,
        roaming_token(partner, uid="UID-2", country_code="FR", party_id="OTH"),
        start=start + timedelta(minutes=5),
    )
    credit = cdr_credit_create(cdr=oth, user=None, reason="Goodwill")
    push_sweep()
    posts = OcpiOutboxItem.objects.filter(partner=partner, module="cdrs").order_by("id")
    assert [(item.body["id"], item.to_country_code, item.to_party_id) for item in posts] == [
        (str(ems.pk), "DE", "EMS"),
        (str(oth.pk), "FR", "OTH"),
        (f"{oth.pk}-C{credit.pk}", "FR", "OTH"),
    ]

    def listed(country_code, party_id):
        headers = {"OCPI-from-country-code": country_code, "OCPI-from-party-id": party_id}
        return [item["id"] for item in _body(caller.get("/ocpi/2.2.1/cdrs", **headers))["data"]]

    assert listed("DE", "EMS") == [str(ems.pk)]
    assert listed("FR", "OTH") == [str(oth.pk), f"{oth.pk}-C{credit.pk}"]


def test_a_cdr_sweep_with_nothing_pending_is_two_queries(roaming, world, start, django_assert_num_queries):
    energy_tariff(world.org_a)
    _, cdr = billed_session(world.station_a1, roaming_token(roaming.partner_a, uid="UID-1"), start=start)
    cdr_credit_create(cdr=cdr, user=None, reason="Goodwill", subtotal=Decimal("0.50"))
    push_sweep()

    with django_assert_num_queries(2):  # CDRs not pushed yet; credits without their credit CDR's POST
        assert cdrs_push_pending() == 0


def test_a_reading_that_came_after_billing_does_not_change_the_cdrs_periods(roaming, world, start):
    tariff = energy_tariff(world.org_a)
    session, _ = billed_session(world.station_a1, roaming_token(roaming.partner_a, uid="UID-1"), start=start)
    # A late reading that contradicts the others (the register above the stop reading): the usage can no
    # longer be rebuilt; the CDR stays as billed, and its one period carries the CDR's own figures.
    MeterValue.objects.create(
        station=world.station_a1,
        session=session,
        timestamp=start + timedelta(minutes=45),
        value=Decimal(12_000),
        unit="Wh",
        received_at=start + timedelta(hours=2),
    )
    assert cdrs_push_pending() == 2

    post = OcpiOutboxItem.objects.get(module="cdrs")
    assert post.body["charging_periods"] == [
        {
            "start_date_time": fmt(start),
            "dimensions": [{"type": "ENERGY", "volume": 10.0}, {"type": "TIME", "volume": 1.0}],
            "tariff_id": str(tariff.pk),
        }
    ]


@pytest.fixture
def live_emsp(roaming):
    """The spec-written test eMSP (tests/ocpi_parties) listening on HTTP, and a partner of org A pointing at
    it. The credentials exchange needs our server on HTTP (the e2e tests do it): here the eMSP is given the
    connection it would have after registering, so that our outbox delivers to it for real."""
    emsp = Emsp(country_code="DE", party_id="EMS").start()
    partner, _ = partner_registered(roaming.party_a, name="emsp-live", base_url=emsp.url(VERSION_PREFIX))
    connection = emsp._new_connection(client.outgoing_token(partner), is_a=False)
    connection.registered = True
    connection.roles = [{"role": "CPO", "country_code": "NL", "party_id": "AAA", "business_details": {}}]
    yield emsp, partner
    emsp.close()


def test_the_partner_receives_the_session_and_its_cdr_as_we_hold_them(live_emsp, placed, start):
    """Delivered over HTTP to the eMSP written from the spec: its copy of the session (the PUT, then PATCHes
    merged, periods appended) is our Session object, and it holds the CDR with our total."""
    emsp, partner = live_emsp
    world = placed
    energy_tariff(world.org_a)
    session = active_session(world.station_a1, roaming_token(partner, uid="UID-9"), started_at=start)
    for minutes, wh in ((20, 4_000), (40, 8_000), (60, 11_000)):
        reading(session, at=start + timedelta(minutes=minutes), wh=wh)
        push_sweep()
        assert outbox_deliver(partner_id=partner.pk).delivered == 1
    stop(session, at=start + timedelta(minutes=70), wh=11_000)
    cdr = session_bill(session_id=session.pk).cdr
    push_sweep()
    assert outbox_deliver(partner_id=partner.pk).delivered == 2  # the end (PATCH), then the CDR (POST)

    assert emsp.problems == []
    ours = OcpiSession.objects.get(session=session).pushed
    assert emsp.sessions[("NL", "AAA", str(session.pk))] == ours
    assert [p["start_date_time"] for p in ours["charging_periods"]] == [
        fmt(start + timedelta(minutes=minutes)) for minutes in (0, 15, 30, 45, 60)
    ]
    received = emsp.cdrs[("NL", "AAA", str(cdr.pk))]
    total = decimals(received)["total_cost"]
    # By hand: FLAT 1.00 + 10 kWh x 0.30 = 4.00 excl. VAT; 4.76 incl.
    assert (
        (total["excl_vat"], total["incl_vat"])
        == (Decimal("4.00"), Decimal("4.76"))
        == (cdr.subtotal, cdr.total)
    )
