"""The tariff engine: a pure function from (Tariff, SessionUsage) to PriceResult. No models, no I/O, no clock.

Semantics follow OCPI 2.2.1 (mod_tariffs: Tariff object, TariffElement, PriceComponent, TariffRestrictions;
mod_cdrs: the notes on ChargingPeriod and step_size under the CDR object) where OCPI says something, and the
choices below where it does not.

Time and energy
    Instants are integer microseconds since the epoch; energy is integer Wh. Inside a UsagePeriod [s, e) with
    energy E, delivery is assumed uniform (constant power): the energy delivered by instant t is
    floor(E * (t - s) / (e - s)) Wh. A piece [a, b) of the period gets the difference of that at b and at a,
    so the pieces of a period are whole Wh, proportional to their time within 1 Wh, and sum exactly to E.

Pieces (OCPI mod_cdrs: "a new Charging Period at every moment that has relevance for the total costs")
    Periods are cut where any restriction can change, so every restriction is constant within a piece and is
    evaluated at the piece's start:
    - local midnight and every start_time/end_time of every element, on each local date of the session, in
      the tariff's `time_zone` (zoneinfo). A wall time that occurs twice (autumn) is cut at both instants; a
      wall time that does not exist (02:30 on a spring-forward night) has no instant of its own;
    - every UTC offset change (DST transition) inside the session, found by bisection to the second. Between
      two cuts the local clock therefore runs without jumps, and a window such as [02:30, 03:30) on a
      spring-forward night simply starts at 03:00 local, when the clock jumps past 02:30;
    - session start + min_duration_s / max_duration_s (duration = time since `started_at`);
    - the instant the session's cumulative energy first reaches each min_kwh/max_kwh (rounded up to whole Wh,
      which is exact as energy is whole Wh), from the constant-power formula above;
    - the end of the last charging period and the end of the parking grace (see Parking).
    All durations are real elapsed time, so a session over a DST night is priced for the hours it really
    lasted (one fewer in spring, one more in autumn), and the repeated autumn hour is billed once per real
    hour.

Restrictions (OCPI TariffRestrictions; intervals half-open)
    start_time <= local time < end_time, wrapping past midnight when end_time <= start_time (OCPI: "to stop at
    the end of the day use 00:00"; start_time == end_time is read as the whole day; only start_time: until
    midnight; only end_time: from midnight); start_date <= local date < end_date; local weekday in day_of_week;
    min_kwh <= energy delivered so far < max_kwh; min_duration_s <= duration so far < max_duration_s;
    min_power_kw <= average power of the UsagePeriod < max_power_kw (OCPI lets the CPO interpolate these
    moments from meter values; the period's average is what the usage knows). Each instant is judged on its
    own, so a 22:00-06:00 element restricted to FRIDAY applies Friday 22:00-24:00 only. An element with a
    `reservation` restriction never applies (reservation time is not part of a charging session); an element
    with min/max current makes the engine raise UnsupportedTariffError (current is not in the usage).

Choice of element (OCPI Tariff object: "the first Tariff Element with that Dimension in the list with matching
Tariff Restrictions will be used")
    Per piece and per dimension, the first element (in tariff order) whose restrictions all hold and that has a
    component of that dimension prices it (the first such component of the element); if none, that dimension
    is free for the piece. ENERGY: pieces with energy > 0. TIME: charging pieces. PARKING_TIME: idle pieces
    outside the grace window. FLAT: the first matching element with a FLAT component, judged at session start
    (energy 0, duration 0, the first period's power), once per session.

Parking
    An idle piece (charging False) is parking time. The grace window is [G, G + parking_grace_s) where G is the
    end of the last charging period (or `started_at` if the session never charges): the first moment the
    session is idle after charging ended. Idle time in the window is free; idle time outside it is billed as
    PARKING_TIME, including idle time before or between charging periods (OCPI: PARKING_TIME is all "time not
    charging"; with a grace of 0 the engine is plain OCPI). `parking_cap` bounds the sum of the PARKING_TIME
    line amounts with a PARKING_CAP_ADJUSTMENT line.

step_size (OCPI mod_cdrs, CDR object notes: "only taken into account once per session for ENERGY and once
for PARKING_TIME and TIME combined")
    ENERGY: the session's billed energy is rounded up to a multiple of the step_size of the element that priced
    the last energy-carrying piece; the extra goes onto that element's line. TIME/PARKING_TIME: rounded once; if
    the session has billed PARKING_TIME, only the parking total is rounded (OCPI: "In the cases that TIME and
    PARKING_TIME Tariff Elements are both used, step_size is only taken into account for the total parking
    duration"), else the charging total; same rule for the step and the extra. step_size 0 is read as 1, so
    the rounded total is at least whole Wh / whole seconds. A consequence of OCPI's "last element" rule: more
    energy can cost less when it makes an element with a smaller step the last one (tests show a case).

Money (rounding happens exactly here, half up, to the currency's minor unit; `billing.money`)
    1. each line: amount = round(exact billed quantity * unit price). Line quantities are per (dimension,
       element): kWh exact; hours shown to 6 decimals, the amount uses the exact duration;
    2. FLAT line: round(price);
    3. parking cap: if the PARKING_TIME amounts exceed round(parking_cap), a PARKING_CAP_ADJUSTMENT line of
       round(cap) - their sum;
    4. min/max: subtotal = sum of the lines so far; below round(min_price), a MIN_PRICE_ADJUSTMENT line brings
       it to round(min_price); above round(max_price), a MAX_PRICE_ADJUSTMENT line brings it down to it;
    5. subtotal = sum of all line amounts (no rounding needed: every amount is already in minor units);
       tax = round(subtotal * tax_rate); total = subtotal + tax.

Running sessions
    `running_cost` prices a session in progress as if it stopped at `usage_so_far.stopped_at` (the latest
    meter value): same engine, step sizes and max_price included, but no min_price (the session may still
    reach it, and a live display should show what has been consumed). Its grace window starts at the end of
    the last charging period so far; if charging resumes, that idle time becomes billable pause time.

`usage_from_readings` builds a SessionUsage from energy-register readings; see its docstring.
"""

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise
from zoneinfo import ZoneInfo

