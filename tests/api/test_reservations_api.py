"""Reservations and local authorisation lists over the API: success with a fake charger, and the scope and
permission matrix (site host: own sites; another organisation: 404, or 400 for a station named in a body;
finance: reads, cannot command -> 403), with nothing changed and nothing sent after a refusal."""

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions.models import LocalListEntry, LocalListState, Reservation
from stations.models import ChargingStation, Command
from tests.factories import EvseFactory, IdTokenFactory
from tests.support import iso, row


@pytest.fixture
def stations(world):
    """Every standing station connected (1.6), each with EVSE 1."""
    ChargingStation.objects.update(protocol="ocpp1.6", is_connected=True)
    for station in (world.station_a1, world.station_a2, world.station_b1):
        station.refresh_from_db()
        EvseFactory(station=station, evse_id=1)
    return world


@pytest.fixture
def token_a(world):
    return IdTokenFactory(organisation=world.org_a, value="RES-A", in_local_list=True)


@pytest.fixture
def token_b(world):
    return IdTokenFactory(organisation=world.org_b, value="RES-B", in_local_list=True)


def in_an_hour() -> str:
    return iso((timezone.now() + timedelta(hours=1)).replace(microsecond=0))


def body(station: str, token, **extra) -> dict:
    return {"station": station, "id_token": token.pk, "expires_at": in_an_hour(), **extra}


# --- create ----------------------------------------------------------------------------------------------


def test_create(stations, token_a, api, fake_charger):
    world = stations
    expires_at = in_an_hour()
    response = api(world.operator_a).post(
        "/api/v1/reservations/", body("A1-CP1", token_a, evse_id=1, expires_at=expires_at), format="json"
    )
    assert response.status_code == 201
    reservation = Reservation.objects.get()
    command = Command.objects.get()
    payload = response.json()
    assert payload["command"]["id"] == command.pk
    assert (payload["command"]["action"], payload["command"]["status"], payload["command"]["response"]) == (
        "ReserveNow",
        "answered",
        {"status": "Accepted"},
    )
    assert {**payload, "command": None} == {
        "id": reservation.pk,
        "station": "A1-CP1",
        "evse_id": 1,
        "connector_id": None,
        "id_token": token_a.pk,
        "id_tag": "RES-A",
        "expires_at": expires_at,
        "status": "accepted",
        "charger_status": "Accepted",
        "session": None,
        "command": None,
        "created_at": iso(reservation.created_at),
        "updated_at": iso(reservation.updated_at),
    }
    assert fake_charger.received == [
        (
            "A1-CP1",
            "ReserveNow",
            {
                "connectorId": 1,
                "expiryDate": expires_at.replace("Z", ".000Z"),
                "idTag": "RES-A",
                "reservationId": reservation.pk,
            },
        )
    ]
    assert (reservation.created_by_id, command.requested_by_id, command.source) == (
        world.operator_a.pk,
        world.operator_a.pk,
        "api",
    )


def test_the_site_host_reserves_at_their_site(stations, token_a, api, fake_charger):
    response = api(stations.host_a1).post("/api/v1/reservations/", body("A1-CP1", token_a), format="json")
    assert response.status_code == 201
    assert response.json()["status"] == "accepted"


def test_the_charger_refuses(stations, token_a, api, fake_charger):
    fake_charger.answers["ReserveNow"] = {"status": "Occupied"}
    response = api(stations.operator_a).post("/api/v1/reservations/", body("A1-CP1", token_a), format="json")
    assert response.status_code == 201
    assert (response.json()["status"], response.json()["charger_status"]) == ("rejected", "Occupied")


@pytest.mark.parametrize(
    ("actor", "station", "status", "detail"),
    [
        ("host_a1", "A2-CP1", 400, "Station 'A2-CP1' not found."),
        ("operator_b", "A1-CP1", 400, "Station 'A1-CP1' not found."),
        ("finance_a", "A1-CP1", 403, "You may not command station 'A1-CP1'."),
        ("operator_a", "NOWHERE", 400, "Station 'NOWHERE' not found."),
    ],
)
def test_create_refused(stations, token_a, api, fake_charger, actor, station, status, detail):
    response = api(getattr(stations, actor)).post(
        "/api/v1/reservations/", body(station, token_a), format="json"
    )
    assert (response.status_code, response.json()) == (status, {"detail": detail})
    assert (Reservation.objects.count(), Command.objects.count(), fake_charger.received) == (0, 0, [])


def test_a_token_of_another_organisation_is_refused(stations, token_b, api, fake_charger):
    response = api(stations.operator_a).post("/api/v1/reservations/", body("A1-CP1", token_b), format="json")
    assert (response.status_code, response.json()) == (
        400,
        {"detail": f"Id token {token_b.pk} not found in the station's organisation."},
    )
    assert (Reservation.objects.count(), fake_charger.received) == (0, [])


