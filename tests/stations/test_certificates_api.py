"""Certificates over the API and the admin: CAs per organisation, a station's inventory, revoke, renew;
denials (another organisation 404/400, site host and finance 403) change nothing; no private key in any
answer, admin page or log line.

Until stations/api/urls.py includes stations.api.urls_certificates and stations/admin.py imports
stations.admin_certificates (the lead's lines), this module serves both itself (pytest.mark.urls)."""

import logging

import pytest
from cryptography.hazmat.primitives import hashes
from django.contrib import admin
from django.test import Client
from django.urls import include, path

import cpms.urls
import stations.admin_certificates  # noqa: F401  (registers the admin classes)
from accounts.models import AuditRecord
from cpms.secret_box import secret_decrypt
from stations.models import CertificateAuthority, ChargingStation, Command, StationCertificate
from stations.services import certificates as certs
from tests.stations.test_certificates import make_csr

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("stations.api.urls")),  # registers the station_identity converter
    path("api/v1/", include("stations.api.urls_certificates")),
    *cpms.urls.urlpatterns,
]

pytestmark = pytest.mark.urls(__name__)


@pytest.fixture
def online(world):
    ChargingStation.objects.filter(identity="A1-CP1").update(is_connected=True, protocol="ocpp1.6")
    ChargingStation.objects.filter(identity="A2-CP1").update(is_connected=True, protocol="ocpp2.0.1")
    world.station_a1.refresh_from_db()
    world.station_a2.refresh_from_db()
    return world


@pytest.fixture
def ca_a(online) -> CertificateAuthority:
    return certs.ca_create(
        organisation=online.org_a, name="A stations", purpose="charging_station", actor=None
    )


@pytest.fixture
def issued(online, ca_a) -> StationCertificate:
    csr_pem, _ = make_csr(cn="A1-CP1", o="Org A")
    outcome = certs.csr_sign(station=online.station_a1, csr_pem=csr_pem)
    assert outcome.accepted, outcome.reason
    assert outcome.certificate is not None
    return outcome.certificate


def key_pem(ca: CertificateAuthority) -> str:
    return secret_decrypt(ca.private_key_encrypted, purpose=certs.KEY_PURPOSE)


def assert_no_key(text: str, ca: CertificateAuthority) -> None:
    assert "PRIVATE KEY" not in text
    body = "".join(key_pem(ca).splitlines()[1:-1])
    assert body  # the key is there to look for
    assert body[:40] not in text.replace("\n", "").replace("\\n", "")
    assert ca.private_key_encrypted[:40] not in text


# --- CAs ---------------------------------------------------------------------------------------------------


def test_operator_creates_lists_and_imports_cas_and_never_sees_a_key(api, online, caplog):
    caplog.set_level(logging.DEBUG)
    client = api(online.operator_a)
    created = client.post(
        "/api/v1/certificate-authorities/",
        {"organisation": online.org_a.pk, "name": "A stations", "purpose": "charging_station"},
        format="json",
    )
    assert created.status_code == 201
    ca = CertificateAuthority.objects.get()
    assert created.json() == {
        "id": ca.pk,
        "organisation": online.org_a.pk,
        "name": "A stations",
        "purpose": "charging_station",
        "certificate_pem": ca.certificate_pem,
        "fingerprint_sha256": certs.fingerprint(ca.certificate_pem),
        "has_key": True,
        "crl_url": f"http://127.0.0.1:8000/pki/ca/{ca.pk}/crl.der",
        "crl_number": 0,
        "active": True,
        "not_after": created.json()["not_after"],
        "created_at": created.json()["created_at"],
    }
    # An operator's own CA with its key: accepted, and the key never comes back.
    own = certs.ca_create(organisation=online.org_b, name="scratch", purpose="v2g", actor=None)
    own_key_pem = key_pem(own)
    imported = client.post(
        "/api/v1/certificate-authorities/import/",
        {
            "organisation": online.org_a.pk,
            "name": "V2G sub-CA",
            "purpose": "v2g",
            "certificate_pem": own.certificate_pem,
            "private_key_pem": own_key_pem,
        },
        format="json",
    )
    assert (imported.status_code, imported.json()["has_key"]) == (201, True)
    listed = client.get("/api/v1/certificate-authorities/")
    assert [item["name"] for item in listed.json()["results"]] == ["A stations", "V2G sub-CA"]
    for text in (created.content.decode(), imported.content.decode(), listed.content.decode(), caplog.text):
        assert_no_key(text, ca)
        assert "PRIVATE KEY" not in text
        assert "".join(own_key_pem.splitlines()[1:-1])[:40] not in text.replace("\\n", "")
    assert AuditRecord.objects.filter(action="certificate.ca_imported").get().changes["with_key"] is True


