"""Each EVSE's payment URL sent to a 2.0.1 / 2.1 station's display: the SetDisplayMessage builder, the service
stations.services.display_messages.station_payment_url_display and
`POST /api/v1/stations/<identity>/commands/display-payment-url/`, through command_send and the fake charger
(tests/commands.py). Denied callers leave no command behind."""

import pytest

from cpms.errors import PermissionDenied, ValidationFailed
from cpms.ocpp_wire.display import set_display_message
from stations.models import Command
from stations.services.display_messages import PAYMENT_URL_MESSAGE_ID, station_payment_url_display
from tests.commands import CallError
from tests.factories import ConnectorFactory, EvseFactory

URL = "/api/v1/stations/{identity}/commands/display-payment-url/"


def connect(station, protocol: str, *, connected: bool = True):
    """The station speaking `protocol` with EVSE 2 and EVSE 1 (created in that order)."""
    station.protocol, station.is_connected = protocol, connected
    station.save(update_fields=["protocol", "is_connected"])
    evses = {n: EvseFactory(station=station, evse_id=n) for n in (2, 1)}
    for evse in evses.values():
        ConnectorFactory(evse=evse, connector_id=1)
    return evses


def message(evse_id: int, message_format: str, content: str) -> dict:
    return {
        "message": {
            "id": PAYMENT_URL_MESSAGE_ID + evse_id,
            "priority": "InFront",
            "state": "Idle",
            "message": {"format": message_format, "content": content},
        }
    }


# --- the builder ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.0.1", "2.1"])
def test_builder_gives_the_checked_call(version):
    call = set_display_message(
        version,
        message_id=7,
        content="Hello",
        message_format="UTF8",
        priority="NormalCycle",
        state="Charging",
        language="en",
        transaction_id="tx-1",
    )
    assert call.action == "SetDisplayMessage"
    assert call.payload == {
        "message": {
            "id": 7,
            "priority": "NormalCycle",
            "state": "Charging",
            "transactionId": "tx-1",
            "message": {"format": "UTF8", "content": "Hello", "language": "en"},
        }
    }


def test_builder_refuses_1_6_and_what_the_version_cannot_say():
    with pytest.raises(ValidationFailed) as refused:
        set_display_message("1.6", message_id=1, content="x", message_format="UTF8", priority="InFront")
    assert refused.value.message == (
        "OCPP 1.6 has no display messages: SetDisplayMessage is an OCPP 2.0.1 and 2.1 message."
    )
    # QRCODE came with 2.1.
    assert set_display_message(
        "2.1", message_id=1, content="https://x.example/c/a/", message_format="QRCODE", priority="InFront"
    ).payload["message"]["message"] == {"format": "QRCODE", "content": "https://x.example/c/a/"}
    with pytest.raises(ValidationFailed) as refused:
        set_display_message(
            "2.0.1",
            message_id=1,
            content="https://x.example/c/a/",
            message_format="QRCODE",
            priority="InFront",
        )
    assert refused.value.message.startswith("SetDisplayMessage (OCPP 2.0.1): ")
    with pytest.raises(ValidationFailed):
        set_display_message(
            "2.0.1", message_id=1, content="x" * 513, message_format="UTF8", priority="InFront"
        )
    assert set_display_message(
        "2.1", message_id=1, content="x" * 1024, message_format="UTF8", priority="InFront"
    )


# --- the API operation and the service --------------------------------------------------------------------


def test_a_2_0_1_station_gets_one_text_message_per_evse(world, api, fake_charger):
    evses = connect(world.station_a1, "ocpp2.0.1")
    response = api(world.operator_a).post(URL.format(identity="A1-CP1"), {}, format="json")
    assert response.status_code == 202
    expected = [
        message(n, "UTF8", f"A1-CP1 EVSE {n}: pay and charge at http://testserver/c/{evses[n].public_code}/")
        for n in (1, 2)
    ]
    assert fake_charger.received == [("A1-CP1", "SetDisplayMessage", payload) for payload in expected]
    body = response.json()["commands"]
    assert [(c["action"], c["request"], c["status"], c["response"]) for c in body] == [
        ("SetDisplayMessage", payload, "answered", {"status": "Accepted"}) for payload in expected
    ]
    assert [(c["station"], c["requested_by"], c["source"]) for c in body] == [
        ("A1-CP1", "operator_a", "api")
    ] * 2
    assert list(Command.objects.order_by("pk").values_list("request", flat=True)) == expected


