"""Site access rules ("who may charge here"): a restricted site admits only its allowed groups and their
members (1.6 Invalid, 2.0.1 NotAtThisLocation for the others), in the same single query as before; a public
site is unchanged; the service checks the pricing right, validates the groups and audits the change."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AuditRecord
from cpms.errors import NotFound, PermissionDenied, ValidationFailed
from sessions.models import ChargingSession, IdToken, SiteAccessGroup
from sessions.services.local_lists import local_list_desired
from sessions.services.site_access import (
    AUDIT_ACTION,
    SiteAccessRules,
    site_access_group_choices,
    site_access_rules_get,
    site_access_rules_set,
)
from sessions.services.transactions import id_token_authorize
from stations.models import Site
from stations.services.site_hosts import site_host_grant
from tests.factories import IdTokenFactory
from tests.ocpp.dialects import DIALECTS
from tests.ocpp.harness import Harness, inline_db  # noqa: F401
from tests.support import row


@pytest.fixture
def tokens(world):
    """FLEET groups MEMBER; OTHER groups OTHER-MEMBER; LONE belongs to no group. FAR is a member of FLEET
    restricted by its own settings to site A2. B-FLEET is a group of organisation B."""
    fleet = IdTokenFactory(organisation=world.org_a, value="FLEET", owner_name="Acme fleet")
    member = IdTokenFactory(organisation=world.org_a, value="MEMBER", group=fleet)
    other = IdTokenFactory(organisation=world.org_a, value="OTHER")
    other_member = IdTokenFactory(organisation=world.org_a, value="OTHER-MEMBER", group=other)
    lone = IdTokenFactory(organisation=world.org_a, value="LONE")
    far = IdTokenFactory(organisation=world.org_a, value="FAR", group=fleet)
    far.allowed_sites.set([world.site_a2])
    b_fleet = IdTokenFactory(organisation=world.org_b, value="B-FLEET")
    IdTokenFactory(organisation=world.org_b, value="B-MEMBER", group=b_fleet)
    return {
        "fleet": fleet,
        "member": member,
        "other": other,
        "other_member": other_member,
        "lone": lone,
        "far": far,
        "b_fleet": b_fleet,
    }


@pytest.fixture
def restricted(world, tokens):
    """Site A1 restricted to FLEET; site A2 stays public."""
    site_access_rules_set(
        actor=world.operator_a, site=world.site_a1, mode="restricted", group_ids=[tokens["fleet"].pk]
    )


def status_at(world, value: str, station) -> str:
    return id_token_authorize(organisation_id=world.org_a.pk, value=value, station_id=station.pk).status


# --- the rule ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "at_a1", "at_a2"),
    [
        ("FLEET", "Accepted", "Accepted"),  # the group itself
        ("MEMBER", "Accepted", "Accepted"),  # a member of the group
        ("OTHER", "NotAtThisLocation", "Accepted"),
        ("OTHER-MEMBER", "NotAtThisLocation", "Accepted"),
        ("LONE", "NotAtThisLocation", "Accepted"),
        ("FAR", "NotAtThisLocation", "Accepted"),  # in the group, but its own restriction says A2 only
    ],
)
def test_a_restricted_site_admits_its_groups_and_their_members(world, restricted, value, at_a1, at_a2):
    assert (status_at(world, value, world.station_a1), status_at(world, value, world.station_a2)) == (
        at_a1,
        at_a2,
    )


def test_every_token_is_accepted_at_public_sites(world, tokens):
    for value in ("FLEET", "MEMBER", "OTHER", "OTHER-MEMBER", "LONE"):
        assert status_at(world, value, world.station_a1) == "Accepted", value
    assert status_at(world, "FAR", world.station_a1) == "NotAtThisLocation"


def test_groups_kept_on_a_public_site_do_not_restrict_it(world, tokens, restricted):
    rules = site_access_rules_set(
        actor=world.operator_a, site=world.site_a1, mode="public", group_ids=[tokens["fleet"].pk]
    )
    assert rules == SiteAccessRules(site_id=world.site_a1.pk, mode="public", group_ids=(tokens["fleet"].pk,))
    assert status_at(world, "LONE", world.station_a1) == "Accepted"


def test_a_blocked_token_or_group_stays_blocked_at_a_restricted_site(world, tokens, restricted):
    IdToken.objects.filter(pk=tokens["member"].pk).update(status="Blocked")
    assert status_at(world, "MEMBER", world.station_a1) == "Blocked"
    IdToken.objects.filter(pk=tokens["fleet"].pk).update(status="Blocked")
    assert status_at(world, "FAR", world.station_a1) == "Blocked"
    IdToken.objects.filter(pk=tokens["lone"].pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert status_at(world, "LONE", world.station_a1) == "Expired"


@pytest.mark.parametrize("value", ["MEMBER", "LONE", "FAR"])
def test_the_lookup_stays_one_query_at_a_restricted_site(world, restricted, value, django_assert_num_queries):
    with django_assert_num_queries(1):
        id_token_authorize(organisation_id=world.org_a.pk, value=value, station_id=world.station_a1.pk)


def test_the_local_list_of_a_restricted_site_holds_the_allowed_tokens_only(world, tokens, restricted):
    IdToken.objects.filter(organisation=world.org_a).update(in_local_list=True)
    at_a1 = local_list_desired(station=world.station_a1, value_max_length=20)
    at_a2 = local_list_desired(station=world.station_a2, value_max_length=20)
    assert sorted(item.value for item in at_a1.values()) == ["FLEET", "MEMBER"]
    assert sorted(item.value for item in at_a2.values()) == [
        "FAR",
        "FLEET",
        "LONE",
        "MEMBER",
        "OTHER",
        "OTHER-MEMBER",
    ]


# --- through the OCPP handlers -------------------------------------------------------------------------


@pytest.fixture(params=DIALECTS, ids=lambda d: d.name)
def dialect(request):
    return request.param()


def refused(dialect) -> str:
    return "Invalid" if dialect.name == "1.6" else "NotAtThisLocation"


@pytest.mark.usefixtures("inline_db")
def test_authorize_at_a_restricted_site(world, restricted, dialect):
    cp = Harness(dialect.cp_class, world.station_a1)
    assert dialect.token_status(cp.call(*dialect.authorize("LONE"), unique_id="a1")) == refused(dialect)
    assert dialect.token_status(cp.call(*dialect.authorize("MEMBER"), unique_id="a2")) == "Accepted"
    public = Harness(dialect.cp_class, world.station_a2)
    assert dialect.token_status(public.call(*dialect.authorize("LONE"), unique_id="a3")) == "Accepted"


@pytest.mark.usefixtures("inline_db")
def test_start_at_a_restricted_site(world, tokens, restricted, dialect):
    """1.6 StartTransaction, 2.0.1/2.1 TransactionEvent Started with the token."""
    at = timezone.now().replace(microsecond=0) - timedelta(minutes=1)
    answer = Harness(dialect.cp_class, world.station_a1).call(
        *dialect.start("TX-LONE", "LONE", 1000, at), unique_id="s1"
    )
    assert dialect.start_token_status(answer) == refused(dialect)
    session = ChargingSession.objects.get(station=world.station_a1)
    assert (session.id_token_id, session.id_token_status) == (tokens["lone"].pk, "Invalid")

    accepted = Harness(dialect.cp_class, world.station_a1).call(
        *dialect.start("TX-MEMBER", "MEMBER", 1000, at, evse=2), unique_id="s2"
    )
    assert dialect.start_token_status(accepted) == "Accepted"
    public = Harness(dialect.cp_class, world.station_a2).call(
        *dialect.start("TX-PUBLIC", "LONE", 1000, at), unique_id="s3"
    )
    assert dialect.start_token_status(public) == "Accepted"


# --- the service ---------------------------------------------------------------------------------------


def test_set_writes_the_rule_and_an_audit_record(world, tokens):
    rules = site_access_rules_set(
        actor=world.operator_a,
        site=world.site_a1,
        mode="restricted",
        group_ids=[tokens["other"].pk, tokens["fleet"].pk],
    )
    expected_ids = tuple(sorted([tokens["fleet"].pk, tokens["other"].pk]))
    assert rules == SiteAccessRules(site_id=world.site_a1.pk, mode="restricted", group_ids=expected_ids)
    assert Site.objects.get(pk=world.site_a1.pk).access_mode == "restricted"
    assert site_access_rules_get(site=Site.objects.get(pk=world.site_a1.pk)) == rules
    record = AuditRecord.objects.get()
    assert (record.action, record.actor, record.organisation_id, record.object_type, record.object_id) == (
        AUDIT_ACTION,
        world.operator_a,
        world.org_a.pk,
        "stations.site",
        str(world.site_a1.pk),
    )
    assert record.changes == {
        "before": {"mode": "public", "group_ids": []},
        "after": {"mode": "restricted", "group_ids": list(expected_ids)},
    }

    site_access_rules_set(
        actor=world.operator_a, site=world.site_a1, mode="restricted", group_ids=[tokens["other"].pk]
    )
    assert list(SiteAccessGroup.objects.values_list("site_id", "group_id")) == [
        (world.site_a1.pk, tokens["other"].pk)
    ]
    latest = AuditRecord.objects.order_by("-id").first()
    assert latest.changes == {
        "before": {"mode": "restricted", "group_ids": list(expected_ids)},
        "after": {"mode": "restricted", "group_ids": [tokens["other"].pk]},
    }


def test_setting_the_same_rule_again_writes_nothing(world, tokens, restricted):
    site_access_rules_set(
        actor=world.operator_a, site=world.site_a1, mode="restricted", group_ids=[tokens["fleet"].pk]
    )
    assert AuditRecord.objects.count() == 1


@pytest.mark.parametrize(
    ("mode", "groups", "message"),
    [
        ("closed", [], "Unknown access mode 'closed'; expected one of public, restricted."),
        ("restricted", [], "A restricted site needs at least one allowed group: nobody could charge there."),
        ("restricted", ["lone"], "Not group id tokens of this site's organisation: {lone}."),
        ("restricted", ["fleet", "b_fleet"], "Not group id tokens of this site's organisation: {b_fleet}."),
        ("public", [999999], "Not group id tokens of this site's organisation: 999999."),
    ],
)
def test_set_refuses_bad_input_and_changes_nothing(world, tokens, mode, groups, message):
    ids = [tokens[g].pk if isinstance(g, str) else g for g in groups]
    before = row(world.site_a1)
    with pytest.raises(ValidationFailed) as caught:
        site_access_rules_set(actor=world.operator_a, site=world.site_a1, mode=mode, group_ids=ids)
    assert caught.value.message == message.format(lone=tokens["lone"].pk, b_fleet=tokens["b_fleet"].pk)
    assert row(world.site_a1) == before
    assert (SiteAccessGroup.objects.count(), AuditRecord.objects.count()) == (0, 0)


@pytest.mark.parametrize(
    ("actor", "error"),
    [("operator_b", NotFound), ("host_a1", PermissionDenied), ("finance_a", PermissionDenied)],
)
def test_set_needs_the_pricing_right_on_the_site(world, tokens, actor, error):
    before = row(world.site_a1)
    with pytest.raises(error):
        site_access_rules_set(
            actor=getattr(world, actor), site=world.site_a1, mode="restricted", group_ids=[tokens["fleet"].pk]
        )
    assert row(world.site_a1) == before
    assert (SiteAccessGroup.objects.count(), AuditRecord.objects.count()) == (0, 0)


def test_a_site_host_with_the_pricing_grant_sets_the_rule_of_their_site_only(world, tokens):
    site_host_grant(user=world.host_a1, site=world.site_a1, may_set_prices=True)
    rules = site_access_rules_set(
        actor=world.host_a1, site=world.site_a1, mode="restricted", group_ids=[tokens["fleet"].pk]
    )
    assert rules.mode == "restricted"
    with pytest.raises(NotFound):
        site_access_rules_set(
            actor=world.host_a1, site=world.site_a2, mode="restricted", group_ids=[tokens["fleet"].pk]
        )
    assert Site.objects.get(pk=world.site_a2.pk).access_mode == "public"


def test_the_group_choices_are_the_organisations_tokens_with_members(world, tokens):
    assert [t.value for t in site_access_group_choices(site=world.site_a1)] == ["FLEET", "OTHER"]
    assert [t.value for t in site_access_group_choices(site=world.site_b1)] == ["B-FLEET"]
