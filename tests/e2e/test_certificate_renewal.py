"""Issue 16 acceptance 2, end to end through nginx at security profile 3, for a 1.6 and a 2.0.1 simulated
charger: the operator asks for a new certificate over the API, the charger makes a key and sends
SignCertificate with a real CSR, the CSMS's charging-station CA signs it and delivers CertificateSigned, and
the charger's newly written certificate and key connect. The old certificate, revoked over the API, is then
refused at the handshake with a SecurityEvent while the new one still connects.

The reconnection with the new certificate is a new simulated charger started with the files the first one
wrote (`CertificateStore.client_files`): the simulator does not reconnect by itself after CertificateSigned
(OCPP leaves the moment to the station; A02 only says the new certificate is used from the next connection).

The nginx terminator and the server process are those of test_tls_profiles; only the PKI differs: here the
CA is the CSMS's own (`ca_create`, its key encrypted in the database), because it signs the renewal.
"""

import asyncio
import datetime as dt
import hashlib
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cpms.secret_box import secret_decrypt
from cpms.simulator.charger import SimulatedCharger
from cpms.simulator.config import ChargerConfig
from stations.enums import CertificateAuthorityPurpose, CertificateSource, CertificateStatus, CertificateUse
from stations.models import StationCertificate
from stations.services.certificates import ca_create
from tests.e2e import test_tls_profiles
from tests.e2e.helpers import api_post, operator_token
from tests.e2e.test_tls_profiles import OPERATOR, Pki, Terminator, events_of, station_make
from tests.factories import OrganisationFactory
from tests.ocpp.test_transport_security import leaf_make, pem

pytestmark = pytest.mark.xdist_group(name="tls")

# The server process and nginx of acceptance 1 (this module's `pki` replaces theirs).
tls_csms = test_tls_profiles.tls_csms
terminator = test_tls_profiles.terminator

WAIT_S = 20.0
# The certificate type each version's store keeps its own certificate under (1.6's CertificateSigned names
# none: the whitepaper's ChargePointCertificate).
STORE_TYPE = {"1.6": "ChargePointCertificate", "2.0.1": "ChargingStationCertificate"}


@pytest.fixture
def pki(transactional_db, tmp_path) -> Pki:
    """The operator and the charging-station CA the CSMS holds for it (it signs and nginx trusts it)."""
    folder = tmp_path / "pki"
    folder.mkdir()
    organisation = OrganisationFactory(name=OPERATOR)
    authority = ca_create(
        organisation=organisation,
        name="Volt Charging Station CA",
        purpose=CertificateAuthorityPurpose.CHARGING_STATION,
        actor=None,
    )
    ca = x509.load_pem_x509_certificate(authority.certificate_pem.encode())
    ca_key = serialization.load_pem_private_key(
        secret_decrypt(authority.private_key_encrypted, purpose="cpms.ca-key.v1").encode(), password=None
    )
    return Pki(organisation=organisation, ca=ca, ca_key=ca_key, folder=folder)


def issued_record(station, certificate: x509.Certificate, ca: x509.Certificate) -> StationCertificate:
    """The station's first certificate in the inventory, as the CA issued it (hash data as OCPP's
    CertificateHashData: SHA256 of the issuer's name and of its key)."""
    return StationCertificate.objects.create(
        organisation_id=station.organisation_id,
        station=station,
        use=CertificateUse.CHARGING_STATION,
        source=CertificateSource.ISSUED,
        status=CertificateStatus.ACTIVE,
        issuer_name_hash=hashlib.sha256(certificate.issuer.public_bytes()).hexdigest(),
        issuer_key_hash=hashlib.sha256(
            ca.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        ).hexdigest(),
        serial_number=format(certificate.serial_number, "x"),
        subject=certificate.subject.rfc4514_string(),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        certificate_pem=pem(certificate),
    )


def charger_config(
    terminator: Terminator, identity: str, version: str, files: tuple[Path, Path], **extra
) -> ChargerConfig:
    return ChargerConfig(
        url=f"wss://127.0.0.1:{terminator.tls_port}/ocpp",
        identity=identity,
        protocol=version,
        connectors=1,
        tls_ca_file=str(terminator.server_ca),
        tls_cert_file=str(files[0]),
        tls_key_file=str(files[1]),
        organization=OPERATOR,
        response_timeout_s=15,
        **extra,
    )


def connect_once(config: ChargerConfig) -> tuple[bool, int | None, str | None]:
    """Boot and leave: (connected, the handshake's refusal status, failure)."""
    result = asyncio.run(SimulatedCharger(config).run())
    return result.connected, result.refused_status, result.failure


