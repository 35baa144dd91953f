"""Incidents: problems that take a station or EVSE out of service, from detection to resolution, and the alert
emails about them.

What opens and resolves an incident (docs/operations.md, "Incidents and alerts"):
- `fault`: a StatusNotification with status Faulted or an error code (1.6 errorCode other than NoError) opens
  one for its place (station = EVSE 0, or EVSE/connector); a later report of the same place that is neither
  faulted nor carries an error code resolves it (remotely, by the station).
- `event`: an OCPP 2.0.1 NotifyEvent item reporting `Problem` = true (trigger Alerting or Delta), or an Alerting
  item with a techCode, opens one for the item's EVSE; the same component/variable reporting Problem = false
  or `cleared` resolves it.
- `event` also: a SecurityEventNotification whose type the version's security event list marks critical
  opens one for the whole station (code = the type); operators resolve it.
- `offline`: a station that is not connected and has been silent for INCIDENT_OFFLINE_AFTER_S (a periodic
  job); its next connection resolves it.
Operators acknowledge and resolve incidents by hand (recording whether a site visit was needed).

Times: `occurred_at` is the charger's timestamp (or the moment an offline station was last heard from),
`detected_at` when the CPMS raised the incident. A charger clock running ahead of ours would put `occurred_at`
after `detected_at`; such a timestamp is taken as the time we received the report, so MTTD is never negative
and a resolution at "now" is never before the problem began.

The hooks (`incident_*_from_*`, `incident_offline_resolve`) are called from stations/services/ocpp.py inside
the transaction of the report that triggers them. At most one incident of a kind is open per place: the
partial unique constraint `incident_one_open_per_place` decides between concurrent openers.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from guardian.shortcuts import get_users_with_perms

from accounts.enums import Capability, Role
from accounts.models import Membership, User
from cpms.errors import Conflict, PermissionDenied, ValidationFailed
from stations.enums import IncidentKind, RegistrationStatus, StationEventKind
from stations.models import ChargingStation, Incident, StationEvent
from stations.scope import user_can
from stations.types import ConnectorStatusReport

logger = logging.getLogger(__name__)

FAULTED = "Faulted"
NO_ERROR = frozenset({"", "NoError"})
# NotifyEvent triggers that report a change of state (Periodic reports are snapshots, not alerts).
EVENT_TRIGGERS = frozenset({"Alerting", "Delta"})
# Roles of an organisation that get the alert emails of all its sites.
ALERTED_ROLES = (Role.OPERATOR_ADMIN, Role.OPERATOR_STAFF, Role.SUPPORT)
NOTE_MAX = 500
NOTIFY_BATCH = 200


@dataclass(frozen=True, slots=True)
class Place:
    station_id: int
    kind: str
    evse_id: int
    connector_id: int

    def open_q(self) -> Q:
        return Q(
            station_id=self.station_id,
            kind=self.kind,
            evse_id=self.evse_id,
            connector_id=self.connector_id,
            resolved_at__isnull=True,
        )


def incident_state(incident: Incident) -> str:
    """ "open" (nobody acknowledged it yet), "acknowledged" (someone is on it) or "resolved"."""
    if incident.resolved_at is not None:
        return "resolved"
    return "acknowledged" if incident.acknowledged_at is not None else "open"


def _reported_time(occurred_at: datetime, received_at: datetime) -> datetime:
    """The charger's time of a report, but never after we received it (a clock running ahead)."""
    return min(occurred_at, received_at)


def _incident_open(
    *, place: Place, code: str, detail: str, occurred_at: datetime, detected_at: datetime
) -> Incident | None:
    """Open an incident at `place` unless one is open there already (then None). Caller is in a transaction.

    Race-safe: the insert runs in a savepoint, and a concurrent opener of the same place makes it fail on the
    partial unique constraint (PostgreSQL waits for the other transaction, then raises), which means
    "already open"."""
    if Incident.objects.filter(place.open_q()).exists():
        return None
    station = ChargingStation.objects.only("organisation_id", "site_id").get(pk=place.station_id)
    try:
        with transaction.atomic():
            return Incident.objects.create(
                organisation_id=station.organisation_id,
                site_id=station.site_id,
                station_id=place.station_id,
                kind=place.kind,
                evse_id=place.evse_id,
                connector_id=place.connector_id,
                code=code[:64],
                detail=detail[:500],
                occurred_at=min(occurred_at, detected_at),
                detected_at=detected_at,
            )
    except IntegrityError:
        if Incident.objects.filter(place.open_q()).exists():
            return None
        raise


