"""Admin writes go through the services (the same rules and permission checks as the API)."""

from django.urls import reverse

from accounts.models import Membership, Organisation
from sessions.models import IdToken
from stations.models import ChargingStation, Site
from stations.services.credentials import password_hash_check
from tests.factories import DEFAULT_STATION_PASSWORD, UserFactory
from tests.support import row

NO_EVSES = {"evses-TOTAL_FORMS": 0, "evses-INITIAL_FORMS": 0}


def station_form(station, **changes) -> dict:
    data = {
        "name": station.name,
        "site": station.site_id or "",
        "registration_status": station.registration_status,
        "security_profile": station.security_profile,
        "password": "",
        **NO_EVSES,
    }
    data.update(changes)
    return data


def site_form(site, **changes) -> dict:
    data = {
        "name": site.name,
        "time_zone": site.time_zone,
        "address": site.address,
        "city": site.city,
        "postal_code": site.postal_code,
        "country": site.country,
        "latitude": "",
        "longitude": "",
        "grid_capacity_w": "",
    }
    data.update(changes)
    return data


def change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def test_station_password_is_set_through_the_service(world, admin_client_for):
    client = admin_client_for(world.operator_a)
    response = client.post(
        change_url(world.station_a1), station_form(world.station_a1, password="admin-set-pw1")
    )
    assert response.status_code == 302
    world.station_a1.refresh_from_db()
    assert world.station_a1.password_hash.startswith("hmac-sha256$")
    assert password_hash_check("admin-set-pw1", world.station_a1.password_hash)


def test_an_empty_password_field_keeps_the_password(world, admin_client_for):
    before = row(world.station_a1)
    response = admin_client_for(world.operator_a).post(
        change_url(world.station_a1), station_form(world.station_a1, name="Renamed")
    )
    assert response.status_code == 302
    after = row(world.station_a1)
    assert after["name"] == "Renamed"
    assert after["password_hash"] == before["password_hash"]
    assert password_hash_check(DEFAULT_STATION_PASSWORD, after["password_hash"])


def test_a_weak_password_is_a_form_error(world, admin_client_for):
    before = row(world.station_a1)
    response = admin_client_for(world.operator_a).post(
        change_url(world.station_a1), station_form(world.station_a1, password="short")
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        "Charger password must be 8-64 characters long."
    ]
    assert row(world.station_a1) == before


def test_station_created_in_the_admin(world, admin_client_for):
    response = admin_client_for(world.operator_a).post(
        reverse("admin:stations_chargingstation_add"),
        {
            "identity": "ADMIN-CP-1",
            "name": "Made in admin",
            "organisation": world.org_a.pk,
            "site": world.site_a2.pk,
            "registration_status": "Pending",
            "security_profile": 1,
            "password": "admin-made-pw1",
            **NO_EVSES,
        },
    )
    assert response.status_code == 302
    station = ChargingStation.objects.get(identity="ADMIN-CP-1")
    assert (station.organisation_id, station.site_id, station.registration_status) == (
        world.org_a.pk,
        world.site_a2.pk,
        "Pending",
    )
    assert password_hash_check("admin-made-pw1", station.password_hash)


def test_station_admin_enforces_the_domain_rules(world, admin_client_for):
    client = admin_client_for(world.operator_a)
    base = {
        "name": "",
        "organisation": world.org_a.pk,
        "registration_status": "Accepted",
        "security_profile": 1,
        **NO_EVSES,
    }
    cases = [
        (
            {"identity": "NOPW", "site": world.site_a1.pk},
            "Security profile 1 authenticates with HTTP Basic: set a password.",
        ),
        (
            {"identity": "A/B", "site": world.site_a1.pk, "password": "good-password"},
            "Station identity must not contain '/': it is one segment of the OCPP URL.",
        ),
    ]
    for data, message in cases:
        response = client.post(reverse("admin:stations_chargingstation_add"), {**base, **data})
        assert response.status_code == 200
        assert response.context["adminform"].form.non_field_errors() == [message]
    assert ChargingStation.objects.count() == 3


def test_station_site_moves_within_the_organisation(world, admin_client_for):
    response = admin_client_for(world.operator_a).post(
        change_url(world.station_a1), station_form(world.station_a1, site=world.site_a2.pk)
    )
    assert response.status_code == 302
    assert row(world.station_a1)["site_id"] == world.site_a2.pk


def test_superuser_cannot_put_a_station_on_another_organisations_site(world, admin_client_for):
    before = row(world.station_a1)
    response = admin_client_for(world.superuser).post(
        change_url(world.station_a1), station_form(world.station_a1, site=world.site_b1.pk)
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        f"Site {world.site_b1.pk} belongs to another organisation than station 'A1-CP1'."
    ]
    assert row(world.station_a1) == before


def test_identity_and_organisation_are_read_only_on_change(world, admin_client_for):
    before = row(world.station_a1)
    response = admin_client_for(world.operator_a).post(
        change_url(world.station_a1),
        station_form(world.station_a1, identity="HIJACK", organisation=world.org_b.pk),
    )
    assert response.status_code == 302
    after = row(world.station_a1)
    assert (after["identity"], after["organisation_id"]) == (before["identity"], before["organisation_id"])


