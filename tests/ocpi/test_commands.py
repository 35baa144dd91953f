"""OCPI commands, Receiver (cpms/ocpi/services/commands.py): the immediate CommandResponse, the OCPP command
each becomes (1.6 and 2.0.1, answered by the fake charger of tests/commands.py), and the CommandResult
queued to the response_url. The execution task is run in the test (its queueing is after commit)."""

from datetime import timedelta
from types import SimpleNamespace

import orjson
import pytest
from django.test import Client
from django.utils import timezone

from cpms.ocpi import protocol
from cpms.ocpi.enums import Role
from cpms.ocpi.models import OcpiAuthorization, OcpiCommand, OcpiOutboxItem, OcpiToken
from cpms.ocpi.services import commands
from cpms.ocpi.services import sessions as ocpi_sessions
from sessions.enums import ReservationStatus, SessionStatus
from sessions.models import IdToken, Reservation
from tests.commands import TIMEOUT, CallError
from tests.factories import ChargingSessionFactory, ConnectorFactory, EvseFactory, IdTokenFactory
from tests.ocpi.conftest import OcpiCaller, partner_registered

pytestmark = pytest.mark.django_db

URL = "/ocpi/2.2.1/commands"
RESULT_URL = "http://emsp.invalid/ocpi/2.2.1/commands-result/c-1"


def _body(response):
    return orjson.loads(response.content)


def token(uid: str = "EMS-DRIVER-1", **fields) -> dict:
    return {
        "country_code": "DE",
        "party_id": "EMS",
        "uid": uid,
        "type": "APP_USER",
        "contract_id": "DE-EMS-C00001-1",
        "issuer": "EMS Mobility",
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": "2026-12-01T10:00:00Z",
        **fields,
    }


@pytest.fixture(params=["ocpp1.6", "ocpp2.0.1"])
def place(request, world):
    station = world.station_a1
    station.protocol = request.param
    station.is_connected = True
    station.save(update_fields=["protocol", "is_connected"])
    evse = EvseFactory(station=station, evse_id=1)
    connector = ConnectorFactory(evse=evse, connector_id=1)
    return SimpleNamespace(
        station=station,
        evse=evse,
        connector=connector,
        site=world.site_a1,
        v16=request.param == "ocpp1.6",
        location_id=str(world.site_a1.pk),
        evse_uid=str(evse.pk),
    )


def post(caller, command: str, body, **headers):
    return caller.request("POST", f"{URL}/{command}", body, **headers)


def execute_last() -> OcpiCommand:
    ocpi_command = OcpiCommand.objects.order_by("-pk").first()
    commands.command_execute(ocpi_command_id=ocpi_command.pk)
    ocpi_command.refresh_from_db()
    return ocpi_command


def result_item(ocpi_command: OcpiCommand) -> OcpiOutboxItem:
    return OcpiOutboxItem.objects.get(object_key=f"command:{ocpi_command.pk}")


def start_body(place, **fields) -> dict:
    return {
        "response_url": RESULT_URL,
        "token": token(),
        "location_id": place.location_id,
        "evse_uid": place.evse_uid,
        "authorization_reference": "AUTH-REF-1",
        **fields,
    }


def roaming_session(roaming, place, *, partner=None, uid: str = "EMS-DRIVER-1", party=("DE", "EMS")):
    partner = partner or roaming.partner_a
    id_token = IdTokenFactory(organisation=place.station.organisation, value=uid)
    OcpiToken.objects.create(
        partner=partner,
        id_token=id_token,
        country_code=party[0],
        party_id=party[1],
        uid=uid,
        type="RFID",
        contract_id="C-1",
        data={},
        last_updated=timezone.now(),
    )
    return ChargingSessionFactory(
        station=place.station,
        evse=place.evse,
        connector=place.connector,
        id_token=id_token,
        transaction_id="4711",
    )


# --- START_SESSION ------------------------------------------------------------------------------------------


