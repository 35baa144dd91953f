"""SignCertificate through a real consumer (channels WebsocketCommunicator), both versions: the charger gets
its answer first, then CertificateSigned from the outbox (the connection's poller), whose certificate chains
to the organisation's CA; its answer supersedes the station's previous certificate."""

import asyncio
import json

import pytest
from cryptography import x509

from stations.models import Command, StationCertificate
from stations.services import certificates as certs
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory
from tests.ocpp.test_consumer import basic, communicator, handshake
from tests.stations.test_certificates import make_csr

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
def test_the_answer_goes_first_then_certificate_signed(world, settings, protocol):
    settings.OCPP_COMMAND_POLL_S = 0.05
    ca = certs.ca_create(organisation=world.org_a, name="A CA", purpose="charging_station", actor=None)
    ChargingStationFactory(identity="CERT-1", site=world.site_a1)
    csr_pem, key = make_csr(cn="CERT-1", o="Org A")
    payload = {"csr": csr_pem}
    if protocol == "ocpp2.0.1":
        payload["certificateType"] = "ChargingStationCertificate"

    async def scenario():
        comm = communicator(
            "CERT-1", headers=[basic("CERT-1", DEFAULT_STATION_PASSWORD)], subprotocols=(protocol,)
        )
        assert await handshake(comm) == ("accepted", protocol)
        await comm.send_to(text_data=json.dumps([2, "sign-1", "SignCertificate", payload]))
        first = json.loads(await comm.receive_from(timeout=5))
        second = json.loads(await comm.receive_from(timeout=5))
        await comm.send_to(text_data=json.dumps([3, second[1], {"status": "Accepted"}]))
        for _ in range(100):
            if await Command.objects.filter(action="CertificateSigned", status="answered").aexists():
                break
            await asyncio.sleep(0.05)
        await comm.disconnect()
        return first, second

    first, second = asyncio.run(scenario())
    assert first == [3, "sign-1", {"status": "Accepted"}]
    assert (second[0], second[2]) == (2, "CertificateSigned")
    [leaf] = x509.load_pem_x509_certificates(second[3]["certificateChain"].encode())
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.certificate_pem.encode()))
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    command = Command.objects.get(action="CertificateSigned")
    assert (command.status, command.response) == ("answered", {"status": "Accepted"})
    issued = StationCertificate.objects.get()
    assert (issued.status, issued.serial_number) == ("active", certs.serial_hex(leaf.serial_number))
