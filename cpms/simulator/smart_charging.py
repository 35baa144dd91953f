"""Charging profiles of a simulated charger (OCPP 1.6 3.13 Smart Charging, 2.0.1 K) and the composite
schedule made of them. Protocol-independent: the version mappers at the bottom turn a 1.6
csChargingProfiles or a 2.0.1 chargingProfile into a ChargingProfile.

Profiles are kept per EVSE (1.6: connector; 0 is the whole charger). Setting a profile replaces one with
the same id, or with the same purpose and stack level on the same EVSE (1.6 5.16). Transaction-bound
profiles (TxProfile) are dropped when the transaction ends.

The composite schedule (1.6 5.7, 2.0.1 K08) at each moment: among the station maximum profiles the
active one with the highest stack level; among the transaction profiles the active TxProfile with the
highest stack level, else the TxDefaultProfile; the lower of the two limits. Where no profile is active
the connector's hardware limit applies. Limits in A are per phase; in W for all phases; converting
between them assumes 230 V and the period's number of phases (3 when not given). The profiles do not
change how the simulated EV charges.
"""

import datetime as dt
import math
from dataclasses import dataclass, field

from cpms.simulator.meter import NOMINAL_VOLTAGE_V, parse_time

HARDWARE_LIMIT_A = 16.0
DEFAULT_PHASES = 3
# Station-wide limits: 1.6 ChargePointMaxProfile, 2.0.1 ChargingStationMaxProfile and the limits of an
# external system (ChargingStationExternalConstraints).
MAXIMUM_PURPOSES = frozenset(
    {"ChargePointMaxProfile", "ChargingStationMaxProfile", "ChargingStationExternalConstraints"}
)
TX_PROFILE = "TxProfile"
TX_DEFAULT_PROFILE = "TxDefaultProfile"
RECURRENCE_S = {"Daily": 86_400, "Weekly": 7 * 86_400}
# A composite schedule has at most this many periods (a long duration over a recurring profile could
# otherwise ask for thousands); the schedule's duration is cut where the last one ends.
MAX_PERIODS = 256


@dataclass(frozen=True)
class Period:
    start_s: int
    limit: float
    phases: int | None = None


@dataclass(frozen=True)
class Schedule:
    unit: str
    periods: tuple[Period, ...]
    start: dt.datetime | None = None
    duration_s: int | None = None


@dataclass
class ChargingProfile:
    profile_id: int
    evse_id: int
    stack_level: int
    purpose: str
    kind: str
    schedules: tuple[Schedule, ...]
    # The request's profile as received (snake_case): 2.0.1 ReportChargingProfiles sends it back.
    payload: dict
    recurrency: str | None = None
    valid_from: dt.datetime | None = None
    valid_to: dt.datetime | None = None
    transaction_id: str | None = None
    # When it was set: the start of an Absolute or Recurring schedule without startSchedule.
    set_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


@dataclass(frozen=True)
class CompositeSchedule:
    evse_id: int
    start: dt.datetime
    duration_s: int
    unit: str
    periods: tuple[Period, ...]


