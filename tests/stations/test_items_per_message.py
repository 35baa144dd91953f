"""A command with more items than the station takes in one message is sent as several messages, and their
answers are merged into one result for the caller, in order (OCPP 2.0.1 B05/B06: the CSMS does not send more
than DeviceDataCtrlr.ItemsPerMessage[SetVariables|GetVariables] items; 1.6 GetConfigurationMaxKeys)."""

import pytest
from django.utils import timezone

from accounts.services import api_token_get_or_create
from cpms.errors import ValidationFailed
from cpms.ocpp_wire.calls import Call
from stations.enums import CommandStatus
from stations.models import Command, DeviceVariable
from stations.services.commands import command_send
from tests.commands import CallError
from tests.factories import ChargingStationFactory, UserFactory

FIVE = ["Alpha", "Bravo", "Charlie", "Delta", "Echo"]


def limit(station, component: str, variable: str, instance: str, value: str) -> None:
    DeviceVariable.objects.create(
        station=station,
        component=component,
        variable=variable,
        variable_instance=instance,
        value=value,
        updated_at=timezone.now(),
    )


def ref(name: str) -> dict:
    return {"component": {"name": "Ctrlr"}, "variable": {"name": name}}


def get_variables_answer(request: dict) -> dict:
    return {
        "getVariableResult": [
            {**item, "attributeStatus": "Accepted", "attributeValue": item["variable"]["name"].lower()}
            for item in request["getVariableData"]
        ]
    }


def set_variables_answer(request: dict) -> dict:
    return {
        "setVariableResult": [
            {"component": item["component"], "variable": item["variable"], "attributeStatus": "Accepted"}
            for item in request["setVariableData"]
        ]
    }


def get_configuration_answer(request: dict) -> dict:
    known = [key for key in request["key"] if key != "Charlie"]
    answer: dict = {
        "configurationKey": [{"key": key, "readonly": False, "value": key.lower()} for key in known]
    }
    if "Charlie" in request["key"]:
        answer["unknownKey"] = ["Charlie"]
    return answer


@pytest.fixture
def station_201(db):
    return ChargingStationFactory(identity="CP-IPM", is_connected=True, protocol="ocpp2.0.1")


@pytest.fixture
def station_16(db):
    return ChargingStationFactory(identity="CP-IPM16", is_connected=True, protocol="ocpp1.6")


def test_get_variables_over_the_limit_go_in_several_messages_merged_in_order(station_201, fake_charger):
    limit(station_201, "DeviceDataCtrlr", "ItemsPerMessage", "GetVariables", "2")
    fake_charger.answers["GetVariables"] = get_variables_answer
    request = {"getVariableData": [ref(name) for name in FIVE]}

    command = command_send(station=station_201, call=Call("GetVariables", request), requested_by=None)

    assert [payload for _identity, _action, payload in fake_charger.received] == [
        {"getVariableData": [ref("Alpha"), ref("Bravo")]},
        {"getVariableData": [ref("Charlie"), ref("Delta")]},
        {"getVariableData": [ref("Echo")]},
    ]
    assert (command.status, command.action, command.request) == (
        CommandStatus.ANSWERED,
        "GetVariables",
        request,
    )
    assert command.response == {
        "getVariableResult": [
            {**ref(name), "attributeStatus": "Accepted", "attributeValue": name.lower()} for name in FIVE
        ]
    }
    # Each message is a command of its own in the history; the values are stored as usual.
    assert Command.objects.filter(action="GetVariables", status=CommandStatus.ANSWERED).count() == 3
    assert sorted(DeviceVariable.objects.filter(component="Ctrlr").values_list("variable", "value")) == [
        (name, name.lower()) for name in FIVE
    ]


def test_set_variables_over_the_limit_go_in_several_messages_merged_in_order(station_201, fake_charger):
    limit(station_201, "DeviceDataCtrlr", "ItemsPerMessage", "SetVariables", "2")
    fake_charger.answers["SetVariables"] = set_variables_answer
    items = [{**ref(name), "attributeValue": str(index)} for index, name in enumerate(FIVE)]

    command = command_send(
        station=station_201, call=Call("SetVariables", {"setVariableData": items}), requested_by=None
    )

    assert [payload for _identity, _action, payload in fake_charger.received] == [
        {"setVariableData": items[0:2]},
        {"setVariableData": items[2:4]},
        {"setVariableData": items[4:5]},
    ]
    assert command.status == CommandStatus.ANSWERED
    assert command.response == {
        "setVariableResult": [{**ref(name), "attributeStatus": "Accepted"} for name in FIVE]
    }


