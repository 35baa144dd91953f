"""Transactions as chargers report them, for both OCPP versions.

1.6 StartTransaction/StopTransaction/MeterValues and 2.0.1 TransactionEvent end here (the OCPP mappers turn
them into sessions.types values). Each function is one database transaction; the caller answers the
charger only after it returns (never before commit).

Failure policy (RELIABILITY.md C): a charger's report of something that already happened is always
accepted and answered; what does not add up is flagged on the session (and held from billing) or set
aside as a SessionAnomaly for review.
"""

import hashlib
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from sessions.enums import HOLD_FLAGS, AnomalyKind, IdTokenStatus, SessionFlag, SessionStatus
from sessions.models import ChargingSession, IdToken, MeterValue, SessionAnomaly
from sessions.types import Sample, StartRequest, StartResult, StopRequest, StopResult, TokenInfo
from stations.services.ocpp import connector_resolve

ENERGY_REGISTER = "Energy.Active.Import.Register"
_UNIT_TO_WH = {"": Decimal(1), "Wh": Decimal(1), "kWh": Decimal(1000)}


def id_token_authorize(*, organisation_id: int, value: str, now=None) -> TokenInfo:
    """Whether `value` may charge at a station of `organisation_id`. Unknown tokens are Invalid."""
    now = now or timezone.now()
    token = (
        IdToken.objects.filter(organisation_id=organisation_id, value=value).select_related("group").first()
    )
    if token is None:
        return TokenInfo(status=IdTokenStatus.INVALID, known=False)
    return _token_info(token, now)


def _token_info(token: IdToken, now) -> TokenInfo:
    status = token.status
    if status == IdTokenStatus.ACCEPTED and token.expires_at is not None and token.expires_at <= now:
        status = IdTokenStatus.EXPIRED
    group = token.group
    if status == IdTokenStatus.ACCEPTED and group is not None and group.status != IdTokenStatus.ACCEPTED:
        # A blocked group blocks its members (a fleet's cards are suspended together).
        status = group.status
    return TokenInfo(
        status=status,
        expires_at=token.expires_at,
        group_value=group.value if group is not None else None,
    )


def _energy_wh(sample: Sample) -> int | None:
    if sample.measurand != ENERGY_REGISTER or sample.value is None or sample.phase:
        return None
    factor = _UNIT_TO_WH.get(sample.unit)
    if factor is None:
        return None
    return int(sample.value * factor)


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


def _add_flags(session: ChargingSession, *flags: str) -> None:
    for flag in flags:
        if flag not in session.flags:
            session.flags.append(str(flag))
    if any(flag in HOLD_FLAGS for flag in session.flags):
        session.held_for_review = True


def _flags_for_times(request_time, received_at) -> list[str]:
    skew = timedelta(seconds=settings.OCPP_CLOCK_SKEW_FLAG_S)
    return [SessionFlag.CLOCK_SKEW] if request_time > received_at + skew else []


def session_start(*, request: StartRequest, organisation_id: int) -> StartResult:
    """Open a session (1.6 StartTransaction, 2.0.1 TransactionEvent Started).

    Idempotent: a 1.6 start re-sent after a reconnect (new message id, same content) returns the session
    and transaction id issued the first time (RELIABILITY C19); a 2.0.1 start for a transaction id the
    station already has returns that session.
    """
    fingerprint = _start_fingerprint(request) if request.transaction_id is None else ""
    try:
        return _session_start(request=request, organisation_id=organisation_id, fingerprint=fingerprint)
    except IntegrityError:
        # Two copies of the same start raced (two connections of the same charger): the first won.
        existing = _existing_start(request, fingerprint)
        if existing is None:
            raise
        token = id_token_authorize(organisation_id=organisation_id, value=request.id_tag)
        return StartResult(existing.pk, existing.transaction_id, token, created=False)


def _existing_start(request: StartRequest, fingerprint: str) -> ChargingSession | None:
    sessions = ChargingSession.objects.filter(station_id=request.station_id)
    if request.transaction_id is not None:
        return sessions.filter(transaction_id=request.transaction_id).first()
    return sessions.filter(start_fingerprint=fingerprint).first()