from billing.money import round_half_up, round_money
from billing.types import (
    WEEKDAYS,
    Dimension,
    PriceComponent,
    PriceLine,
    PriceResult,
    Restrictions,
    SessionUsage,
    Tariff,
    UsagePeriod,
)

US_PER_S = 1_000_000
US_PER_H = 3_600 * US_PER_S
WH_PER_KWH = 1_000
HOURS_DECIMALS = 6

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_ONE_DAY = timedelta(days=1)
# UTC offsets are sampled this often to find DST transitions; tzdata has no two transitions this close.
_OFFSET_SCAN_S = 3 * 3_600


class UnsupportedTariffError(ValueError):
    """The tariff needs data the usage does not carry (min/max current)."""


@dataclass(frozen=True, slots=True)
class _Piece:
    start: int  # µs since the epoch
    end: int
    energy_wh: int
    charging: bool
    in_grace: bool
    local: datetime  # `start` in the site's time zone
    delivered_wh: int  # session energy before `start`
    elapsed_us: int  # session duration before `start`
    power_w: Fraction  # average power of the UsagePeriod the piece belongs to


def price_session(tariff: Tariff, usage: SessionUsage) -> PriceResult:
    """The price of a finished session under `tariff` (module docstring: the semantics)."""
    return _price(tariff, usage, apply_min_price=True)


def running_cost(tariff: Tariff, usage_so_far: SessionUsage) -> PriceResult:
    """The cost so far of a session in progress: `price_session` without min_price."""
    return _price(tariff, usage_so_far, apply_min_price=False)


