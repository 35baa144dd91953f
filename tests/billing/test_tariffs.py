"""Tariff engine, example by example. Every expected figure is worked out by hand in the comments."""

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from billing.money import minor_unit, round_money
from billing.tariffs import UnsupportedTariffError, price_session, running_cost, usage_from_readings
from billing.types import (
    Dimension,
    PriceComponent,
    PriceResult,
    Restrictions,
    SessionUsage,
    Tariff,
    TariffElement,
    UsagePeriod,
)

BERLIN = ZoneInfo("Europe/Berlin")
D = Decimal


def at(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0, tz=BERLIN) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=tz)


def usage(*periods: tuple[datetime, datetime, int, bool]) -> SessionUsage:
    return SessionUsage(
        started_at=periods[0][0],
        stopped_at=periods[-1][1],
        periods=tuple(UsagePeriod(start, end, wh, charging) for start, end, wh, charging in periods),
    )


def element(*components: tuple[str, str, int], **restrictions) -> TariffElement:
    return TariffElement(
        tuple(PriceComponent(kind, D(price), step) for kind, price, step in components),
        Restrictions(**restrictions) if restrictions else None,
    )


def tariff(
    *elements: TariffElement, currency="EUR", tax_rate="0", time_zone="Europe/Berlin", **options
) -> Tariff:
    return Tariff(currency=currency, tax_rate=D(tax_rate), elements=elements, time_zone=time_zone, **options)


def lines(result: PriceResult) -> list[tuple[str, int | None, Decimal, Decimal]]:
    """(dimension, element, billed quantity, amount) per line: compact exact assertions."""
    return [(line.dimension, line.element_index, line.quantity, line.amount) for line in result.lines]


def assert_totals(result: PriceResult, subtotal: str, tax: str, total: str) -> None:
    assert (result.subtotal, result.tax, result.total) == (D(subtotal), D(tax), D(total))
    assert result.subtotal == sum(line.amount for line in result.lines)


# --- flat and energy -------------------------------------------------------------------------------------------


def test_flat_fee_plus_energy():
    t = tariff(element(("FLAT", "1.00", 0), ("ENERGY", "0.30", 1)), tax_rate="0.19")
    u = usage((at(2026, 6, 10, 10), at(2026, 6, 10, 11), 12_345, True))

    result = price_session(t, u)

    # FLAT 1.00; ENERGY 12.345 kWh * 0.30 = 3.7035 -> 3.70. Subtotal 4.70; tax 4.70 * 0.19 = 0.893 -> 0.89.
    assert lines(result) == [
        (Dimension.FLAT, 0, D("1"), D("1.00")),
        (Dimension.ENERGY, 0, D("12.345"), D("3.70")),
    ]
    assert result.lines[1].unit == "kWh"
    assert result.lines[1].unit_price == D("0.30")
    assert result.lines[0].unit == "session"
    assert_totals(result, "4.70", "0.89", "5.59")
    assert (result.energy_wh, result.charging_s, result.parking_s) == (12_345, D(3600), D(0))


# --- time of use -----------------------------------------------------------------------------------------------

DAY_NIGHT = tariff(
    element(("ENERGY", "0.25", 1), start_time=time(22), end_time=time(6)),  # night, wraps midnight
    element(("ENERGY", "0.40", 1)),  # day: the fallback
    tax_rate="0.19",
)


def test_time_of_use_splits_at_22_00_local():
    # 21:00-23:00 CEST (19:00-21:00 UTC), 20 kWh at constant power: 10 kWh before 22:00, 10 kWh after.
    u = usage((at(2026, 6, 10, 21), at(2026, 6, 10, 23), 20_000, True))

    result = price_session(DAY_NIGHT, u)

    # Night 10 kWh * 0.25 = 2.50; day 10 kWh * 0.40 = 4.00. Subtotal 6.50; tax 1.235 -> 1.24 (half up).
    assert lines(result) == [
        (Dimension.ENERGY, 0, D("10"), D("2.50")),
        (Dimension.ENERGY, 1, D("10"), D("4.00")),
    ]
    assert_totals(result, "6.50", "1.24", "7.74")