def _incidents_resolve_reported(*, place: Place, at: datetime, extra: Q | None = None) -> int:
    """Resolve the open incident at `place` as recovered by the station at `at` (its report's time). An
    incident that began after `at` is left open: the report is an old one delivered late."""
    qs = Incident.objects.filter(place.open_q(), occurred_at__lte=at)
    if extra is not None:
        qs = qs.filter(extra)
    return qs.update(resolved_at=at, resolved_remotely=True, resolved_by=None)


# --- hooks called by the OCPP services ------------------------------------------------------------------


def incident_from_status(*, station_id: int, report: ConnectorStatusReport) -> Incident | None:
    """A StatusNotification: open a fault incident for a faulted place, or resolve the open one when the
    place reports a healthy status. Returns the incident opened, if any. Caller holds the transaction."""
    if report.evse_id is None:
        evse_id, connector_id = 0, 0
    else:
        evse_id, connector_id = report.evse_id, report.connector_id or 1
    place = Place(station_id=station_id, kind=IncidentKind.FAULT, evse_id=evse_id, connector_id=connector_id)
    at = _reported_time(report.occurred_at, report.received_at)
    if report.status == FAULTED or report.error_code not in NO_ERROR:
        vendor = " ".join(part for part in (report.vendor_id, report.vendor_error_code) if part)
        detail = "; ".join(part for part in (report.info, f"vendor {vendor}" if vendor else "") if part)
        return _incident_open(
            place=place,
            code=report.error_code if report.error_code not in NO_ERROR else FAULTED,
            detail=detail,
            occurred_at=at,
            detected_at=report.received_at,
        )
    _incidents_resolve_reported(place=place, at=at)
    return None


def _event_time(value: object, received_at: datetime) -> datetime:
    if not isinstance(value, str):
        return received_at
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return received_at
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return _reported_time(parsed, received_at)


def _wire_int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _object(value: object) -> dict[str, Any]:
    """A JSON object of the payload, or an empty one for anything else."""
    return value if isinstance(value, dict) else {}


def incidents_from_notify_event(
    *, station_id: int, payload: dict[str, Any], received_at: datetime
) -> list[Incident]:
    """An OCPP 2.0.1 NotifyEvent: open an `event` incident per problem item, resolve on a cleared one.

    An item is a problem when its variable is `Problem` with actualValue "true" and trigger Alerting or
    Delta, or when it carries a techCode with trigger Alerting. It clears when the same component/variable
    reports Problem "false" or `cleared: true`. The place is the item's EVSE (0 = the station). The code is
    "<component>.<variable>" (the techCode when the variable is not Problem); `detail` starts with
    "<component>.<variable>", which is what a clearing item is matched on. Caller holds the transaction."""
    opened = []
    items = payload.get("eventData") if isinstance(payload, dict) else None
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        component = _object(item.get("component"))
        variable = _object(item.get("variable"))
        evse = _object(component.get("evse"))
        evse_id = _wire_int(evse.get("id"))
        connector_id = _wire_int(evse.get("connectorId")) if evse_id else 0
        key = f"{component.get('name', '')}.{variable.get('name', '')}"
        place = Place(
            station_id=station_id, kind=IncidentKind.EVENT, evse_id=evse_id, connector_id=connector_id
        )
        at = _event_time(item.get("timestamp"), received_at)
        is_problem = variable.get("name") == "Problem"
        value = str(item.get("actualValue", "")).strip().lower()
        trigger = item.get("trigger")
        tech_code = str(item.get("techCode") or "")
        if item.get("cleared") is True or (is_problem and value == "false"):
            _incidents_resolve_reported(
                place=place, at=at, extra=Q(detail=key) | Q(detail__startswith=f"{key}; ")
            )
        elif (is_problem and value == "true" and trigger in EVENT_TRIGGERS) or (
            tech_code and trigger == "Alerting"
        ):
            tech_info = str(item.get("techInfo") or "")
            detail = "; ".join(
                part for part in (key, f"techCode {tech_code}" if tech_code else "", tech_info) if part
            )
            incident = _incident_open(
                place=place,
                code=key if is_problem or not tech_code else tech_code,
                detail=detail,
                occurred_at=at,
                detected_at=received_at,
            )
            if incident is not None:
                opened.append(incident)
    return opened


def incident_from_security_event(
    *, station_id: int, event_type: str, tech_info: str, occurred_at: datetime, received_at: datetime
) -> Incident | None:
    """A critical security event (stations/services/security_events.py): open an `event` incident for the
    whole station, code = the event type. Nothing resolves it but an operator: the charger never reports a
    security event as over. Its detail starts with "Security event", never a NotifyEvent item's
    "<component>.<variable>" key, so no NotifyEvent clears it. Caller holds the transaction."""
    return _incident_open(
        place=Place(station_id=station_id, kind=IncidentKind.EVENT, evse_id=0, connector_id=0),
        code=event_type,
        detail="; ".join(part for part in (f"Security event {event_type}", tech_info) if part),
        occurred_at=_reported_time(occurred_at, received_at),
        detected_at=received_at,
    )


