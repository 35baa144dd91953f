from urllib.parse import quote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from stations.models import ChargingStation
from stations.services.credentials import password_hash_check
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory, ConnectorFactory, EvseFactory
from tests.support import at, iso, row


def station_json(station, evses=()) -> dict:
    return {
        "identity": station.identity,
        "name": station.name,
        "organisation": station.organisation_id,
        "site": station.site_id,
        "vendor": station.vendor,
        "model": station.model,
        "serial_number": station.serial_number,
        "firmware_version": station.firmware_version,
        "protocol": station.protocol,
        "registration_status": station.registration_status,
        "security_profile": station.security_profile,
        "password_set": bool(station.password_hash),
        "connected": station.is_connected,
        "last_seen": iso(station.last_seen_at),
        "evses": list(evses),
    }


def test_retrieve_shows_evses_and_connectors(world, tenants, api):
    station = world.station_a1
    station.vendor, station.model, station.protocol = "ACME", "Wallbox 22", "ocpp1.6"
    station.is_connected, station.last_seen_at = True, at(12, 30)
    station.save()
    response = api(world.operator_a).get("/api/v1/stations/A1-CP1/")
    assert response.status_code == 200
    assert response.json() == station_json(
        station,
        evses=[
            {
                "evse_id": tenants.evse_a1.evse_id,
                "public_url": f"http://testserver/c/{tenants.evse_a1.public_code}/",
                "connectors": [
                    {
                        "connector_id": tenants.connector_a1.connector_id,
                        "connector_type": "cType2",
                        "max_power_w": 22000,
                        "status": "Available",
                        "error_code": "",
                        "status_changed_at": "2025-03-01T07:00:00Z",
                    }
                ],
            }
        ],
    )
    assert response.json()["connected"] is True
    assert response.json()["last_seen"] == "2025-03-01T12:30:00Z"


def test_list_is_scoped_and_ordered_by_identity(world, api):
    response = api(world.operator_a).get("/api/v1/stations/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert body["results"] == [station_json(world.station_a1), station_json(world.station_a2)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("site={site_a2}", ["A2-CP1"]),
        ("organisation={org_b}", ["B1-CP1"]),
        ("connected=true", ["A2-CP1"]),
        ("connected=false", ["A1-CP1", "B1-CP1"]),
        ("registration_status=Pending", ["B1-CP1"]),
        ("protocol=ocpp2.0.1", ["A1-CP1"]),
        ("protocol=ocpp1.6&connected=true", ["A2-CP1"]),
        ("", ["A1-CP1", "A2-CP1", "B1-CP1"]),
    ],
)
def test_filters(world, api, query, expected):
    ChargingStation.objects.filter(pk=world.station_a2.pk).update(is_connected=True, protocol="ocpp1.6")
    ChargingStation.objects.filter(pk=world.station_a1.pk).update(protocol="ocpp2.0.1")
    ChargingStation.objects.filter(pk=world.station_b1.pk).update(registration_status="Pending")
    query = query.format(site_a2=world.site_a2.pk, org_b=world.org_b.pk)
    response = api(world.superuser).get(f"/api/v1/stations/?{query}")
    assert response.status_code == 200
    assert [s["identity"] for s in response.json()["results"]] == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("connected=maybe", {"connected": ["Must be a valid boolean."]}),
        ("protocol=ocpp9", {"protocol": ['"ocpp9" is not a valid choice.']}),
        ("registration_status=accepted", {"registration_status": ['"accepted" is not a valid choice.']}),
        ("site=x", {"site": ["A valid integer is required."]}),
    ],
)
def test_bad_filters_are_a_400(world, api, query, expected):
    response = api(world.superuser).get(f"/api/v1/stations/?{query}")
    assert response.status_code == 400
    assert response.json() == expected


def test_list_query_count_does_not_grow_with_stations(world, tenants, api):
    """Two stations (one with an EVSE and a connector) or ten: the same number of queries (no N+1)."""
    client = api(world.operator_a)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/api/v1/stations/").status_code == 200
        return len(captured)

    baseline = queries()
    for n in range(8):
        station = ChargingStationFactory(identity=f"A1-EXTRA-{n}", site=world.site_a1)
        for evse_id in (1, 2):
            ConnectorFactory(evse=EvseFactory(station=station, evse_id=evse_id))
    assert queries() == baseline


