"""The simulator's side of a station certificate (cpms/simulator/certificates.py): a real CSR that our CA
signs, and a chain installed only when it holds the key the simulator made."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cpms.simulator.certificates import CertificateStore
from cpms.simulator.csms_commands_v16 import EXTENDED_TRIGGERABLE
from stations.services import certificates as certs
from tests.factories import ChargingStationFactory, OrganisationFactory, SiteFactory


@pytest.fixture
def station(db):
    org = OrganisationFactory(name="Sim Operator", slug="sim")
    certs.ca_create(organisation=org, name="Sim CA", purpose="charging_station", actor=None)
    return ChargingStationFactory(
        identity="SIM-1", site=SiteFactory(organisation=org), protocol="ocpp2.0.1", is_connected=True
    )


def test_the_simulators_csr_is_signed_and_its_chain_installed(station, tmp_path: Path):
    store = CertificateStore()
    csr_pem = store.csr_new("ChargingStationCertificate", identity="SIM-1", organization="Sim Operator")
    outcome = certs.csr_sign(station=station, csr_pem=csr_pem)
    assert (outcome.accepted, outcome.reason) == (True, "")
    assert outcome.command is not None
    chain = outcome.command.request["certificateChain"]

    assert store.accept_signed("ChargingStationCertificate", chain) is True
    assert store.pending_keys == {}
    cert_path, key_path = store.client_files("ChargingStationCertificate", tmp_path / "tls")
    leaf = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    assert leaf.subject.rfc4514_string() == "O=Sim Operator,CN=SIM-1"
    assert key_path.stat().st_mode & 0o777 == 0o600


def test_a_chain_for_another_key_is_refused(station):
    store = CertificateStore()
    other = CertificateStore()
    csr_pem = other.csr_new("ChargingStationCertificate", identity="SIM-1", organization="Sim Operator")
    chain = certs.csr_sign(station=station, csr_pem=csr_pem).command.request["certificateChain"]
    store.csr_new("ChargingStationCertificate", identity="SIM-1", organization="Sim Operator")
    assert store.accept_signed("ChargingStationCertificate", chain) is False
    assert store.signed == {}
    assert store.client_files("ChargingStationCertificate", Path("/nonexistent")) is None


def test_a_csr_without_the_operator_is_refused_by_the_csms(station):
    csr_pem = CertificateStore().csr_new("ChargingStationCertificate", identity="SIM-1", organization="")
    outcome = certs.csr_sign(station=station, csr_pem=csr_pem)
    assert outcome.reason == "The subject has no organizationName; it must be 'Sim Operator'."


def _signed_by_a_test_ca(csr_pem: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")]))
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.skipif(
    "SignChargePointCertificate" not in EXTENDED_TRIGGERABLE,
    reason="the simulator's trigger handlers are wired by the lead (helper 9's report, simulator patch)",
)
@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_the_simulator_answers_the_sign_trigger_with_a_csr_and_installs_its_chain(version):
    from tests.stations.test_simulator_commands import IDENTITY, _run

    async def scenario(csms, charger):
        if version == "1.6":
            trigger = await csms.call(
                "ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"}
            )
        else:
            trigger = await csms.call(
                "TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"}
            )
        [request] = await csms.wait_for("SignCertificate")
        signed = {"certificateChain": _signed_by_a_test_ca(request["csr"])}
        if version == "2.0.1":
            signed["certificateType"] = "ChargingStationCertificate"
        other_csr = CertificateStore().csr_new("x", identity=IDENTITY, organization="Acme")
        wrong = await csms.call(
            "CertificateSigned", {**signed, "certificateChain": _signed_by_a_test_ca(other_csr)}
        )
        right = await csms.call("CertificateSigned", signed)
        return trigger, request, wrong, right

    trigger, request, wrong, right = _run(scenario, version, organization="Acme")
    csr = x509.load_pem_x509_csr(request["csr"].encode())
    assert (trigger, wrong, right) == ({"status": "Accepted"}, {"status": "Rejected"}, {"status": "Accepted"})
    assert (csr.subject.rfc4514_string(), csr.is_signature_valid) == (f"O=Acme,CN={IDENTITY}", True)
    assert request.get("certificateType") == (None if version == "1.6" else "ChargingStationCertificate")
