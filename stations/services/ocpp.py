"""What chargers report about themselves: connection, boot, heartbeat, status, notifications.

Called from the OCPP interface layer inside a worker thread; each function is one transaction and returns
plain values. Nothing here knows which OCPP version a charger speaks.
"""

import logging
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organisation
from stations.enums import ConnectorStatus, RegistrationStatus, SecurityEventKind, StationEventKind
from stations.models import (
    ChargingStation,
    Connector,
    Evse,
    SecurityEvent,
    StationEvent,
    StatusChange,
)
from stations.services.credentials import password_hash_make
from stations.services.incidents import (
    incident_from_status,
    incident_offline_resolve,
    incidents_from_notify_event,
)
from stations.types import (
    BootResult,
    ConnectorStatusReport,
    IncidentOpened,
    StationAuth,
    StationBooted,
    StationConnected,
    StationDisconnected,
    StationInfo,
    StatusReported,
)

logger = logging.getLogger(__name__)

# A Pending station retries its BootNotification at this interval (seconds).
PENDING_RETRY_INTERVAL_S = 60


def _auth(station: ChargingStation) -> StationAuth:
    return StationAuth(
        station_id=station.pk,
        identity=station.identity,
        organisation_id=station.organisation_id,
        registration_status=station.registration_status,
        security_profile=station.security_profile,
        password_hash=station.password_hash,
        site_id=station.site_id,
        pending_password_hash=station.pending_password_hash,
        security_profile_seen=station.security_profile_seen,
    )


def station_auth_get(*, identity: str) -> StationAuth | None:
    """The station as the handshake needs it, in one query."""
    row = (
        ChargingStation.objects.filter(identity=identity)
        .only(
            "pk",
            "identity",
            "organisation_id",
            "registration_status",
            "security_profile",
            "security_profile_seen",
            "password_hash",
            "pending_password_hash",
            "site_id",
        )
        .first()
    )
    return _auth(row) if row else None


@transaction.atomic
def station_auto_register(*, identity: str, password: str | None) -> StationAuth | None:
    """Create an unknown station as Pending, if exactly one organisation has auto-registration on.

    With several such organisations the identity alone cannot say whose charger it is, so we refuse.
    A password presented at this first connection becomes the station's password (trust on first use);
    the operator reviews the station before accepting it.
    """
    organisations = list(
        Organisation.objects.filter(auto_register_stations=True).values_list("pk", flat=True)[:2]
    )
    if len(organisations) != 1:
        return None
    station, _created = ChargingStation.objects.get_or_create(
        identity=identity,
        defaults={
            "organisation_id": organisations[0],
            "registration_status": RegistrationStatus.PENDING,
            "security_profile": 1 if password else 0,
            "password_hash": password_hash_make(password) if password else "",
        },
    )
    return _auth(station)


def security_event_record(
    *, identity: str, kind: str, detail: str = "", remote_addr: str = "", station_id: int | None = None
) -> None:
    SecurityEvent.objects.create(
        station_id=station_id,
        identity=identity[:100],
        kind=kind,
        detail=detail[:500],
        remote_addr=remote_addr[:64],
    )
    logger.warning("security event %s for identity %r from %s: %s", kind, identity[:100], remote_addr, detail)


def security_events_recent_count(*, identity: str, remote_addr: str, since: datetime) -> int:
    """Failed handshakes for this identity or from this address since `since` (throttling,
    docs/reliability.md case 7)."""
    return SecurityEvent.objects.filter(
        Q(identity=identity[:100]) | Q(remote_addr=remote_addr[:64]),
        kind__in=[SecurityEventKind.AUTH_FAILED, SecurityEventKind.UNKNOWN_IDENTITY],
        created_at__gte=since,
    ).count()


@transaction.atomic
def station_connected(
    *, station_id: int, connection_id: str, protocol: str, at: datetime
) -> tuple[StationConnected]:
    """The station's new connection, and the resolution of its offline incident.

    The station row names the newest connection: a connection whose write arrives after a newer one's (two
    processes, a slow database thread) does not replace it, so the row agrees with the superseded rule (the
    older connection closes, docs/reliability.md case 6) and the older one's disconnect, guarded by its
    connection_id, never marks the live one offline."""
    ChargingStation.objects.filter(
        Q(connected_at__isnull=True) | Q(connected_at__lte=at) | Q(is_connected=False), pk=station_id
    ).update(
        is_connected=True, connection_id=connection_id, protocol=protocol, connected_at=at, last_seen_at=at
    )
    StationEvent.objects.create(
        station_id=station_id,
        kind=StationEventKind.CONNECTED,
        detail={"protocol": protocol},
        occurred_at=at,
        received_at=at,
    )
    incident_offline_resolve(station_id=station_id, at=at)
    return (StationConnected(station_id=station_id, at=at),)