def test_time_of_use_split_keeps_every_wh():
    # 21:30-22:30, 9001 Wh: 22:00 is half way, floor(9001 / 2) = 4500 Wh before it, 4501 Wh after.
    u = usage((at(2026, 6, 10, 21, 30), at(2026, 6, 10, 22, 30), 9_001, True))

    result = price_session(DAY_NIGHT, u)

    # Night 4.501 * 0.25 = 1.12525 -> 1.13; day 4.500 * 0.40 = 1.80.
    assert lines(result) == [
        (Dimension.ENERGY, 0, D("4.501"), D("1.13")),
        (Dimension.ENERGY, 1, D("4.500"), D("1.80")),
    ]
    assert sum(line.used_quantity for line in result.lines) == D("9.001")


# --- DST nights (Europe/Berlin) --------------------------------------------------------------------------------

# Hour-of-day prices, including a window that starts at 02:30, a wall time that does not exist on 2026-03-29
# and exists twice on 2026-10-25.
HOURLY = tariff(
    element(("TIME", "10.00", 1), start_time=time(2, 30), end_time=time(3, 30)),
    element(("TIME", "1.20", 1), ("ENERGY", "0.20", 1), start_time=time(0), end_time=time(6)),
    element(("TIME", "3.00", 1), ("ENERGY", "0.40", 1)),
    tax_rate="0.19",
)


def test_spring_forward_night_is_priced_for_its_real_six_hours():
    # 00:00-07:00 local on 2026-03-29 = 2026-03-28 23:00Z .. 2026-03-29 05:00Z: 6 real hours (02:00 -> 03:00).
    start, stop = at(2026, 3, 29, 0), at(2026, 3, 29, 7)
    assert stop.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=6)
    u = usage((start, stop, 6_000, True))  # 1 kWh per real hour

    result = price_session(HOURLY, u)

    # [02:30, 03:30) local: 02:30 never happens; the clock jumps from 02:00 to 03:00 (01:00Z), which is past
    # 02:30, so the window holds 03:00-03:30 CEST = 01:00Z-01:30Z: 0.5 h * 10.00 = 5.00.
    # [00:00, 06:00) minus that: 23:00Z-01:00Z (2 h) + 01:30Z-04:00Z (2.5 h) = 4.5 h * 1.20 = 5.40.
    # 06:00-07:00 CEST: 1 h * 3.00 = 3.00.
    # ENERGY: element 0 has none, so element 1 prices 00:00-06:00 (5 real hours, 5 kWh * 0.20 = 1.00) and
    # element 2 06:00-07:00 (1 kWh * 0.40 = 0.40).
    # Subtotal 5.00 + 5.40 + 3.00 + 1.00 + 0.40 = 14.80; tax 2.812 -> 2.81.
    assert lines(result) == [
        (Dimension.ENERGY, 1, D("5"), D("1.00")),
        (Dimension.ENERGY, 2, D("1"), D("0.40")),
        (Dimension.TIME, 0, D("0.5"), D("5.00")),
        (Dimension.TIME, 1, D("4.5"), D("5.40")),
        (Dimension.TIME, 2, D("1"), D("3.00")),
    ]
    assert result.charging_s == D(6 * 3600)
    assert_totals(result, "14.80", "2.81", "17.61")


def test_fall_back_night_is_priced_for_its_real_eight_hours():
    # 00:00-07:00 local on 2026-10-25 = 2026-10-24 22:00Z .. 2026-10-25 06:00Z: 8 real hours (03:00 -> 02:00).
    u = usage((at(2026, 10, 25, 0), at(2026, 10, 25, 7), 8_000, True))  # 1 kWh per real hour

    result = price_session(HOURLY, u)

    # [02:30, 03:30) holds twice: 02:30-03:00 CEST (00:30Z-01:00Z), then after the clock goes back to 02:00,
    # 02:30-03:30 CET (01:30Z-02:30Z): 1.5 h * 10.00 = 15.00. Not 0.5 h more: the repeated 02:00-02:30 CET
    # (01:00Z-01:30Z) is outside the window and billed once, by element 1.
    # [00:00, 06:00) spans 22:00Z-05:00Z = 7 h, minus 1.5 h = 5.5 h * 1.20 = 6.60. 06:00-07:00: 3.00.
    # ENERGY: 7 kWh * 0.20 = 1.40 and 1 kWh * 0.40 = 0.40. Subtotal 26.40; tax 5.016 -> 5.02.
    assert lines(result) == [
        (Dimension.ENERGY, 1, D("7"), D("1.40")),
        (Dimension.ENERGY, 2, D("1"), D("0.40")),
        (Dimension.TIME, 0, D("1.5"), D("15.00")),
        (Dimension.TIME, 1, D("5.5"), D("6.60")),
        (Dimension.TIME, 2, D("1"), D("3.00")),
    ]
    assert result.charging_s == D(8 * 3600)
    assert_totals(result, "26.40", "5.02", "31.42")


