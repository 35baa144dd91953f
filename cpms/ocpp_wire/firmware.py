"""Firmware updates and diagnostics/log uploads on the wire: the request each OCPP version expects.

The services (stations.services.firmware) take these builders as arguments: they decide what to send and
record what happened, the builders only know how each version spells it. Every payload is checked against
the version's request schema before it is recorded, so a value that cannot go on the wire (a signature
longer than 800 characters, an unknown protocol) is a 400 for the caller, not a CALLERROR from the charger.
"""

from datetime import datetime

from cpms.errors import ValidationFailed
from cpms.ocpp import schemas
from cpms.ocpp.actions import CSMS_ACTIONS, version_of
from cpms.ocpp.errors import OcppError
from cpms.ocpp.mappers import format_datetime
from stations.enums import UploadKind
from stations.services.commands import AnswerHook

HOOKS: dict[tuple[str, str], AnswerHook] = {}
"""What an answered command means for the domain: per (version, action), a hook that runs in the
transaction recording the answer (stations.services.commands.command_finish). Each builder module keeps
the hooks of its own actions.

Firmware and upload commands need none: the service that sent the command reads the outcome from the
Command record (the durable one) and applies it, and a campaign run that was interrupted reads it again
from there on its next delivery."""


def _checked(protocol: str, action: str, payload: dict) -> tuple[str, dict]:
    version = version_of(protocol)
    if action not in CSMS_ACTIONS.get(version, ()):
        raise ValidationFailed(f"{action} is not an action of OCPP {version}.")
    try:
        schemas.validate(version, schemas.request_schema(version, action), payload)
    except OcppError as exc:
        raise ValidationFailed(f"{action} ({protocol}): {exc.description}") from None
    return action, payload


def _version(protocol: str) -> str:
    version = version_of(protocol)
    if version not in CSMS_ACTIONS:
        # A station that never connected has no protocol yet: nobody knows how to speak to it.
        raise ValidationFailed(
            f"The station's OCPP version is not known ({protocol or 'never connected'}); it is learnt at "
            "the first connection."
        )
    return version


def firmware_update_request(
    *,
    protocol: str,
    request_id: int,
    location: str,
    retrieve_at: datetime,
    signature: str = "",
    signing_certificate: str = "",
) -> tuple[str, dict]:
    """(action, payload) of a firmware update for a station speaking `protocol` ("ocpp1.6", ...).

    - 1.6 with a signature and its certificate: SignedUpdateFirmware (1.6 Security Whitepaper, L01), which
      carries `requestId`; otherwise the 1.6 core UpdateFirmware, which has none (the status notifications
      of that update carry none either).
    - 2.0.1 / 2.1: UpdateFirmware with `requestId` and the signature fields when the firmware has them
      (2.0.1 L01.FR.11: a station that requires signed firmware refuses an update without them).
    """
    version = _version(protocol)
    retrieve = format_datetime(retrieve_at)
    if version == "1.6":
        if signature and signing_certificate:
            firmware = {
                "location": location,
                "retrieveDateTime": retrieve,
                "signingCertificate": signing_certificate,
                "signature": signature,
            }
            return _checked(protocol, "SignedUpdateFirmware", {"requestId": request_id, "firmware": firmware})
        return _checked(protocol, "UpdateFirmware", {"location": location, "retrieveDate": retrieve})
    firmware = {"location": location, "retrieveDateTime": retrieve}
    if signing_certificate:
        firmware["signingCertificate"] = signing_certificate
    if signature:
        firmware["signature"] = signature
    return _checked(protocol, "UpdateFirmware", {"requestId": request_id, "firmware": firmware})


def diagnostics_request(
    *,
    protocol: str,
    kind: str,
    request_id: int,
    location: str,
    log_type: str = "DiagnosticsLog",
    oldest: datetime | None = None,
    latest: datetime | None = None,
) -> tuple[str, dict]:
    """(action, payload) asking the station to upload diagnostics or a log to `location`.

    - kind "diagnostics": 1.6 GetDiagnostics (Firmware Management profile), which has no requestId; 2.0.1
      has no such message (its GetLog replaces it).
    - kind "log": GetLog, of 2.0.1/2.1 and of the 1.6 Security Whitepaper (same shape: logType, requestId,
      log{remoteLocation, oldestTimestamp, latestTimestamp}).
    """
    version = _version(protocol)
    if kind == UploadKind.DIAGNOSTICS:
        if version != "1.6":
            raise ValidationFailed(
                f"GetDiagnostics is an OCPP 1.6 message; ask an OCPP {version} station for kind 'log'."
            )
        payload: dict = {"location": location}
        if oldest is not None:
            payload["startTime"] = format_datetime(oldest)
        if latest is not None:
            payload["stopTime"] = format_datetime(latest)
        return _checked(protocol, "GetDiagnostics", payload)
    log: dict = {"remoteLocation": location}
    if oldest is not None:
        log["oldestTimestamp"] = format_datetime(oldest)
    if latest is not None:
        log["latestTimestamp"] = format_datetime(latest)
    return _checked(protocol, "GetLog", {"logType": log_type, "requestId": request_id, "log": log})