def test_get_configuration_over_max_keys_goes_in_several_messages_merged_in_order(station_16, fake_charger):
    limit(station_16, "OCPP16", "GetConfigurationMaxKeys", "", "2")
    fake_charger.answers["GetConfiguration"] = get_configuration_answer

    command = command_send(
        station=station_16, call=Call("GetConfiguration", {"key": FIVE}), requested_by=None
    )

    assert [payload for _identity, _action, payload in fake_charger.received] == [
        {"key": ["Alpha", "Bravo"]},
        {"key": ["Charlie", "Delta"]},
        {"key": ["Echo"]},
    ]
    assert (command.status, command.request) == (CommandStatus.ANSWERED, {"key": FIVE})
    assert command.response == {
        "configurationKey": [
            {"key": key, "readonly": False, "value": key.lower()}
            for key in ["Alpha", "Bravo", "Delta", "Echo"]
        ],
        "unknownKey": ["Charlie"],
    }


def test_an_unknown_limit_sends_one_message(station_201, station_16, fake_charger):
    fake_charger.answers["GetVariables"] = get_variables_answer
    fake_charger.answers["GetConfiguration"] = get_configuration_answer
    # A limit reported as something other than a positive integer is no limit we can use.
    limit(station_16, "OCPP16", "GetConfigurationMaxKeys", "", "many")

    command_send(
        station=station_201,
        call=Call("GetVariables", {"getVariableData": [ref(n) for n in FIVE]}),
        requested_by=None,
    )
    command_send(station=station_16, call=Call("GetConfiguration", {"key": FIVE}), requested_by=None)

    assert fake_charger.received == [
        ("CP-IPM", "GetVariables", {"getVariableData": [ref(name) for name in FIVE]}),
        ("CP-IPM16", "GetConfiguration", {"key": FIVE}),
    ]


def test_within_the_limit_one_message(station_201, fake_charger):
    limit(station_201, "DeviceDataCtrlr", "ItemsPerMessage", "GetVariables", "5")
    fake_charger.answers["GetVariables"] = get_variables_answer
    command = command_send(
        station=station_201,
        call=Call("GetVariables", {"getVariableData": [ref(n) for n in FIVE]}),
        requested_by=None,
    )
    assert (len(fake_charger.received), Command.objects.count(), command.pk) == (
        1,
        1,
        Command.objects.get().pk,
    )


def test_a_failed_message_stops_the_rest_and_is_the_result(station_201, fake_charger):
    limit(station_201, "DeviceDataCtrlr", "ItemsPerMessage", "GetVariables", "2")
    answers = iter(
        [get_variables_answer({"getVariableData": [ref("Alpha"), ref("Bravo")]}), CallError("InternalError")]
    )
    fake_charger.answers["GetVariables"] = lambda request: next(answers)

    command = command_send(
        station=station_201,
        call=Call("GetVariables", {"getVariableData": [ref(n) for n in FIVE]}),
        requested_by=None,
    )

    assert len(fake_charger.received) == 2  # the third message is not sent
    assert (command.status, command.error_code) == (CommandStatus.FAILED, "InternalError")
    assert list(Command.objects.order_by("pk").values_list("status", flat=True)) == ["answered", "failed"]


def test_the_api_caller_gets_one_merged_answer(station_201, fake_charger, client):
    limit(station_201, "DeviceDataCtrlr", "ItemsPerMessage", "GetVariables", "2")
    fake_charger.answers["GetVariables"] = get_variables_answer
    user = UserFactory(username="root-ipm", is_superuser=True, is_staff=True)
    token = api_token_get_or_create(user=user)
    response = client.post(
        "/api/v1/stations/CP-IPM/ocpp/GetVariables/",
        {"getVariableData": [ref(n) for n in FIVE]},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {token.key}",
    )
    assert response.status_code == 200
    assert (response.json()["request"], response.json()["response"]) == (
        {"getVariableData": [ref(n) for n in FIVE]},
        {
            "getVariableResult": [
                {**ref(n), "attributeStatus": "Accepted", "attributeValue": n.lower()} for n in FIVE
            ]
        },
    )
    assert len(fake_charger.received) == 3


def test_a_bad_password_in_a_later_part_stops_the_whole_request_before_anything_is_sent(
    station_201, fake_charger
):
    limit(station_201, "DeviceDataCtrlr", "ItemsPerMessage", "SetVariables", "2")
    items = [{**ref(name), "attributeValue": "1"} for name in FIVE[:4]]
    items.append(
        {
            "component": {"name": "SecurityCtrlr"},
            "variable": {"name": "BasicAuthPassword"},
            "attributeValue": "short",
        }
    )
    with pytest.raises(ValidationFailed, match="BasicAuthPassword must"):
        command_send(
            station=station_201, call=Call("SetVariables", {"setVariableData": items}), requested_by=None
        )
    assert (fake_charger.received, Command.objects.count()) == ([], 0)
