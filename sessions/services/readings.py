"""A session's meter readings: energy from register readings, repeats dropped, the running meter state moved
forward, and the flags what a charger reports puts on a session (docs/reliability.md section C: what does not
add up is flagged and held from billing, never refused). Used by the transaction services and the batched
ingest."""

from collections.abc import Sequence
from datetime import datetime

from django.utils import timezone

from sessions.enums import ENERGY_REGISTER, HOLD_FLAGS, UNIT_TO_WH, AnomalyKind, SessionFlag
from sessions.models import ChargingSession, MeterValue, SessionAnomaly
from sessions.types import Sample


def energy_wh(sample: Sample) -> int | None:
    if sample.measurand != ENERGY_REGISTER or sample.value is None or sample.phase:
        return None
    factor = UNIT_TO_WH.get(sample.unit)
    if factor is None:
        return None
    return int(sample.value * factor)


def first_energy(samples: Sequence[Sample]) -> int | None:
    readings = [(s.timestamp, e) for s in samples if (e := energy_wh(s)) is not None]
    return min(readings)[1] if readings else None


def flags_add(session: ChargingSession, *flags: str) -> None:
    for flag in flags:
        if flag not in session.flags:
            session.flags.append(str(flag))
    if any(flag in HOLD_FLAGS for flag in session.flags):
        session.held_for_review = True


def clock_out_of_window_keep(
    session: ChargingSession, *, field: str, charger_value: str, used: datetime
) -> None:
    """docs/reliability.md case 45: a charger time outside the accepted window (`charger_time` in
    cpms/ocpp/mappers.py) was replaced by our receive time `used`. The value as sent is kept here, on a
    SessionAnomaly that billing never reads; the session is flagged (not held: its times are ours, and a
    charger whose clock is lost after a power cut would otherwise never be billed). Caller saves the session's
    flags."""
    flags_add(session, SessionFlag.CLOCK_OUT_OF_WINDOW)
    SessionAnomaly.objects.create(
        station_id=session.station_id,
        session=session,
        kind=AnomalyKind.CLOCK_OUT_OF_WINDOW,
        transaction_id=session.transaction_id,
        detail={"field": field, "charger_value": charger_value, "used": used.isoformat()},
    )


def not_yet_stored(session: ChargingSession, samples: Sequence[Sample]) -> list[Sample]:
    """Drop samples this session already has. A 1.6 charger that re-sends MeterValues after a reconnect
    uses a new message id, so only the content tells. Only readings no newer than the latest one can be
    repeats, so the usual case (new readings) costs no query."""
    if (
        not samples
        or session.meter_last_at is None
        or min(s.timestamp for s in samples) > session.meter_last_at
    ):
        return list(samples)
    seen = set(
        MeterValue.objects.filter(session=session, timestamp__in={s.timestamp for s in samples}).values_list(
            "timestamp", "measurand", "phase", "location", "context"
        )
    )
    return [s for s in samples if (s.timestamp, s.measurand, s.phase, s.location, s.context) not in seen]


# The session fields apply_readings may change.
SESSION_METER_FIELDS = [
    "meter_start_wh",
    "meter_last_wh",
    "meter_last_at",
    "flags",
    "held_for_review",
    "updated_at",
]


def apply_readings(session: ChargingSession, samples: Sequence[Sample]) -> bool:
    """Move the session's running meter state forward with these samples (in memory); True if it changed.

    Energy comes from register readings ordered by the charger's timestamps, not by arrival
    (docs/reliability.md case 23): a late batch does not move the running total back. A register that goes
    down at a later time flags the session (case 25). A sample whose charger time was out of the window (its
    `timestamp` is our receive time) flags the session, and the first such sample of a session is kept
    as sent on a SessionAnomaly (docs/reliability.md case 45; the only write here, once per session).
    """
    changed = False
    late_clock = next((s.charger_timestamp for s in samples if s.charger_timestamp), "")
    if late_clock and SessionFlag.CLOCK_OUT_OF_WINDOW not in session.flags:
        clock_out_of_window_keep(
            session,
            field="meter_value",
            charger_value=late_clock,
            used=next(s.timestamp for s in samples if s.charger_timestamp),
        )
        changed = True
    for sample in sorted(samples, key=lambda s: s.timestamp):
        energy = energy_wh(sample)
        if energy is None:
            continue
        if session.meter_start_wh is None:
            session.meter_start_wh = energy  # 2.0.1 start without a reading: the first one counts
            changed = True
        if session.meter_last_at is None or sample.timestamp >= session.meter_last_at:
            if session.meter_last_wh is not None and energy < session.meter_last_wh:
                flags_add(session, SessionFlag.METER_BACKWARDS)
            session.meter_last_wh = energy
            session.meter_last_at = sample.timestamp
            changed = True
    if changed:
        session.updated_at = timezone.now()
    return changed


def samples_record(
    session: ChargingSession | None,
    station_id: int,
    evse_id: int | None,
    samples: Sequence[Sample],
    received_at: datetime,
) -> None:
    """Store the samples (without those the session already has) and move the session's meter state."""
    if session is not None:
        samples = not_yet_stored(session, samples)
    if samples:
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
    if session is not None and apply_readings(session, samples):
        session.save(update_fields=SESSION_METER_FIELDS)
