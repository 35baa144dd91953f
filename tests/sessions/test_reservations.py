"""Reservations: the ReserveNow / CancelReservation builders of every version (valid against the official
schemas), the services with a fake charger answering through the real hooks, what chargers report
(2.0.1 ReservationStatusUpdate, a session started for a reservation) and expiry."""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from cpms.errors import Conflict, PermissionDenied, ValidationFailed
from cpms.ocpp.mappers import format_datetime
from cpms.ocpp.v16.handlers import V16ChargePoint
from cpms.ocpp.v21.handlers import V21ChargePoint
from cpms.ocpp.v201.handlers import V201ChargePoint
from cpms.ocpp_wire import auth, schemas
from cpms.ocpp_wire.calls import Call
from sessions.models import ChargingSession, Reservation
from sessions.services.reservations import (
    reservation_cancel,
    reservation_create,
    reservations_expire,
)
from sessions.tasks import reservations_expire as reservations_expire_task
from stations.models import ChargingStation, Command, StationEvent
from tests.commands import TIMEOUT, CallError
from tests.factories import ConnectorFactory, EvseFactory, IdTokenFactory
from tests.ocpp.harness import Harness, inline_db  # noqa: F401

EXPIRY = datetime(2030, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
V2 = ("2.0.1", "2.1")


def valid(version: str, call: Call) -> Call:
    schemas.validate(version, schemas.request_schema(version, call.action), call.payload)
    return call


# --- builders ------------------------------------------------------------------------------------------


def test_reserve_now_16():
    call = auth.reserve_now(
        "1.6",
        reservation_id=7,
        expires_at=EXPIRY,
        id_token="TAG1",
        id_token_type="ISO14443",
        evse_id=2,
        connector_type="cType2",
        group_id_token="FLEET",
        group_type="Central",
    )
    assert valid("1.6", call) == Call(
        "ReserveNow",
        {
            "connectorId": 2,
            "expiryDate": "2030-05-01T12:30:15.123Z",
            "idTag": "TAG1",
            "reservationId": 7,
            "parentIdTag": "FLEET",
        },
    )


def test_reserve_now_16_any_connector_and_a_group_too_long_is_left_out():
    call = auth.reserve_now(
        "1.6",
        reservation_id=7,
        expires_at=EXPIRY,
        id_token="TAG1",
        id_token_type="ISO14443",
        group_id_token="G" * 21,
    )
    assert valid("1.6", call) == Call(
        "ReserveNow",
        {"connectorId": 0, "expiryDate": "2030-05-01T12:30:15.123Z", "idTag": "TAG1", "reservationId": 7},
    )


def test_reserve_now_16_refuses_a_token_too_long():
    with pytest.raises(ValidationFailed) as error:
        auth.reserve_now(
            "1.6", reservation_id=7, expires_at=EXPIRY, id_token="T" * 21, id_token_type="ISO14443"
        )
    assert error.value.message.startswith("ReserveNow (OCPP 1.6): idTag: ")


@pytest.mark.parametrize("version", V2)
def test_reserve_now_2x(version):
    call = auth.reserve_now(
        version,
        reservation_id=7,
        expires_at=EXPIRY,
        id_token="TAG1",
        id_token_type="ISO14443",
        evse_id=2,
        connector_type="cType2",
        group_id_token="FLEET",
        group_type="Central",
    )
    assert valid(version, call) == Call(
        "ReserveNow",
        {
            "id": 7,
            "expiryDateTime": "2030-05-01T12:30:15.123Z",
            "idToken": {"idToken": "TAG1", "type": "ISO14443"},
            "evseId": 2,
            "connectorType": "cType2",
            "groupIdToken": {"idToken": "FLEET", "type": "Central"},
        },
    )


@pytest.mark.parametrize("version", V2)
@pytest.mark.parametrize("connector_type", ["cType2Cable", "Unknown", None])
def test_reserve_now_2x_sends_only_connector_types_of_the_spec(version, connector_type):
    call = auth.reserve_now(
        version,
        reservation_id=7,
        expires_at=EXPIRY,
        id_token="TAG1",
        id_token_type="KeyCode",
        evse_id=1,
        connector_type=connector_type,
    )
    assert valid(version, call) == Call(
        "ReserveNow",
        {
            "id": 7,
            "expiryDateTime": "2030-05-01T12:30:15.123Z",
            "idToken": {"idToken": "TAG1", "type": "KeyCode"},
            "evseId": 1,
        },
    )


@pytest.mark.parametrize("version", ["1.6", *V2])
def test_cancel_reservation(version):
    assert valid(version, auth.cancel_reservation(version, reservation_id=9)) == Call(
        "CancelReservation", {"reservationId": 9}
    )


def test_unknown_version_is_refused():
    with pytest.raises(ValidationFailed) as error:
        auth.cancel_reservation("1.5", reservation_id=9)
    assert error.value.message == "OCPP version '1.5' is not supported."


# --- services --------------------------------------------------------------------------------------------


@pytest.fixture(params=["ocpp1.6", "ocpp2.0.1"])
def station(request, world):
    ChargingStation.objects.filter(pk=world.station_a1.pk).update(protocol=request.param, is_connected=True)
    station = ChargingStation.objects.get(pk=world.station_a1.pk)
    evse = EvseFactory(station=station, evse_id=1)
    ConnectorFactory(evse=evse, connector_id=1, connector_type="cType2")
    return station


@pytest.fixture
def token(world):
    return IdTokenFactory(organisation=world.org_a, value="RESERVER", type="ISO14443")


def expiry() -> datetime:
    return (timezone.now() + timedelta(hours=1)).replace(microsecond=0)


def create(world, station, token, **kwargs) -> Reservation:
    return reservation_create(
        actor=kwargs.pop("actor", world.operator_a),
        station=station,
        id_token_id=kwargs.pop("id_token_id", token.pk),
        expires_at=kwargs.pop("expires_at", None) or expiry(),
        **kwargs,
    )


def expected_reserve_now(station, reservation: Reservation, evse_id) -> tuple:
    if station.protocol == "ocpp1.6":
        payload = {
            "connectorId": evse_id or 0,
            "expiryDate": format_datetime(reservation.expires_at),
            "idTag": "RESERVER",
            "reservationId": reservation.pk,
        }
    else:
        payload = {
            "id": reservation.pk,
            "expiryDateTime": format_datetime(reservation.expires_at),
            "idToken": {"idToken": "RESERVER", "type": "ISO14443"},
        }
        if evse_id:
            payload["evseId"] = evse_id
    return (station.identity, "ReserveNow", payload)


def test_accepted(world, station, token, fake_charger):
    reservation = create(world, station, token, evse_id=1)
    assert fake_charger.received == [expected_reserve_now(station, reservation, 1)]
    command = Command.objects.get()
    assert (
        reservation.status,
        reservation.charger_status,
        reservation.command_id,
        reservation.created_by_id,
    ) == (
        "accepted",
        "Accepted",
        command.pk,
        world.operator_a.pk,
    )
    assert (reservation.evse.evse_id, reservation.connector_id, reservation.id_token_id) == (
        1,
        None,
        token.pk,
    )


def test_a_connector_of_an_evse(world, station, token, fake_charger):
    reservation = create(world, station, token, evse_id=1, connector_id=1)
    assert reservation.connector.connector_id == 1
    sent = fake_charger.received[0][2]
    if station.protocol == "ocpp1.6":
        assert sent["connectorId"] == 1
    else:
        assert (sent["evseId"], sent["connectorType"]) == (1, "cType2")


def test_any_connector_of_the_station(world, station, token, fake_charger):
    reservation = create(world, station, token)
    assert fake_charger.received == [expected_reserve_now(station, reservation, None)]
    assert (reservation.status, reservation.evse_id, reservation.connector_id) == ("accepted", None, None)


@pytest.mark.parametrize("answer", ["Occupied", "Faulted", "Unavailable", "Rejected"])
def test_refused_by_the_charger(world, station, token, fake_charger, answer):
    fake_charger.answers["ReserveNow"] = {"status": answer}
    reservation = create(world, station, token, evse_id=1)
    assert (reservation.status, reservation.charger_status) == ("rejected", answer)


def test_a_callerror_rejects_it_with_the_code(world, station, token, fake_charger):
    fake_charger.answers["ReserveNow"] = CallError("NotSupported")
    reservation = create(world, station, token)
    assert (reservation.status, reservation.charger_status, reservation.command.status) == (
        "rejected",
        "NotSupported",
        "failed",
    )


def test_a_timeout_leaves_it_requested(world, station, token, fake_charger):
    fake_charger.answers["ReserveNow"] = TIMEOUT
    reservation = create(world, station, token)
    assert (reservation.status, reservation.charger_status, reservation.command.status) == (
        "requested",
        "",
        "timed_out",
    )


def test_a_station_not_connected_is_a_conflict_and_records_nothing(world, station, token, fake_charger):
    ChargingStation.objects.filter(pk=station.pk).update(is_connected=False)
    station.refresh_from_db()
    with pytest.raises(Conflict) as error:
        create(world, station, token)
    assert error.value.message == "Station 'A1-CP1' is not connected."
    assert (Reservation.objects.count(), Command.objects.count(), fake_charger.received) == (0, 0, [])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"expires_at": "past"}, "expires_at must be in the future."),
        ({"expires_at": "too-far"}, "A reservation may last at most 24 hours."),
        ({"evse_id": 5}, "Station 'A1-CP1' has no EVSE 5."),
        ({"evse_id": 1, "connector_id": 2}, "EVSE 1 of station 'A1-CP1' has no connector 2."),
        ({"connector_id": 1}, "A connector is named within its EVSE: give evse_id with connector_id."),
        ({"id_token_id": "foreign"}, "Id token {foreign} not found in the station's organisation."),
        ({"id_token_id": "blocked"}, "Id token 'BLOCKED' may not charge at this station (Blocked)."),
        (
            {"id_token_id": "elsewhere"},
            "Id token 'ELSEWHERE' may not charge at this station (NotAtThisLocation).",
        ),
    ],
    ids=["past", "too-far", "evse", "connector", "connector-alone", "foreign", "blocked", "elsewhere"],
)
def test_refused_input_records_nothing(world, station, token, fake_charger, change, message):
    foreign = IdTokenFactory(organisation=world.org_b, value="FOREIGN")
    blocked = IdTokenFactory(organisation=world.org_a, value="BLOCKED", status="Blocked")
    elsewhere = IdTokenFactory(organisation=world.org_a, value="ELSEWHERE")
    elsewhere.allowed_sites.set([world.site_a2])
    ids = {"foreign": foreign.pk, "blocked": blocked.pk, "elsewhere": elsewhere.pk}
    times = {"past": timezone.now() - timedelta(minutes=1), "too-far": timezone.now() + timedelta(hours=25)}
    change = {key: ids.get(value, times.get(value, value)) for key, value in change.items()}
    with pytest.raises(ValidationFailed) as error:
        create(world, station, token, **change)
    assert error.value.message == message.format(**ids)
    assert (Reservation.objects.count(), fake_charger.received) == (0, [])


