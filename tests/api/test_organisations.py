from accounts.models import Organisation
from tests.support import iso


def org_json(org) -> dict:
    return {
        "id": org.pk,
        "name": org.name,
        "slug": org.slug,
        "auto_register_stations": org.auto_register_stations,
        "currency": org.currency,
        "created_at": iso(org.created_at),
    }


def test_list_shows_the_organisations_the_user_belongs_to(world, api):
    response = api(world.operator_a).get("/api/v1/organisations/")
    assert response.status_code == 200
    assert response.json() == {"count": 1, "next": None, "previous": None, "results": [org_json(world.org_a)]}


def test_site_host_sees_the_organisation_of_their_site(world, api):
    response = api(world.host_a1).get("/api/v1/organisations/")
    assert [o["id"] for o in response.json()["results"]] == [world.org_a.pk]


def test_superuser_sees_every_organisation(world, api):
    response = api(world.superuser).get("/api/v1/organisations/")
    assert [o["slug"] for o in response.json()["results"]] == ["org-a", "org-b"]


def test_superuser_creates_an_organisation(world, api):
    body = {"name": "Org C", "slug": "org-c", "auto_register_stations": True, "currency": "gbp"}
    response = api(world.superuser).post("/api/v1/organisations/", body, format="json")
    assert response.status_code == 201
    created = Organisation.objects.get(slug="org-c")
    assert response.json() == org_json(created)
    assert (created.name, created.auto_register_stations, created.currency) == ("Org C", True, "GBP")


def test_only_superusers_create_organisations(world, api):
    body = {"name": "Org C", "slug": "org-c"}
    for user in (world.operator_a, world.host_a1, world.finance_a):
        response = api(user).post("/api/v1/organisations/", body, format="json")
        assert response.status_code == 403
        assert response.json() == {"detail": "Only a superuser may create organisations."}
    assert Organisation.objects.count() == 2


def test_duplicate_slug_is_a_400(world, api):
    response = api(world.superuser).post(
        "/api/v1/organisations/", {"name": "Again", "slug": "org-a"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "An organisation with the slug 'org-a' already exists."}
    assert Organisation.objects.filter(slug="org-a").get().name == "Org A"


def test_invalid_slug_is_a_400(world, api):
    response = api(world.superuser).post(
        "/api/v1/organisations/", {"name": "Bad", "slug": "not a slug"}, format="json"
    )
    assert response.status_code == 400
    assert list(response.json()) == ["slug"]
    assert Organisation.objects.count() == 2