def certificates_of(station) -> list[tuple[str, str]]:
    return list(
        StationCertificate.objects.filter(station=station, use=CertificateUse.CHARGING_STATION)
        .order_by("pk")
        .values_list("serial_number", "status")
    )


async def _until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_renewal_signs_a_real_csr_and_the_old_certificate_is_refused_once_revoked(
    version, pki, terminator, tls_csms, tmp_path
):
    identity = f"CP-RENEW-{version.replace('.', '')}"
    station = station_make(pki, identity, profile=3, password=False)
    old_cert, old_key = leaf_make(pki.ca, pki.ca_key, common_name=identity, organisation=OPERATOR)
    old_record = issued_record(station, old_cert, pki.ca)
    old_files = pki.client_files("old", old_cert, old_key)
    token = operator_token(pki.organisation, "renewal-operator")
    charger = SimulatedCharger(
        charger_config(terminator, identity, version, old_files, duration_s=WAIT_S * 2)
    )

    async def renew() -> tuple[int, dict | None]:
        running = asyncio.create_task(charger.run())
        try:
            await _until(lambda: _booted(charger), "the charger's boot at profile 3")
            answer = await asyncio.to_thread(
                api_post,
                tls_csms,
                f"/api/v1/stations/{identity}/certificates/renew/",
                {},
                token=token,
                timeout_s=30,
            )
            # The new certificate counts once the charger accepted CertificateSigned (the old one is then
            # superseded: certificate_signed_answered).
            await _until(
                lambda: asyncio.to_thread(_superseded, old_record.pk),
                "CertificateSigned accepted by the charger",
            )
            return answer
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)

    status, body = asyncio.run(renew())

    assert status == 200, body
    assert body["status"] == "answered"
    assert body["response"] == {"status": "Accepted"}
    store = charger.protocol_state[version].certificates
    new_files = store.client_files(STORE_TYPE[version], tmp_path / "renewed")
    assert new_files is not None
    new_cert = x509.load_pem_x509_certificates(new_files[0].read_bytes())[0]
    # A real CSR of the charger's own key, signed by the organisation's CA: CN the identity, O the operator.
    assert new_cert.subject.rfc4514_string() == f"O={OPERATOR},CN={identity}"
    assert new_cert.issuer == pki.ca.subject
    new_cert.verify_directly_issued_by(pki.ca)
    assert new_cert.serial_number != old_cert.serial_number
    assert certificates_of(station) == [
        (format(old_cert.serial_number, "x"), CertificateStatus.SUPERSEDED),
        (format(new_cert.serial_number, "x"), CertificateStatus.ACTIVE),
    ]
    assert connect_once(charger_config(terminator, identity, version, new_files)) == (True, None, None)

    revoked = api_post(
        tls_csms,
        f"/api/v1/stations/{identity}/certificates/{old_record.pk}/revoke/",
        {"reason": "replaced by the renewal"},
        token=token,
    )
    with_old = connect_once(charger_config(terminator, identity, version, old_files))
    with_new = connect_once(charger_config(terminator, identity, version, new_files))

    assert revoked[0] == 200
    assert revoked[1]["status"] == CertificateStatus.REVOKED
    assert with_old == (False, 403, "refused at the handshake, HTTP 403")
    assert with_new == (True, None, None)
    new_serial, old_serial = f"{new_cert.serial_number:x}", f"{old_cert.serial_number:x}"
    # The lifecycle audited as SecurityEvents (signed, installed, revoked), then the refusal at the handshake.
    assert events_of(identity) == [
        (
            "certificate_lifecycle",
            f"certificate.issued ChargingStationCertificate serial {new_serial}: issued by Volt Charging Station CA",
            "",
        ),
        (
            "certificate_lifecycle",
            f"certificate.issued ChargingStationCertificate serial {new_serial}: installed by the station",
            "",
        ),
        (
            "certificate_lifecycle",
            f"certificate.revoked ChargingStationCertificate serial {old_serial}: replaced by the renewal",
            "",
        ),
        ("certificate_refused", f"revoked (serial {old_serial})", "127.0.0.1"),
    ]
    assert StationCertificate.objects.get(pk=old_record.pk).revoked_at > dt.datetime.now(
        dt.UTC
    ) - dt.timedelta(minutes=5)


async def _booted(charger: SimulatedCharger) -> bool:
    return charger.client is not None and charger._boot_accepted.is_set()


def _superseded(pk: int) -> bool:
    return StationCertificate.objects.filter(pk=pk, status=CertificateStatus.SUPERSEDED).exists()
