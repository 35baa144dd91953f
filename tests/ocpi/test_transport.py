"""The transport rules every module shares (cpms/ocpi/views/base.py): tokens, envelope, routing headers."""

import base64

import orjson
import pytest

from cpms.ocpi.enums import PartnerStatus
from cpms.ocpi.models import OcpiPartner

pytestmark = pytest.mark.django_db


def _body(response):
    return orjson.loads(response.content)


def test_versions_answer_in_the_envelope_and_echo_the_request_id(roaming):
    response = roaming.caller_a.get(
        "/ocpi/versions", **{"X-Request-ID": "req-1", "X-Correlation-ID": "cor-1"}
    )
    assert response.status_code == 200
    body = _body(response)
    assert body["status_code"] == 1000
    assert body["data"] == [{"version": "2.2.1", "url": "http://testserver/ocpi/2.2.1"}]
    assert body["timestamp"].endswith("Z")
    assert response["X-Request-ID"] == "req-1"
    assert response["X-Correlation-ID"] == "cor-1"


def test_version_details_list_every_module_with_our_role(roaming):
    body = _body(roaming.caller_a.get("/ocpi/2.2.1"))
    endpoints = {(e["identifier"], e["role"]): e["url"] for e in body["data"]["endpoints"]}
    assert endpoints[("locations", "SENDER")] == "http://testserver/ocpi/2.2.1/locations"
    assert endpoints[("tokens", "RECEIVER")] == "http://testserver/ocpi/2.2.1/tokens"
    assert len(endpoints) == 9


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Token nonsense",
        "Bearer x",
        "Token " + base64.b64encode(b"wrong").decode(),
        "Token " + "x" * 600,
    ],
)
def test_a_missing_or_wrong_token_is_401_with_the_envelope(client, roaming, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/ocpi/versions", **extra)
    assert response.status_code == 401
    body = _body(response)
    assert body["status_code"] == 2000
    assert "data" not in body


def test_the_token_is_accepted_plain_as_well_as_base64(client, roaming):
    response = client.get("/ocpi/versions", HTTP_AUTHORIZATION=f"Token {roaming.caller_a.token}")
    assert response.status_code == 200


@pytest.mark.parametrize("status", [PartnerStatus.SUSPENDED, PartnerStatus.UNREGISTERED])
def test_a_suspended_or_unregistered_partner_is_refused(roaming, status):
    OcpiPartner.objects.filter(pk=roaming.partner_a.pk).update(status=status)
    assert roaming.caller_a.get("/ocpi/versions").status_code == 401


def test_a_request_for_another_receiver_is_refused_with_4001(roaming):
    response = roaming.caller_a.get(
        "/ocpi/2.2.1/locations", **{"OCPI-to-country-code": "NL", "OCPI-to-party-id": "BBB"}
    )
    assert response.status_code == 404
    assert _body(response)["status_code"] == 4001


def test_a_direct_partner_cannot_speak_for_another_party(roaming):
    response = roaming.caller_a.get(
        "/ocpi/2.2.1/locations", **{"OCPI-from-country-code": "FR", "OCPI-from-party-id": "OTH"}
    )
    assert response.status_code == 400
    assert _body(response)["status_code"] == 2001


def test_a_method_the_endpoint_does_not_have_is_405(roaming):
    response = roaming.caller_a.request("DELETE", "/ocpi/versions")
    assert response.status_code == 405
    assert _body(response)["status_code"] == 2000


def test_malformed_json_is_2001_not_500(roaming):
    response = roaming.caller_a.http.generic(
        "PUT",
        "/ocpi/2.2.1/credentials",
        data=b"{not json",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {roaming.caller_a.token}",
    )
    assert response.status_code == 400
    assert _body(response)["status_code"] == 2001


def test_an_oversized_body_is_413(roaming, settings):
    settings.OCPI_MAX_BODY_BYTES = 100
    response = roaming.caller_a.request("PUT", "/ocpi/2.2.1/credentials", {"token": "x" * 200})
    assert response.status_code == 413
    assert _body(response)["status_code"] == 2001


def test_configuration_modules_carry_no_routing_headers_and_ignore_those_sent(roaming):
    """OCPI 2.2.1 4.1.8.2: versions, credentials and hubclientinfo are not routed."""
    for path in ("/ocpi/versions", "/ocpi/2.2.1", "/ocpi/2.2.1/credentials"):
        response = roaming.caller_a.get(path, **{"OCPI-to-country-code": "NL", "OCPI-to-party-id": "BBB"})
        assert response.status_code == 200, path
        assert not [name for name in response.headers if name.lower().startswith("ocpi-")], path


def test_module_answers_carry_the_routing_headers_back(roaming):
    response = roaming.caller_a.get("/ocpi/2.2.1/locations")
    assert response.status_code == 200
    assert (response["OCPI-from-country-code"], response["OCPI-from-party-id"]) == ("NL", "AAA")
    assert (response["OCPI-to-country-code"], response["OCPI-to-party-id"]) == ("DE", "EMS")


@pytest.mark.parametrize("path", ["/ocpi/", "/ocpi/2.2.1/nothing", "/ocpi/2.1.1/locations"])
def test_an_unknown_path_is_404_in_the_envelope(roaming, path):
    response = roaming.caller_a.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert _body(response)["status_code"] == 2000


@pytest.mark.parametrize("encoded", [True, False])
def test_a_partners_token_reaches_no_operator_interface(client, roaming, encoded):
    """docs/reliability.md case 48: the REST API, the portal and the admin take no OCPI token."""
    token = roaming.caller_a.token
    header = f"Token {base64.b64encode(token.encode()).decode()}" if encoded else f"Token {token}"
    assert client.get("/api/v1/stations/", HTTP_AUTHORIZATION=header).status_code == 401
    assert client.get("/api/v1/roaming/partners/", HTTP_AUTHORIZATION=header).status_code == 401
    portal = client.get("/portal/", HTTP_AUTHORIZATION=header)
    assert portal.status_code == 302 and "/portal/login/" in portal["Location"]
    admin = client.get("/admin/", HTTP_AUTHORIZATION=header)
    assert admin.status_code == 302 and "/admin/login/" in admin["Location"]