def test_a_token_the_version_cannot_carry_records_nothing(world, station, fake_charger):
    long_token = IdTokenFactory(organisation=world.org_a, value="L" * 30)
    if station.protocol == "ocpp1.6":
        with pytest.raises(ValidationFailed):
            create(world, station, long_token)
        assert (Reservation.objects.count(), fake_charger.received) == (0, [])
    else:
        assert create(world, station, long_token).status == "accepted"


@pytest.mark.parametrize("actor", ["finance_a", "operator_b"])
def test_without_the_command_right_nothing_happens(world, station, token, fake_charger, actor):
    with pytest.raises(PermissionDenied) as error:
        create(world, station, token, actor=getattr(world, actor))
    assert error.value.message == "You may not command station 'A1-CP1'."
    assert (Reservation.objects.count(), fake_charger.received) == (0, [])


def test_the_site_host_reserves_at_their_site(world, station, token, fake_charger):
    assert create(world, station, token, actor=world.host_a1).status == "accepted"


# --- cancel ----------------------------------------------------------------------------------------------


def cancel(world, reservation, actor=None) -> Reservation:
    return reservation_cancel(actor=actor or world.operator_a, reservation=reservation)


def test_cancel(world, station, token, fake_charger):
    reservation = create(world, station, token, evse_id=1)
    cancelled = cancel(world, reservation)
    assert fake_charger.received[-1] == (
        station.identity,
        "CancelReservation",
        {"reservationId": reservation.pk},
    )
    assert (cancelled.status, cancelled.charger_status, cancelled.command.action) == (
        "cancelled",
        "Accepted",
        "CancelReservation",
    )