def test_start_session_is_accepted_sent_and_its_result_queued(roaming, place, fake_charger):
    response = post(roaming.caller_a, "START_SESSION", start_body(place))

    assert response.status_code == 200
    body = _body(response)
    assert body["status_code"] == 1000
    assert body["data"] == {"result": "ACCEPTED", "timeout": commands.command_timeout_s()}
    mirrored = OcpiToken.objects.select_related("id_token").get(partner=roaming.partner_a, uid="EMS-DRIVER-1")
    # Stored as a pushed token (not asked for again in real time: the eMSP authorised it, 13.3.5).
    assert (mirrored.id_token.value, mirrored.id_token.type, mirrored.realtime) == (
        "EMS-DRIVER-1",
        "Central",
        False,
    )
    roaming.partner_a.refresh_from_db()
    assert mirrored.id_token.group_id == roaming.partner_a.id_token_group_id is not None
    assert fake_charger.received == []  # nothing goes to the charger inside the request

    ocpi_command = execute_last()

    if place.v16:
        expected = ("A1-CP1", "RemoteStartTransaction", {"idTag": "EMS-DRIVER-1", "connectorId": 1})
        assert fake_charger.received == [expected]
    else:
        [(identity, action, request)] = fake_charger.received
        assert (identity, action, request["idToken"], request["evseId"]) == (
            "A1-CP1",
            "RequestStartTransaction",
            {"idToken": "EMS-DRIVER-1", "type": "Central"},
            1,
        )
    assert ocpi_command.result == "ACCEPTED"
    assert ocpi_command.ocpp_command.action in ("RemoteStartTransaction", "RequestStartTransaction")
    item = result_item(ocpi_command)
    assert (item.method, item.url, item.module, item.body) == (
        "POST",
        RESULT_URL,
        "commands",
        {
            "result": "ACCEPTED",
            "message": [{"language": "en", "text": "Charge Point: Accepted"}],
        },
    )
    assert (item.to_country_code, item.to_party_id) == ("DE", "EMS")
    authorization = OcpiAuthorization.objects.get()
    assert (authorization.auth_method, authorization.authorization_reference, authorization.site_id) == (
        "COMMAND",
        "AUTH-REF-1",
        place.site.pk,
    )
    assert authorization.token == mirrored
    assert authorization.used_at is None


@pytest.mark.parametrize(
    ("answer", "result"),
    [
        ({"status": "Rejected"}, "REJECTED"),
        (TIMEOUT, "TIMEOUT"),
        (CallError("NotSupported"), "NOT_SUPPORTED"),
        (CallError("InternalError", "boom"), "FAILED"),
    ],
)
def test_start_session_the_chargers_refusal_is_the_result_and_gives_up_the_authorisation(
    roaming, place, fake_charger, answer, result
):
    action = "RemoteStartTransaction" if place.v16 else "RequestStartTransaction"
    fake_charger.answers[action] = answer
    assert _body(post(roaming.caller_a, "START_SESSION", start_body(place)))["data"]["result"] == "ACCEPTED"

    ocpi_command = execute_last()

    assert ocpi_command.result == result
    assert result_item(ocpi_command).body["result"] == result
    assert OcpiAuthorization.objects.get().used_at is not None


def test_start_session_without_evse_on_a_location_with_one_station(roaming, place, fake_charger):
    body = start_body(place)
    del body["evse_uid"]
    assert _body(post(roaming.caller_a, "START_SESSION", body))["data"]["result"] == "ACCEPTED"

    execute_last()

    [(_, _, request)] = fake_charger.received
    assert "connectorId" not in request and "evseId" not in request


def test_the_same_command_twice_is_answered_twice_and_sent_once(roaming, place, fake_charger):
    first = post(roaming.caller_a, "START_SESSION", start_body(place))
    second = post(roaming.caller_a, "START_SESSION", start_body(place))

    assert _body(first)["data"] == _body(second)["data"]
    assert OcpiCommand.objects.count() == 1
    ocpi_command = execute_last()
    assert commands.command_execute(ocpi_command_id=ocpi_command.pk) is None  # the task delivered again
    assert len(fake_charger.received) == 1
    assert OcpiOutboxItem.objects.filter(module="commands").count() == 1


