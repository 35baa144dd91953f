"""Roaming over the REST API, the operator's side (issue 17): parties, partners with token A, settings, the
credentials actions, sync now, refused pushes and the outbox. Scoped to the organisations the user manages:
the standing users of other roles and organisations get empty lists, 404 on objects, and change nothing.
No answer carries a credentials token or its hash, except token A in the answer that issues it."""

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import AuditRecord
from accounts.services import membership_set
from cpms.ocpi import client, protocol
from cpms.ocpi.enums import OutboxStatus, PartnerStatus
from cpms.ocpi.models import OcpiOutboxItem, OcpiPartner, OcpiParty
from cpms.ocpi.services import locations, tariffs
from stations.models import Site
from tests.factories import UserFactory

OTHERS = ("operator_b", "finance_a", "host_a1")


@pytest.fixture(autouse=True)
def _our_address_from_the_request(settings):
    settings.OCPI_BASE_URL = ""
    settings.PUBLIC_BASE_URL = ""


def partners_state() -> list[dict[str, Any]]:
    """Everything a write could change: the partners' rows, what they publish, their outbox."""
    return [
        {
            **row,
            "published": sorted(
                OcpiPartner.objects.get(pk=row["id"]).published_sites.values_list("pk", flat=True)
            ),
        }
        for row in OcpiPartner.objects.order_by("pk").values()
    ] + list(OcpiOutboxItem.objects.order_by("pk").values())


def outbox_item(
    partner: OcpiPartner, key: str, status: str = OutboxStatus.PENDING, **extra
) -> OcpiOutboxItem:
    return OcpiOutboxItem.objects.create(
        partner=partner,
        module="locations",
        object_key=key,
        method="PUT",
        path=f"/NL/AAA/{key}",
        body={"id": key},
        status=status,
        next_attempt_at=timezone.now(),
        **extra,
    )