# --- step_size -------------------------------------------------------------------------------------------------


def test_energy_step_size_rounds_the_session_total_up():
    t = tariff(element(("ENERGY", "0.30", 1000)))
    u = usage((at(2026, 6, 10, 10), at(2026, 6, 10, 11), 12_345, True))

    result = price_session(t, u)

    # 12 345 Wh in steps of 1000 Wh -> 13 kWh * 0.30 = 3.90.
    assert lines(result) == [(Dimension.ENERGY, 0, D("13"), D("3.90"))]
    assert result.lines[0].used_quantity == D("12.345")


def test_energy_step_size_is_the_last_elements():
    night_steps_kwh = tariff(
        element(("ENERGY", "0.25", 1000), start_time=time(22), end_time=time(6)),
        element(("ENERGY", "0.40", 100)),
    )
    # 21:00-23:00, 20 500 Wh: 10 250 Wh per hour. The night element prices the last Wh, so its step (1000 Wh)
    # rounds the session total 20 500 -> 21 000 Wh and the extra 500 Wh land on the night line.
    evening = price_session(night_steps_kwh, usage((at(2026, 6, 10, 21), at(2026, 6, 10, 23), 20_500, True)))
    # Night 10.750 * 0.25 = 2.6875 -> 2.69; day 10.250 * 0.40 = 4.10.
    assert lines(evening) == [
        (Dimension.ENERGY, 0, D("10.75"), D("2.69")),
        (Dimension.ENERGY, 1, D("10.25"), D("4.10")),
    ]
    assert evening.subtotal == D("6.79")

    # 05:00-07:00: the day element (step 100 Wh) is last; 20 500 is a multiple of 100, nothing added.
    morning = price_session(night_steps_kwh, usage((at(2026, 6, 10, 5), at(2026, 6, 10, 7), 20_500, True)))
    # Night 10.250 * 0.25 = 2.5625 -> 2.56; day 10.250 * 0.40 = 4.10.
    assert lines(morning) == [
        (Dimension.ENERGY, 0, D("10.25"), D("2.56")),
        (Dimension.ENERGY, 1, D("10.25"), D("4.10")),
    ]


def test_ocpi_last_element_step_rule_can_make_more_energy_cheaper():
    # Documented, not a wish: the step of the element that priced the last Wh rounds the whole total.
    t = tariff(
        element(("ENERGY", "0.01", 1), start_time=time(22), end_time=time(6)),
        element(("ENERGY", "1.00", 1000)),
    )
    day = (at(2026, 6, 10, 21), at(2026, 6, 10, 22), 1, True)

    # 1 Wh by day, nothing at night: the day element is last, 1 Wh -> 1 kWh * 1.00 = 1.00.
    little = price_session(t, usage(day, (at(2026, 6, 10, 22), at(2026, 6, 10, 23), 0, True)))
    assert lines(little) == [(Dimension.ENERGY, 1, D("1"), D("1.00"))]

    # 3.6 kWh more at night: the night element (step 1 Wh) is last, nothing is rounded up.
    # Day 0.001 kWh * 1.00 = 0.001 -> 0.00; night 3.6 kWh * 0.01 = 0.036 -> 0.04.
    more = price_session(t, usage(day, (at(2026, 6, 10, 22), at(2026, 6, 10, 23), 3_600, True)))
    assert lines(more) == [
        (Dimension.ENERGY, 0, D("3.6"), D("0.04")),
        (Dimension.ENERGY, 1, D("0.001"), D("0.00")),
    ]


def test_time_step_size_rounds_the_total_not_the_last_part():
    # OCPI 2.2.1 mod_cdrs example: 5 EUR/h before 17:00, 7 EUR/h after, both step 600 s. 6 min before and
    # 22 min after 17:00: the 28 min total rounds to 30, so 24 min are billed after 17:00.
    t = tariff(
        element(("TIME", "5.00", 600), end_time=time(17)),
        element(("TIME", "7.00", 600)),
        time_zone="UTC",
    )
    u = usage((at(2026, 6, 10, 16, 54, tz=UTC), at(2026, 6, 10, 17, 22, tz=UTC), 5_000, True))

    result = price_session(t, u)

    # 0.1 h * 5.00 = 0.50; 0.4 h * 7.00 = 2.80.
    assert lines(result) == [
        (Dimension.TIME, 0, D("0.1"), D("0.50")),
        (Dimension.TIME, 1, D("0.4"), D("2.80")),
    ]
    assert result.lines[1].used_quantity == D("0.366667")  # 22 min, shown to 6 decimals


