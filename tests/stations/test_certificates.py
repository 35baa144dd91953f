"""The certificate authority and the station certificate lifecycle (stations/services/certificates.py):
SignCertificate through the OCPP handlers of both versions, CSR refusals that store nothing, delivery of
CertificateSigned to the fake charger and what its answer means, the inventory from
GetInstalledCertificateIds, renewal with a test clock, revocation and the CRL, CSMS root rollout."""

import hashlib
import logging
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from django.utils import timezone

from cpms.ocpp.v16.handlers import V16ChargePoint
from cpms.ocpp.v201.handlers import V201ChargePoint
from cpms.ocpp_wire import certificates as wire
from cpms.ocpp_wire import schemas
from cpms.secret_box import secret_decrypt
from stations.models import (
    CertificateAuthority,
    ChargingStation,
    Command,
    SecurityEvent,
    StationCertificate,
    StationEvent,
)
from stations.services import certificates as certs
from stations.services.commands import command_send
from tests.commands import FakeCharger
from tests.factories import ChargingStationFactory, OrganisationFactory, SiteFactory
from tests.ocpp.harness import Harness, inline_db  # noqa: F401

pytestmark = pytest.mark.usefixtures("inline_db")

HANDLERS = {"ocpp1.6": V16ChargePoint, "ocpp2.0.1": V201ChargePoint}


@pytest.fixture(params=["ocpp1.6", "ocpp2.0.1"])
def protocol(request) -> str:
    return request.param


@pytest.fixture
def org():
    return OrganisationFactory(name="Acme Charging", slug="acme")


@pytest.fixture
def station(org, protocol) -> ChargingStation:
    return ChargingStationFactory(
        identity="CP-1", site=SiteFactory(organisation=org), protocol=protocol, is_connected=True
    )


@pytest.fixture
def ca(org) -> CertificateAuthority:
    return certs.ca_create(organisation=org, name="Acme station CA", purpose="charging_station", actor=None)


def make_csr(
    *, cn: str = "CP-1", o: str | None = "Acme Charging", key=None, sans: list[str] | None = None
) -> tuple[str, object]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if o is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in sans]), critical=False
        )
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key


def sign_request(station, csr_pem: str, unique_id: str = "m1") -> list:
    payload = {"csr": csr_pem}
    if station.protocol == "ocpp2.0.1":
        payload["certificateType"] = "ChargingStationCertificate"
    return Harness(HANDLERS[station.protocol], station).call("SignCertificate", payload, unique_id)


def deliver(charger: FakeCharger) -> Command:
    """What the process holding the station does with the pending command: send it, record the answer."""
    command = Command.objects.select_related("station").get(action="CertificateSigned", status="pending")
    charger.finish(command)
    return Command.objects.get(pk=command.pk)


# --- signing ----------------------------------------------------------------------------------------------


def test_a_csr_is_signed_and_the_certificate_delivered(station, ca):
    csr_pem, key = make_csr()
    assert sign_request(station, csr_pem) == [3, "m1", {"status": "Accepted"}]

    issued = StationCertificate.objects.get()
    assert (issued.station, issued.use, issued.source, issued.status, issued.issued_by) == (
        station,
        "ChargingStationCertificate",
        "issued",
        "active",
        ca,
    )
    command = Command.objects.get()
    assert (command.action, command.status, command.source) == ("CertificateSigned", "pending", "system")
    expected_keys = ["certificateChain"] + (["certificateType"] if station.protocol == "ocpp2.0.1" else [])
    assert sorted(command.request) == expected_keys
    version = station.protocol.removeprefix("ocpp")
    schemas.validate(version, schemas.request_schema(version, "CertificateSigned"), command.request)

    charger = FakeCharger()
    assert deliver(charger).status == "answered"
    [(identity, action, request)] = charger.received
    assert (identity, action) == ("CP-1", "CertificateSigned")
    [leaf] = x509.load_pem_x509_certificates(request["certificateChain"].encode())
    ca_cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
    leaf.verify_directly_issued_by(ca_cert)  # raises if the CA did not sign it
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    assert leaf.subject.rfc4514_string() == "O=Acme Charging,CN=CP-1"
    assert certs.serial_hex(leaf.serial_number) == issued.serial_number
    assert issued.certificate_pem == leaf.public_bytes(serialization.Encoding.PEM).decode()
    crl_points = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert crl_points[0].full_name[0].value == f"http://127.0.0.1:8000/pki/ca/{ca.pk}/crl.der"
    assert StationEvent.objects.get(kind="certificate_request").detail["accepted"] is True
    assert SecurityEvent.objects.filter(station=station, kind="certificate_lifecycle").count() == 2