def test_a_location_not_published_to_the_partner_is_2003_and_rejected(roaming, place, world, fake_charger):
    for location_id, evse_uid in [
        (str(world.site_b1.pk), None),  # another organisation's site
        ("999999", None),
        ("not-a-number", None),
        (str(world.site_a2.pk), place.evse_uid),  # the EVSE is not at that Location
        (place.location_id, "999999"),
    ]:
        body = start_body(place, location_id=location_id)
        body.pop("evse_uid")
        if evse_uid is not None:
            body["evse_uid"] = evse_uid
        response = post(roaming.caller_a, "START_SESSION", body)
        assert response.status_code == 404, location_id
        envelope = _body(response)
        assert envelope["status_code"] == 2003
        assert envelope["data"]["result"] == "REJECTED"
    assert OcpiCommand.objects.count() == 0
    assert OcpiToken.objects.count() == 0
    assert fake_charger.received == []


def test_a_site_the_partner_is_not_given_is_unknown_to_it(roaming, place):
    roaming.partner_a.publish_all_sites = False
    roaming.partner_a.save(update_fields=["publish_all_sites"])
    response = post(roaming.caller_a, "START_SESSION", start_body(place))
    assert (response.status_code, _body(response)["status_code"]) == (404, 2003)


def test_an_offline_station_is_rejected_at_once(roaming, place):
    place.station.is_connected = False
    place.station.save(update_fields=["is_connected"])
    response = post(roaming.caller_a, "START_SESSION", start_body(place))
    assert response.status_code == 200
    assert _body(response)["data"]["result"] == "REJECTED"
    assert _body(response)["data"]["message"] == [{"language": "en", "text": "The Charge Point is offline."}]
    assert OcpiCommand.objects.count() == 0


def test_a_token_of_another_party_is_rejected(roaming, place):
    body = start_body(place, token=token(country_code="FR", party_id="OTH"))
    assert _body(post(roaming.caller_a, "START_SESSION", body))["data"]["result"] == "REJECTED"
    assert OcpiToken.objects.count() == 0


def test_a_uid_taken_by_a_local_token_is_rejected(roaming, place):
    IdTokenFactory(organisation=place.station.organisation, value="EMS-DRIVER-1")
    assert _body(post(roaming.caller_a, "START_SESSION", start_body(place)))["data"]["result"] == "REJECTED"
    assert OcpiCommand.objects.count() == 0


@pytest.mark.parametrize(
    ("command", "body"),
    [
        ("START_SESSION", None),
        ("START_SESSION", []),
        ("START_SESSION", {"token": {}, "location_id": "1"}),
        ("START_SESSION", {"response_url": "ftp://x", "token": token(), "location_id": "1"}),
        ("START_SESSION", {"response_url": RESULT_URL, "token": token(uid="x" * 37), "location_id": "1"}),
        ("START_SESSION", {"response_url": RESULT_URL, "token": token(type="CARD"), "location_id": "1"}),
        ("START_SESSION", {"response_url": RESULT_URL, "token": token(), "location_id": 1}),
        ("STOP_SESSION", {"response_url": RESULT_URL}),
        (
            "RESERVE_NOW",
            {"response_url": RESULT_URL, "token": token(), "location_id": "1", "reservation_id": "r"},
        ),
        (
            "RESERVE_NOW",
            {
                "response_url": RESULT_URL,
                "token": token(),
                "location_id": "1",
                "reservation_id": "r",
                "expiry_date": "tomorrow",
            },
        ),
        ("CANCEL_RESERVATION", {"response_url": RESULT_URL, "reservation_id": ["r"]}),
        ("UNLOCK_CONNECTOR", {"response_url": RESULT_URL, "location_id": "1", "evse_uid": "1"}),
    ],
)
def test_malformed_bodies_are_2001_never_500(roaming, place, command, body):
    response = post(roaming.caller_a, command, body)
    assert response.status_code == 400
    assert _body(response)["status_code"] == 2001
    assert OcpiCommand.objects.count() == 0


