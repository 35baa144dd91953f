"""OCPI 2.2.1 Tariffs as Sender (cpms/ocpi/services/tariffs.py): the Tariff object against the spec's field
names and types (11.3.1, 11.4), which tariffs a partner sees, pagination, and the push sweep and sync now."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from django.utils import timezone

from billing.models import Tariff, TariffVersion
from billing.services.tariffs import (
    TariffVersionInput,
    tariff_assign,
    tariff_create,
    tariff_unassign,
    tariff_version_create,
)
from cpms.ocpi.models import OcpiLocation, OcpiOutboxItem, OcpiPartner
from cpms.ocpi.protocol import format_datetime
from cpms.ocpi.services import tariffs
from tests.factories import IdTokenFactory
from tests.ocpi_parties.checks import object_problems

pytestmark = pytest.mark.django_db

PAST = datetime(2026, 1, 1, tzinfo=UTC)
CREATED = datetime(2026, 1, 2, 9, 30, tzinfo=UTC)
ENERGY = [{"price_components": [{"type": "ENERGY", "price": "0.30", "step_size": 1}]}]


def _body(response):
    return orjson.loads(response.content)


def _tariff(org, name: str, *, description: str = "", elements=None, **version) -> Tariff:
    tariff = tariff_create(organisation=org, name=name, description=description)
    _version(tariff, elements=elements, **version)
    return tariff


def _version(tariff: Tariff, *, elements=None, **fields) -> TariffVersion:
    fields.setdefault("valid_from", PAST)
    fields.setdefault("currency", "EUR")
    fields.setdefault("tax_rate", Decimal("0.19"))
    version = tariff_version_create(
        tariff=tariff, data=TariffVersionInput(elements=elements or ENERGY, **fields)
    )
    # Fixed creation times, so that last_updated can be checked exactly.
    TariffVersion.objects.filter(pk=version.pk).update(created_at=CREATED)
    Tariff.objects.filter(pk=tariff.pk).update(updated_at=CREATED)
    return version


@pytest.fixture
def priced(world, roaming):
    """Organisation A: a general tariff (organisation), one for partner_a's drivers at site A1, one for a
    fleet group, an expired one at site A2 and a future one at station A2. Organisation B: one at site B1."""
    group = IdTokenFactory(organisation=world.org_a, value=f"OCPI-{roaming.partner_a.pk}")
    OcpiPartner.objects.filter(pk=roaming.partner_a.pk).update(id_token_group=group)
    roaming.partner_a.refresh_from_db()
    general = _tariff(
        world.org_a,
        "General",
        description="Parking is free for the first hour.",
        min_price=Decimal("1.00"),
        max_price=Decimal("50.00"),
        elements=[
            {
                "price_components": [{"type": "ENERGY", "price": "0.35", "step_size": 1}],
                "restrictions": {
                    "start_time": "08:00",
                    "end_time": "18:00",
                    "day_of_week": ["MONDAY", "FRIDAY"],
                    "min_kwh": "0.5",
                },
            },
            {
                "price_components": [
                    {"type": "ENERGY", "price": "0.30", "step_size": 1},
                    {"type": "PARKING_TIME", "price": "2.40", "step_size": 60},
                ]
            },
            {"price_components": [{"type": "FLAT", "price": "1", "step_size": 1}]},
        ],
    )
    tariff_assign(tariff=general)
    roaming_a = _tariff(world.org_a, "Roaming A", currency="eur", tax_rate=Decimal("0.21"))
    tariff_assign(tariff=roaming_a, id_token_group=group, site=world.site_a1)
    fleet = _tariff(world.org_a, "Fleet")
    tariff_assign(tariff=fleet, id_token_group=IdTokenFactory(organisation=world.org_a, value="FLEET"))
    expired = _tariff(world.org_a, "Expired", valid_until=PAST + timedelta(days=30))
    tariff_assign(tariff=expired, site=world.site_a2)
    starts = (timezone.now() + timedelta(days=20)).replace(microsecond=0)
    future = tariff_create(organisation=world.org_a, name="Future")
    _version(future, valid_from=starts)
    tariff_assign(tariff=future, station=world.station_a2)
    site_b = _tariff(world.org_b, "Site B")
    tariff_assign(tariff=site_b, site=world.site_b1)
    return {
        "group": group,
        "general": general,
        "roaming_a": roaming_a,
        "fleet": fleet,
        "expired": expired,
        "future": future,
        "future_start": starts,
        "site_b": site_b,
    }


def test_a_tariff_has_the_shape_of_the_spec(roaming, priced):
    response = roaming.caller_a.get("/ocpi/2.2.1/tariffs")
    assert response.status_code == 200
    general = next(t for t in _body(response)["data"] if t["id"] == str(priced["general"].pk))
    assert general == {
        "country_code": "NL",
        "party_id": "AAA",
        "id": str(priced["general"].pk),
        "currency": "EUR",
        "tariff_alt_text": [{"language": "en", "text": "Parking is free for the first hour."}],
        # 16.5 Price: excl. VAT as stored, incl. VAT at the version's 19 %, rounded to cents.
        "min_price": {"excl_vat": 1, "incl_vat": 1.19},
        "max_price": {"excl_vat": 50, "incl_vat": 59.5},
        "elements": [
            {
                "price_components": [{"type": "ENERGY", "price": 0.35, "vat": 19, "step_size": 1}],
                "restrictions": {
                    "start_time": "08:00",
                    "end_time": "18:00",
                    "min_kwh": 0.5,
                    "day_of_week": ["MONDAY", "FRIDAY"],
                },
            },
            {
                "price_components": [
                    {"type": "ENERGY", "price": 0.3, "vat": 19, "step_size": 1},
                    {"type": "PARKING_TIME", "price": 2.4, "vat": 19, "step_size": 60},
                ]
            },
            {"price_components": [{"type": "FLAT", "price": 1, "vat": 19, "step_size": 1}]},
        ],
        "start_date_time": "2026-01-01T00:00:00Z",
        "last_updated": "2026-01-02T09:30:00Z",
    }
    # And against the test eMSP's checks, written from the specification's tables (not from this code).
    assert [object_problems("Tariff", tariff) for tariff in _body(response)["data"]] == [[], [], []]


def test_a_partner_sees_the_tariffs_of_its_drivers_only(roaming, priced):
    def seen(caller):
        return [t["id"] for t in _body(caller.get("/ocpi/2.2.1/tariffs"))["data"]]

    general, roaming_a, future = priced["general"], priced["roaming_a"], priced["future"]
    # Not the fleet's, not the expired one, nothing of organisation B.
    assert seen(roaming.caller_a) == [str(general.pk), str(roaming_a.pk), str(future.pk)]
    # partner_a2 has no token group: not partner_a's tariff either.
    assert seen(roaming.caller_a2) == [str(general.pk), str(future.pk)]
    assert seen(roaming.caller_b) == [str(priced["site_b"].pk)]


def test_a_tariff_of_an_unpublished_site_is_not_shown(world, roaming, priced):
    OcpiLocation.objects.create(site=world.site_a1, publish=False)
    ids = [t["id"] for t in _body(roaming.caller_a.get("/ocpi/2.2.1/tariffs"))["data"]]
    assert str(priced["roaming_a"].pk) not in ids
    assert str(priced["general"].pk) in ids


def test_a_future_version_is_announced_and_bounds_the_current_one(roaming, priced):
    roaming_a = priced["roaming_a"]
    later = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
    _version(roaming_a, valid_from=later, currency="EUR", tax_rate=Decimal("0.21"))
    by_id = {t["id"]: t for t in _body(roaming.caller_a.get("/ocpi/2.2.1/tariffs"))["data"]}
    # The current version ends where the next begins.
    assert by_id[str(roaming_a.pk)]["start_date_time"] == "2026-01-01T00:00:00Z"
    assert by_id[str(roaming_a.pk)]["end_date_time"] == format_datetime(later)
    assert by_id[str(roaming_a.pk)]["elements"][0]["price_components"][0]["vat"] == 21
    # A tariff with only a future version is shown with its start.
    future = by_id[str(priced["future"].pk)]
    assert future["start_date_time"] == format_datetime(priced["future_start"])
    assert "end_date_time" not in future
    assert future["last_updated"] == "2026-01-02T09:30:00Z"


def test_the_list_is_paginated_and_filtered_on_last_updated(roaming, priced):
    first = roaming.caller_a.get("/ocpi/2.2.1/tariffs?limit=2")
    assert [t["id"] for t in _body(first)["data"]] == [str(priced["general"].pk), str(priced["roaming_a"].pk)]
    assert first["X-Total-Count"] == "3"
    assert first["X-Limit"] == "2"
    assert first["Link"] == '<http://testserver/ocpi/2.2.1/tariffs?limit=2&offset=2>; rel="next"'
    rest = roaming.caller_a.get("/ocpi/2.2.1/tariffs?limit=2&offset=2")
    assert [t["id"] for t in _body(rest)["data"]] == [str(priced["future"].pk)]
    assert "Link" not in rest
    Tariff.objects.filter(pk=priced["roaming_a"].pk).update(updated_at=CREATED + timedelta(hours=1))
    after = roaming.caller_a.get("/ocpi/2.2.1/tariffs?date_from=2026-01-02T10:30:00Z")
    assert [t["id"] for t in _body(after)["data"]] == [str(priced["roaming_a"].pk)]
    assert after["X-Total-Count"] == "1"
    before = roaming.caller_a.get("/ocpi/2.2.1/tariffs?date_to=2026-01-02T10:30:00Z")
    assert [t["id"] for t in _body(before)["data"]] == [str(priced["general"].pk), str(priced["future"].pk)]


# --- pushes -----------------------------------------------------------------------------------------------
def _items(partner):
    return list(
        OcpiOutboxItem.objects.filter(partner=partner, module="tariffs")
        .order_by("id")
        .values_list("method", "path", "object_key", "to_country_code", "to_party_id")
    )


def test_the_sweep_puts_new_tariffs_once_and_deletes_those_gone(world, roaming, priced):
    OcpiPartner.objects.filter(pk=roaming.partner_a.pk).update(pushed_until={"locations": "x"})
    general, roaming_a, future = priced["general"], priced["roaming_a"], priced["future"]
    assert tariffs.tariffs_push_changes() == 3 + 2 + 1  # partner_a, partner_a2, partner_b
    assert _items(roaming.partner_a) == [
        ("PUT", f"/NL/AAA/{general.pk}", f"tariff:{general.pk}", "DE", "EMS"),
        ("PUT", f"/NL/AAA/{roaming_a.pk}", f"tariff:{roaming_a.pk}", "DE", "EMS"),
        ("PUT", f"/NL/AAA/{future.pk}", f"tariff:{future.pk}", "DE", "EMS"),
    ]
    put = OcpiOutboxItem.objects.filter(partner=roaming.partner_a).first()
    assert put.body == next(
        t for t in _body(roaming.caller_a.get("/ocpi/2.2.1/tariffs"))["data"] if t["id"] == str(general.pk)
    )
    assert [path for _, path, *_ in _items(roaming.partner_b)] == [f"/NL/BBB/{priced['site_b'].pk}"]
    roaming.partner_a.refresh_from_db()
    assert roaming.partner_a.pushed_until["locations"] == "x"
    assert set(roaming.partner_a.pushed_until["tariffs_pushed"]) == {
        str(general.pk),
        str(roaming_a.pk),
        str(future.pk),
    }
    # Nothing changed: nothing queued.
    assert tariffs.tariffs_push_changes() == 0
    # A new version of one tariff: that tariff is PUT again, to the partners that have it.
    _version(general, valid_from=PAST + timedelta(days=1), min_price=Decimal("2.00"))
    assert tariffs.tariffs_push_changes() == 2
    assert _items(roaming.partner_a)[-1] == (
        "PUT",
        f"/NL/AAA/{general.pk}",
        f"tariff:{general.pk}",
        "DE",
        "EMS",
    )
    assert OcpiOutboxItem.objects.filter(partner=roaming.partner_a).last().body["min_price"]["excl_vat"] == 2
    # The group's assignment removed: partner_a's drivers no longer have that tariff.
    for assignment in roaming_a.assignments.all():
        tariff_unassign(assignment=assignment)
    assert tariffs.tariffs_push_changes() == 1
    assert _items(roaming.partner_a)[-1] == (
        "DELETE",
        f"/NL/AAA/{roaming_a.pk}",
        f"tariff:{roaming_a.pk}",
        "DE",
        "EMS",
    )
    assert OcpiOutboxItem.objects.filter(partner=roaming.partner_a).last().body is None
    assert tariffs.tariffs_push_changes() == 0


def test_the_sweep_skips_partners_not_registered_or_without_a_receiver(roaming, priced):
    OcpiPartner.objects.filter(pk=roaming.partner_a.pk).update(status="SUSPENDED")
    OcpiPartner.objects.filter(pk=roaming.partner_b.pk).update(endpoints=[])
    assert tariffs.tariffs_push_changes() == 2
    assert _items(roaming.partner_a) == []
    assert _items(roaming.partner_b) == []


def test_sync_now_puts_every_tariff_again(roaming, priced):
    assert tariffs.tariffs_push_changes() == 6
    assert tariffs.tariffs_push_all(roaming.partner_a) == 3
    assert [method for method, *_ in _items(roaming.partner_a)] == ["PUT"] * 6
    assert tariffs.tariffs_push_changes() == 0