def test_no_private_key_is_logged_along_the_lifecycle(station, ca, caplog):
    caplog.set_level(logging.DEBUG)
    csr_pem, _ = make_csr()
    sign_request(station, csr_pem)
    sign_request(station, make_csr(cn="CP-2")[0], "m2")
    deliver(FakeCharger())
    certs.certificate_revoke(certificate=StationCertificate.objects.get(), reason="test", actor=None)
    ca_key_pem = secret_decrypt(ca.private_key_encrypted, purpose=certs.KEY_PURPOSE)
    log = caplog.text + "".join(str(event.detail) for event in StationEvent.objects.all())
    assert "certificate_lifecycle" in log  # the lifecycle was logged, without keys
    assert "PRIVATE KEY" not in log
    assert "".join(ca_key_pem.splitlines()[1:-1])[:40] not in log.replace("\n", "")
    assert ca.private_key_encrypted[:40] not in log


def test_an_installed_certificate_supersedes_the_previous_one(station, ca):
    sign_request(station, make_csr()[0])
    deliver(FakeCharger())
    first = StationCertificate.objects.get()
    sign_request(station, make_csr()[0], "m2")
    second = StationCertificate.objects.exclude(pk=first.pk).get()
    # Until the station takes the new one, the old one stays in use.
    assert StationCertificate.objects.get(pk=first.pk).status == "active"
    deliver(FakeCharger())
    assert dict(StationCertificate.objects.values_list("pk", "status")) == {
        first.pk: "superseded",
        second.pk: "active",
    }


def test_a_certificate_the_station_refuses_is_revoked(station, ca):
    sign_request(station, make_csr()[0])
    deliver(FakeCharger(answers={"CertificateSigned": {"status": "Rejected"}}))
    issued = StationCertificate.objects.get()
    assert (issued.status, issued.revocation_reason) == (
        "revoked",
        "refused by the station (CertificateSigned Rejected)",
    )


