"""Issue 16 acceptance 4, through nginx: the security-profile upgrade 1 -> 2 -> 3 driven from the API
(`POST /api/v1/stations/<identity>/security-profile/upgrade/`) on both versions, with the simulator obeying:

- 1.6 (security whitepaper A05): ChangeConfiguration SecurityProfile accepted, then the charger reconnects at
  it: over wss:// with its password for 2, with its signed certificate and no password for 3;
- 2.0.1 (A05, B09): SetNetworkProfile, SetVariables OCPPCommCtrlr.NetworkConfigurationPriority, Reset; after
  the reset the charger connects with the URL and securityProfile of the first priority slot.

The upgrade to 3 is refused (400, nothing sent) while the station has no valid certificate; the certificate
then comes the way a station gets one (renewal over the API: SignCertificate with the simulator's CSR,
CertificateSigned) before the upgrade to 3 goes through. One charger process does it all: the reconnections
are the simulator's own.
"""

import asyncio
import time
from pathlib import Path

import pytest
from cryptography import x509

from cpms.simulator.charger import Endpoint, SimulatedCharger
from cpms.simulator.config import ChargerConfig
from stations.enums import CertificateStatus, CertificateUse
from stations.models import ChargingStation, Command, StationCertificate
from tests.e2e import test_certificate_renewal, test_tls_profiles
from tests.e2e.helpers import api_post, operator_token
from tests.e2e.test_tls_profiles import OPERATOR, events_of, station_make
from tests.factories import DEFAULT_STATION_PASSWORD

pytestmark = pytest.mark.xdist_group(name="tls")

# The server process and nginx of acceptance 1, the CSMS-held CA of the renewal test (it signs the CSR).
tls_csms = test_tls_profiles.tls_csms
terminator = test_tls_profiles.terminator
pki = test_certificate_renewal.pki

WAIT_S = 20.0
NO_CERTIFICATE = (
    "Security profile 3 needs a valid ChargingStationCertificate on the station (SignCertificate, then "
    "CertificateSigned): none is active in its inventory."
)
UPGRADE_ACTIONS = {
    "1.6": ["ChangeConfiguration"],
    "2.0.1": ["SetNetworkProfile", "SetVariables", "Reset"],
}


async def _until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def _seen(identity: str) -> int:
    return ChargingStation.objects.values_list("security_profile_seen", flat=True).get(identity=identity)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_upgrade_1_to_2_to_3_from_the_api_with_the_simulator_obeying(version, pki, terminator, tls_csms):
    identity = f"CP-UPG-{version.replace('.', '')}"
    station_make(pki, identity, profile=1)
    token = operator_token(pki.organisation, "upgrade-operator")
    tls_base = f"wss://127.0.0.1:{terminator.tls_port}/ocpp/"
    config = ChargerConfig(
        url=f"ws://127.0.0.1:{terminator.plain_port}/ocpp",
        identity=identity,
        protocol=version,
        connectors=1,
        password=DEFAULT_STATION_PASSWORD,
        tls_ca_file=str(terminator.server_ca),
        organization=OPERATOR,
        response_timeout_s=15,
        duration_s=WAIT_S * 3,
    )
    # 1.6 names no URL in the upgrade: the charger knows where its CSMS takes TLS.
    charger = SimulatedCharger(config, tls_url=tls_base)
    path = f"/api/v1/stations/{identity}/security-profile/upgrade/"
    # 2.0.1: the connection profile's URL (the server's OCPP_TLS_URL is not set here).
    extra = {"csms_url": tls_base} if version == "2.0.1" else {}

    def post(url: str, body: dict):
        return asyncio.to_thread(api_post, tls_csms, url, body, token=token, timeout_s=30)

    def connected(times: int):
        return lambda: (
            charger.client is not None
            and charger._boot_accepted.is_set()
            and (charger.result.connections == times)
        )

    async def scenario():
        running = asyncio.create_task(charger.run())
        try:
            await _until(connected(1), "the boot at profile 1")
            refused = await post(path, {"target": 3, **extra})
            to_2 = await post(path, {"target": 2, **extra})
            await _until(connected(2), "the reconnection at profile 2")
            endpoint_2 = charger.endpoint
            renewed = await post(f"/api/v1/stations/{identity}/certificates/renew/", {})
            await _until(
                lambda: (
                    StationCertificate.objects.filter(
                        station__identity=identity,
                        use=CertificateUse.CHARGING_STATION,
                        status=CertificateStatus.ACTIVE,
                    ).exists()
                    and Command.objects.filter(station__identity=identity, action="CertificateSigned")
                    .exclude(response=None)
                    .exists()
                ),
                "CertificateSigned answered",
            )
            to_3 = await post(path, {"target": 3, **extra})
            await _until(connected(3), "the reconnection at profile 3")
            return refused, to_2, endpoint_2, renewed, to_3
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)

    refused, to_2, endpoint_2, renewed, to_3 = asyncio.run(scenario())

    assert refused == (400, {"detail": NO_CERTIFICATE})
    assert to_2[0] == 200, to_2
    assert (to_2[1]["target"], to_2[1]["started"], to_2[1]["refused"]) == (2, True, "")
    assert [command["action"] for command in to_2[1]["commands"]] == UPGRADE_ACTIONS[version]
    assert endpoint_2 == Endpoint(url=tls_base, security_profile=2)
    assert renewed[0] == 200, renewed
    assert to_3[0] == 200, to_3
    assert (to_3[1]["target"], to_3[1]["started"], to_3[1]["refused"]) == (3, True, "")
    assert [command["action"] for command in to_3[1]["commands"]] == UPGRADE_ACTIONS[version]
    assert charger.endpoint.url == tls_base
    assert charger.endpoint.security_profile == 3
    # At 3 it presents the certificate the CSMS signed for it (the one active in the inventory).
    presented = x509.load_pem_x509_certificates(Path(charger.endpoint.cert_file).read_bytes())[0]
    assert StationCertificate.objects.filter(
        station__identity=identity, status=CertificateStatus.ACTIVE
    ).values_list("serial_number", flat=True).get() == format(presented.serial_number, "x")
    if version == "1.6":
        assert charger.protocol_state["1.6"].configuration["SecurityProfile"].value == "3"
    assert charger.result.failure is None
    assert _seen(identity) == 3
    # Every connection was accepted: no refusal on the way (only the certificate's lifecycle is recorded).
    assert [kind for kind, _detail, _addr in events_of(identity)] == ["certificate_lifecycle"] * 2
