"""Reservations: a connector, an EVSE or any connector of a station held for one id token until a time.

Life of a reservation (ReservationStatus):
- `reservation_create` records it (requested, committed) and sends ReserveNow; the charger's answer moves it,
  in the transaction that records the answer (`reservation_answered`), to accepted or rejected. A command that
  failed before the charger could hold it (not connected, CALLERROR) rejects it with the error code; one that
  timed out leaves it requested (the charger may hold it: it can be cancelled, and it expires).
- `reservation_cancel` sends CancelReservation; the answer cancels it (`reservation_cancel_answered`).
- A session that starts with its reservationId uses it (`reservation_use`, from the session services).
- The charger reports it gone (2.0.1 ReservationStatusUpdate: `reservation_status_update`), or its time runs
  out (`reservations_expire`, periodic).
Every change is a conditional UPDATE from the states it may leave: whichever comes first wins, and a late or
repeated message changes nothing.

The OCPP reservationId is the row's primary key. The calls are built for the station's version by
cpms.ocpp_wire.auth (reserve_now, cancel_reservation).
"""

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.enums import Capability
from accounts.models import User
from cpms.errors import Conflict, PermissionDenied, ValidationFailed
from cpms.ocpp_wire.auth import cancel_reservation, reserve_now
from cpms.ocpp_wire.calls import Call
from sessions.enums import IdTokenStatus, ReservationStatus
from sessions.models import IdToken, Reservation
from sessions.services.tokens import id_token_status_at, id_token_with_place
from stations.enums import CommandSource, CommandStatus, StationEventKind
from stations.models import ChargingStation, Command, Connector, Evse
from stations.scope import user_can
from stations.services.commands import command_send, station_version
from stations.services.ocpp import station_event_record

# Longest a reservation may hold a connector: longer holds are parking, not reservations.
MAX_DURATION = timedelta(hours=24)
OPEN_STATUSES = (ReservationStatus.REQUESTED, ReservationStatus.ACCEPTED)
# 2.0.1 ReservationUpdateStatusEnumType -> ours.
REPORTED_STATUSES = {"Expired": ReservationStatus.EXPIRED, "Removed": ReservationStatus.CANCELLED}
CANCEL_REJECTED = "CancelRejected"


def _can_command(actor: User | None, station: ChargingStation) -> None:
    # No actor: the system itself (a waitlist offer, sessions.services.waitlists), which may.
    if actor is not None and not user_can(
        user=actor,
        capability=Capability.COMMAND,
        organisation_id=station.organisation_id,
        site_id=station.site_id,
    ):
        raise PermissionDenied(f"You may not command station {station.identity!r}.")


def _connected(station: ChargingStation) -> None:
    if not station.is_connected:
        raise Conflict(f"Station {station.identity!r} is not connected.")


def _place_resolve(
    station: ChargingStation, evse_id: int | None, connector_id: int | None
) -> tuple[Evse | None, Connector | None]:
    """The station's EVSE and connector by their OCPP numbers (as the station reported them)."""
    if evse_id is None:
        if connector_id is not None:
            raise ValidationFailed("A connector is named within its EVSE: give evse_id with connector_id.")
        return None, None
    evse = Evse.objects.filter(station=station, evse_id=evse_id).first()
    if evse is None:
        raise ValidationFailed(f"Station {station.identity!r} has no EVSE {evse_id}.")
    if connector_id is None:
        return evse, None
    connector = Connector.objects.filter(evse=evse, connector_id=connector_id).first()
    if connector is None:
        raise ValidationFailed(
            f"EVSE {evse_id} of station {station.identity!r} has no connector {connector_id}."
        )
    return evse, connector