@pytest.mark.parametrize(
    "actor, code, detail",
    [
        ("finance_a", 403, "You may not manage organisation {org}."),
        ("host_a1", 403, "You may not manage organisation {org}."),
        ("operator_b", 400, "Organisation {org} not found."),
    ],
)
def test_ca_creation_denied_changes_nothing(api, online, actor, code, detail):
    response = api(getattr(online, actor)).post(
        "/api/v1/certificate-authorities/",
        {"organisation": online.org_a.pk, "name": "x", "purpose": "charging_station"},
        format="json",
    )
    assert (response.status_code, response.json()) == (code, {"detail": detail.format(org=online.org_a.pk)})
    assert not CertificateAuthority.objects.exists()


@pytest.mark.parametrize("actor", ["finance_a", "host_a1", "operator_b"])
def test_cas_are_listed_only_to_their_managers(api, online, ca_a, actor):
    response = api(getattr(online, actor)).get("/api/v1/certificate-authorities/")
    assert (response.status_code, response.json()["results"]) == (200, [])


def test_csms_root_rollout_over_the_api(api, online, fake_charger):
    root = certs.ca_create(organisation=online.org_a, name="CSMS root", purpose="csms_root", actor=None)
    fake_charger.answers["InstallCertificate"] = lambda request: {
        "status": "Rejected" if request["certificateType"] == "CSMSRootCertificate" else "Accepted"
    }
    url = f"/api/v1/certificate-authorities/{root.pk}/rollout/"
    assert api(online.host_a1).post(url).status_code == 404
    assert api(online.operator_b).post(url).status_code == 404
    assert fake_charger.received == []
    response = api(online.operator_a).post(url)
    assert (response.status_code, response.json()) == (
        200,
        {"accepted": ["A1-CP1"], "refused": {"A2-CP1": "Rejected"}, "complete": False},
    )


# --- a station's certificates ------------------------------------------------------------------------------


