"""Portal site prices: the tariff in force at a site, publishing new prices as a new version of a tariff
dedicated to the site (through the tariff services), who may (operator admin/staff, site hosts with the
per-site grant) and who may not (nothing written), and the read-only access rules."""

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import Client

from accounts.services import membership_set
from billing.models import Tariff, TariffAssignment, TariffVersion
from billing.services.tariffs import (
    TariffVersionInput,
    tariff_assign,
    tariff_create,
    tariff_resolve,
    tariff_version_create,
)
from stations.services.site_hosts import site_host_grant
from tests.factories import IdTokenFactory, UserFactory


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


PRICES = {
    "currency": "EUR",
    "energy_per_kwh": "0.39",
    "session_fee": "1.00",
    "charging_per_hour": "0",
    "parking_per_hour": "6.00",
    "parking_grace_min": "15",
    "tax_rate_percent": "19",
    "valid_from": "2026-01-01T00:00",
}


def billing_rows() -> tuple[int, int, int]:
    return Tariff.objects.count(), TariffVersion.objects.count(), TariffAssignment.objects.count()


@pytest.fixture
def org_tariff(world):
    """Org A's tariff, assigned to the organisation and (shared) to site A2."""
    tariff = tariff_create(organisation=world.org_a, name="Standard")
    tariff_version_create(
        tariff=tariff,
        data=TariffVersionInput(
            valid_from=utc(2025, 1, 1),
            currency="EUR",
            tax_rate=Decimal("0.19"),
            elements=[{"price_components": [{"type": "ENERGY", "price": "0.49", "step_size": 1}]}],
        ),
    )
    tariff_assign(tariff=tariff)
    tariff_assign(tariff=tariff, site=world.site_a2)
    return tariff


@pytest.fixture
def pricing_host(world):
    site_host_grant(user=world.host_a1, site=world.site_a1, may_set_prices=True)
    return world.host_a1


def test_anonymous_users_go_to_the_login_page(world):
    for url in ("/portal/prices/", f"/portal/prices/site/{world.site_a1.pk}/"):
        response = Client().get(url)
        assert (response.status_code, response["Location"]) == (302, f"/portal/login/?next={url}")
    assert Client().post(f"/portal/prices/site/{world.site_a1.pk}/", PRICES).status_code == 302
    assert Tariff.objects.count() == 0


def test_a_site_host_without_the_grant_is_refused_and_nothing_is_created(world, org_tariff):
    before = billing_rows()
    client = client_for(world.host_a1)
    assert client.get("/portal/prices/").status_code == 403
    response = client.get(f"/portal/prices/site/{world.site_a1.pk}/")
    assert response.status_code == 403
    assert (
        f"You may not set the prices and access rules of site {world.site_a1.pk}."
        in response.content.decode()
    )
    assert client.post(f"/portal/prices/site/{world.site_a1.pk}/", PRICES).status_code == 403
    assert billing_rows() == before


def test_finance_may_not_set_prices(world, org_tariff):
    before = billing_rows()
    client = client_for(world.finance_a)
    assert client.get("/portal/prices/").status_code == 403
    assert client.post(f"/portal/prices/site/{world.site_a1.pk}/", PRICES).status_code == 403
    assert billing_rows() == before


def test_another_organisation_gets_404_and_creates_nothing(world, org_tariff):
    before = billing_rows()
    client = client_for(world.operator_b)
    response = client.get(f"/portal/prices/site/{world.site_a1.pk}/")
    assert response.status_code == 404
    assert client.post(f"/portal/prices/site/{world.site_a1.pk}/", PRICES).status_code == 404
    assert billing_rows() == before
    html = client.get("/portal/prices/").content.decode()
    assert re.findall(r'<tr data-site="(\d+)">', html) == [str(world.site_b1.pk)]


def test_the_list_shows_the_tariff_in_force_at_each_site(world, org_tariff):
    html = client_for(world.operator_a).get("/portal/prices/").content.decode()
    assert re.findall(r'<tr data-site="(\d+)">', html) == [str(world.site_a1.pk), str(world.site_a2.pk)]
    a1 = re.search(rf'<tr data-site="{world.site_a1.pk}">(.*?)</tr>', html, re.S).group(1)
    assert 'Standard v1 <span class="muted">(organisation)</span>' in a1
    assert "0.49 EUR per kWh<br>Tax 19 %" in a1
    a2 = re.search(rf'<tr data-site="{world.site_a2.pk}">(.*?)</tr>', html, re.S).group(1)
    assert 'Standard v1 <span class="muted">(site)</span>' in a2


