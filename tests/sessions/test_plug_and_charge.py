"""ISO 15118 Plug&Charge (issue 16 acceptance 3) at handler level, on 2.0.1 and through 1.6 DataTransfer:
contracts from a test mobility-operator CA checked against a real OCSP responder (cpms.simulator.pnc, an HTTP
server in a thread built on cryptography's OCSPResponseBuilder), GetCertificateStatus answered from OCSP and
cached, Get15118EVCertificate through the built-in provider, and bad input refused with nothing stored.

The handlers are wired into test-only ChargePoint subclasses the way handlers.py is to wire them
(docs/plug-and-charge.md, "Wiring")."""

import base64
import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from ocpp.charge_point import remove_nones, snake_to_camel_case
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from cpms.ocpp.v16 import plug_and_charge as pnc16
from cpms.ocpp.v16.handlers import V16ChargePoint
from cpms.ocpp.v201 import plug_and_charge as pnc201
from cpms.ocpp.v201.handlers import V201ChargePoint
from cpms.simulator.pnc import PNC_VENDOR_ID, ContractEv, OcspResponder, exi_request_for
from sessions.contract_certificates import (
    ca_signer,
    contract_certificate_issue,
    emaid_for_request,
    ev_certificate_answer_read,
    mo_ca_for_tests_create,
)
from stations.models import OcspResponseCache, StationEvent
from tests.factories import ChargingStationFactory, IdTokenFactory
from tests.ocpp.harness import Harness, inline_db  # noqa: F401

pytestmark = pytest.mark.usefixtures("inline_db")

EMAID = "DETMOC12345678"


class PncV201(V201ChargePoint):
    handlers = {
        **V201ChargePoint.handlers,
        "Authorize": pnc201.authorize(fallback=V201ChargePoint.handlers["Authorize"]),
        "GetCertificateStatus": pnc201.get_certificate_status,
        "Get15118EVCertificate": pnc201.get_15118_ev_certificate,
    }


class PncV16(V16ChargePoint):
    handlers = {
        **V16ChargePoint.handlers,
        "DataTransfer": pnc16.data_transfer(fallback=V16ChargePoint.handlers["DataTransfer"]),
    }


@pytest.fixture
def station():
    return ChargingStationFactory(identity="PNC-1")


@pytest.fixture
def mo_ca(station):
    return mo_ca_for_tests_create(organisation_id=station.organisation_id)


@pytest.fixture
def responder(mo_ca):
    root, key = ca_signer(mo_ca)
    server = OcspResponder(root, key).start()
    yield server
    server.stop()


def contract(mo_ca, url: str, *, emaid: str = EMAID, **kwargs) -> ContractEv:
    root, _key = ca_signer(mo_ca)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = contract_certificate_issue(
        ca=mo_ca, emaid=emaid, public_key=key.public_key(), ocsp_url=url, **kwargs
    )
    return ContractEv(emaid=emaid, certificate=certificate, issuer=root)


@pytest.fixture
def ev(mo_ca, responder, station):
    IdTokenFactory(organisation=station.organisation, value=EMAID, type="eMAID")
    return contract(mo_ca, responder.url)


@pytest.fixture
def cp201(station):
    return Harness(PncV201, station)


@pytest.fixture
def cp16(station):
    return Harness(PncV16, station)


def authorize_answer(frame):
    assert frame[0] == 3, frame
    return frame[2]


# --- 2.0.1 Authorize ---------------------------------------------------------------------------
def test_contract_with_hash_data_accepted_after_a_real_ocsp_request(cp201, ev, responder):
    answer = cp201.call("Authorize", ev.authorize_v201())
    assert answer == [3, "m1", {"idTokenInfo": {"status": "Accepted"}, "certificateStatus": "Accepted"}]
    assert responder.requests_served == 1
    cached = OcspResponseCache.objects.get()
    assert (cached.status, cached.serial_number) == ("good", format(ev.certificate.serial_number, "X"))


def test_contract_certificate_chain_checked_centrally(cp201, ev, responder):
    answer = cp201.call("Authorize", ev.authorize_v201(with_certificate=True))
    assert authorize_answer(answer) == {
        "idTokenInfo": {"status": "Accepted"},
        "certificateStatus": "Accepted",
    }
    assert responder.requests_served == 1