def test_time_and_parking_steps_round_only_the_parking():
    # OCPI 2.2.1 mod_cdrs example: charging 1.00 EUR/h, parking 2.00 EUR/h, both step 600 s; 21 min charging
    # then 16 min parked: charging stays 21 min, parking rounds up to 20 min.
    t = tariff(element(("TIME", "1.00", 600), ("PARKING_TIME", "2.00", 600)), time_zone="UTC")
    u = usage(
        (at(2026, 6, 10, 12, 0, tz=UTC), at(2026, 6, 10, 12, 21, tz=UTC), 4_000, True),
        (at(2026, 6, 10, 12, 21, tz=UTC), at(2026, 6, 10, 12, 37, tz=UTC), 0, False),
    )

    result = price_session(t, u)

    # 21/60 h * 1.00 = 0.35; 20/60 h * 2.00 = 0.6667 -> 0.67.
    assert lines(result) == [
        (Dimension.TIME, 0, D("0.35"), D("0.35")),
        (Dimension.PARKING_TIME, 0, D("0.333333"), D("0.67")),
    ]
    assert result.subtotal == D("1.02")


# --- parking ---------------------------------------------------------------------------------------------------

PARKING = tariff(
    element(("ENERGY", "0.30", 1), ("PARKING_TIME", "6.00", 60)),  # parking 0.10 per minute, per minute
    parking_grace_s=1800,
    parking_cap=D("5.00"),
)


def test_parking_after_grace_is_capped():
    u = usage(
        (at(2026, 6, 10, 10), at(2026, 6, 10, 11), 20_000, True),
        (at(2026, 6, 10, 11), at(2026, 6, 10, 13), 0, False),
    )

    result = price_session(PARKING, u)

    # Energy 20 kWh * 0.30 = 6.00. Idle 11:00-13:00; grace 11:00-11:30; parking 1.5 h * 6.00 = 9.00, capped at
    # 5.00 by a -4.00 adjustment. Subtotal 11.00.
    assert lines(result) == [
        (Dimension.ENERGY, 0, D("20"), D("6.00")),
        (Dimension.PARKING_TIME, 0, D("1.5"), D("9.00")),
        (Dimension.PARKING_CAP_ADJUSTMENT, None, D("1"), D("-4.00")),
    ]
    assert_totals(result, "11.00", "0.00", "11.00")
    assert (result.parking_s, result.billed_parking_s) == (D(7200), D(5400))


def test_parking_below_cap_is_billed_in_steps():
    u = usage(
        (at(2026, 6, 10, 10), at(2026, 6, 10, 11), 20_000, True),
        (at(2026, 6, 10, 11), at(2026, 6, 10, 12, 7, 30), 0, False),
    )

    result = price_session(PARKING, u)

    # Billable parking 11:30-12:07:30 = 37.5 min, in 60 s steps -> 38 min * 0.10 = 3.80 (below the cap).
    assert lines(result) == [
        (Dimension.ENERGY, 0, D("20"), D("6.00")),
        (Dimension.PARKING_TIME, 0, D("0.633333"), D("3.80")),
    ]
    assert result.lines[1].used_quantity == D("0.625")
    assert result.billed_parking_s == D(2250)


def test_grace_starts_when_the_last_charging_period_ends():
    # Idle before charging and during a pause is parking (OCPI: all time not charging); the grace window is
    # the 30 min after the last charging period.
    u = usage(
        (at(2026, 6, 10, 9, 50), at(2026, 6, 10, 10), 0, False),
        (at(2026, 6, 10, 10), at(2026, 6, 10, 10, 30), 5_000, True),
        (at(2026, 6, 10, 10, 30), at(2026, 6, 10, 10, 40), 0, False),
        (at(2026, 6, 10, 10, 40), at(2026, 6, 10, 11), 5_000, True),
        (at(2026, 6, 10, 11), at(2026, 6, 10, 11, 40), 0, False),
    )

    result = price_session(PARKING, u)

    # Parking 09:50-10:00 + 10:30-10:40 + 11:30-11:40 = 30 min * 0.10 = 3.00; energy 10 kWh * 0.30 = 3.00.
    assert lines(result) == [
        (Dimension.ENERGY, 0, D("10"), D("3.00")),
        (Dimension.PARKING_TIME, 0, D("0.5"), D("3.00")),
    ]
    assert (result.parking_s, result.billed_parking_s, result.charging_s) == (D(3600), D(1800), D(3000))


