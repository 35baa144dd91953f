"""Roaming in the admin: scoped to the organisations the user manages (site settings by site), no credentials
token or hash on any page, partner settings saved through partner_update, actions through the services."""

from dataclasses import dataclass

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditRecord
from cpms.ocpi import client as ocpi_client
from cpms.ocpi.enums import OutboxStatus, PartnerStatus
from cpms.ocpi.models import (
    OcpiAuthorization,
    OcpiClientInfo,
    OcpiCommand,
    OcpiLocation,
    OcpiOutboxItem,
    OcpiPartner,
    OcpiParty,
    OcpiSession,
    OcpiToken,
)
from cpms.ocpi.services import locations, tariffs
from tests.factories import ChargingSessionFactory, IdTokenFactory

ROAMING_MODELS = (
    OcpiParty,
    OcpiPartner,
    OcpiToken,
    OcpiSession,
    OcpiAuthorization,
    OcpiCommand,
    OcpiClientInfo,
    OcpiOutboxItem,
)


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def admin_for():
    """admin_for(user) -> a logged-in admin client; the user is made staff (their role does the rest)."""

    def client_for(user) -> Client:
        if not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        http = Client()
        http.force_login(user)
        return http

    return client_for


def changelist_url(model) -> str:
    return reverse(f"admin:ocpi_{model._meta.model_name}_changelist")


def change_url(obj) -> str:
    return reverse(f"admin:ocpi_{obj._meta.model_name}_change", args=[obj.pk])


def shown_pks(response) -> set:
    return {obj.pk for obj in response.context["cl"].result_list}


@dataclass
class Rows:
    by_org: dict  # organisation pk -> {model: row}


def partner_rows(partner: OcpiPartner, station, site) -> dict:
    """One row of every roaming table that hangs off `partner`."""
    group = IdTokenFactory(organisation=partner.party.organisation, value=f"OCPI-{partner.pk}")
    OcpiPartner.objects.filter(pk=partner.pk).update(id_token_group=group)
    id_token = IdTokenFactory(organisation=partner.party.organisation, value=f"UID-{partner.pk}", group=group)
    now = timezone.now()
    token = OcpiToken.objects.create(
        partner=partner,
        id_token=id_token,
        country_code="DE",
        party_id="EMS",
        uid=id_token.value,
        type="RFID",
        contract_id=f"DE-EMS-C{partner.pk}",
        data={"uid": id_token.value},
        last_updated=now,
    )
    session = ChargingSessionFactory(station=station, id_token=id_token)
    return {
        OcpiParty: partner.party,
        OcpiPartner: partner,
        OcpiToken: token,
        OcpiSession: OcpiSession.objects.create(
            session=session, partner=partner, token=token, auth_method="WHITELIST"
        ),
        OcpiAuthorization: OcpiAuthorization.objects.create(
            partner=partner,
            token=token,
            auth_method="AUTH_REQUEST",
            authorization_reference="ref-1",
            site=site,
        ),
        OcpiCommand: OcpiCommand.objects.create(
            partner=partner,
            command="STOP_SESSION",
            request={"session_id": str(session.pk)},
            response_url="http://emsp.invalid/ocpi/2.2.1/commands/STOP_SESSION/1",
        ),
        OcpiClientInfo: OcpiClientInfo.objects.create(
            partner=partner,
            country_code="FR",
            party_id="XYZ",
            role="EMSP",
            status="CONNECTED",
            last_updated=now,
        ),
        OcpiOutboxItem: OcpiOutboxItem.objects.create(
            partner=partner,
            module="locations",
            object_key=f"location:{site.pk}",
            method="PUT",
            path=f"/NL/AAA/{site.pk}",
            body={"id": str(site.pk)},
            status=OutboxStatus.REFUSED,
            attempts=5,
            last_error="2001 Invalid or missing parameters",
            next_attempt_at=now,
        ),
        OcpiLocation: OcpiLocation.objects.create(site=site, parking_type="ON_STREET"),
    }


