from decimal import Decimal

import pytest

from stations.models import Site
from tests.support import iso, row


def site_json(site) -> dict:
    return {
        "id": site.pk,
        "organisation": site.organisation_id,
        "name": site.name,
        "time_zone": site.time_zone,
        "address": site.address,
        "city": site.city,
        "postal_code": site.postal_code,
        "country": site.country,
        "latitude": None if site.latitude is None else f"{site.latitude:.6f}",
        "longitude": None if site.longitude is None else f"{site.longitude:.6f}",
        "grid_capacity_w": site.grid_capacity_w,
        "created_at": iso(site.created_at),
    }


NEW_SITE = {
    "name": "Depot North",
    "time_zone": "Europe/Amsterdam",
    "address": "Havenstraat 1",
    "city": "Utrecht",
    "postal_code": "3511 AA",
    "country": "NL",
    "latitude": "52.090700",
    "longitude": "5.121400",
    "grid_capacity_w": 250000,
}


def test_list_and_retrieve(world, api):
    client = api(world.operator_a)
    listed = client.get("/api/v1/sites/")
    assert listed.status_code == 200
    assert listed.json() == {
        "count": 2,
        "next": None,
        "previous": None,
        "results": [site_json(world.site_a1), site_json(world.site_a2)],
    }
    detail = client.get(f"/api/v1/sites/{world.site_a2.pk}/")
    assert detail.status_code == 200
    assert detail.json() == site_json(world.site_a2)


def test_list_is_paginated_by_limit_and_offset(world, api):
    response = api(world.superuser).get("/api/v1/sites/?limit=1&offset=1")
    body = response.json()
    assert (body["count"], [s["name"] for s in body["results"]]) == (3, ["A2"])
    assert body["next"] == "http://testserver/api/v1/sites/?limit=1&offset=2"
    assert body["previous"] == "http://testserver/api/v1/sites/?limit=1"


def test_filter_by_organisation(world, api):
    response = api(world.superuser).get(f"/api/v1/sites/?organisation={world.org_b.pk}")
    assert [s["name"] for s in response.json()["results"]] == ["B1"]


def test_bad_filter_value_is_a_400(world, api):
    response = api(world.superuser).get("/api/v1/sites/?organisation=abc")
    assert response.status_code == 400
    assert response.json() == {"organisation": ["A valid integer is required."]}


def test_operator_creates_a_site(world, api):
    response = api(world.operator_a).post(
        "/api/v1/sites/", {**NEW_SITE, "organisation": world.org_a.pk}, format="json"
    )
    assert response.status_code == 201
    site = Site.objects.get(name="Depot North")
    assert response.json() == site_json(site)
    assert (site.organisation_id, site.time_zone, site.country, site.latitude, site.grid_capacity_w) == (
        world.org_a.pk,
        "Europe/Amsterdam",
        "NL",
        Decimal("52.090700"),
        250000,
    )


def test_create_defaults_to_utc_and_empty_address(world, api):
    response = api(world.operator_a).post(
        "/api/v1/sites/", {"name": "Bare", "organisation": world.org_a.pk}, format="json"
    )
    assert response.status_code == 201
    site = Site.objects.get(name="Bare")
    assert (site.time_zone, site.address, site.grid_capacity_w) == ("UTC", "", None)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"time_zone": "Mars/Olympus_Mons"},
            {"detail": "Unknown time zone 'Mars/Olympus_Mons'; use an IANA name such as 'Europe/Berlin'."},
        ),
        (
            {"time_zone": "../../etc/passwd"},
            {"detail": "Unknown time zone '../../etc/passwd'; use an IANA name such as 'Europe/Berlin'."},
        ),
        ({"name": "A1"}, {"detail": "The organisation already has a site named 'A1'."}),
        (
            {"country": "nl"},
            {"detail": "Country must be an ISO 3166-1 alpha-2 code such as 'DE', not 'nl'."},
        ),
        ({"grid_capacity_w": -1}, {"grid_capacity_w": ["Ensure this value is greater than or equal to 0."]}),
        ({"latitude": "91.000000"}, {"detail": "Latitude must be between -90 and 90."}),
        ({"name": ""}, {"name": ["This field may not be blank."]}),
        ({"organization": 1}, {"organization": ["Unknown or read-only field; it cannot be set."]}),
    ],
    ids=[
        "tz",
        "tz-path",
        "dup-name",
        "country-case",
        "negative-capacity",
        "latitude",
        "blank-name",
        "typo-field",
    ],
)
def test_create_refuses_bad_input(world, api, change, expected):
    body = {**NEW_SITE, "organisation": world.org_a.pk, **change}
    response = api(world.operator_a).post("/api/v1/sites/", body, format="json")
    assert response.status_code == 400
    assert response.json() == expected
    assert Site.objects.count() == 3