@pytest.mark.parametrize(
    "identity",
    ["DE*ACME*E1234.5", "cp-01_main", "CP 7 (yard)", "Ünïcødé-ÇP", "x"],
)
def test_create_and_fetch_identities_with_special_characters(world, api, identity):
    client = api(world.operator_a)
    created = client.post(
        "/api/v1/stations/",
        {"identity": identity, "site": world.site_a1.pk, "password": "s3cret-pass"},
        format="json",
    )
    assert created.status_code == 201
    station = ChargingStation.objects.get(identity=identity)
    assert created.json() == station_json(station)
    fetched = client.get(f"/api/v1/stations/{quote(identity, safe='')}/")
    assert fetched.status_code == 200
    assert fetched.json()["identity"] == identity


def test_identity_with_colon_only_without_basic_auth(world, api):
    client = api(world.operator_a)
    refused = client.post(
        "/api/v1/stations/",
        {"identity": "urn:station:7", "site": world.site_a1.pk, "password": "s3cret-pass"},
        format="json",
    )
    assert refused.status_code == 400
    assert refused.json() == {
        "detail": "Identity 'urn:station:7' contains ':', so it cannot log in with HTTP Basic auth "
        "(security profiles 1 and 2)."
    }
    assert not ChargingStation.objects.filter(identity="urn:station:7").exists()
    created = client.post(
        "/api/v1/stations/",
        {"identity": "urn:station:7", "site": world.site_a1.pk, "security_profile": 0},
        format="json",
    )
    assert created.status_code == 201
    assert (
        client.get(f"/api/v1/stations/{quote('urn:station:7', safe='')}/").json()["identity"]
        == "urn:station:7"
    )


def test_create_sets_everything_and_hashes_the_password(world, api):
    response = api(world.operator_a).post(
        "/api/v1/stations/",
        {
            "identity": "A2-CP2",
            "name": "Gate",
            "site": world.site_a2.pk,
            "organisation": world.org_a.pk,
            "registration_status": "Pending",
            "security_profile": 2,
            "password": "correct-horse-1",
        },
        format="json",
    )
    assert response.status_code == 201
    station = ChargingStation.objects.get(identity="A2-CP2")
    assert (station.name, station.site_id, station.organisation_id) == (
        "Gate",
        world.site_a2.pk,
        world.org_a.pk,
    )
    assert (station.registration_status, station.security_profile) == ("Pending", 2)
    assert password_hash_check("correct-horse-1", station.password_hash)
    assert "correct-horse-1" not in station.password_hash
    body = response.json()
    assert "password" not in body
    assert body["password_set"] is True


def test_create_without_site_needs_the_organisation(world, api):
    client = api(world.operator_a)
    missing = client.post("/api/v1/stations/", {"identity": "NOSITE", "security_profile": 0}, format="json")
    assert missing.status_code == 400
    assert missing.json() == {"detail": "Give the station's site or organisation."}
    created = client.post(
        "/api/v1/stations/",
        {"identity": "NOSITE", "organisation": world.org_a.pk, "security_profile": 0},
        format="json",
    )
    assert created.status_code == 201
    station = ChargingStation.objects.get(identity="NOSITE")
    assert (station.site_id, station.organisation_id, station.password_hash) == (None, world.org_a.pk, "")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"identity": "A1/CP9"},
            {"detail": "Station identity must not contain '/': it is one segment of the OCPP URL."},
        ),
        ({"identity": "A1-CP1"}, {"detail": "A station with the identity 'A1-CP1' already exists."}),
        ({"identity": "B1-CP1"}, {"detail": "A station with the identity 'B1-CP1' already exists."}),
        ({"identity": ""}, {"identity": ["This field may not be blank."]}),
        ({"identity": "X" * 49}, {"identity": ["Ensure this field has no more than 48 characters."]}),
        ({"identity": "tab\there"}, {"detail": "Station identity must contain printable characters only."}),
        (
            {"identity": "NEW", "password": "short"},
            {"detail": "Charger password must be 8-64 characters long."},
        ),
        (
            {"identity": "NEW", "password": "with:colon1"},
            {"detail": "Charger password must be printable and must not contain ':'."},
        ),
        (
            {"identity": "NEW", "password": None},
            {"password": ["This field may not be null."]},
        ),
        (
            {"identity": "NEW", "security_profile": 1, "password": None},
            {"password": ["This field may not be null."]},
        ),
        (
            {"identity": "NEW", "security_profile": 4},
            {"security_profile": ["Ensure this value is less than or equal to 3."]},
        ),
        (
            {"identity": "NEW", "registration_status": "Maybe"},
            {"registration_status": ['"Maybe" is not a valid choice.']},
        ),
        (
            {"identity": "NEW", "connected": True},
            {"connected": ["Unknown or read-only field; it cannot be set."]},
        ),
    ],
    ids=[
        "slash",
        "duplicate",
        "duplicate-other-tenant",
        "empty",
        "too-long",
        "non-printable",
        "short-password",
        "colon-password",
        "null-password",
        "null-password-profile-1",
        "profile-4",
        "bad-registration-status",
        "read-only-field",
    ],
)
def test_create_refuses_bad_input(world, api, body, expected):
    body = {"site": world.site_a1.pk, "password": "s3cret-pass", **body}
    response = api(world.operator_a).post("/api/v1/stations/", body, format="json")
    assert response.status_code == 400
    assert response.json() == expected
    assert ChargingStation.objects.count() == 3