def incident_offline_resolve(*, station_id: int, at: datetime) -> int:
    """The station connected at `at`: its open offline incident is over. Caller holds the transaction."""
    place = Place(station_id=station_id, kind=IncidentKind.OFFLINE, evse_id=0, connector_id=0)
    return _incidents_resolve_reported(place=place, at=at)


def incidents_detect_offline(*, now: datetime) -> int:
    """Open an offline incident for every accepted station that was seen at least once, is not connected,
    has been silent for INCIDENT_OFFLINE_AFTER_S and has no open offline incident. Returns how many opened.

    The silence began at the later of its last disconnect and its last message (a station marked offline by
    the silence check has no disconnect event of its current connection). Each station is decided under its
    row lock, so a connection that comes in meanwhile (station_connected updates that row) either wins, and
    nothing is opened, or comes after, and resolves what was opened."""
    cutoff = now - timedelta(seconds=settings.INCIDENT_OFFLINE_AFTER_S)
    last_disconnect = (
        StationEvent.objects.filter(station_id=OuterRef("pk"), kind=StationEventKind.DISCONNECTED)
        .order_by("-occurred_at")
        .values("occurred_at")[:1]
    )
    open_offline = Incident.objects.filter(
        station_id=OuterRef("pk"), kind=IncidentKind.OFFLINE, resolved_at__isnull=True
    )
    candidates = (
        ChargingStation.objects.filter(
            is_connected=False,
            registration_status=RegistrationStatus.ACCEPTED,
            last_seen_at__isnull=False,
            last_seen_at__lte=cutoff,
        )
        .exclude(Exists(open_offline))
        .annotate(last_disconnect=Subquery(last_disconnect))
        .values_list("pk", "last_seen_at", "last_disconnect")
        .order_by("pk")
    )
    opened = 0
    for pk, last_seen, disconnected in candidates.iterator():
        if last_seen is None:  # excluded by the query
            continue
        silent_since = max(last_seen, disconnected) if disconnected else last_seen
        if silent_since > cutoff:
            continue
        with transaction.atomic():
            if not ChargingStation.objects.select_for_update().filter(pk=pk, is_connected=False).exists():
                continue
            incident = _incident_open(
                place=Place(station_id=pk, kind=IncidentKind.OFFLINE, evse_id=0, connector_id=0),
                code="Offline",
                detail=f"No connection since {silent_since.isoformat()}",
                occurred_at=silent_since,
                detected_at=now,
            )
            opened += incident is not None
    return opened


# --- operator actions -------------------------------------------------------------------------------------


def _require_command(*, actor: User, incident: Incident) -> None:
    if not user_can(
        user=actor,
        capability=Capability.COMMAND,
        organisation_id=incident.organisation_id,
        site_id=incident.site_id,
    ):
        raise PermissionDenied(f"You may not act on incident {incident.pk}.")


def _conflict(incident_id: int) -> Conflict:
    current = Incident.objects.filter(pk=incident_id).values("resolved_at", "acknowledged_at").first()
    if current is not None and current["resolved_at"] is not None:
        return Conflict(f"Incident {incident_id} is already resolved.")
    return Conflict(f"Incident {incident_id} is already acknowledged.")


@transaction.atomic
def incident_acknowledge(*, actor: User, incident: Incident) -> Incident:
    """Someone is on it. Needs COMMAND on the incident's station (site); Conflict once resolved or
    acknowledged (a conditional update: of two operators clicking at once, one wins)."""
    _require_command(actor=actor, incident=incident)
    updated = Incident.objects.filter(
        pk=incident.pk, resolved_at__isnull=True, acknowledged_at__isnull=True
    ).update(acknowledged_at=timezone.now(), acknowledged_by=actor)
    if updated != 1:
        raise _conflict(incident.pk)
    incident.refresh_from_db()
    return incident


@transaction.atomic
def incident_resolve(*, actor: User, incident: Incident, resolved_remotely: bool, note: str) -> Incident:
    """Close an incident by hand, saying whether it was fixed remotely (False = a site visit was needed).
    Needs COMMAND on the incident's station (site); Conflict when already resolved."""
    _require_command(actor=actor, incident=incident)
    if not isinstance(resolved_remotely, bool):
        raise ValidationFailed("resolved_remotely must be true or false.")
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise ValidationFailed(f"The note must be at most {NOTE_MAX} characters long.")
    now = timezone.now()
    updated = Incident.objects.filter(pk=incident.pk, resolved_at__isnull=True).update(
        # An incident cannot end before it began (incident_resolved_after), whatever the clocks say.
        resolved_at=max(now, incident.occurred_at),
        resolved_by=actor,
        resolved_remotely=resolved_remotely,
        resolution_note=note,
    )
    if updated != 1:
        raise Conflict(f"Incident {incident.pk} is already resolved.")
    incident.refresh_from_db()
    return incident