def usage_from_readings(
    started_at: datetime,
    stopped_at: datetime,
    readings: Iterable[tuple[datetime, int]],
    *,
    idle_power_w: Decimal | int = 0,
) -> SessionUsage:
    """A SessionUsage from energy-register readings `(timestamp, register_wh)` as meter values give them.

    Readings are sorted by time; repeated readings of one instant must agree (else ValueError). The first must
    be at `started_at` and the last at `stopped_at` (the meter start and stop values), so that the periods
    cover the session. Between consecutive readings: energy = difference of the registers, and the period is
    charging iff its average power is above `idle_power_w` (default 0: iff the register increased; a few
    hundred W keeps a car's standby draw from counting as charging). A register that goes backwards raises
    ValueError: such sessions are held for review upstream, never priced.
    """
    if isinstance(idle_power_w, bool) or not isinstance(idle_power_w, Decimal | int) or idle_power_w < 0:
        raise ValueError(f"idle_power_w must be a non-negative int or Decimal, got {idle_power_w!r}")
    readings = list(readings)
    for name, instant in [("started_at", started_at), ("stopped_at", stopped_at)] + [
        ("reading timestamp", timestamp) for timestamp, _ in readings
    ]:
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware, got {instant.isoformat()}")
    ordered: list[tuple[datetime, int]] = []
    # By instant, not by `<` on the datetimes: those sharing a tzinfo compare by wall clock, fold ignored.
    for timestamp, register_wh in sorted(readings, key=lambda reading: _us(reading[0])):
        if isinstance(register_wh, bool) or not isinstance(register_wh, int):
            raise TypeError(f"register_wh must be an int (Wh), got {type(register_wh).__name__}")
        if ordered and _us(ordered[-1][0]) == _us(timestamp):
            if ordered[-1][1] != register_wh:
                raise ValueError(f"two different register values at {timestamp.isoformat()}")
            continue
        ordered.append((timestamp, register_wh))
    if not ordered or _us(ordered[0][0]) != _us(started_at) or _us(ordered[-1][0]) != _us(stopped_at):
        raise ValueError("readings must start at started_at and end at stopped_at")
    threshold_w = Fraction(idle_power_w)
    periods = []
    for (start, start_wh), (end, end_wh) in pairwise(ordered):
        energy_wh = end_wh - start_wh
        if energy_wh < 0:
            raise ValueError(
                f"energy register went backwards between {start.isoformat()} and {end.isoformat()}: "
                f"{start_wh} -> {end_wh} Wh"
            )
        power_w = Fraction(energy_wh * US_PER_H, _us(end) - _us(start))
        periods.append(UsagePeriod(start=start, end=end, energy_wh=energy_wh, charging=power_w > threshold_w))
    return SessionUsage(started_at=started_at, stopped_at=stopped_at, periods=tuple(periods))