def _bad_signature_csr() -> str:
    csr_pem, _ = make_csr()
    der = x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER)
    tampered = der[:-8] + bytes(b ^ 0xFF for b in der[-8:])  # the signature's last bytes
    return x509.load_der_x509_csr(tampered).public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: "-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n", "Not a PEM-encoded PKCS#10"),
        (lambda: "A" * 5501, "The CSR is longer than 5500 characters."),
        (_bad_signature_csr, "The CSR's signature does not verify with its own public key."),
        (
            lambda: make_csr(key=rsa.generate_private_key(public_exponent=65537, key_size=1024))[0],  # noqa: S505 (the weak key under test)
            "An RSA key of 1024 bits is too weak (at least 2048).",
        ),
        (
            lambda: make_csr(key=ec.generate_private_key(ec.SECP192R1()))[0],
            "Elliptic curve secp192r1 is not allowed (P-256 or P-384).",
        ),
        (
            lambda: make_csr(cn="CP-2")[0],
            "The subject's commonName must be the station identity 'CP-1', not ['CP-2'].",
        ),
        (
            lambda: make_csr(o="Evil Corp")[0],
            "The subject's organizationName must be 'Acme Charging', not ['Evil Corp'].",
        ),
        (lambda: make_csr(o=None)[0], "The subject has no organizationName; it must be 'Acme Charging'."),
        (
            lambda: make_csr(sans=["CP-1", "CP-2"])[0],
            "The CSR names other identities in subjectAltName: ['CP-2'].",
        ),
    ],
    ids=[
        "malformed",
        "oversized",
        "bad-signature",
        "rsa-1024",
        "p-192",
        "other-cn",
        "other-o",
        "no-o",
        "san",
    ],
)
def test_unacceptable_csrs_are_rejected_and_nothing_is_stored(station, ca, make, reason):
    csr_pem = make()
    outcome = certs.csr_sign(station=station, csr_pem=csr_pem)
    assert (outcome.accepted, outcome.reason[: len(reason)]) == (False, reason)
    if len(csr_pem) <= 5500:  # longer is a schema violation: the frame never reaches the handler
        assert sign_request(station, csr_pem) == [3, "m1", {"status": "Rejected"}]
        assert StationEvent.objects.get(kind="certificate_request").detail["reason"][: len(reason)] == reason
    assert not StationCertificate.objects.exists()
    assert not Command.objects.exists()
    assert not SecurityEvent.objects.filter(kind="certificate_lifecycle").exists()


def test_an_oversized_csr_frame_is_a_callerror_and_stores_nothing(station, ca):
    answer = Harness(HANDLERS[station.protocol], station).call("SignCertificate", {"csr": "A" * 5501})
    assert answer[0] == 4
    assert not StationCertificate.objects.exists()
    assert not Command.objects.exists()


def test_without_a_signing_ca_the_request_is_refused(station, org):
    outcome = certs.csr_sign(station=station, csr_pem=make_csr()[0])
    assert (outcome.accepted, outcome.reason) == (
        False,
        "The organisation has no active charging_station CA.",
    )


def test_an_expired_or_inactive_ca_does_not_sign(station, ca):
    refusal = "The organisation has no active charging_station CA."
    CertificateAuthority.objects.filter(pk=ca.pk).update(not_after=timezone.now() - timedelta(seconds=1))
    assert certs.csr_sign(station=station, csr_pem=make_csr()[0]).reason == refusal
    CertificateAuthority.objects.filter(pk=ca.pk).update(
        not_after=timezone.now() + timedelta(days=1), active=False
    )
    assert certs.csr_sign(station=station, csr_pem=make_csr()[0]).reason == refusal
    assert not StationCertificate.objects.exists()


@pytest.mark.parametrize("protocol", ["ocpp2.0.1"])
def test_a_v2g_request_to_an_external_ca_is_refused_unless_a_signer_is_configured(station, org, settings):
    anchor = certs.ca_create(organisation=org, name="V2G sub-CA", purpose="v2g", actor=None)
    external = certs.ca_import(
        organisation=org,
        name="V2G external",
        purpose="v2g",
        certificate_pem=anchor.certificate_pem,
        actor=None,
    )
    csr_pem = make_csr(cn="SECC-1")[0]
    outcome = certs.csr_sign(station=station, csr_pem=csr_pem, certificate_type="V2GCertificate")
    assert outcome.reason == (
        "CA 'V2G external' is held externally and no signer is configured for v2g "
        "(setting CERTIFICATE_EXTERNAL_SIGNERS)."
    )
    settings.CERTIFICATE_EXTERNAL_SIGNERS = {"v2g": "stations.services.certificates.LocalSigner"}
    # A LocalSigner standing in for the external service cannot read a key we do not hold: its refusal is
    # the answer, and nothing is stored.
    outcome = certs.csr_sign(station=station, csr_pem=csr_pem, certificate_type="V2GCertificate")
    assert outcome.reason == "The key of CA 'V2G external' cannot be read (SECRET_KEY rotated?)."
    assert not StationCertificate.objects.exists()
    assert external.private_key_encrypted == ""


