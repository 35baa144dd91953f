"""HubClientInfo, Receiver (cpms/ocpi/services/hub_client_info.py): a hub pushes and reads back ClientInfo;
any other partner is refused and changes nothing."""

import orjson
import pytest
from django.test import Client

from cpms.ocpi.enums import Role
from cpms.ocpi.models import OcpiClientInfo
from tests.ocpi.conftest import OcpiCaller, partner_registered

pytestmark = pytest.mark.django_db

URL = "/ocpi/2.2.1/hubclientinfo"


def _body(response):
    return orjson.loads(response.content)


@pytest.fixture
def hub(roaming):
    partner, token = partner_registered(
        roaming.party_a, name="hub", country_code="NL", party_id="HUB", role=Role.HUB
    )
    return OcpiCaller(token, Client()), partner


def info(status: str = "CONNECTED", last_updated: str = "2026-12-07T10:00:00Z", **fields) -> dict:
    return {
        "party_id": "EMX",
        "country_code": "DE",
        "role": "EMSP",
        "status": status,
        "last_updated": last_updated,
        **fields,
    }


def test_a_hub_pushes_and_reads_client_info(hub):
    caller, partner = hub

    response = caller.request("PUT", f"{URL}/DE/EMX", info())

    assert response.status_code == 200
    assert _body(response)["status_code"] == 1000
    stored = OcpiClientInfo.objects.get()
    assert (stored.partner, stored.country_code, stored.party_id, stored.role, stored.status) == (
        partner,
        "DE",
        "EMX",
        "EMSP",
        "CONNECTED",
    )
    response = caller.get(f"{URL}/DE/EMX")
    assert _body(response)["data"] == info()


def test_a_newer_push_updates_an_older_one_changes_nothing(hub):
    caller, _ = hub
    caller.request("PUT", f"{URL}/DE/EMX", info())
    caller.request("PUT", f"{URL}/DE/EMX", info("OFFLINE", "2026-12-07T11:00:00Z"))
    caller.request("PUT", f"{URL}/DE/EMX", info("SUSPENDED", "2026-12-07T09:00:00Z"))

    assert _body(caller.get(f"{URL}/DE/EMX"))["data"]["status"] == "OFFLINE"
    assert OcpiClientInfo.objects.count() == 1


def test_an_unknown_party_is_404(hub):
    caller, _ = hub
    response = caller.get(f"{URL}/DE/ZZZ")
    assert response.status_code == 404
    assert _body(response)["status_code"] == 2000


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        info(status="ASLEEP"),
        info(role="DRIVER"),
        info(last_updated="yesterday"),
        info(party_id="TOOLONG"),
        info(country_code="FR"),  # not the party of the URL
        {"status": "CONNECTED"},
    ],
)
def test_malformed_client_info_is_2001(hub, body):
    caller, _ = hub
    response = caller.request("PUT", f"{URL}/DE/EMX", body)
    assert response.status_code == 400
    assert _body(response)["status_code"] == 2001
    assert OcpiClientInfo.objects.count() == 0


def test_a_partner_that_is_not_a_hub_is_refused(roaming):
    for method, body in (("PUT", info()), ("GET", None)):
        response = roaming.caller_a.request(method, f"{URL}/DE/EMX", body)
        assert response.status_code == 405
        assert _body(response)["status_code"] == 2000
    assert OcpiClientInfo.objects.count() == 0


def test_a_hub_sees_only_what_it_pushed(hub, roaming):
    caller, _ = hub
    caller.request("PUT", f"{URL}/DE/EMX", info())
    _, other = partner_registered(
        roaming.party_a, name="hub-2", country_code="NL", party_id="HB2", role=Role.HUB
    )
    response = OcpiCaller(other, Client()).get(f"{URL}/DE/EMX")
    assert response.status_code == 404
