"""Meter-value ingest in batches: many chargers' MeterValues committed in one transaction (group commit).

Per message, the ORM path costs four database round trips (lock the session, insert the rows, update the
session, commit); on a busy server those round trips, not PostgreSQL's work, bound ingest
(docs/performance.md#one-database-row-per-message: ~1,000 rows/s per process with one ORM write per message,
50-84k rows/s batched with COPY). Here a batch of messages costs the same four round trips as one message. The
caller answers each charger only after the batch's transaction has committed.
"""

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from django.db import connection, transaction
from django.db.models import F, Field, ForeignKey
from django.utils import timezone

from cpms.db import rows_append
from sessions.enums import SessionStatus
from sessions.models import ChargingSession, MeterValue, TransactionEvent
from sessions.services.readings import SESSION_METER_FIELDS, apply_readings, not_yet_stored
from sessions.services.transactions import transaction_event_record
from sessions.types import Sample, TransactionEventRequest, TransactionEventResult

_SESSION_UPDATE_FIELDS = [*SESSION_METER_FIELDS, "charging_state"]


@dataclass(frozen=True, slots=True)
class MeterValuesItem:
    station_id: int
    evse_id: int | None
    transaction_id: str | None
    samples: tuple[Sample, ...]
    received_at: datetime


_COLUMNS = (
    "station_id",
    "session_id",
    "evse_id",
    "timestamp",
    "measurand",
    "phase",
    "location",
    "unit",
    "context",
    "value",
    "signed_data",
    "received_at",
)


_LOCKED_FIELDS = ("id", "station_id", "transaction_id", "status", *_SESSION_UPDATE_FIELDS)


def _sessions_locked(keys: set[tuple[int, str]]) -> dict[tuple[int, str], ChargingSession]:
    """The sessions of these (station id, transaction id) pairs, locked for update, each with `evse_number`
    (its EVSE's number, or None)."""
    if not keys:
        return {}
    # Two IN lists (cheap to build) select a superset of the wanted pairs; the exact pairs are picked
    # below. Locked in primary-key order, like every batch, so two batches cannot deadlock.
    station_ids, transaction_ids = sorted({k[0] for k in keys}), sorted({k[1] for k in keys})
    if connection.vendor == "postgresql":
        # Once per batch on the hot path: a fixed statement, not a queryset (Django compiled this one query
        # in about a third of a batch's CPU when batches hold one message, issue 13).
        candidates: Iterable[ChargingSession] = ChargingSession.objects.raw(
            _locked_sql(), [station_ids, transaction_ids]
        )
    else:
        candidates = (
            ChargingSession.objects.select_for_update(of=("self",))
            .filter(station_id__in=station_ids, transaction_id__in=transaction_ids)
            .annotate(evse_number=F("evse__evse_id"))
            .only(*_LOCKED_FIELDS)
            .order_by("pk")
        )
    return {
        key: session
        for session in candidates
        if (key := (session.station_id, session.transaction_id)) in keys
    }


@functools.cache
def _locked_sql() -> str:
    opts = ChargingSession._meta
    columns = ", ".join(
        f's."{cast("Field[Any, Any]", opts.get_field(name)).column}"' for name in _LOCKED_FIELDS
    )
    evse = cast("ForeignKey[Any, Any]", opts.get_field("evse"))
    evse_table = evse.related_model._meta.db_table
    return (
        f'SELECT {columns}, e."evse_id" AS evse_number FROM "{opts.db_table}" s '  # noqa: S608
        f'LEFT JOIN "{evse_table}" e ON e."id" = s."{evse.column}" '
        'WHERE s."station_id" = ANY(%s) AND s."transaction_id" = ANY(%s) ORDER BY s."id" FOR UPDATE OF s'
    )


def _value_rows(
    station_id: int,
    session_id: int | None,
    evse_id: int | None,
    samples: Sequence[Sample],
    received_at: datetime,
) -> list[tuple[Any, ...]]:
    return [
        (
            station_id,
            session_id,
            evse_id,
            s.timestamp,
            s.measurand,
            s.phase,
            s.location,
            s.unit,
            s.context,
            s.value,
            s.signed_data,
            received_at,
        )
        for s in samples
    ]


@transaction.atomic
def meter_values_record_many(*, items: list[MeterValuesItem]) -> list[int | None]:
    """Store the sampled values of many MeterValues messages in one transaction.

    Returns, per item, the id of the session its values were attached to (None: no known transaction;
    the values are kept all the same). Repeats of stored readings are dropped (not_yet_stored) and the
    session's running meter state moves forward (apply_readings), as for samples inside a transaction.
    """
    sessions = _sessions_locked(
        {(item.station_id, item.transaction_id) for item in items if item.transaction_id}
    )
    rows: list[tuple[Any, ...]] = []
    changed: dict[int, ChargingSession] = {}
    results: list[int | None] = []
    for item in items:
        session = sessions.get((item.station_id, item.transaction_id)) if item.transaction_id else None
        samples = not_yet_stored(session, item.samples) if session is not None else item.samples
        session_id = session.pk if session is not None else None
        rows += _value_rows(item.station_id, session_id, item.evse_id, samples, item.received_at)
        if session is not None and apply_readings(session, samples):
            changed[session.pk] = session
        results.append(session_id)

    rows_append(MeterValue, _COLUMNS, rows)
    _update_sessions(list(changed.values()))
    return results


_EVENT_COLUMNS = (
    "station_id",
    "session_id",
    "transaction_id",
    "seq_no",
    "event_type",
    "trigger_reason",
    "timestamp",
    "received_at",
    "offline",
    "charging_state",
    "payload",
)