def test_not_json_and_unknown_commands(roaming, place):
    response = roaming.caller_a.http.generic(
        "POST",
        f"{URL}/START_SESSION",
        data=b"{nope",
        content_type="application/json",
        HTTP_AUTHORIZATION=protocol.authorization_header(roaming.caller_a.token),
    )
    assert (response.status_code, _body(response)["status_code"]) == (400, 2001)
    response = post(roaming.caller_a, "SELF_DESTRUCT", {"response_url": RESULT_URL})
    assert (response.status_code, _body(response)["status_code"]) == (404, 2001)
    assert roaming.caller_a.get(f"{URL}/START_SESSION").status_code == 405


# --- STOP_SESSION -------------------------------------------------------------------------------------------


def test_stop_session_of_its_own_session(roaming, place, fake_charger):
    session = roaming_session(roaming, place)
    body = {"response_url": RESULT_URL, "session_id": str(session.pk)}
    assert _body(post(roaming.caller_a, "STOP_SESSION", body))["data"]["result"] == "ACCEPTED"

    ocpi_command = execute_last()

    if place.v16:
        assert fake_charger.received == [("A1-CP1", "RemoteStopTransaction", {"transactionId": 4711})]
    else:
        assert fake_charger.received == [("A1-CP1", "RequestStopTransaction", {"transactionId": "4711"})]
    assert result_item(ocpi_command).body["result"] == "ACCEPTED"


def test_stop_session_of_another_partners_or_a_local_session_is_unknown(roaming, place, fake_charger):
    theirs = roaming_session(roaming, place, partner=roaming.partner_a2, uid="OTHER-1", party=("FR", "OTH"))
    local = ChargingSessionFactory(station=place.station, evse=place.evse, connector=place.connector)
    for session_id in (str(theirs.pk), str(local.pk), "999999", "abc"):
        body = {"response_url": RESULT_URL, "session_id": session_id}
        data = _body(post(roaming.caller_a, "STOP_SESSION", body))["data"]
        assert data["result"] == "UNKNOWN_SESSION", session_id
    # The owner may.
    body = {"response_url": RESULT_URL, "session_id": str(theirs.pk)}
    assert _body(post(roaming.caller_a2, "STOP_SESSION", body))["data"]["result"] == "ACCEPTED"
    assert fake_charger.received == []


def test_stop_session_of_an_ended_session_is_rejected(roaming, place):
    session = roaming_session(roaming, place)
    session.status = SessionStatus.COMPLETED
    session.save(update_fields=["status"])
    body = {"response_url": RESULT_URL, "session_id": str(session.pk)}
    assert _body(post(roaming.caller_a, "STOP_SESSION", body))["data"]["result"] == "REJECTED"


# --- RESERVE_NOW / CANCEL_RESERVATION ---------------------------------------------------------------------


