"""A CSMS-initiated OCPP call, and the one check every builder's output passes before anyone records it."""

import secrets
from typing import Any, NamedTuple

from cpms.errors import ValidationFailed
from cpms.ocpp_wire import schemas
from cpms.ocpp_wire.actions import CSMS_ACTIONS
from cpms.ocpp_wire.errors import OcppError

# Schema versions we build for; 2.1 is built like 2.0.1.
VERSIONS = ("1.6", "2.0.1", "2.1")

# Answers that mean the charger now holds the value it was sent (RebootRequired: stored, in effect after the
# next reboot; 1.6 ChangeConfiguration.conf and 2.0.1 SetVariableStatusEnumType alike).
SET_APPLIED = frozenset({"Accepted", "RebootRequired"})


class Call(NamedTuple):
    """One OCPP call: the action and its payload, exactly as on the wire."""

    action: str
    payload: dict[str, Any]


def call_checked(version: str, call: Call) -> Call:
    """`call` if `version` is one we speak, the CSMS may send `call.action` in it and the payload matches the
    official request schema; else ValidationFailed (a 400 for the caller, not a CALLERROR from the charger)."""
    version_checked(version)
    if call.action not in CSMS_ACTIONS[version]:
        raise ValidationFailed(f"{call.action} is not an action of OCPP {version}.")
    try:
        schemas.validate(version, schemas.request_schema(version, call.action), call.payload)
    except OcppError as exc:
        raise ValidationFailed(f"{call.action} (OCPP {version}): {exc.description}") from None
    return call


def version_checked(version: str) -> str:
    if version not in VERSIONS:
        raise ValidationFailed(f"OCPP version {version!r} is not supported.")
    return version


def new_request_id() -> int:
    """A request id of ours (2.0.1 remoteStartId, GetBaseReport requestId): a random positive 31-bit integer.

    It only has to tell this station's concurrent requests apart (the charger echoes it in TransactionEvent /
    NotifyReport). Random needs no counter shared across server processes and no database round trip; two
    requests to one station collide with probability 2**-31.
    """
    return secrets.randbelow(2**31 - 1) + 1
