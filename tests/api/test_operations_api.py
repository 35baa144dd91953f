"""Version-neutral operations: POST /api/v1/stations/<identity>/commands/<operation>/.

The same body to a 1.6 and a 2.0.1 station goes out as each version's own call (that is the point), through
command_send and the fake charger (tests/commands.py); the outcome is answered as the generic OCPP
endpoint answers it. Denied callers leave no command behind."""

import pytest

from cpms.ocpp_wire import operations as builders
from stations.models import ChargingStation, Command, DeviceVariable
from tests.commands import TIMEOUT, CallError
from tests.factories import ChargingSessionFactory, ConnectorFactory, EvseFactory


def url(identity: str, operation: str) -> str:
    return f"/api/v1/stations/{identity}/commands/{operation}/"


def connect(station, protocol: str):
    """A connected station with EVSE 1 and EVSE 2, one connector each (1.6 connectors 1 and 2)."""
    station.protocol = protocol
    station.is_connected = True
    station.save(update_fields=["protocol", "is_connected"])
    for evse_id in (1, 2):
        ConnectorFactory(evse=EvseFactory(station=station, evse_id=evse_id), connector_id=1)
    return station


@pytest.fixture(autouse=True)
def fixed_request_ids(monkeypatch):
    # 2.0.1 remoteStartId / GetBaseReport requestId are random (cpms.ocpp_wire.calls): pin them.
    monkeypatch.setattr(builders, "new_request_id", lambda: 4242)


@pytest.fixture
def station_16(world):
    return connect(world.station_a1, "ocpp1.6")


@pytest.fixture
def station_201(world):
    return connect(world.station_a1, "ocpp2.0.1")


class AnswerSequence(dict):
    """fake_charger.answers giving `action` a different answer per call, in order (for the 1.6
    ChangeConfiguration calls of one set-configuration)."""

    def __init__(self, action: str, answers: list):
        super().__init__()
        self.action, self.queue = action, list(answers)

    def get(self, action, default=None):
        return self.queue.pop(0) if action == self.action else default