def test_a_site_host_with_the_grant_publishes_the_sites_prices(world, org_tariff, pricing_host):
    client = client_for(pricing_host)
    html = client.get("/portal/prices/").content.decode()
    assert re.findall(r'<tr data-site="(\d+)">', html) == [str(world.site_a1.pk)]
    page = client.get(f"/portal/prices/site/{world.site_a1.pk}/").content.decode()
    assert '<p data-role="in-force"><strong>Standard v1</strong>' in page
    assert "assigned to the organisation, since 01 Jan 2025, 01:00 CET" in page

    response = client.post(f"/portal/prices/site/{world.site_a1.pk}/", PRICES)
    assert (response.status_code, response["Location"]) == (302, f"/portal/prices/site/{world.site_a1.pk}/")
    tariff = Tariff.objects.get(name="Site prices: A1")
    assert tariff.organisation == world.org_a
    assignment = TariffAssignment.objects.get(organisation=world.org_a, scope_key=f"site:{world.site_a1.pk}")
    assert (assignment.tariff, assignment.created_by) == (tariff, pricing_host)
    version = TariffVersion.objects.get(tariff=tariff)
    # The site's wall clock: midnight in Berlin is 23:00 UTC the day before.
    assert (version.version, version.valid_from, version.currency) == (1, utc(2025, 12, 31, 23), "EUR")
    assert (version.tax_rate, version.parking_grace_s, version.created_by) == (
        Decimal("0.19"),
        900,
        pricing_host,
    )
    assert version.elements == [
        {
            "price_components": [
                {"type": "FLAT", "price": "1.00", "step_size": 1},
                {"type": "ENERGY", "price": "0.39", "step_size": 1},
                {"type": "PARKING_TIME", "price": "6.00", "step_size": 1},
            ]
        }
    ]
    # The organisation's tariff and site A2's assignment are untouched.
    assert org_tariff.versions.count() == 1
    assert TariffAssignment.objects.get(scope_key=f"site:{world.site_a2.pk}").tariff == org_tariff
    # Sessions at the site from then on are priced with it (the billing precedence).
    resolved = tariff_resolve(
        organisation_id=world.org_a.pk,
        site_id=world.site_a1.pk,
        station_id=world.station_a1.pk,
        token=None,
        at=utc(2026, 1, 2),
    )
    assert (resolved.version, resolved.scope_key) == (version, f"site:{world.site_a1.pk}")
    html = client.get(f"/portal/prices/site/{world.site_a1.pk}/").content.decode()
    assert "Published version 1 of Site prices: A1 for A1." in html


def test_publishing_again_adds_a_version_and_never_edits_one(world, pricing_host):
    client = client_for(pricing_host)
    client.post(f"/portal/prices/site/{world.site_a1.pk}/", PRICES)
    first = TariffVersion.objects.get()
    first_elements = first.elements
    client.post(
        f"/portal/prices/site/{world.site_a1.pk}/",
        {**PRICES, "energy_per_kwh": "0.45", "valid_from": "2026-02-01T06:30"},
    )
    assert Tariff.objects.count() == 1
    versions = list(TariffVersion.objects.order_by("version"))
    assert [(v.version, v.valid_from) for v in versions] == [
        (1, utc(2025, 12, 31, 23)),
        (2, utc(2026, 2, 1, 5, 30)),
    ]
    assert versions[0].elements == first_elements
    assert versions[1].elements[0]["price_components"][1] == {
        "type": "ENERGY",
        "price": "0.45",
        "step_size": 1,
    }
    # The same start twice is refused by the tariff service, with its message; nothing is added.
    response = client.post(f"/portal/prices/site/{world.site_a1.pk}/", PRICES)
    assert response.status_code == 400
    assert "already has a version starting at 2026-01-01T00:00:00+01:00." in response.content.decode()
    assert TariffVersion.objects.count() == 2


def test_operator_staff_publish_anywhere_in_their_organisation(world):
    staff = UserFactory(username="staff_a")
    membership_set(user=staff, organisation=world.org_a, role="operator_staff")
    data = {**PRICES, "valid_from": ""}
    response = client_for(staff).post(f"/portal/prices/site/{world.site_a2.pk}/", data)
    assert response.status_code == 302
    version = TariffVersion.objects.get()
    assert version.tariff.name == "Site prices: A2"
    assert version.created_by == staff


def test_a_site_host_cannot_reach_another_site(world, pricing_host):
    client = client_for(pricing_host)
    assert client.get(f"/portal/prices/site/{world.site_a2.pk}/").status_code == 404
    assert client.post(f"/portal/prices/site/{world.site_a2.pk}/", PRICES).status_code == 404
    assert Tariff.objects.count() == 0


def test_bad_prices_are_explained_and_create_nothing(world):
    client = client_for(world.operator_a)
    response = client.post(
        f"/portal/prices/site/{world.site_a1.pk}/",
        {**PRICES, "energy_per_kwh": "-1", "tax_rate_percent": "150"},
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "Ensure this value is greater than or equal to 0." in html
    assert "Ensure this value is less than or equal to 100." in html
    assert billing_rows() == (0, 0, 0)


def test_access_rules_are_shown_read_only_to_organisation_roles(world, pricing_host):
    group = IdTokenFactory(organisation=world.org_a, value="FLEET-1")
    member = IdTokenFactory(organisation=world.org_a, value="CARD-7", owner_name="Kim", group=group)
    member.allowed_sites.add(world.site_a1)
    elsewhere = IdTokenFactory(organisation=world.org_a, value="CARD-8")
    elsewhere.allowed_sites.add(world.site_a2)
    at_station = IdTokenFactory(organisation=world.org_a, value="CARD-9")
    at_station.allowed_stations.add(world.station_a1)
    html = client_for(world.operator_a).get(f"/portal/prices/site/{world.site_a1.pk}/").content.decode()
    assert re.findall(r'<tr data-token="\d+"><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>', html) == [
        ("CARD-7", "Kim", "FLEET-1"),
        ("CARD-9", "—", "—"),
    ]
    assert "CARD-8" not in html
    # Site hosts see no id tokens.
    host_html = client_for(pricing_host).get(f"/portal/prices/site/{world.site_a1.pk}/").content.decode()
    assert "CARD-7" not in host_html
    assert "No id tokens you can see are restricted to this site." in host_html


def test_station_tariffs_that_take_precedence_are_listed(world, org_tariff):
    station_tariff = tariff_create(organisation=world.org_a, name="Fast lane")
    tariff_assign(tariff=station_tariff, station=world.station_a1)
    html = client_for(world.operator_a).get(f"/portal/prices/site/{world.site_a1.pk}/").content.decode()
    assert "<li>Station A1-CP1: Fast lane</li>" in html