def _token_for_station(station: ChargingStation, id_token_id: int, now: datetime) -> IdToken:
    token = (
        id_token_with_place(
            IdToken.objects.select_related("group").filter(organisation_id=station.organisation_id),
            station_id=station.pk,
        )
        .filter(pk=id_token_id)
        .first()
    )
    if token is None:
        raise ValidationFailed(f"Id token {id_token_id} not found in the station's organisation.")
    status = id_token_status_at(token, now)
    if status != IdTokenStatus.ACCEPTED:
        raise ValidationFailed(f"Id token {token.value!r} may not charge at this station ({status}).")
    return token


def reservation_create(
    *,
    actor: User | None,
    station: ChargingStation,
    id_token_id: int,
    expires_at: datetime,
    evse_id: int | None = None,
    connector_id: int | None = None,
    source: str = CommandSource.API,
    now: datetime | None = None,
) -> Reservation:
    """Reserve (an EVSE, a connector of it, or any connector of) `station` for an id token of its organisation
    until `expires_at`, and ask the charger (ReserveNow). Returns the reservation as the answer left it.

    The row is committed before the call goes out: the answer is recorded by whichever server process holds
    the charger, in its own transaction, and must find it."""
    now = now or timezone.now()
    _can_command(actor, station)
    _connected(station)
    if expires_at.tzinfo is None:
        raise ValidationFailed("expires_at must carry a time zone.")
    if expires_at <= now:
        raise ValidationFailed("expires_at must be in the future.")
    if expires_at > now + MAX_DURATION:
        raise ValidationFailed(
            f"A reservation may last at most {MAX_DURATION.total_seconds() / 3600:g} hours."
        )
    evse, connector = _place_resolve(station, evse_id, connector_id)
    token = _token_for_station(station, id_token_id, now)
    with transaction.atomic():
        reservation = Reservation.objects.create(
            station=station,
            evse=evse,
            connector=connector,
            id_token=token,
            expires_at=expires_at,
            created_by=actor,
        )
        # Built inside the transaction: input the station's version cannot carry (a token too long for
        # 1.6, say) raises ValidationFailed and leaves no row behind.
        call = _reserve_now(reservation)
    command = command_send(station=station, call=call, requested_by=actor, source=source)
    _command_outcome(reservation.pk, command, from_status=ReservationStatus.REQUESTED)
    return Reservation.objects.select_related("station", "evse", "connector", "id_token", "command").get(
        pk=reservation.pk
    )


def reservation_cancel(
    *, actor: User, reservation: Reservation, source: str = CommandSource.API
) -> Reservation:
    """Ask the charger to drop the reservation (CancelReservation); its answer cancels it here."""
    station = reservation.station
    _can_command(actor, station)
    if reservation.status not in OPEN_STATUSES:
        raise Conflict(f"Reservation {reservation.pk} is {reservation.status}: there is nothing to cancel.")
    _connected(station)
    call = cancel_reservation(station_version(station), reservation_id=reservation.pk)
    command = command_send(station=station, call=call, requested_by=actor, source=source)
    # A failed cancel changes nothing: the charger may still hold the reservation.
    Reservation.objects.filter(pk=reservation.pk).update(command=command, updated_at=timezone.now())
    return Reservation.objects.select_related("station", "evse", "connector", "id_token", "command").get(
        pk=reservation.pk
    )


def _reserve_now(reservation: Reservation) -> Call:
    """The ReserveNow of a reservation (its station, EVSE, connector, token and group loaded or loadable)."""
    token = reservation.id_token
    group = token.group
    connector = reservation.connector
    return reserve_now(
        station_version(reservation.station),
        reservation_id=reservation.pk,
        expires_at=reservation.expires_at,
        id_token=token.value,
        id_token_type=token.type,
        evse_id=reservation.evse.evse_id if reservation.evse is not None else None,
        connector_type=connector.connector_type if connector is not None else None,
        group_id_token=group.value if group is not None else None,
        group_type=group.type if group is not None else None,
    )