@pytest.mark.parametrize("with_certificate", [False, True])
def test_revoked_contract_refused(cp201, ev, responder, with_certificate):
    responder.revoke(ev.certificate.serial_number)
    answer = cp201.call("Authorize", ev.authorize_v201(with_certificate=with_certificate))
    assert authorize_answer(answer) == {
        "idTokenInfo": {"status": "Invalid"},
        "certificateStatus": "CertificateRevoked",
    }


def test_expired_contract_refused_without_asking(cp201, mo_ca, responder, station):
    IdTokenFactory(organisation=station.organisation, value=EMAID, type="eMAID")
    past = datetime.now(UTC) - timedelta(days=30)
    ev = contract(mo_ca, responder.url, not_before=past, not_after=past + timedelta(days=1))
    answer = cp201.call("Authorize", ev.authorize_v201(with_certificate=True))
    assert authorize_answer(answer) == {
        "idTokenInfo": {"status": "Invalid"},
        "certificateStatus": "CertificateExpired",
    }
    assert responder.requests_served == 0


def test_untrusted_chain_refused(cp201, station, responder):
    other_org_station = ChargingStationFactory(identity="OTHER")
    foreign_ca = mo_ca_for_tests_create(organisation_id=other_org_station.organisation_id, name="Foreign MO")
    IdTokenFactory(organisation=station.organisation, value=EMAID, type="eMAID")
    ev = contract(foreign_ca, responder.url)
    answer = cp201.call("Authorize", ev.authorize_v201(with_certificate=True))
    assert authorize_answer(answer) == {
        "idTokenInfo": {"status": "Invalid"},
        "certificateStatus": "CertChainError",
    }
    assert responder.requests_served == 0


def test_certificate_of_another_emaid_refused(cp201, mo_ca, responder, station):
    IdTokenFactory(organisation=station.organisation, value=EMAID, type="eMAID")
    someone_else = contract(mo_ca, responder.url, emaid="DETMOC99999999")
    payload = someone_else.authorize_v201(with_certificate=True)
    payload["idToken"]["idToken"] = EMAID
    answer = cp201.call("Authorize", payload)
    assert authorize_answer(answer) == {
        "idTokenInfo": {"status": "Invalid"},
        "certificateStatus": "CertChainError",
    }


def test_valid_contract_of_an_unknown_emaid_is_unknown(cp201, mo_ca, responder):
    ev = contract(mo_ca, responder.url, emaid="DETMOC00000001")
    answer = cp201.call("Authorize", ev.authorize_v201())
    assert authorize_answer(answer) == {"idTokenInfo": {"status": "Unknown"}, "certificateStatus": "Accepted"}


class ForgingResponder(OcspResponder):
    """Answers "good" about any certificate, signed by a key of its own (a man in the middle of plain HTTP)."""

    def answer(self, request_der: bytes) -> bytes:
        self.requests_served += 1
        request = ocsp.load_der_ocsp_request(request_der)
        now = datetime.now(UTC).replace(microsecond=0)
        response = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                issuer_name_hash=request.issuer_name_hash,
                issuer_key_hash=request.issuer_key_hash,
                serial_number=request.serial_number,
                algorithm=request.hash_algorithm,
                cert_status=ocsp.OCSPCertStatus.GOOD,
                this_update=now,
                next_update=now + timedelta(hours=1),
                revocation_time=None,
                revocation_reason=None,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, self.issuer)
            .sign(self.issuer_key, hashes.SHA256())
        )
        return response.public_bytes(serialization.Encoding.DER)


def test_ocsp_answer_signed_by_another_key_is_a_signature_error(cp201, ev, station):
    impostor = mo_ca_for_tests_create(organisation_id=ChargingStationFactory(identity="X").organisation_id)
    forger = ForgingResponder(*ca_signer(impostor)).start()
    try:
        payload = ev.authorize_v201()
        payload["iso15118CertificateHashData"][0]["responderURL"] = forger.url
        answer = cp201.call("Authorize", payload)
    finally:
        forger.stop()
    assert forger.requests_served == 1
    assert authorize_answer(answer) == {
        "idTokenInfo": {"status": "Invalid"},
        "certificateStatus": "SignatureError",
    }
    assert OcspResponseCache.objects.count() == 0


