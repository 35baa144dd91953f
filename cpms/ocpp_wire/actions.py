"""The actions a CSMS may send to a charging station, per OCPP version (the charger-initiated ones are the
handlers' business)."""

from typing import Any

from cpms.ocpp_wire import schemas
from cpms.ocpp_wire.errors import ErrorKind, OcppError

# OCPP 1.6J: Core, Firmware Management, Local Auth List Management, Reservation, Smart Charging, Remote
# Trigger, and the Improved Security whitepaper's extensions.
V16 = frozenset(
    {
        "CancelReservation",
        "CertificateSigned",
        "ChangeAvailability",
        "ChangeConfiguration",
        "ClearCache",
        "ClearChargingProfile",
        "DataTransfer",
        "DeleteCertificate",
        "ExtendedTriggerMessage",
        "GetCompositeSchedule",
        "GetConfiguration",
        "GetDiagnostics",
        "GetInstalledCertificateIds",
        "GetLocalListVersion",
        "GetLog",
        "InstallCertificate",
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        "ReserveNow",
        "Reset",
        "SendLocalList",
        "SetChargingProfile",
        "SignedUpdateFirmware",
        "TriggerMessage",
        "UnlockConnector",
        "UpdateFirmware",
    }
)

# OCPP 2.0.1 Part 2, messages sent by the CSMS.
V201 = frozenset(
    {
        "CancelReservation",
        "CertificateSigned",
        "ChangeAvailability",
        "ClearCache",
        "ClearChargingProfile",
        "ClearDisplayMessage",
        "ClearVariableMonitoring",
        "CostUpdated",
        "CustomerInformation",
        "DataTransfer",
        "DeleteCertificate",
        "GetBaseReport",
        "GetChargingProfiles",
        "GetCompositeSchedule",
        "GetDisplayMessages",
        "GetInstalledCertificateIds",
        "GetLocalListVersion",
        "GetLog",
        "GetMonitoringReport",
        "GetReport",
        "GetTransactionStatus",
        "GetVariables",
        "InstallCertificate",
        "PublishFirmware",
        "RequestStartTransaction",
        "RequestStopTransaction",
        "ReserveNow",
        "Reset",
        "SendLocalList",
        "SetChargingProfile",
        "SetDisplayMessage",
        "SetMonitoringBase",
        "SetMonitoringLevel",
        "SetNetworkProfile",
        "SetVariableMonitoring",
        "SetVariables",
        "TriggerMessage",
        "UnlockConnector",
        "UnpublishFirmware",
        "UpdateFirmware",
    }
)

CSMS_ACTIONS: dict[str, frozenset[str]] = {"1.6": V16, "2.0.1": V201, "2.1": V201}


def version_of(protocol: str) -> str:
    """ "ocpp2.0.1" (a station's protocol, the subprotocol) -> "2.0.1" (the schema version)."""
    return protocol.removeprefix("ocpp")


def request_validate(*, protocol: str, action: str, payload: Any) -> None:
    """Raise OcppError unless `action` is one the CSMS sends in this version and `payload` matches its
    request schema."""
    version = version_of(protocol)
    if action not in CSMS_ACTIONS.get(version, ()):
        raise OcppError(ErrorKind.NOT_SUPPORTED, f"{action} is not a CSMS-initiated action of OCPP {version}")
    if not isinstance(payload, dict):
        raise OcppError(ErrorKind.FORMAT, "the payload must be a JSON object")
    schemas.validate(version, schemas.request_schema(version, action), payload)


def response_validate(*, protocol: str, action: str, payload: Any) -> None:
    version = version_of(protocol)
    if not isinstance(payload, dict):
        raise OcppError(ErrorKind.FORMAT, "the payload must be a JSON object")
    schemas.validate(version, schemas.response_schema(action), payload)