def test_accept_registration_action(world, admin_client_for):
    ChargingStation.objects.filter(pk__in=[world.station_a1.pk, world.station_a2.pk]).update(
        registration_status="Pending"
    )
    response = admin_client_for(world.operator_a).post(
        reverse("admin:stations_chargingstation_changelist"),
        {"action": "accept_registration", "_selected_action": [world.station_a1.pk]},
    )
    assert response.status_code == 302
    assert row(world.station_a1)["registration_status"] == "Accepted"
    assert row(world.station_a2)["registration_status"] == "Pending"


def test_finance_has_no_registration_actions(world, admin_client_for):
    ChargingStation.objects.filter(pk=world.station_a1.pk).update(registration_status="Pending")
    client = admin_client_for(world.finance_a)
    response = client.get(reverse("admin:stations_chargingstation_changelist"))
    assert "accept_registration" not in response.content.decode()
    client.post(
        reverse("admin:stations_chargingstation_changelist"),
        {"action": "accept_registration", "_selected_action": [world.station_a1.pk]},
    )
    assert row(world.station_a1)["registration_status"] == "Pending"


def test_site_time_zone_is_checked(world, admin_client_for):
    before = row(world.site_a1)
    response = admin_client_for(world.operator_a).post(
        change_url(world.site_a1), site_form(world.site_a1, time_zone="Europe/Atlantis")
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        "Unknown time zone 'Europe/Atlantis'; use an IANA name such as 'Europe/Berlin'."
    ]
    assert row(world.site_a1) == before


def test_site_created_and_changed_in_the_admin(world, admin_client_for):
    client = admin_client_for(world.operator_a)
    created = client.post(
        reverse("admin:stations_site_add"),
        {**site_form(world.site_a1, name="A3", time_zone="Europe/Vienna"), "organisation": world.org_a.pk},
    )
    assert created.status_code == 302
    site = Site.objects.get(name="A3")
    assert (site.organisation_id, site.time_zone) == (world.org_a.pk, "Europe/Vienna")
    changed = client.post(change_url(site), site_form(site, city="Graz"))
    assert changed.status_code == 302
    assert row(site)["city"] == "Graz"


def test_site_in_an_organisation_the_user_does_not_manage_is_refused(world, admin_client_for):
    response = admin_client_for(world.operator_b).post(
        reverse("admin:stations_site_add"),
        {**site_form(world.site_b1, name="Planted"), "organisation": world.org_a.pk},
    )
    assert response.status_code == 200
    assert "organisation" in response.context["adminform"].form.errors
    assert not Site.objects.filter(name="Planted").exists()


def test_id_token_admin(world, tenants, admin_client_for):
    client = admin_client_for(world.operator_a)
    add = client.get(reverse("admin:charging_idtoken_add"))
    status_choices = [value for value, _ in add.context["adminform"].form.fields["status"].choices]
    assert status_choices == ["Accepted", "Blocked", "Expired", "Invalid"]
    created = client.post(
        reverse("admin:charging_idtoken_add"),
        {
            "organisation": world.org_a.pk,
            "value": "ADMIN-TAG",
            "type": "ISO14443",
            "status": "Accepted",
            "group": tenants.token_a_group.pk,
            "owner_name": "",
            "owner_email": "",
        },
    )
    assert created.status_code == 302
    token = IdToken.objects.get(value="ADMIN-TAG")
    assert (token.organisation_id, token.group_id) == (world.org_a.pk, tenants.token_a_group.pk)
    foreign_group = client.post(
        change_url(token),
        {"value": "ADMIN-TAG", "type": "ISO14443", "status": "Blocked", "group": tenants.token_b.pk},
    )
    assert foreign_group.status_code == 200
    token.refresh_from_db()
    assert (token.status, token.group_id) == ("Accepted", tenants.token_a_group.pk)


def test_organisation_created_by_superuser_through_the_service(world, admin_client_for):
    response = admin_client_for(world.superuser).post(
        reverse("admin:accounts_organisation_add"),
        {"name": "Org C", "slug": "org-c", "auto_register_stations": "on", "currency": "GBP"},
    )
    assert response.status_code == 302
    org = Organisation.objects.get(slug="org-c")
    assert (org.name, org.auto_register_stations, org.currency) == ("Org C", True, "GBP")


def test_operators_cannot_add_or_change_organisations(world, admin_client_for):
    client = admin_client_for(world.operator_a)
    assert client.get(reverse("admin:accounts_organisation_add")).status_code == 403
    before = row(world.org_a)
    assert client.post(change_url(world.org_a), {"name": "Renamed", "slug": "org-a"}).status_code == 403
    assert row(world.org_a) == before


def test_membership_added_through_membership_set(world, admin_client_for):
    newcomer = UserFactory(username="newcomer")
    response = admin_client_for(world.superuser).post(
        reverse("admin:accounts_membership_add"),
        {"user": newcomer.pk, "organisation": world.org_b.pk, "role": "operator_staff"},
    )
    assert response.status_code == 302
    assert Membership.objects.get(user=newcomer).role == "operator_staff"
