"""The credentials module both ways (OCPI 2.2.1 section 7) against a partner platform on real HTTP."""

import base64
from decimal import Decimal

import orjson
import pytest
from django.test import RequestFactory

from accounts.models import AuditAction, AuditRecord
from cpms.ocpi import client, protocol
from cpms.ocpi.enums import PartnerStatus
from cpms.ocpi.models import OcpiOutboxItem, OcpiPartner
from cpms.ocpi.protocol import OcpiError
from cpms.ocpi.services import credentials
from cpms.ocpi.views.base import ocpi_endpoint
from stations.models import Site
from tests.ocpi.conftest import OcpiCaller
from tests.ocpi.http_stub import StubPartner, ocpi_ok

pytestmark = pytest.mark.django_db


def _body(response):
    return orjson.loads(response.content)


def _bearer(received) -> str:
    return base64.b64decode(received.headers["authorization"].removeprefix("Token ")).decode()


class EmspPlatform(StubPartner):
    """A partner's versions, version details and credentials endpoints. `token_c` is what it answers a
    registration with; `seen_tokens` what it was called with."""

    def __init__(self, *, versions: list[str] = ("2.2.1",), token_c: str = "their-token-c") -> None:
        super().__init__(handler=self._answer)
        self.versions = list(versions)
        self.token_c = token_c
        self.credentials_posted: list[dict] = []

    def _answer(self, request):
        base = self.url + "/ocpi"
        if request.path == "/ocpi/versions":
            return ocpi_ok([{"version": v, "url": f"{base}/{v}"} for v in self.versions])
        if request.path == "/ocpi/2.2.1":
            return ocpi_ok(
                {
                    "version": "2.2.1",
                    "endpoints": [
                        {"identifier": "credentials", "role": "SENDER", "url": f"{base}/2.2.1/credentials"},
                        {"identifier": "tokens", "role": "SENDER", "url": f"{base}/2.2.1/tokens"},
                        {"identifier": "sessions", "role": "RECEIVER", "url": f"{base}/2.2.1/sessions"},
                        {"identifier": "locations", "role": "RECEIVER", "url": f"{base}/2.2.1/locations"},
                    ],
                }
            )
        if request.path == "/ocpi/2.2.1/credentials":
            if request.method == "DELETE":
                return ocpi_ok()
            self.credentials_posted.append(request.body)
            return ocpi_ok(self.credentials(self.token_c))
        return 404, {"status_code": 2000, "timestamp": "2026-01-01T00:00:00Z"}

    def credentials(self, token: str) -> dict:
        return {
            "token": token,
            "url": f"{self.url}/ocpi/versions",
            "roles": [
                {
                    "role": "EMSP",
                    "party_id": "ems",
                    "country_code": "de",
                    "business_details": {"name": "E-Mobility"},
                }
            ],
        }


@pytest.fixture
def platform():
    server = EmspPlatform().start()
    yield server
    server.stop()


# --- a partner registers with us ----------------------------------------------------------------------------
def test_a_partner_registers_with_token_a_and_gets_token_c(roaming, platform, client):
    partner, token_a = credentials.partner_create(party=roaming.party_a, name="E-Mobility")
    caller = OcpiCaller(token_a, client)

    response = caller.request("POST", "/ocpi/2.2.1/credentials", platform.credentials("token-b-for-us"))

    assert response.status_code == 200, response.content
    ours = _body(response)["data"]
    assert ours["url"] == "http://testserver/ocpi/versions"
    assert ours["roles"] == [
        {"role": "CPO", "business_details": {"name": "Org A"}, "party_id": "AAA", "country_code": "NL"}
    ]
    token_c = ours["token"]
    assert token_c not in (token_a, "token-b-for-us")
    # We read its platform with the token it gave us (B), base64-encoded.
    assert [r.path for r in platform.received] == ["/ocpi/versions", "/ocpi/2.2.1"]
    assert {_bearer(r) for r in platform.received} == {"token-b-for-us"}
    # Configuration modules are not routed (OCPI 2.2.1 4.1.8.2).
    assert not [h for r in platform.received for h in r.headers if h.startswith("ocpi-")]
    partner.refresh_from_db()
    assert partner.status == PartnerStatus.REGISTERED
    assert client_token(partner) == "token-b-for-us"
    assert partner.incoming_token_hash == protocol.token_hash(token_c)
    assert partner.roles[0]["country_code"] == "DE" and partner.roles[0]["party_id"] == "EMS"
    assert {e["identifier"] for e in partner.endpoints} == {"credentials", "tokens", "sessions", "locations"}
    # Token A is spent; token C works.
    assert caller.get("/ocpi/versions").status_code == 401
    assert OcpiCaller(token_c, client).get("/ocpi/2.2.1/credentials").status_code == 200
    assert (
        AuditRecord.objects.filter(
            action=AuditAction.ROAMING_PARTNER_REGISTERED, object_id=str(partner.pk)
        ).count()
        == 1
    )