def test_a_station_not_connected_is_409(stations, token_a, api, fake_charger):
    ChargingStation.objects.filter(identity="A1-CP1").update(is_connected=False)
    response = api(stations.operator_a).post("/api/v1/reservations/", body("A1-CP1", token_a), format="json")
    assert (response.status_code, response.json()) == (409, {"detail": "Station 'A1-CP1' is not connected."})
    assert (Reservation.objects.count(), fake_charger.received) == (0, [])


def test_unknown_fields_are_refused(stations, token_a, api, fake_charger):
    response = api(stations.operator_a).post(
        "/api/v1/reservations/", body("A1-CP1", token_a, status="accepted"), format="json"
    )
    assert (response.status_code, response.json()) == (
        400,
        {"status": ["Unknown or read-only field; it cannot be set."]},
    )
    assert Reservation.objects.count() == 0


# --- list, detail ------------------------------------------------------------------------------------


@pytest.fixture
def reservations(stations, token_a, token_b) -> dict:
    world = stations
    expires_at = timezone.now() + timedelta(hours=1)
    made = {}
    for name, station, token in (
        ("a1", world.station_a1, token_a),
        ("a2", world.station_a2, token_a),
        ("b1", world.station_b1, token_b),
    ):
        made[name] = Reservation.objects.create(
            station=station,
            id_token=token,
            expires_at=expires_at,
            status="accepted",
            charger_status="Accepted",
        )
    return made


@pytest.mark.parametrize(
    ("actor", "expected"),
    [
        ("operator_a", ["a2", "a1"]),
        ("host_a1", ["a1"]),
        ("operator_b", ["b1"]),
        ("finance_a", ["a2", "a1"]),
        ("superuser", ["b1", "a2", "a1"]),
    ],
)
def test_list_is_scoped(stations, reservations, api, actor, expected):
    response = api(getattr(stations, actor)).get("/api/v1/reservations/")
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [reservations[name].pk for name in expected]


def test_list_filters(stations, reservations, api):
    Reservation.objects.filter(pk=reservations["a1"].pk).update(status="used")
    client = api(stations.operator_a)
    by_station = client.get("/api/v1/reservations/?station=A2-CP1").json()["results"]
    by_status = client.get("/api/v1/reservations/?status=used").json()["results"]
    assert ([r["id"] for r in by_station], [r["id"] for r in by_status]) == (
        [reservations["a2"].pk],
        [reservations["a1"].pk],
    )


@pytest.mark.parametrize(
    ("actor", "name", "status"),
    [
        ("operator_a", "a1", 200),
        ("finance_a", "a2", 200),
        ("host_a1", "a1", 200),
        ("host_a1", "a2", 404),
        ("operator_b", "a1", 404),
        ("operator_a", "b1", 404),
    ],
)
def test_detail_is_scoped(stations, reservations, api, actor, name, status):
    reservation = reservations[name]
    response = api(getattr(stations, actor)).get(f"/api/v1/reservations/{reservation.pk}/")
    assert response.status_code == status
    if status == 404:
        assert response.json() == {"detail": f"Reservation {reservation.pk} not found."}
    else:
        assert (response.json()["id"], response.json()["command"]) == (reservation.pk, None)


# --- cancel ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("actor", "name"), [("operator_a", "a2"), ("host_a1", "a1"), ("superuser", "b1")])
def test_cancel(stations, reservations, api, fake_charger, actor, name):
    reservation = reservations[name]
    response = api(getattr(stations, actor)).post(f"/api/v1/reservations/{reservation.pk}/cancel/")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["command"]["action"]) == (
        "cancelled",
        "CancelReservation",
    )
    assert fake_charger.received == [
        (reservation.station.identity, "CancelReservation", {"reservationId": reservation.pk})
    ]


@pytest.mark.parametrize(
    ("actor", "name", "status", "detail"),
    [
        ("finance_a", "a1", 403, "You may not command reservation {pk}."),
        ("operator_b", "a1", 404, "Reservation {pk} not found."),
        ("host_a1", "a2", 404, "Reservation {pk} not found."),
    ],
)
def test_cancel_refused(stations, reservations, api, fake_charger, actor, name, status, detail):
    reservation = reservations[name]
    before = row(reservation)
    response = api(getattr(stations, actor)).post(f"/api/v1/reservations/{reservation.pk}/cancel/")
    assert (response.status_code, response.json()) == (status, {"detail": detail.format(pk=reservation.pk)})
    assert row(reservation) == before
    assert (Command.objects.count(), fake_charger.received) == (0, [])


def test_cancel_of_a_used_reservation_is_409(stations, reservations, api, fake_charger):
    reservation = reservations["a1"]
    Reservation.objects.filter(pk=reservation.pk).update(status="used")
    response = api(stations.operator_a).post(f"/api/v1/reservations/{reservation.pk}/cancel/")
    assert (response.status_code, response.json()) == (
        409,
        {"detail": f"Reservation {reservation.pk} is used: there is nothing to cancel."},
    )
    assert fake_charger.received == []


# --- local lists -------------------------------------------------------------------------------------