class ProfileStore:
    def __init__(self) -> None:
        self.profiles: dict[int, ChargingProfile] = {}

    def install(self, profile: ChargingProfile) -> None:
        for other in list(self.profiles.values()):
            same_slot = (other.evse_id, other.purpose, other.stack_level) == (
                profile.evse_id,
                profile.purpose,
                profile.stack_level,
            )
            if other.profile_id == profile.profile_id or same_slot:
                del self.profiles[other.profile_id]
        self.profiles[profile.profile_id] = profile

    def matching(
        self,
        *,
        profile_ids: list[int] | None = None,
        evse_id: int | None = None,
        purpose: str | None = None,
        stack_level: int | None = None,
    ) -> list[ChargingProfile]:
        return [
            p
            for p in self.profiles.values()
            if (not profile_ids or p.profile_id in profile_ids)
            and (evse_id is None or p.evse_id == evse_id)
            and (purpose is None or p.purpose == purpose)
            and (stack_level is None or p.stack_level == stack_level)
        ]

    def clear(self, profiles: list[ChargingProfile]) -> bool:
        for profile in profiles:
            self.profiles.pop(profile.profile_id, None)
        return bool(profiles)

    def transaction_ended(self, evse_id: int) -> None:
        """A TxProfile lives as long as its transaction (OCPP 1.6 3.13.1)."""
        self.clear(self.matching(evse_id=evse_id, purpose=TX_PROFILE))

    def composite(
        self,
        *,
        evse_id: int,
        duration_s: int,
        unit: str | None,
        transaction_start: dt.datetime | None = None,
        now: dt.datetime | None = None,
    ) -> CompositeSchedule | None:
        """The composite schedule of `evse_id` from now for `duration_s`; None when no profile applies
        to it (the caller answers Rejected). EVSE 0: the station-wide profiles only."""
        relevant = [p for p in self.profiles.values() if p.evse_id in {0, evse_id}]
        if not relevant:
            return None
        origin = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
        unit = unit or relevant_unit(relevant)
        duration_s = max(0, duration_s)
        offsets = sorted(
            {0}
            | {
                offset
                for p in relevant
                for offset in _change_offsets(p, origin, duration_s, transaction_start)
                if 0 < offset < duration_s
            }
        )
        periods: list[Period] = []
        for offset in offsets:
            moment = origin + dt.timedelta(seconds=offset)
            limit, phases = _combined(relevant, moment, unit, origin, transaction_start)
            if periods and (periods[-1].limit, periods[-1].phases) == (limit, phases):
                continue
            if len(periods) == MAX_PERIODS:
                duration_s = offset
                break
            periods.append(Period(start_s=offset, limit=limit, phases=phases))
        return CompositeSchedule(
            evse_id=evse_id, start=origin, duration_s=duration_s, unit=unit, periods=tuple(periods)
        )


def relevant_unit(profiles: list[ChargingProfile]) -> str:
    """The unit of the prevailing profile (highest stack level first) when the CSMS names none."""
    best = max(profiles, key=lambda p: (p.stack_level, p.profile_id))
    return best.schedules[0].unit if best.schedules else "A"


def _combined(
    profiles: list[ChargingProfile],
    moment: dt.datetime,
    unit: str,
    origin: dt.datetime,
    transaction_start: dt.datetime | None,
) -> tuple[float, int | None]:
    maximum = _prevailing(
        [p for p in profiles if p.purpose in MAXIMUM_PURPOSES], moment, origin, transaction_start
    )
    transaction = _prevailing(
        [p for p in profiles if p.purpose == TX_PROFILE], moment, origin, transaction_start
    ) or _prevailing(
        [p for p in profiles if p.purpose == TX_DEFAULT_PROFILE], moment, origin, transaction_start
    )
    candidates = []
    for found in (maximum, transaction):
        if found is not None:
            limit, from_unit, phases = found
            candidates.append((_convert(limit, from_unit, unit, phases), phases))
    if not candidates:
        return _convert(HARDWARE_LIMIT_A, "A", unit, DEFAULT_PHASES), None
    return min(candidates, key=lambda candidate: candidate[0])


def _prevailing(
    profiles: list[ChargingProfile],
    moment: dt.datetime,
    origin: dt.datetime,
    transaction_start: dt.datetime | None,
) -> tuple[float, str, int | None] | None:
    """(limit, unit, phases) of the active profile with the highest stack level, if any is active."""
    for profile in sorted(profiles, key=lambda p: p.stack_level, reverse=True):
        found = _limit_at(profile, moment, origin, transaction_start)
        if found is not None:
            return found
    return None


def _limit_at(
    profile: ChargingProfile, moment: dt.datetime, origin: dt.datetime, transaction_start: dt.datetime | None
) -> tuple[float, str, int | None] | None:
    if profile.valid_from is not None and moment < profile.valid_from:
        return None
    if profile.valid_to is not None and moment >= profile.valid_to:
        return None
    for schedule in profile.schedules:
        start = _schedule_start(profile, schedule, moment, origin, transaction_start)
        if moment < start:
            continue
        offset = (moment - start).total_seconds()
        if schedule.duration_s is not None and offset >= schedule.duration_s:
            continue
        current = None
        for period in schedule.periods:
            if period.start_s <= offset:
                current = period
        if current is not None:
            return current.limit, schedule.unit, current.phases
    return None


def _schedule_start(
    profile: ChargingProfile,
    schedule: Schedule,
    moment: dt.datetime,
    origin: dt.datetime,
    transaction_start: dt.datetime | None,
) -> dt.datetime:
    """Relative: the transaction's start, or the composite's own start without a transaction. Absolute:
    startSchedule. Recurring: startSchedule moved by whole days or weeks to the last repetition."""
    if profile.kind == "Relative":
        return transaction_start or origin
    base = schedule.start or profile.set_at
    every = RECURRENCE_S.get(profile.recurrency or "") if profile.kind == "Recurring" else None
    if every is None or moment < base:
        return base
    return base + dt.timedelta(seconds=every * math.floor((moment - base).total_seconds() / every))