# (operation, body, 1.6 wire call, 2.0.1 wire call). `body` may be a callable of the world for ids.
SAME_BODY_CASES = [
    (
        "remote-start",
        {"id_token": "AAAA0001", "connector_id": 2},
        ("RemoteStartTransaction", {"idTag": "AAAA0001", "connectorId": 2}),
        (
            "RequestStartTransaction",
            {"idToken": {"idToken": "AAAA0001", "type": "Central"}, "remoteStartId": 4242, "evseId": 2},
        ),
    ),
    (
        "remote-stop",
        {"transaction_id": "1001"},
        ("RemoteStopTransaction", {"transactionId": 1001}),
        ("RequestStopTransaction", {"transactionId": "1001"}),
    ),
    ("reset", {"kind": "soft"}, ("Reset", {"type": "Soft"}), ("Reset", {"type": "OnIdle"})),
    ("reset", {"kind": "immediate"}, ("Reset", {"type": "Hard"}), ("Reset", {"type": "Immediate"})),
    (
        "unlock",
        {"connector_id": 2},
        ("UnlockConnector", {"connectorId": 2}),
        ("UnlockConnector", {"evseId": 2, "connectorId": 1}),
    ),
    (
        "unlock",
        {"evse_id": 1, "connector_id": 1},
        ("UnlockConnector", {"connectorId": 1}),
        ("UnlockConnector", {"evseId": 1, "connectorId": 1}),
    ),
    (
        "change-availability",
        {"status": "inoperative"},
        ("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}),
        ("ChangeAvailability", {"operationalStatus": "Inoperative"}),
    ),
    (
        "change-availability",
        {"status": "operative", "evse_id": 1},
        ("ChangeAvailability", {"connectorId": 1, "type": "Operative"}),
        ("ChangeAvailability", {"operationalStatus": "Operative", "evse": {"id": 1}}),
    ),
    (
        "get-configuration",
        {},
        ("GetConfiguration", {}),
        ("GetBaseReport", {"requestId": 4242, "reportBase": "FullInventory"}),
    ),
    (
        "trigger-message",
        {"message": "StatusNotification", "connector_id": 1},
        ("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 1}),
        ("TriggerMessage", {"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}}),
    ),
    (
        "trigger-message",
        {"message": "DiagnosticsStatusNotification"},
        ("TriggerMessage", {"requestedMessage": "DiagnosticsStatusNotification"}),
        ("TriggerMessage", {"requestedMessage": "LogStatusNotification"}),
    ),
    ("clear-cache", {}, ("ClearCache", {}), ("ClearCache", {})),
    (
        "data-transfer",
        {"vendor_id": "com.acme", "message_id": "Price", "data": {"price": 0.3}},
        ("DataTransfer", {"vendorId": "com.acme", "messageId": "Price", "data": '{"price":0.3}'}),
        ("DataTransfer", {"vendorId": "com.acme", "messageId": "Price", "data": {"price": 0.3}}),
    ),
]

# A realistic answer per action; the fake charger answers {"status": "Accepted"} to the others.
ANSWERS = {
    "GetConfiguration": {"configurationKey": [], "unknownKey": []},
    "DataTransfer": {"status": "Accepted", "data": "ok"},
}


@pytest.mark.parametrize(
    ("operation", "body", "wire_16", "wire_201"),
    [pytest.param(*case, id=f"{case[0]}-{n}") for n, case in enumerate(SAME_BODY_CASES)],
)
@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
def test_the_same_body_goes_out_as_each_versions_own_call(
    api, world, fake_charger, protocol, operation, body, wire_16, wire_201
):
    station = connect(world.station_a1, protocol)
    action, payload = wire_16 if protocol == "ocpp1.6" else wire_201
    answer = ANSWERS.get(action, {"status": "Accepted"})
    fake_charger.answers[action] = answer

    response = api(world.operator_a).post(url(station.identity, operation), body, format="json")

    assert response.status_code == 200, response.json()
    got = response.json()
    assert (got["action"], got["request"], got["response"]) == (action, payload, answer)
    assert fake_charger.received == [("A1-CP1", action, payload)]
    command = Command.objects.get()
    assert (command.action, command.request, command.status, command.source) == (
        action,
        payload,
        "answered",
        "api",
    )
    assert command.requested_by == world.operator_a
    assert got["command"]["id"] == command.pk
    assert got["command"]["requested_by"] == "operator_a"


@pytest.mark.parametrize(
    ("protocol", "wire"),
    [
        ("ocpp1.6", ("RemoteStopTransaction", {"transactionId": 1001})),
        ("ocpp2.0.1", ("RequestStopTransaction", {"transactionId": "1001"})),
    ],
)
def test_remote_stop_by_our_session_id(api, world, fake_charger, protocol, wire):
    station = connect(world.station_a1, protocol)
    session = ChargingSessionFactory(station=station, transaction_id="1001")

    response = api(world.operator_a).post(
        url("A1-CP1", "remote-stop"), {"session_id": session.pk}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert fake_charger.received == [("A1-CP1", *wire)]


def test_remote_stop_of_another_stations_session_is_a_404_and_sends_nothing(
    api, world, fake_charger, station_16
):
    session = ChargingSessionFactory(station=world.station_a2, transaction_id="2001")

    response = api(world.operator_a).post(
        url("A1-CP1", "remote-stop"), {"session_id": session.pk}, format="json"
    )

    assert response.status_code == 404
    assert response.json() == {"detail": f"Session {session.pk} not found at station 'A1-CP1'."}
    assert (Command.objects.count(), fake_charger.received) == (0, [])


def test_the_timeout_given_is_the_commands_timeout(api, world, fake_charger, station_201):
    response = api(world.operator_a).post(
        url("A1-CP1", "reset"), {"kind": "hard", "timeout": 12}, format="json"
    )

    assert response.status_code == 200
    assert Command.objects.get().timeout_s == 12.0


# --- outcomes other than an answer --------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
def test_no_answer_in_time_is_a_504(api, world, fake_charger, protocol):
    connect(world.station_a1, protocol)
    fake_charger.answers["Reset"] = TIMEOUT

    response = api(world.operator_a).post(url("A1-CP1", "reset"), {"kind": "hard"}, format="json")

    assert response.status_code == 504
    assert response.json()["detail"] == "no answer"
    assert response.json()["command"]["status"] == "timed_out"


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
def test_a_callerror_is_a_502_with_the_chargers_error(api, world, fake_charger, protocol):
    connect(world.station_a1, protocol)
    fake_charger.answers["ClearCache"] = CallError("NotSupported", "no cache here")

    response = api(world.operator_a).post(url("A1-CP1", "clear-cache"), {}, format="json")

    assert response.status_code == 502
    body = response.json()
    assert body["error"] == {"code": "NotSupported", "description": "no cache here", "details": {}}
    assert (body["command"]["status"], body["command"]["error_code"]) == ("failed", "NotSupported")


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
def test_an_offline_station_is_a_409_and_the_command_is_recorded_as_not_connected(
    api, world, fake_charger, protocol
):
    station = connect(world.station_a1, protocol)
    station.is_connected = False
    station.save(update_fields=["is_connected"])

    response = api(world.operator_a).post(url("A1-CP1", "unlock"), {"connector_id": 1}, format="json")

    assert response.status_code == 409
    assert response.json()["detail"] == "Station A1-CP1 is not connected."
    command = Command.objects.get()
    assert (command.action, command.status, command.error_code) == (
        "UnlockConnector",
        "failed",
        "NotConnected",
    )
    assert fake_charger.received == []


def test_a_station_that_never_connected_is_a_409_with_nothing_recorded(api, world, fake_charger):
    response = api(world.operator_a).post(url("A1-CP1", "reset"), {"kind": "hard"}, format="json")

    assert response.status_code == 409
    assert response.json() == {
        "detail": "Station 'A1-CP1' has never connected: its OCPP version is not known yet."
    }
    assert (Command.objects.count(), fake_charger.received) == (0, [])


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "body", "expected"),
    [
        ("reset", {"kind": "hard", "bogus": 1}, {"bogus": ["Unknown or read-only field; it cannot be set."]}),
        ("reset", {"kind": "warm"}, {"kind": ['"warm" is not a valid choice.']}),
        (
            "reset",
            {"kind": "hard", "timeout": 301},
            {"timeout": ["Ensure this value is less than or equal to 300."]},
        ),
        (
            "reset",
            {"kind": "hard", "timeout": 0},
            {"timeout": ["Ensure this value is greater than or equal to 1."]},
        ),
        (
            "reset",
            {"kind": "hard", "evse_id": 1},
            {"detail": "OCPP 1.6 resets the whole station only; leave out evse_id."},
        ),
        ("remote-stop", {}, {"non_field_errors": ["Give either session_id or transaction_id."]}),
        (
            "remote-stop",
            {"session_id": 1, "transaction_id": "1"},
            {"non_field_errors": ["Give either session_id or transaction_id."]},
        ),
        (
            "remote-stop",
            {"transaction_id": "tx-1"},
            {"detail": "OCPP 1.6 transaction ids are integers; 'tx-1' is not one."},
        ),
        (
            "remote-start",
            {"id_token": "X" * 21},
            {
                "detail": "RemoteStartTransaction (OCPP 1.6): idTag: data.idTag must be shorter than or equal to "
                "20 characters"
            },
        ),
        ("unlock", {}, {"connector_id": ["This field is required."]}),
        (
            "unlock",
            {"evse_id": 1, "connector_id": 2},
            {"detail": "OCPP 1.6 has one connector per connectorId: EVSE 1 has no connector 2."},
        ),
        (
            "trigger-message",
            {"message": "TransactionEvent"},
            {"message": ['"TransactionEvent" is not a valid choice.']},
        ),
        (
            "get-configuration",
            {"keys": [{"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval"}]},
            {"detail": "OCPP 1.6 configuration keys are names (strings), not components and variables."},
        ),
        (
            "get-configuration",
            {"keys": [7]},
            {"keys": {"0": ["Expected a string or an object with component and variable."]}},
        ),
        ("set-configuration", {"values": []}, {"values": ["Ensure this field has at least 1 elements."]}),
        ("data-transfer", {}, {"vendor_id": ["This field is required."]}),
    ],
)
def test_bad_input_is_a_400_with_the_reason_and_sends_nothing(
    api, world, fake_charger, station_16, operation, body, expected
):
    response = api(world.operator_a).post(url("A1-CP1", operation), body, format="json")

    assert response.status_code == 400
    assert response.json() == expected
    assert (Command.objects.count(), fake_charger.received) == (0, [])


def test_a_2_0_1_key_must_name_a_component(api, world, fake_charger, station_201):
    response = api(world.operator_a).post(
        url("A1-CP1", "get-configuration"), {"keys": ["HeartbeatInterval"]}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "detail": "'HeartbeatInterval': OCPP 2.0.1 variables are named \"Component.Variable\", e.g. "
        '"OCPPCommCtrlr.HeartbeatInterval", or given as {"component", "variable"}.'
    }
    assert Command.objects.count() == 0


def test_a_lone_connector_id_the_2_0_1_station_does_not_have_is_a_400(api, world, fake_charger, station_201):
    response = api(world.operator_a).post(url("A1-CP1", "unlock"), {"connector_id": 3}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Station 'A1-CP1' reported 2 connector(s), so it has no connector 3: give evse_id and connector_id."
    }
    assert Command.objects.count() == 0


# --- who may -------------------------------------------------------------------------------------------

VALID_BODIES = {
    "remote-start": {"id_token": "AAAA0001"},
    "remote-stop": {"transaction_id": "1001"},
    "reset": {"kind": "hard"},
    "unlock": {"connector_id": 1},
    "change-availability": {"status": "inoperative"},
    "get-configuration": {},
    "set-configuration": {"values": [{"key": "HeartbeatInterval", "value": "60"}]},
    "trigger-message": {"message": "Heartbeat"},
    "clear-cache": {},
    "data-transfer": {"vendor_id": "com.acme"},
}


@pytest.mark.parametrize("operation", sorted(VALID_BODIES))
@pytest.mark.parametrize(
    ("username", "identity", "status", "detail"),
    [
        ("host_a1", "A2-CP1", 404, "Station 'A2-CP1' not found."),
        ("finance_a", "A1-CP1", 403, "You may not command station 'A1-CP1'."),
        ("operator_b", "A1-CP1", 404, "Station 'A1-CP1' not found."),
    ],
)
def test_denied_callers_get_404_or_403_and_nothing_is_sent_or_recorded(
    api, world, fake_charger, operation, username, identity, status, detail
):
    connect(world.station_a1, "ocpp1.6")
    connect(world.station_a2, "ocpp1.6")

    response = api(getattr(world, username)).post(
        url(identity, operation), VALID_BODIES[operation], format="json"
    )

    assert response.status_code == status
    assert response.json() == {"detail": detail}
    assert (Command.objects.count(), fake_charger.received) == (0, [])


@pytest.mark.parametrize(("username", "status"), [("finance_a", 403), ("operator_b", 404)])
def test_access_is_checked_before_the_body(api, world, fake_charger, station_16, username, status):
    response = api(getattr(world, username)).post(url("A1-CP1", "reset"), {"kind": "warm"}, format="json")

    assert response.status_code == status
    assert Command.objects.count() == 0


def test_a_site_host_commands_the_stations_of_its_own_site(api, world, fake_charger, station_16):
    response = api(world.host_a1).post(url("A1-CP1", "reset"), {"kind": "soft"}, format="json")

    assert response.status_code == 200
    assert fake_charger.received == [("A1-CP1", "Reset", {"type": "Soft"})]
    assert Command.objects.get().requested_by == world.host_a1


def test_anonymous_callers_are_refused(client, world, fake_charger, station_16):
    response = client.post(url("A1-CP1", "reset"), {"kind": "soft"}, content_type="application/json")

    assert response.status_code in (401, 403)
    assert Command.objects.count() == 0


# --- what the answers mean for the device model (answer hooks) --------------------------------------------


def variables(station) -> list[tuple]:
    return list(
        DeviceVariable.objects.filter(station=station)
        .order_by("component", "evse_id", "variable", "attribute_type")
        .values_list("component", "evse_id", "variable", "attribute_type", "value", "mutability")
    )


def test_1_6_get_configuration_stores_the_keys_but_not_the_unknown_ones(api, world, fake_charger, station_16):
    fake_charger.answers["GetConfiguration"] = {
        "configurationKey": [
            {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
            {"key": "NumberOfConnectors", "readonly": True, "value": "2"},
            {"key": "AuthorizationKey", "readonly": False},
        ],
        "unknownKey": ["NoSuchKey"],
    }

    response = api(world.operator_a).post(
        url("A1-CP1", "get-configuration"),
        {"keys": ["HeartbeatInterval", "NumberOfConnectors", "AuthorizationKey", "NoSuchKey"]},
        format="json",
    )

    assert response.status_code == 200
    assert fake_charger.received == [
        (
            "A1-CP1",
            "GetConfiguration",
            {"key": ["HeartbeatInterval", "NumberOfConnectors", "AuthorizationKey", "NoSuchKey"]},
        )
    ]
    assert variables(station_16) == [
        ("OCPP16", 0, "AuthorizationKey", "Actual", "", "ReadWrite"),
        ("OCPP16", 0, "HeartbeatInterval", "Actual", "300", "ReadWrite"),
        ("OCPP16", 0, "NumberOfConnectors", "Actual", "2", "ReadOnly"),
    ]


def test_2_0_1_get_variables_stores_the_accepted_values_and_keeps_what_notifyreport_said(
    api, world, fake_charger, station_201
):
    DeviceVariable.objects.create(
        station=station_201,
        component="OCPPCommCtrlr",
        variable="HeartbeatInterval",
        value="600",
        mutability="ReadWrite",
        data_type="integer",
        unit="s",
        updated_at="2025-01-01T00:00:00Z",
    )
    fake_charger.answers["GetVariables"] = {
        "getVariableResult": [
            {
                "attributeStatus": "Accepted",
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
                "attributeValue": "300",
            },
            {
                "attributeStatus": "Accepted",
                "attributeType": "MaxSet",
                "component": {"name": "EVSE", "evse": {"id": 1}},
                "variable": {"name": "Power"},
                "attributeValue": "22000",
            },
            {
                "attributeStatus": "UnknownComponent",
                "component": {"name": "Foo"},
                "variable": {"name": "Bar"},
            },
            {
                "attributeStatus": "Rejected",
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"},
            },
        ]
    }
    body = {
        "keys": [
            "OCPPCommCtrlr.HeartbeatInterval",
            {"component": "EVSE", "variable": "Power", "evse_id": 1, "attribute_type": "MaxSet"},
            "Foo.Bar",
            "SecurityCtrlr.BasicAuthPassword",
        ]
    }

    response = api(world.operator_a).post(url("A1-CP1", "get-configuration"), body, format="json")

    assert response.status_code == 200
    assert fake_charger.received[0][1:] == (
        "GetVariables",
        {
            "getVariableData": [
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
                {
                    "component": {"name": "EVSE", "evse": {"id": 1}},
                    "variable": {"name": "Power"},
                    "attributeType": "MaxSet",
                },
                {"component": {"name": "Foo"}, "variable": {"name": "Bar"}},
                {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}},
            ]
        },
    )
    assert variables(station_201) == [
        ("EVSE", 1, "Power", "MaxSet", "22000", ""),
        ("OCPPCommCtrlr", 0, "HeartbeatInterval", "Actual", "300", "ReadWrite"),
    ]
    heartbeat = DeviceVariable.objects.get(station=station_201, variable="HeartbeatInterval")
    assert (heartbeat.data_type, heartbeat.unit) == ("integer", "s")
    assert heartbeat.updated_at == Command.objects.get().finished_at


def test_1_6_set_configuration_sends_a_call_per_key_and_stores_what_the_charger_took(
    api, world, fake_charger, station_16
):
    DeviceVariable.objects.create(
        station=station_16,
        component="OCPP16",
        variable="MeterValueSampleInterval",
        value="60",
        mutability="ReadWrite",
        updated_at="2025-01-01T00:00:00Z",
    )
    fake_charger.answers = AnswerSequence(
        "ChangeConfiguration", [{"status": "Accepted"}, {"status": "Rejected"}, {"status": "RebootRequired"}]
    )
    body = {
        "values": [
            {"key": "HeartbeatInterval", "value": "120"},
            {"key": "MeterValueSampleInterval", "value": "-5"},
            {"key": "LocalPreAuthorize", "value": "true"},
        ]
    }

    response = api(world.operator_a).post(url("A1-CP1", "set-configuration"), body, format="json")

    assert response.status_code == 200
    got = response.json()
    assert got["settings"] == [
        {"key": "HeartbeatInterval", "value": "120", "status": "Accepted"},
        {"key": "MeterValueSampleInterval", "value": "-5", "status": "Rejected"},
        {"key": "LocalPreAuthorize", "value": "true", "status": "RebootRequired"},
    ]
    assert [(c["status_code"], c["action"], c["request"], c["response"]) for c in got["calls"]] == [
        (200, "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "120"}, {"status": "Accepted"}),
        (
            200,
            "ChangeConfiguration",
            {"key": "MeterValueSampleInterval", "value": "-5"},
            {"status": "Rejected"},
        ),
        (
            200,
            "ChangeConfiguration",
            {"key": "LocalPreAuthorize", "value": "true"},
            {"status": "RebootRequired"},
        ),
    ]
    assert [c["command"]["id"] for c in got["calls"]] == list(
        Command.objects.order_by("id").values_list("id", flat=True)
    )
    assert variables(station_16) == [
        ("OCPP16", 0, "HeartbeatInterval", "Actual", "120", ""),
        ("OCPP16", 0, "LocalPreAuthorize", "Actual", "true", ""),
        ("OCPP16", 0, "MeterValueSampleInterval", "Actual", "60", "ReadWrite"),
    ]


def test_1_6_set_configuration_stops_at_the_first_call_without_an_answer(
    api, world, fake_charger, station_16
):
    fake_charger.answers = AnswerSequence("ChangeConfiguration", [{"status": "Accepted"}, TIMEOUT])
    body = {
        "values": [
            {"key": "HeartbeatInterval", "value": "120"},
            {"key": "MeterValueSampleInterval", "value": "30"},
            {"key": "LocalPreAuthorize", "value": "true"},
        ]
    }

    response = api(world.operator_a).post(url("A1-CP1", "set-configuration"), body, format="json")

    assert response.status_code == 504
    got = response.json()
    assert [s["status"] for s in got["settings"]] == ["Accepted", None, None]
    assert [(c["status_code"], c["command"]["status"]) for c in got["calls"]] == [
        (200, "answered"),
        (504, "timed_out"),
    ]
    assert [request["key"] for _, _, request in fake_charger.received] == [
        "HeartbeatInterval",
        "MeterValueSampleInterval",
    ]
    assert Command.objects.count() == 2


def test_2_0_1_set_configuration_is_one_set_variables_matched_back_per_setting(
    api, world, fake_charger, station_201
):
    fake_charger.answers["SetVariables"] = {
        "setVariableResult": [
            {
                "attributeStatus": "Rejected",
                "attributeType": "MaxSet",
                "component": {"name": "EVSE", "evse": {"id": 1}},
                "variable": {"name": "Power"},
            },
            {
                "attributeStatus": "Accepted",
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
            },
            {
                "attributeStatus": "RebootRequired",
                "component": {"name": "AuthCtrlr"},
                "variable": {"name": "Enabled"},
            },
        ]
    }
    power = {"component": "EVSE", "variable": "Power", "evse_id": 1, "attribute_type": "MaxSet"}
    body = {
        "values": [
            {"key": "OCPPCommCtrlr.HeartbeatInterval", "value": "120"},
            {"key": power, "value": "99000"},
            {"key": "AuthCtrlr.Enabled", "value": "true"},
        ]
    }

    response = api(world.operator_a).post(url("A1-CP1", "set-configuration"), body, format="json")

    assert response.status_code == 200
    got = response.json()
    assert got["settings"] == [
        {"key": "OCPPCommCtrlr.HeartbeatInterval", "value": "120", "status": "Accepted"},
        {"key": power, "value": "99000", "status": "Rejected"},
        {"key": "AuthCtrlr.Enabled", "value": "true", "status": "RebootRequired"},
    ]
    assert [(c["status_code"], c["action"]) for c in got["calls"]] == [(200, "SetVariables")]
    assert fake_charger.received == [
        (
            "A1-CP1",
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "HeartbeatInterval"},
                        "attributeValue": "120",
                    },
                    {
                        "component": {"name": "EVSE", "evse": {"id": 1}},
                        "variable": {"name": "Power"},
                        "attributeType": "MaxSet",
                        "attributeValue": "99000",
                    },
                    {
                        "component": {"name": "AuthCtrlr"},
                        "variable": {"name": "Enabled"},
                        "attributeValue": "true",
                    },
                ]
            },
        )
    ]
    assert variables(station_201) == [
        ("AuthCtrlr", 0, "Enabled", "Actual", "true", ""),
        ("OCPPCommCtrlr", 0, "HeartbeatInterval", "Actual", "120", ""),
    ]