# --- min / max price -------------------------------------------------------------------------------------------

MIN_MAX = tariff(element(("ENERGY", "0.30", 1)), min_price=D("5.00"), max_price=D("10.00"), tax_rate="0.19")


def test_min_price_lifts_the_subtotal():
    u = usage((at(2026, 6, 10, 10), at(2026, 6, 10, 10, 30), 2_000, True))

    result = price_session(MIN_MAX, u)

    # 2 kWh * 0.30 = 0.60 < 5.00: +4.40. Tax 5.00 * 0.19 = 0.95.
    assert lines(result) == [
        (Dimension.ENERGY, 0, D("2"), D("0.60")),
        (Dimension.MIN_PRICE_ADJUSTMENT, None, D("1"), D("4.40")),
    ]
    assert_totals(result, "5.00", "0.95", "5.95")


def test_running_cost_ignores_the_min_price():
    u = usage((at(2026, 6, 10, 10), at(2026, 6, 10, 10, 30), 2_000, True))

    result = running_cost(MIN_MAX, u)

    # 0.60; tax 0.114 -> 0.11.
    assert lines(result) == [(Dimension.ENERGY, 0, D("2"), D("0.60"))]
    assert_totals(result, "0.60", "0.11", "0.71")


def test_max_price_caps_the_subtotal_also_while_running():
    u = usage((at(2026, 6, 10, 10), at(2026, 6, 10, 12), 50_000, True))

    # 50 kWh * 0.30 = 15.00 > 10.00: -5.00. Tax 1.90.
    for result in (price_session(MIN_MAX, u), running_cost(MIN_MAX, u)):
        assert lines(result) == [
            (Dimension.ENERGY, 0, D("50"), D("15.00")),
            (Dimension.MAX_PRICE_ADJUSTMENT, None, D("1"), D("-5.00")),
        ]
        assert_totals(result, "10.00", "1.90", "11.90")


# --- currencies ------------------------------------------------------------------------------------------------


def test_jpy_has_no_decimals():
    t = tariff(element(("ENERGY", "55.5", 1)), currency="JPY", tax_rate="0.10")
    u = usage((at(2026, 6, 10, 10), at(2026, 6, 10, 11), 12_345, True))

    result = price_session(t, u)

    # 12.345 * 55.5 = 685.1475 -> 685; tax 68.5 -> 69 (half up); total 754.
    assert lines(result) == [(Dimension.ENERGY, 0, D("12.345"), D("685"))]
    assert_totals(result, "685", "69", "754")
    assert [amount.as_tuple().exponent for amount in (result.subtotal, result.tax, result.total)] == [0, 0, 0]


def test_bhd_has_three_decimals():
    t = tariff(element(("ENERGY", "0.0755", 1)), currency="BHD", tax_rate="0.10")
    u = usage((at(2026, 6, 10, 10), at(2026, 6, 10, 11), 12_345, True))

    result = price_session(t, u)

    # 12.345 * 0.0755 = 0.9320475 -> 0.932; tax 0.0932 -> 0.093; total 1.025.
    assert lines(result) == [(Dimension.ENERGY, 0, D("12.345"), D("0.932"))]
    assert_totals(result, "0.932", "0.093", "1.025")
    assert [amount.as_tuple().exponent for amount in (result.subtotal, result.tax, result.total)] == [-3] * 3


@pytest.mark.parametrize(
    ("value", "currency", "expected"),
    [
        (D("0.125"), "EUR", "0.13"),  # half up, where ROUND_HALF_EVEN would give 0.12
        (D("-0.125"), "EUR", "-0.13"),  # half away from zero
        (D("0.1249"), "EUR", "0.12"),
        (D("2.5"), "JPY", "3"),
        (D("0.0005"), "KWD", "0.001"),
        (Fraction(1, 3), "BHD", "0.333"),
        (Fraction(2, 3), "EUR", "0.67"),
        (7, "USD", "7.00"),
        (D("1.005"), "XYZ", "1.01"),  # unknown code: 2 decimals
    ],
)
def test_round_money_rounds_half_up_to_the_minor_unit(value, currency, expected):
    rounded = round_money(value, currency)
    assert rounded == D(expected)
    assert rounded.as_tuple().exponent == -minor_unit(currency)


