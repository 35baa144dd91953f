"""Plug&Charge against a third-party OCSP responder process: Debian's `openssl ocsp` serving an index.txt in
which one contract certificate is revoked (issue 16 acceptance 3: "a real OCSP request to a real OCSP responder
process"). The same contracts as tests/sessions/test_plug_and_charge.py, the responder not written by us: our
OCSP client, the signature check (here a responder named by its subject, not its key hash) and the cache meet a
standard implementation.

Needs the `openssl` command-line tool (Debian's openssl package, in the base image; .ci/run relies on it)."""

import shutil
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cpms.simulator.pnc import ContractEv
from sessions.contract_certificates import ca_signer, contract_certificate_issue, mo_ca_for_tests_create
from stations.models import OcspResponseCache
from tests.factories import ChargingStationFactory, IdTokenFactory
from tests.ocpp.harness import Harness, inline_db  # noqa: F401
from tests.sessions.test_plug_and_charge import PncV16, PncV201

pytestmark = pytest.mark.usefixtures("inline_db")

OPENSSL = shutil.which("openssl")
GOOD, REVOKED = "DETMOC00000010", "DETMOC00000011"


def _free_port() -> int:
    # Free now; openssl binds it a moment later (a collision fails the start, loudly).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _index_line(certificate: x509.Certificate, revoked_at: datetime | None) -> str:
    """One openssl CA database row: status, expiry, revocation, serial (hex bytes, as BN_bn2hex), file, DN."""
    serial = certificate.serial_number
    serial_hex = serial.to_bytes((serial.bit_length() + 7) // 8, "big").hex().upper()
    expiry = certificate.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
    subject = "".join(
        f"/{attribute.rfc4514_attribute_name}={attribute.value}" for attribute in certificate.subject
    )
    if revoked_at is None:
        return f"V\t{expiry}\t\t{serial_hex}\tunknown\t{subject}\n"
    return f"R\t{expiry}\t{revoked_at.strftime('%y%m%d%H%M%SZ')},keyCompromise\t{serial_hex}\tunknown\t{subject}\n"


@pytest.fixture
def station():
    return ChargingStationFactory(identity="PNC-OPENSSL")


@pytest.fixture
def openssl_responder(station, tmp_path):
    """(url, good EV, revoked EV) with `openssl ocsp` serving the MO CA's index in a separate process."""
    if OPENSSL is None:
        pytest.fail("the openssl command-line tool is needed (Debian package openssl)")
    mo_ca = mo_ca_for_tests_create(organisation_id=station.organisation_id)
    root, root_key = ca_signer(mo_ca)
    url = f"http://127.0.0.1:{_free_port()}/"
    evs = []
    for emaid in (GOOD, REVOKED):
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = contract_certificate_issue(
            ca=mo_ca, emaid=emaid, public_key=key.public_key(), ocsp_url=url
        )
        evs.append(ContractEv(emaid=emaid, certificate=certificate, issuer=root))
        IdTokenFactory(organisation=station.organisation, value=emaid, type="eMAID")
    (tmp_path / "ca.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ca.key").write_bytes(
        root_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    revoked_at = datetime.now(UTC) - timedelta(hours=1)
    (tmp_path / "index.txt").write_text(
        _index_line(evs[0].certificate, None) + _index_line(evs[1].certificate, revoked_at)
    )
    port = url.rsplit(":", 1)[1].strip("/")
    log = tmp_path / "ocsp.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                OPENSSL,
                "ocsp",
                "-index",
                "index.txt",
                "-port",
                port,
                "-CA",
                "ca.pem",
                "-rsigner",
                "ca.pem",
                "-rkey",
                "ca.key",
                "-ndays",
                "1",
                "-ignore_err",
            ],
            cwd=tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        # Ready once it says so: a probe connection would hold up the single-threaded responder.
        deadline = time.monotonic() + 10
        while b"waiting for OCSP client connections" not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"openssl ocsp did not start: {log.read_bytes()!r}")
            time.sleep(0.05)
        yield url, evs[0], evs[1]
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_good_contract_accepted_and_revoked_refused_v201(station, openssl_responder):
    _url, good, revoked = openssl_responder
    cp = Harness(PncV201, station)
    assert cp.call("Authorize", good.authorize_v201())[2] == {
        "idTokenInfo": {"status": "Accepted"},
        "certificateStatus": "Accepted",
    }
    assert cp.call("Authorize", revoked.authorize_v201(with_certificate=True), unique_id="m2")[2] == {
        "idTokenInfo": {"status": "Invalid"},
        "certificateStatus": "CertificateRevoked",
    }
    statuses = dict(OcspResponseCache.objects.values_list("serial_number", "status"))
    assert statuses == {
        format(good.certificate.serial_number, "X"): "good",
        format(revoked.certificate.serial_number, "X"): "revoked",
    }


def test_good_contract_accepted_and_revoked_refused_v16(station, openssl_responder):
    _url, good, revoked = openssl_responder
    cp = Harness(PncV16, station)
    answer = cp.call("DataTransfer", good.authorize_v16())[2]
    assert ContractEv.authorize_v16_answer(answer["status"], answer["data"]) == ("Accepted", "Accepted")
    answer = cp.call("DataTransfer", revoked.authorize_v16(), unique_id="m2")[2]
    assert ContractEv.authorize_v16_answer(answer["status"], answer["data"]) == (
        "Invalid",
        "CertificateRevoked",
    )


def test_certificate_status_from_openssl_then_cached(station, openssl_responder):
    _url, good, _revoked = openssl_responder
    cp = Harness(PncV201, station)
    request = {"ocspRequestData": good.hash_data()[0]}
    first = cp.call("GetCertificateStatus", request)[2]
    assert first["status"] == "Accepted"
    cached = OcspResponseCache.objects.get()
    # openssl's -ndays 1: the answer is kept a day, and the second request is served from the cache.
    assert timedelta(hours=23) < cached.next_update - cached.this_update <= timedelta(days=1)
    fetched_at = cached.fetched_at
    assert cp.call("GetCertificateStatus", request, unique_id="m2")[2] == first
    assert OcspResponseCache.objects.get().fetched_at == fetched_at