def test_unreachable_responder_fails_closed(cp201, ev):
    payload = ev.authorize_v201()
    payload["iso15118CertificateHashData"][0]["responderURL"] = "http://127.0.0.1:9/ocsp"
    answer = cp201.call("Authorize", payload)
    assert authorize_answer(answer) == {
        "idTokenInfo": {"status": "Invalid"},
        "certificateStatus": "NoCertificateAvailable",
    }


def test_eMAID_without_contract_data_is_an_ordinary_token(cp201, station):
    IdTokenFactory(organisation=station.organisation, value=EMAID, type="eMAID")
    answer = cp201.call("Authorize", {"idToken": {"idToken": EMAID, "type": "eMAID"}})
    assert authorize_answer(answer) == {"idTokenInfo": {"status": "Accepted"}}


@pytest.mark.parametrize(
    ("change", "description"),
    [
        (
            {"certificate": "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"},
            "certificate is not a readable X.509 certificate.",
        ),
        ({"certificate": "garbage"}, "certificate holds no PEM certificate."),
        (
            {
                "iso15118CertificateHashData": [
                    {
                        "hashAlgorithm": "SHA256",
                        "issuerNameHash": "zz" * 32,
                        "issuerKeyHash": "00" * 32,
                        "serialNumber": "01",
                        "responderURL": "http://127.0.0.1/",
                    }
                ]
            },
            "iso15118CertificateHashData[0].issuerNameHash must be the SHA256 hash in hex (64 digits).",
        ),
        (
            {
                "iso15118CertificateHashData": [
                    {
                        "hashAlgorithm": "SHA256",
                        "issuerNameHash": "00" * 32,
                        "issuerKeyHash": "00" * 32,
                        "serialNumber": "01",
                        "responderURL": "file:///etc/passwd",
                    }
                ]
            },
            "iso15118CertificateHashData[0].responderURL must be an http or https URL.",
        ),
    ],
)
def test_garbage_contract_data_refused_and_nothing_stored(cp201, ev, responder, change, description):
    payload = {"idToken": {"idToken": EMAID, "type": "eMAID"}, **change}
    answer = cp201.call("Authorize", payload)
    assert answer == [4, "m1", "PropertyConstraintViolation", description, {}]
    assert responder.requests_served == 0
    assert OcspResponseCache.objects.count() == 0


def test_oversized_chain_refused(cp201, ev, responder):
    too_long = ev.authorize_v201(with_certificate=True)
    too_long["certificate"] = ev.certificate_pem * 5
    answer = cp201.call("Authorize", too_long)
    assert answer[:3] == [4, "m1", "PropertyConstraintViolation"]
    assert answer[3] == "certificate holds more than 4 certificates."
    over_schema = {**too_long, "certificate": "A" * 5501}
    assert cp201.call("Authorize", over_schema, unique_id="m2")[2] == "PropertyConstraintViolation"
    assert responder.requests_served == 0
    assert OcspResponseCache.objects.count() == 0


# --- 2.0.1 GetCertificateStatus ------------------------------------------------------------------
def test_certificate_status_from_ocsp_then_from_the_cache(cp201, ev, responder):
    request = {"ocspRequestData": ev.hash_data()[0]}
    first = cp201.call("GetCertificateStatus", request)
    assert first[2]["status"] == "Accepted"
    assert set(first[2]) == {"status", "ocspResult"}
    decoded = ocsp.load_der_ocsp_response(base64.b64decode(first[2]["ocspResult"]))
    assert decoded.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert decoded.serial_number == ev.certificate.serial_number
    assert responder.requests_served == 1

    second = cp201.call("GetCertificateStatus", request, unique_id="m2")
    assert second[2] == first[2]
    assert responder.requests_served == 1  # answered from OcspResponseCache until nextUpdate
    cached = OcspResponseCache.objects.get()
    assert cached.next_update == decoded.next_update_utc