def _command_outcome(reservation_id: int, command: Command, *, from_status: str) -> None:
    """Link the command; a ReserveNow that never reached a charger able to hold it rejects the reservation
    (the hook did the rest for an answered one)."""
    now = timezone.now()
    Reservation.objects.filter(pk=reservation_id, command__isnull=True).update(
        command=command, updated_at=now
    )
    if command.status == CommandStatus.FAILED:
        Reservation.objects.filter(pk=reservation_id, status=from_status).update(
            status=ReservationStatus.REJECTED,
            charger_status=(command.error_code or "Failed")[:32],
            updated_at=now,
        )


# --- what chargers answer and report ----------------------------------------------------------------
def reservation_answered(
    *, station_id: int, reservation_id: int, command_id: int, charger_status: str
) -> bool:
    """ReserveNow answered (inside the transaction recording the answer): Accepted -> accepted; Occupied,
    Faulted, Unavailable, Rejected -> rejected. Only a requested reservation moves. True if it moved."""
    status = ReservationStatus.ACCEPTED if charger_status == "Accepted" else ReservationStatus.REJECTED
    return (
        Reservation.objects.filter(
            pk=reservation_id, station_id=station_id, status=ReservationStatus.REQUESTED
        ).update(
            status=status,
            charger_status=charger_status[:32],
            command_id=command_id,
            updated_at=timezone.now(),
        )
        == 1
    )


def reservation_cancel_answered(*, station_id: int, reservation_id: int, charger_status: str) -> bool:
    """CancelReservation answered: Accepted -> cancelled. Rejected means the charger holds no such
    reservation (it expired or was used there meanwhile): cancelled too, as nothing is held any more, with
    charger_status CancelRejected. A reservation a session used meanwhile stays used."""
    fields = {"status": ReservationStatus.CANCELLED, "updated_at": timezone.now()}
    if charger_status != "Accepted":
        fields["charger_status"] = CANCEL_REJECTED
    return (
        Reservation.objects.filter(pk=reservation_id, station_id=station_id, status__in=OPEN_STATUSES).update(
            **fields
        )
        == 1
    )


@transaction.atomic
def reservation_status_update(
    *, station_id: int, reservation_id: int, status: str, detail: dict[str, Any], received_at: datetime
) -> bool:
    """2.0.1 ReservationStatusUpdate: the charger dropped the reservation (Expired, or Removed e.g. when the
    EVSE became unavailable). Kept as a station event as well. True if the reservation moved."""
    station_event_record(
        station_id=station_id,
        kind=StationEventKind.RESERVATION_STATUS,
        detail=detail,
        occurred_at=received_at,
        received_at=received_at,
        status=status,
    )
    new_status = REPORTED_STATUSES.get(status)
    if new_status is None:
        return False
    return (
        Reservation.objects.filter(pk=reservation_id, station_id=station_id, status__in=OPEN_STATUSES).update(
            status=new_status, charger_status=status[:32], updated_at=received_at
        )
        == 1
    )


def reservation_use(*, station_id: int, reservation_id: int, session_id: int) -> bool:
    """A session started at the station naming this reservation (1.6 StartTransaction / 2.0.1 TransactionEvent
    reservationId): one conditional UPDATE, inside the caller's transaction. A reservation id that is not
    ours, of another station, or no longer open changes nothing (the charger decided: the session stands)."""
    return (
        Reservation.objects.filter(pk=reservation_id, station_id=station_id, status__in=OPEN_STATUSES).update(
            status=ReservationStatus.USED, session_id=session_id, updated_at=timezone.now()
        )
        == 1
    )


def reservations_expire(*, now: datetime | None = None) -> int:
    """Requested and accepted reservations past `expires_at` -> expired (the charger drops them itself at
    that time). Idempotent: run twice, the second run finds nothing. Returns how many expired."""
    now = now or timezone.now()
    return Reservation.objects.filter(status__in=OPEN_STATUSES, expires_at__lte=now).update(
        status=ReservationStatus.EXPIRED, updated_at=now
    )
