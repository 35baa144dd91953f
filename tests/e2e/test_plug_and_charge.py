"""Plug&Charge end to end (issue 16 acceptance 3) on 2.0.1 and on 1.6 (DataTransfer): a real server process, a
charger speaking raw OCPP over a WebSocket (the simulator's chargers do not send these messages yet:
cpms/simulator/pnc.py says how they will), and a real OCSP responder (cpms.simulator.pnc.OcspResponder, HTTP in
this test process) that the server asks.

A contract from the test MO CA is Accepted after the server's OCSP request, a revoked one refused with
CertificateRevoked, GetCertificateStatus answered from OCSP and then from the cache (the responder is asked
once), and Get15118EVCertificate installs a contract certificate through the built-in provider.

These run once the handlers are wired into cpms/ocpp/v16/handlers.py and cpms/ocpp/v201/handlers.py
(docs/plug-and-charge.md, "Wiring"); until then they are skipped, saying so."""

import asyncio
import base64
import json
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from websockets.asyncio.client import connect

from cpms.ocpp.v16 import plug_and_charge as pnc16
from cpms.ocpp.v16.handlers import V16ChargePoint
from cpms.ocpp.v201 import plug_and_charge as pnc201
from cpms.ocpp.v201.handlers import V201ChargePoint
from cpms.simulator.pnc import PNC_VENDOR_ID, ContractEv, OcspResponder, exi_request_for
from sessions.contract_certificates import (
    ca_signer,
    contract_certificate_issue,
    ev_certificate_answer_read,
    mo_ca_for_tests_create,
)
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory, IdTokenFactory

WIRED = (
    V201ChargePoint.handlers.get("GetCertificateStatus") is pnc201.get_certificate_status
    and V16ChargePoint.handlers.get("DataTransfer").__name__ == "data_transfer_with_pnc"
)
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.xdist_group("e2e"),
    pytest.mark.skipif(not WIRED, reason="Plug&Charge handlers not wired into handlers.py yet"),
]
assert pnc16.PNC_VENDOR_ID == PNC_VENDOR_ID
MAX_FRAMES_PER_CALL = 20


async def _call(connection, action: str, payload: dict) -> list:
    unique_id = str(uuid.uuid4())
    await connection.send(json.dumps([2, unique_id, action, payload]))
    for _ in range(MAX_FRAMES_PER_CALL):
        frame = json.loads(await asyncio.wait_for(connection.recv(), timeout=30))
        if frame[0] == 2:
            await connection.send(json.dumps([4, frame[1], "NotImplemented", "raw test client", {}]))
        elif frame[1] == unique_id:
            return frame
    raise AssertionError(f"{action}: no answer in {MAX_FRAMES_PER_CALL} frames")


@pytest.fixture
def pnc_world(cpms_server):
    """(server, stations by version, good EV, revoked EV, responder)."""
    station_201 = ChargingStationFactory(identity="E2E-PNC-201")
    station_16 = ChargingStationFactory(identity="E2E-PNC-16", organisation=station_201.organisation)
    mo_ca = mo_ca_for_tests_create(organisation_id=station_201.organisation_id)
    root, key = ca_signer(mo_ca)
    responder = OcspResponder(root, key).start()
    evs = []
    for emaid in ("DETMOC00000020", "DETMOC00000021"):
        certificate = contract_certificate_issue(
            ca=mo_ca,
            emaid=emaid,
            public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
            ocsp_url=responder.url,
        )
        evs.append(ContractEv(emaid=emaid, certificate=certificate, issuer=root))
        IdTokenFactory(organisation=station_201.organisation, value=emaid, type="eMAID")
    responder.revoke(evs[1].certificate.serial_number)
    try:
        yield cpms_server, {"2.0.1": station_201, "1.6": station_16}, evs[0], evs[1], responder
    finally:
        responder.stop()