def _price(tariff: Tariff, usage: SessionUsage, *, apply_min_price: bool) -> PriceResult:
    _check_supported(tariff)
    tz = ZoneInfo(tariff.time_zone)
    currency = tariff.currency
    start, stop = _us(usage.started_at), _us(usage.stopped_at)
    grace_start = max((_us(period.end) for period in usage.periods if period.charging), default=start)
    grace_end = grace_start + tariff.parking_grace_s * US_PER_S
    cuts = _restriction_cuts(tariff, tz, start, stop) | {grace_start, grace_end}
    pieces = _pieces(
        usage,
        tz,
        cuts=sorted(cut for cut in cuts if start < cut < stop),
        thresholds_wh=_energy_thresholds(tariff),
        grace=(grace_start, grace_end),
    )

    # (dimension, element index) -> used quantity in Wh or µs and the component it is priced with, and the
    # element of each dimension's last piece.
    used: dict[tuple[Dimension, int], int] = {}
    priced_with: dict[tuple[Dimension, int], PriceComponent] = {}
    last_element: dict[Dimension, int] = {}
    charging_us = parking_us = billed_parking_us = 0
    for piece in pieces:
        duration = piece.end - piece.start
        billed: list[tuple[Dimension, int]] = []
        if piece.energy_wh > 0:
            billed.append((Dimension.ENERGY, piece.energy_wh))
        if piece.charging:
            charging_us += duration
            billed.append((Dimension.TIME, duration))
        else:
            parking_us += duration
            if not piece.in_grace:
                billed_parking_us += duration
                billed.append((Dimension.PARKING_TIME, duration))
        for dimension, quantity in billed:
            match = _first_match(tariff, dimension, piece)
            if match is not None:
                index, component = match
                used[dimension, index] = used.get((dimension, index), 0) + quantity
                priced_with[dimension, index] = component
                last_element[dimension] = index

    lines: list[PriceLine] = []
    flat = _first_match(tariff, Dimension.FLAT, pieces[0] if pieces else _start_piece(usage, tz))
    if flat is not None:
        index, component = flat
        amount = round_money(component.price, currency)
        one = Decimal(1)
        lines.append(PriceLine(Dimension.FLAT, one, "session", component.price, amount, index, one))

    # OCPI 2.2.1 mod_cdrs: step_size once for ENERGY, once for TIME and PARKING_TIME together (parking wins).
    time_rounded = Dimension.PARKING_TIME if Dimension.PARKING_TIME in last_element else Dimension.TIME
    for dimension in (Dimension.ENERGY, Dimension.TIME, Dimension.PARKING_TIME):
        per_element = sorted((index, quantity) for (dim, index), quantity in used.items() if dim == dimension)
        if not per_element:
            continue
        last = last_element[dimension]
        extra = 0
        if dimension in (Dimension.ENERGY, time_rounded):
            total = sum(quantity for _, quantity in per_element)
            step = max(priced_with[dimension, last].step_size, 1)
            step *= 1 if dimension == Dimension.ENERGY else US_PER_S
            extra = _ceil_div(total, step) * step - total
        for index, quantity in per_element:
            component = priced_with[dimension, index]
            billed_quantity = quantity + (extra if index == last else 0)
            lines.append(_usage_line(dimension, index, component, quantity, billed_quantity, currency))

    zero = round_money(0, currency)
    if tariff.parking_cap is not None:
        cap = round_money(tariff.parking_cap, currency)
        parking = sum((line.amount for line in lines if line.dimension == Dimension.PARKING_TIME), zero)
        if parking > cap:
            lines.append(_adjustment(Dimension.PARKING_CAP_ADJUSTMENT, cap - parking))

    subtotal = sum((line.amount for line in lines), zero)
    if apply_min_price and tariff.min_price is not None:
        floor = round_money(tariff.min_price, currency)
        if subtotal < floor:
            lines.append(_adjustment(Dimension.MIN_PRICE_ADJUSTMENT, floor - subtotal))
    if tariff.max_price is not None:
        ceiling = round_money(tariff.max_price, currency)
        if subtotal > ceiling:
            lines.append(_adjustment(Dimension.MAX_PRICE_ADJUSTMENT, ceiling - subtotal))

    subtotal = sum((line.amount for line in lines), zero)
    tax = round_money(Fraction(subtotal) * Fraction(tariff.tax_rate), currency)
    return PriceResult(
        currency=currency,
        lines=tuple(lines),
        subtotal=subtotal,
        tax_rate=tariff.tax_rate,
        tax=tax,
        total=subtotal + tax,
        energy_wh=usage.energy_wh,
        charging_s=_seconds(charging_us),
        parking_s=_seconds(parking_us),
        billed_parking_s=_seconds(billed_parking_us),
    )


def _check_supported(tariff: Tariff) -> None:
    for index, element in enumerate(tariff.elements):
        restrictions = element.restrictions
        if restrictions is not None and (
            restrictions.min_current_a is not None or restrictions.max_current_a is not None
        ):
            raise UnsupportedTariffError(
                f"element {index} is restricted by current, which the session usage does not carry"
            )