def test_basic_auth_profiles_need_a_password(world, api):
    client = api(world.operator_a)
    for profile in (1, 2):
        response = client.post(
            "/api/v1/stations/",
            {"identity": f"P{profile}", "site": world.site_a1.pk, "security_profile": profile},
            format="json",
        )
        assert response.status_code == 400
        assert response.json() == {
            "detail": f"Security profile {profile} authenticates with HTTP Basic: set a password."
        }
    for profile in (0, 3):
        response = client.post(
            "/api/v1/stations/",
            {"identity": f"P{profile}", "site": world.site_a1.pk, "security_profile": profile},
            format="json",
        )
        assert response.status_code == 201
    assert sorted(
        ChargingStation.objects.filter(identity__startswith="P").values_list("identity", flat=True)
    ) == [
        "P0",
        "P3",
    ]


def test_patch_sets_a_new_password(world, api):
    response = api(world.operator_a).patch(
        "/api/v1/stations/A1-CP1/", {"password": "rotated-pass-2"}, format="json"
    )
    assert response.status_code == 200
    assert "password" not in response.json()
    world.station_a1.refresh_from_db()
    assert password_hash_check("rotated-pass-2", world.station_a1.password_hash)
    assert not password_hash_check(DEFAULT_STATION_PASSWORD, world.station_a1.password_hash)


def test_patch_changes_only_the_given_fields(world, api):
    ChargingStation.objects.filter(pk=world.station_a1.pk).update(is_connected=True, last_seen_at=at(9))
    before = row(world.station_a1)
    response = api(world.operator_a).patch(
        "/api/v1/stations/A1-CP1/",
        {"name": "Front", "site": world.site_a2.pk, "registration_status": "Rejected"},
        format="json",
    )
    assert response.status_code == 200
    after = row(world.station_a1)
    assert after["updated_at"] > before["updated_at"]
    assert {**after, "updated_at": None} == {
        **before,
        "name": "Front",
        "site_id": world.site_a2.pk,
        "registration_status": "Rejected",
        "updated_at": None,
    }
    assert response.json()["site"] == world.site_a2.pk


def test_patch_with_a_bad_password_changes_nothing(world, api):
    before = row(world.station_a1)
    response = api(world.operator_a).patch(
        "/api/v1/stations/A1-CP1/", {"name": "Renamed", "password": "short"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Charger password must be 8-64 characters long."}
    assert row(world.station_a1) == before


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"identity": "A1-CP1-NEW"},
            "A station's identity cannot be changed; register a new station instead.",
        ),
        ({"organisation": "org_b"}, "A station cannot move to another organisation."),
        ({"site": "site_b1"}, "Site {site_b1} not found."),
        ({"security_profile": 0, "name": "x"}, None),
    ],
    ids=["identity", "organisation", "foreign-site", "control"],
)
def test_patch_tenant_fields_are_refused(world, api, body, expected):
    """docs/reliability.md case 37: role/tenant fields in a PATCH change nothing."""
    ids = {"org_b": world.org_b.pk, "site_b1": world.site_b1.pk}
    body = {key: ids.get(value, value) for key, value in body.items()}
    before = row(world.station_a1)
    response = api(world.operator_a).patch("/api/v1/stations/A1-CP1/", body, format="json")
    if expected is None:  # the same request shape succeeds when nothing in it crosses a tenant
        assert response.status_code == 200
        return
    assert response.status_code == 400
    assert response.json() == {"detail": expected.format(site_b1=world.site_b1.pk)}
    assert row(world.station_a1) == before