async def _session(server, station, protocol: str, calls: list[tuple[str, dict]]) -> list[list]:
    auth = base64.b64encode(f"{station.identity}:{DEFAULT_STATION_PASSWORD}".encode()).decode()
    subprotocol = "ocpp2.0.1" if protocol == "2.0.1" else "ocpp1.6"
    boot = (
        {"chargingStation": {"vendorName": "CPMS", "model": "PnC"}, "reason": "PowerUp"}
        if protocol == "2.0.1"
        else {"chargePointVendor": "CPMS", "chargePointModel": "PnC"}
    )
    async with connect(
        f"{server.ws_url}/{station.identity}",
        subprotocols=[subprotocol],
        additional_headers={"Authorization": f"Basic {auth}"},
        open_timeout=10,
        proxy=None,
        compression=None,
    ) as connection:
        booted = await _call(connection, "BootNotification", boot)
        assert booted[2]["status"] == "Accepted", booted
        return [await _call(connection, action, payload) for action, payload in calls]


def test_e2e_pnc_v201(pnc_world):
    server, stations, good, revoked, responder = pnc_world
    status_request = {"ocspRequestData": good.hash_data()[0]}
    ev_request = {
        "iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef",
        "action": "Install",
        "exiRequest": exi_request_for("e2e-201"),
    }
    answers = asyncio.run(
        _session(
            server,
            stations["2.0.1"],
            "2.0.1",
            [
                ("Authorize", good.authorize_v201()),
                ("Authorize", revoked.authorize_v201(with_certificate=True)),
                ("GetCertificateStatus", status_request),
                ("GetCertificateStatus", status_request),
                ("Get15118EVCertificate", ev_request),
            ],
        )
    )
    assert [frame[0] for frame in answers] == [3, 3, 3, 3, 3], answers
    assert answers[0][2] == {"idTokenInfo": {"status": "Accepted"}, "certificateStatus": "Accepted"}
    assert answers[1][2] == {"idTokenInfo": {"status": "Invalid"}, "certificateStatus": "CertificateRevoked"}
    assert answers[2][2]["status"] == "Accepted"
    assert answers[3][2] == answers[2][2]
    # Authorize(good) asked once and cached; revoked asked once; GetCertificateStatus(good) from the cache.
    assert responder.requests_served == 2
    assert answers[4][2]["status"] == "Accepted"
    certificate, _root = ev_certificate_answer_read(answers[4][2]["exiResponse"])
    certificate.verify_directly_issued_by(good.issuer)


def test_e2e_pnc_v16_data_transfer(pnc_world):
    server, stations, good, revoked, responder = pnc_world
    status_data = json.dumps({"ocspRequestData": good.hash_data()[0]})
    ev_data = json.dumps(
        {
            "iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef",
            "action": "Install",
            "exiRequest": exi_request_for("e2e-16"),
        }
    )

    def wrapped(message_id: str, data: str) -> tuple[str, dict]:
        return "DataTransfer", {"vendorId": PNC_VENDOR_ID, "messageId": message_id, "data": data}

    answers = asyncio.run(
        _session(
            server,
            stations["1.6"],
            "1.6",
            [
                ("DataTransfer", good.authorize_v16()),
                ("DataTransfer", revoked.authorize_v16()),
                wrapped("GetCertificateStatus", status_data),
                wrapped("GetCertificateStatus", status_data),
                wrapped("Get15118EVCertificate", ev_data),
            ],
        )
    )
    assert [frame[0] for frame in answers] == [3, 3, 3, 3, 3], answers
    assert ContractEv.authorize_v16_answer(answers[0][2]["status"], answers[0][2]["data"]) == (
        "Accepted",
        "Accepted",
    )
    assert ContractEv.authorize_v16_answer(answers[1][2]["status"], answers[1][2]["data"]) == (
        "Invalid",
        "CertificateRevoked",
    )
    assert json.loads(answers[2][2]["data"])["status"] == "Accepted"
    assert answers[3][2] == answers[2][2]
    assert responder.requests_served == 2
    installed = json.loads(answers[4][2]["data"])
    assert installed["status"] == "Accepted"
    certificate, _root = ev_certificate_answer_read(installed["exiResponse"])
    certificate.verify_directly_issued_by(good.issuer)