def client_token(partner: OcpiPartner) -> str:
    return client.outgoing_token(partner)


def test_post_when_registered_is_405_and_put_rotates_token_c(roaming, platform, client):
    partner, token_a = credentials.partner_create(party=roaming.party_a, name="E-Mobility")
    token_c = _body(
        OcpiCaller(token_a, client).request("POST", "/ocpi/2.2.1/credentials", platform.credentials("b1"))
    )["data"]["token"]
    caller = OcpiCaller(token_c, client)

    again = caller.request("POST", "/ocpi/2.2.1/credentials", platform.credentials("b2"))
    assert again.status_code == 405
    partner.refresh_from_db()
    assert client_token(partner) == "b1"

    rotated = caller.request("PUT", "/ocpi/2.2.1/credentials", platform.credentials("b2"))
    assert rotated.status_code == 200
    new_c = _body(rotated)["data"]["token"]
    assert new_c != token_c
    partner.refresh_from_db()
    assert client_token(partner) == "b2"
    assert caller.get("/ocpi/versions").status_code == 401
    assert OcpiCaller(new_c, client).get("/ocpi/versions").status_code == 200


def test_put_before_registering_is_405(roaming, platform, client):
    _, token_a = credentials.partner_create(party=roaming.party_a, name="E-Mobility")
    response = OcpiCaller(token_a, client).request(
        "PUT", "/ocpi/2.2.1/credentials", platform.credentials("b")
    )
    assert response.status_code == 405


def test_delete_unregisters_and_the_token_stops_working(roaming, client):
    caller = roaming.caller_a
    assert caller.request("DELETE", "/ocpi/2.2.1/credentials").status_code == 200
    roaming.partner_a.refresh_from_db()
    assert roaming.partner_a.status == PartnerStatus.UNREGISTERED
    assert roaming.partner_a.outgoing_token_encrypted == ""
    assert caller.get("/ocpi/versions").status_code == 401


def test_a_platform_we_cannot_read_is_3001_and_nothing_changes(roaming, client):
    partner, token_a = credentials.partner_create(party=roaming.party_a, name="Down")
    dead = StubPartner().start()
    dead.stop()
    body = {
        "token": "b",
        "url": f"{dead.url}/ocpi/versions",
        "roles": [
            {"role": "EMSP", "party_id": "EMS", "country_code": "DE", "business_details": {"name": "x"}}
        ],
    }
    response = OcpiCaller(token_a, client).request("POST", "/ocpi/2.2.1/credentials", body)
    assert response.status_code == 400
    assert _body(response)["status_code"] == 3001
    partner.refresh_from_db()
    assert partner.status == PartnerStatus.PENDING
    assert partner.incoming_token_hash == protocol.token_hash(token_a)


def test_no_common_version_is_3002(roaming, client):
    old = EmspPlatform(versions=["2.1.1"]).start()
    try:
        _, token_a = credentials.partner_create(party=roaming.party_a, name="Old")
        response = OcpiCaller(token_a, client).request(
            "POST", "/ocpi/2.2.1/credentials", old.credentials("b")
        )
    finally:
        old.stop()
    assert _body(response)["status_code"] == 3002


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"token": "b", "url": "http://x/versions"},
        {"token": "", "url": "http://x/versions", "roles": []},
        {"token": "b", "url": "ftp://x", "roles": [{"role": "EMSP"}]},
        {
            "token": "b" * 65,
            "url": "http://x/versions",
            "roles": [
                {"role": "EMSP", "party_id": "EMS", "country_code": "DE", "business_details": {"name": "x"}}
            ],
        },
        {
            "token": "b",
            "url": "http://x/versions",
            "roles": [
                {"role": "BOSS", "party_id": "EMS", "country_code": "DE", "business_details": {"name": "x"}}
            ],
        },
    ],
)
def test_malformed_credentials_are_2001(roaming, client, body):
    partner, token_a = credentials.partner_create(party=roaming.party_a, name="Bad")
    response = OcpiCaller(token_a, client).request("POST", "/ocpi/2.2.1/credentials", body)
    assert response.status_code == 400
    assert _body(response)["status_code"] == 2001
    partner.refresh_from_db()
    assert partner.status == PartnerStatus.PENDING


def test_token_a_reaches_only_the_credentials_exchange(roaming):
    _, token_a = credentials.partner_create(party=roaming.party_a, name="New")

    @ocpi_endpoint(methods=("GET",))
    def module_view(request, ctx):
        return {"seen": True}

    request = RequestFactory().get("/ocpi/2.2.1/x", HTTP_AUTHORIZATION=protocol.authorization_header(token_a))
    response = module_view(request)
    assert response.status_code == 401
    request = RequestFactory().get(
        "/ocpi/2.2.1/x", HTTP_AUTHORIZATION=protocol.authorization_header(roaming.caller_a.token)
    )
    assert _body(module_view(request))["data"] == {"seen": True}