@pytest.fixture
def rows(world, roaming) -> Rows:
    return Rows(
        by_org={
            world.org_a.pk: partner_rows(roaming.partner_a, world.station_a1, world.site_a1),
            world.org_b.pk: partner_rows(roaming.partner_b, world.station_b1, world.site_b1),
        }
    )


def secrets(roaming) -> list[str]:
    """Every credentials secret of every partner, in every form it exists in."""
    found = []
    for partner in OcpiPartner.objects.all():
        found += [
            partner.incoming_token_hash,
            partner.outgoing_token_encrypted,
            ocpi_client.outgoing_token(partner),
        ]
    return [*found, roaming.caller_a.token, roaming.caller_a2.token, roaming.caller_b.token]


# --- scope --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ROAMING_MODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("who", ["operator_a", "operator_b"])
def test_each_operator_sees_only_its_organisations_rows(world, rows, admin_for, model, who):
    org = world.org_a if who == "operator_a" else world.org_b
    response = admin_for(getattr(world, who)).get(changelist_url(model))
    assert response.status_code == 200
    expected = {rows.by_org[org.pk][model].pk}
    if model is OcpiPartner and who == "operator_a":
        expected.add(OcpiPartner.objects.get(name="emsp-a2").pk)
    assert shown_pks(response) == expected


