"""Configuration templates and configuration reads as OCPP calls, per protocol (for bulk jobs,
stations.services.jobs). The calls are the operations builders' (set_configuration, get_configuration).

A template's `settings`:
- OCPP 1.6: [{"key": "HeartbeatInterval", "value": "300"}, ...] -> one ChangeConfiguration per key;
- OCPP 2.0.1 / 2.1: [{"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval", "value": "300",
  optional "attributeType", "componentInstance", "variableInstance", "evseId", "connectorId"}, ...]
  -> one SetVariables with every setting.
"""

from typing import Any

from cpms.errors import ValidationFailed
from cpms.ocpp_wire.actions import version_of
from cpms.ocpp_wire.calls import new_request_id
from cpms.ocpp_wire.operations import get_configuration, set_configuration

V201_KEYS = {
    "component",
    "variable",
    "value",
    "attributeType",
    "componentInstance",
    "variableInstance",
    "evseId",
    "connectorId",
}
# A 2.0.1 template also fits 2.1 stations (same device model messages).
PROTOCOLS_OF = {"ocpp1.6": ("ocpp1.6",), "ocpp2.0.1": ("ocpp2.0.1", "ocpp2.1"), "ocpp2.1": ("ocpp2.1",)}


def template_calls(*, protocol: str, settings: list[Any]) -> dict[str, list[list[Any]]]:
    """station protocol -> [[action, payload], ...]; ValidationFailed with the reason for a bad template."""
    if not isinstance(settings, list) or not settings:
        raise ValidationFailed("settings: a non-empty list of settings.")
    if protocol == "ocpp1.6":
        values: list[tuple[str | dict[str, Any], str]] = [
            _v16_setting(i, setting) for i, setting in enumerate(settings)
        ]
    else:
        values = [_v201_setting(i, setting) for i, setting in enumerate(settings)]
    try:
        calls = set_configuration(version_of(protocol), values=values)
    except ValidationFailed as exc:
        raise ValidationFailed(f"settings: the call would be invalid: {exc.message}") from None
    return {station_protocol: [list(call) for call in calls] for station_protocol in PROTOCOLS_OF[protocol]}


def _v16_setting(index: int, setting: Any) -> tuple[str | dict[str, Any], str]:
    if not isinstance(setting, dict) or set(setting) != {"key", "value"}:
        raise ValidationFailed(f"settings[{index}]: an object with exactly 'key' and 'value'.")
    return str(setting["key"]), str(setting["value"])


def _v201_setting(index: int, setting: Any) -> tuple[str | dict[str, Any], str]:
    """A template setting as set_configuration's (variable reference, value)."""
    if not isinstance(setting, dict) or not {"component", "variable", "value"} <= set(setting):
        raise ValidationFailed(f"settings[{index}]: 'component', 'variable' and 'value' are required.")
    unknown = sorted(set(setting) - V201_KEYS)
    if unknown:
        raise ValidationFailed(f"settings[{index}]: unknown fields {', '.join(unknown)}.")
    ref = {
        "component": str(setting["component"]),
        "variable": str(setting["variable"]),
        "component_instance": str(setting.get("componentInstance") or ""),
        "variable_instance": str(setting.get("variableInstance") or ""),
        "attribute_type": setting.get("attributeType") or "Actual",
    }
    if setting.get("evseId") is not None:
        ref["evse_id"] = setting["evseId"]
        # A connector is numbered within its EVSE: a template's connectorId without evseId is ignored.
        if setting.get("connectorId") is not None:
            ref["connector_id"] = setting["connectorId"]
    return ref, str(setting["value"])


def read_configuration_calls() -> dict[str, list[list[Any]]]:
    """Read every station's configuration into the database: 1.6 GetConfiguration (the answer is stored by
    its answer hook), 2.0.1 GetBaseReport FullInventory (the report arrives as NotifyReport messages)."""
    request_id = new_request_id()
    report = [list(get_configuration("2.0.1", request_id=request_id))]
    return {
        "ocpp1.6": [list(get_configuration("1.6"))],
        "ocpp2.0.1": report,
        "ocpp2.1": [list(get_configuration("2.1", request_id=request_id))],
    }