class FakePlatform:
    """Stands in for `client.call`: a partner's platform at http://emsp.invalid that answers the credentials
    exchange (versions, version details, credentials POST/PUT/DELETE) and records every call."""

    def __init__(self, *, token_c: str = "their-token-c", refuse: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.token_c = token_c
        self.refuse = refuse

    def __call__(self, method, url, *, token, from_party, to_party=None, body=None, **_):
        self.calls.append({"method": method, "url": url, "token": token, "from": from_party, "body": body})
        base = "http://emsp.invalid/ocpi"
        if self.refuse:
            raise client.PartnerRefused("Token unknown", http_status=401, status_code=2000)
        if (method, url) == ("GET", f"{base}/versions"):
            data: Any = [{"version": "2.2.1", "url": f"{base}/2.2.1"}]
        elif (method, url) == ("GET", f"{base}/2.2.1"):
            data = {
                "version": "2.2.1",
                "endpoints": [
                    {"identifier": m, "role": "RECEIVER", "url": f"{base}/2.2.1/{m}"}
                    for m in ("credentials", "locations", "tariffs", "sessions", "cdrs")
                ],
            }
        elif method in ("POST", "PUT") and url == f"{base}/2.2.1/credentials":
            data = {
                "token": self.token_c,
                "url": f"{base}/versions",
                "roles": [
                    {
                        "role": "EMSP",
                        "business_details": {"name": "New eMSP"},
                        "party_id": "new",
                        "country_code": "be",
                    }
                ],
            }
        elif method == "DELETE":
            data = None
        else:
            raise client.PartnerUnavailable(f"nothing at {method} {url}")
        return client.PartnerAnswer(http_status=200, status_code=1000, data=data)


# --- parties ---------------------------------------------------------------------------------------------


def test_an_operator_creates_its_organisations_party_upper_cased(world, api):
    response = api(world.operator_a).post(
        "/api/v1/roaming/parties/",
        {"organisation": world.org_a.pk, "country_code": "nl", "party_id": "a1b", "name": "Org A Charging"},
        format="json",
    )
    assert response.status_code == 201, response.content
    party = OcpiParty.objects.get()
    assert response.json() == {
        "id": party.pk,
        "organisation": world.org_a.pk,
        "country_code": "NL",
        "party_id": "A1B",
        "name": "Org A Charging",
        "website": "",
        "created_at": response.json()["created_at"],
    }
    assert (party.country_code, party.party_id) == ("NL", "A1B")


def test_a_second_party_for_an_organisation_is_refused(world, api):
    OcpiParty.objects.create(organisation=world.org_a, country_code="NL", party_id="AAA", name="A")
    response = api(world.operator_a).post(
        "/api/v1/roaming/parties/",
        {"organisation": world.org_a.pk, "country_code": "DE", "party_id": "ZZZ", "name": "Again"},
        format="json",
    )
    assert (response.status_code, response.json()) == (
        400,
        {
            "detail": f"Organisation {world.org_a.pk} already has its roaming party (NL*AAA): one per organisation."
        },
    )
    assert list(OcpiParty.objects.values_list("party_id", flat=True)) == ["AAA"]


def test_a_party_code_of_another_organisation_is_refused(world, api):
    OcpiParty.objects.create(organisation=world.org_b, country_code="NL", party_id="BBB", name="B")
    response = api(world.operator_a).post(
        "/api/v1/roaming/parties/",
        {"organisation": world.org_a.pk, "country_code": "NL", "party_id": "BBB", "name": "A"},
        format="json",
    )
    assert (response.status_code, response.json()) == (
        400,
        {"detail": "NL*BBB is already the party of another organisation."},
    )
    assert OcpiParty.objects.count() == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("country_code", "N1", {"detail": "country_code: two letters (ISO 3166-1 alpha-2), e.g. NL."}),
        ("party_id", "A-B", {"detail": "party_id: three letters or digits (ISO 15118), e.g. ABC."}),
        ("party_id", "ABCD", {"party_id": ["Ensure this field has no more than 3 characters."]}),
        ("name", "  ", {"name": ["This field may not be blank."]}),
    ],
)
def test_a_malformed_party_is_refused(world, api, field, value, message):
    body = {"organisation": world.org_a.pk, "country_code": "NL", "party_id": "AAA", "name": "A"}
    response = api(world.operator_a).post("/api/v1/roaming/parties/", {**body, field: value}, format="json")
    assert (response.status_code, response.json()) == (400, message)
    assert OcpiParty.objects.count() == 0


@pytest.mark.parametrize(
    ("who", "status", "detail"),
    [
        ("finance_a", 403, "You may not manage organisation {org}."),
        ("host_a1", 403, "You may not manage organisation {org}."),
        ("operator_b", 400, "Organisation {org} not found."),
    ],
)
def test_only_the_organisations_managers_create_its_party(world, api, who, status, detail):
    response = api(getattr(world, who)).post(
        "/api/v1/roaming/parties/",
        {"organisation": world.org_a.pk, "country_code": "NL", "party_id": "AAA", "name": "A"},
        format="json",
    )
    assert (response.status_code, response.json()) == (status, {"detail": detail.format(org=world.org_a.pk)})
    assert OcpiParty.objects.count() == 0


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("operator_a", ["AAA"]),
        ("operator_b", ["BBB"]),
        ("finance_a", []),
        ("host_a1", []),
        ("superuser", ["AAA", "BBB"]),
    ],
)
def test_parties_are_listed_to_their_managers_only(world, roaming, api, who, expected):
    body = api(getattr(world, who)).get("/api/v1/roaming/parties/").json()
    assert [row["party_id"] for row in body["results"]] == expected


def test_anonymous_gets_nothing(world, roaming, client):
    assert client.get("/api/v1/roaming/partners/").status_code == 401
    assert (
        client.post("/api/v1/roaming/partners/", {"party": roaming.party_a.pk, "name": "x"}).status_code
        == 401
    )
    assert client.get(f"/api/v1/roaming/partners/{roaming.partner_a.pk}/").status_code == 401


# --- partners --------------------------------------------------------------------------------------------