# --- the CA and its key ------------------------------------------------------------------------------------


def test_the_ca_key_is_stored_encrypted_only(org):
    ca = certs.ca_create(
        organisation=org, name="RSA CA", purpose="charging_station", actor=None, key_type="rsa"
    )
    assert "PRIVATE KEY" not in ca.private_key_encrypted
    plain = secret_decrypt(ca.private_key_encrypted, purpose=certs.KEY_PURPOSE)
    key = serialization.load_pem_private_key(plain.encode(), password=None)
    cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
    assert key.key_size == 3072
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


def test_import_checks_the_certificate_and_its_key(org, ca):
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_key_pem = other_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    with pytest.raises(
        certs.ValidationFailed, match=r"^The private key does not belong to the certificate\.$"
    ):
        certs.ca_import(
            organisation=org,
            name="x",
            purpose="charging_station",
            certificate_pem=ca.certificate_pem,
            private_key_pem=other_key_pem,
            actor=None,
        )
    with pytest.raises(
        certs.ValidationFailed, match=r"^private_key_pem is not an unencrypted PEM private key"
    ):
        certs.ca_import(
            organisation=org,
            name="x",
            purpose="charging_station",
            certificate_pem=ca.certificate_pem,
            private_key_pem="-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
            actor=None,
        )
    with pytest.raises(certs.ValidationFailed, match=r"^certificate_pem is not a PEM X\.509 certificate\.$"):
        certs.ca_import(organisation=org, name="x", purpose="mo_root", certificate_pem="nope", actor=None)
    assert CertificateAuthority.objects.count() == 1


# --- inventory from the station's answers --------------------------------------------------------------------


def test_installed_certificates_reported_are_in_the_inventory(station, ca, fake_charger):
    data = {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": "AB12",
        "issuerKeyHash": "CD34",
        "serialNumber": "00F1",
    }
    version = station.protocol.removeprefix("ocpp")
    call = wire.get_installed_certificate_ids(version, use="CSMSRootCertificate")
    if station.protocol == "ocpp1.6":
        assert call.payload == {"certificateType": "CentralSystemRootCertificate"}
        answer = {"status": "Accepted", "certificateHashData": [data]}
    else:
        assert call.payload == {"certificateType": ["CSMSRootCertificate"]}
        answer = {
            "status": "Accepted",
            "certificateHashDataChain": [
                {"certificateType": "CSMSRootCertificate", "certificateHashData": data}
            ],
        }
    fake_charger.answers["GetInstalledCertificateIds"] = answer
    command_send(station=station, call=call, requested_by=None)
    reported = StationCertificate.objects.get()
    assert (reported.use, reported.source, reported.issuer_name_hash, reported.serial_number) == (
        "CSMSRootCertificate",
        "reported",
        "ab12",
        "f1",
    )
    # Asked again, the station no longer lists it: it is gone from the station.
    fake_charger.answers["GetInstalledCertificateIds"] = {"status": "NotFound"}
    command_send(station=station, call=call, requested_by=None)
    assert StationCertificate.objects.get().status == "superseded"


# --- renewal -------------------------------------------------------------------------------------------------


def test_the_expiry_job_asks_for_renewal_once_a_day(station, ca, fake_charger):
    sign_request(station, make_csr()[0])
    deliver(FakeCharger())
    issued = StationCertificate.objects.get()
    before_due = issued.not_after - timedelta(days=31)
    assert certs.certificates_renew_due(now=before_due).requested == []

    due = issued.not_after - timedelta(days=29)
    assert certs.certificates_renew_due(now=due).requested == [issued.pk]
    trigger = (
        ("ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"})
        if station.protocol == "ocpp1.6"
        else ("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})
    )
    assert fake_charger.received == [("CP-1", *trigger)]
    assert StationCertificate.objects.get().renewal_requested_at == due

    assert certs.certificates_renew_due(now=due + timedelta(hours=23)).requested == []
    assert certs.certificates_renew_due(now=due + timedelta(hours=24)).requested == [issued.pk]
    assert len(fake_charger.received) == 2

    ChargingStation.objects.filter(pk=station.pk).update(is_connected=False)
    run = certs.certificates_renew_due(now=due + timedelta(days=3))
    assert (run.requested, run.skipped) == ([], [issued.pk])


