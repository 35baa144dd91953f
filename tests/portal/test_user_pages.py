"""Portal pages for user management and the audit log: operator admins only, scoped to their
organisations; denials change nothing."""

import pytest
from django.urls import reverse

from accounts.models import AuditRecord, Membership, User
from accounts.services import audit_record
from stations.scope import user_site_grants


def login(client, user):
    client.force_login(user)
    return client


PAGES = ["portal:user-list", "portal:user-invite", "portal:audit-log"]


@pytest.mark.parametrize("name", PAGES)
def test_anonymous_users_go_to_the_login_page(world, client, name):
    response = client.get(reverse(name))
    assert (response.status_code, response["Location"]) == (302, f"/portal/login/?next={reverse(name)}")
    detail = reverse("portal:user-detail", args=[world.finance_a.pk])
    assert client.get(detail)["Location"] == f"/portal/login/?next={detail}"


@pytest.mark.parametrize("name", PAGES)
@pytest.mark.parametrize("actor", ["finance_a", "host_a1"])
def test_roles_without_user_management_get_403(world, client, name, actor):
    assert login(client, getattr(world, actor)).get(reverse(name)).status_code == 403
    assert client.get(reverse("portal:user-detail", args=[world.finance_a.pk])).status_code == 403


def test_user_list_shows_the_organisations_users_only(world, client):
    response = login(client, world.operator_a).get(reverse("portal:user-list"))
    assert response.status_code == 200
    assert [row["user"].username for row in response.context["rows"]] == [
        "finance_a",
        "host_a1",
        "operator_a",
    ]
    content = response.content.decode()
    assert "operator_b" not in content
    host_row = next(row for row in response.context["rows"] if row["user"].username == "host_a1")
    assert host_row["memberships"][0]["sites"] == ["A1"]
    assert 'href="/portal/users/invite/"' in content


def test_user_list_paginates(world, client):
    from tests.factories import UserFactory

    for n in range(30):
        Membership.objects.create(
            user=UserFactory(username=f"z{n:02d}"), organisation=world.org_a, role="support"
        )
    response = login(client, world.operator_a).get(reverse("portal:user-list") + "?page=2")
    assert response.context["page"].number == 2
    assert len(response.context["rows"]) == 33 - 25


def test_nav_shows_users_and_audit_to_operator_admins_only(world, client):
    content = login(client, world.operator_a).get(reverse("portal:user-list")).content.decode()
    assert 'href="/portal/users/"' in content and 'href="/portal/audit/"' in content
    client.logout()
    content = login(client, world.finance_a).get(reverse("portal:overview")).content.decode()
    assert 'href="/portal/users/"' not in content and 'href="/portal/audit/"' not in content


def test_invite_page_invites(world, client, mailoutbox, django_capture_on_commit_callbacks):
    login(client, world.operator_a)
    assert client.get(reverse("portal:user-invite")).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("portal:user-invite"),
            {
                "email": "host2@example.com",
                "organisation": world.org_a.pk,
                "role": "site_host",
                "sites": [world.site_a2.pk],
                "may_set_prices": "on",
            },
        )
    user = User.objects.get(username="host2@example.com")
    assert (response.status_code, response["Location"]) == (302, f"/portal/users/{user.pk}/")
    assert user_site_grants(user=user, organisation=world.org_a) == ([world.site_a2.pk], [world.site_a2.pk])
    assert [mail.to for mail in mailoutbox] == [["host2@example.com"]]
    assert "http://testserver/portal/invite/" in mailoutbox[0].body


def test_invite_page_shows_refusals_and_creates_nothing(world, client):
    login(client, world.operator_a)
    response = client.post(
        reverse("portal:user-invite"),
        {"email": "operator_b@example.com", "organisation": world.org_a.pk, "role": "support"},
    )
    assert response.status_code == 400
    assert "A user with the email address operator_b@example.com already exists." in response.content.decode()
    # Another organisation is not a choice.
    response = client.post(
        reverse("portal:user-invite"),
        {"email": "x@example.com", "organisation": world.org_b.pk, "role": "support"},
    )
    assert response.status_code == 400
    assert not User.objects.filter(username="x@example.com").exists()
    assert not AuditRecord.objects.exists()