def test_certificate_status_asks_again_after_next_update(cp201, ev, responder):
    request = {"ocspRequestData": ev.hash_data()[0]}
    cp201.call("GetCertificateStatus", request)
    OcspResponseCache.objects.update(next_update=datetime.now(UTC) - timedelta(seconds=1))
    cp201.call("GetCertificateStatus", request, unique_id="m2")
    assert responder.requests_served == 2
    assert OcspResponseCache.objects.count() == 1


def test_certificate_status_failed_when_no_responder(cp201, ev):
    data = {**ev.hash_data()[0], "responderURL": "http://127.0.0.1:9/ocsp"}
    answer = cp201.call("GetCertificateStatus", {"ocspRequestData": data})
    assert answer[2]["status"] == "Failed"
    assert answer[2]["statusInfo"]["reasonCode"] == "OcspUnavailable"
    assert answer[2]["statusInfo"]["additionalInfo"].startswith("OCSP responder not usable: ")
    assert OcspResponseCache.objects.count() == 0


# --- 2.0.1 Get15118EVCertificate -----------------------------------------------------------------
def test_ev_certificate_installed_through_the_test_provider(cp201, mo_ca):
    exi = exi_request_for("car-1")
    request = {"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install", "exiRequest": exi}
    answer = cp201.call("Get15118EVCertificate", request)
    assert answer[2]["status"] == "Accepted"
    contract_certificate, root = ev_certificate_answer_read(answer[2]["exiResponse"])
    mo_root, _key = ca_signer(mo_ca)
    assert root == mo_root
    contract_certificate.verify_directly_issued_by(mo_root)
    emaid = contract_certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert emaid == emaid_for_request(base64.b64decode(exi))
    event = StationEvent.objects.get(kind="certificate_request")
    assert event.detail == {
        "message": "Get15118EVCertificate",
        "action": "Install",
        "iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef",
        "status": "Accepted",
        "provider": "builtin",
        "emaid": emaid,
        "serialNumber": format(contract_certificate.serial_number, "X"),
    }
    # The same request, the same contract key (the provider derives it from the request).
    again = cp201.call("Get15118EVCertificate", request, unique_id="m2")
    assert (
        ev_certificate_answer_read(again[2]["exiResponse"])[0].public_key()
        == contract_certificate.public_key()
    )


def test_ev_certificate_failed_without_a_test_mo_ca(cp201):
    request = {
        "iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef",
        "action": "Install",
        "exiRequest": exi_request_for("car-1"),
    }
    answer = cp201.call("Get15118EVCertificate", request)
    assert answer[2] == {
        "status": "Failed",
        "exiResponse": "",
        "statusInfo": {
            "reasonCode": "ProviderFailed",
            "additionalInfo": "No test mobility-operator CA (an active mo_root authority with a key) in this organisation.",
        },
    }


def test_ev_certificate_hubject_adapter_is_not_configured(cp201, mo_ca, settings):
    settings.PNC_CONTRACT_PROVIDER = "hubject"
    request = {
        "iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef",
        "action": "Update",
        "exiRequest": exi_request_for("car-1"),
    }
    answer = cp201.call("Get15118EVCertificate", request)
    assert answer[2]["status"] == "Failed"
    assert (
        answer[2]["statusInfo"]["additionalInfo"]
        == "The Hubject contract-certificate provider is not configured."
    )
    event = StationEvent.objects.get(kind="certificate_request")
    assert (event.detail["status"], event.detail["reason"]) == (
        "Failed",
        "The Hubject contract-certificate provider is not configured.",
    )


@pytest.mark.parametrize(
    ("exi", "description"),
    [
        ("not base64 at all!", "exiRequest is not base64."),
        ("", "exiRequest is empty."),
    ],
)
def test_garbage_exi_refused(cp201, mo_ca, exi, description):
    request = {"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install", "exiRequest": exi}
    assert cp201.call("Get15118EVCertificate", request) == [
        4,
        "m1",
        "PropertyConstraintViolation",
        description,
        {},
    ]
    assert StationEvent.objects.count() == 0