def test_cancel_of_a_reservation_the_charger_does_not_hold(world, station, token, fake_charger):
    reservation = create(world, station, token)
    fake_charger.answers["CancelReservation"] = {"status": "Rejected"}
    cancelled = cancel(world, reservation)
    assert (cancelled.status, cancelled.charger_status) == ("cancelled", "CancelRejected")


def test_a_cancel_without_answer_changes_nothing(world, station, token, fake_charger):
    reservation = create(world, station, token)
    fake_charger.answers["CancelReservation"] = TIMEOUT
    after = cancel(world, reservation)
    assert (after.status, after.charger_status, after.command.status) == ("accepted", "Accepted", "timed_out")


@pytest.mark.parametrize("status", ["used", "expired", "cancelled", "rejected"])
def test_only_open_reservations_are_cancelled(world, station, token, fake_charger, status):
    reservation = create(world, station, token)
    Reservation.objects.filter(pk=reservation.pk).update(status=status)
    reservation.refresh_from_db()
    with pytest.raises(Conflict) as error:
        cancel(world, reservation)
    assert error.value.message == f"Reservation {reservation.pk} is {status}: there is nothing to cancel."
    assert [action for _, action, _ in fake_charger.received] == ["ReserveNow"]


def test_finance_cannot_cancel(world, station, token, fake_charger):
    reservation = create(world, station, token)
    with pytest.raises(PermissionDenied):
        cancel(world, reservation, actor=world.finance_a)
    reservation.refresh_from_db()
    assert reservation.status == "accepted"
    assert [action for _, action, _ in fake_charger.received] == ["ReserveNow"]


