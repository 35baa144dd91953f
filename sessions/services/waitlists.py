"""Waitlists for busy sites: a driver joins a site's queue with the token they will charge with; when a
connector frees up, the next in line is offered it for `settings.WAITLIST_HOLD_S` seconds (reserved over OCPP
where the charger supports it) and told by email.

Life of an entry (WaitlistStatus): waiting -> offered -> fulfilled (their token started a session at the site)
or expired (the offer ran out: the connector goes to the next in line); cancelled when they leave. Queue order
is (joined_at, id).

`waitlist_advance` is the one place entries move on their own. It is idempotent (run twice, it offers nothing
twice) and safe to run concurrently for the same site: it works under a lock on the site's open entries, and
every state change is a conditional UPDATE. It runs in three steps, the OCPP calls outside the lock:
1. in one transaction, under the lock: fulfil, expire, and offer free connectors to the first in line;
2. for each new offer at a charger that supports reservations, ReserveNow (the row must be committed before
   the call goes out: the answer is recorded by whichever process holds the charger). A charger that refuses,
   does not answer, or does not support reservations leaves the offer standing without a reservation;
3. email each offered driver not told yet (the entry is claimed by setting `notified_at` first, so two runs
   never send the same email; a failed send is released and retried by the next run).

ReserveNow and CancelReservation go out through the reservation services.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.enums import Capability
from accounts.models import User
from cpms.errors import Conflict, DomainError, PermissionDenied, ValidationFailed
from sessions.enums import IdTokenStatus, ReservationStatus
from sessions.models import (
    WAITLIST_OPEN_STATUSES,
    ChargingSession,
    IdToken,
    Reservation,
    WaitlistEntry,
    WaitlistStatus,
)
from sessions.services.reservations import (
    OPEN_STATUSES as RESERVATION_OPEN_STATUSES,
)
from sessions.services.reservations import (
    reservation_cancel,
    reservation_create,
)
from sessions.services.site_access import id_token_admitted_at_site
from sessions.services.tokens import id_token_status_at
from stations.enums import CommandSource, ConnectorStatus
from stations.models import ChargingStation, Connector, DeviceVariable, Site
from stations.scope import user_can
from stations.services.device_model import OCPP16_COMPONENT

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdvanceResult:
    fulfilled: int = 0
    expired: int = 0
    offered: int = 0
    reserved: int = 0  # offers the charger accepted a ReserveNow for
    notified: int = 0  # offer emails sent


# --- joining and leaving -------------------------------------------------------------------------------


def _can_command(actor: User, site: Site) -> None:
    if not user_can(
        user=actor, capability=Capability.COMMAND, organisation_id=site.organisation_id, site_id=site.pk
    ):
        raise PermissionDenied(f"You may not manage the waitlist of site {site.name!r}.")


def _token_resolve(site: Site, id_token: IdToken | int | str) -> IdToken:
    """The token named by an IdToken, its id (int) or its value (str), in the site's organisation."""
    tokens = IdToken.objects.select_related("group").filter(organisation_id=site.organisation_id)
    if isinstance(id_token, IdToken):
        token = tokens.filter(pk=id_token.pk).first()
    elif isinstance(id_token, int) and not isinstance(id_token, bool):
        token = tokens.filter(pk=id_token).first()
    elif isinstance(id_token, str):
        token = tokens.filter(value=id_token).first()
    else:
        raise ValidationFailed("id_token must be an id token id or value.")
    if token is None:
        name = id_token.value if isinstance(id_token, IdToken) else id_token
        raise ValidationFailed(f"Id token {name!r} not found in the site's organisation.")
    return token


def waitlist_join(
    *,
    actor: User,
    site: Site,
    id_token: IdToken | int | str,
    contact_email: str = "",
    now: datetime | None = None,
) -> WaitlistEntry:
    """Put a driver at the end of `site`'s queue. `id_token` is the token they will charge with (an IdToken,
    its id or its value; of the site's organisation, and Accepted); `contact_email` is where the offer goes
    (the token's owner email when empty). Needs the command right on the site. A token already waiting or
    offered at the site is a Conflict."""
    now = now or timezone.now()
    _can_command(actor, site)
    token = _token_resolve(site, id_token)
    status = id_token_status_at(token, now)
    if status != IdTokenStatus.ACCEPTED:
        raise ValidationFailed(f"Id token {token.value!r} may not charge ({status}).")
    if not id_token_admitted_at_site(site=site, token=token):
        raise ValidationFailed(
            f"Id token {token.value!r} may not charge at site {site.name!r} (NotAtThisLocation)."
        )
    email = (contact_email or "").strip() or token.owner_email
    if not email:
        raise ValidationFailed("A contact email is needed: the token has no owner email.")
    try:
        validate_email(email)
    except DjangoValidationError:
        raise ValidationFailed(f"{email!r} is not a valid email address.") from None
    try:
        with transaction.atomic():
            entry = WaitlistEntry.objects.create(
                site=site, id_token=token, contact_email=email, joined_at=now, created_by=actor
            )
    except IntegrityError:  # waitlist_one_open_entry_per_token
        raise Conflict(
            f"Id token {token.value!r} is already in the waitlist of site {site.name!r}: "
            "remove that entry first."
        ) from None
    return _reload(entry.pk)