def _restriction_cuts(tariff: Tariff, tz: ZoneInfo, start: int, stop: int) -> set[int]:
    """Instants (µs) at which a time, date, weekday or duration restriction may change (module docstring)."""
    cuts = set(_offset_changes(tz, start, stop))
    wall_times = {time(0)}
    for element in tariff.elements:
        restrictions = element.restrictions
        if restrictions is None:
            continue
        wall_times.update(t for t in (restrictions.start_time, restrictions.end_time) if t is not None)
        cuts.update(
            start + seconds * US_PER_S
            for seconds in (restrictions.min_duration_s, restrictions.max_duration_s)
            if seconds is not None
        )
    # One day of margin each side: cheap, and safe whatever the offset.
    day: date = _local(start, tz).date() - _ONE_DAY
    last_day = _local(stop, tz).date() + _ONE_DAY
    while day <= last_day:
        for wall_time in wall_times:
            cuts.update(_wall_instants(tz, datetime.combine(day, wall_time)))
        day += _ONE_DAY
    return cuts


def _wall_instants(tz: ZoneInfo, wall: datetime) -> set[int]:
    """The instants (µs) at which the local clock shows `wall` (naive): none, one, or two (autumn)."""
    instants = set()
    for fold in (0, 1):
        instant = wall.replace(tzinfo=tz, fold=fold).astimezone(UTC)
        # A wall time in a spring-forward gap does not survive the round trip.
        if instant.astimezone(tz).replace(tzinfo=None) == wall:
            instants.add(_us(instant))
    return instants


def _offset_changes(tz: ZoneInfo, start: int, stop: int) -> list[int]:
    """The instants (µs, whole seconds) in [start, stop] at which the UTC offset of `tz` changes."""
    low = start // US_PER_S
    end = _ceil_div(stop, US_PER_S)
    low_offset = _utcoffset(tz, low)
    changes = []
    while low < end:
        high = min(low + _OFFSET_SCAN_S, end)
        high_offset = _utcoffset(tz, high)
        if high_offset != low_offset:
            before, after = low, high
            while after - before > 1:
                middle = (before + after) // 2
                if _utcoffset(tz, middle) == low_offset:
                    before = middle
                else:
                    after = middle
            changes.append(after * US_PER_S)
        low, low_offset = high, high_offset
    return changes


def _energy_thresholds(tariff: Tariff) -> list[int]:
    thresholds: set[int] = set()
    for element in tariff.elements:
        restrictions = element.restrictions
        if restrictions is not None:
            thresholds.update(
                _wh(kwh) for kwh in (restrictions.min_kwh, restrictions.max_kwh) if kwh is not None
            )
    return sorted(threshold for threshold in thresholds if threshold > 0)


def _pieces(
    usage: SessionUsage, tz: ZoneInfo, *, cuts: list[int], thresholds_wh: list[int], grace: tuple[int, int]
) -> list[_Piece]:
    session_start = _us(usage.started_at)
    pieces = []
    delivered = 0
    for period in usage.periods:
        start, end, energy = _us(period.start), _us(period.end), period.energy_wh
        duration = end - start
        points = set(cuts[bisect_right(cuts, start) : bisect_left(cuts, end)])
        for threshold in thresholds_wh:
            if delivered < threshold <= delivered + energy:
                # First instant at which floor(energy * (t - start) / duration) reaches the threshold.
                at = start + _ceil_div((threshold - delivered) * duration, energy)
                if at < end:
                    points.add(at)
        power_w = Fraction(energy * US_PER_H, duration)
        within = 0  # energy of this period before the piece
        for low, high in pairwise([start, *sorted(points), end]):
            upto = energy * (high - start) // duration
            pieces.append(
                _Piece(
                    start=low,
                    end=high,
                    energy_wh=upto - within,
                    charging=period.charging,
                    in_grace=not period.charging and grace[0] <= low < grace[1],
                    local=_local(low, tz),
                    delivered_wh=delivered + within,
                    elapsed_us=low - session_start,
                    power_w=power_w,
                )
            )
            within = upto
        delivered += energy
    return pieces