def test_the_renewal_task_runs_the_job(station, ca, fake_charger, monkeypatch):
    from stations.tasks_certificates import certificates_renew

    sign_request(station, make_csr()[0])
    deliver(FakeCharger())
    assert certificates_renew() == {"requested": 0, "skipped": 0}
    StationCertificate.objects.update(not_after=timezone.now() + timedelta(days=5))
    assert certificates_renew() == {"requested": 1, "skipped": 0}


# --- revocation and the CRL ----------------------------------------------------------------------------------


def test_revocation_is_in_the_crl(station, ca, client):
    sign_request(station, make_csr()[0])
    issued = StationCertificate.objects.get()
    assert ca.crl_number == 0
    revoked = certs.certificate_revoke(certificate=issued, reason="key compromise", actor=None)
    assert (revoked.status, revoked.revocation_reason) == ("revoked", "key compromise")
    ca.refresh_from_db()
    assert ca.crl_number == 1
    with pytest.raises(certs.Conflict):
        certs.certificate_revoke(certificate=issued, reason="again", actor=None)

    response = client.get(f"/pki/ca/{ca.pk}/crl.der")
    assert (response.status_code, response["Content-Type"]) == (200, "application/pkix-crl")
    crl = x509.load_der_x509_crl(response.content)
    ca_cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
    assert crl.is_signature_valid(ca_cert.public_key())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    assert [certs.serial_hex(r.serial_number) for r in crl] == [issued.serial_number]
    assert client.get("/pki/ca/999999/crl.der").status_code == 404


def test_a_ca_without_key_has_no_crl_here(org, ca, client):
    anchor = certs.ca_import(
        organisation=org, name="anchor", purpose="mo_root", certificate_pem=ca.certificate_pem, actor=None
    )
    assert client.get(f"/pki/ca/{anchor.pk}/crl.der").status_code == 404


# --- CSMS root rollout -------------------------------------------------------------------------------------------


def test_root_rollout_reports_the_stations_that_did_not_accept(org, fake_charger):
    site = SiteFactory(organisation=org)
    ChargingStationFactory(identity="R-16", site=site, protocol="ocpp1.6", is_connected=True)
    ChargingStationFactory(identity="R-201", site=site, protocol="ocpp2.0.1", is_connected=True)
    ChargingStationFactory(identity="R-OFF", site=site, protocol="ocpp2.0.1", is_connected=False)
    root = certs.ca_create(organisation=org, name="CSMS root 2027", purpose="csms_root", actor=None)
    fake_charger.answers["InstallCertificate"] = lambda request: {
        "status": "Accepted" if request["certificateType"] == "CentralSystemRootCertificate" else "Rejected"
    }
    report = certs.csms_root_rollout(organisation=org, certificate=root)
    assert (report.accepted, report.refused, report.complete) == (
        ["R-16"],
        {"R-201": "Rejected", "R-OFF": "Station R-OFF is not connected."},
        False,
    )
    installed = StationCertificate.objects.get()
    assert (installed.station.identity, installed.use, installed.source) == (
        "R-16",
        "CSMSRootCertificate",
        "installed",
    )


def test_hash_data_is_what_ocsp_names(ca):
    cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
    data = certs.hash_data(cert, cert)
    assert data["serial_number"] == format(cert.serial_number, "x")
    assert data["issuer_name_hash"] == hashlib.sha256(cert.issuer.public_bytes()).hexdigest()
