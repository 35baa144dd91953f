"""Transactions as chargers report them, for both OCPP versions.

1.6 StartTransaction/StopTransaction/MeterValues and 2.0.1 TransactionEvent end here (the OCPP mappers turn
them into sessions.types values). Each public function is one database transaction; the caller answers the
charger only after it returns (never before commit).

Failure policy (docs/reliability.md section C): a charger's report of something that already happened is
always accepted and answered; what does not add up is flagged on the session (and held from billing) or set
aside as a SessionAnomaly for review.
"""

import hashlib
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

from sessions.enums import (
    ENERGY_REGISTER,
    UNIT_TO_WH,
    AnomalyKind,
    IdTokenStatus,
    SessionFlag,
    SessionStatus,
)
from sessions.models import ChargingSession, IdToken, MeterValue, SessionAnomaly, TransactionEvent
from sessions.services.readings import (
    clock_out_of_window_keep,
    first_energy,
    flags_add,
    samples_record,
)
from sessions.services.reservations import reservation_use
from sessions.services.tokens import id_token_status_at, id_token_with_place
from sessions.types import (
    SessionEnded,
    SessionOpened,
    SessionOutcome,
    StartRequest,
    StartResult,
    StopRequest,
    StopResult,
    TokenInfo,
    TransactionEventRequest,
    TransactionEventResult,
)
from stations.models import Evse
from stations.services.ocpp import connector_resolve

# A start reported this long after it happened was made offline (the charger queued it).
OFFLINE_START_AFTER = timedelta(minutes=5)
UNKNOWN_TOKEN = TokenInfo(status=IdTokenStatus.INVALID, known=False)


# --- tokens -----------------------------------------------------------------------------------------
def id_token_authorize(
    *, organisation_id: int, value: str, now: datetime | None = None, station_id: int | None = None
) -> TokenInfo:
    """Whether `value` may charge at station `station_id` of `organisation_id` (without a station: anywhere
    in the organisation). Unknown tokens are Invalid; a token restricted to other sites or stations is
    NotAtThisLocation."""
    token = _token_row(organisation_id, value, station_id)
    return _token_info(token, now or timezone.now()) if token else UNKNOWN_TOKEN


def _token_row(organisation_id: int, value: str, station_id: int | None = None) -> IdToken | None:
    if not value:
        return None
    tokens = IdToken.objects.filter(organisation_id=organisation_id, value=value).select_related("group")
    if station_id is not None:
        tokens = id_token_with_place(tokens, station_id=station_id)  # same query, no extra round trip
    return tokens.first()


def _token_info(token: IdToken, now: datetime) -> TokenInfo:
    group = token.group
    return TokenInfo(
        status=id_token_status_at(token, now),
        expires_at=token.expires_at,
        group_value=group.value if group is not None else None,
        group_type=group.type if group is not None else None,
    )


# --- helpers ----------------------------------------------------------------------------------------
def _skew_flags(charger_time: datetime, received_at: datetime) -> list[str]:
    """docs/reliability.md case 26: a charger clock more than OCPP_CLOCK_SKEW_FLAG_S ahead of ours is
    flagged."""
    skew = timedelta(seconds=settings.OCPP_CLOCK_SKEW_FLAG_S)
    return [SessionFlag.CLOCK_SKEW] if charger_time > received_at + skew else []


def _start_fingerprint(request: StartRequest) -> str:
    key = "|".join(
        [
            str(request.evse_id),
            str(request.connector_id),
            request.id_tag,
            str(request.meter_start_wh),
            request.started_at.isoformat(),
        ]
    )
    return hashlib.sha256(key.encode()).hexdigest()


def _existing_session(
    station_id: int, *, transaction_id: str | None, fingerprint: str
) -> ChargingSession | None:
    sessions = ChargingSession.objects.select_for_update().filter(station_id=station_id)
    if transaction_id is not None:
        return sessions.filter(transaction_id=transaction_id).first()
    return sessions.filter(start_fingerprint=fingerprint).first()


