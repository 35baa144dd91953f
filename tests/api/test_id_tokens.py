import pytest

from sessions.models import IdToken
from tests.support import iso, row


def token_json(token) -> dict:
    return {
        "id": token.pk,
        "organisation": token.organisation_id,
        "value": token.value,
        "type": token.type,
        "status": token.status,
        "expires_at": iso(token.expires_at),
        "group": token.group_id,
        "owner_name": token.owner_name,
        "owner_email": token.owner_email,
        "allowed_sites": sorted(token.allowed_sites.values_list("pk", flat=True)),
        "allowed_stations": sorted(token.allowed_stations.values_list("identity", flat=True)),
        "in_local_list": token.in_local_list,
        "created_at": iso(token.created_at),
        "updated_at": iso(token.updated_at),
    }


def test_list_and_retrieve(world, tenants, api):
    client = api(world.operator_a)
    listed = client.get("/api/v1/id-tokens/")
    assert listed.status_code == 200
    # Ordered by organisation, then value.
    assert listed.json()["results"] == [token_json(tenants.token_a), token_json(tenants.token_a_group)]
    detail = client.get(f"/api/v1/id-tokens/{tenants.token_a.pk}/")
    assert detail.status_code == 200
    assert detail.json() == token_json(tenants.token_a)


def test_site_host_sees_no_id_tokens(world, tenants, api):
    client = api(world.host_a1)
    listed = client.get("/api/v1/id-tokens/")
    assert listed.json() == {"count": 0, "next": None, "previous": None, "results": []}
    assert client.get(f"/api/v1/id-tokens/{tenants.token_a.pk}/").status_code == 404


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=Blocked", ["AAAA0001"]),
        ("type=Central", ["FLEET-A"]),
        ("value=BBBB0001", ["BBBB0001"]),
        ("organisation={org_b}", ["BBBB0001"]),
    ],
)
def test_filters(world, tenants, api, query, expected):
    IdToken.objects.filter(pk=tenants.token_a.pk).update(status="Blocked")
    response = api(world.superuser).get(f"/api/v1/id-tokens/?{query.format(org_b=world.org_b.pk)}")
    assert [t["value"] for t in response.json()["results"]] == expected


def test_create(world, tenants, api):
    body = {
        "organisation": world.org_a.pk,
        "value": "04A2B3C4D5E6F7",
        "type": "ISO14443",
        "status": "Accepted",
        "expires_at": "2030-01-01T00:00:00Z",
        "group": tenants.token_a_group.pk,
        "owner_name": "Ada Lovelace",
        "owner_email": "ada@example.com",
    }
    response = api(world.operator_a).post("/api/v1/id-tokens/", body, format="json")
    assert response.status_code == 201
    token = IdToken.objects.get(value="04A2B3C4D5E6F7")
    assert response.json() == token_json(token)
    assert response.json()["expires_at"] == "2030-01-01T00:00:00Z"
    assert (token.organisation_id, token.group_id, token.owner_email) == (
        world.org_a.pk,
        tenants.token_a_group.pk,
        "ada@example.com",
    )


def test_create_with_defaults(world, api):
    response = api(world.operator_a).post(
        "/api/v1/id-tokens/", {"organisation": world.org_a.pk, "value": "MINIMAL"}, format="json"
    )
    assert response.status_code == 201
    token = IdToken.objects.get(value="MINIMAL")
    assert (token.type, token.status, token.expires_at, token.group_id) == (
        "ISO14443",
        "Accepted",
        None,
        None,
    )


