"""Version-neutral builders (cpms/ocpp_wire/operations.py): one operation, the exact call of each OCPP version,
and every call valid against the official request schema of its version."""

import pytest

from cpms.errors import Conflict, NotFound, ValidationFailed
from cpms.ocpp_wire import operations as c
from cpms.ocpp_wire import schemas
from cpms.ocpp_wire.calls import Call
from cpms.ocpp_wire.operations import Target
from sessions.selectors import session_transaction_id
from stations.services.commands import station_version, target_resolve
from tests.factories import ChargingSessionFactory, ConnectorFactory, EvseFactory

V2 = ("2.0.1", "2.1")  # 2.1 is built like 2.0.1

PROFILE_16 = {
    "chargingProfileId": 1,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxProfile",
    "chargingProfileKind": "Relative",
    "chargingSchedule": {
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
    },
}
PROFILE_201 = {
    "id": 1,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxProfile",
    "chargingProfileKind": "Relative",
    "chargingSchedule": [
        {"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]}
    ],
}

# (builder, kwargs, versions, expected call(s)): every builder for every version.
CASES = [
    # remote start
    (c.remote_start, {"id_token": "TAG1"}, ["1.6"], Call("RemoteStartTransaction", {"idTag": "TAG1"})),
    (
        c.remote_start,
        {"id_token": "TAG1", "target": Target(2, 1), "charging_profile": PROFILE_16},
        ["1.6"],
        Call("RemoteStartTransaction", {"idTag": "TAG1", "connectorId": 2, "chargingProfile": PROFILE_16}),
    ),
    (
        c.remote_start,
        {"id_token": "TAG1", "remote_start_id": 77},
        V2,
        Call(
            "RequestStartTransaction",
            {"idToken": {"idToken": "TAG1", "type": "Central"}, "remoteStartId": 77},
        ),
    ),
    (
        c.remote_start,
        {
            "id_token": "04A1B2C3",
            "id_token_type": "ISO14443",
            "target": Target(2, 1),
            "charging_profile": PROFILE_201,
            "remote_start_id": 5,
        },
        V2,
        Call(
            "RequestStartTransaction",
            {
                "idToken": {"idToken": "04A1B2C3", "type": "ISO14443"},
                "remoteStartId": 5,
                "evseId": 2,
                "chargingProfile": PROFILE_201,
            },
        ),
    ),
    # remote stop
    (c.remote_stop, {"transaction_id": "42"}, ["1.6"], Call("RemoteStopTransaction", {"transactionId": 42})),
    (
        c.remote_stop,
        {"transaction_id": "tx-9"},
        V2,
        Call("RequestStopTransaction", {"transactionId": "tx-9"}),
    ),
    # reset
    (c.reset, {"kind": "hard"}, ["1.6"], Call("Reset", {"type": "Hard"})),
    (c.reset, {"kind": "immediate"}, ["1.6"], Call("Reset", {"type": "Hard"})),
    (c.reset, {"kind": "soft"}, ["1.6"], Call("Reset", {"type": "Soft"})),
    (c.reset, {"kind": "on_idle"}, ["1.6"], Call("Reset", {"type": "Soft"})),
    (c.reset, {"kind": "hard"}, V2, Call("Reset", {"type": "Immediate"})),
    (c.reset, {"kind": "immediate"}, V2, Call("Reset", {"type": "Immediate"})),
    (c.reset, {"kind": "soft"}, V2, Call("Reset", {"type": "OnIdle"})),
    (c.reset, {"kind": "on_idle", "evse_id": 2}, V2, Call("Reset", {"type": "OnIdle", "evseId": 2})),
    # unlock
    (c.unlock, {"target": Target(3, 1)}, ["1.6"], Call("UnlockConnector", {"connectorId": 3})),
    (c.unlock, {"target": Target(3)}, ["1.6"], Call("UnlockConnector", {"connectorId": 3})),
    (c.unlock, {"target": Target(3, 2)}, V2, Call("UnlockConnector", {"evseId": 3, "connectorId": 2})),
    # change availability
    (
        c.change_availability,
        {"operative": False},
        ["1.6"],
        Call("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}),
    ),
    (
        c.change_availability,
        {"operative": True, "target": Target(2, 1)},
        ["1.6"],
        Call("ChangeAvailability", {"connectorId": 2, "type": "Operative"}),
    ),
    (
        c.change_availability,
        {"operative": False},
        V2,
        Call("ChangeAvailability", {"operationalStatus": "Inoperative"}),
    ),
    (
        c.change_availability,
        {"operative": True, "target": Target(2)},
        V2,
        Call("ChangeAvailability", {"operationalStatus": "Operative", "evse": {"id": 2}}),
    ),
    (
        c.change_availability,
        {"operative": False, "target": Target(2, 1)},
        V2,
        Call("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 2, "connectorId": 1}}),
    ),
    # get configuration
    (c.get_configuration, {}, ["1.6"], Call("GetConfiguration", {})),
    (
        c.get_configuration,
        {"keys": ["HeartbeatInterval", "MeterValueSampleInterval"]},
        ["1.6"],
        Call("GetConfiguration", {"key": ["HeartbeatInterval", "MeterValueSampleInterval"]}),
    ),
    (
        c.get_configuration,
        {"request_id": 5},
        V2,
        Call("GetBaseReport", {"requestId": 5, "reportBase": "FullInventory"}),
    ),
    (
        c.get_configuration,
        {
            "keys": [
                "OCPPCommCtrlr.HeartbeatInterval",
                {
                    "component": "EVSE",
                    "variable": "Power",
                    "evse_id": 1,
                    "connector_id": 2,
                    "attribute_type": "MaxSet",
                },
                {
                    "component": "Connector",
                    "component_instance": "left",
                    "variable": "AvailabilityState",
                    "variable_instance": "now",
                    "attribute_type": "Actual",
                },
            ]
        },
        V2,
        Call(
            "GetVariables",
            {
                "getVariableData": [
                    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
                    {
                        "component": {"name": "EVSE", "evse": {"id": 1, "connectorId": 2}},
                        "variable": {"name": "Power"},
                        "attributeType": "MaxSet",
                    },
                    {
                        "component": {"name": "Connector", "instance": "left"},
                        "variable": {"name": "AvailabilityState", "instance": "now"},
                    },
                ]
            },
        ),
    ),
    # set configuration: 1.6 one call per key, 2.0.1 one call
    (
        c.set_configuration,
        {"values": [("HeartbeatInterval", "60"), ("LocalPreAuthorize", "true")]},
        ["1.6"],
        [
            Call("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}),
            Call("ChangeConfiguration", {"key": "LocalPreAuthorize", "value": "true"}),
        ],
    ),
    (
        c.set_configuration,
        {
            "values": [
                ("OCPPCommCtrlr.HeartbeatInterval", "60"),
                (
                    {"component": "EVSE", "variable": "Power", "evse_id": 1, "attribute_type": "MaxSet"},
                    "11000",
                ),
                ("AuthCtrlr.AdditionalInfoItemsPerMessage", ""),
            ]
        },
        V2,
        [
            Call(
                "SetVariables",
                {
                    "setVariableData": [
                        {
                            "component": {"name": "OCPPCommCtrlr"},
                            "variable": {"name": "HeartbeatInterval"},
                            "attributeValue": "60",
                        },
                        {
                            "component": {"name": "EVSE", "evse": {"id": 1}},
                            "variable": {"name": "Power"},
                            "attributeType": "MaxSet",
                            "attributeValue": "11000",
                        },
                        {
                            "component": {"name": "AuthCtrlr"},
                            "variable": {"name": "AdditionalInfoItemsPerMessage"},
                            "attributeValue": "",
                        },
                    ]
                },
            )
        ],
    ),
    # trigger message
    (
        c.trigger_message,
        {"message": "Heartbeat"},
        ["1.6"],
        Call("TriggerMessage", {"requestedMessage": "Heartbeat"}),
    ),
    (
        c.trigger_message,
        {"message": "StatusNotification", "target": Target(1)},
        ["1.6"],
        Call("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 1}),
    ),
    (
        c.trigger_message,
        {"message": "LogStatusNotification"},
        ["1.6"],
        Call("TriggerMessage", {"requestedMessage": "DiagnosticsStatusNotification"}),
    ),
    (
        c.trigger_message,
        {"message": "DiagnosticsStatusNotification"},
        V2,
        Call("TriggerMessage", {"requestedMessage": "LogStatusNotification"}),
    ),
    (
        c.trigger_message,
        {"message": "MeterValues", "target": Target(1, 2)},
        V2,
        Call("TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 1, "connectorId": 2}}),
    ),
    (
        c.trigger_message,
        {"message": "BootNotification"},
        [*V2, "1.6"],
        Call("TriggerMessage", {"requestedMessage": "BootNotification"}),
    ),
    (
        c.trigger_message,
        {"message": "FirmwareStatusNotification"},
        [*V2, "1.6"],
        Call("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"}),
    ),
    # clear cache
    (c.clear_cache, {}, ["1.6", *V2], Call("ClearCache", {})),
    # data transfer
    (
        c.data_transfer,
        {"vendor_id": "com.acme"},
        ["1.6", *V2],
        Call("DataTransfer", {"vendorId": "com.acme"}),
    ),
    (
        c.data_transfer,
        {"vendor_id": "com.acme", "message_id": "SetPrice", "data": {"price": 0.3, "unit": "kWh"}},
        ["1.6"],
        Call(
            "DataTransfer",
            {"vendorId": "com.acme", "messageId": "SetPrice", "data": '{"price":0.3,"unit":"kWh"}'},
        ),
    ),
    (
        c.data_transfer,
        {"vendor_id": "com.acme", "message_id": "SetPrice", "data": {"price": 0.3, "unit": "kWh"}},
        V2,
        Call(
            "DataTransfer",
            {"vendorId": "com.acme", "messageId": "SetPrice", "data": {"price": 0.3, "unit": "kWh"}},
        ),
    ),
    (
        c.data_transfer,
        {"vendor_id": "com.acme", "data": "raw text"},
        ["1.6", *V2],
        Call("DataTransfer", {"vendorId": "com.acme", "data": "raw text"}),
    ),
]

PARAMS = [
    pytest.param(builder, kwargs, version, expected, id=f"{builder.__name__}-{version}-{n}")
    for n, (builder, kwargs, versions, expected) in enumerate(CASES)
    for version in versions
]


@pytest.mark.parametrize(("builder", "kwargs", "version", "expected"), PARAMS)
def test_builder_makes_the_exact_call_of_the_version(builder, kwargs, version, expected):
    assert builder(version, **kwargs) == expected


@pytest.mark.parametrize(("builder", "kwargs", "version", "expected"), PARAMS)
def test_every_built_call_validates_against_the_official_request_schema(builder, kwargs, version, expected):
    built = builder(version, **kwargs)
    for action, payload in built if isinstance(built, list) else [built]:
        schemas.validate(version, schemas.request_schema(version, action), payload)  # raises if invalid


def test_every_builder_is_covered_for_every_version():
    covered = {(builder.__name__, version) for builder, _, versions, _ in CASES for version in versions}
    builders = {
        "remote_start",
        "remote_stop",
        "reset",
        "unlock",
        "change_availability",
        "get_configuration",
        "set_configuration",
        "trigger_message",
        "clear_cache",
        "data_transfer",
    }
    assert covered == {(name, version) for name in builders for version in ("1.6", "2.0.1", "2.1")}


@pytest.mark.parametrize("version", V2)
def test_remote_start_draws_a_positive_31_bit_remote_start_id(version):
    drawn = [c.remote_start(version, id_token="TAG1").payload["remoteStartId"] for _ in range(20)]
    assert all(isinstance(i, int) and 1 <= i <= 2**31 - 1 for i in drawn)
    assert len(set(drawn)) > 1  # not a constant


def test_get_base_report_draws_a_request_id():
    request_id = c.get_configuration("2.0.1").payload["requestId"]
    assert 1 <= request_id <= 2**31 - 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: c.remote_start("1.6", id_token="X" * 21),
            "RemoteStartTransaction (OCPP 1.6): idTag: data.idTag must be shorter than or equal to 20 characters",
        ),
        (
            lambda: c.remote_start("1.6", id_token="TAG1", target=Target(2, 2)),
            "OCPP 1.6 has one connector per connectorId: EVSE 2 has no connector 2.",
        ),
        (
            lambda: c.remote_start("2.0.1", id_token="TAG1", id_token_type="Bogus", remote_start_id=1),
            "RequestStartTransaction (OCPP 2.0.1): idToken.type: data.idToken.type must be one of "
            "['Central', 'eMAID', 'ISO14443', 'ISO15693', 'KeyCode', 'Local', 'MacAddress', 'NoAuthorization']",
        ),
        (
            lambda: c.remote_stop("1.6", transaction_id="tx-9"),
            "OCPP 1.6 transaction ids are integers; 'tx-9' is not one.",
        ),
        (
            lambda: c.reset("1.6", kind="hard", evse_id=1),
            "OCPP 1.6 resets the whole station only; leave out evse_id.",
        ),
        (
            lambda: c.reset("2.0.1", kind="warm"),
            "Unknown reset type 'warm'; use one of hard, soft, immediate, on_idle.",
        ),
        (
            lambda: c.unlock("1.6", target=Target()),
            "Unlock needs a connector: give connector_id (and evse_id).",
        ),
        (
            lambda: c.unlock("2.0.1", target=Target(1)),
            "Unlock needs a connector: give connector_id with evse_id.",
        ),
        (
            lambda: c.get_configuration(
                "1.6", keys=[{"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval"}]
            ),
            "OCPP 1.6 configuration keys are names (strings), not components and variables.",
        ),
        (
            lambda: c.get_configuration("2.0.1", keys=["HeartbeatInterval"]),
            "'HeartbeatInterval': OCPP 2.0.1 variables are named \"Component.Variable\", e.g. "
            '"OCPPCommCtrlr.HeartbeatInterval", or given as {"component", "variable"}.',
        ),
        (
            lambda: c.get_configuration(
                "2.0.1", keys=[{"component": "EVSE", "variable": "Power", "connector_id": 1}]
            ),
            "EVSE.Power: connector_id needs evse_id.",
        ),
        (
            lambda: c.get_configuration(
                "2.0.1", keys=[{"component": "EVSE", "variable": "Power", "colour": "red"}]
            ),
            "{'component': 'EVSE', 'variable': 'Power', 'colour': 'red'}: unknown field(s) colour.",
        ),
        (lambda: c.set_configuration("2.0.1", values=[]), "Give at least one key and value."),
        (
            lambda: c.set_configuration("1.6", values=[("HeartbeatInterval", "9" * 501)]),
            "ChangeConfiguration (OCPP 1.6): value: data.value must be shorter than or equal to 500 characters",
        ),
        (
            lambda: c.trigger_message("2.0.1", message="TransactionEvent"),
            "Cannot trigger 'TransactionEvent'; triggerable on every version: BootNotification, Heartbeat, "
            "StatusNotification, MeterValues, FirmwareStatusNotification, DiagnosticsStatusNotification, "
            "LogStatusNotification.",
        ),
        (lambda: c.clear_cache("1.5"), "OCPP version '1.5' is not supported."),
    ],
)
def test_input_a_version_cannot_express_is_refused_with_a_message(call, message):
    with pytest.raises(ValidationFailed) as refused:
        call()
    assert refused.value.message == message


# --- answers of set_configuration's calls, per setting --------------------------------------------------


def test_set_configuration_statuses_on_1_6_follow_the_calls_in_order():
    values = [("A", "1"), ("B", "2"), ("C", "3")]
    statuses = c.set_configuration_statuses(
        "1.6", values=values, responses=[{"status": "Accepted"}, {"status": "RebootRequired"}]
    )
    assert statuses == ["Accepted", "RebootRequired", None]


def test_set_configuration_statuses_on_2_0_1_match_results_by_variable_not_position():
    values = [
        ("OCPPCommCtrlr.HeartbeatInterval", "60"),
        ({"component": "EVSE", "variable": "Power", "evse_id": 1, "attribute_type": "MaxSet"}, "11000"),
        ("AuthCtrlr.Enabled", "true"),
    ]
    response = {
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
        ]
    }
    statuses = c.set_configuration_statuses("2.0.1", values=values, responses=[response])
    assert statuses == ["Accepted", "Rejected", None]
    assert c.set_configuration_statuses("2.0.1", values=values, responses=[]) == [None, None, None]


# --- resolving operator input against the station -------------------------------------------------------


@pytest.fixture
def station_201(world):
    station = world.station_a1
    station.protocol = "ocpp2.0.1"
    station.save(update_fields=["protocol"])
    evse_1 = EvseFactory(station=station, evse_id=1)
    ConnectorFactory(evse=evse_1, connector_id=2)
    ConnectorFactory(evse=evse_1, connector_id=1)
    ConnectorFactory(evse=EvseFactory(station=station, evse_id=2), connector_id=1)
    return station


@pytest.mark.parametrize(
    ("connector_id", "expected"), [(1, Target(1, 1)), (2, Target(1, 2)), (3, Target(2, 1))]
)
def test_a_lone_connector_id_on_2_0_1_counts_the_stations_connectors_in_order(
    station_201, connector_id, expected
):
    assert target_resolve(station=station_201, evse_id=None, connector_id=connector_id) == expected


def test_a_lone_connector_id_beyond_the_stations_connectors_is_refused(station_201):
    with pytest.raises(ValidationFailed) as refused:
        target_resolve(station=station_201, evse_id=None, connector_id=4)
    assert refused.value.message == (
        "Station 'A1-CP1' reported 3 connector(s), so it has no connector 4: give evse_id and connector_id."
    )


def test_an_evse_id_is_taken_as_given(station_201):
    assert target_resolve(station=station_201, evse_id=7, connector_id=None) == Target(7, None)
    assert target_resolve(station=station_201, evse_id=2, connector_id=3) == Target(2, 3)
    assert target_resolve(station=station_201, evse_id=None, connector_id=None) == Target()


def test_a_lone_connector_id_on_1_6_is_the_connector_id(world):
    world.station_a1.protocol = "ocpp1.6"
    assert target_resolve(station=world.station_a1, evse_id=None, connector_id=3) == Target(3, 1)


def test_a_station_that_never_connected_has_no_version_to_build_for(world):
    world.station_a1.protocol = ""
    with pytest.raises(Conflict) as refused:
        station_version(world.station_a1)
    assert refused.value.message == "Station 'A1-CP1' has never connected: its OCPP version is not known yet."


def test_a_session_is_stopped_by_its_wire_transaction_id(world):
    session = ChargingSessionFactory(station=world.station_a1, transaction_id="1001")
    assert (
        session_transaction_id(user=world.operator_a, station=world.station_a1, session_id=session.pk)
        == "1001"
    )


def test_a_session_of_another_station_is_not_found(world):
    session = ChargingSessionFactory(station=world.station_a2, transaction_id="2001")
    with pytest.raises(NotFound) as missing:
        session_transaction_id(user=world.operator_a, station=world.station_a1, session_id=session.pk)
    assert missing.value.message == f"Session {session.pk} not found at station 'A1-CP1'."


def test_a_session_outside_the_users_scope_is_not_found(world):
    session = ChargingSessionFactory(station=world.station_b1, transaction_id="3001")
    with pytest.raises(NotFound) as missing:
        session_transaction_id(user=world.operator_a, station=world.station_b1, session_id=session.pk)
    assert missing.value.message == f"Session {session.pk} not found at station 'B1-CP1'."


def test_a_stopped_session_is_not_stopped_again(world):
    session = ChargingSessionFactory(station=world.station_a1, transaction_id="1001", status="completed")
    with pytest.raises(ValidationFailed) as refused:
        session_transaction_id(user=world.operator_a, station=world.station_a1, session_id=session.pk)
    assert refused.value.message == f"Session {session.pk} has already stopped."