# --- opening and closing ----------------------------------------------------------------------------
def _session_open(
    request: StartRequest, organisation_id: int, fingerprint: str
) -> tuple[ChargingSession, TokenInfo, bool]:
    """Find or create the session of `request` (caller is inside a transaction)."""
    now = timezone.now()
    token_row = _token_row(organisation_id, request.id_tag, request.station_id)
    token = _token_info(token_row, now) if token_row else UNKNOWN_TOKEN
    existing = _existing_session(
        request.station_id, transaction_id=request.transaction_id, fingerprint=fingerprint
    )
    if existing is not None:
        return existing, token, False

    evse_pk, connector_pk = connector_resolve(
        station_id=request.station_id, evse_id=request.evse_id, connector_id=request.connector_id
    )
    # A new start on a connector that still has an open session means we missed its stop: close the
    # old one for review rather than leaving two sessions open on one connector. It stopped before the new
    # start, and before we heard of it: never at a time ahead of ours (docs/reliability.md case 45).
    for stale in ChargingSession.objects.select_for_update().filter(
        connector_id=connector_pk, status=SessionStatus.ACTIVE, started_at__lt=request.started_at
    ):
        flags_add(stale, SessionFlag.STOPPED_BY_NEW_SESSION)
        stale.status = SessionStatus.COMPLETED
        stale.stopped_at = min(request.started_at, request.received_at)
        stale.stop_received_at = request.received_at
        stale.stop_reason = "Other"
        stale.held_for_review = True
        stale.save()

    session = ChargingSession(
        station_id=request.station_id,
        evse_id=evse_pk,
        connector_id=connector_pk,
        # 1.6: replaced by the row's primary key below; a placeholder keeps the unique constraint happy.
        transaction_id=request.transaction_id or f"pending-{fingerprint[:24]}",
        id_token=token_row,
        id_tag=request.id_tag,
        id_token_status=_stored_status(token.status) if request.id_tag else "",
        started_at=request.started_at,
        start_received_at=request.received_at,
        meter_start_wh=request.meter_start_wh,
        meter_last_wh=request.meter_start_wh,
        meter_last_at=request.started_at if request.meter_start_wh is not None else None,
        reservation_id=request.reservation_id,
        remote_start_id=request.remote_start_id,
        offline=request.offline,
        start_fingerprint=fingerprint,
        flags=[],
    )
    flags = _skew_flags(request.started_at, request.received_at)
    if request.id_tag and not token.known:
        flags.append(SessionFlag.UNKNOWN_TOKEN)
    if request.offline or request.started_at < request.received_at - OFFLINE_START_AFTER:
        flags.append(SessionFlag.OFFLINE_START)
    if request.meter_start_wh is not None and request.meter_start_wh < 0:
        flags.append(SessionFlag.NEGATIVE_METER)
    flags_add(session, *flags)
    session.save()
    if request.charger_started_at:
        clock_out_of_window_keep(
            session, field="started_at", charger_value=request.charger_started_at, used=request.started_at
        )
        session.save(update_fields=["flags", "held_for_review", "updated_at"])
    if request.transaction_id is None:
        # 1.6 transaction ids are integers, globally unique and never reused (docs/reliability.md case 27):
        # the primary key comes from a sequence (PostgreSQL) / AUTOINCREMENT (SQLite) that never goes back.
        session.transaction_id = str(session.pk)
        ChargingSession.objects.filter(pk=session.pk).update(transaction_id=session.transaction_id)
    if request.reservation_id is not None:
        reservation_use(
            station_id=request.station_id, reservation_id=request.reservation_id, session_id=session.pk
        )
    return session, token, True


def _stored_status(status: str) -> str:
    # NotAtThisLocation is an answer, not a token status (and longer than the column): stored as Invalid.
    return status if status in IdTokenStatus.values else IdTokenStatus.INVALID


