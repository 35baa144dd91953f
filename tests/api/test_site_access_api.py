"""GET/PUT /api/v1/sites/<id>/access-rules/: read by who sees the site, replaced by who holds the pricing
right on it; 400 with a message on bad input; denials change nothing."""

import pytest
from rest_framework.test import APIClient

from accounts.models import AuditRecord
from accounts.services import api_token_get_or_create
from sessions.models import SiteAccessGroup
from sessions.services.site_access import AUDIT_ACTION, site_access_rules_set
from stations.models import Site
from stations.services.site_hosts import site_host_grant
from tests.factories import IdTokenFactory


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_get_or_create(user=user).key}")
    return client


@pytest.fixture
def groups(world):
    fleet = IdTokenFactory(organisation=world.org_a, value="FLEET")
    IdTokenFactory(organisation=world.org_a, value="MEMBER", group=fleet)
    lone = IdTokenFactory(organisation=world.org_a, value="LONE")
    b_fleet = IdTokenFactory(organisation=world.org_b, value="B-FLEET")
    IdTokenFactory(organisation=world.org_b, value="B-MEMBER", group=b_fleet)
    return {"fleet": fleet, "lone": lone, "b_fleet": b_fleet}


def url(site) -> str:
    return f"/api/v1/sites/{site.pk}/access-rules/"


def state(site) -> tuple:
    return (
        Site.objects.get(pk=site.pk).access_mode,
        sorted(SiteAccessGroup.objects.filter(site=site).values_list("group_id", flat=True)),
        AuditRecord.objects.count(),
    )


def test_get_the_default_rule(world):
    response = client_for(world.operator_a).get(url(world.site_a1))
    assert (response.status_code, response.json()) == (200, {"mode": "public", "groups": []})


@pytest.mark.parametrize(("actor", "status"), [("host_a1", 200), ("finance_a", 200), ("operator_b", 404)])
def test_get_is_for_who_sees_the_site(world, groups, actor, status):
    site_access_rules_set(
        actor=world.operator_a, site=world.site_a1, mode="restricted", group_ids=[groups["fleet"].pk]
    )
    response = client_for(getattr(world, actor)).get(url(world.site_a1))
    assert response.status_code == status
    if status == 200:
        assert response.json() == {"mode": "restricted", "groups": [groups["fleet"].pk]}
    else:
        assert response.json() == {"detail": f"Site {world.site_a1.pk} not found."}


def test_put_replaces_the_rule(world, groups):
    response = client_for(world.operator_a).put(
        url(world.site_a1), {"mode": "restricted", "groups": [groups["fleet"].pk]}, format="json"
    )
    assert (response.status_code, response.json()) == (
        200,
        {"mode": "restricted", "groups": [groups["fleet"].pk]},
    )
    assert state(world.site_a1) == ("restricted", [groups["fleet"].pk], 1)
    record = AuditRecord.objects.get()
    assert (record.action, record.actor) == (AUDIT_ACTION, world.operator_a)
    assert record.changes == {
        "before": {"mode": "public", "group_ids": []},
        "after": {"mode": "restricted", "group_ids": [groups["fleet"].pk]},
    }


def test_a_site_host_with_the_pricing_grant_may_put(world, groups):
    site_host_grant(user=world.host_a1, site=world.site_a1, may_set_prices=True)
    response = client_for(world.host_a1).put(
        url(world.site_a1), {"mode": "restricted", "groups": [groups["fleet"].pk]}, format="json"
    )
    assert response.status_code == 200
    assert state(world.site_a1) == ("restricted", [groups["fleet"].pk], 1)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"mode": "restricted", "groups": []},
            {"detail": "A restricted site needs at least one allowed group: nobody could charge there."},
        ),
        (
            {"mode": "restricted", "groups": ["lone"]},
            {"detail": "Not group id tokens of this site's organisation: {lone}."},
        ),
        (
            {"mode": "restricted", "groups": ["b_fleet"]},
            {"detail": "Not group id tokens of this site's organisation: {b_fleet}."},
        ),
        ({"mode": "closed", "groups": []}, {"mode": ['"closed" is not a valid choice.']}),
        ({"mode": "public"}, {"groups": ["This field is required."]}),
        ({"mode": "public", "groups": [], "extra": 1}, None),
    ],
)
def test_put_refuses_bad_input(world, groups, body, expected):
    body = {**body}
    if "groups" in body:
        body["groups"] = [groups[g].pk if isinstance(g, str) else g for g in body["groups"]]
    before = state(world.site_a1)
    response = client_for(world.operator_a).put(url(world.site_a1), body, format="json")
    assert response.status_code == 400
    if expected is not None:
        assert response.json() == {
            key: (
                value.format(lone=groups["lone"].pk, b_fleet=groups["b_fleet"].pk)
                if isinstance(value, str)
                else value
            )
            for key, value in expected.items()
        }
    else:
        assert list(response.json()) == ["extra"]
    assert state(world.site_a1) == before


@pytest.mark.parametrize(("actor", "status"), [("operator_b", 404), ("host_a1", 403), ("finance_a", 403)])
def test_put_denials_change_nothing(world, groups, actor, status):
    before = state(world.site_a1)
    response = client_for(getattr(world, actor)).put(
        url(world.site_a1), {"mode": "restricted", "groups": [groups["fleet"].pk]}, format="json"
    )
    assert response.status_code == status
    assert state(world.site_a1) == before


def test_anonymous_is_refused(world, groups):
    before = state(world.site_a1)
    assert APIClient().get(url(world.site_a1)).status_code == 401
    response = APIClient().put(
        url(world.site_a1), {"mode": "restricted", "groups": [groups["fleet"].pk]}, format="json"
    )
    assert response.status_code == 401
    assert state(world.site_a1) == before