# --- what chargers report ----------------------------------------------------------------------------


def open_reservation(station, token, **fields) -> Reservation:
    return Reservation.objects.create(
        station=station,
        id_token=token,
        expires_at=fields.pop("expires_at", timezone.now() + timedelta(hours=1)),
        status=fields.pop("status", "accepted"),
        **fields,
    )


@pytest.fixture
def v201_station(world):
    ChargingStation.objects.filter(pk=world.station_a1.pk).update(protocol="ocpp2.0.1", is_connected=True)
    return ChargingStation.objects.get(pk=world.station_a1.pk)


@pytest.mark.usefixtures("inline_db")
@pytest.mark.parametrize("cp_class", [V201ChargePoint, V21ChargePoint], ids=["2.0.1", "2.1"])
@pytest.mark.parametrize(("reported", "status"), [("Expired", "expired"), ("Removed", "cancelled")])
def test_reservation_status_update(world, v201_station, token, cp_class, reported, status):
    reservation = open_reservation(v201_station, token)
    payload = {"reservationId": reservation.pk, "reservationUpdateStatus": reported}
    assert Harness(cp_class, v201_station).call("ReservationStatusUpdate", payload) == [3, "m1", {}]
    reservation.refresh_from_db()
    assert (reservation.status, reservation.charger_status) == (status, reported)
    event = StationEvent.objects.get(station=v201_station)
    assert (event.kind, event.detail) == ("reservation_status", payload)


@pytest.mark.usefixtures("inline_db")
def test_reservation_status_update_of_a_used_or_foreign_reservation_is_only_recorded(
    world, v201_station, token
):
    used = open_reservation(v201_station, token, status="used")
    foreign = open_reservation(world.station_a2, token)
    cp = Harness(V201ChargePoint, v201_station)
    for n, pk in enumerate([used.pk, foreign.pk, 999999]):
        payload = {"reservationId": pk, "reservationUpdateStatus": "Expired"}
        assert cp.call("ReservationStatusUpdate", payload, f"m{n}") == [3, f"m{n}", {}]
    assert [Reservation.objects.get(pk=pk).status for pk in (used.pk, foreign.pk)] == ["used", "accepted"]
    assert StationEvent.objects.filter(station=v201_station, kind="reservation_status").count() == 3


def start_16(reservation_id: int, evse: int = 1) -> dict:
    return {
        "connectorId": evse,
        "idTag": "RESERVER",
        "meterStart": 100,
        "timestamp": format_datetime(timezone.now() - timedelta(seconds=30)),
        "reservationId": reservation_id,
    }


def started_201(reservation_id: int, evse: int = 1) -> dict:
    return {
        "eventType": "Started",
        "timestamp": format_datetime(timezone.now() - timedelta(seconds=30)),
        "triggerReason": "Authorized",
        "seqNo": 0,
        "transactionInfo": {"transactionId": f"TX-{evse}"},
        "evse": {"id": evse, "connectorId": 1},
        "idToken": {"idToken": "RESERVER", "type": "ISO14443"},
        "reservationId": reservation_id,
    }


