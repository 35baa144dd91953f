"""Each EVSE's public URL (the driver's page behind its QR code) in `GET /api/v1/stations/<identity>/`, and
the public code it is built from."""

import re

import pytest

from stations.models import PUBLIC_CODE_ALPHABET, Evse
from stations.selectors import evse_public_url
from stations.services.ocpp import connector_resolve
from tests.factories import ConnectorFactory, EvseFactory

CODE = re.compile(f"^[{PUBLIC_CODE_ALPHABET}]{{10}}$")


@pytest.fixture
def evses(world):
    """Two EVSEs of A1-CP1 (numbers 1 and 2) and one of A2-CP1."""
    a1_1 = EvseFactory(station=world.station_a1, evse_id=1)
    a1_2 = EvseFactory(station=world.station_a1, evse_id=2)
    a2_1 = EvseFactory(station=world.station_a2, evse_id=1)
    for evse in (a1_1, a1_2, a2_1):
        ConnectorFactory(evse=evse, connector_id=1)
    return a1_1, a1_2, a2_1


def test_each_evse_carries_its_public_url_on_the_requests_host(world, api, evses):
    a1_1, a1_2, _ = evses
    response = api(world.operator_a).get("/api/v1/stations/A1-CP1/")
    assert response.status_code == 200
    assert [(evse["evse_id"], evse["public_url"]) for evse in response.json()["evses"]] == [
        (1, f"http://testserver/c/{a1_1.public_code}/"),
        (2, f"http://testserver/c/{a1_2.public_code}/"),
    ]


def test_public_base_url_wins_over_the_requests_host(world, api, evses, settings):
    settings.PUBLIC_BASE_URL = "https://charge.example.com"
    a1_1, a1_2, _ = evses
    response = api(world.operator_a).get("/api/v1/stations/A1-CP1/")
    assert response.status_code == 200
    assert [evse["public_url"] for evse in response.json()["evses"]] == [
        f"https://charge.example.com/c/{a1_1.public_code}/",
        f"https://charge.example.com/c/{a1_2.public_code}/",
    ]


def test_the_station_list_carries_the_same_urls(world, api, evses):
    a1_1, a1_2, a2_1 = evses
    response = api(world.operator_a).get("/api/v1/stations/")
    assert response.status_code == 200
    assert {
        station["identity"]: [evse["public_url"] for evse in station["evses"]]
        for station in response.json()["results"]
    } == {
        "A1-CP1": [
            f"http://testserver/c/{a1_1.public_code}/",
            f"http://testserver/c/{a1_2.public_code}/",
        ],
        "A2-CP1": [f"http://testserver/c/{a2_1.public_code}/"],
    }


def test_a_site_host_sees_the_urls_of_their_site_only(world, api, evses):
    a1_1, a1_2, _ = evses
    client = api(world.host_a1)
    own = client.get("/api/v1/stations/A1-CP1/")
    assert own.status_code == 200
    assert [evse["public_url"] for evse in own.json()["evses"]] == [
        f"http://testserver/c/{a1_1.public_code}/",
        f"http://testserver/c/{a1_2.public_code}/",
    ]
    other_site = client.get("/api/v1/stations/A2-CP1/")
    assert other_site.status_code == 404
    assert other_site.json() == {"detail": "Station 'A2-CP1' not found."}


def test_another_organisations_user_cannot_see_the_station(world, api, evses):
    response = api(world.operator_b).get("/api/v1/stations/A1-CP1/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Station 'A1-CP1' not found."}
    listed = api(world.operator_b).get("/api/v1/stations/")
    assert [station["identity"] for station in listed.json()["results"]] == ["B1-CP1"]


def test_without_a_request_or_setting_the_url_is_the_bare_path(evses, settings):
    settings.PUBLIC_BASE_URL = ""
    a1_1, _, _ = evses
    assert evse_public_url(a1_1) == f"/c/{a1_1.public_code}/"
    settings.PUBLIC_BASE_URL = "https://charge.example.com/operator-x"
    assert evse_public_url(a1_1) == f"https://charge.example.com/operator-x/c/{a1_1.public_code}/"


def test_codes_are_random_distinct_and_stable(world, evses):
    codes = [evse.public_code for evse in evses]
    assert all(CODE.match(code) for code in codes), codes
    assert len(set(codes)) == 3
    a1_1 = evses[0]
    a1_1.max_power_w = 11000
    a1_1.save()
    assert Evse.objects.get(pk=a1_1.pk).public_code == codes[0]


def test_every_way_of_creating_an_evse_gives_it_a_code(world):
    # A charger reporting an EVSE we did not know (get_or_create in the OCPP services) ...
    evse_pk, _connector_pk = connector_resolve(station_id=world.station_b1.pk, evse_id=3, connector_id=1)
    reported = Evse.objects.get(pk=evse_pk)
    # ... and bulk_create, which calls the field's default once per row.
    bulk = Evse.objects.bulk_create([Evse(station=world.station_b1, evse_id=n) for n in (4, 5, 6)])
    codes = [reported.public_code, *(evse.public_code for evse in bulk)]
    assert all(CODE.match(code) for code in codes), codes
    assert len(set(codes)) == 4
    assert sorted(
        Evse.objects.filter(station=world.station_b1).values_list("public_code", flat=True)
    ) == sorted(codes)