def test_set_configuration_to_an_offline_station_is_a_409_with_one_failed_call(
    api, world, fake_charger, station_16
):
    station_16.is_connected = False
    station_16.save(update_fields=["is_connected"])
    body = {
        "values": [
            {"key": "HeartbeatInterval", "value": "120"},
            {"key": "LocalPreAuthorize", "value": "true"},
        ]
    }

    response = api(world.operator_a).post(url("A1-CP1", "set-configuration"), body, format="json")

    assert response.status_code == 409
    got = response.json()
    assert [s["status"] for s in got["settings"]] == [None, None]
    assert [(c["status_code"], c["command"]["error_code"]) for c in got["calls"]] == [(409, "NotConnected")]
    assert list(Command.objects.values_list("action", "status", "error_code")) == [
        ("ChangeConfiguration", "failed", "NotConnected")
    ]
    assert fake_charger.received == []
    assert DeviceVariable.objects.count() == 0


def test_operations_can_wait_in_the_outbox_for_an_offline_station(api, world, station_16, fake_charger):
    ChargingStation.objects.filter(pk=station_16.pk).update(is_connected=False)
    client = api(world.operator_a)
    reset = client.post(url(station_16.identity, "reset"), {"kind": "soft", "queue": 600}, format="json")
    assert reset.status_code == 202, reset.content
    settings = client.post(
        url(station_16.identity, "set-configuration"),
        {"values": [{"key": "A", "value": "1"}, {"key": "B", "value": "2"}], "queue": 600},
        format="json",
    )
    assert settings.status_code == 202, settings.content
    assert [s["status"] for s in settings.json()["settings"]] == [None, None]
    pending = Command.objects.filter(status="pending", queued_until__isnull=False).order_by("pk")
    assert [(c.action, c.request) for c in pending] == [
        ("Reset", {"type": "Soft"}),
        ("ChangeConfiguration", {"key": "A", "value": "1"}),
        ("ChangeConfiguration", {"key": "B", "value": "2"}),
    ]
    assert fake_charger.received == []