# --- we register with a partner ------------------------------------------------------------------------------
def test_we_register_with_their_token_a_and_keep_their_token_c(roaming, platform):
    partner, _ = credentials.partner_create(party=roaming.party_a, name="E-Mobility")

    credentials.partner_register(
        partner=partner,
        versions_url_=f"{platform.url}/ocpi/versions",
        token_a="their-token-a",
        base_url="https://cpms.example/",
    )

    partner.refresh_from_db()
    assert partner.status == PartnerStatus.REGISTERED
    assert client_token(partner) == "their-token-c"
    assert {_bearer(r) for r in platform.received} == {"their-token-a"}
    assert not [h for r in platform.received for h in r.headers if h.startswith("ocpi-")]
    (sent,) = platform.credentials_posted
    assert sent["url"] == "https://cpms.example/ocpi/versions"
    assert sent["roles"][0]["party_id"] == "AAA"
    # The token B we sent is the one the partner calls us with from now on.
    assert partner.incoming_token_hash == protocol.token_hash(sent["token"])


def test_a_refused_registration_leaves_the_partner_as_it_was(roaming):
    partner, token_a = credentials.partner_create(party=roaming.party_a, name="E-Mobility")
    refusing = EmspPlatform()
    answer = refusing._answer
    refusing.handler = lambda r: (401, {"status_code": 2000}) if r.method == "POST" else answer(r)
    refusing.start()
    try:
        with pytest.raises(OcpiError):
            credentials.partner_register(
                partner=partner,
                versions_url_=f"{refusing.url}/ocpi/versions",
                token_a="a",
                base_url="https://cpms.example/",
            )
    finally:
        refusing.stop()
    partner.refresh_from_db()
    assert partner.status == PartnerStatus.PENDING
    assert partner.incoming_token_hash == protocol.token_hash(token_a)


def test_rotation_sends_a_new_token_and_keeps_theirs(roaming, platform):
    partner, _ = credentials.partner_create(party=roaming.party_a, name="E-Mobility")
    credentials.partner_register(
        partner=partner,
        versions_url_=f"{platform.url}/ocpi/versions",
        token_a="a",
        base_url="https://c.example/",
    )
    partner.refresh_from_db()
    old_hash = partner.incoming_token_hash
    platform.token_c = "their-rotated-token"

    credentials.partner_credentials_rotate(partner=partner, base_url="https://c.example/")

    partner.refresh_from_db()
    assert client_token(partner) == "their-rotated-token"
    put = [r for r in platform.received if r.method == "PUT"]
    assert len(put) == 1 and _bearer(put[0]) == "their-token-c"
    assert partner.incoming_token_hash == protocol.token_hash(put[0].body["token"]) != old_hash


def test_unregistering_tells_the_partner(roaming, platform):
    partner, _ = credentials.partner_create(party=roaming.party_a, name="E-Mobility")
    credentials.partner_register(
        partner=partner,
        versions_url_=f"{platform.url}/ocpi/versions",
        token_a="a",
        base_url="https://c.example/",
    )
    partner.refresh_from_db()
    credentials.partner_unregister(partner=partner)
    assert [r.method for r in platform.received if r.path.endswith("/credentials")][-1] == "DELETE"
    partner.refresh_from_db()
    assert partner.status == PartnerStatus.UNREGISTERED
    assert partner.incoming_token_hash is None


def test_a_new_registration_gets_everything_published_pushed_at_once(roaming, platform, client, world):
    """A partner that just registered is sent every Location (and Tariff) it may see, so that the status
    PATCHes that follow concern objects it has."""
    Site.objects.filter(pk=world.site_a1.pk).update(
        latitude=Decimal("52.1"), longitude=Decimal("4.3"), country="NL"
    )
    partner, token_a = credentials.partner_create(party=roaming.party_a, name="E-Mobility")
    response = OcpiCaller(token_a, client).request(
        "POST", "/ocpi/2.2.1/credentials", platform.credentials("b")
    )
    assert response.status_code == 200
    assert list(OcpiOutboxItem.objects.filter(partner=partner).values_list("module", "method", "path")) == [
        ("locations", "PUT", f"/NL/AAA/{world.site_a1.pk}")
    ]
    # A rotation (PUT) is not a new registration: nothing more is queued.
    token_c = response.json()["data"]["token"]
    OcpiCaller(token_c, client).request("PUT", "/ocpi/2.2.1/credentials", platform.credentials("b2"))
    assert OcpiOutboxItem.objects.filter(partner=partner).count() == 1
