"""Firmware updates and diagnostics/log uploads on the wire: the request each OCPP version expects.

The services (stations.services.firmware) decide what to send and record what happened; the builders only
know how each version spells it. Every payload is checked against
the version's request schema before it is recorded, so a value that cannot go on the wire (a signature
longer than 800 characters, an unknown protocol) is a 400 for the caller, not a CALLERROR from the charger.
"""

from datetime import datetime
from typing import Any

from cpms.errors import ValidationFailed
from cpms.ocpp_wire.actions import CSMS_ACTIONS, version_of
from cpms.ocpp_wire.calls import Call, call_checked
from cpms.ocpp_wire.times import format_datetime

# What a station is asked to upload (stations.enums.UploadKind's values).
DIAGNOSTICS = "diagnostics"
LOG = "log"


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
) -> Call:
    """The call of a firmware update for a station speaking `protocol` ("ocpp1.6", ...).

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
            return call_checked(
                version, Call("SignedUpdateFirmware", {"requestId": request_id, "firmware": firmware})
            )
        return call_checked(version, Call("UpdateFirmware", {"location": location, "retrieveDate": retrieve}))
    firmware = {"location": location, "retrieveDateTime": retrieve}
    if signing_certificate:
        firmware["signingCertificate"] = signing_certificate
    if signature:
        firmware["signature"] = signature
    return call_checked(version, Call("UpdateFirmware", {"requestId": request_id, "firmware": firmware}))


def diagnostics_request(
    *,
    protocol: str,
    kind: str,
    request_id: int,
    location: str,
    log_type: str = "DiagnosticsLog",
    oldest: datetime | None = None,
    latest: datetime | None = None,
) -> Call:
    """The call asking the station to upload diagnostics or a log to `location`.

    - kind "diagnostics": 1.6 GetDiagnostics (Firmware Management profile), which has no requestId; 2.0.1
      has no such message (its GetLog replaces it).
    - kind "log": GetLog, of 2.0.1/2.1 and of the 1.6 Security Whitepaper (same shape: logType, requestId,
      log{remoteLocation, oldestTimestamp, latestTimestamp}).
    """
    version = _version(protocol)
    if kind == DIAGNOSTICS:
        if version != "1.6":
            raise ValidationFailed(
                f"GetDiagnostics is an OCPP 1.6 message; ask an OCPP {version} station for kind 'log'."
            )
        payload: dict[str, Any] = {"location": location}
        if oldest is not None:
            payload["startTime"] = format_datetime(oldest)
        if latest is not None:
            payload["stopTime"] = format_datetime(latest)
        return call_checked(version, Call("GetDiagnostics", payload))
    log: dict[str, Any] = {"remoteLocation": location}
    if oldest is not None:
        log["oldestTimestamp"] = format_datetime(oldest)
    if latest is not None:
        log["latestTimestamp"] = format_datetime(latest)
    return call_checked(version, Call("GetLog", {"logType": log_type, "requestId": request_id, "log": log}))