def reserve_body(place, reservation_id: str = "R-1") -> dict:
    return {
        "response_url": RESULT_URL,
        "token": token(type="RFID", uid="EMS-CARD-1"),
        "expiry_date": (timezone.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "reservation_id": reservation_id,
        "location_id": place.location_id,
        "evse_uid": place.evse_uid,
        "authorization_reference": "RES-REF",
    }


def test_reserve_now_makes_our_reservation(roaming, place, fake_charger):
    assert _body(post(roaming.caller_a, "RESERVE_NOW", reserve_body(place)))["data"]["result"] == "ACCEPTED"

    ocpi_command = execute_last()

    reservation = Reservation.objects.get()
    assert reservation.status == ReservationStatus.ACCEPTED
    assert reservation.id_token.value == "EMS-CARD-1"
    assert reservation.evse == place.evse
    [(_, action, request)] = fake_charger.received
    assert action == "ReserveNow"
    # Our reservation id goes to the charger, never the eMSP's.
    assert request["reservationId" if place.v16 else "id"] == reservation.pk
    assert ocpi_command.result == "ACCEPTED"
    assert result_item(ocpi_command).body["result"] == "ACCEPTED"
    assert OcpiAuthorization.objects.get().authorization_reference == "RES-REF"


@pytest.mark.parametrize(
    ("status", "result"),
    [("Occupied", "EVSE_OCCUPIED"), ("Faulted", "EVSE_INOPERATIVE"), ("Rejected", "REJECTED")],
)
def test_reserve_now_refused_by_the_charger(roaming, place, fake_charger, status, result):
    fake_charger.answers["ReserveNow"] = {"status": status}
    post(roaming.caller_a, "RESERVE_NOW", reserve_body(place))

    assert execute_last().result == result
    assert Reservation.objects.get().status == ReservationStatus.REJECTED
    assert OcpiAuthorization.objects.count() == 0


def test_reserve_now_in_the_past_is_rejected(roaming, place):
    body = reserve_body(place)
    body["expiry_date"] = "2020-01-01T00:00:00Z"
    assert _body(post(roaming.caller_a, "RESERVE_NOW", body))["data"]["result"] == "REJECTED"


def test_reserve_now_again_with_the_same_id_replaces_the_reservation(roaming, place, fake_charger):
    post(roaming.caller_a, "RESERVE_NOW", reserve_body(place))
    execute_last()
    body = reserve_body(place)
    body["response_url"] = RESULT_URL + "-2"
    post(roaming.caller_a, "RESERVE_NOW", body)
    execute_last()

    first, second = Reservation.objects.order_by("pk")
    assert (first.status, second.status) == (ReservationStatus.CANCELLED, ReservationStatus.ACCEPTED)
    assert [action for _, action, _ in fake_charger.received] == [
        "ReserveNow",
        "CancelReservation",
        "ReserveNow",
    ]


def test_cancel_reservation_of_its_own_reservation(roaming, place, fake_charger):
    post(roaming.caller_a, "RESERVE_NOW", reserve_body(place))
    execute_last()
    reservation = Reservation.objects.get()

    body = {"response_url": RESULT_URL + "-cancel", "reservation_id": "R-1"}
    assert _body(post(roaming.caller_a, "CANCEL_RESERVATION", body))["data"]["result"] == "ACCEPTED"
    ocpi_command = execute_last()

    assert fake_charger.received[-1] == ("A1-CP1", "CancelReservation", {"reservationId": reservation.pk})
    reservation.refresh_from_db()
    assert reservation.status == ReservationStatus.CANCELLED
    assert result_item(ocpi_command).body["result"] == "ACCEPTED"
    # The reservation's authorisation is used up: no later session of the token carries its reference.
    assert not OcpiAuthorization.objects.filter(auth_method="COMMAND", used_at__isnull=True).exists()


def test_cancel_reservation_the_charger_no_longer_holds(roaming, place, fake_charger):
    post(roaming.caller_a, "RESERVE_NOW", reserve_body(place))
    execute_last()
    fake_charger.answers["CancelReservation"] = {"status": "Rejected"}
    post(roaming.caller_a, "CANCEL_RESERVATION", {"response_url": RESULT_URL + "-c", "reservation_id": "R-1"})
    assert execute_last().result == "UNKNOWN_RESERVATION"


def test_cancel_reservation_of_another_partner_or_unknown_is_rejected(roaming, place, fake_charger):
    post(roaming.caller_a, "RESERVE_NOW", reserve_body(place))
    execute_last()
    for caller, reservation_id in ((roaming.caller_a2, "R-1"), (roaming.caller_a, "R-2")):
        body = {"response_url": RESULT_URL + "-c", "reservation_id": reservation_id}
        assert _body(post(caller, "CANCEL_RESERVATION", body))["data"]["result"] == "REJECTED"
    assert Reservation.objects.get().status == ReservationStatus.ACCEPTED
    assert OcpiCommand.objects.filter(command="CANCEL_RESERVATION").count() == 0


# --- UNLOCK_CONNECTOR ---------------------------------------------------------------------------------------


def unlock_body(place, **fields) -> dict:
    return {
        "response_url": RESULT_URL,
        "location_id": place.location_id,
        "evse_uid": place.evse_uid,
        "connector_id": "1",
        **fields,
    }


@pytest.mark.parametrize(("status", "result"), [("Unlocked", "ACCEPTED"), ("UnlockFailed", "FAILED")])
def test_unlock_connector(roaming, place, fake_charger, status, result):
    fake_charger.answers["UnlockConnector"] = {"status": status}
    assert (
        _body(post(roaming.caller_a, "UNLOCK_CONNECTOR", unlock_body(place)))["data"]["result"] == "ACCEPTED"
    )

    ocpi_command = execute_last()

    expected = {"connectorId": 1} if place.v16 else {"evseId": 1, "connectorId": 1}
    assert fake_charger.received == [("A1-CP1", "UnlockConnector", expected)]
    assert result_item(ocpi_command).body["result"] == result
    # No token names the party: the result goes to the party that sent the command (OCPI 2.2.1 4.1.8.6).
    assert (result_item(ocpi_command).to_country_code, result_item(ocpi_command).to_party_id) == ("DE", "EMS")


def test_through_a_hub_an_unlock_result_goes_to_the_party_that_sent_it(
    roaming, place, fake_charger, hub_caller
):
    from_emx = {"OCPI-from-country-code": "DE", "OCPI-from-party-id": "EMX"}
    assert (
        _body(post(hub_caller, "UNLOCK_CONNECTOR", unlock_body(place), **from_emx))["data"]["result"]
        == "ACCEPTED"
    )
    item = result_item(execute_last())
    assert (item.to_country_code, item.to_party_id) == ("DE", "EMX")


def test_unlock_an_unknown_connector_is_2003(roaming, place):
    response = post(roaming.caller_a, "UNLOCK_CONNECTOR", unlock_body(place, connector_id="7"))
    assert (response.status_code, _body(response)["status_code"]) == (404, 2003)


def test_the_partners_group_token_is_made_once(roaming, place, fake_charger):
    post(roaming.caller_a, "START_SESSION", start_body(place))
    post(
        roaming.caller_a,
        "START_SESSION",
        start_body(place, token=token(uid="EMS-DRIVER-2"), response_url=RESULT_URL + "2"),
    )
    roaming.partner_a.refresh_from_db()
    group = roaming.partner_a.id_token_group
    assert set(IdToken.objects.filter(group=group).values_list("value", flat=True)) == {
        "EMS-DRIVER-1",
        "EMS-DRIVER-2",
    }


# --- the contracts with the other modules -------------------------------------------------------------------


def test_the_session_a_start_opens_takes_its_authorization_reference(roaming, place, fake_charger):
    post(roaming.caller_a, "START_SESSION", start_body(place))
    execute_last()
    mirrored = OcpiToken.objects.get(uid="EMS-DRIVER-1")
    session = ChargingSessionFactory(
        station=place.station, evse=place.evse, connector=place.connector, id_token=mirrored.id_token
    )

    ocpi_session, _ = ocpi_sessions.session_sync(session=session)

    assert (ocpi_session.auth_method, ocpi_session.authorization_reference) == ("COMMAND", "AUTH-REF-1")


def test_a_start_the_charger_refused_leaves_no_reference_for_a_later_session(roaming, place, fake_charger):
    fake_charger.answers["RemoteStartTransaction" if place.v16 else "RequestStartTransaction"] = {
        "status": "Rejected"
    }
    post(roaming.caller_a, "START_SESSION", start_body(place))
    execute_last()
    mirrored = OcpiToken.objects.get(uid="EMS-DRIVER-1")
    session = ChargingSessionFactory(
        station=place.station, evse=place.evse, connector=place.connector, id_token=mirrored.id_token
    )

    ocpi_session, _ = ocpi_sessions.session_sync(session=session)

    assert (ocpi_session.auth_method, ocpi_session.authorization_reference) == ("WHITELIST", "")


@pytest.fixture
def hub_caller(roaming):
    _, token_value = partner_registered(
        roaming.party_a, name="hub", country_code="NL", party_id="HUB", role=Role.HUB
    )
    return OcpiCaller(token_value, Client())


def test_through_a_hub_the_result_is_routed_to_the_party_behind_it(roaming, place, fake_charger, hub_caller):
    body = start_body(place, token=token(country_code="DE", party_id="EMX"))
    from_emx = {"OCPI-from-country-code": "DE", "OCPI-from-party-id": "EMX"}

    assert _body(post(hub_caller, "START_SESSION", body, **from_emx))["data"]["result"] == "ACCEPTED"
    item = result_item(execute_last())

    assert (item.to_country_code, item.to_party_id, item.url) == ("DE", "EMX", RESULT_URL)


def test_through_a_hub_a_party_uses_only_its_own_tokens(roaming, place, hub_caller):
    body = start_body(place, token=token(country_code="DE", party_id="EMS"))
    from_emx = {"OCPI-from-country-code": "DE", "OCPI-from-party-id": "EMX"}
    assert _body(post(hub_caller, "START_SESSION", body, **from_emx))["data"]["result"] == "REJECTED"
    assert OcpiCommand.objects.count() == 0


def test_a_command_whose_worker_died_is_not_sent_again_and_ends_in_timeout(roaming, place, fake_charger):
    post(roaming.caller_a, "START_SESSION", start_body(place))
    ocpi_command = OcpiCommand.objects.get()
    # Taken by a worker that died before recording anything.
    OcpiCommand.objects.filter(pk=ocpi_command.pk).update(result="SENDING")
    assert commands.command_execute(ocpi_command_id=ocpi_command.pk) is None  # within its timeout: running

    OcpiCommand.objects.filter(pk=ocpi_command.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    assert commands.command_execute(ocpi_command_id=ocpi_command.pk) == "TIMEOUT"
    assert commands.command_execute(ocpi_command_id=ocpi_command.pk) is None

    assert fake_charger.received == []
    assert result_item(ocpi_command).body["result"] == "TIMEOUT"


@pytest.mark.parametrize(
    ("command", "fields"),
    [
        ("UNLOCK_CONNECTOR", {"location_id": "9" * 36}),
        ("UNLOCK_CONNECTOR", {"evse_uid": "9" * 36}),
        ("UNLOCK_CONNECTOR", {"connector_id": "9" * 36}),
    ],
)
def test_ids_beyond_any_number_of_ours_are_unknown_not_500(roaming, place, command, fields):
    response = post(roaming.caller_a, command, unlock_body(place, **fields))
    assert (response.status_code, _body(response)["status_code"]) == (404, 2003)


def test_a_session_id_beyond_any_number_of_ours_is_unknown(roaming, place):
    body = {"response_url": RESULT_URL, "session_id": "9" * 36}
    assert _body(post(roaming.caller_a, "STOP_SESSION", body))["data"]["result"] == "UNKNOWN_SESSION"


def test_a_command_never_taken_is_found_by_the_sweep_and_not_sent_past_its_timeout(
    roaming, place, fake_charger
):
    post(roaming.caller_a, "START_SESSION", start_body(place))
    ocpi_command = OcpiCommand.objects.get()
    assert commands.commands_due() == []  # just stored: its task is on its way

    OcpiCommand.objects.filter(pk=ocpi_command.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    assert commands.commands_due() == [ocpi_command.pk]
    assert commands.command_execute(ocpi_command_id=ocpi_command.pk) == "FAILED"

    assert fake_charger.received == []
    assert commands.commands_due() == []
    assert result_item(ocpi_command).body == {
        "result": "FAILED",
        "message": [{"language": "en", "text": "The command could not be sent in time."}],
    }