def waitlist_leave(
    *,
    actor: User,
    entry: WaitlistEntry,
    cancel_reservation: bool = False,
    source: str = CommandSource.API,
    now: datetime | None = None,
) -> WaitlistEntry:
    """Take an entry out of the queue (cancelled). An offer's reservation is cancelled on the charger when
    `cancel_reservation` asks for it; if that fails the reservation runs out on its own at
    the offer's end. Needs the command right on the site; an entry no longer open is a Conflict."""
    now = now or timezone.now()
    _can_command(actor, entry.site)
    left = WaitlistEntry.objects.filter(pk=entry.pk, status__in=WAITLIST_OPEN_STATUSES).update(
        status=WaitlistStatus.CANCELLED, closed_at=now
    )
    if left != 1:
        current = WaitlistEntry.objects.filter(pk=entry.pk).values_list("status", flat=True).first()
        raise Conflict(f"Waitlist entry {entry.pk} is {current}: it is no longer in the queue.")
    reservation = (
        Reservation.objects.select_related("station", "id_token")
        .filter(pk=entry.reservation_id, status__in=RESERVATION_OPEN_STATUSES)
        .first()
        if entry.reservation_id
        else None
    )
    if reservation is not None and cancel_reservation:
        try:
            reservation_cancel(actor=actor, reservation=reservation, source=source)
        except DomainError as exc:
            logger.info("waitlist entry %s left; its reservation stays until it expires: %s", entry.pk, exc)
    return _reload(entry.pk)


def _reload(pk: int) -> WaitlistEntry:
    return WaitlistEntry.objects.select_related(
        "site", "id_token", "offered_station", "offered_evse", "offered_connector", "reservation"
    ).get(pk=pk)


# --- advancing the queue -------------------------------------------------------------------------------


def station_supports_reservations(station: ChargingStation) -> bool:
    """Whether the charger said it holds reservations: 1.6 configuration key SupportedFeatureProfiles lists
    "Reservation"; 2.0.1 device model ReservationCtrlr.Enabled is true. Unknown (never read): no."""
    variables = DeviceVariable.objects.filter(station=station, attribute_type="Actual")
    if station.protocol == "ocpp1.6":
        value = (
            variables.filter(component=OCPP16_COMPONENT, variable="SupportedFeatureProfiles")
            .values_list("value", flat=True)
            .first()
        )
        return value is not None and "reservation" in {part.strip().lower() for part in value.split(",")}
    value = (
        variables.filter(component="ReservationCtrlr", component_instance="", variable="Enabled", evse_id=0)
        .values_list("value", flat=True)
        .first()
    )
    return value is not None and value.strip().lower() == "true"


def waitlist_advance(*, site_id: int, now: datetime | None = None) -> AdvanceResult:
    """Move `site_id`'s queue on (see the module docstring): fulfil offers whose token started a session at the
    site since the offer (and waiting entries whose token started one since joining), expire offers past their
    time (their reservation, held on the charger until the same instant, is closed too) and tell the driver,
    offer each free connector (Available, station connected, not reserved, not offered; one per EVSE) to the
    next in line, reserve it where the charger supports reservations, and email the offers."""
    now = now or timezone.now()
    hold = timedelta(seconds=settings.WAITLIST_HOLD_S)
    with transaction.atomic():
        entries = list(
            WaitlistEntry.objects.select_for_update()
            .filter(site_id=site_id, status__in=WAITLIST_OPEN_STATUSES)
            .order_by("pk")
        )
        if not entries:
            return AdvanceResult()
        fulfilled = _fulfil(site_id, entries, now)
        expired = _expire(entries, now, fulfilled)
        waiting = sorted(
            (e for e in entries if e.status == WaitlistStatus.WAITING and e.pk not in fulfilled),
            key=lambda e: (e.joined_at, e.pk),
        )
        offers = []
        for entry, connector in zip(waiting, _free_connectors(site_id, now), strict=False):
            moved = WaitlistEntry.objects.filter(pk=entry.pk, status=WaitlistStatus.WAITING).update(
                status=WaitlistStatus.OFFERED,
                offered_at=now,
                offer_expires_at=now + hold,
                offered_station_id=connector.evse.station_id,
                offered_evse_id=connector.evse_id,
                offered_connector_id=connector.pk,
                notified_at=None,
            )
            if moved == 1:
                offers.append((entry.pk, connector))
    reserved = sum(_reserve(entry_id, connector, now + hold, now) for entry_id, connector in offers)
    for entry_id in expired:
        _send_expired(entry_id)
    notified = _notify_offers(site_id, now)
    return AdvanceResult(
        fulfilled=len(fulfilled),
        expired=len(expired),
        offered=len(offers),
        reserved=reserved,
        notified=notified,
    )