def _change_offsets(
    profile: ChargingProfile, origin: dt.datetime, duration_s: int, transaction_start: dt.datetime | None
) -> set[int]:
    """Seconds from `origin` at which this profile's limit may change."""
    end = origin + dt.timedelta(seconds=duration_s)
    moments = [m for m in (profile.valid_from, profile.valid_to) if m is not None]
    for schedule in profile.schedules:
        first = _schedule_start(profile, schedule, origin, origin, transaction_start)
        starts = [first]
        every = RECURRENCE_S.get(profile.recurrency or "") if profile.kind == "Recurring" else None
        if every is not None:
            repetitions = min(MAX_PERIODS, math.ceil(duration_s / every) + 1)
            starts = [first + dt.timedelta(seconds=every * n) for n in range(repetitions)]
        for start in starts:
            if start >= end:
                break
            moments.extend(start + dt.timedelta(seconds=period.start_s) for period in schedule.periods)
            if schedule.duration_s is not None:
                moments.append(start + dt.timedelta(seconds=schedule.duration_s))
    return {math.ceil((moment - origin).total_seconds()) for moment in moments}


def _convert(limit: float, from_unit: str, to_unit: str, phases: int | None) -> float:
    phases = phases or DEFAULT_PHASES
    if from_unit == to_unit:
        value = limit
    elif to_unit == "W":
        value = limit * NOMINAL_VOLTAGE_V * phases
    else:
        value = limit / (NOMINAL_VOLTAGE_V * phases)
    # The schemas ask for multiples of 0.1.
    return round(value, 1)


# --- version mappers (payloads snake_case, as the `ocpp` package hands them over) ----------------------


def from_v16(connector_id: int, profile: dict) -> ChargingProfile:
    """A 1.6 csChargingProfiles (SetChargingProfile) or RemoteStartTransaction.chargingProfile."""
    schedule = profile["charging_schedule"]
    return ChargingProfile(
        profile_id=profile["charging_profile_id"],
        evse_id=connector_id,
        stack_level=profile["stack_level"],
        purpose=profile["charging_profile_purpose"],
        kind=profile["charging_profile_kind"],
        recurrency=profile.get("recurrency_kind"),
        valid_from=parse_time(profile.get("valid_from")),
        valid_to=parse_time(profile.get("valid_to")),
        transaction_id=_text(profile.get("transaction_id")),
        schedules=(_schedule(schedule),),
        payload=profile,
    )


def from_v201(evse_id: int, profile: dict) -> ChargingProfile:
    """A 2.0.1 chargingProfile (SetChargingProfile, RequestStartTransaction)."""
    return ChargingProfile(
        profile_id=profile["id"],
        evse_id=evse_id,
        stack_level=profile["stack_level"],
        purpose=profile["charging_profile_purpose"],
        kind=profile["charging_profile_kind"],
        recurrency=profile.get("recurrency_kind"),
        valid_from=parse_time(profile.get("valid_from")),
        valid_to=parse_time(profile.get("valid_to")),
        transaction_id=_text(profile.get("transaction_id")),
        schedules=tuple(_schedule(schedule) for schedule in profile["charging_schedule"]),
        payload=profile,
    )


def _schedule(schedule: dict) -> Schedule:
    periods = sorted(
        (
            Period(start_s=p["start_period"], limit=float(p["limit"]), phases=p.get("number_phases"))
            for p in schedule["charging_schedule_period"]
        ),
        key=lambda period: period.start_s,
    )
    return Schedule(
        unit=schedule["charging_rate_unit"],
        periods=tuple(periods),
        start=parse_time(schedule.get("start_schedule")),
        duration_s=schedule.get("duration"),
    )


def _text(value) -> str | None:
    return None if value is None else str(value)


def periods_payload(composite: CompositeSchedule) -> list[dict]:
    """chargingSchedulePeriod elements, snake_case (limits as whole numbers where they are)."""
    periods = []
    for period in composite.periods:
        limit = int(period.limit) if period.limit == int(period.limit) else period.limit
        item = {"start_period": period.start_s, "limit": limit}
        if period.phases is not None:
            item["number_phases"] = period.phases
        periods.append(item)
    return periods