def test_round_money_refuses_floats():
    with pytest.raises(TypeError):
        round_money(0.1, "EUR")


# --- restrictions ----------------------------------------------------------------------------------------------


def test_kwh_tiers_split_at_the_instant_the_threshold_is_reached():
    t = tariff(
        element(("ENERGY", "0.50", 1), ("TIME", "1.20", 1), max_kwh=D("10")),  # first 10 kWh
        element(("ENERGY", "0.30", 1), ("TIME", "0.60", 1), min_kwh=D("10")),  # from 10 kWh on
        time_zone="UTC",
    )
    u = usage((at(2026, 6, 10, 10, tz=UTC), at(2026, 6, 10, 11, tz=UTC), 15_000, True))

    result = price_session(t, u)

    # 15 kWh in 60 min at constant power: 10 kWh are reached after 40 min.
    # ENERGY 10 * 0.50 = 5.00 and 5 * 0.30 = 1.50; TIME 2/3 h * 1.20 = 0.80 and 1/3 h * 0.60 = 0.20.
    assert lines(result) == [
        (Dimension.ENERGY, 0, D("10"), D("5.00")),
        (Dimension.ENERGY, 1, D("5"), D("1.50")),
        (Dimension.TIME, 0, D("0.666667"), D("0.80")),
        (Dimension.TIME, 1, D("0.333333"), D("0.20")),
    ]
    assert result.subtotal == D("7.50")


def test_kwh_threshold_inside_a_later_period():
    t = tariff(
        element(("ENERGY", "0.50", 1), max_kwh=D("10")),
        element(("ENERGY", "0.30", 1)),
        time_zone="UTC",
    )
    u = usage(
        (at(2026, 6, 10, 10, tz=UTC), at(2026, 6, 10, 10, 30, tz=UTC), 8_000, True),
        (at(2026, 6, 10, 10, 30, tz=UTC), at(2026, 6, 10, 11, tz=UTC), 7_000, True),
    )

    result = price_session(t, u)

    # 8 kWh, then 2 more of the second period's 7 at 0.50: 10 * 0.50 = 5.00; the other 5 kWh * 0.30 = 1.50.
    assert lines(result) == [
        (Dimension.ENERGY, 0, D("10"), D("5.00")),
        (Dimension.ENERGY, 1, D("5"), D("1.50")),
    ]


def test_weekend_price_by_day_of_week():
    t = tariff(
        element(("ENERGY", "0.20", 1), day_of_week=frozenset({"SATURDAY", "SUNDAY"})),
        element(("ENERGY", "0.40", 1)),
    )
    # Friday 2026-06-12 23:00 to Saturday 01:00 local, 10 kWh: 5 kWh on Friday, 5 kWh on Saturday.
    u = usage((at(2026, 6, 12, 23), at(2026, 6, 13, 1), 10_000, True))

    result = price_session(t, u)

    # Saturday 5 * 0.20 = 1.00; Friday 5 * 0.40 = 2.00.
    assert lines(result) == [
        (Dimension.ENERGY, 0, D("5"), D("1.00")),
        (Dimension.ENERGY, 1, D("5"), D("2.00")),
    ]


def test_first_matching_element_with_the_dimension_wins():
    t = tariff(
        element(("TIME", "1.00", 1)),  # no ENERGY: energy falls through to the next elements
        element(("ENERGY", "0.25", 1), start_time=time(22), end_time=time(6)),
        element(("ENERGY", "0.35", 1), start_time=time(20), end_time=time(0)),  # 20:00 to midnight
        element(("ENERGY", "0.99", 1)),  # never reached
    )
    u = usage((at(2026, 6, 10, 21), at(2026, 6, 10, 23), 20_000, True))

    result = price_session(t, u)

    # 21-22: only element 2 matches, 10 kWh * 0.35 = 3.50. 22-23: elements 1 and 2 both match, 1 comes first:
    # 10 kWh * 0.25 = 2.50. TIME: 2 h * 1.00 = 2.00.
    assert lines(result) == [
        (Dimension.ENERGY, 1, D("10"), D("2.50")),
        (Dimension.ENERGY, 2, D("10"), D("3.50")),
        (Dimension.TIME, 0, D("2"), D("2.00")),
    ]
    assert result.subtotal == D("8.00")


