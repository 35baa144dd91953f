"""OCPI fixtures: our CPO parties for organisations A and B (the `world` fixture), partners registered with
them, and a Django test client that calls us as a partner would."""

from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from django.test import Client

from cpms.ocpi import client as ocpi_client
from cpms.ocpi import protocol
from cpms.ocpi.enums import PartnerStatus, Role
from cpms.ocpi.models import OcpiPartner, OcpiParty

PARTNER_URL = "http://emsp.invalid/ocpi/2.2.1"


def partner_registered(
    party: OcpiParty,
    *,
    name: str,
    country_code: str = "DE",
    party_id: str = "EMS",
    role: str = Role.EMSP,
    base_url: str = PARTNER_URL,
) -> tuple[OcpiPartner, str]:
    """A partner registered with `party` (as after the credentials exchange) and the token it calls us with.
    Its endpoints are `base_url/<module>`; nothing listens there unless a test serves it."""
    token = protocol.token_new()
    modules = (
        "credentials",
        "locations",
        "tariffs",
        "sessions",
        "cdrs",
        "tokens",
        "commands",
        "hubclientinfo",
    )
    partner = OcpiPartner.objects.create(
        party=party,
        name=name,
        status=PartnerStatus.REGISTERED,
        incoming_token_hash=protocol.token_hash(token),
        outgoing_token_encrypted=ocpi_client.outgoing_token_seal(f"out-{name}"),
        versions_url=f"{base_url.rsplit('/', 1)[0]}/versions",
        version="2.2.1",
        endpoints=[
            {
                "identifier": module,
                "role": "SENDER" if module in ("tokens", "commands") else "RECEIVER",
                "url": f"{base_url}/{module}",
            }
            for module in modules
        ],
        roles=[
            {
                "role": role,
                "country_code": country_code,
                "party_id": party_id,
                "business_details": {"name": name},
            }
        ],
    )
    return partner, token


@dataclass
class OcpiCaller:
    """Calls our OCPI endpoints with a partner's token (base64, as 2.2.1 sends it)."""

    token: str
    http: Client

    def request(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        extra = {"HTTP_AUTHORIZATION": protocol.authorization_header(self.token)}
        extra.update({f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()})
        data = orjson.dumps(body) if body is not None else b""
        return self.http.generic(method, path, data=data, content_type="application/json", **extra)

    def get(self, path: str, **headers: str) -> Any:
        return self.request("GET", path, **headers)


@dataclass
class Roaming:
    party_a: OcpiParty
    party_b: OcpiParty
    partner_a: OcpiPartner  # an eMSP (DE*EMS) registered with organisation A
    partner_a2: OcpiPartner  # another eMSP (FR*OTH) registered with organisation A
    partner_b: OcpiPartner  # an eMSP (DE*EMS too) registered with organisation B
    caller_a: OcpiCaller
    caller_a2: OcpiCaller
    caller_b: OcpiCaller


@pytest.fixture
def roaming(world) -> Roaming:
    party_a = OcpiParty.objects.create(
        organisation=world.org_a, country_code="NL", party_id="AAA", name="Org A"
    )
    party_b = OcpiParty.objects.create(
        organisation=world.org_b, country_code="NL", party_id="BBB", name="Org B"
    )
    partner_a, token_a = partner_registered(party_a, name="emsp-a")
    partner_a2, token_a2 = partner_registered(
        party_a, name="emsp-a2", country_code="FR", party_id="OTH", base_url="http://other.invalid/ocpi/2.2.1"
    )
    partner_b, token_b = partner_registered(party_b, name="emsp-b")
    return Roaming(
        party_a=party_a,
        party_b=party_b,
        partner_a=partner_a,
        partner_a2=partner_a2,
        partner_b=partner_b,
        caller_a=OcpiCaller(token_a, Client()),
        caller_a2=OcpiCaller(token_a2, Client()),
        caller_b=OcpiCaller(token_b, Client()),
    )
