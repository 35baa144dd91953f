"""Portal certificate pages (issue 16): a station's profile and inventory with renew/revoke for managers, the
organisation's CAs for organisation-wide managers only, and never any key material."""

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from stations.enums import CommandStatus
from stations.models import CertificateAuthority, Command, StationCertificate
from stations.services import certificates as certs

pytestmark = pytest.mark.django_db

NOT_AFTER = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def ca(world) -> CertificateAuthority:
    return certs.ca_create(
        organisation=world.org_a, name="Org A station CA", purpose="charging_station", actor=None
    )


@pytest.fixture
def anchor(world) -> CertificateAuthority:
    """A trust anchor only: the same certificate, no key held here."""
    other = certs.ca_create(organisation=world.org_b, name="scratch", purpose="csms_root", actor=None)
    return CertificateAuthority.objects.create(
        organisation=world.org_a,
        name="Org A CSMS root",
        purpose="csms_root",
        certificate_pem=other.certificate_pem,
        not_after=other.not_after,
    )


@pytest.fixture
def certificate(world, ca) -> StationCertificate:
    return StationCertificate.objects.create(
        organisation=world.org_a,
        station=world.station_a1,
        use="ChargingStationCertificate",
        source="issued",
        status="active",
        issuer_name_hash="a" * 64,
        issuer_key_hash="b" * 64,
        serial_number="1f2e3d",
        subject="CN=A1-CP1,O=Org A",
        not_after=NOT_AFTER,
        certificate_pem="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        issued_by=ca,
    )


def page(client, user, identity="A1-CP1"):
    client.force_login(user)
    return client.get(reverse("portal:station-certificates", args=[identity]))


def state(certificate) -> tuple:
    certificate.refresh_from_db()
    return (certificate.status, certificate.revoked_at, certificate.revocation_reason)


def test_station_page_shows_profile_and_inventory_with_actions_for_a_manager(client, world, certificate):
    world.station_a1.security_profile = 2
    world.station_a1.security_profile_seen = 3
    world.station_a1.save(update_fields=["security_profile", "security_profile_seen"])
    response = page(client, world.operator_a)
    assert response.status_code == 200
    html = response.content.decode()
    assert '<dd data-testid="profile">2</dd>' in html
    assert '<dd data-testid="profile-seen">3</dd>' in html
    assert f'<tr data-certificate="{certificate.pk}">' in html
    for text in ("1f2e3d", "CN=A1-CP1,O=Org A", "Org A station CA", "01 Jun 2027"):
        assert text in html, text
    assert 'data-testid="renew"' in html
    assert reverse("portal:station-certificate-revoke", args=["A1-CP1", certificate.pk]) in html
    assert "BEGIN CERTIFICATE" not in html


@pytest.mark.parametrize("role", ["host_a1", "finance_a"])
def test_roles_without_manage_see_the_inventory_but_no_buttons(client, world, certificate, role):
    response = page(client, getattr(world, role))
    assert response.status_code == 200
    html = response.content.decode()
    assert "1f2e3d" in html
    assert 'data-testid="renew"' not in html
    assert "/revoke/" not in html


def test_another_organisation_gets_404(client, world, certificate):
    assert page(client, world.operator_b).status_code == 404


def test_revoke_by_a_manager(client, world, certificate):
    client.force_login(world.operator_a)
    url = reverse("portal:station-certificate-revoke", args=["A1-CP1", certificate.pk])
    response = client.post(url, {"reason": "key compromised"})
    assert (response.status_code, response["Location"]) == (
        302,
        reverse("portal:station-certificates", args=["A1-CP1"]),
    )
    status, revoked_at, reason = state(certificate)
    assert (status, reason, revoked_at is not None) == ("revoked", "key compromised", True)
    # Twice: a message, nothing changes.
    client.post(url, {"reason": "again"})
    assert state(certificate) == (status, revoked_at, reason)


def test_revoke_without_a_reason_changes_nothing(client, world, certificate):
    client.force_login(world.operator_a)
    before = state(certificate)
    url = reverse("portal:station-certificate-revoke", args=["A1-CP1", certificate.pk])
    assert client.post(url, {"reason": "  "}).status_code == 302
    assert state(certificate) == before