@transaction.atomic
def station_disconnected(
    *, station_id: int, connection_id: str, at: datetime, reason: str = ""
) -> tuple[StationDisconnected, ...]:
    """Mark the station offline, unless a newer connection already took over (then return ())."""
    updated = ChargingStation.objects.filter(pk=station_id, connection_id=connection_id).update(
        is_connected=False, connection_id=""
    )
    if updated:
        StationEvent.objects.create(
            station_id=station_id,
            kind=StationEventKind.DISCONNECTED,
            detail={"reason": reason},
            occurred_at=at,
            received_at=at,
        )
    return (StationDisconnected(station_id=station_id, at=at),) if updated == 1 else ()


def station_seen(*, station_id: int, at: datetime) -> None:
    ChargingStation.objects.filter(pk=station_id).update(last_seen_at=at)


def stations_seen(*, seen: Mapping[int, datetime]) -> int:
    """Last-seen times of many stations in a few statements (a web process's batch, cpms/ocpp/seen.py): one
    UPDATE per whole second among the times, never moving a station's time backwards. Returns rows written."""
    by_second: dict[datetime, list[int]] = defaultdict(list)
    for station_id, at in seen.items():
        by_second[at.replace(microsecond=0)].append(station_id)
    written = 0
    for at, station_ids in sorted(by_second.items()):
        written += ChargingStation.objects.filter(
            Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=at), pk__in=station_ids
        ).update(last_seen_at=at)
    return written


def stations_mark_silent_offline(*, now: datetime | None = None) -> int:
    """Stations that claim to be connected but have sent nothing for too long are offline
    (docs/reliability.md case 33).

    The WebSocket ping normally notices a dead peer first; this catches a server process that died
    without running its disconnect handlers.
    """
    now = now or timezone.now()
    factor = settings.OCPP_OFFLINE_AFTER_HEARTBEATS
    marked = 0
    candidates = ChargingStation.objects.filter(is_connected=True).values_list(
        "pk", "heartbeat_interval_s", "last_seen_at"
    )
    for pk, interval, last_seen in candidates.iterator():
        if last_seen is None or last_seen < now - timedelta(seconds=interval * factor):
            with transaction.atomic():
                updated = ChargingStation.objects.filter(
                    pk=pk, is_connected=True, last_seen_at=last_seen
                ).update(is_connected=False, connection_id="")
                if updated:
                    # Recorded like any disconnect: what follows a station going offline (the live status a
                    # roaming partner is sent, the history) reads these events.
                    StationEvent.objects.create(
                        station_id=pk,
                        kind=StationEventKind.DISCONNECTED,
                        detail={"reason": "silent"},
                        occurred_at=now,
                        received_at=now,
                    )
            marked += updated
    return marked


@transaction.atomic
def station_boot(*, station_id: int, info: StationInfo, received_at: datetime) -> BootResult:
    """BootNotification: record what the charger says it is; answer with its registration status."""
    station = ChargingStation.objects.select_for_update().get(pk=station_id)
    station.vendor = info.vendor
    station.model = info.model
    station.serial_number = info.serial_number
    station.firmware_version = info.firmware_version
    station.iccid = info.iccid
    station.imsi = info.imsi
    station.meter_type = info.meter_type
    station.meter_serial_number = info.meter_serial_number
    station.last_boot_at = received_at
    station.last_seen_at = received_at
    if station.registration_status == RegistrationStatus.ACCEPTED:
        station.heartbeat_interval_s = settings.OCPP_HEARTBEAT_INTERVAL_S
        interval = station.heartbeat_interval_s
    else:
        interval = PENDING_RETRY_INTERVAL_S
    station.save()
    StationEvent.objects.create(
        station_id=station_id,
        kind=StationEventKind.BOOT,
        detail={"vendor": info.vendor, "model": info.model, "firmware": info.firmware_version},
        occurred_at=received_at,
        received_at=received_at,
    )
    accepted = station.registration_status == RegistrationStatus.ACCEPTED
    return BootResult(
        status=station.registration_status,
        interval_s=interval,
        current_time=received_at,
        outcomes=(StationBooted(station_id=station_id),) if accepted else (),
    )