@transaction.atomic
def _session_start(*, request: StartRequest, organisation_id: int, fingerprint: str) -> StartResult:
    now = timezone.now()
    existing = _existing_start(request, fingerprint)
    token_row = (
        IdToken.objects.filter(organisation_id=organisation_id, value=request.id_tag)
        .select_related("group")
        .first()
        if request.id_tag
        else None
    )
    token = _token_info(token_row, now) if token_row else TokenInfo(status=IdTokenStatus.INVALID, known=False)
    if existing is not None:
        return StartResult(existing.pk, existing.transaction_id, token, created=False)

    evse_pk, connector_pk = connector_resolve(
        station_id=request.station_id, evse_id=request.evse_id, connector_id=request.connector_id
    )
    # A new start on a connector that still has an open session means we missed its stop: close the
    # old one for review rather than leaving two sessions open on one connector.
    for stale in ChargingSession.objects.select_for_update().filter(
        connector_id=connector_pk, status=SessionStatus.ACTIVE, started_at__lt=request.started_at
    ):
        _add_flags(stale, SessionFlag.STOPPED_BY_NEW_SESSION)
        stale.status = SessionStatus.COMPLETED
        stale.stopped_at = request.started_at
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
        id_token_status=token.status,
        started_at=request.started_at,
        start_received_at=request.received_at,
        meter_start_wh=request.meter_start_wh,
        meter_last_wh=request.meter_start_wh,
        meter_last_at=request.started_at,
        reservation_id=request.reservation_id,
        remote_start_id=request.remote_start_id,
        offline=request.offline,
        start_fingerprint=fingerprint,
        flags=[],
    )
    flags = _flags_for_times(request.started_at, request.received_at)
    if not token.known:
        flags.append(SessionFlag.UNKNOWN_TOKEN)
    if request.offline or request.started_at < request.received_at - timedelta(minutes=5):
        flags.append(SessionFlag.OFFLINE_START)
    if request.meter_start_wh < 0:
        flags.append(SessionFlag.NEGATIVE_METER)
    _add_flags(session, *flags)
    session.save()
    if request.transaction_id is None:
        # 1.6 transaction ids are integers, globally unique and never reused (RELIABILITY C27): the
        # primary key comes from a sequence (PostgreSQL) / AUTOINCREMENT (SQLite) that never goes back.
        session.transaction_id = str(session.pk)
        ChargingSession.objects.filter(pk=session.pk).update(transaction_id=session.transaction_id)
    return StartResult(session.pk, session.transaction_id, token, created=True)


def _record_samples(
    session: ChargingSession | None, station_id: int, evse_id: int | None, samples, received_at
) -> None:
    MeterValue.objects.bulk_create(
        [
            MeterValue(
                station_id=station_id,
                session=session,
                evse_id=evse_id,
                timestamp=s.timestamp,
                measurand=s.measurand,
                phase=s.phase,
                location=s.location,
                unit=s.unit,
                context=s.context,
                value=s.value,
                signed_data=s.signed_data,
                received_at=received_at,
            )
            for s in samples
        ]
    )
    if session is None:
        return
    # Energy comes from register readings ordered by the charger's timestamps, not by arrival
    # (RELIABILITY C23): a late batch does not move the running total back.
    changed = False
    for sample in sorted(samples, key=lambda s: s.timestamp):
        energy = _energy_wh(sample)
        if energy is None:
            continue
        if session.meter_last_at is None or sample.timestamp >= session.meter_last_at:
            if session.meter_last_wh is not None and energy < session.meter_last_wh:
                _add_flags(session, SessionFlag.METER_BACKWARDS)
            session.meter_last_wh = energy
            session.meter_last_at = sample.timestamp
            changed = True
    if changed:
        session.save(
            update_fields=["meter_last_wh", "meter_last_at", "flags", "held_for_review", "updated_at"]
        )


@transaction.atomic
def meter_values_record(
    *,
    station_id: int,
    evse_id: int | None,
    transaction_id: str | None,
    samples: list[Sample],
    received_at,
) -> int | None:
    """Store sampled values; attach them to the session when the charger names its transaction.

    Returns the session id (None when the values belong to no known transaction; they are kept).
    """
    session = None
    if transaction_id:
        session = (
            ChargingSession.objects.select_for_update()
            .filter(station_id=station_id, transaction_id=transaction_id)
            .first()
        )
    _record_samples(session, station_id, evse_id, samples, received_at)
    return session.pk if session else None


@transaction.atomic
def session_stop(*, request: StopRequest, organisation_id: int) -> StopResult:
    """Close a session (1.6 StopTransaction, 2.0.1 TransactionEvent Ended).

    Always answerable: an unknown, foreign or duplicate stop is recorded as an anomaly and changes no
    session twice (RELIABILITY C20, C21, C27).
    """
    token = (
        id_token_authorize(organisation_id=organisation_id, value=request.id_tag) if request.id_tag else None
    )
    session = (
        ChargingSession.objects.select_for_update()
        .filter(station_id=request.station_id, transaction_id=request.transaction_id)
        .first()
    )
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
        if request.samples:
            _record_samples(None, request.station_id, None, request.samples, request.received_at)
        return StopResult(session_id=None, token=token, applied=False)

    if session.status != SessionStatus.ACTIVE:
        SessionAnomaly.objects.create(
            station_id=request.station_id,
            session=session,
            kind=AnomalyKind.DUPLICATE_STOP,
            transaction_id=session.transaction_id,
            detail=detail,
        )
        return StopResult(session_id=session.pk, token=token, applied=False)

    if request.samples:
        _record_samples(session, request.station_id, None, request.samples, request.received_at)
    session.status = SessionStatus.COMPLETED
    session.stopped_at = request.stopped_at
    session.stop_received_at = request.received_at
    session.stop_reason = request.reason[:50]
    meter_stop = request.meter_stop_wh if request.meter_stop_wh is not None else session.meter_last_wh
    session.meter_stop_wh = meter_stop
    flags = _flags_for_times(request.stopped_at, request.received_at)
    if request.stopped_at < session.started_at:
        flags.append(SessionFlag.STOP_BEFORE_START)
    if meter_stop is None:
        session.energy_wh = None
    elif meter_stop < session.meter_start_wh:
        flags.append(SessionFlag.METER_BACKWARDS)
        session.energy_wh = None  # no defensible figure: held for review, never billed as is
    else:
        session.energy_wh = meter_stop - session.meter_start_wh
    _add_flags(session, *flags)
    session.save()
    return StopResult(session_id=session.pk, token=token, applied=True)
