"""Configuration templates and configuration reads as OCPP calls, per protocol (for bulk jobs,
stations.services.jobs).

A template's `settings`:
- OCPP 1.6: [{"key": "HeartbeatInterval", "value": "300"}, ...] -> one ChangeConfiguration per key;
- OCPP 2.0.1 / 2.1: [{"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval", "value": "300",
  optional "attributeType", "componentInstance", "variableInstance", "evseId", "connectorId"}, ...]
  -> one SetVariables with every setting.
"""

import secrets

from cpms.errors import ValidationFailed
from cpms.ocpp import actions
from cpms.ocpp.errors import OcppError

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


def template_calls(*, protocol: str, settings: list) -> dict[str, list[list]]:
    """station protocol -> [[action, payload], ...]; ValidationFailed with the reason for a bad template."""
    if not isinstance(settings, list) or not settings:
        raise ValidationFailed("settings: a non-empty list of settings.")
    if protocol == "ocpp1.6":
        calls = [["ChangeConfiguration", _v16_setting(i, setting)] for i, setting in enumerate(settings)]
    else:
        calls = [["SetVariables", {"setVariableData": [_v201_setting(i, s) for i, s in enumerate(settings)]}]]
    for action, payload in calls:
        try:
            actions.request_validate(protocol=protocol, action=action, payload=payload)
        except OcppError as exc:
            raise ValidationFailed(f"settings: {action} would be invalid: {exc.description}") from None
    return {station_protocol: calls for station_protocol in PROTOCOLS_OF[protocol]}


def _v16_setting(index: int, setting) -> dict:
    if not isinstance(setting, dict) or set(setting) != {"key", "value"}:
        raise ValidationFailed(f"settings[{index}]: an object with exactly 'key' and 'value'.")
    return {"key": str(setting["key"]), "value": str(setting["value"])}


def _v201_setting(index: int, setting) -> dict:
    if not isinstance(setting, dict) or not {"component", "variable", "value"} <= set(setting):
        raise ValidationFailed(f"settings[{index}]: 'component', 'variable' and 'value' are required.")
    unknown = sorted(set(setting) - V201_KEYS)
    if unknown:
        raise ValidationFailed(f"settings[{index}]: unknown fields {', '.join(unknown)}.")
    component: dict = {"name": str(setting["component"])}
    if setting.get("componentInstance"):
        component["instance"] = str(setting["componentInstance"])
    if setting.get("evseId") is not None:
        component["evse"] = {"id": setting["evseId"]}
        if setting.get("connectorId") is not None:
            component["evse"]["connectorId"] = setting["connectorId"]
    variable: dict = {"name": str(setting["variable"])}
    if setting.get("variableInstance"):
        variable["instance"] = str(setting["variableInstance"])
    data = {"attributeValue": str(setting["value"]), "component": component, "variable": variable}
    if setting.get("attributeType"):
        data["attributeType"] = setting["attributeType"]
    return data


def read_configuration_calls() -> dict[str, list[list]]:
    """Read every station's configuration into the database: 1.6 GetConfiguration (the answer is stored by
    its answer hook), 2.0.1 GetBaseReport FullInventory (the report arrives as NotifyReport messages)."""
    request_id = secrets.randbelow(2**31 - 1) + 1
    report = [["GetBaseReport", {"requestId": request_id, "reportBase": "FullInventory"}]]
    return {"ocpp1.6": [["GetConfiguration", {}]], "ocpp2.0.1": report, "ocpp2.1": report}
