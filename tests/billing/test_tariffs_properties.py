"""Tariff engine properties (hypothesis): totals add up, amounts are in minor units, energy is conserved across
time-of-use splits, min/max price and parking cap hold, DST nights keep real durations, more energy never costs
less, and the engine is pure.

Sessions start near DST transitions of the zones drawn (Berlin, New York, Lord Howe with its 30-minute shift)
and away from them. Deterministic: `derandomize=True`, no example database.
"""

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.money import minor_unit, round_money
from billing.tariffs import price_session, running_cost
from billing.types import (
    WEEKDAYS,
    Dimension,
    PriceComponent,
    Restrictions,
    SessionUsage,
    Tariff,
    TariffElement,
    UsagePeriod,
)

settings.register_profile(
    "billing-tariffs",
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = settings.get_profile("billing-tariffs")

TIME_ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
CURRENCIES = ["EUR", "USD", "JPY", "BHD", "KWD", "XYZ"]
ANCHORS = [
    datetime(2026, 3, 29, 1, tzinfo=UTC),  # Berlin spring forward
    datetime(2026, 10, 25, 1, tzinfo=UTC),  # Berlin fall back
    datetime(2026, 3, 8, 7, tzinfo=UTC),  # New York spring forward
    datetime(2026, 11, 1, 6, tzinfo=UTC),  # New York fall back
    datetime(2026, 4, 4, 15, tzinfo=UTC),  # Lord Howe: back 30 min
    datetime(2026, 10, 3, 15, 30, tzinfo=UTC),  # Lord Howe: forward 30 min
    datetime(2026, 6, 12, 20, tzinfo=UTC),  # an ordinary Friday evening
]
COMPONENT_TYPES = ["ENERGY", "TIME", "PARKING_TIME", "FLAT"]
STEP_SIZES = [0, 1, 60, 100, 300, 1000]


def decimals(low: int, high: int, places: int) -> st.SearchStrategy[Decimal]:
    """Decimals in [low, high] with `places` decimals (st.decimals is several times slower to draw)."""
    scale = 10**places
    return st.integers(low * scale, high * scale).map(lambda units: Decimal(units).scaleb(-places))


prices = decimals(0, 5, 4)
money_bounds = decimals(0, 20, 2)
quarter_hours = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))


@st.composite
def restrictions(draw, *, energy_dependent: bool = True) -> Restrictions | None:
    fields = [
        "start_time",
        "end_time",
        "start_date",
        "end_date",
        "min_duration_s",
        "max_duration_s",
        "day_of_week",
    ]
    if energy_dependent:
        fields += ["min_kwh", "max_kwh", "min_power_kw", "max_power_kw"]
    chosen = draw(st.sets(st.sampled_from(fields), max_size=3))
    values = {
        "start_time": quarter_hours,
        "end_time": quarter_hours,
        "start_date": st.dates(date(2026, 3, 1), date(2026, 11, 30)),
        "end_date": st.dates(date(2026, 3, 1), date(2026, 11, 30)),
        "min_duration_s": st.integers(0, 6 * 3600),
        "max_duration_s": st.integers(0, 6 * 3600),
        "day_of_week": st.frozensets(st.sampled_from(WEEKDAYS), min_size=1),
        "min_kwh": decimals(0, 60, 3),
        "max_kwh": decimals(0, 60, 3),
        "min_power_kw": decimals(0, 50, 1),
        "max_power_kw": decimals(0, 50, 1),
    }
    kwargs = {name: draw(values[name]) for name in sorted(chosen)}
    return Restrictions(**kwargs) if kwargs else None


@st.composite
def elements(draw, *, energy_dependent: bool = True, energy_steps=STEP_SIZES) -> TariffElement:
    components = []
    for kind in draw(st.lists(st.sampled_from(COMPONENT_TYPES), min_size=1, max_size=3)):
        steps = energy_steps if kind == "ENERGY" else STEP_SIZES
        components.append(PriceComponent(kind, draw(prices), draw(st.sampled_from(steps))))
    return TariffElement(tuple(components), draw(restrictions(energy_dependent=energy_dependent)))


@st.composite
def tariffs(draw, *, energy_dependent: bool = True, energy_steps=STEP_SIZES, energy_fallback: bool = False):
    tariff_elements = draw(
        st.lists(elements(energy_dependent=energy_dependent, energy_steps=energy_steps), max_size=3)
    )
    if energy_fallback:
        # An unrestricted ENERGY element last: every Wh has a price (OCPI's advised "default" element).
        fallback = PriceComponent("ENERGY", draw(prices), draw(st.sampled_from(energy_steps)))
        tariff_elements.append(TariffElement((fallback,)))
    elif draw(st.booleans()):
        # Often an unrestricted element last, as real tariffs have: sessions then cost enough, often enough,
        # to reach max_price and parking_cap.
        tariff_elements.append(replace(draw(elements(energy_steps=energy_steps)), restrictions=None))
    bounds = sorted(draw(st.lists(money_bounds, min_size=2, max_size=2)))
    return Tariff(
        currency=draw(st.sampled_from(CURRENCIES)),
        tax_rate=draw(st.integers(0, 270).map(lambda units: Decimal(units).scaleb(-3))),
        elements=tuple(tariff_elements),
        min_price=draw(st.none() | st.just(bounds[0])),
        max_price=draw(st.none() | st.just(bounds[1])),
        parking_grace_s=draw(st.sampled_from([0, 0, 600, 1800])),
        parking_cap=draw(st.none() | decimals(0, 5, 2)),
        time_zone=draw(st.sampled_from(TIME_ZONES)),
    )


