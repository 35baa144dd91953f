"""Meter-value ingest in batches: many chargers' MeterValues committed in one transaction (group commit).

Per message, the ORM path costs four database round trips (lock the session, insert the rows, update the
session, commit); on a busy server those round trips, not PostgreSQL's work, bound ingest (PERFORMANCE.md:
~1,000 rows/s per process with one ORM write per message, 50-84k rows/s batched with COPY). Here a batch of
messages costs the same four round trips as one message. The caller answers each charger only after the
batch's transaction has committed.
"""

import json
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from cpms.db import rows_append
from sessions.models import ChargingSession, MeterValue
from sessions.services.transactions import SESSION_METER_FIELDS, apply_readings, not_yet_stored
from sessions.types import Sample


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


@transaction.atomic
def meter_values_record_many(*, items: list[MeterValuesItem]) -> list[int | None]:
    """Store the sampled values of many MeterValues messages in one transaction.

    Returns, per item, the id of the session its values were attached to (None: no known transaction;
    the values are kept all the same). Repeats of stored readings are dropped (not_yet_stored) and the
    session's running meter state moves forward (apply_readings), as for samples inside a transaction.
    """
    keys = {(item.station_id, item.transaction_id) for item in items if item.transaction_id}
    sessions: dict[tuple[int, str], ChargingSession] = {}
    if keys:
        # Two IN lists (cheap to build) select a superset of the wanted (station, transaction) pairs;
        # the exact pairs are picked below. Locked in primary-key order, like every batch, so two
        # batches cannot deadlock.
        candidates = (
            ChargingSession.objects.select_for_update()
            .filter(station_id__in={k[0] for k in keys}, transaction_id__in={k[1] for k in keys})
            .only("pk", "station_id", "transaction_id", *SESSION_METER_FIELDS)
            .order_by("pk")
        )
        for session in candidates:
            key = (session.station_id, session.transaction_id)
            if key in keys:
                sessions[key] = session

    rows: list[tuple] = []
    changed: dict[int, ChargingSession] = {}
    results: list[int | None] = []
    for item in items:
        session = sessions.get((item.station_id, item.transaction_id)) if item.transaction_id else None
        samples = not_yet_stored(session, item.samples) if session is not None else item.samples
        session_id = session.pk if session is not None else None
        rows.extend(
            (
                item.station_id,
                session_id,
                item.evse_id,
                s.timestamp,
                s.measurand,
                s.phase,
                s.location,
                s.unit,
                s.context,
                s.value,
                s.signed_data,
                item.received_at,
            )
            for s in samples
        )
        if session is not None and apply_readings(session, samples):
            changed[session.pk] = session
        results.append(session_id)

    rows_append(MeterValue, _COLUMNS, rows)
    _update_sessions(list(changed.values()))
    return results


def _update_sessions(sessions: list[ChargingSession]) -> None:
    if not sessions:
        return
    if connection.vendor != "postgresql":
        ChargingSession.objects.bulk_update(sessions, SESSION_METER_FIELDS)
        return
    # One UPDATE ... FROM (VALUES ...): Django's bulk_update builds a CASE expression per field and row,
    # which costs more CPU than the rest of the batch together.
    table = ChargingSession._meta.db_table
    values = ", ".join(["(%s, %s, %s, %s, %s::jsonb, %s, %s)"] * len(sessions))
    params: list = []
    for s in sessions:
        params += [
            s.pk,
            s.meter_start_wh,
            s.meter_last_wh,
            s.meter_last_at,
            json.dumps(s.flags),
            s.held_for_review,
            s.updated_at,
        ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS s SET meter_start_wh = v.meter_start_wh, meter_last_wh = v.meter_last_wh, "  # noqa: S608
            "meter_last_at = v.meter_last_at, flags = v.flags, held_for_review = v.held_for_review, "
            "updated_at = v.updated_at "
            f"FROM (VALUES {values}) AS v(id, meter_start_wh, meter_last_wh, meter_last_at, flags, "
            "held_for_review, updated_at) WHERE s.id = v.id",
            params,
        )
