"""Security events that chargers report (SecurityEventNotification, OCPP 1.6 security whitepaper section 8 and
OCPP 2.0.1 A04), kept in the security log with their severity; the critical ones open an incident.

Which events are critical is the specification's list, not ours, and it differs by version: the 1.6 whitepaper
marks FirmwareUpdated, SettingSystemTime, StartupOfTheDevice, ResetOrReboot, SecurityLogWasCleared,
MemoryExhaustion and TamperDetectionActivated; the 2.0.1 appendix ("Security events") adds the invalid
firmware-signature, certificate and TLS events and the maintenance logins. A charger sends the critical ones
to the CSMS (it may send others too): both are stored, only the critical ones alert.

`SecurityEvent` has no severity column yet, so the severity is written into `detail`:
"<type> at <timestamp> (critical|not critical): <techInfo>". A notification delivered twice (the charger
did not get our answer and retries; OCPP-J sends it again after a reconnect) has the same type and timestamp:
the second changes nothing.
"""

import logging
from datetime import datetime

from django.db import transaction

from stations.enums import SecurityEventKind
from stations.models import ChargingStation, SecurityEvent
from stations.services.incidents import incident_from_security_event
from stations.types import IncidentOpened

logger = logging.getLogger(__name__)

# OCPP 1.6 Security Whitepaper (edition 3+), section 8 "Security events": the events marked critical.
CRITICAL_V16 = frozenset(
    {
        "FirmwareUpdated",
        "SettingSystemTime",
        "StartupOfTheDevice",
        "ResetOrReboot",
        "SecurityLogWasCleared",
        "MemoryExhaustion",
        "TamperDetectionActivated",
    }
)
# OCPP 2.0.1 Part 2 Appendices, "Security events": the events marked critical. Not critical there:
# FailedToAuthenticateAtCsms, CsmsFailedToAuthenticate, ReconfigurationOfSecurityParameters, InvalidMessages,
# AttemptedReplayAttacks.
CRITICAL_V201 = CRITICAL_V16 | frozenset(
    {
        "InvalidFirmwareSignature",
        "InvalidFirmwareSigningCertificate",
        "InvalidCsmsCertificate",
        "InvalidChargingStationCertificate",
        "InvalidTLSVersion",
        "InvalidTLSCipherSuite",
        "MaintenanceLoginAccepted",
        "MaintenanceLoginFailed",
    }
)
CRITICAL = {"1.6": CRITICAL_V16, "2.0.1": CRITICAL_V201}
CRITICAL_LABEL = "critical"
NOT_CRITICAL_LABEL = "not critical"


def security_event_is_critical(*, event_type: str, version: str) -> bool:
    """Whether the version's security event list marks `event_type` critical (an unknown type is not: a
    vendor's own event has no severity in the specification). `version` is "1.6" or "2.0.1"; 2.1 keeps
    2.0.1's list."""
    return event_type in CRITICAL.get(version, CRITICAL_V201)


def _detail(*, event_type: str, timestamp: str, critical: bool, tech_info: str) -> str:
    label = CRITICAL_LABEL if critical else NOT_CRITICAL_LABEL
    return f"{event_type} at {timestamp} ({label}): {tech_info}"


@transaction.atomic
def security_event_report(
    *,
    station_id: int,
    version: str,
    event_type: str,
    timestamp: str,
    occurred_at: datetime,
    tech_info: str,
    received_at: datetime,
) -> tuple[IncidentOpened, ...]:
    """A charger's SecurityEventNotification: kept in the security log with its severity; a critical one
    opens an `event` incident for the whole station (code = the event type), whose alert is due.

    `timestamp` is the wire value (the duplicate key with `event_type`), `occurred_at` its parsed time.
    A duplicate (same station, type and timestamp) records and opens nothing. At most one `event` incident is
    open per place (incidents.py): a critical event while one is open is logged but opens no second one."""
    # The station row lock orders two deliveries of the same notification (two connections of one charger
    # during a takeover): the second sees the first's row.
    station = ChargingStation.objects.select_for_update().only("pk", "identity").get(pk=station_id)
    event_type = event_type[:50]
    critical = security_event_is_critical(event_type=event_type, version=version)
    key = f"{event_type} at {timestamp} ("
    if SecurityEvent.objects.filter(
        station_id=station_id, kind=SecurityEventKind.CHARGER_REPORTED, detail__startswith=key
    ).exists():
        return ()
    SecurityEvent.objects.create(
        station_id=station_id,
        identity=station.identity[:100],
        kind=SecurityEventKind.CHARGER_REPORTED,
        detail=_detail(event_type=event_type, timestamp=timestamp, critical=critical, tech_info=tech_info)[
            :500
        ],
    )
    if not critical:
        return ()
    logger.warning("critical security event %s reported by %s", event_type, station.identity)
    incident = incident_from_security_event(
        station_id=station_id,
        event_type=event_type,
        tech_info=tech_info,
        occurred_at=occurred_at,
        received_at=received_at,
    )
    if incident is None:
        return ()
    return (IncidentOpened(station_id=station_id, incident_id=incident.pk),)