@st.composite
def usages(draw, *, whole_seconds: bool = False) -> SessionUsage:
    start = draw(st.sampled_from(ANCHORS)) + timedelta(seconds=draw(st.integers(-8 * 3600, 8 * 3600)))
    if not whole_seconds:
        start += timedelta(microseconds=draw(st.integers(0, 999_999)))
    periods = []
    moment = start
    for _ in range(draw(st.integers(1, 6))):
        if whole_seconds:
            length = timedelta(seconds=draw(st.integers(1, 3 * 3600)))
        else:
            length = timedelta(microseconds=draw(st.integers(1, 3 * 3600 * 1_000_000)))
        charging = draw(st.booleans())
        energy_wh = draw(st.integers(0, 40_000)) if charging else draw(st.sampled_from([0, 0, 3]))
        periods.append(UsagePeriod(moment, moment + length, energy_wh, charging))
        moment += length
    return SessionUsage(started_at=start, stopped_at=moment, periods=tuple(periods))


def _amounts(result):
    return [line.amount for line in result.lines] + [result.subtotal, result.tax, result.total]


@PROFILE
@given(tariffs(), usages())
def test_price_invariants(tariff, usage):
    result = price_session(tariff, usage)
    currency = tariff.currency

    # The total is the subtotal plus tax, the subtotal the sum of the line amounts, tax rounded once.
    assert result.subtotal == sum(line.amount for line in result.lines)
    assert result.total == result.subtotal + result.tax
    assert result.tax == round_money(Fraction(result.subtotal) * Fraction(tariff.tax_rate), currency)

    # Every amount has exactly the currency's minor-unit decimals.
    assert {amount.as_tuple().exponent for amount in _amounts(result)} == {-minor_unit(currency)}

    # min_price <= subtotal <= max_price; parking (with its cap adjustment) <= parking_cap.
    if tariff.min_price is not None:
        assert result.subtotal >= round_money(tariff.min_price, currency)
    if tariff.max_price is not None:
        assert result.subtotal <= round_money(tariff.max_price, currency)
    if tariff.parking_cap is not None:
        parking = sum(
            line.amount
            for line in result.lines
            if line.dimension in (Dimension.PARKING_TIME, Dimension.PARKING_CAP_ADJUSTMENT)
        )
        assert parking <= round_money(tariff.parking_cap, currency)

    # Billed quantities are never below the used ones (step_size only rounds up).
    assert all(line.quantity >= line.used_quantity for line in result.lines)

    # running_cost is the same price without min_price.
    running = running_cost(tariff, usage)
    assert running.subtotal <= result.subtotal
    assert all(line.dimension != Dimension.MIN_PRICE_ADJUSTMENT for line in running.lines)
    if tariff.min_price is None:
        assert running == result

    # Pure: equal inputs (rebuilt, not the same objects) give equal results.
    copy_tariff = replace(tariff, elements=tuple(replace(element) for element in tariff.elements))
    copy_usage = replace(usage, periods=tuple(replace(period) for period in usage.periods))
    assert price_session(copy_tariff, copy_usage) == result


CATCH_ALL_TIME = TariffElement(
    (PriceComponent("TIME", Decimal(1), 1), PriceComponent("PARKING_TIME", Decimal(1), 1))
)


@PROFILE
@given(tariffs(energy_fallback=True), usages())
def test_energy_and_time_are_conserved_across_time_of_use_splits_and_dst(tariff, usage):
    # With unrestricted ENERGY, TIME and PARKING_TIME elements last and no grace, every Wh and every
    # microsecond of the session is billed exactly once, however the restrictions before them cut it.
    tariff = replace(tariff, elements=(*tariff.elements, CATCH_ALL_TIME), parking_grace_s=0)

    result = price_session(tariff, usage)

    energy_lines = [line for line in result.lines if line.dimension == Dimension.ENERGY]
    assert sum(line.used_quantity for line in energy_lines) * 1000 == usage.energy_wh == result.energy_wh

    real = usage.stopped_at.astimezone(UTC) - usage.started_at.astimezone(UTC)
    real_s = Decimal(real // timedelta(microseconds=1)) / 1_000_000
    assert result.charging_s + result.parking_s == real_s
    time_lines = [line for line in result.lines if line.dimension in (Dimension.TIME, Dimension.PARKING_TIME)]
    used_h = sum(line.used_quantity for line in time_lines)
    # Lines show hours to 6 decimals: at most half a unit (1.8 ms) off each.
    assert abs(used_h * 3600 - real_s) <= Decimal("0.0018") * len(time_lines)


@PROFILE
@given(
    tariffs(energy_dependent=False, energy_steps=[0, 1]),
    usages(whole_seconds=True),
    st.data(),
)
def test_more_energy_never_costs_less(tariff, usage, data):
    """More energy, same times: the price does not drop.

    This holds for tariffs whose element choice does not depend on energy (no min/max_kwh, no power
    restrictions) and whose ENERGY step is 1 Wh. With kWh tiers, more energy early can move later energy into
    a cheaper tier or time slot; with larger steps, energy in a new piece can change the "last element" whose
    step rounds the total (OCPI's rule). Extra energy is added as whole Wh per second of each period, so every
    piece (cut at whole seconds) gets exactly its share and the Wh rounding of the split cannot move a Wh.
    """
    extra_wh_per_s = [data.draw(st.integers(0, 3)) for _ in usage.periods]
    more = SessionUsage(
        started_at=usage.started_at,
        stopped_at=usage.stopped_at,
        periods=tuple(
            replace(
                period,
                energy_wh=period.energy_wh + extra * int((period.end - period.start).total_seconds()),
            )
            for period, extra in zip(usage.periods, extra_wh_per_s, strict=True)
        ),
    )

    before, after = price_session(tariff, usage), price_session(tariff, more)

    assert after.subtotal >= before.subtotal
    assert after.total >= before.total