def test_the_same_value_in_another_organisation_is_fine(world, tenants, api):
    response = api(world.operator_b).post(
        "/api/v1/id-tokens/", {"organisation": world.org_b.pk, "value": "AAAA0001"}, format="json"
    )
    assert response.status_code == 201
    assert IdToken.objects.filter(value="AAAA0001").count() == 2


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"status": "Lost"}, {"status": ['"Lost" is not a valid choice.']}),
        ({"status": "ConcurrentTx"}, {"status": ['"ConcurrentTx" is not a valid choice.']}),
        ({"type": "Barcode"}, {"type": ['"Barcode" is not a valid choice.']}),
        ({"value": "AAAA0001"}, {"detail": "The organisation already has an id token 'AAAA0001'."}),
        ({"value": ""}, {"value": ["This field may not be blank."]}),
        ({"owner_email": "not-an-email"}, {"owner_email": ["Enter a valid email address."]}),
        ({"expires_at": "tomorrow"}, None),
        ({"group": "token_b"}, {"detail": "Group id token {token_b} not found in this organisation."}),
        ({"organisation": "org_b"}, {"detail": "Organisation {org_b} not found."}),
    ],
    ids=[
        "status",
        "transient-status",
        "type",
        "duplicate",
        "empty",
        "email",
        "expiry",
        "foreign-group",
        "foreign-org",
    ],
)
def test_create_refuses_bad_input(world, tenants, api, change, expected):
    ids = {"token_b": tenants.token_b.pk, "org_b": world.org_b.pk}
    change = {key: ids.get(value, value) for key, value in change.items()}
    body = {"organisation": world.org_a.pk, "value": "NEWTAG", **change}
    response = api(world.operator_a).post("/api/v1/id-tokens/", body, format="json")
    assert response.status_code == 400
    if expected is None:
        assert list(response.json()) == ["expires_at"]
    else:
        assert response.json() == {
            key: value.format(**ids) if isinstance(value, str) else value for key, value in expected.items()
        }
    assert IdToken.objects.count() == 3


def test_patch(world, tenants, api):
    before = row(tenants.token_a)
    response = api(world.operator_a).patch(
        f"/api/v1/id-tokens/{tenants.token_a.pk}/",
        {"status": "Blocked", "expires_at": "2026-06-30T12:00:00+02:00", "group": None},
        format="json",
    )
    assert response.status_code == 200
    after = row(tenants.token_a)
    assert after["updated_at"] > before["updated_at"]
    assert iso(after["expires_at"]) == "2026-06-30T10:00:00Z"
    assert {**after, "updated_at": None, "expires_at": None} == {
        **before,
        "status": "Blocked",
        "group_id": None,
        "updated_at": None,
        "expires_at": None,
    }
    tenants.token_a.refresh_from_db()
    assert response.json() == token_json(tenants.token_a)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"organisation": "org_b"}, {"detail": "An id token cannot move to another organisation."}),
        ({"group": "token_b"}, {"detail": "Group id token {token_b} not found in this organisation."}),
        ({"group": "self"}, {"detail": "An id token cannot be its own group."}),
        ({"value": "FLEET-A"}, {"detail": "The organisation already has an id token 'FLEET-A'."}),
        ({"status": "Gone"}, {"status": ['"Gone" is not a valid choice.']}),
    ],
    ids=["organisation", "foreign-group", "own-group", "duplicate", "status"],
)
def test_patch_refuses_bad_input_and_changes_nothing(world, tenants, api, change, expected):
    ids = {"token_b": tenants.token_b.pk, "org_b": world.org_b.pk, "self": tenants.token_a.pk}
    change = {key: ids.get(value, value) for key, value in change.items()}
    before = row(tenants.token_a)
    response = api(world.operator_a).patch(f"/api/v1/id-tokens/{tenants.token_a.pk}/", change, format="json")
    assert response.status_code == 400
    assert response.json() == {
        key: value.format(**ids) if isinstance(value, str) else value for key, value in expected.items()
    }
    assert row(tenants.token_a) == before


def test_finance_reads_but_cannot_write(world, tenants, api):
    client = api(world.finance_a)
    assert client.get(f"/api/v1/id-tokens/{tenants.token_a.pk}/").status_code == 200
    before = row(tenants.token_a)
    response = client.patch(f"/api/v1/id-tokens/{tenants.token_a.pk}/", {"status": "Blocked"}, format="json")
    assert response.status_code == 403
    assert response.json() == {"detail": f"You may not manage id token {tenants.token_a.pk}."}
    assert row(tenants.token_a) == before
    created = client.post(
        "/api/v1/id-tokens/", {"organisation": world.org_a.pk, "value": "FIN"}, format="json"
    )
    assert created.status_code == 403
    assert created.json() == {"detail": f"You may not manage organisation {world.org_a.pk}."}
    assert not IdToken.objects.filter(value="FIN").exists()


def test_site_host_cannot_create_tokens_in_their_organisation(world, api):
    response = api(world.host_a1).post(
        "/api/v1/id-tokens/", {"organisation": world.org_a.pk, "value": "HOST"}, format="json"
    )
    assert response.status_code == 403
    assert not IdToken.objects.filter(value="HOST").exists()