def test_same_site_name_in_another_organisation_is_fine(world, api):
    response = api(world.operator_b).post(
        "/api/v1/sites/", {"name": "A1", "organisation": world.org_b.pk}, format="json"
    )
    assert response.status_code == 201


def test_patch_changes_only_the_given_fields(world, api):
    before = row(world.site_a1)
    response = api(world.operator_a).patch(
        f"/api/v1/sites/{world.site_a1.pk}/",
        {"name": "A1 renamed", "time_zone": "Europe/Paris", "grid_capacity_w": 100000},
        format="json",
    )
    assert response.status_code == 200
    after = row(world.site_a1)
    assert after["updated_at"] > before["updated_at"]  # what roaming partners are told changed
    assert after == {
        **before,
        "name": "A1 renamed",
        "time_zone": "Europe/Paris",
        "grid_capacity_w": 100000,
        "updated_at": after["updated_at"],
    }
    world.site_a1.refresh_from_db()
    assert response.json() == site_json(world.site_a1)


def test_patch_with_the_same_organisation_is_allowed(world, api):
    response = api(world.operator_a).patch(
        f"/api/v1/sites/{world.site_a1.pk}/", {"organisation": world.org_a.pk, "city": "Bonn"}, format="json"
    )
    assert response.status_code == 200
    assert row(world.site_a1)["city"] == "Bonn"


def test_patch_invalid_time_zone_changes_nothing(world, api):
    before = row(world.site_a1)
    response = api(world.operator_a).patch(
        f"/api/v1/sites/{world.site_a1.pk}/",
        {"name": "New name", "time_zone": "Europe/Atlantis"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Unknown time zone 'Europe/Atlantis'; use an IANA name such as 'Europe/Berlin'."
    }
    assert row(world.site_a1) == before


def test_finance_reads_but_cannot_write(world, api):
    client = api(world.finance_a)
    assert client.get(f"/api/v1/sites/{world.site_a1.pk}/").status_code == 200
    before = row(world.site_a1)
    patched = client.patch(f"/api/v1/sites/{world.site_a1.pk}/", {"name": "Finance was here"}, format="json")
    assert patched.status_code == 403
    assert patched.json() == {"detail": f"You may not manage site {world.site_a1.pk}."}
    assert row(world.site_a1) == before
    created = client.post("/api/v1/sites/", {"name": "F", "organisation": world.org_a.pk}, format="json")
    assert created.status_code == 403
    assert created.json() == {"detail": f"You may not manage organisation {world.org_a.pk}."}
    assert Site.objects.count() == 3


def test_site_host_cannot_create_or_change_their_site(world, api):
    client = api(world.host_a1)
    before = row(world.site_a1)
    patched = client.patch(f"/api/v1/sites/{world.site_a1.pk}/", {"name": "Host was here"}, format="json")
    assert patched.status_code == 403
    assert row(world.site_a1) == before
    created = client.post("/api/v1/sites/", {"name": "H", "organisation": world.org_a.pk}, format="json")
    assert created.status_code == 403
    assert Site.objects.count() == 3