def _session_close(
    session: ChargingSession,
    *,
    stopped_at: datetime,
    received_at: datetime,
    reason: str,
    meter_stop_wh: int | None,
    charger_stopped_at: str = "",
) -> None:
    session.status = SessionStatus.COMPLETED
    session.stopped_at = stopped_at
    session.stop_received_at = received_at
    session.stop_reason = reason[:50]
    meter_stop = meter_stop_wh if meter_stop_wh is not None else session.meter_last_wh
    session.meter_stop_wh = meter_stop
    flags = _skew_flags(stopped_at, received_at)
    if stopped_at < session.started_at:
        flags.append(SessionFlag.STOP_BEFORE_START)
    if meter_stop is None or session.meter_start_wh is None:
        flags.append(SessionFlag.ENERGY_UNKNOWN)  # no register reading at all: nothing to bill from
        session.energy_wh = None
    elif meter_stop < session.meter_start_wh:
        flags.append(SessionFlag.METER_BACKWARDS)
        session.energy_wh = None  # no defensible figure: held for review, never billed as is
    else:
        session.energy_wh = meter_stop - session.meter_start_wh
    flags_add(session, *flags)
    if charger_stopped_at:
        clock_out_of_window_keep(
            session, field="stopped_at", charger_value=charger_stopped_at, used=stopped_at
        )
    session.save()


def _evse_number(session: ChargingSession) -> int | None:
    """The wire EVSE number of a session (stop-transaction samples name no connector)."""
    if session.evse_id is None:
        return None
    return Evse.objects.filter(pk=session.evse_id).values_list("evse_id", flat=True).first()


# --- OCPP 1.6 entry points --------------------------------------------------------------------------
def session_start(*, request: StartRequest, organisation_id: int) -> StartResult:
    """Open a session (1.6 StartTransaction).

    Idempotent: a start re-sent after a reconnect (new message id, same content) returns the session and
    transaction id issued the first time (docs/reliability.md case 19).
    """
    fingerprint = _start_fingerprint(request) if request.transaction_id is None else ""
    try:
        with transaction.atomic():
            session, token, created = _session_open(request, organisation_id, fingerprint)
    except IntegrityError:
        # Two copies of the same start raced (two connections of the same charger): the first won.
        with transaction.atomic():
            existing = _existing_session(
                request.station_id, transaction_id=request.transaction_id, fingerprint=fingerprint
            )
        if existing is None:
            raise
        token = id_token_authorize(
            organisation_id=organisation_id, value=request.id_tag, station_id=request.station_id
        )
        return StartResult(existing.pk, existing.transaction_id, token)
    opened = (SessionOpened(session_id=session.pk, station_id=request.station_id),) if created else ()
    return StartResult(session.pk, session.transaction_id, token, outcomes=opened)


@transaction.atomic
def session_stop(*, request: StopRequest, organisation_id: int) -> StopResult:
    """Close a session (1.6 StopTransaction).

    Always answerable: an unknown, foreign or duplicate stop is recorded as an anomaly and changes no
    session twice (docs/reliability.md cases 20, 21 and 27).
    """
    token = (
        id_token_authorize(
            organisation_id=organisation_id, value=request.id_tag, station_id=request.station_id
        )
        if request.id_tag
        else None
    )
    session = _existing_session(request.station_id, transaction_id=request.transaction_id, fingerprint="")
    detail = {
        "meter_stop_wh": request.meter_stop_wh,
        "stopped_at": request.stopped_at.isoformat(),
        "reason": request.reason,
        "id_tag": request.id_tag,
    }
    if session is None:
        foreign = ChargingSession.objects.filter(
            ~Q(station_id=request.station_id), transaction_id=request.transaction_id
        ).exists()
        SessionAnomaly.objects.create(
            station_id=request.station_id,
            kind=AnomalyKind.FOREIGN_TRANSACTION if foreign else AnomalyKind.UNKNOWN_TRANSACTION,
            transaction_id=request.transaction_id[:36],
            detail=detail,
        )
        samples_record(None, request.station_id, None, request.samples, request.received_at)
        return StopResult(session_id=None, token=token)

    if session.status != SessionStatus.ACTIVE:
        SessionAnomaly.objects.create(
            station_id=request.station_id,
            session=session,
            kind=AnomalyKind.DUPLICATE_STOP,
            transaction_id=session.transaction_id,
            detail=detail,
        )
        repeated = SessionEnded(session_id=session.pk, station_id=request.station_id, repeated=True)
        return StopResult(session_id=session.pk, token=token, outcomes=(repeated,))

    samples_record(session, request.station_id, _evse_number(session), request.samples, request.received_at)
    _session_close(
        session,
        stopped_at=request.stopped_at,
        received_at=request.received_at,
        reason=request.reason,
        meter_stop_wh=request.meter_stop_wh,
        charger_stopped_at=request.charger_stopped_at,
    )
    ended = SessionEnded(session_id=session.pk, station_id=request.station_id)
    return StopResult(session_id=session.pk, token=token, outcomes=(ended,))