def _start_piece(usage: SessionUsage, tz: ZoneInfo) -> _Piece:
    """The context of a session without periods (started_at == stopped_at), for its FLAT fee."""
    start = _us(usage.started_at)
    return _Piece(start, start, 0, False, False, _local(start, tz), 0, 0, Fraction(0))


def _first_match(tariff: Tariff, dimension: Dimension, piece: _Piece) -> tuple[int, PriceComponent] | None:
    for index, element in enumerate(tariff.elements):
        component = _component(element.price_components, dimension)
        if component is not None and _applies(element.restrictions, piece):
            return index, component
    return None


def _component(components: tuple[PriceComponent, ...], dimension: Dimension) -> PriceComponent | None:
    return next((component for component in components if component.type == dimension), None)


def _applies(restrictions: Restrictions | None, piece: _Piece) -> bool:
    if restrictions is None:
        return True
    r = restrictions
    local_date = piece.local.date()
    return (
        r.reservation is None
        and (r.start_date is None or local_date >= r.start_date)
        and (r.end_date is None or local_date < r.end_date)
        and (r.day_of_week is None or WEEKDAYS[local_date.weekday()] in r.day_of_week)
        and _in_daily_window(piece.local.time(), r.start_time, r.end_time)
        and (r.min_kwh is None or piece.delivered_wh >= _wh(r.min_kwh))
        and (r.max_kwh is None or piece.delivered_wh < _wh(r.max_kwh))
        and (r.min_duration_s is None or piece.elapsed_us >= r.min_duration_s * US_PER_S)
        and (r.max_duration_s is None or piece.elapsed_us < r.max_duration_s * US_PER_S)
        and (r.min_power_kw is None or piece.power_w >= Fraction(r.min_power_kw) * 1000)
        and (r.max_power_kw is None or piece.power_w < Fraction(r.max_power_kw) * 1000)
    )


def _in_daily_window(local_time: time, start: time | None, end: time | None) -> bool:
    """OCPI start_time/end_time: [start, end), wrapping past midnight when end <= start."""
    if start is None and end is None:
        return True
    low = start if start is not None else time(0)
    if end is None:
        return local_time >= low
    if low < end:
        return low <= local_time < end
    return local_time >= low or local_time < end


def _usage_line(
    dimension: Dimension, index: int, component: PriceComponent, used: int, billed: int, currency: str
) -> PriceLine:
    if dimension == Dimension.ENERGY:
        exact = Fraction(billed, WH_PER_KWH)
        quantity, used_quantity, unit = _kwh(billed), _kwh(used), "kWh"
    else:
        exact = Fraction(billed, US_PER_H)
        quantity = round_half_up(exact, HOURS_DECIMALS)
        used_quantity, unit = round_half_up(Fraction(used, US_PER_H), HOURS_DECIMALS), "h"
    amount = round_money(exact * Fraction(component.price), currency)
    return PriceLine(dimension, quantity, unit, component.price, amount, index, used_quantity)


def _adjustment(dimension: Dimension, amount: Decimal) -> PriceLine:
    one = Decimal(1)
    return PriceLine(dimension, one, "session", amount, amount, None, one)


def _wh(kwh: Decimal) -> int:
    """A kWh bound as whole Wh: energy is whole Wh, so `wh >= kwh * 1000` iff `wh >= ceil(kwh * 1000)`."""
    return math.ceil(Fraction(kwh) * WH_PER_KWH)


def _kwh(wh: int) -> Decimal:
    return Decimal(f"{wh}E-3")


def _seconds(us: int) -> Decimal:
    return Decimal(us // US_PER_S) if us % US_PER_S == 0 else Decimal(f"{us}E-6")


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _us(instant: datetime) -> int:
    return (instant - _EPOCH) // _ONE_US


def _local(us: int, tz: ZoneInfo) -> datetime:
    return (_EPOCH + timedelta(microseconds=us)).astimezone(tz)


def _utcoffset(tz: ZoneInfo, epoch_s: int) -> timedelta | None:
    return datetime.fromtimestamp(epoch_s, tz).utcoffset()