def test_inventory_revoke_and_renew(api, online, issued, fake_charger):
    client = api(online.operator_a)
    listed = client.get("/api/v1/stations/A1-CP1/certificates/")
    [row] = listed.json()["results"]
    assert (row["id"], row["station"], row["use"], row["source"], row["status"], row["serial_number"]) == (
        issued.pk,
        "A1-CP1",
        "ChargingStationCertificate",
        "issued",
        "active",
        issued.serial_number,
    )
    assert "PRIVATE KEY" not in listed.content.decode()

    revoked = client.post(
        f"/api/v1/stations/A1-CP1/certificates/{issued.pk}/revoke/", {"reason": "stolen"}, format="json"
    )
    assert (revoked.status_code, revoked.json()["status"], revoked.json()["revocation_reason"]) == (
        200,
        "revoked",
        "stolen",
    )
    again = client.post(
        f"/api/v1/stations/A1-CP1/certificates/{issued.pk}/revoke/", {"reason": "again"}, format="json"
    )
    assert again.status_code == 409

    renewed = client.post("/api/v1/stations/A2-CP1/certificates/renew/", {}, format="json")
    assert (renewed.status_code, renewed.json()) == (
        200,
        {"action": "TriggerMessage", "status": "answered", "response": {"status": "Accepted"}},
    )
    assert fake_charger.received == [
        ("A2-CP1", "TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})
    ]


@pytest.mark.parametrize(
    "actor, code",
    [("finance_a", 403), ("host_a1", 403), ("operator_b", 404)],
)
def test_revoke_and_renew_denied_change_nothing(api, online, issued, fake_charger, actor, code):
    client = api(getattr(online, actor))
    revoke = client.post(
        f"/api/v1/stations/A1-CP1/certificates/{issued.pk}/revoke/", {"reason": "x"}, format="json"
    )
    renew = client.post("/api/v1/stations/A1-CP1/certificates/renew/", {}, format="json")
    assert (revoke.status_code, renew.status_code) == (code, code)
    assert StationCertificate.objects.get().status == "active"
    assert fake_charger.received == []
    assert not Command.objects.exclude(action="CertificateSigned").exists()


def test_inventory_of_another_organisations_station_is_not_found(api, online, issued):
    assert api(online.operator_b).get("/api/v1/stations/A1-CP1/certificates/").status_code == 404
    assert api(online.host_a1).get("/api/v1/stations/A2-CP1/certificates/").status_code == 404
    # A certificate of another station is not reachable through this one.
    response = api(online.operator_a).post(
        f"/api/v1/stations/A2-CP1/certificates/{issued.pk}/revoke/", {"reason": "x"}, format="json"
    )
    assert response.status_code == 404
    assert StationCertificate.objects.get().status == "active"


# --- the admin ---------------------------------------------------------------------------------------------


def _admin(user) -> Client:
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(user)
    return client


def test_admin_shows_no_key_and_revokes(online, ca_a, issued):
    client = _admin(online.operator_a)
    pages = [
        client.get("/admin/stations/certificateauthority/"),
        client.get(f"/admin/stations/certificateauthority/{ca_a.pk}/change/"),
        client.get("/admin/stations/stationcertificate/"),
        client.get(f"/admin/stations/stationcertificate/{issued.pk}/change/"),
        client.get("/admin/stations/certificateauthority/add/"),
    ]
    assert [page.status_code for page in pages] == [200, 200, 200, 200, 200]
    for page in pages:
        assert_no_key(page.content.decode(), ca_a)
    assert "private_key_encrypted" not in pages[1].content.decode()

    response = client.post(
        "/admin/stations/stationcertificate/",
        {"action": "revoke", "_selected_action": [issued.pk]},
    )
    assert response.status_code == 302
    issued.refresh_from_db()
    assert (issued.status, issued.revocation_reason) == ("revoked", "revoked in the admin by operator_a")


def test_admin_creates_a_ca_through_the_service(online):
    client = _admin(online.operator_a)
    response = client.post(
        "/admin/stations/certificateauthority/add/",
        {
            "organisation": online.org_a.pk,
            "name": "Admin CA",
            "purpose": "csms_root",
            "valid_days": 100,
            "key_type": "ec",
        },
    )
    assert response.status_code == 302
    ca = CertificateAuthority.objects.get()
    assert (ca.name, ca.purpose, bool(ca.private_key_encrypted)) == ("Admin CA", "csms_root", True)
    assert AuditRecord.objects.filter(action="certificate.ca_created").count() == 1


def test_admin_of_another_organisation_sees_nothing(online, ca_a, issued):
    client = _admin(online.operator_b)
    assert client.get(f"/admin/stations/certificateauthority/{ca_a.pk}/change/").status_code == 302
    assert client.get(f"/admin/stations/stationcertificate/{issued.pk}/change/").status_code == 302
    client.post("/admin/stations/stationcertificate/", {"action": "revoke", "_selected_action": [issued.pk]})
    issued.refresh_from_db()
    assert issued.status == "active"


def test_csr_signature_uses_sha256(issued):
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)


def test_the_schema_describes_the_certificate_paths_without_warnings(db, tmp_path):
    import yaml
    from django.core.management import call_command

    target = tmp_path / "schema.yaml"
    # This module is the URL conf here (pytest.mark.urls): its certificate paths are in the schema.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    paths = yaml.safe_load(target.read_text())["paths"]
    assert sorted(path for path in paths if "certificate" in path) == [
        "/api/v1/certificate-authorities/",
        "/api/v1/certificate-authorities/import/",
        "/api/v1/certificate-authorities/{id}/rollout/",
        "/api/v1/stations/{identity}/certificates/",
        "/api/v1/stations/{identity}/certificates/renew/",
        "/api/v1/stations/{identity}/certificates/{id}/revoke/",
    ]