# --- OCPP 2.0.1 entry point -------------------------------------------------------------------------
def transaction_event_record(
    *, request: TransactionEventRequest, organisation_id: int
) -> TransactionEventResult:
    """Apply one 2.0.1 TransactionEvent (Started, Updated or Ended).

    The same (transaction, seqNo) delivered twice is stored and applied once (docs/reliability.md case 22).
    Events may arrive out of order after an offline period (case 23): whichever comes first opens the session,
    a late Started only moves its start back, and an Updated after Ended only adds its meter values.
    """
    try:
        return _transaction_event_apply(request, organisation_id)
    except IntegrityError:
        # The same event raced in on two connections; the other copy was applied.
        token = (
            id_token_authorize(
                organisation_id=organisation_id, value=request.id_tag, station_id=request.station_id
            )
            if request.id_tag
            else None
        )
        session = ChargingSession.objects.get(
            station_id=request.station_id, transaction_id=request.transaction_id
        )
        return TransactionEventResult(
            session_id=session.pk, token=token, duplicate=True, outcomes=_end_repeated(request, session.pk)
        )


def _end_repeated(request: TransactionEventRequest, session_id: int) -> tuple[SessionEnded, ...]:
    """An Ended event that did not end the session (it had ended already) still reports its end."""
    if request.event_type != "Ended":
        return ()
    return (SessionEnded(session_id=session_id, station_id=request.station_id, repeated=True),)