def test_max_power_example_of_ocpi():
    # OCPI 2.2.1 mod_tariffs max_power example: 0.20 below 16 kW, 0.35 from 16 to 32 kW, 0.50 otherwise.
    # 1 kWh at 6 kW (10 min), 40 kWh at 48 kW (50 min), 0.5 kWh at 4 kW (7.5 min): 20.30 EUR.
    t = tariff(
        element(("ENERGY", "0.20", 1), max_power_kw=D("16")),
        element(("ENERGY", "0.35", 1), max_power_kw=D("32")),
        element(("ENERGY", "0.50", 1)),
        time_zone="UTC",
    )
    u = usage(
        (at(2026, 6, 10, 10, 0, tz=UTC), at(2026, 6, 10, 10, 10, tz=UTC), 1_000, True),
        (at(2026, 6, 10, 10, 10, tz=UTC), at(2026, 6, 10, 11, 0, tz=UTC), 40_000, True),
        (at(2026, 6, 10, 11, 0, tz=UTC), at(2026, 6, 10, 11, 7, 30, tz=UTC), 500, True),
    )

    result = price_session(t, u)

    # 1.5 kWh * 0.20 = 0.30; 40 kWh * 0.50 = 20.00.
    assert lines(result) == [
        (Dimension.ENERGY, 0, D("1.5"), D("0.30")),
        (Dimension.ENERGY, 2, D("40"), D("20.00")),
    ]
    assert result.subtotal == D("20.30")


def test_duration_restriction_splits_at_the_session_age():
    # "First hour 1.00/h, then 4.00/h": a 90 min session.
    t = tariff(element(("TIME", "1.00", 1), max_duration_s=3600), element(("TIME", "4.00", 1)))
    u = usage((at(2026, 6, 10, 10, 15), at(2026, 6, 10, 11, 45), 9_000, True))

    result = price_session(t, u)

    # 1 h * 1.00 = 1.00; 0.5 h * 4.00 = 2.00.
    assert lines(result) == [
        (Dimension.TIME, 0, D("1"), D("1.00")),
        (Dimension.TIME, 1, D("0.5"), D("2.00")),
    ]


def test_date_range_and_flat_judged_at_session_start():
    t = tariff(
        element(("FLAT", "0.50", 0), start_date=datetime(2026, 6, 11).date()),  # from 11 June, local
        element(("FLAT", "2.00", 0), ("ENERGY", "0.30", 1)),
    )
    # Starts 10 June 23:30 local, ends 11 June 00:30: the FLAT fee is the one valid at the start.
    u = usage((at(2026, 6, 10, 23, 30), at(2026, 6, 11, 0, 30), 1_000, True))

    result = price_session(t, u)

    assert lines(result) == [
        (Dimension.FLAT, 1, D("1"), D("2.00")),
        (Dimension.ENERGY, 1, D("1"), D("0.30")),
    ]


def test_reservation_elements_do_not_price_the_session():
    t = tariff(
        element(("TIME", "5.00", 60), reservation="RESERVATION"),
        element(("TIME", "1.00", 60)),
    )
    u = usage((at(2026, 6, 10, 10), at(2026, 6, 10, 11), 1_000, True))

    assert lines(price_session(t, u)) == [(Dimension.TIME, 1, D("1"), D("1.00"))]


def test_current_restrictions_are_refused():
    t = tariff(element(("TIME", "1.00", 60), max_current_a=D("32")), element(("TIME", "2.00", 60)))
    u = usage((at(2026, 6, 10, 10), at(2026, 6, 10, 11), 1_000, True))

    with pytest.raises(UnsupportedTariffError):
        price_session(t, u)


def test_session_without_periods_pays_the_flat_fee_and_min_price():
    t = tariff(element(("FLAT", "0.50", 0), ("ENERGY", "0.30", 1)), min_price=D("1.00"))
    moment = at(2026, 6, 10, 10)

    result = price_session(t, SessionUsage(started_at=moment, stopped_at=moment, periods=()))

    assert lines(result) == [
        (Dimension.FLAT, 0, D("1"), D("0.50")),
        (Dimension.MIN_PRICE_ADJUSTMENT, None, D("1"), D("0.50")),
    ]


# --- input validation ------------------------------------------------------------------------------------------


def test_usage_periods_must_cover_the_session():
    first = UsagePeriod(at(2026, 6, 10, 10), at(2026, 6, 10, 11), 1_000, True)
    later = UsagePeriod(at(2026, 6, 10, 11, 5), at(2026, 6, 10, 12), 1_000, True)
    with pytest.raises(ValueError, match="consecutive"):
        SessionUsage(started_at=first.start, stopped_at=later.end, periods=(first, later))
    with pytest.raises(ValueError, match="cover"):
        SessionUsage(started_at=first.start, stopped_at=later.end, periods=(first,))
    with pytest.raises(ValueError, match="aware"):
        UsagePeriod(datetime(2026, 6, 10, 10), datetime(2026, 6, 10, 11), 1_000, True)
    with pytest.raises(ValueError, match=">= 0"):
        UsagePeriod(first.start, first.end, -1, True)