def _offered_at(entry: WaitlistEntry) -> datetime:
    """When an offered entry was offered (set with the offer)."""
    assert entry.offered_at is not None
    return entry.offered_at


def _offer_expires_at(entry: WaitlistEntry) -> datetime:
    """When an offer (made or past) runs out (set with the offer)."""
    assert entry.offer_expires_at is not None
    return entry.offer_expires_at


def _fulfil(site_id: int, entries: list[WaitlistEntry], now: datetime) -> set[int]:
    """Entries whose token started a session at the site since the offer (offered) or since joining
    (waiting: a driver who found a connector on their own is served). Returns their ids."""
    since = {e.pk: _offered_at(e) if e.status == WaitlistStatus.OFFERED else e.joined_at for e in entries}
    starts: dict[int, list[datetime]] = {}
    rows = ChargingSession.objects.filter(
        station__site_id=site_id,
        id_token_id__in={e.id_token_id for e in entries},
        started_at__gte=min(since.values()),
    ).values_list("id_token_id", "started_at")
    for token_id, started_at in rows:
        starts.setdefault(token_id, []).append(started_at)
    done = set()
    for entry in entries:
        if any(started >= since[entry.pk] for started in starts.get(entry.id_token_id, ())):
            moved = WaitlistEntry.objects.filter(pk=entry.pk, status=entry.status).update(
                status=WaitlistStatus.FULFILLED, closed_at=now
            )
            if moved == 1:
                done.add(entry.pk)
    return done


def _expire(entries: list[WaitlistEntry], now: datetime, fulfilled: set[int]) -> list[int]:
    """Offers past offer_expires_at -> expired. Their reservation was made until the same instant, so the
    charger has dropped it itself (1.6 ReserveNow expiryDate, 2.0.1 expiryDateTime): it is closed here as
    expired rather than cancelled over the wire. Returns the expired entries' ids."""
    expired = []
    for entry in entries:
        if entry.status != WaitlistStatus.OFFERED or entry.pk in fulfilled or _offer_expires_at(entry) > now:
            continue
        moved = WaitlistEntry.objects.filter(pk=entry.pk, status=WaitlistStatus.OFFERED).update(
            status=WaitlistStatus.EXPIRED, closed_at=now
        )
        if moved != 1:
            continue
        expired.append(entry.pk)
        if entry.reservation_id:
            Reservation.objects.filter(
                pk=entry.reservation_id, status__in=RESERVATION_OPEN_STATUSES, expires_at__lte=now
            ).update(status=ReservationStatus.EXPIRED, updated_at=now)
    return expired


def _free_connectors(site_id: int, now: datetime) -> list[Connector]:
    """The site's connectors a driver could use now, at most one per EVSE (an EVSE charges one car at a time),
    in a stable order: Available, station connected, not held by an open reservation (of the connector, its
    EVSE, or any connector of its station) and not offered to anyone. The caller holds the site's lock."""
    offered = WaitlistEntry.objects.filter(site_id=site_id, status=WaitlistStatus.OFFERED)
    busy_evses = set(offered.values_list("offered_evse_id", flat=True))
    busy_connectors = set(offered.values_list("offered_connector_id", flat=True))
    reservations = Reservation.objects.filter(
        station__site_id=site_id, status__in=RESERVATION_OPEN_STATUSES, expires_at__gt=now
    ).values_list("station_id", "evse_id", "connector_id")
    reserved_stations: set[int] = set()
    reserved_evses: set[int] = set()
    reserved_connectors: set[int] = set()
    for station_id, evse_id, connector_id in reservations:
        if connector_id is not None:
            reserved_connectors.add(connector_id)
        elif evse_id is not None:
            reserved_evses.add(evse_id)
        else:
            reserved_stations.add(station_id)
    candidates = (
        Connector.objects.filter(
            evse__station__site_id=site_id,
            evse__station__is_connected=True,
            status=ConnectorStatus.AVAILABLE,
        )
        .exclude(Q(pk__in=busy_connectors | reserved_connectors) | Q(evse_id__in=busy_evses | reserved_evses))
        .exclude(evse__station_id__in=reserved_stations)
        .select_related("evse__station__site")
        .order_by("evse__station__identity", "evse__evse_id", "connector_id")
    )
    free, seen_evses = [], set()
    for connector in candidates:
        if connector.evse_id not in seen_evses:
            seen_evses.add(connector.evse_id)
            free.append(connector)
    return free