@pytest.mark.parametrize("model", ROAMING_MODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("who", ["finance_a", "host_a1"])
def test_roles_without_the_manage_capability_have_no_roaming_admin(world, rows, admin_for, model, who):
    http = admin_for(getattr(world, who))
    assert http.get(changelist_url(model)).status_code == 403
    assert http.get(change_url(rows.by_org[world.org_a.pk][model])).status_code == 403


def test_another_organisations_row_does_not_exist(world, rows, admin_for):
    http = admin_for(world.operator_b)
    for model in ROAMING_MODELS:
        response = http.get(change_url(rows.by_org[world.org_a.pk][model]))
        assert (response.status_code, response["Location"]) == (302, reverse("admin:index")), model.__name__


def test_site_settings_follow_the_site(world, rows, admin_for):
    a1 = rows.by_org[world.org_a.pk][OcpiLocation]
    assert shown_pks(admin_for(world.finance_a).get(changelist_url(OcpiLocation))) == {a1.pk}
    assert shown_pks(admin_for(world.host_a1).get(changelist_url(OcpiLocation))) == {a1.pk}
    assert shown_pks(admin_for(world.operator_b).get(changelist_url(OcpiLocation))) == {
        rows.by_org[world.org_b.pk][OcpiLocation].pk
    }


# --- no secret anywhere -------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["superuser", "operator_a"])
def test_no_token_or_hash_on_any_page(world, roaming, rows, admin_for, who):
    http = admin_for(getattr(world, who))
    pages = [changelist_url(model) for model in (*ROAMING_MODELS, OcpiLocation)]
    pages += [change_url(rows.by_org[world.org_a.pk][model]) for model in (*ROAMING_MODELS, OcpiLocation)]
    pages += [change_url(roaming.partner_a2)]
    forbidden = secrets(roaming)
    for url in pages:
        response = http.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        for secret in forbidden:
            assert secret not in html, url
        for field in ("incoming_token_hash", "outgoing_token", "outbox_lease_until"):
            assert field not in html, (url, field)


def test_a_partner_cannot_be_added_here(world, roaming, admin_for):
    # Its token A is shown once by the API or the portal that create it.
    assert admin_for(world.superuser).get(reverse("admin:ocpi_ocpipartner_add")).status_code == 403
    assert admin_for(world.operator_a).get(reverse("admin:ocpi_ocpipartner_add")).status_code == 403


# --- writes ---------------------------------------------------------------------------------------------------


def partner_form(partner: OcpiPartner, **changes) -> dict:
    data = {
        "name": partner.name,
        "realtime_auth_fallback": partner.realtime_auth_fallback,
        "publish_all_sites": "on",
        "published_sites": [],
        "_save": "Save",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def test_an_operator_changes_a_partners_settings_through_the_service(world, roaming, admin_for):
    partner = roaming.partner_a
    response = admin_for(world.operator_a).post(
        change_url(partner),
        partner_form(
            partner,
            realtime_auth_fallback="ACCEPT",
            allow_charging_profiles="on",
            publish_all_sites=None,
            published_sites=[world.site_a2.pk],
        ),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    partner.refresh_from_db()
    assert (partner.realtime_auth_fallback, partner.allow_charging_profiles, partner.publish_all_sites) == (
        "ACCEPT",
        True,
        False,
    )
    assert list(partner.published_sites.values_list("pk", flat=True)) == [world.site_a2.pk]
    record = AuditRecord.objects.get(action="roaming.partner_changed", object_id=str(partner.pk))
    assert record.changes == {
        "realtime_auth_fallback": "ACCEPT",
        "allow_charging_profiles": True,
        "publish_all_sites": False,
        "name": "emsp-a",
        "published_sites": [world.site_a2.pk],
    }


def test_another_organisations_site_is_not_offered(world, roaming, admin_for):
    partner = roaming.partner_a
    http = admin_for(world.operator_a)
    form = http.get(change_url(partner)).context["adminform"].form
    assert set(form.fields["published_sites"].queryset) == {world.site_a1, world.site_a2}
    response = http.post(change_url(partner), partner_form(partner, published_sites=[world.site_b1.pk]))
    assert response.status_code == 200
    assert "published_sites" in response.context["adminform"].form.errors
    assert list(partner.published_sites.all()) == []


def test_a_post_to_another_organisations_partner_changes_nothing(world, roaming, admin_for):
    partner = roaming.partner_a
    before = list(OcpiPartner.objects.filter(pk=partner.pk).values())
    admin_for(world.operator_b).post(
        change_url(partner), partner_form(partner, realtime_auth_fallback="ACCEPT")
    )
    admin_for(world.finance_a).post(
        change_url(partner), partner_form(partner, realtime_auth_fallback="ACCEPT")
    )
    assert list(OcpiPartner.objects.filter(pk=partner.pk).values()) == before


def run_action(http: Client, action: str, *partners: OcpiPartner):
    return http.post(
        changelist_url(OcpiPartner),
        {"action": action, "_selected_action": [p.pk for p in partners]},
        follow=True,
    )


def test_actions_call_the_services(world, roaming, rows, admin_for, monkeypatch):
    pushed = []
    monkeypatch.setattr(locations, "locations_push_all", lambda p: pushed.append(p.pk) or 2)
    monkeypatch.setattr(tariffs, "tariffs_push_all", lambda p: 1)
    http = admin_for(world.operator_a)
    response = run_action(http, "sync_now", roaming.partner_a)
    assert [str(m) for m in response.context["messages"]] == ["Sync queued: 1 partner(s)."]
    assert pushed == [roaming.partner_a.pk]
    run_action(http, "retry_refused", roaming.partner_a)
    assert OcpiOutboxItem.objects.get(partner=roaming.partner_a).status == OutboxStatus.PENDING
    run_action(http, "suspend", roaming.partner_a, roaming.partner_a2)
    assert set(OcpiPartner.objects.filter(party=roaming.party_a).values_list("status", flat=True)) == {
        PartnerStatus.SUSPENDED
    }
    response = run_action(http, "resume", roaming.partner_a)
    roaming.partner_a.refresh_from_db()
    assert roaming.partner_a.status == PartnerStatus.REGISTERED
    response = run_action(http, "sync_now", roaming.partner_a2)
    assert [str(m) for m in response.context["messages"]] == [
        "emsp-a2: The partner is suspended: resume it first."
    ]


def test_actions_on_another_organisations_partner_do_nothing(world, roaming, rows, admin_for, monkeypatch):
    pushed = []
    monkeypatch.setattr(locations, "locations_push_all", lambda p: pushed.append(p.pk) or 2)
    before = list(OcpiPartner.objects.order_by("pk").values()) + list(
        OcpiOutboxItem.objects.order_by("pk").values()
    )
    for action in ("sync_now", "retry_refused", "suspend"):
        run_action(admin_for(world.operator_b), action, roaming.partner_a)
    assert (
        list(OcpiPartner.objects.order_by("pk").values())
        + list(OcpiOutboxItem.objects.order_by("pk").values())
        == before
    )
    assert pushed == []


def test_an_operator_adds_its_party_upper_cased_once(world, admin_for):
    http = admin_for(world.operator_a)
    data = {
        "organisation": world.org_a.pk,
        "country_code": "nl",
        "party_id": "x1z",
        "name": "Org A",
        "website": "",
    }
    response = http.post(reverse("admin:ocpi_ocpiparty_add"), data)
    assert response.status_code == 302
    party = OcpiParty.objects.get()
    assert (party.organisation, party.country_code, party.party_id) == (world.org_a, "NL", "X1Z")
    response = http.post(reverse("admin:ocpi_ocpiparty_add"), {**data, "party_id": "ZZZ"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "organisation": ["OCPI party with this Organisation already exists."]
    }
    bad = admin_for(world.operator_b).post(reverse("admin:ocpi_ocpiparty_add"), {**data, "party_id": "A-B"})
    assert bad.context["adminform"].form.errors == {
        "organisation": ["Select a valid choice. That choice is not one of the available choices."],
        "party_id": ["Three letters or digits (ISO 15118), e.g. ABC."],
    }
    assert OcpiParty.objects.count() == 1


def test_an_operator_edits_a_sites_ocpi_settings(world, rows, admin_for):
    location = rows.by_org[world.org_a.pk][OcpiLocation]
    http = admin_for(world.operator_a)
    hours = '{"twentyfourseven": false, "regular_hours": [{"weekday": 1, "period_begin": "08:00", "period_end": "20:00"}]}'
    response = http.post(
        change_url(location),
        {
            "publish": "",
            "parking_type": "PARKING_LOT",
            "facilities": ["CAFE", "WIFI"],
            "opening_times": hours,
        },
    )
    assert response.status_code == 302
    location.refresh_from_db()
    assert (location.publish, location.parking_type, location.facilities) == (
        False,
        "PARKING_LOT",
        ["CAFE", "WIFI"],
    )
    assert location.opening_times["regular_hours"][0]["period_end"] == "20:00"
    bad = http.post(
        change_url(location),
        {
            "publish": "on",
            "parking_type": "PARKING_LOT",
            "opening_times": '{"twentyfourseven": false, "regular_hours": [{"weekday": 8, "period_begin": "08:00", "period_end": "20:00"}]}',
        },
    )
    assert bad.status_code == 200
    assert list(bad.context["adminform"].form.errors) == ["opening_times"]
    location.refresh_from_db()
    assert location.publish is False


def test_a_site_host_reads_but_does_not_change_a_sites_ocpi_settings(world, rows, admin_for):
    location = rows.by_org[world.org_a.pk][OcpiLocation]
    http = admin_for(world.host_a1)
    assert http.get(change_url(location)).status_code == 200
    http.post(change_url(location), {"publish": "", "parking_type": "PARKING_LOT", "opening_times": "{}"})
    location.refresh_from_db()
    assert (location.publish, location.parking_type) == (True, "ON_STREET")


def test_the_outbox_is_read_only_and_filterable(world, rows, admin_for):
    item = rows.by_org[world.org_a.pk][OcpiOutboxItem]
    http = admin_for(world.operator_a)
    page = http.get(change_url(item))
    assert page.status_code == 200
    assert "2001 Invalid or missing parameters" in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    assert http.post(change_url(item), {"status": "DELIVERED"}).status_code == 403
    assert OcpiOutboxItem.objects.get(pk=item.pk).status == OutboxStatus.REFUSED
    assert shown_pks(http.get(changelist_url(OcpiOutboxItem) + "?status__exact=DELIVERED")) == set()
    assert shown_pks(
        http.get(changelist_url(OcpiOutboxItem) + "?status__exact=REFUSED&module__exact=locations")
    ) == {item.pk}