# --- alert emails -------------------------------------------------------------------------------------------


def incident_recipients(*, incident: Incident) -> list[str]:
    """Who is told about an incident: active users with an email address who are operator admins, operator
    staff or support of its organisation, and the site hosts (of that organisation) granted its site."""
    org_user_ids = set(
        Membership.objects.filter(
            organisation_id=incident.organisation_id, role__in=ALERTED_ROLES
        ).values_list("user_id", flat=True)
    )
    site = incident.site
    if site is not None:
        host_ids = set(
            Membership.objects.filter(
                organisation_id=incident.organisation_id, role=Role.SITE_HOST
            ).values_list("user_id", flat=True)
        )
        if host_ids:
            # A queryset of users (a dict only with attach_perms).
            granted = cast(
                QuerySet[User],
                get_users_with_perms(site, only_with_perms_in=["view_site"], with_group_users=False),
            ).filter(pk__in=host_ids)
            org_user_ids |= set(granted.values_list("pk", flat=True))
    emails = User.objects.filter(pk__in=org_user_ids, is_active=True).exclude(email="")
    return sorted(set(emails.values_list("email", flat=True)))


KIND_TITLES: dict[str, str] = {
    IncidentKind.FAULT: "Fault",
    IncidentKind.EVENT: "Problem",
    IncidentKind.OFFLINE: "Offline",
}


def incident_place_label(incident: Incident) -> str:
    """'connector 1/1' (EVSE/connector), 'EVSE 2', or '' for the whole station."""
    if not incident.evse_id:
        return ""
    if incident.connector_id:
        return f"connector {incident.evse_id}/{incident.connector_id}"
    return f"EVSE {incident.evse_id}"


def incident_subject(incident: Incident) -> str:
    """'[CPMS] Fault GroundFailure on A1-CP1 (A1) connector 1/1'."""
    title = KIND_TITLES.get(incident.kind, incident.kind)
    if incident.kind != IncidentKind.OFFLINE and incident.code:
        title = f"{title} {incident.code}"
    where = incident.station.identity
    if incident.site is not None:
        where = f"{where} ({incident.site.name})"
    place = incident_place_label(incident)
    return f"[CPMS] {title} on {where}{f' {place}' if place else ''}"


def _local(value: datetime | None, zone: ZoneInfo) -> str:
    if value is None:
        return "—"
    moment = value.astimezone(zone)
    return f"{moment:%d %b %Y, %H:%M:%S} {moment.tzname()}"


def incident_email_body(incident: Incident) -> str:
    time_zone = incident.site.time_zone if incident.site is not None else "UTC"
    try:
        zone = ZoneInfo(time_zone)
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    lines = [
        f"{incident.get_kind_display()} on station {incident.station.identity}"
        + (f" at site {incident.site.name}" if incident.site is not None else ""),
        "",
        f"Where:     {incident_place_label(incident) or 'the whole station'}",
        f"Code:      {incident.code or '—'}",
    ]
    if incident.detail:
        lines.append(f"Detail:    {incident.detail}")
    lines += [
        f"Occurred:  {_local(incident.occurred_at, zone)}",
        f"Detected:  {_local(incident.detected_at, zone)}",
    ]
    if incident.resolved_at is not None:
        lines.append(f"Resolved:  {_local(incident.resolved_at, zone)}")
    lines += ["", f"{settings.CPMS_PUBLIC_URL}/portal/incidents/{incident.pk}/", ""]
    return "\n".join(lines)


def incidents_notify_pending(*, now: datetime) -> int:
    """Send one alert email per incident not yet notified; returns how many emails went out.

    Each incident is claimed first (notified_at set by a conditional update), so two runs at once, or a rerun,
    send nothing twice. If sending fails the claim is released and the next run tries again."""
    sent = 0
    pending = list(
        Incident.objects.filter(notified_at__isnull=True)
        .select_related("station", "site")
        .order_by("pk")[:NOTIFY_BATCH]
    )
    for incident in pending:
        if Incident.objects.filter(pk=incident.pk, notified_at__isnull=True).update(notified_at=now) != 1:
            continue
        recipients = incident_recipients(incident=incident)
        if not recipients:
            continue
        try:
            send_mail(
                subject=incident_subject(incident),
                message=incident_email_body(incident),
                from_email=None,
                recipient_list=recipients,
            )
        except Exception:
            logger.exception("alert email for incident %s failed; the next run retries", incident.pk)
            Incident.objects.filter(pk=incident.pk, notified_at=now).update(notified_at=None)
            continue
        sent += 1
    return sent
