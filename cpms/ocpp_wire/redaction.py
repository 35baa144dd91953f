"""The secrets a CSMS may send a charger, and a call's payload with them masked (for logs, the audit and the
command history)."""

from typing import Any

# Secrets a CSMS may send a charger: shown and logged masked; the Command row keeps the real value only
# until the command is finished (the outbox needs it to send).
REDACTED = "********"
SECRET_CONFIGURATION_KEYS = frozenset({"AuthorizationKey"})  # 1.6 security profile 1/2 password
SECRET_VARIABLES = frozenset({"BasicAuthPassword"})  # 2.0.1 SecurityCtrlr
SECRET_NETWORK_FIELDS = {"apn": ("apnPassword",), "vpn": ("password", "key")}


def request_redacted(action: str, request: Any) -> Any:
    """`request` with the secrets in it masked (a copy; the same object when there are none)."""
    if not isinstance(request, dict):
        return request
    if action == "ChangeConfiguration" and request.get("key") in SECRET_CONFIGURATION_KEYS:
        return {**request, "value": REDACTED}
    if action == "SetVariables" and isinstance(request.get("setVariableData"), list):
        items = request["setVariableData"]
        if any(_secret_variable(item) for item in items):
            masked = [
                {**item, "attributeValue": REDACTED} if _secret_variable(item) else item for item in items
            ]
            return {**request, "setVariableData": masked}
    if action == "SetNetworkProfile" and isinstance(request.get("connectionData"), dict):
        data = dict(request["connectionData"])
        changed = False
        for part, fields in SECRET_NETWORK_FIELDS.items():
            if isinstance(data.get(part), dict) and any(f in data[part] for f in fields):
                data[part] = {k: (REDACTED if k in fields else v) for k, v in data[part].items()}
                changed = True
        if changed:
            return {**request, "connectionData": data}
    return request


def _secret_variable(item: Any) -> bool:
    return isinstance(item, dict) and (item.get("variable") or {}).get("name") in SECRET_VARIABLES