@pytest.mark.usefixtures("inline_db")
@pytest.mark.parametrize(
    ("cp_class", "action", "payload"),
    [(V16ChargePoint, "StartTransaction", start_16), (V201ChargePoint, "TransactionEvent", started_201)],
    ids=["1.6", "2.0.1"],
)
def test_a_session_started_for_the_reservation_uses_it(world, token, cp_class, action, payload):
    reservation = open_reservation(world.station_a1, token)
    other_station = open_reservation(world.station_a2, token)
    answer = Harness(cp_class, world.station_a1).call(action, payload(reservation.pk))
    assert answer[0] == 3
    session = ChargingSession.objects.get(station=world.station_a1)
    reservation.refresh_from_db()
    assert (reservation.status, reservation.session_id, session.reservation_id) == (
        "used",
        session.pk,
        reservation.pk,
    )
    # Naming a reservation of another station uses nothing.
    assert Harness(cp_class, world.station_a1).call(action, payload(other_station.pk, evse=2), "m2")[0] == 3
    assert ChargingSession.objects.filter(station=world.station_a1).count() == 2
    other_station.refresh_from_db()
    assert (other_station.status, other_station.session_id) == ("accepted", None)


@pytest.mark.usefixtures("inline_db")
def test_a_201_reservation_named_in_a_later_event_is_used(world, token):
    reservation = open_reservation(world.station_a1, token)
    cp = Harness(V201ChargePoint, world.station_a1)
    plugged = {**started_201(0), "triggerReason": "CablePluggedIn"}
    del plugged["idToken"], plugged["reservationId"]
    cp.call("TransactionEvent", plugged, "e0")
    authorised = {**started_201(reservation.pk), "eventType": "Updated", "seqNo": 1}
    assert cp.call("TransactionEvent", authorised, "e1") == [3, "e1", {"idTokenInfo": {"status": "Accepted"}}]
    reservation.refresh_from_db()
    session = ChargingSession.objects.get(station=world.station_a1)
    assert (reservation.status, reservation.session_id, session.reservation_id) == (
        "used",
        session.pk,
        reservation.pk,
    )


# --- expiry ----------------------------------------------------------------------------------------------


def test_reservations_expire(world, token):
    now = timezone.now()
    past = now - timedelta(seconds=1)
    due = [
        open_reservation(world.station_a1, token, status="accepted", expires_at=past),
        open_reservation(world.station_a2, token, status="requested", expires_at=now),
    ]
    kept = {
        open_reservation(
            world.station_a1, token, status="accepted", expires_at=now + timedelta(minutes=1)
        ).pk: ("accepted"),
        open_reservation(world.station_a1, token, status="used", expires_at=past).pk: "used",
        open_reservation(world.station_a1, token, status="cancelled", expires_at=past).pk: "cancelled",
        open_reservation(world.station_a1, token, status="rejected", expires_at=past).pk: "rejected",
    }
    assert reservations_expire(now=now) == 2
    assert [Reservation.objects.get(pk=r.pk).status for r in due] == ["expired", "expired"]
    assert {pk: Reservation.objects.get(pk=pk).status for pk in kept} == kept
    assert reservations_expire(now=now) == 0  # idempotent


def test_the_task_expires_and_is_idempotent(world, token):
    open_reservation(world.station_a1, token, expires_at=timezone.now() - timedelta(minutes=5))
    assert reservations_expire_task() == 1
    assert reservations_expire_task() == 0
    assert Reservation.objects.get().status == "expired"


# --- admin -----------------------------------------------------------------------------------------------


def staff_client(user) -> Client:
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(user)
    return client


def test_admin_cancel_action(world, token, fake_charger):
    ChargingStation.objects.update(protocol="ocpp1.6", is_connected=True)
    own = open_reservation(world.station_a1, token)
    foreign = open_reservation(world.station_b1, IdTokenFactory(organisation=world.org_b, value="B"))
    response = staff_client(world.operator_a).post(
        "/admin/charging/reservation/",
        {"action": "cancel_reservations", "_selected_action": [own.pk, foreign.pk]},
    )
    assert response.status_code == 302
    assert [Reservation.objects.get(pk=r.pk).status for r in (own, foreign)] == ["cancelled", "accepted"]
    assert fake_charger.received == [("A1-CP1", "CancelReservation", {"reservationId": own.pk})]


def test_admin_offers_finance_no_cancel(world, token, fake_charger):
    reservation = open_reservation(world.station_a1, token)
    client = staff_client(world.finance_a)
    listed = client.get("/admin/charging/reservation/")
    assert ([r.pk for r in listed.context["cl"].result_list], listed.context["action_form"]) == (
        [reservation.pk],
        None,
    )
    client.post(
        "/admin/charging/reservation/",
        {"action": "cancel_reservations", "_selected_action": [reservation.pk]},
    )
    assert (Reservation.objects.get(pk=reservation.pk).status, fake_charger.received) == ("accepted", [])