def test_tariff_validation():
    with pytest.raises(ValueError, match="exceeds"):
        tariff(element(("ENERGY", "0.30", 1)), min_price=D("10"), max_price=D("5"))
    with pytest.raises(ValueError, match="time zone"):
        tariff(element(("ENERGY", "0.30", 1)), time_zone="Mars/Olympus")
    with pytest.raises(TypeError, match="Decimal"):
        PriceComponent("ENERGY", 0.3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown"):
        PriceComponent("KWH", D("0.3"))
    with pytest.raises(ValueError, match="day_of_week"):
        Restrictions(day_of_week=frozenset({"FUNDAY"}))


# --- usage_from_readings ---------------------------------------------------------------------------------------


def test_usage_from_readings():
    readings = [
        (at(2026, 6, 10, 11), 6_000),  # out of order on purpose
        (at(2026, 6, 10, 10), 1_000),
        (at(2026, 6, 10, 10, 30), 6_000),
        (at(2026, 6, 10, 10, 30), 6_000),  # repeated, same value
        (at(2026, 6, 10, 11, 15), 6_010),
    ]

    built = usage_from_readings(at(2026, 6, 10, 10), at(2026, 6, 10, 11, 15), readings)

    assert [(p.start, p.end, p.energy_wh, p.charging) for p in built.periods] == [
        (at(2026, 6, 10, 10), at(2026, 6, 10, 10, 30), 5_000, True),
        (at(2026, 6, 10, 10, 30), at(2026, 6, 10, 11), 0, False),
        (at(2026, 6, 10, 11), at(2026, 6, 10, 11, 15), 10, True),  # 40 W: increased, so charging
    ]
    assert built.energy_wh == 5_010

    # 10 Wh in 15 min is 40 W: below a 100 W threshold it is idle.
    thresholded = usage_from_readings(
        at(2026, 6, 10, 10), at(2026, 6, 10, 11, 15), readings, idle_power_w=100
    )
    assert [p.charging for p in thresholded.periods] == [True, False, False]


def test_usage_from_readings_refuses_a_register_going_backwards():
    readings = [(at(2026, 6, 10, 10), 1_000), (at(2026, 6, 10, 11), 999)]
    with pytest.raises(ValueError, match="backwards"):
        usage_from_readings(at(2026, 6, 10, 10), at(2026, 6, 10, 11), readings)


def test_usage_from_readings_refuses_conflicting_or_missing_readings():
    start, stop = at(2026, 6, 10, 10), at(2026, 6, 10, 11)
    with pytest.raises(ValueError, match="two different"):
        usage_from_readings(start, stop, [(start, 1_000), (start, 1_001), (stop, 2_000)])
    with pytest.raises(ValueError, match="start at started_at"):
        usage_from_readings(start, stop, [(at(2026, 6, 10, 10, 5), 1_000), (stop, 2_000)])


def test_usage_from_readings_across_the_repeated_autumn_hour():
    # On 2026-10-25 Berlin shows 02:30 twice: CEST (fold 0, 00:30Z) and CET (fold 1, 01:30Z). Datetimes that
    # share a tzinfo compare by wall clock, fold ignored, so ordering and coverage must go by instant.
    first, second = at(2026, 10, 25, 2, 30), at(2026, 10, 25, 2, 30).replace(fold=1)
    start, stop = at(2026, 10, 25, 2), at(2026, 10, 25, 3)  # 00:00Z and 02:00Z
    readings = [(start, 0), (second, 2_000), (first, 1_000), (stop, 2_500)]

    built = usage_from_readings(start, stop, readings)

    assert [
        (p.start.astimezone(UTC).time(), p.end.astimezone(UTC).time(), p.energy_wh) for p in built.periods
    ] == [(time(0), time(0, 30), 1_000), (time(0, 30), time(1, 30), 1_000), (time(1, 30), time(2), 500)]
    result = price_session(tariff(element(("TIME", "1.00", 1))), built)
    # Two real hours at 1.00.
    assert (result.charging_s, result.subtotal) == (D(7200), D("2.00"))