def test_a_2_1_station_gets_the_url_as_a_qr_code(world, api, fake_charger, settings):
    settings.PUBLIC_BASE_URL = "https://charge.example.com"
    evses = connect(world.station_a1, "ocpp2.1")
    response = api(world.host_a1).post(URL.format(identity="A1-CP1"), {}, format="json")
    assert response.status_code == 202
    assert fake_charger.received == [
        (
            "A1-CP1",
            "SetDisplayMessage",
            message(n, "QRCODE", f"https://charge.example.com/c/{evses[n].public_code}/"),
        )
        for n in (1, 2)
    ]


def test_the_chargers_refusal_is_recorded_per_message(world, api, fake_charger):
    connect(world.station_a1, "ocpp2.0.1")
    fake_charger.answers["SetDisplayMessage"] = lambda request: (
        {"status": "NotSupportedState"}
        if request["message"]["id"] == PAYMENT_URL_MESSAGE_ID + 1
        else CallError("NotImplemented")
    )
    response = api(world.operator_a).post(URL.format(identity="A1-CP1"), {}, format="json")
    assert response.status_code == 202
    assert [(c["status"], c["response"], c["error_code"]) for c in response.json()["commands"]] == [
        ("answered", {"status": "NotSupportedState"}, ""),
        (
            "failed",
            {"errorCode": "NotImplemented", "errorDescription": "", "errorDetails": {}},
            "NotImplemented",
        ),
    ]


def test_a_1_6_station_is_a_400_and_nothing_is_sent(world, api, fake_charger):
    connect(world.station_a1, "ocpp1.6")
    response = api(world.operator_a).post(URL.format(identity="A1-CP1"), {}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Station 'A1-CP1' speaks OCPP 1.6, which has no display messages: print its QR labels instead "
        "(the site page in the portal)."
    }
    assert fake_charger.received == [] and not Command.objects.exists()


def test_a_station_without_evses_is_a_400(world, api, fake_charger):
    world.station_a1.protocol, world.station_a1.is_connected = "ocpp2.0.1", True
    world.station_a1.save()
    response = api(world.operator_a).post(URL.format(identity="A1-CP1"), {}, format="json")
    assert (response.status_code, response.json()) == (
        400,
        {"detail": "Station 'A1-CP1' has reported no EVSEs yet: no URL to show."},
    )
    assert not Command.objects.exists()


def test_an_offline_station_is_a_409_unless_queued(world, api, fake_charger):
    connect(world.station_a1, "ocpp2.0.1", connected=False)
    client = api(world.operator_a)
    response = client.post(URL.format(identity="A1-CP1"), {}, format="json")
    assert response.status_code == 409
    assert [(c["status"], c["error_code"]) for c in response.json()["commands"]] == [
        ("failed", "NotConnected")
    ] * 2
    queued = client.post(URL.format(identity="A1-CP1"), {"queue": 600}, format="json")
    assert queued.status_code == 202
    assert [c["status"] for c in queued.json()["commands"]] == ["pending", "pending"]
    assert fake_charger.received == []


@pytest.mark.parametrize(
    ("user", "identity", "status", "detail"),
    [
        ("operator_b", "A1-CP1", 404, "Station 'A1-CP1' not found."),  # another organisation
        ("host_a1", "A2-CP1", 404, "Station 'A2-CP1' not found."),  # a site host of another site
        ("finance_a", "A1-CP1", 403, "You may not command station 'A1-CP1'."),  # may see, not command
    ],
)
def test_denied_callers_send_nothing(world, api, fake_charger, user, identity, status, detail):
    connect(world.station_a1, "ocpp2.0.1")
    connect(world.station_a2, "ocpp2.0.1")
    response = api(getattr(world, user)).post(URL.format(identity=identity), {}, format="json")
    assert (response.status_code, response.json()) == (status, {"detail": detail})
    assert fake_charger.received == [] and not Command.objects.exists()


def test_the_service_checks_the_user_itself(world, fake_charger):
    connect(world.station_a1, "ocpp2.0.1")
    with pytest.raises(PermissionDenied):
        station_payment_url_display(station=world.station_a1, user=world.operator_b)
    assert not Command.objects.exists()


def test_without_setting_or_request_there_is_no_url_to_show(world, fake_charger, settings):
    settings.PUBLIC_BASE_URL = ""
    connect(world.station_a1, "ocpp2.0.1")
    with pytest.raises(ValidationFailed) as refused:
        station_payment_url_display(station=world.station_a1, user=world.operator_a)
    assert refused.value.message == (
        "No absolute URL to show: set PUBLIC_BASE_URL (the address drivers reach the platform at)."
    )
    assert not Command.objects.exists()