@transaction.atomic
def _transaction_event_apply(
    request: TransactionEventRequest, organisation_id: int
) -> TransactionEventResult:
    session = _existing_session(request.station_id, transaction_id=request.transaction_id, fingerprint="")
    if (
        session is not None
        and TransactionEvent.objects.filter(
            station_id=request.station_id, transaction_id=request.transaction_id, seq_no=request.seq_no
        ).exists()
    ):
        token = (
            id_token_authorize(
                organisation_id=organisation_id, value=request.id_tag, station_id=request.station_id
            )
            if request.id_tag
            else None
        )
        return TransactionEventResult(
            session_id=session.pk, token=token, duplicate=True, outcomes=_end_repeated(request, session.pk)
        )

    token = None
    opened = session is None
    if session is None:
        session, token, _created = _session_open(
            StartRequest(
                station_id=request.station_id,
                evse_id=request.evse_id or 1,
                connector_id=request.connector_id or 1,
                id_tag=request.id_tag,
                meter_start_wh=first_energy(request.samples),
                started_at=request.timestamp,
                received_at=request.received_at,
                reservation_id=request.reservation_id,
                remote_start_id=request.remote_start_id,
                transaction_id=request.transaction_id,
                offline=request.offline,
                charger_started_at=request.charger_timestamp,
            ),
            organisation_id,
            fingerprint="",
        )
    elif request.event_type == "Started" and request.timestamp < session.started_at:
        # The Started event arrived after a later event opened the session: it knows the real start.
        session.started_at = request.timestamp
        first = first_energy(request.samples)
        if first is not None:
            session.meter_start_wh = first
        fields = ["started_at", "meter_start_wh", "updated_at"]
        if (
            session.status == SessionStatus.COMPLETED
            and session.meter_stop_wh is not None
            and first is not None
        ):
            # The Ended came first (an offline batch, docs/reliability.md case 23): its energy counted from
            # the first reading it had; the Started knows the real start.
            if session.meter_stop_wh < first:
                flags_add(session, SessionFlag.METER_BACKWARDS)
                session.energy_wh = None
            else:
                session.energy_wh = session.meter_stop_wh - first
            fields += ["energy_wh", "flags", "held_for_review"]
        session.save(update_fields=fields)

    TransactionEvent.objects.create(
        station_id=request.station_id,
        session=session,
        transaction_id=request.transaction_id,
        seq_no=request.seq_no,
        event_type=request.event_type,
        trigger_reason=request.trigger_reason,
        timestamp=request.timestamp,
        received_at=request.received_at,
        offline=request.offline,
        charging_state=request.charging_state,
        payload=request.payload,
    )
    if request.id_tag and token is None:
        # Authorization during the transaction (e.g. the driver presented the card after plugging in).
        token_row = _token_row(organisation_id, request.id_tag, request.station_id)
        token = _token_info(token_row, timezone.now()) if token_row else UNKNOWN_TOKEN
        if not session.id_tag:
            session.id_tag = request.id_tag
            session.id_token = token_row
            session.id_token_status = _stored_status(token.status)
            session.save(update_fields=["id_tag", "id_token", "id_token_status", "updated_at"])
    if request.reservation_id is not None and session.reservation_id is None:
        # 2.0.1: a reservation may be named in a later event (the driver authorised after plugging in).
        session.reservation_id = request.reservation_id
        session.save(update_fields=["reservation_id", "updated_at"])
        reservation_use(
            station_id=request.station_id, reservation_id=request.reservation_id, session_id=session.pk
        )
    if request.offline and not session.offline:
        session.offline = True
        session.save(update_fields=["offline", "updated_at"])
    if request.charging_state and session.status == SessionStatus.ACTIVE:
        session.charging_state = request.charging_state
        session.save(update_fields=["charging_state", "updated_at"])
    # A 2.0.1 charger sends `evse` only in the first event of a transaction: the session knows it.
    evse_number = request.evse_id or _evse_number(session)
    samples_record(session, request.station_id, evse_number, request.samples, request.received_at)
    outcomes: tuple[SessionOutcome, ...] = (
        (SessionOpened(session_id=session.pk, station_id=request.station_id),) if opened else ()
    )
    if request.event_type == "Ended" and session.status == SessionStatus.ACTIVE:
        meter_stop_wh = _register_span_apply(session)
        _session_close(
            session,
            stopped_at=request.timestamp,
            received_at=request.received_at,
            reason=request.stopped_reason or "Local",
            meter_stop_wh=meter_stop_wh,
            charger_stopped_at=request.charger_timestamp,
        )
        outcomes += (SessionEnded(session_id=session.pk, station_id=request.station_id),)
    else:
        outcomes += _end_repeated(request, session.pk)
    return TransactionEventResult(session_id=session.pk, token=token, duplicate=False, outcomes=outcomes)


def _register_span_apply(session: ChargingSession) -> int | None:
    """At a 2.0.1 Ended (docs/reliability.md case 23): the session's energy from its stored register readings
    ordered by the charger's timestamps, not by arrival. Events may come out of order and without a Started
    (an Updated with an earlier time arriving second): the earliest reading is the meter start (ties: the
    lower), and without a Started event the session started no later than its earliest event. Returns the
    latest reading (ties: the higher), the meter stop; None without any reading (then ENERGY_UNKNOWN)."""
    readings = MeterValue.objects.filter(
        session=session, measurand=ENERGY_REGISTER, phase="", value__isnull=False, unit__in=list(UNIT_TO_WH)
    ).values_list("value", "unit")
    first = readings.order_by("timestamp", "value").first()
    last = readings.order_by("-timestamp", "-value").first()
    # `value` is never null here (filtered above); the checks tell the type checker.
    if first is not None and first[0] is not None:
        session.meter_start_wh = int(first[0] * UNIT_TO_WH[first[1]])
    events = TransactionEvent.objects.filter(session=session).aggregate(
        first_at=Min("timestamp"), started=Count("pk", filter=Q(event_type="Started"))
    )
    if not events["started"] and events["first_at"] is not None and events["first_at"] < session.started_at:
        session.started_at = events["first_at"]
    return int(last[0] * UNIT_TO_WH[last[1]]) if last is not None and last[0] is not None else None
