"""OCPI 2.2.1 against a real server process: the eMSP of tests/ocpi_parties (written from the specification,
not from our code) registers with our CPO, pulls its locations page by page, rotates and unregisters; our
server registers with the eMSP; a wrong or dead token is answered 401 with the OCPI envelope.

Every answer and request our server makes is checked by the eMSP against the specification: `emsp.problems`
lists what it did wrong, with the section."""

from decimal import Decimal

import pytest

from cpms.ocpi.enums import PartnerStatus
from cpms.ocpi.models import OcpiParty
from cpms.ocpi.services.credentials import partner_create, partner_register
from tests.factories import (
    ChargingStationFactory,
    ConnectorFactory,
    EvseFactory,
    OrganisationFactory,
    SiteFactory,
)
from tests.ocpi_parties import Emsp, b64

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def published_site(organisation, name: str):
    site = SiteFactory(
        organisation=organisation,
        name=name,
        time_zone="Europe/Amsterdam",
        address=f"{name} 1",
        city="Utrecht",
        postal_code="3511 AA",
        country="NL",
        latitude=Decimal("52.090000"),
        longitude=Decimal("5.120000"),
    )
    station = ChargingStationFactory(site=site, identity=f"OCPI-{name}")
    ConnectorFactory(evse=EvseFactory(station=station, evse_id=1), connector_id=1)
    return site


@pytest.fixture
def cpo(transactional_db):
    """Organisation A (party NL*CPO) with three sites, and organisation B (NL*CPB) with one that no partner
    of A may see."""
    org_a = OrganisationFactory(name="Roaming A", slug="roaming-a")
    org_b = OrganisationFactory(name="Roaming B", slug="roaming-b")
    party = OcpiParty.objects.create(organisation=org_a, country_code="NL", party_id="CPO", name="CPO A")
    OcpiParty.objects.create(organisation=org_b, country_code="NL", party_id="CPB", name="CPO B")
    sites = [published_site(org_a, f"A{n}") for n in range(1, 4)]
    published_site(org_b, "B1")
    return party, sites


def assert_401_envelope(answer, what: str) -> None:
    assert answer.http_status == 401, f"{what}: {answer}"
    assert isinstance(answer.body, dict), f"{what}: {answer}"
    assert isinstance(answer.body.get("status_code"), int), f"{what}: {answer}"
    assert isinstance(answer.body.get("timestamp"), str), f"{what}: {answer}"


def test_emsp_registers_pulls_locations_by_pages_and_bad_tokens_get_401(cpms_server, cpo):
    party, sites = cpo
    partner, token_a = partner_create(party=party, name="Test eMSP")

    with Emsp() as emsp:
        conn = emsp.register(f"{cpms_server.http_url}/ocpi/versions", token_a)
        pages = emsp.pull_pages("locations", limit=2)
        dead_a = emsp.raw(
            "GET", f"{cpms_server.http_url}/ocpi/versions", headers={"Authorization": f"Token {b64(token_a)}"}
        )
        locations_url = conn.endpoint("locations", "SENDER")
        wrong = emsp.raw("GET", locations_url, headers={"Authorization": f"Token {b64('not-a-token')}"})
        missing = emsp.raw("GET", locations_url)

        assert emsp.target == ("NL", "CPO")
        partner.refresh_from_db()
        assert partner.status == PartnerStatus.REGISTERED
        assert [(r["role"], r["country_code"], r["party_id"]) for r in partner.roles] == [
            ("EMSP", "DE", "EMS")
        ]
        assert [p.http_status for p in pages] == [200, 200]
        assert [len(p.data) for p in pages] == [2, 1]
        assert sorted(loc["id"] for p in pages for loc in p.data) == sorted(str(s.pk) for s in sites)
        assert {(loc["country_code"], loc["party_id"]) for p in pages for loc in p.data} == {("NL", "CPO")}
        assert [p.headers.get("X-Total-Count") for p in pages] == ["3", "3"]
        assert_401_envelope(dead_a, "token A after registration")
        assert_401_envelope(wrong, "unknown token")
        assert_401_envelope(missing, "no Authorization header")
        assert emsp.errors == []
        assert emsp.problems == [], "\n".join(emsp.problems)


def test_emsp_rotates_then_unregisters(cpms_server, cpo):
    party, _ = cpo
    partner, token_a = partner_create(party=party, name="Test eMSP")

    with Emsp() as emsp:
        conn = emsp.register(f"{cpms_server.http_url}/ocpi/versions", token_a)
        old_c = conn.token_out
        emsp.rotate()
        # The credentials GET (7.2.1) tells which token works, whatever other modules exist.
        credentials_url = conn.endpoint("credentials")
        with_old = emsp.raw("GET", credentials_url, headers={"Authorization": f"Token {b64(old_c)}"})
        with_new = emsp.call("GET", credentials_url, conn=conn)
        last_c = conn.token_out
        emsp.unregister()
        after = emsp.raw("GET", credentials_url, headers={"Authorization": f"Token {b64(last_c)}"})

        assert conn.token_out != old_c
        assert_401_envelope(with_old, "token C before the rotation")
        assert with_new.ok, with_new
        assert_401_envelope(after, "token C after DELETE credentials")
        partner.refresh_from_db()
        assert partner.status == PartnerStatus.UNREGISTERED
        assert emsp.errors == []
        assert emsp.problems == [], "\n".join(emsp.problems)


def test_our_server_registers_with_the_emsp(cpms_server, cpo):
    party, _ = cpo
    partner, _ = partner_create(party=party, name="Test eMSP")

    with Emsp() as emsp:
        partner = partner_register(
            partner=partner,
            versions_url_=emsp.versions_url,
            token_a=emsp.issue_token_a(),
            base_url=cpms_server.http_url,
        )

        assert partner.status == PartnerStatus.REGISTERED
        assert emsp.target == ("NL", "CPO")
        assert [(r["role"], r["country_code"], r["party_id"]) for r in emsp.connection.roles] == [
            ("CPO", "NL", "CPO")
        ]
        # The eMSP read our versions and details back with the token B we gave it.
        assert emsp.connection.version_url == f"{cpms_server.http_url}/ocpi/2.2.1"
        assert (
            emsp.connection.endpoint("locations", "SENDER") == f"{cpms_server.http_url}/ocpi/2.2.1/locations"
        )
        assert emsp.errors == []
        assert emsp.problems == [], "\n".join(emsp.problems)
