"""User management services: invitations, roles, site grants, deactivation; each audited, each scoped to the
organisations the actor manages (MANAGE_USERS)."""

import re

import pytest
from guardian.shortcuts import get_perms

from accounts.models import AuditRecord, Membership, User
from accounts.selectors import organisation_user_access, organisation_user_list
from accounts.services import membership_set, user_activate, user_deactivate
from cpms.errors import NotFound, PermissionDenied, ValidationFailed
from stations.scope import user_site_grants
from stations.services.site_hosts import user_invite, user_role_set, user_site_grants_set
from tests.factories import SiteFactory, UserFactory


def invite_link(mail) -> str:
    match = re.search(r"https?://[^/\s]+(/portal/invite/[^\s]+/)", mail.body)
    assert match, mail.body
    return match.group(1)


def test_invite_creates_a_member_without_password_and_mails_a_one_time_link(
    world, mailoutbox, client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        user = user_invite(
            actor=world.operator_a,
            organisation=world.org_a,
            email=" New.Staff@Example.com",
            role="operator_staff",
        )

    user.refresh_from_db()
    assert (user.username, user.email, user.is_active, user.has_usable_password()) == (
        "new.staff@example.com",
        "new.staff@example.com",
        True,
        False,
    )
    assert list(Membership.objects.filter(user=user).values_list("organisation_id", "role")) == [
        (world.org_a.pk, "operator_staff")
    ]
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert (mail.to, mail.subject) == (["new.staff@example.com"], "Your invitation to Org A")
    assert "Your username is: new.staff@example.com" in mail.body
    link = invite_link(mail)

    assert client.get(link).status_code == 200
    response = client.post(link, {"new_password1": "a-Long-pass-42", "new_password2": "a-Long-pass-42"})
    assert (response.status_code, response["Location"]) == (302, "/portal/login/")
    user.refresh_from_db()
    assert user.check_password("a-Long-pass-42")

    # The link works once: the token covers the password hash, which just changed.
    again = client.post(link, {"new_password1": "other-Pass-43", "new_password2": "other-Pass-43"})
    assert again.status_code == 404
    assert b"This link is not valid" in again.content
    user.refresh_from_db()
    assert user.check_password("a-Long-pass-42")
    accepted = AuditRecord.objects.get(action="user.invite_accepted")
    assert (accepted.actor_id, accepted.organisation_id, accepted.object_id) == (
        user.pk,
        world.org_a.pk,
        str(user.pk),
    )


def test_invite_is_audited_with_its_exact_content(world):
    user = user_invite(
        actor=world.operator_a,
        organisation=world.org_a,
        email="host@example.com",
        role="site_host",
        sites=[world.site_a2.pk, world.site_a1],
        may_set_prices=True,
    )
    record = AuditRecord.objects.get()
    assert (record.actor_id, record.organisation_id, record.action, record.object_type, record.object_id) == (
        world.operator_a.pk,
        world.org_a.pk,
        "user.invited",
        "accounts.user",
        str(user.pk),
    )
    assert record.changes == {
        "email": "host@example.com",
        "role": "site_host",
        "sites": sorted([world.site_a1.pk, world.site_a2.pk]),
        "may_set_prices": True,
    }
    assert user_site_grants(user=user, organisation=world.org_a) == (
        sorted([world.site_a1.pk, world.site_a2.pk]),
        sorted([world.site_a1.pk, world.site_a2.pk]),
    )


def test_invalid_link_shows_a_clear_page(world, client):
    response = client.get("/portal/invite/MQ/not-a-token/")
    assert response.status_code == 404
    assert b"This link is not valid" in response.content
    assert client.get("/portal/invite/%%%/x/").status_code == 404


def test_a_deactivated_invitee_cannot_use_the_link(
    world, client, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        user = user_invite(
            actor=world.operator_a, organisation=world.org_a, email="x@example.com", role="support"
        )
    user_deactivate(actor=world.operator_a, user=user, organisation=world.org_a)
    assert client.get(invite_link(mailoutbox[0])).status_code == 404


@pytest.mark.parametrize(
    ("email", "role", "sites", "message"),
    [
        (
            "operator_b@example.com",
            "support",
            (),
            "A user with the email address operator_b@example.com already exists.",
        ),
        (
            "OPERATOR_B@example.com",
            "support",
            (),
            "A user with the email address operator_b@example.com already exists.",
        ),
        ("not-an-email", "support", (), "'not-an-email' is not a valid email address."),
        (
            "n@example.com",
            "king",
            (),
            "Unknown role 'king'; expected one of operator_admin, operator_staff, site_host, finance, support.",
        ),
        ("n@example.com", "site_host", (), "A site host needs at least one site."),
        ("n@example.com", "finance", ("A1",), "Sites and 'may set prices' are for site hosts only."),
    ],
)
def test_invite_refusals(world, email, role, sites, message):
    site_ids = [world.site_a1.pk for _ in sites]
    users_before = User.objects.count()
    with pytest.raises(ValidationFailed) as exc:
        user_invite(actor=world.operator_a, organisation=world.org_a, email=email, role=role, sites=site_ids)
    assert exc.value.message == message
    assert User.objects.count() == users_before
    assert not AuditRecord.objects.exists()


def test_invite_with_a_site_of_another_organisation_is_not_found(world):
    with pytest.raises(NotFound):
        user_invite(
            actor=world.operator_a,
            organisation=world.org_a,
            email="n@example.com",
            role="site_host",
            sites=[world.site_b1.pk],
        )
    assert not User.objects.filter(username="n@example.com").exists()


@pytest.mark.parametrize(
    ("actor", "error"),
    [("operator_b", NotFound), ("finance_a", PermissionDenied), ("host_a1", PermissionDenied)],
)
def test_only_operator_admins_of_the_organisation_invite(world, actor, error):
    with pytest.raises(error):
        user_invite(
            actor=getattr(world, actor), organisation=world.org_a, email="n@example.com", role="support"
        )
    assert not User.objects.filter(username="n@example.com").exists()
    assert not AuditRecord.objects.exists()


def test_superuser_may_invite_anywhere(world):
    user = user_invite(actor=world.superuser, organisation=world.org_b, email="n@example.com", role="finance")
    assert Membership.objects.get(user=user).organisation_id == world.org_b.pk


def test_role_change_is_audited_and_leaving_site_host_drops_the_grants(world):
    membership = user_role_set(
        actor=world.operator_a, user=world.host_a1, organisation=world.org_a, role="support"
    )
    assert membership.role == "support"
    assert get_perms(world.host_a1, world.site_a1) == []
    record = AuditRecord.objects.get()
    assert (record.action, record.actor_id, record.organisation_id, record.object_type) == (
        "membership.changed",
        world.operator_a.pk,
        world.org_a.pk,
        "accounts.membership",
    )
    assert record.changes == {
        "role": {"before": "site_host", "after": "support"},
        "sites": {"before": [world.site_a1.pk], "after": []},
        "may_set_prices": {"before": [], "after": []},
    }


def test_setting_the_same_role_changes_and_records_nothing(world):
    user_role_set(actor=world.operator_a, user=world.finance_a, organisation=world.org_a, role="finance")
    assert not AuditRecord.objects.exists()


def test_the_last_operator_admin_keeps_the_role(world):
    with pytest.raises(ValidationFailed) as exc:
        user_role_set(actor=world.operator_a, user=world.operator_a, organisation=world.org_a, role="support")
    assert exc.value.message == "operator_a is the last operator admin of Org A."
    assert Membership.objects.get(user=world.operator_a).role == "operator_admin"
    second = UserFactory(username="second_admin")
    membership_set(user=second, organisation=world.org_a, role="operator_admin")
    user_role_set(actor=second, user=world.operator_a, organisation=world.org_a, role="support")
    assert Membership.objects.get(user=world.operator_a).role == "support"


def test_site_grants_are_set_exactly_and_audited_per_change(world):
    site_a3 = SiteFactory(organisation=world.org_a, name="A3")
    after = user_site_grants_set(
        actor=world.operator_a,
        user=world.host_a1,
        organisation=world.org_a,
        sites=[world.site_a2.pk, site_a3.pk, world.site_a1.pk],
        may_set_prices=True,
    )
    assert after == sorted([world.site_a1.pk, world.site_a2.pk, site_a3.pk])
    records = list(AuditRecord.objects.order_by("id").values_list("action", "changes"))
    assert records == [
        ("site_grant.added", {"sites": sorted([world.site_a2.pk, site_a3.pk]), "may_set_prices": True}),
        (
            "site_grant.changed",
            {"sites": [world.site_a1.pk], "may_set_prices": {"before": False, "after": True}},
        ),
    ]

    user_site_grants_set(
        actor=world.operator_a,
        user=world.host_a1,
        organisation=world.org_a,
        sites=[site_a3.pk],
        may_set_prices=True,
    )
    last = AuditRecord.objects.order_by("-id").first()
    assert (last.action, last.changes) == (
        "site_grant.removed",
        {"sites": sorted([world.site_a1.pk, world.site_a2.pk])},
    )
    assert user_site_grants(user=world.host_a1, organisation=world.org_a) == ([site_a3.pk], [site_a3.pk])
    assert AuditRecord.objects.count() == 3


def test_site_grants_refusals(world):
    with pytest.raises(ValidationFailed):  # an organisation-wide role has no site grants
        user_site_grants_set(
            actor=world.operator_a,
            user=world.finance_a,
            organisation=world.org_a,
            sites=[world.site_a1.pk],
            may_set_prices=False,
        )
    with pytest.raises(NotFound):
        user_site_grants_set(
            actor=world.operator_a,
            user=world.host_a1,
            organisation=world.org_a,
            sites=[world.site_b1.pk],
            may_set_prices=False,
        )
    assert user_site_grants(user=world.host_a1, organisation=world.org_a) == ([world.site_a1.pk], [])
    assert not AuditRecord.objects.exists()


def test_deactivate_is_audited_and_reversible(world):
    user = user_deactivate(actor=world.operator_a, user=world.finance_a, organisation=world.org_a)
    assert user.is_active is False
    world.finance_a.refresh_from_db()
    assert world.finance_a.is_active is False
    record = AuditRecord.objects.get()
    assert (record.action, record.changes, record.object_id) == (
        "user.deactivated",
        {"is_active": {"before": True, "after": False}},
        str(world.finance_a.pk),
    )
    user_activate(actor=world.operator_a, user=world.finance_a, organisation=world.org_a)
    world.finance_a.refresh_from_db()
    assert world.finance_a.is_active is True
    assert AuditRecord.objects.order_by("-id").first().action == "user.activated"


def test_cannot_deactivate_yourself_or_the_last_operator_admin(world):
    with pytest.raises(ValidationFailed) as exc:
        user_deactivate(actor=world.operator_a, user=world.operator_a, organisation=world.org_a)
    assert exc.value.message == "You cannot deactivate your own account."
    with pytest.raises(ValidationFailed) as exc:
        user_deactivate(actor=world.superuser, user=world.operator_a, organisation=world.org_a)
    assert exc.value.message == "operator_a is the last operator admin of Org A."
    world.operator_a.refresh_from_db()
    assert world.operator_a.is_active is True
    assert not AuditRecord.objects.exists()


def test_a_member_of_another_organisation_too_is_not_the_admins_to_deactivate(world):
    membership_set(user=world.finance_a, organisation=world.org_b, role="finance")
    with pytest.raises(PermissionDenied):
        user_deactivate(actor=world.operator_a, user=world.finance_a, organisation=world.org_a)
    world.finance_a.refresh_from_db()
    assert world.finance_a.is_active is True


@pytest.mark.parametrize(
    "call",
    [
        lambda w: user_role_set(actor=w.operator_a, user=w.operator_b, organisation=w.org_b, role="support"),
        lambda w: user_role_set(actor=w.operator_a, user=w.operator_b, organisation=w.org_a, role="support"),
        lambda w: user_deactivate(actor=w.operator_a, user=w.operator_b, organisation=w.org_b),
        lambda w: user_deactivate(actor=w.operator_a, user=w.operator_b, organisation=w.org_a),
        lambda w: user_site_grants_set(
            actor=w.operator_a, user=w.operator_b, organisation=w.org_a, sites=[], may_set_prices=False
        ),
    ],
)
def test_cross_organisation_changes_are_not_found_and_change_nothing(world, call):
    with pytest.raises(NotFound):
        call(world)
    world.operator_b.refresh_from_db()
    assert world.operator_b.is_active is True
    assert list(Membership.objects.filter(user=world.operator_b).values_list("organisation_id", "role")) == [
        (world.org_b.pk, "operator_admin")
    ]
    assert not AuditRecord.objects.exists()


def test_user_list_and_access_are_scoped(world):
    usernames = {user.username for user in organisation_user_list(user=world.operator_a)}
    assert usernames == {"operator_a", "host_a1", "finance_a"}
    assert organisation_user_access(user=world.operator_a, pk=world.finance_a.pk) == world.finance_a
    with pytest.raises(NotFound):
        organisation_user_access(user=world.operator_a, pk=world.operator_b.pk)
    with pytest.raises(PermissionDenied):
        organisation_user_list(user=world.finance_a)
    assert {u.username for u in organisation_user_list(user=world.superuser)} == {
        "operator_a",
        "operator_b",
        "host_a1",
        "finance_a",
    }