def _reserve(entry_id: int, connector: Connector, expires_at: datetime, now: datetime) -> bool:
    """ReserveNow for a new offer where the charger supports it; the reservation (whatever the charger said) is
    linked to the entry. True if the charger accepted it. Any refusal leaves the offer standing."""
    station = ChargingStation.objects.get(pk=connector.evse.station_id)
    if not station_supports_reservations(station):
        return False
    entry = WaitlistEntry.objects.filter(pk=entry_id, status=WaitlistStatus.OFFERED).first()
    if entry is None:  # left or fulfilled meanwhile
        return False
    try:
        reservation = reservation_create(
            actor=None,
            station=station,
            id_token_id=entry.id_token_id,
            expires_at=expires_at,
            evse_id=connector.evse.evse_id,
            connector_id=connector.connector_id,
            source=CommandSource.SYSTEM,
            now=now,
        )
    except DomainError as exc:
        logger.info("waitlist offer %s stands without a reservation: %s", entry_id, exc)
        return False
    WaitlistEntry.objects.filter(pk=entry_id, reservation__isnull=True).update(reservation=reservation)
    return reservation.status == ReservationStatus.ACCEPTED


# --- emails --------------------------------------------------------------------------------------------


def _place(entry: WaitlistEntry) -> str:
    """'1 of A1-CP1' (EVSE 1's connector 1 of station A1-CP1), '1/2 of A1-CP1' for another connector of it."""
    evse_id = entry.offered_evse.evse_id if entry.offered_evse else "?"
    connector_id = entry.offered_connector.connector_id if entry.offered_connector else 1
    number = f"{evse_id}" if connector_id == 1 else f"{evse_id}/{connector_id}"
    station = entry.offered_station.identity if entry.offered_station else "?"
    return f"{number} of {station}"


def _local_time(moment: datetime, time_zone: str) -> str:
    try:
        zone = ZoneInfo(time_zone)
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    local = moment.astimezone(zone)
    return f"{local:%H:%M} {local.tzname()}"


def offer_email(entry: WaitlistEntry) -> tuple[str, str]:
    """(subject, body) of the email telling a driver a connector is theirs for a while."""
    site = entry.site
    until = _local_time(_offer_expires_at(entry), site.time_zone)
    reservation = entry.reservation
    if reservation is not None and reservation.status == ReservationStatus.ACCEPTED:
        hold = "The charger holds it for your card until then."
    else:
        hold = "Start charging with your card before then: the charger itself does not hold it for you."
    body = (
        f"A charger is free for you at {site.name}: connector {_place(entry)} until {until}.\n\n"
        f"{hold}\n"
        "If you have not started charging by then, it goes to the next driver in line.\n"
    )
    return f"A charger is free for you at {site.name}", body


def expired_email(entry: WaitlistEntry) -> tuple[str, str]:
    site = entry.site
    until = _local_time(_offer_expires_at(entry), site.time_zone)
    body = (
        f"The charger held for you at {site.name} (connector {_place(entry)}) until {until} was not used, "
        "so it went to the next driver in line.\n\n"
        "Join the waitlist again if you still need to charge.\n"
    )
    return f"Your waitlist offer at {site.name} has expired", body


def _notify_offers(site_id: int, now: datetime) -> int:
    """Email every offered entry of the site not told yet. Claimed first (notified_at), released if the send
    fails so that the next run retries. Returns how many emails went out."""
    sent = 0
    pending = WaitlistEntry.objects.filter(
        site_id=site_id, status=WaitlistStatus.OFFERED, notified_at__isnull=True
    ).values_list("pk", flat=True)
    for entry_id in list(pending):
        claimed = WaitlistEntry.objects.filter(
            pk=entry_id, status=WaitlistStatus.OFFERED, notified_at__isnull=True
        ).update(notified_at=now)
        if claimed != 1:
            continue
        entry = _reload(entry_id)
        subject, body = offer_email(entry)
        try:
            send_mail(subject, body, None, [entry.contact_email])
        except Exception:
            logger.exception("waitlist offer email for entry %s failed; the next run retries", entry_id)
            WaitlistEntry.objects.filter(pk=entry_id, notified_at=now).update(notified_at=None)
            continue
        sent += 1
    return sent


def _send_expired(entry_id: int) -> None:
    entry = _reload(entry_id)
    subject, body = expired_email(entry)
    try:
        send_mail(subject, body, None, [entry.contact_email])
    except Exception:  # the offer is closed either way; the driver's page shows it
        logger.exception("waitlist expiry email for entry %s failed", entry_id)