@pytest.mark.parametrize(("role", "status"), [("host_a1", 403), ("finance_a", 403), ("operator_b", 404)])
def test_denied_revoke_and_renew_change_nothing(client, world, certificate, role, status):
    client.force_login(getattr(world, role))
    before = state(certificate)
    revoke = reverse("portal:station-certificate-revoke", args=["A1-CP1", certificate.pk])
    renew = reverse("portal:station-certificate-renew", args=["A1-CP1"])
    assert client.post(revoke, {"reason": "x"}).status_code == status
    assert client.post(renew, {"certificate_type": "ChargingStationCertificate"}).status_code == status
    assert state(certificate) == before
    assert Command.objects.count() == 0


def test_revoke_of_another_stations_certificate_is_404(client, world, certificate):
    client.force_login(world.operator_a)
    url = reverse("portal:station-certificate-revoke", args=["A2-CP1", certificate.pk])
    assert client.post(url, {"reason": "x"}).status_code == 404
    assert state(certificate)[0] == "active"


def renew(client, user):
    client.force_login(user)
    return client.post(
        reverse("portal:station-certificate-renew", args=["A1-CP1"]),
        {"certificate_type": "ChargingStationCertificate"},
        follow=True,
    )


def test_renew_of_an_offline_station_says_so_and_marks_nothing(client, world, certificate):
    world.station_a1.protocol = "ocpp2.0.1"
    world.station_a1.save(update_fields=["protocol"])
    response = renew(client, world.operator_a)
    assert response.status_code == 200
    command = Command.objects.get()
    assert (command.station_id, command.requested_by_id, command.status, command.error_code) == (
        world.station_a1.pk,
        world.operator_a.pk,
        CommandStatus.FAILED,
        "NotConnected",
    )
    assert "Renew: " in response.content.decode()
    certificate.refresh_from_db()
    assert certificate.renewal_requested_at is None


def test_renew_of_a_station_that_never_connected_is_refused_with_the_reason(client, world, certificate):
    response = renew(client, world.operator_a)
    assert "Renew: Station &#x27;A1-CP1&#x27; has never connected" in response.content.decode()
    assert Command.objects.count() == 0


def test_renew_with_an_unknown_type_sends_nothing(client, world):
    client.force_login(world.operator_a)
    client.post(reverse("portal:station-certificate-renew", args=["A1-CP1"]), {"certificate_type": "Nope"})
    assert Command.objects.count() == 0


def test_ca_page_lists_the_organisations_cas_without_keys(client, world, ca, anchor):
    client.force_login(world.operator_a)
    response = client.get(reverse("portal:certificate-authorities"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Org A station CA" in html and "Org A CSMS root" in html
    assert "scratch" not in html  # org B's
    assert certs.fingerprint(ca.certificate_pem) in html
    assert certs.crl_url(ca) in html
    assert certs.crl_url(anchor) not in html  # no key here, so no CRL of ours
    assert "no (trust anchor or external signer)" in html
    assert "PRIVATE KEY" not in html
    assert ca.private_key_encrypted[:40] not in html
    assert "BEGIN CERTIFICATE" not in html


@pytest.mark.parametrize("role", ["host_a1", "finance_a"])
def test_ca_page_is_denied_without_organisation_wide_manage(client, world, ca, role):
    client.force_login(getattr(world, role))
    response = client.get(reverse("portal:certificate-authorities"))
    assert response.status_code == 403
    assert "Org A station CA" not in response.content.decode()


def test_no_page_shows_a_private_key(client, world, ca, certificate):
    client.force_login(world.superuser)
    for url in (
        reverse("portal:station-certificates", args=["A1-CP1"]),
        reverse("portal:certificate-authorities"),
    ):
        html = client.get(url).content.decode()
        assert "PRIVATE KEY" not in html, url
        assert ca.private_key_encrypted[:40] not in html, url


def test_station_page_links_to_its_certificates(client, world):
    client.force_login(world.host_a1)
    html = client.get(reverse("portal:station-detail", args=["A1-CP1"])).content.decode()
    assert f'<a href="{reverse("portal:station-certificates", args=["A1-CP1"])}">Certificates →</a>' in html
    assert "<p>Security profile 1.</p>" in html