# --- 1.6 DataTransfer (OCA application note) -----------------------------------------------------
def data_transfer(cp, message_id: str, inner, unique_id: str = "m1"):
    data = inner if isinstance(inner, str) else json.dumps(inner)
    answer = cp.call(
        "DataTransfer", {"vendorId": PNC_VENDOR_ID, "messageId": message_id, "data": data}, unique_id
    )
    assert answer[0] == 3, answer
    return answer[2]


def test_v16_contract_accepted_after_ocsp(cp16, ev, responder):
    answer = cp16.call("DataTransfer", ev.authorize_v16())
    assert answer[2]["status"] == "Accepted"
    assert json.loads(answer[2]["data"]) == {
        "idTokenInfo": {"status": "Accepted"},
        "certificateStatus": "Accepted",
    }
    assert ContractEv.authorize_v16_answer(answer[2]["status"], answer[2]["data"]) == ("Accepted", "Accepted")
    assert responder.requests_served == 1


def test_v16_revoked_contract_refused(cp16, ev, responder):
    responder.revoke(ev.certificate.serial_number)
    answer = data_transfer(cp16, "Authorize", ev.authorize_v201(with_certificate=True))
    assert json.loads(answer["data"]) == {
        "idTokenInfo": {"status": "Invalid"},
        "certificateStatus": "CertificateRevoked",
    }


def test_v16_unknown_emaid_is_invalid_not_unknown(cp16, mo_ca, responder):
    # "Unknown" is a 2.0.1 status only: a 1.6 charger reading an IdTagInfo could not parse it.
    ev = contract(mo_ca, responder.url, emaid="DETMOC00000002")
    answer = data_transfer(
        cp16, "Authorize", {"idToken": ev.emaid, "iso15118CertificateHashData": ev.hash_data()}
    )
    assert json.loads(answer["data"]) == {
        "idTokenInfo": {"status": "Invalid"},
        "certificateStatus": "Accepted",
    }


def test_v16_certificate_status_cached(cp16, ev, responder):
    inner = {"ocspRequestData": ev.hash_data()[0]}
    first = data_transfer(cp16, "GetCertificateStatus", inner)
    second = data_transfer(cp16, "GetCertificateStatus", inner, unique_id="m2")
    assert first == second
    assert json.loads(first["data"])["status"] == "Accepted"
    assert responder.requests_served == 1


def test_v16_ev_certificate_through_the_test_provider(cp16, mo_ca):
    inner = {
        "iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef",
        "action": "Install",
        "exiRequest": exi_request_for("car-2"),
    }
    answer = json.loads(data_transfer(cp16, "Get15118EVCertificate", inner)["data"])
    assert answer["status"] == "Accepted"
    certificate, _root = ev_certificate_answer_read(answer["exiResponse"])
    assert certificate.serial_number > 0


@pytest.mark.parametrize(
    ("message_id", "data", "reason"),
    [
        ("Authorize", "{not json", "data is not JSON."),
        ("Authorize", "[1, 2]", "data must be a JSON object (Authorize request)."),
        (
            "Get15118EVCertificate",
            json.dumps({"iso15118SchemaVersion": "x", "action": "Install", "exiRequest": "%%%"}),
            "exiRequest is not base64.",
        ),
        (
            "GetCertificateStatus",
            json.dumps({"ocspRequestData": {"hashAlgorithm": "MD5"}}),
            "GetCertificateStatus: ocspRequestData: data.ocspRequestData must contain "
            "['issuerKeyHash', 'issuerNameHash', 'responderURL', 'serialNumber'] properties",
        ),
        ("Authorize", "x" * 20000, "data is longer than 16384 characters."),
    ],
)
def test_v16_garbage_rejected_and_nothing_stored(cp16, ev, responder, message_id, data, reason):
    answer = cp16.call("DataTransfer", {"vendorId": PNC_VENDOR_ID, "messageId": message_id, "data": data})
    assert answer[2] == {"status": "Rejected", "data": reason}
    assert responder.requests_served == 0
    assert OcspResponseCache.objects.count() == 0