def test_creating_a_partner_returns_token_a_once_and_our_versions_url(world, roaming, api):
    response = api(world.operator_a).post(
        "/api/v1/roaming/partners/", {"party": roaming.party_a.pk, "name": "New eMSP"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    partner = OcpiPartner.objects.get(pk=body["id"])
    assert body == {
        "id": partner.pk,
        "party": roaming.party_a.pk,
        "party_code": "NL*AAA",
        "name": "New eMSP",
        "status": "PENDING",
        "version": "",
        "partner_versions_url": "",
        "roles": [],
        "endpoints": [],
        "realtime_auth_fallback": "REJECT",
        "allow_charging_profiles": False,
        "publish_all_sites": True,
        "published_sites": [],
        "id_token_group": None,
        "outbox_backlog": 0,
        "outbox_refused": 0,
        "last_success_at": None,
        "last_error_at": None,
        "last_error": "",
        "registered_at": None,
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
        "token_a": body["token_a"],
        "versions_url": "http://testserver/ocpi/versions",
    }
    # The token the partner registers with: kept only as its hash, which no answer shows.
    assert len(body["token_a"]) == 43
    assert partner.incoming_token_hash == protocol.token_hash(body["token_a"])
    assert partner.incoming_token_hash not in response.content.decode()
    assert (
        AuditRecord.objects.filter(action="roaming.partner_created", object_id=str(partner.pk)).count() == 1
    )
    # ...and never again.
    for url in (f"/api/v1/roaming/partners/{partner.pk}/", "/api/v1/roaming/partners/"):
        text = api(world.operator_a).get(url).content.decode()
        assert body["token_a"] not in text and partner.incoming_token_hash not in text
        assert "token_a" not in text


def test_token_a_lets_the_partner_read_our_versions(world, roaming, api, client):
    body = (
        api(world.operator_a)
        .post("/api/v1/roaming/partners/", {"party": roaming.party_a.pk, "name": "New eMSP"}, format="json")
        .json()
    )
    response = client.get("/ocpi/versions", HTTP_AUTHORIZATION=protocol.authorization_header(body["token_a"]))
    assert response.status_code == 200
    assert client.get("/ocpi/versions", HTTP_AUTHORIZATION="Token wrong").status_code == 401


def test_our_versions_url_follows_ocpi_base_url(world, roaming, api, settings):
    settings.OCPI_BASE_URL = "https://cpo.example.com"
    body = (
        api(world.operator_a)
        .post("/api/v1/roaming/partners/", {"party": roaming.party_a.pk, "name": "X"}, format="json")
        .json()
    )
    assert body["versions_url"] == "https://cpo.example.com/ocpi/versions"


@pytest.mark.parametrize("who", OTHERS)
def test_a_partner_on_a_party_one_does_not_manage_is_refused(world, roaming, api, who):
    before = partners_state()
    response = api(getattr(world, who)).post(
        "/api/v1/roaming/partners/", {"party": roaming.party_a.pk, "name": "Sneaky"}, format="json"
    )
    assert (response.status_code, response.json()) == (
        400,
        {"detail": f"Party {roaming.party_a.pk} not found."},
    )
    assert partners_state() == before


def test_a_partner_needs_a_name(world, roaming, api):
    response = api(world.operator_a).post(
        "/api/v1/roaming/partners/", {"party": roaming.party_a.pk, "name": " "}, format="json"
    )
    assert (response.status_code, response.json()) == (400, {"name": ["This field may not be blank."]})
    assert OcpiPartner.objects.count() == 3


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("operator_a", ["emsp-a", "emsp-a2"]),
        ("operator_b", ["emsp-b"]),
        ("finance_a", []),
        ("host_a1", []),
        ("superuser", ["emsp-a", "emsp-a2", "emsp-b"]),
    ],
)
def test_partners_are_listed_to_their_managers_only(world, roaming, api, who, expected):
    body = api(getattr(world, who)).get("/api/v1/roaming/partners/").json()
    assert [row["name"] for row in body["results"]] == expected


