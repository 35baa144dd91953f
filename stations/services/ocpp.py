"""What chargers report about themselves: connection, boot, heartbeat, status, notifications.

Called from the OCPP interface layer inside a worker thread; each function is one transaction and returns
plain values. Nothing here knows which OCPP version a charger speaks.
"""

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, models, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organisation
from stations.enums import (
    ConnectorStatus,
    IncidentKind,
    RegistrationStatus,
    SecurityEventKind,
    StationEventKind,
)
from stations.models import (
    ChargingStation,
    Connector,
    Evse,
    Incident,
    SecurityEvent,
    StationEvent,
    StatusChange,
)
from stations.services.credentials import password_hash_make
from stations.services.incidents import (
    FAULTED,
    NO_ERROR,
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


_AUTH_FIELDS = (
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


def station_auth_get(*, identity: str) -> StationAuth | None:
    """The station as the handshake needs it, in one query."""
    row = ChargingStation.objects.filter(identity=identity).only(*_AUTH_FIELDS).first()
    return _auth(row) if row else None


def station_auths_get(*, identities: Iterable[str]) -> dict[str, StationAuth]:
    """station_auth_get for many identities in one query (the handshakes of a reconnect storm,
    cpms/ocpp/admission.py). An unknown identity is missing from the result: the caller decides on
    auto-registration as for station_auth_get's None."""
    wanted = set(identities)
    if not wanted:
        return {}
    rows = ChargingStation.objects.filter(identity__in=wanted).only(*_AUTH_FIELDS).order_by()
    return {row.identity: _auth(row) for row in rows}


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


@dataclass(frozen=True, slots=True)
class StationConnection:
    """station_connected's arguments, one item of stations_connected."""

    station_id: int
    connection_id: str
    protocol: str
    at: datetime


@dataclass(frozen=True, slots=True)
class StationDisconnection:
    """station_disconnected's arguments, one item of stations_disconnected."""

    station_id: int
    connection_id: str
    at: datetime
    reason: str = ""


def _stations_locked(station_ids: Iterable[int], *fields: str) -> dict[int, list[Any]]:
    """`fields` of these stations, their rows locked in pk order: another process's batch locks in the same
    order, so two batches that share stations wait for each other instead of deadlocking."""
    rows = (
        ChargingStation.objects.select_for_update()
        .filter(pk__in=set(station_ids))
        .order_by("pk")
        .values_list("pk", *fields)
    )
    return {pk: list(values) for pk, *values in rows}


@transaction.atomic
def stations_connected(*, items: Sequence[StationConnection]) -> list[tuple[StationConnected] | Exception]:
    """station_connected for many connections in one transaction of a few statements (the handshakes of a
    reconnect storm, cpms/ocpp/admission.py): the rows and the result of each item are those of
    station_connected called for each in turn, in `items`' order. So of two connections of one station the
    newest names the station, whatever their order (station_connected's newest-connection rule), each has
    its CONNECTED event, and an open offline incident is resolved at the first connection that came after
    it began. An item whose station does not exist gets ChargingStation.DoesNotExist (station_connected
    would fail at its commit on the event's foreign key)."""
    stations = _stations_locked((item.station_id for item in items), "connected_at", "is_connected")
    results: list[tuple[StationConnected] | Exception] = []
    newest: dict[int, StationConnection] = {}
    events: list[StationEvent] = []
    for item in items:
        state = stations.get(item.station_id)
        if state is None:
            results.append(ChargingStation.DoesNotExist(f"no station with pk {item.station_id}"))
            continue
        connected_at, is_connected = state
        if connected_at is None or connected_at <= item.at or not is_connected:
            stations[item.station_id] = [item.at, True]
            newest[item.station_id] = item
        events.append(
            StationEvent(
                station_id=item.station_id,
                kind=StationEventKind.CONNECTED,
                detail={"protocol": item.protocol},
                occurred_at=item.at,
                received_at=item.at,
            )
        )
        results.append((StationConnected(station_id=item.station_id, at=item.at),))
    _rows_update(
        ChargingStation,
        ("is_connected", "connection_id", "protocol", "connected_at", "last_seen_at"),
        [(i.station_id, True, i.connection_id, i.protocol, i.at, i.at) for i in newest.values()],
    )
    StationEvent.objects.bulk_create(events)
    _offline_incidents_resolve([(item.station_id, item.at) for item in items if item.station_id in stations])
    return results


def _offline_incidents_resolve(connections: list[tuple[int, datetime]]) -> None:
    """incident_offline_resolve for each (station, connected at) in turn, in two statements. Caller holds
    the transaction and the stations' row locks."""
    if not connections:
        return
    open_incidents: dict[int, tuple[int, datetime]] = {
        station_id: (pk, occurred_at)
        for pk, station_id, occurred_at in Incident.objects.select_for_update()
        .filter(
            station_id__in={station_id for station_id, _at in connections},
            kind=IncidentKind.OFFLINE,
            evse_id=0,
            connector_id=0,
            resolved_at__isnull=True,
        )
        .order_by("pk")
        .values_list("pk", "station_id", "occurred_at")
    }
    resolved: list[tuple[Any, ...]] = []
    for station_id, at in connections:
        incident = open_incidents.get(station_id)
        # An incident that began after the connection stays open (_incidents_resolve_reported).
        if incident is not None and incident[1] <= at:
            resolved.append((incident[0], at, True, None))
            del open_incidents[station_id]
    _rows_update(Incident, ("resolved_at", "resolved_remotely", "resolved_by"), resolved)


@transaction.atomic
def stations_disconnected(
    *, items: Sequence[StationDisconnection]
) -> list[tuple[StationDisconnected, ...] | Exception]:
    """station_disconnected for many closes in one transaction of a few statements: each item's result and
    rows are those of station_disconnected called for each in turn. A close whose connection is no longer
    the station's (a newer one took over) changes nothing and gets ()."""
    current = _stations_locked((item.station_id for item in items), "connection_id")
    results: list[tuple[StationDisconnected, ...] | Exception] = []
    offline: set[int] = set()
    events: list[StationEvent] = []
    for item in items:
        state = current.get(item.station_id)
        if state is None or state[0] != item.connection_id:
            results.append(())
            continue
        state[0] = ""
        offline.add(item.station_id)
        events.append(
            StationEvent(
                station_id=item.station_id,
                kind=StationEventKind.DISCONNECTED,
                detail={"reason": item.reason},
                occurred_at=item.at,
                received_at=item.at,
            )
        )
        results.append((StationDisconnected(station_id=item.station_id, at=item.at),))
    if offline:
        ChargingStation.objects.filter(pk__in=offline).update(is_connected=False, connection_id="")
    StationEvent.objects.bulk_create(events)
    return results


def _rows_update(model: type[models.Model], fields: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Set `fields` of each row, given as (pk, *values), in one UPDATE ... FROM UNNEST(arrays) on PostgreSQL
    (one array per column: Django's bulk_update builds a CASE per field and row, and a VALUES list a
    placeholder per value, both costly in CPU for hundreds of rows); one UPDATE per row elsewhere."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        for pk, *values in rows:
            model._default_manager.filter(pk=pk).update(**dict(zip(fields, values, strict=True)))
        return
    meta = model._meta
    columns = [cast("models.Field[Any, Any]", meta.get_field(name)) for name in fields]
    # Arrays of the base type: a cast to varchar(n) would cut a value that is too long, where the
    # single-row UPDATE refuses it.
    types = [
        re.sub(r"\(.*\)", "", str(db_type))
        for db_type in [meta.pk.rel_db_type(connection), *(column.db_type(connection) for column in columns)]
    ]
    names = ["id", *(str(column.column) for column in columns)]
    assignments = ", ".join(f"{name} = v.{name}" for name in names[1:])
    arrays = ", ".join(f"%s::{db_type}[]" for db_type in types)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {meta.db_table} AS t SET {assignments} "  # noqa: S608 (names from the model)
            f"FROM UNNEST({arrays}) AS v({', '.join(names)}) WHERE t.{meta.pk.column} = v.id",
            [list(column) for column in zip(*rows, strict=True)],
        )


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
def stations_boot(*, items: Sequence[Mapping[str, Any]]) -> list[BootResult | Exception]:
    """station_boot for many BootNotifications (each item: station_boot's keyword arguments) in one
    transaction of three statements: the rows and the result of each item are those of station_boot called
    for each in turn. An item whose station does not exist gets ChargingStation.DoesNotExist."""
    stations = _stations_locked(
        (item["station_id"] for item in items), "registration_status", "heartbeat_interval_s"
    )
    results: list[BootResult | Exception] = []
    now = timezone.now()
    written: dict[int, tuple[Any, ...]] = {}
    events: list[StationEvent] = []
    for item in items:
        station_id, info, received_at = item["station_id"], item["info"], item["received_at"]
        state = stations.get(station_id)
        if state is None:
            results.append(ChargingStation.DoesNotExist(f"no station with pk {station_id}"))
            continue
        registration_status, heartbeat_interval_s = state
        accepted = registration_status == RegistrationStatus.ACCEPTED
        if accepted:
            heartbeat_interval_s = state[1] = settings.OCPP_HEARTBEAT_INTERVAL_S
        # Of two boots of one station in a batch the later one's values stay, as in turn.
        written[station_id] = (
            station_id,
            info.vendor,
            info.model,
            info.serial_number,
            info.firmware_version,
            info.iccid,
            info.imsi,
            info.meter_type,
            info.meter_serial_number,
            received_at,
            received_at,
            heartbeat_interval_s,
            now,  # station_boot saves the whole row, which sets updated_at
        )
        events.append(
            StationEvent(
                station_id=station_id,
                kind=StationEventKind.BOOT,
                detail={"vendor": info.vendor, "model": info.model, "firmware": info.firmware_version},
                occurred_at=received_at,
                received_at=received_at,
            )
        )
        results.append(
            BootResult(
                status=registration_status,
                interval_s=heartbeat_interval_s if accepted else PENDING_RETRY_INTERVAL_S,
                current_time=received_at,
                outcomes=(StationBooted(station_id=station_id),) if accepted else (),
            )
        )
    _rows_update(
        ChargingStation,
        (
            "vendor",
            "model",
            "serial_number",
            "firmware_version",
            "iccid",
            "imsi",
            "meter_type",
            "meter_serial_number",
            "last_boot_at",
            "last_seen_at",
            "heartbeat_interval_s",
            "updated_at",
        ),
        list(written.values()),
    )
    StationEvent.objects.bulk_create(events)
    return results


@transaction.atomic
def connector_statuses_update(
    *, items: Sequence[Mapping[str, Any]]
) -> list[tuple[StatusReported | IncidentOpened, ...] | Exception]:
    """connector_status_update for many StatusNotifications (each item: its keyword arguments, station_id
    and report) in one transaction: the rows and the result of each item are those of
    connector_status_update called for each in turn.

    The common case, a healthy status of a known connector or of the station, is written set-wise (a few
    statements for the batch). A station with an item that opens a fault incident or names a connector not
    stored yet has all its items of the batch go through connector_status_update, in order, each in a
    savepoint: one that fails gets its exception, the others commit."""
    station_ids = {item["station_id"] for item in items}
    # Connectors locked in pk order, so two batches that share them wait rather than deadlock.
    rows = (
        Connector.objects.select_for_update(of=("self",))
        .filter(evse__station_id__in=station_ids)
        .order_by("pk")
        .values_list("evse__station_id", "evse__evse_id", "connector_id", "pk", "status_changed_at")
    )
    connectors = {(station_id, evse, number): (pk, at) for station_id, evse, number, pk, at in rows}
    careful: set[int] = set()
    for item in items:
        report = item["report"]
        known = report.evse_id is None or (
            (item["station_id"], report.evse_id, report.connector_id or 1) in connectors
        )
        if not known or report.status == FAULTED or report.error_code not in NO_ERROR:
            careful.add(item["station_id"])
    simple = [index for index, item in enumerate(items) if item["station_id"] not in careful]
    results: list[Any] = [None] * len(items)
    station_rows: dict[int, tuple[Any, ...]] = {}
    newest: dict[int, tuple[datetime, ConnectorStatusReport]] = {}
    changes: list[StatusChange] = []
    places: list[tuple[int, int, int, datetime]] = []
    for index in simple:
        station_id, report = items[index]["station_id"], items[index]["report"]
        if report.evse_id is None:
            station_rows[station_id] = (station_id, report.status, report.error_code, report.received_at)
            places.append((station_id, 0, 0, min(report.occurred_at, report.received_at)))
        else:
            pk, stored_at = connectors[(station_id, report.evse_id, report.connector_id or 1)]
            # In turn, each moves the status forward in the charger's time (never back past the stored one):
            # the newest stays, the last of equal times.
            if (stored_at is None or stored_at <= report.occurred_at) and (
                pk not in newest or newest[pk][0] <= report.occurred_at
            ):
                newest[pk] = (report.occurred_at, report)
            places.append(
                (
                    station_id,
                    report.evse_id,
                    report.connector_id or 1,
                    min(report.occurred_at, report.received_at),
                )
            )
        changes.append(_status_change(station_id, report))
        results[index] = (StatusReported(station_id=station_id, report=report),)
    if station_rows:
        _stations_locked(station_rows)
        _rows_update(ChargingStation, ("status", "error_code", "last_seen_at"), list(station_rows.values()))
    _rows_update(
        Connector,
        ("status", "error_code", "status_changed_at"),
        [(pk, report.status, report.error_code, at) for pk, (at, report) in sorted(newest.items())],
    )
    StatusChange.objects.bulk_create(changes)
    _fault_incidents_resolve(places)
    # In station order (rows locked in pk order), each station's items in their order.
    careful_items = sorted(
        (index for index, item in enumerate(items) if item["station_id"] in careful),
        key=lambda index: items[index]["station_id"],
    )
    for index in careful_items:
        try:
            with transaction.atomic():
                results[index] = connector_status_update(**items[index])
        except Exception as exc:
            if _connection_failed(exc):
                raise
            results[index] = exc
    return results


def _status_change(station_id: int, report: ConnectorStatusReport) -> StatusChange:
    return StatusChange(
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


def _fault_incidents_resolve(places: list[tuple[int, int, int, datetime]]) -> None:
    """incident_from_status's resolution for each healthy report (station, evse, connector, its time) in
    turn: the open fault incident of that place that began at or before it is resolved at its time."""
    if not places:
        return
    open_incidents: dict[tuple[int, int, int], tuple[int, datetime]] = {
        (station_id, evse_id, connector_id): (pk, occurred_at)
        for pk, station_id, evse_id, connector_id, occurred_at in Incident.objects.select_for_update()
        .filter(
            station_id__in={place[0] for place in places}, kind=IncidentKind.FAULT, resolved_at__isnull=True
        )
        .order_by("pk")
        .values_list("pk", "station_id", "evse_id", "connector_id", "occurred_at")
    }
    resolved: list[tuple[Any, ...]] = []
    for station_id, evse_id, connector_id, at in places:
        incident = open_incidents.get((station_id, evse_id, connector_id))
        if incident is not None and incident[1] <= at:
            resolved.append((incident[0], at, True, None))
            del open_incidents[(station_id, evse_id, connector_id)]
    _rows_update(Incident, ("resolved_at", "resolved_remotely", "resolved_by"), resolved)


def _connection_failed(exc: Exception) -> bool:
    """The database connection itself failed (not a value it refused): the whole batch must fail."""
    return isinstance(exc, OperationalError | InterfaceError)


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
