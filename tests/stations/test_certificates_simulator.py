"""The simulator's side of a station certificate (cpms/simulator/certificates.py): a real CSR that our CA
signs, and a chain installed only when it holds the key the simulator made."""

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cpms.simulator.certificates import CertificateStore
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