def _connector_for(station_id: int, evse_id: int, connector_id: int) -> Connector:
    evse, _ = Evse.objects.get_or_create(station_id=station_id, evse_id=evse_id)
    connector, _ = Connector.objects.get_or_create(evse=evse, connector_id=connector_id)
    return connector


def connector_resolve(*, station_id: int, evse_id: int, connector_id: int) -> tuple[int, int]:
    """(evse pk, connector pk) for wire ids, creating the rows on first sight (chargers report their own
    layout; an operator need not enter it first)."""
    connector = _connector_for(station_id, evse_id, connector_id)
    return connector.evse_id, connector.pk


@transaction.atomic
def connector_status_update(
    *, station_id: int, report: ConnectorStatusReport
) -> tuple[StatusReported | IncidentOpened, ...]:
    """StatusNotification: the current status on the connector (or station) and one history row, and the
    fault incident it opens or resolves. IncidentOpened follows StatusReported when it opened one."""
    if report.evse_id is None:
        ChargingStation.objects.filter(pk=station_id).update(
            status=report.status, error_code=report.error_code, last_seen_at=report.received_at
        )
    else:
        connector = _connector_for(station_id, report.evse_id, report.connector_id or 1)
        # Only move the current status forward in the charger's time: a late, queued notification goes
        # into the history but does not overwrite a newer status.
        Connector.objects.filter(pk=connector.pk).filter(
            Q(status_changed_at__isnull=True) | Q(status_changed_at__lte=report.occurred_at)
        ).update(status=report.status, error_code=report.error_code, status_changed_at=report.occurred_at)
    StatusChange.objects.create(
        station_id=station_id,
        evse_id=report.evse_id,
        connector_id=report.connector_id if report.evse_id is not None else None,
        status=report.status if report.status in ConnectorStatus.values else ConnectorStatus.UNKNOWN,
        error_code=report.error_code,
        info=report.info,
        vendor_id=report.vendor_id,
        vendor_error_code=report.vendor_error_code,
        occurred_at=report.occurred_at,
        received_at=report.received_at,
    )
    reported = StatusReported(station_id=station_id, report=report)
    incident = incident_from_status(station_id=station_id, report=report)
    if incident is None:
        return (reported,)
    return (reported, IncidentOpened(station_id=station_id, incident_id=incident.pk))


@transaction.atomic
def station_event_record(
    *,
    station_id: int,
    kind: str,
    detail: dict[str, Any],
    occurred_at: datetime,
    received_at: datetime,
    status_field: str | None = None,
    status: str = "",
) -> None:
    """Keep a notification (DataTransfer, firmware/diagnostics status); optionally mirror a status field.

    Firmware, diagnostics and log status notifications also move the status of the firmware update or
    upload they report on (by `requestId` in the payload when it has one: 2.0.1, signed 1.6, GetLog)."""
    from stations.enums import UploadKind
    from stations.services.firmware import firmware_status_record, upload_status_record

    StationEvent.objects.create(
        station_id=station_id, kind=kind, detail=detail, occurred_at=occurred_at, received_at=received_at
    )
    if status_field in {"firmware_status", "diagnostics_status"}:
        ChargingStation.objects.filter(pk=station_id).update(**{status_field: status[:50]})
    request_id = detail.get("requestId") if isinstance(detail, dict) else None
    request_id = request_id if isinstance(request_id, int) and not isinstance(request_id, bool) else None
    if kind == StationEventKind.FIRMWARE_STATUS:
        firmware_status_record(station_id=station_id, status=status, request_id=request_id)
    elif kind == StationEventKind.DIAGNOSTICS_STATUS:
        upload_status_record(
            station_id=station_id, kind=UploadKind.DIAGNOSTICS, status=status, request_id=request_id
        )
    elif kind == StationEventKind.LOG_STATUS:
        upload_status_record(station_id=station_id, kind=UploadKind.LOG, status=status, request_id=request_id)
    elif kind == StationEventKind.NOTIFY_EVENT:
        incidents_from_notify_event(station_id=station_id, payload=detail, received_at=received_at)