def test_operator_staff_manage_roaming_too(world, roaming, api):
    staff = UserFactory(username="staff_a")
    membership_set(user=staff, organisation=world.org_a, role="operator_staff")
    body = api(staff).get("/api/v1/roaming/partners/").json()
    assert [row["name"] for row in body["results"]] == ["emsp-a", "emsp-a2"]


def test_the_list_filters_by_party(world, roaming, api):
    client_ = api(world.superuser)
    body = client_.get(f"/api/v1/roaming/partners/?party={roaming.party_b.pk}").json()
    assert [row["name"] for row in body["results"]] == ["emsp-b"]
    assert client_.get("/api/v1/roaming/partners/?party=x").json() == {
        "party": ["A valid integer is required."]
    }
    response = api(world.operator_a).get(f"/api/v1/roaming/partners/?party={roaming.party_b.pk}")
    assert (response.status_code, response.json()) == (
        400,
        {"detail": f"Party {roaming.party_b.pk} not found."},
    )


def test_a_registered_partner_shows_its_roles_endpoints_and_outbox_but_no_secret(world, roaming, api):
    partner = roaming.partner_a
    outbox_item(partner, "1")
    outbox_item(partner, "2", status=OutboxStatus.REFUSED)
    outbox_item(partner, "3", status=OutboxStatus.DELIVERED)
    response = api(world.operator_a).get(f"/api/v1/roaming/partners/{partner.pk}/")
    body = response.json()
    assert body["status"] == "REGISTERED"
    assert body["roles"] == [
        {"role": "EMSP", "country_code": "DE", "party_id": "EMS", "business_details": {"name": "emsp-a"}}
    ]
    assert body["endpoints"][1] == {
        "identifier": "locations",
        "role": "RECEIVER",
        "url": "http://emsp.invalid/ocpi/2.2.1/locations",
    }
    assert (body["outbox_backlog"], body["outbox_refused"]) == (1, 1)
    assert body["partner_versions_url"] == "http://emsp.invalid/ocpi/versions"
    text = response.content.decode()
    partner.refresh_from_db()
    for secret in (
        partner.incoming_token_hash,
        partner.outgoing_token_encrypted,
        "out-emsp-a",
        roaming.caller_a.token,
    ):
        assert secret not in text


@pytest.mark.parametrize("who", OTHERS)
def test_another_organisations_or_roles_partner_is_404(world, roaming, api, who):
    pk = roaming.partner_a.pk
    response = api(getattr(world, who)).get(f"/api/v1/roaming/partners/{pk}/")
    assert (response.status_code, response.json()) == (404, {"detail": f"Partner {pk} not found."})
    assert api(getattr(world, who)).get(f"/api/v1/roaming/partners/{pk}/outbox/").status_code == 404


# --- settings --------------------------------------------------------------------------------------------