def test_user_detail_of_another_organisation_is_404(world, client):
    login(client, world.operator_a)
    url = reverse("portal:user-detail", args=[world.operator_b.pk])
    assert client.get(url).status_code == 404
    assert client.post(url, {"op": "deactivate", "organisation": world.org_b.pk}).status_code == 404
    assert (
        client.post(url, {"op": "role", "organisation": world.org_b.pk, "role": "support"}).status_code == 404
    )
    world.operator_b.refresh_from_db()
    assert world.operator_b.is_active is True
    assert Membership.objects.get(user=world.operator_b).role == "operator_admin"
    assert not AuditRecord.objects.exists()


def test_user_detail_changes_role_grants_and_deactivates(world, client):
    login(client, world.operator_a)
    url = reverse("portal:user-detail", args=[world.host_a1.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert "A1" in page.content.decode()

    response = client.post(
        url, {"op": "sites", "organisation": world.org_a.pk, "sites": [world.site_a1.pk, world.site_a2.pk]}
    )
    assert response.status_code == 302
    assert user_site_grants(user=world.host_a1, organisation=world.org_a) == (
        sorted([world.site_a1.pk, world.site_a2.pk]),
        [],
    )
    # A site of another organisation is not a choice of the form: refused, nothing changes.
    client.post(url, {"op": "sites", "organisation": world.org_a.pk, "sites": [world.site_b1.pk]})
    assert user_site_grants(user=world.host_a1, organisation=world.org_a)[0] == sorted(
        [world.site_a1.pk, world.site_a2.pk]
    )

    client.post(url, {"op": "role", "organisation": world.org_a.pk, "role": "support"})
    assert Membership.objects.get(user=world.host_a1).role == "support"

    response = client.post(url, {"op": "deactivate", "organisation": world.org_a.pk}, follow=True)
    world.host_a1.refresh_from_db()
    assert world.host_a1.is_active is False
    assert "host_a1 can no longer log in." in response.content.decode()
    assert list(AuditRecord.objects.order_by("id").values_list("action", flat=True)) == [
        "site_grant.added",
        "membership.changed",
        "user.deactivated",
    ]


def test_deactivating_yourself_is_refused_with_a_message(world, client):
    login(client, world.operator_a)
    url = reverse("portal:user-detail", args=[world.operator_a.pk])
    response = client.post(url, {"op": "deactivate", "organisation": world.org_a.pk}, follow=True)
    assert "You cannot deactivate your own account." in response.content.decode()
    world.operator_a.refresh_from_db()
    assert world.operator_a.is_active is True


def test_audit_log_page_is_scoped_filtered_and_readable(world, client):
    mine = audit_record(
        actor=world.operator_a,
        action="membership.changed",
        obj=world.finance_a,
        organisation_id=world.org_a.pk,
        changes={"role": {"before": "finance", "after": "support"}},
    )
    audit_record(
        actor=world.operator_b, action="admin.change", obj=world.station_b1, changes={"message": "B secret"}
    )
    audit_record(actor=None, action="command.sent", obj=world.station_a1)
    login(client, world.operator_a)
    response = client.get(reverse("portal:audit-log"))
    assert response.status_code == 200
    assert response.context["zone"] == "Europe/Berlin"  # org A's first site
    assert [r.action for r in response.context["page"].object_list] == ["command.sent", "membership.changed"]
    content = response.content.decode()
    assert "B secret" not in content
    assert "&quot;before&quot;: &quot;finance&quot;" in content  # the changes as indented JSON
    filtered = client.get(
        reverse("portal:audit-log"), {"action": "membership.changed", "actor": world.operator_a.pk}
    )
    assert [r.pk for r in filtered.context["page"].object_list] == [mine.pk]
    empty = client.get(reverse("portal:audit-log"), {"since": "2000-01-01", "until": "2000-01-02"})
    assert list(empty.context["page"].object_list) == []
    assert "No audit records match." in empty.content.decode()
    assert client.get(reverse("portal:audit-log"), {"since": "yesterday"}).status_code == 400