def state_json(version, reported, synced_at, last_error="") -> dict:
    return {
        "version": version,
        "reported_version": reported,
        "synced_at": synced_at,
        "last_error": last_error,
    }


def test_sync_then_read_the_list(stations, token_a, api, fake_charger):
    client = api(stations.operator_a)
    response = client.post("/api/v1/stations/A1-CP1/local-list/sync/", {}, format="json")
    assert response.status_code == 200
    state = LocalListState.objects.get(station=stations.station_a1)
    command = Command.objects.get()
    payload = response.json()
    assert [c["id"] for c in payload["commands"]] == [command.pk]
    assert {**payload, "commands": None} == {
        "update_type": "Full",
        "entries": 1,
        "removals": 0,
        "commands": None,
        "state": state_json(1, 1, iso(state.synced_at)),
    }
    assert fake_charger.received == [
        (
            "A1-CP1",
            "SendLocalList",
            {
                "listVersion": 1,
                "updateType": "Full",
                "localAuthorizationList": [{"idTag": "RES-A", "idTagInfo": {"status": "Accepted"}}],
            },
        )
    ]
    listed = client.get("/api/v1/stations/A1-CP1/local-list/")
    assert (listed.status_code, listed.json()) == (
        200,
        {
            "station": "A1-CP1",
            "state": state_json(1, 1, iso(state.synced_at)),
            "entries": [
                {
                    "id_token": token_a.pk,
                    "value": "RES-A",
                    "status": "Accepted",
                    "expires_at": None,
                    "group_value": "",
                }
            ],
        },
    )
    again = client.post("/api/v1/stations/A1-CP1/local-list/sync/", {}, format="json")
    assert again.json() == {
        "update_type": None,
        "entries": 0,
        "removals": 0,
        "commands": [],
        "state": state_json(1, 1, iso(state.synced_at)),
    }


def test_a_list_never_sent(stations, api):
    response = api(stations.operator_a).get("/api/v1/stations/A2-CP1/local-list/")
    assert (response.status_code, response.json()) == (
        200,
        {"station": "A2-CP1", "state": state_json(0, None, None), "entries": []},
    )


@pytest.mark.parametrize(
    ("actor", "station", "status"),
    [
        ("operator_a", "A1-CP1", 200),
        ("finance_a", "A1-CP1", 200),
        ("host_a1", "A1-CP1", 200),
        ("host_a1", "A2-CP1", 404),
        ("operator_b", "A1-CP1", 404),
        ("operator_a", "B1-CP1", 404),
    ],
)
def test_reading_a_list_is_scoped(stations, api, actor, station, status):
    response = api(getattr(stations, actor)).get(f"/api/v1/stations/{station}/local-list/")
    assert response.status_code == status
    if status == 404:
        assert response.json() == {"detail": f"Station {station!r} not found."}


@pytest.mark.parametrize(("actor", "station"), [("host_a1", "A1-CP1"), ("operator_b", "B1-CP1")])
def test_syncing_at_ones_own_stations(stations, token_a, token_b, api, fake_charger, actor, station):
    response = api(getattr(stations, actor)).post(
        f"/api/v1/stations/{station}/local-list/sync/", {}, format="json"
    )
    assert (response.status_code, response.json()["update_type"]) == (200, "Full")
    assert [(identity, action) for identity, action, _ in fake_charger.received] == [
        (station, "SendLocalList")
    ]


@pytest.mark.parametrize(
    ("actor", "station", "status", "detail"),
    [
        ("finance_a", "A1-CP1", 403, "You may not command station 'A1-CP1'."),
        ("host_a1", "A2-CP1", 404, "Station 'A2-CP1' not found."),
        ("operator_b", "A1-CP1", 404, "Station 'A1-CP1' not found."),
    ],
)
def test_sync_refused(stations, token_a, api, fake_charger, actor, station, status, detail):
    response = api(getattr(stations, actor)).post(
        f"/api/v1/stations/{station}/local-list/sync/", {"full": True}, format="json"
    )
    assert (response.status_code, response.json()) == (status, {"detail": detail})
    assert (LocalListState.objects.count(), LocalListEntry.objects.count(), Command.objects.count()) == (
        0,
        0,
        0,
    )
    assert fake_charger.received == []


def test_sync_of_a_station_not_connected_is_409(stations, token_a, api, fake_charger):
    ChargingStation.objects.filter(identity="A1-CP1").update(is_connected=False)
    response = api(stations.operator_a).post("/api/v1/stations/A1-CP1/local-list/sync/", {}, format="json")
    assert (response.status_code, response.json()) == (409, {"detail": "Station 'A1-CP1' is not connected."})
    assert (LocalListState.objects.count(), fake_charger.received) == (0, [])


def test_sync_refuses_unknown_fields(stations, api, fake_charger):
    response = api(stations.operator_a).post(
        "/api/v1/stations/A1-CP1/local-list/sync/", {"version": 3}, format="json"
    )
    assert (response.status_code, response.json()) == (
        400,
        {"version": ["Unknown or read-only field; it cannot be set."]},
    )
    assert fake_charger.received == []
