"""The builders of cpms.ocpp_wire as one table: every builder, for every version it speaks, builds a call
that passes the official request schema, and each (version, action) has exactly one builder."""

import inspect
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from cpms.errors import ValidationFailed
from cpms.ocpp_wire import actions, auth, costs, firmware, operations, schemas, smart_charging
from cpms.ocpp_wire.calls import VERSIONS, Call, call_checked
from cpms.ocpp_wire.operations import Target

WHEN = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# builder -> how to call it for a version (one call per way the builder may answer)
BUILDERS = {
    operations.remote_start: [lambda v: operations.remote_start(v, id_token="TAG", target=Target(1, 1))],
    operations.remote_stop: [lambda v: operations.remote_stop(v, transaction_id="42")],
    operations.reset: [lambda v: operations.reset(v, kind="hard")],
    operations.unlock: [lambda v: operations.unlock(v, target=Target(1, 1))],
    operations.change_availability: [lambda v: operations.change_availability(v, operative=False)],
    operations.get_configuration: [
        lambda v: operations.get_configuration(v),
        lambda v: operations.get_configuration(
            v, keys=["HeartbeatInterval" if v == "1.6" else "OCPPCommCtrlr.HeartbeatInterval"]
        ),
    ],
    operations.set_configuration: [
        lambda v: operations.set_configuration(
            v, values=[("HeartbeatInterval" if v == "1.6" else "OCPPCommCtrlr.HeartbeatInterval", "60")]
        )
    ],
    operations.trigger_message: [lambda v: operations.trigger_message(v, message="Heartbeat")],
    operations.clear_cache: [lambda v: operations.clear_cache(v)],
    operations.data_transfer: [lambda v: operations.data_transfer(v, vendor_id="cpms", data={"a": 1})],
    auth.reserve_now: [
        lambda v: auth.reserve_now(
            v, reservation_id=7, expires_at=WHEN, id_token="TAG", id_token_type="ISO14443", evse_id=1
        )
    ],
    auth.cancel_reservation: [lambda v: auth.cancel_reservation(v, reservation_id=7)],
    auth.send_local_list: [
        lambda v: auth.send_local_list(
            v,
            version_number=2,
            update_type="Full",
            items=[auth.LocalListItem("TAG", "ISO14443", "Accepted", WHEN, "GROUP", "Central")],
        )
    ],
    auth.get_local_list_version: [lambda v: auth.get_local_list_version(v)],
    firmware.firmware_update_request: [
        lambda v, signed=signed: firmware.firmware_update_request(
            protocol=f"ocpp{v}",
            request_id=3,
            location="https://cpms.example/fw.bin",
            retrieve_at=WHEN,
            signature="c2ln" if signed else "",
            signing_certificate="-----BEGIN CERTIFICATE-----" if signed else "",
        )
        for signed in (False, True)
    ],
    firmware.diagnostics_request: [
        lambda v, kind=kind: firmware.diagnostics_request(
            protocol=f"ocpp{v}", kind=kind, request_id=3, location="https://cpms.example/up/"
        )
        for kind in (firmware.DIAGNOSTICS, firmware.LOG)
    ],
    smart_charging.set_charging_profile: [
        lambda v: smart_charging.set_charging_profile(
            v, evse_number=1, limit_a=Decimal("16"), purpose="TxProfile", transaction_id="42"
        ),
        lambda v: smart_charging.set_charging_profile(
            v, evse_number=1, limit_a=Decimal("6.5"), purpose="TxDefaultProfile"
        ),
    ],
    smart_charging.get_composite_schedule: [
        lambda v: smart_charging.get_composite_schedule(v, evse_number=1, duration_s=60)
    ],
    costs.cost_updated: [lambda v: costs.cost_updated(v, total_cost=Decimal("1.25"), transaction_id="42")],
}


def _built() -> dict[tuple[str, str], set[str]]:
    """(version, action) -> the builders that built it."""
    built: dict[tuple[str, str], set[str]] = {}
    for builder, ways in BUILDERS.items():
        for version in VERSIONS:
            for way in ways:
                try:
                    result = way(version)
                except ValidationFailed:
                    continue  # the version has no such call (CostUpdated in 1.6, GetDiagnostics in 2.0.1)
                for call in result if isinstance(result, list) else [result]:
                    assert isinstance(call, Call)
                    schemas.validate(version, schemas.request_schema(version, call.action), call.payload)
                    assert call.action in actions.CSMS_ACTIONS[version]
                    built.setdefault((version, call.action), set()).add(builder.__qualname__)
    return built


def test_every_builder_of_the_wire_package_is_in_the_table():
    public = {
        function
        for module in (operations, auth, firmware, smart_charging, costs)
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if function.__module__ == module.__name__
        and not name.startswith("_")
        and inspect.signature(function).return_annotation in (Call, list[Call], "Call", "list[Call]")
    }
    assert public == set(BUILDERS)


def test_one_builder_per_action_and_version_and_every_call_is_schema_valid():
    built = _built()
    assert {key: names for key, names in built.items() if len(names) != 1} == {}
    # Each builder speaks every version it is meant for: the table covers what a CSMS sends.
    assert {version for version, _action in built} == set(VERSIONS)
    assert ("1.6", "SignedUpdateFirmware") in built and ("2.0.1", "GetBaseReport") in built
    assert ("1.6", "CostUpdated") not in built and ("2.0.1", "GetDiagnostics") not in built


@pytest.mark.parametrize(
    "version, call, message",
    [
        ("1.5", Call("ClearCache", {}), "OCPP version '1.5' is not supported."),
        ("1.6", Call("CostUpdated", {"totalCost": 1.0, "transactionId": "1"}), "not an action of OCPP 1.6"),
        ("2.0.1", Call("Reset", {"type": "Hard"}), "Reset (OCPP 2.0.1): type: data.type must be one of"),
    ],
)
def test_the_shared_check_refuses_what_the_version_cannot_carry(version, call, message):
    with pytest.raises(ValidationFailed) as refused:
        call_checked(version, call)
    assert message in refused.value.message