def test_superuser_cannot_put_a_station_on_another_organisations_site(world, api):
    before = row(world.station_a1)
    response = api(world.superuser).patch(
        "/api/v1/stations/A1-CP1/", {"site": world.site_b1.pk}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"Site {world.site_b1.pk} belongs to another organisation than station 'A1-CP1'."
    }
    assert row(world.station_a1) == before


def test_create_on_a_site_of_another_organisation_than_given(world, api):
    response = api(world.superuser).post(
        "/api/v1/stations/",
        {"identity": "MIX", "site": world.site_b1.pk, "organisation": world.org_a.pk, "security_profile": 0},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"Site {world.site_b1.pk} does not belong to organisation {world.org_a.pk}."
    }
    assert not ChargingStation.objects.filter(identity="MIX").exists()


def test_finance_reads_but_cannot_write(world, api):
    client = api(world.finance_a)
    assert client.get("/api/v1/stations/A2-CP1/").status_code == 200
    before = row(world.station_a2)
    response = client.patch("/api/v1/stations/A2-CP1/", {"name": "Finance"}, format="json")
    assert response.status_code == 403
    assert response.json() == {"detail": "You may not manage station 'A2-CP1'."}
    assert row(world.station_a2) == before
    created = client.post(
        "/api/v1/stations/",
        {"identity": "FIN", "site": world.site_a1.pk, "password": "s3cret-pass"},
        format="json",
    )
    assert created.status_code == 403
    assert created.json() == {"detail": f"You may not manage site {world.site_a1.pk}."}
    assert not ChargingStation.objects.filter(identity="FIN").exists()


def test_site_host_sees_their_station_but_cannot_change_it(world, api):
    client = api(world.host_a1)
    assert client.get("/api/v1/stations/A1-CP1/").status_code == 200
    before = row(world.station_a1)
    response = client.patch("/api/v1/stations/A1-CP1/", {"password": "hosts-own-pw"}, format="json")
    assert response.status_code == 403
    assert row(world.station_a1) == before
    created = client.post(
        "/api/v1/stations/",
        {"identity": "HOST", "site": world.site_a1.pk, "password": "s3cret-pass"},
        format="json",
    )
    assert created.status_code == 403
    assert not ChargingStation.objects.filter(identity="HOST").exists()


def test_raising_the_security_profile_needs_a_password(world, api):
    station = ChargingStationFactory(
        identity="OPEN-CP", site=world.site_a1, security_profile=0, password_hash=""
    )
    client = api(world.operator_a)
    before = row(station)
    refused = client.patch("/api/v1/stations/OPEN-CP/", {"security_profile": 1}, format="json")
    assert refused.status_code == 400
    assert refused.json() == {"detail": "Security profile 1 authenticates with HTTP Basic: set a password."}
    assert row(station) == before
    accepted = client.patch(
        "/api/v1/stations/OPEN-CP/", {"security_profile": 1, "password": "now-with-pw1"}, format="json"
    )
    assert accepted.status_code == 200
    station.refresh_from_db()
    assert station.security_profile == 1
    assert password_hash_check("now-with-pw1", station.password_hash)


def test_a_station_already_missing_its_password_can_still_be_accepted(world, api):
    """An existing inconsistency (profile 1, no password) must not lock the operator out of the station."""
    station = ChargingStationFactory(
        identity="LEGACY",
        site=world.site_a1,
        security_profile=1,
        password_hash="",
        registration_status="Pending",
    )
    response = api(world.operator_a).patch(
        "/api/v1/stations/LEGACY/", {"registration_status": "Accepted"}, format="json"
    )
    assert response.status_code == 200
    assert row(station)["registration_status"] == "Accepted"