def transaction_event_is_simple(request: TransactionEventRequest) -> bool:
    """The common event that transaction_events_record_many writes set-wise: an `Updated` event that carries
    meter values and nothing else to decide. The others (Started, Ended, tokens, offline) take the careful
    path, and are better sent to `transaction_event_record_one` than queued behind a batch."""
    return request.event_type == "Updated" and not request.id_tag and not request.offline


@transaction.atomic
def transaction_event_record_one(
    *, request: TransactionEventRequest, organisation_id: int
) -> TransactionEventResult:
    """One event through the careful path, in a transaction of its own (what a batch does for it, without
    waiting for the batch: a storm's Started events run in parallel worker threads, not one after another in
    the batch's)."""
    return transaction_event_record(request=request, organisation_id=organisation_id)


def transaction_events_record_many(
    *, items: list[tuple[TransactionEventRequest, int]]
) -> list[TransactionEventResult | Exception]:
    """Apply many 2.0.1 TransactionEvents (with the station's organisation id) in one transaction.

    The common case, an `Updated` event of an open session that carries meter values and nothing else
    to decide, is written set-wise like MeterValues (events and values with COPY, sessions with one
    UPDATE). Every other event (Started, Ended, tokens, offline, duplicates, unknown transactions) goes
    through transaction_event_record in a savepoint of its own: one that fails is reported, as its
    exception, to its own charger only; the others commit.
    """
    results: list[TransactionEventResult | Exception | None] = [None] * len(items)
    with transaction.atomic():
        simple = {
            index for index, (request, _org) in enumerate(items) if transaction_event_is_simple(request)
        }
        sessions = _sessions_locked({(items[i][0].station_id, items[i][0].transaction_id) for i in simple})
        stored = _stored_seq_nos(sessions, [items[i][0] for i in simple])
        event_rows: list[tuple[Any, ...]] = []
        value_rows: list[tuple[Any, ...]] = []
        changed: dict[int, ChargingSession] = {}
        for index in sorted(simple):
            request = items[index][0]
            key = (request.station_id, request.transaction_id)
            session = sessions.get(key)
            if session is None or session.status != SessionStatus.ACTIVE or (*key, request.seq_no) in stored:
                simple.discard(index)  # unknown, closed or repeated: the careful path decides
                continue
            stored.add((*key, request.seq_no))
            event_rows.append(
                (
                    request.station_id,
                    session.pk,
                    request.transaction_id,
                    request.seq_no,
                    request.event_type,
                    request.trigger_reason,
                    request.timestamp,
                    request.received_at,
                    False,
                    request.charging_state,
                    json.dumps(request.payload),
                )
            )
            samples = not_yet_stored(session, request.samples)
            evse_number = request.evse_id or cast(int | None, getattr(session, "evse_number", None))
            value_rows += _value_rows(
                request.station_id, session.pk, evse_number, samples, request.received_at
            )
            if apply_readings(session, samples) or request.charging_state:
                if request.charging_state:
                    session.charging_state = request.charging_state
                    session.updated_at = timezone.now()
                changed[session.pk] = session
            results[index] = TransactionEventResult(session_id=session.pk, token=None, duplicate=False)
        rows_append(TransactionEvent, _EVENT_COLUMNS, event_rows)
        rows_append(MeterValue, _COLUMNS, value_rows)
        _update_sessions(list(changed.values()))

        for index, (request, organisation_id) in enumerate(items):
            if index in simple:
                continue
            try:
                results[index] = transaction_event_record(request=request, organisation_id=organisation_id)
            except Exception as exc:
                results[index] = exc
    return cast(list[TransactionEventResult | Exception], results)  # every index was filled above


def _stored_seq_nos(
    sessions: dict[tuple[int, str], ChargingSession], requests: list[TransactionEventRequest]
) -> set[tuple[int, str, int]]:
    """(station, transaction, seqNo) of these requests that are already stored (redeliveries)."""
    wanted = {
        (r.station_id, r.transaction_id, r.seq_no)
        for r in requests
        if (r.station_id, r.transaction_id) in sessions
    }
    if not wanted:
        return set()
    found = TransactionEvent.objects.filter(
        session_id__in=[s.pk for s in sessions.values()], seq_no__in={w[2] for w in wanted}
    ).values_list("station_id", "transaction_id", "seq_no")
    return {row for row in found if row in wanted}


def _update_sessions(sessions: list[ChargingSession]) -> None:
    if not sessions:
        return
    if connection.vendor != "postgresql":
        ChargingSession.objects.bulk_update(sessions, _SESSION_UPDATE_FIELDS)
        return
    # One UPDATE ... FROM (VALUES ...): Django's bulk_update builds a CASE expression per field and row,
    # which costs more CPU than the rest of the batch together.
    table = ChargingSession._meta.db_table
    values = ", ".join(["(%s, %s, %s, %s, %s::jsonb, %s, %s, %s)"] * len(sessions))
    params: list[Any] = []
    for s in sessions:
        params += [
            s.pk,
            s.meter_start_wh,
            s.meter_last_wh,
            s.meter_last_at,
            json.dumps(s.flags),
            s.held_for_review,
            s.charging_state,
            s.updated_at,
        ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS s SET meter_start_wh = v.meter_start_wh, meter_last_wh = v.meter_last_wh, "  # noqa: S608
            "meter_last_at = v.meter_last_at, flags = v.flags, held_for_review = v.held_for_review, "
            "charging_state = v.charging_state, updated_at = v.updated_at "
            f"FROM (VALUES {values}) AS v(id, meter_start_wh, meter_last_wh, meter_last_at, flags, "
            "held_for_review, charging_state, updated_at) WHERE s.id = v.id",
            params,
        )
