"""/api/v1/users/ and /api/v1/audit-records/: operator admins of the organisation only; others' users are
404 and absent; denied writes change nothing."""

from accounts.models import AuditRecord, Membership, User
from accounts.services import audit_record
from stations.scope import user_site_grants


def test_list_is_scoped(world, api):
    response = api(world.operator_a).get("/api/v1/users/")
    assert response.status_code == 200
    assert [user["username"] for user in response.json()["results"]] == ["finance_a", "host_a1", "operator_a"]
    host = next(user for user in response.json()["results"] if user["username"] == "host_a1")
    assert host["memberships"] == [
        {
            "organisation": world.org_a.pk,
            "organisation_name": "Org A",
            "role": "site_host",
            "sites": [world.site_a1.pk],
            "may_set_prices": [],
        }
    ]
    for user in (world.finance_a, world.host_a1):
        assert api(user).get("/api/v1/users/").status_code == 403


def test_invite(world, api):
    response = api(world.operator_a).post(
        "/api/v1/users/",
        {"email": "new@example.com", "organisation": world.org_a.pk, "role": "finance"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert (response.json()["username"], response.json()["invitation_pending"]) == ("new@example.com", True)
    assert Membership.objects.get(user__username="new@example.com").role == "finance"


def test_invite_refusals(world, api):
    client = api(world.operator_a)
    other = client.post(
        "/api/v1/users/",
        {"email": "n@example.com", "organisation": world.org_b.pk, "role": "finance"},
        format="json",
    )
    assert other.status_code == 404
    duplicate = client.post(
        "/api/v1/users/",
        {"email": "finance_a@example.com", "organisation": world.org_a.pk, "role": "finance"},
        format="json",
    )
    assert (duplicate.status_code, duplicate.json()) == (
        400,
        {"detail": "A user with the email address finance_a@example.com already exists."},
    )
    unknown = client.post(
        "/api/v1/users/",
        {"email": "n@example.com", "organisation": world.org_a.pk, "role": "finance", "is_superuser": True},
        format="json",
    )
    assert unknown.status_code == 400
    denied = api(world.finance_a).post(
        "/api/v1/users/",
        {"email": "n@example.com", "organisation": world.org_a.pk, "role": "finance"},
        format="json",
    )
    assert denied.status_code == 403
    assert not User.objects.filter(username="n@example.com").exists()


def test_detail_and_patch(world, api):
    client = api(world.operator_a)
    assert client.get(f"/api/v1/users/{world.host_a1.pk}/").json()["memberships"][0]["sites"] == [
        world.site_a1.pk
    ]
    response = client.patch(
        f"/api/v1/users/{world.host_a1.pk}/",
        {"sites": [world.site_a2.pk], "may_set_prices": True},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["memberships"][0]["sites"] == [world.site_a2.pk]
    assert user_site_grants(user=world.host_a1, organisation=world.org_a) == (
        [world.site_a2.pk],
        [world.site_a2.pk],
    )
    response = client.patch(
        f"/api/v1/users/{world.finance_a.pk}/", {"role": "support", "is_active": False}, format="json"
    )
    assert (response.json()["memberships"][0]["role"], response.json()["is_active"]) == ("support", False)


def test_patch_is_all_or_nothing(world, api):
    response = api(world.operator_a).patch(
        f"/api/v1/users/{world.operator_a.pk}/", {"role": "operator_admin", "is_active": False}, format="json"
    )
    assert (response.status_code, response.json()) == (
        400,
        {"detail": "You cannot deactivate your own account."},
    )
    response = api(world.operator_a).patch(
        f"/api/v1/users/{world.host_a1.pk}/", {"sites": [world.site_a2.pk], "role": "king"}, format="json"
    )
    assert response.status_code == 400
    assert user_site_grants(user=world.host_a1, organisation=world.org_a) == ([world.site_a1.pk], [])
    assert not AuditRecord.objects.exists()


def test_other_organisations_users_are_404_and_unchanged(world, api):
    client = api(world.operator_a)
    url = f"/api/v1/users/{world.operator_b.pk}/"
    assert client.get(url).status_code == 404
    assert client.patch(url, {"is_active": False, "role": "support"}, format="json").status_code == 404
    world.operator_b.refresh_from_db()
    assert world.operator_b.is_active is True
    assert Membership.objects.get(user=world.operator_b).role == "operator_admin"
    assert (
        api(world.finance_a)
        .patch(f"/api/v1/users/{world.host_a1.pk}/", {"role": "support"}, format="json")
        .status_code
        == 403
    )
    assert Membership.objects.get(user=world.host_a1).role == "site_host"


def test_audit_records(world, api):
    mine = audit_record(actor=world.operator_a, action="admin.change", obj=world.station_a1, changes={"a": 1})
    audit_record(actor=world.operator_b, action="admin.change", obj=world.station_b1)
    response = api(world.operator_a).get("/api/v1/audit-records/")
    assert response.status_code == 200
    assert [(r["id"], r["actor_username"], r["changes"]) for r in response.json()["results"]] == [
        (mine.pk, "operator_a", {"a": 1})
    ]
    assert api(world.operator_a).get("/api/v1/audit-records/?action=user.invited").json()["results"] == []
    assert (
        api(world.operator_a).get(f"/api/v1/audit-records/?organisation={world.org_b.pk}").status_code == 404
    )
    assert api(world.operator_a).get("/api/v1/audit-records/?action=nope").status_code == 400
    assert api(world.finance_a).get("/api/v1/audit-records/").status_code == 403
    assert len(api(world.superuser).get("/api/v1/audit-records/").json()["results"]) == 2
