"""The "Who may charge here" form on a site's prices page: shown to who holds the pricing right on the site,
posting to `portal:site-access-rules`; denials change nothing; a change is audited."""

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from accounts.models import AuditRecord
from sessions.models import SiteAccessGroup
from sessions.services.site_access import AUDIT_ACTION, site_access_rules_set
from stations.models import Site
from stations.services.site_hosts import site_host_grant
from tests.factories import IdTokenFactory


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def groups(world):
    """FLEET (owner "Acme fleet") and STAFF group one member each; LONE is no group; B-FLEET is org B's."""
    fleet = IdTokenFactory(organisation=world.org_a, value="FLEET", owner_name="Acme fleet")
    IdTokenFactory(organisation=world.org_a, value="MEMBER-1", group=fleet)
    staff = IdTokenFactory(organisation=world.org_a, value="STAFF")
    IdTokenFactory(organisation=world.org_a, value="MEMBER-2", group=staff)
    lone = IdTokenFactory(organisation=world.org_a, value="LONE")
    b_fleet = IdTokenFactory(organisation=world.org_b, value="B-FLEET")
    IdTokenFactory(organisation=world.org_b, value="B-MEMBER", group=b_fleet)
    return {"fleet": fleet, "staff": staff, "lone": lone, "b_fleet": b_fleet}


def page_url(site) -> str:
    return reverse("portal:site-prices-site", args=[site.pk])


def post_url(site) -> str:
    return reverse("portal:site-access-rules", args=[site.pk])


def state(site) -> tuple:
    return (
        Site.objects.get(pk=site.pk).access_mode,
        sorted(SiteAccessGroup.objects.filter(site=site).values_list("group_id", flat=True)),
        AuditRecord.objects.count(),
    )


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_the_form_offers_the_organisations_groups_by_name(world, groups):
    response = client_for(world.operator_a).get(page_url(world.site_a1))
    assert response.status_code == 200
    html = response.content.decode()
    assert f'action="{post_url(world.site_a1)}"' in html
    form = response.context["access"]["form"]
    assert form.fields["groups"].choices == [
        (groups["fleet"].pk, "Acme fleet (FLEET)"),
        (groups["staff"].pk, "STAFF"),
    ]
    assert form.initial == {"mode": "public", "groups": []}
    assert 'value="restricted"' in html and "Acme fleet (FLEET)" in html
    assert "B-FLEET" not in html and "MEMBER-1" not in html
    assert "Every id token Org A accepts may charge here." in html


def test_a_pricing_site_host_sees_group_names_but_no_tokens(world, groups):
    site_host_grant(user=world.host_a1, site=world.site_a1, may_set_prices=True)
    groups["lone"].allowed_sites.set([world.site_a1])
    html = client_for(world.host_a1).get(page_url(world.site_a1)).content.decode()
    assert "Acme fleet (FLEET)" in html and "STAFF" in html
    # Individual tokens stay hidden from site hosts: neither members nor tokens restricted to the site.
    assert "MEMBER-1" not in html and "LONE" not in html


def test_restricting_the_site(world, groups):
    client = client_for(world.operator_a)
    response = client.post(
        post_url(world.site_a1), {"mode": "restricted", "groups": [groups["fleet"].pk, groups["staff"].pk]}
    )
    assert (response.status_code, response["Location"]) == (302, page_url(world.site_a1))
    assert texts(response) == ["A1 is restricted to 2 group(s) and their members."]
    assert state(world.site_a1) == ("restricted", sorted([groups["fleet"].pk, groups["staff"].pk]), 1)
    record = AuditRecord.objects.get()
    assert (record.action, record.actor, record.organisation_id) == (
        AUDIT_ACTION,
        world.operator_a,
        world.org_a.pk,
    )
    assert record.changes["after"] == {
        "mode": "restricted",
        "group_ids": sorted([groups["fleet"].pk, groups["staff"].pk]),
    }
    page = client.get(page_url(world.site_a1))
    assert page.context["access"]["form"].initial == {
        "mode": "restricted",
        "groups": sorted([groups["fleet"].pk, groups["staff"].pk]),
    }
    assert "Only the allowed groups below and their member tokens may charge here." in page.content.decode()


def test_a_site_host_with_the_grant_restricts_their_site(world, groups):
    site_host_grant(user=world.host_a1, site=world.site_a1, may_set_prices=True)
    response = client_for(world.host_a1).post(
        post_url(world.site_a1), {"mode": "restricted", "groups": [groups["fleet"].pk]}
    )
    assert response.status_code == 302
    assert state(world.site_a1) == ("restricted", [groups["fleet"].pk], 1)


def test_back_to_public(world, groups):
    site_access_rules_set(
        actor=world.operator_a, site=world.site_a1, mode="restricted", group_ids=[groups["fleet"].pk]
    )
    response = client_for(world.operator_a).post(post_url(world.site_a1), {"mode": "public"})
    assert texts(response) == ["Every id token of the organisation may charge at A1."]
    assert state(world.site_a1) == ("public", [], 2)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"mode": "restricted"},
            "A restricted site needs at least one allowed group: nobody could charge there.",
        ),
        (
            {"mode": "closed"},
            "Who may charge: Select a valid choice. closed is not one of the available choices.",
        ),
        (
            {"mode": "restricted", "groups": ["lone"]},
            "Allowed groups (their member tokens too): Select a valid "
            "choice. {lone} is not one of the available choices.",
        ),
        (
            {"mode": "restricted", "groups": ["b_fleet"]},
            "Allowed groups (their member tokens too): Select a valid "
            "choice. {b_fleet} is not one of the available choices.",
        ),
    ],
)
def test_bad_input_changes_nothing(world, groups, data, message):
    data = {**data, "groups": [groups[g].pk for g in data.get("groups", [])]}
    before = state(world.site_a1)
    response = client_for(world.operator_a).post(post_url(world.site_a1), data)
    assert (response.status_code, response["Location"]) == (302, page_url(world.site_a1))
    expected = message.format(lone=groups["lone"].pk, b_fleet=groups["b_fleet"].pk)
    assert texts(response) == [f"Access rules not changed. {expected}"]
    assert state(world.site_a1) == before


@pytest.mark.parametrize(("actor", "status"), [("operator_b", 404), ("host_a1", 403), ("finance_a", 403)])
def test_denied_posts_change_nothing(world, groups, actor, status):
    before = state(world.site_a1)
    response = client_for(getattr(world, actor)).post(
        post_url(world.site_a1), {"mode": "restricted", "groups": [groups["fleet"].pk]}
    )
    assert response.status_code == status
    assert state(world.site_a1) == before


def test_a_host_with_the_grant_on_another_site_is_refused_here(world, groups):
    site_host_grant(user=world.host_a1, site=world.site_a1, may_set_prices=True)
    before = state(world.site_a2)
    response = client_for(world.host_a1).post(
        post_url(world.site_a2), {"mode": "restricted", "groups": [groups["fleet"].pk]}
    )
    assert response.status_code == 404
    assert state(world.site_a2) == before


def test_anonymous_and_get(world, groups):
    url = post_url(world.site_a1)
    before = state(world.site_a1)
    assert Client().get(url).status_code == 405
    response = Client().post(url, {"mode": "restricted", "groups": [groups["fleet"].pk]})
    assert (response.status_code, response["Location"]) == (302, f"/portal/login/?next={url}")
    assert client_for(world.operator_a).get(url).status_code == 405
    assert state(world.site_a1) == before