def test_v16_unknown_message_and_other_vendors(cp16):
    assert cp16.call("DataTransfer", {"vendorId": PNC_VENDOR_ID, "messageId": "Nope"})[2] == {
        "status": "UnknownMessageId"
    }
    other = cp16.call("DataTransfer", {"vendorId": "com.example", "messageId": "Authorize"}, unique_id="m2")
    assert other[2] == {"status": "UnknownVendorId"}


def test_hash_data_matches_the_certificate(ev):
    """The simulator's hash data is what an OCSP request for the certificate names (RFC 6960 CertID)."""
    request = ocsp.OCSPRequestBuilder().add_certificate(ev.certificate, ev.issuer, hashes.SHA256()).build()
    (data,) = ev.hash_data()
    assert data["issuerKeyHash"] == request.issuer_key_hash.hex()
    assert data["issuerNameHash"] == request.issuer_name_hash.hex()
    assert data["serialNumber"] == format(ev.certificate.serial_number, "X")
    assert isinstance(ev.certificate, x509.Certificate)


@pytest.mark.parametrize("with_certificate", [False, True])
def test_simulator_kwargs_are_the_wire_payloads(ev, with_certificate):
    """What the simulated chargers will send through the `ocpp` package (cpms/simulator/pnc.py, "Plugging it
    in") is, on the wire, the payloads the handler tests above send."""
    authorize = call201.Authorize(**ev.authorize_v201_kwargs(with_certificate=with_certificate))
    assert snake_to_camel_case(remove_nones(asdict(authorize))) == ev.authorize_v201(
        with_certificate=with_certificate
    )
    transfer = call16.DataTransfer(**ev.authorize_v16_kwargs(with_certificate=with_certificate))
    assert snake_to_camel_case(remove_nones(asdict(transfer))) == ev.authorize_v16(
        with_certificate=with_certificate
    )


def sub_ca(mo_ca, *, signer_key=None):
    """An MO sub-CA under the test root (signed by `signer_key` instead, for a forged link)."""
    root, root_key = ca_signer(mo_ca)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test MO Sub-CA")]))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(signer_key or root_key, hashes.SHA256())
    )
    return certificate, key


def contract_under(sub_certificate, sub_key, url: str, emaid: str = EMAID) -> ContractEv:
    now = datetime.now(UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, emaid)]))
        .issuer_name(sub_certificate.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=10))
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(url)
                    )
                ]
            ),
            critical=False,
        )
        .sign(sub_key, hashes.SHA256())
    )
    return ContractEv(emaid=emaid, certificate=leaf, issuer=sub_certificate, intermediates=[sub_certificate])


def test_chain_through_a_sub_ca(cp201, mo_ca, station):
    IdTokenFactory(organisation=station.organisation, value=EMAID, type="eMAID")
    sub_certificate, sub_key = sub_ca(mo_ca)
    sub_responder = OcspResponder(sub_certificate, sub_key).start()
    try:
        ev = contract_under(sub_certificate, sub_key, sub_responder.url)
        accepted = cp201.call("Authorize", ev.authorize_v201(with_certificate=True))
        sub_responder.revoke(ev.certificate.serial_number)
        OcspResponseCache.objects.all().delete()
        revoked = cp201.call("Authorize", ev.authorize_v201(with_certificate=True), unique_id="m2")
    finally:
        sub_responder.stop()
    assert accepted[2] == {"idTokenInfo": {"status": "Accepted"}, "certificateStatus": "Accepted"}
    assert revoked[2] == {"idTokenInfo": {"status": "Invalid"}, "certificateStatus": "CertificateRevoked"}
    assert sub_responder.requests_served == 2


def test_forged_sub_ca_is_a_signature_error(cp201, mo_ca, station, responder):
    IdTokenFactory(organisation=station.organisation, value=EMAID, type="eMAID")
    forged, forged_key = sub_ca(mo_ca, signer_key=ec.generate_private_key(ec.SECP256R1()))
    ev = contract_under(forged, forged_key, responder.url)
    answer = cp201.call("Authorize", ev.authorize_v201(with_certificate=True))
    assert answer[2] == {"idTokenInfo": {"status": "Invalid"}, "certificateStatus": "SignatureError"}
    assert responder.requests_served == 0