def test_an_operator_changes_a_partners_settings(world, roaming, api):
    partner = roaming.partner_a
    response = api(world.operator_a).patch(
        f"/api/v1/roaming/partners/{partner.pk}/",
        {
            "name": "eMSP A (renamed)",
            "realtime_auth_fallback": "ACCEPT",
            "allow_charging_profiles": True,
            "publish_all_sites": False,
            "published_sites": [world.site_a2.pk],
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["realtime_auth_fallback"], body["allow_charging_profiles"]) == (
        "eMSP A (renamed)",
        "ACCEPT",
        True,
    )
    assert (body["publish_all_sites"], body["published_sites"]) == (False, [world.site_a2.pk])
    partner.refresh_from_db()
    assert list(partner.published_sites.values_list("pk", flat=True)) == [world.site_a2.pk]
    record = AuditRecord.objects.get(action="roaming.partner_changed", object_id=str(partner.pk))
    assert record.actor == world.operator_a
    assert record.changes["published_sites"] == [world.site_a2.pk]


def test_a_change_of_what_is_published_queues_everything_published_at_once(world, roaming, api, monkeypatch):
    pushed: list[tuple[str, int]] = []
    monkeypatch.setattr(locations, "locations_push_all", lambda p: pushed.append(("locations", p.pk)) or 2)
    monkeypatch.setattr(tariffs, "tariffs_push_all", lambda p: pushed.append(("tariffs", p.pk)) or 1)
    url = f"/api/v1/roaming/partners/{roaming.partner_a.pk}/"
    api(world.operator_a).patch(url, {"name": "same publication"}, format="json")
    assert pushed == []
    api(world.operator_a).patch(
        url, {"publish_all_sites": False, "published_sites": [world.site_a1.pk]}, format="json"
    )
    # Tariffs first: a Location names its connectors' tariffs.
    assert pushed == [("tariffs", roaming.partner_a.pk), ("locations", roaming.partner_a.pk)]


def test_only_the_organisations_sites_are_published(world, roaming, api):
    before = partners_state()
    response = api(world.operator_a).patch(
        f"/api/v1/roaming/partners/{roaming.partner_a.pk}/",
        {"publish_all_sites": False, "published_sites": [world.site_a1.pk, world.site_b1.pk]},
        format="json",
    )
    assert (response.status_code, response.json()) == (
        400,
        {"detail": f"published_sites: Site {world.site_b1.pk} not found."},
    )
    assert partners_state() == before


def test_read_only_fields_are_refused(world, roaming, api):
    before = partners_state()
    response = api(world.operator_a).patch(
        f"/api/v1/roaming/partners/{roaming.partner_a.pk}/",
        {"status": "REGISTERED", "party": 1},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "party": ["Unknown or read-only field; it cannot be set."],
        "status": ["Unknown or read-only field; it cannot be set."],
    }
    assert partners_state() == before


@pytest.mark.parametrize("who", OTHERS)
def test_others_cannot_change_a_partner(world, roaming, api, who):
    before = partners_state()
    response = api(getattr(world, who)).patch(
        f"/api/v1/roaming/partners/{roaming.partner_a.pk}/",
        {"realtime_auth_fallback": "ACCEPT"},
        format="json",
    )
    assert response.status_code == 404
    assert partners_state() == before


# --- credentials actions ---------------------------------------------------------------------------------


def test_we_register_with_a_partners_platform(world, roaming, api, monkeypatch):
    platform = FakePlatform()
    monkeypatch.setattr(client, "call", platform)
    created = (
        api(world.operator_a)
        .post("/api/v1/roaming/partners/", {"party": roaming.party_a.pk, "name": "Theirs"}, format="json")
        .json()
    )
    response = api(world.operator_a).post(
        f"/api/v1/roaming/partners/{created['id']}/register/",
        {"versions_url": "http://emsp.invalid/ocpi/versions", "token_a": "their-token-a"},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["partner_versions_url"]) == (
        "REGISTERED",
        "http://emsp.invalid/ocpi/versions",
    )
    assert body["roles"] == [
        {"role": "EMSP", "business_details": {"name": "New eMSP"}, "party_id": "NEW", "country_code": "BE"}
    ]
    assert [(c["method"], c["url"], c["token"]) for c in platform.calls] == [
        ("GET", "http://emsp.invalid/ocpi/versions", "their-token-a"),
        ("GET", "http://emsp.invalid/ocpi/2.2.1", "their-token-a"),
        ("POST", "http://emsp.invalid/ocpi/2.2.1/credentials", "their-token-a"),
    ]
    sent = platform.calls[2]["body"]
    assert sent["url"] == "http://testserver/ocpi/versions"
    assert sent["roles"][0] | {"business_details": None} == {
        "role": "CPO",
        "business_details": None,
        "party_id": "AAA",
        "country_code": "NL",
    }
    partner = OcpiPartner.objects.get(pk=created["id"])
    assert partner.incoming_token_hash == protocol.token_hash(sent["token"])  # token B: it calls us with it
    assert client.outgoing_token(partner) == "their-token-c"
    text = response.content.decode()
    for secret in ("their-token-a", "their-token-c", sent["token"], partner.incoming_token_hash):
        assert secret not in text
    assert "their-token-a" not in str(OcpiPartner.objects.filter(pk=partner.pk).values().get())


def test_a_refused_registration_is_a_400_with_the_reason_and_changes_nothing(
    world, roaming, api, monkeypatch
):
    monkeypatch.setattr(client, "call", FakePlatform(refuse=True))
    partner, _ = OcpiPartner.objects.get_or_create(party=roaming.party_a, name="Theirs")
    before = partners_state()
    response = api(world.operator_a).post(
        f"/api/v1/roaming/partners/{partner.pk}/register/",
        {"versions_url": "http://emsp.invalid/ocpi/versions", "token_a": "their-token-a"},
        format="json",
    )
    assert (response.status_code, response.json()) == (
        400,
        {"detail": "Could not read your versions: Token unknown"},
    )
    assert partners_state() == before


def test_registering_a_registered_partner_is_a_conflict(world, roaming, api, monkeypatch):
    platform = FakePlatform()
    monkeypatch.setattr(client, "call", platform)
    response = api(world.operator_a).post(
        f"/api/v1/roaming/partners/{roaming.partner_a.pk}/register/",
        {"versions_url": "http://emsp.invalid/ocpi/versions", "token_a": "their-token-a"},
        format="json",
    )
    assert (response.status_code, response.json()) == (
        409,
        {"detail": "Already registered: rotate the credentials instead."},
    )
    assert platform.calls == []


def test_rotation_exchanges_new_tokens_both_ways(world, roaming, api, monkeypatch):
    platform = FakePlatform(token_c="rotated-theirs")
    monkeypatch.setattr(client, "call", platform)
    partner = roaming.partner_a
    response = api(world.operator_a).post(f"/api/v1/roaming/partners/{partner.pk}/rotate/")
    assert response.status_code == 200, response.content
    put = platform.calls[0]
    assert (put["method"], put["url"], put["token"]) == (
        "PUT",
        "http://emsp.invalid/ocpi/2.2.1/credentials",
        "out-emsp-a",
    )
    partner.refresh_from_db()
    assert partner.incoming_token_hash == protocol.token_hash(put["body"]["token"])
    assert client.outgoing_token(partner) == "rotated-theirs"
    assert put["body"]["token"] not in response.content.decode()
    assert roaming.caller_a.get("/ocpi/versions").status_code == 401  # the old token is gone


def test_suspend_and_resume(world, roaming, api):
    partner = roaming.partner_a
    api_a = api(world.operator_a)
    response = api_a.post(f"/api/v1/roaming/partners/{partner.pk}/suspend/")
    assert (response.status_code, response.json()["status"]) == (200, "SUSPENDED")
    assert roaming.caller_a.get("/ocpi/versions").status_code == 401
    again = api_a.post(f"/api/v1/roaming/partners/{partner.pk}/suspend/")
    assert (again.status_code, again.json()) == (409, {"detail": "The partner is not registered."})
    response = api_a.post(f"/api/v1/roaming/partners/{partner.pk}/resume/")
    assert (response.status_code, response.json()["status"]) == (200, "REGISTERED")
    assert roaming.caller_a.get("/ocpi/versions").status_code == 200
    again = api_a.post(f"/api/v1/roaming/partners/{partner.pk}/resume/")
    assert (again.status_code, again.json()) == (409, {"detail": "The partner is not suspended."})


def test_unregister_tells_the_partner_and_ends_its_token(world, roaming, api, monkeypatch):
    platform = FakePlatform()
    monkeypatch.setattr(client, "call", platform)
    partner = roaming.partner_a
    response = api(world.operator_a).post(f"/api/v1/roaming/partners/{partner.pk}/unregister/")
    assert (response.status_code, response.json()["status"]) == (200, "UNREGISTERED")
    assert [(c["method"], c["url"]) for c in platform.calls] == [
        ("DELETE", "http://emsp.invalid/ocpi/2.2.1/credentials")
    ]
    assert roaming.caller_a.get("/ocpi/versions").status_code == 401


def test_a_new_token_a_only_while_not_registered(world, roaming, api, monkeypatch):
    monkeypatch.setattr(client, "call", FakePlatform())
    partner = roaming.partner_a
    api_a = api(world.operator_a)
    refused = api_a.post(f"/api/v1/roaming/partners/{partner.pk}/token-a/")
    assert (refused.status_code, refused.json()) == (
        400,
        {"detail": "The partner is registered: rotate its credentials instead."},
    )
    api_a.post(f"/api/v1/roaming/partners/{partner.pk}/unregister/")
    response = api_a.post(f"/api/v1/roaming/partners/{partner.pk}/token-a/")
    assert response.status_code == 200
    body = response.json()
    assert body == {"token_a": body["token_a"], "versions_url": "http://testserver/ocpi/versions"}
    partner.refresh_from_db()
    assert (partner.status, partner.incoming_token_hash) == (
        PartnerStatus.PENDING,
        protocol.token_hash(body["token_a"]),
    )


# --- sync, refused pushes, outbox ------------------------------------------------------------------------


def test_sync_now_queues_every_published_location_and_tariff(world, roaming, api, monkeypatch):
    pushed: list[tuple[str, int]] = []
    monkeypatch.setattr(locations, "locations_push_all", lambda p: pushed.append(("locations", p.pk)) or 4)
    monkeypatch.setattr(tariffs, "tariffs_push_all", lambda p: pushed.append(("tariffs", p.pk)) or 2)
    response = api(world.operator_a).post(f"/api/v1/roaming/partners/{roaming.partner_a.pk}/sync/")
    assert (response.status_code, response.json()) == (200, {"locations": 4, "tariffs": 2})
    assert pushed == [("tariffs", roaming.partner_a.pk), ("locations", roaming.partner_a.pk)]


def test_sync_now_with_the_locations_and_tariffs_modules(world, roaming, api):
    Site.objects.filter(pk__in=[world.site_a1.pk, world.site_a2.pk]).update(
        latitude=Decimal("52.1"), longitude=Decimal("4.3"), country="NL"
    )
    OcpiPartner.objects.get(pk=roaming.partner_a.pk).published_sites.set([world.site_a2.pk])
    OcpiPartner.objects.filter(pk=roaming.partner_a.pk).update(publish_all_sites=False)
    response = api(world.operator_a).post(f"/api/v1/roaming/partners/{roaming.partner_a.pk}/sync/")
    assert (response.status_code, response.json()) == (200, {"locations": 1, "tariffs": 0})
    assert list(OcpiOutboxItem.objects.values_list("partner_id", "module", "method", "path")) == [
        (roaming.partner_a.pk, "locations", "PUT", f"/NL/AAA/{world.site_a2.pk}")
    ]


def test_a_suspended_partner_is_not_synced(world, roaming, api):
    OcpiPartner.objects.filter(pk=roaming.partner_a.pk).update(status=PartnerStatus.SUSPENDED)
    response = api(world.operator_a).post(f"/api/v1/roaming/partners/{roaming.partner_a.pk}/sync/")
    assert (response.status_code, response.json()) == (
        409,
        {"detail": "The partner is suspended: resume it first."},
    )
    assert OcpiOutboxItem.objects.count() == 0


def test_a_pending_partner_has_nothing_to_sync(world, roaming, api):
    partner = OcpiPartner.objects.create(party=roaming.party_a, name="Pending")
    response = api(world.operator_a).post(f"/api/v1/roaming/partners/{partner.pk}/sync/")
    assert (response.status_code, response.json()) == (
        409,
        {"detail": "The partner is pending registration: there is nowhere to send to."},
    )


def test_refused_pushes_go_back_in_the_queue(world, roaming, api, django_capture_on_commit_callbacks):
    refused = [
        outbox_item(roaming.partner_a, str(n), status=OutboxStatus.REFUSED, attempts=5) for n in (1, 2)
    ]
    delivered = outbox_item(roaming.partner_a, "3", status=OutboxStatus.DELIVERED)
    other = outbox_item(roaming.partner_a2, "4", status=OutboxStatus.REFUSED)
    with django_capture_on_commit_callbacks(execute=False):
        response = api(world.operator_a).post(
            f"/api/v1/roaming/partners/{roaming.partner_a.pk}/retry-refused/"
        )
    assert (response.status_code, response.json()) == (200, {"requeued": 2})
    statuses = dict(OcpiOutboxItem.objects.values_list("pk", "status"))
    assert [statuses[item.pk] for item in (*refused, delivered, other)] == [
        "PENDING",
        "PENDING",
        "DELIVERED",
        "REFUSED",
    ]


def test_the_outbox_summary_and_latest_items_without_bodies(world, roaming, api):
    partner = roaming.partner_a
    now = timezone.now()
    first = outbox_item(partner, "1")
    OcpiOutboxItem.objects.filter(pk=first.pk).update(created_at=now - timedelta(minutes=5))
    second = outbox_item(partner, "2", status=OutboxStatus.REFUSED, attempts=5, last_error="2001 bad EVSE")
    third = outbox_item(partner, "3", status=OutboxStatus.DELIVERED, delivered_at=now)
    outbox_item(roaming.partner_a2, "other")
    OcpiPartner.objects.filter(pk=partner.pk).update(
        last_success_at=now, last_error_at=now, last_error="2001 bad EVSE"
    )
    response = api(world.operator_a).get(f"/api/v1/roaming/partners/{partner.pk}/outbox/?limit=2")
    assert response.status_code == 200
    body = response.json()
    stamp = lambda value: value.isoformat().replace("+00:00", "Z")  # noqa: E731
    assert body["summary"] == {
        "backlog": 1,
        "oldest_pending_at": stamp(now - timedelta(minutes=5)),
        "refused": 1,
        "delivered": 1,
        "last_success_at": stamp(now),
        "last_error_at": stamp(now),
        "last_error": "2001 bad EVSE",
    }
    assert body["count"] == 3
    assert body["next"] == f"http://testserver/api/v1/roaming/partners/{partner.pk}/outbox/?limit=2&offset=2"
    assert [row["id"] for row in body["results"]] == [third.pk, second.pk]
    assert body["results"][1] == {
        "id": second.pk,
        "module": "locations",
        "object_key": "2",
        "method": "PUT",
        "path": "/NL/AAA/2",
        "to_country_code": "",
        "to_party_id": "",
        "status": "REFUSED",
        "attempts": 5,
        "next_attempt_at": body["results"][1]["next_attempt_at"],
        "last_error": "2001 bad EVSE",
        "created_at": body["results"][1]["created_at"],
        "delivered_at": None,
    }


@pytest.mark.parametrize("who", OTHERS)
@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("register/", {"versions_url": "http://emsp.invalid/ocpi/versions", "token_a": "their-token-a"}),
        ("rotate/", None),
        ("suspend/", None),
        ("resume/", None),
        ("unregister/", None),
        ("token-a/", None),
        ("sync/", None),
        ("retry-refused/", None),
    ],
)
def test_others_cannot_act_on_a_partner(world, roaming, api, monkeypatch, who, action, body):
    platform = FakePlatform()
    monkeypatch.setattr(client, "call", platform)
    pushed: list[int] = []
    monkeypatch.setattr(locations, "locations_push_all", lambda p: pushed.append(p.pk) or 1, raising=False)
    outbox_item(roaming.partner_a, "1", status=OutboxStatus.REFUSED)
    before = partners_state()
    audit_before = AuditRecord.objects.count()
    response = api(getattr(world, who)).post(
        f"/api/v1/roaming/partners/{roaming.partner_a.pk}/{action}", body, format="json"
    )
    assert (response.status_code, response.json()) == (
        404,
        {"detail": f"Partner {roaming.partner_a.pk} not found."},
    )
    assert partners_state() == before
    assert (platform.calls, pushed, AuditRecord.objects.count()) == ([], [], audit_before)
