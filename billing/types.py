"""Inputs and results of the tariff engine (`billing.tariffs`): frozen, database-free, OCPI 2.2.1-shaped.

A `Tariff` holds everything of an OCPI 2.2.1 Tariff (mod_tariffs, Tariff object) that decides a price:
`currency`, `min_price`/`max_price` (excl. VAT), the ordered `elements`, each with its `price_components`
(`type`, `price` excl. VAT, `step_size`) and `restrictions` (all fourteen TariffRestrictions fields). Two
deliberate differences, both for the mapper to handle:

- one `tax_rate` per tariff (a fraction: 0.19 = 19 %) instead of OCPI's per-component `vat` percentage;
  an OCPI tariff whose components carry different `vat` values has no lossless form here.
- `parking_grace_s` and `parking_cap` are extensions; an OCPI tariff maps to 0 and None.

Identity and display fields (id, party, `tariff_alt_text`, `energy_mix`, validity dates, `type`) select a
tariff or describe it; they do not change a price and belong to the billing models.

Validation happens at construction (`ValueError`/`TypeError`), so the engine only sees well-formed input.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import StrEnum
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class Dimension(StrEnum):
    """What a price line bills. The first four are OCPI 2.2.1 TariffDimensionType values."""

    ENERGY = "ENERGY"  # per kWh; step_size in Wh
    TIME = "TIME"  # per hour of charging; step_size in seconds
    PARKING_TIME = "PARKING_TIME"  # per hour connected but not charging; step_size in seconds
    FLAT = "FLAT"  # per session; step_size ignored
    PARKING_CAP_ADJUSTMENT = "PARKING_CAP_ADJUSTMENT"
    MIN_PRICE_ADJUSTMENT = "MIN_PRICE_ADJUSTMENT"
    MAX_PRICE_ADJUSTMENT = "MAX_PRICE_ADJUSTMENT"


COMPONENT_DIMENSIONS = frozenset({Dimension.ENERGY, Dimension.TIME, Dimension.PARKING_TIME, Dimension.FLAT})

WEEKDAYS = (
    "MONDAY",
    "TUESDAY",
    "WEDNESDAY",
    "THURSDAY",
    "FRIDAY",
    "SATURDAY",
    "SUNDAY",
)  # date.weekday() order

RESERVATION_TYPES = frozenset({"RESERVATION", "RESERVATION_EXPIRES"})


def _check_decimal(name: str, value: object, *, optional: bool = False, non_negative: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{name} must be finite, got {value}")
    if non_negative and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def _check_int(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def _instant(value: datetime) -> datetime:
    """`value` in UTC: aware datetimes sharing a tzinfo compare by wall clock (fold ignored), so 02:30 CEST and
    02:30 CET of an autumn night would compare equal; instants must be compared in UTC."""
    return value.astimezone(UTC)


def _check_aware(name: str, value: object) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")


@dataclass(frozen=True, slots=True)
class PriceComponent:
    """OCPI 2.2.1 PriceComponent: `price` per unit excl. tax (Decimal; may have more decimals than the currency).

    `step_size` is in Wh for ENERGY and in seconds for TIME/PARKING_TIME (OCPI step_size multipliers), ignored
    for FLAT; 0 is read as 1 (bill to the Wh / to the second).
    """

    type: Dimension
    price: Decimal
    step_size: int = 1

    def __post_init__(self) -> None:
        try:
            dimension = Dimension(self.type)
        except ValueError:
            raise ValueError(f"unknown price component type {self.type!r}") from None
        if dimension not in COMPONENT_DIMENSIONS:
            raise ValueError(f"{dimension} is not a price component type")
        object.__setattr__(self, "type", dimension)
        # Negative prices are allowed (OCPI does not forbid them); min/max price still bound the subtotal.
        _check_decimal("price", self.price, non_negative=False)
        _check_int("step_size", self.step_size)


@dataclass(frozen=True, slots=True, kw_only=True)
class Restrictions:
    """OCPI 2.2.1 TariffRestrictions; every field optional, all that are set must hold.

    Times and dates are local to `Tariff.time_zone`. Intervals are half-open: [start_time, end_time),
    [start_date, end_date), [min_kwh, max_kwh), [min_duration_s, max_duration_s), [min_power_kw, max_power_kw).
    `end_time` <= `start_time` wraps past midnight (so start_time == end_time is the whole day). `day_of_week`
    empty is read as unrestricted (OCPI cardinality `*`: absent and empty say the same).

    `min_current_a`/`max_current_a` and `reservation` are kept so an OCPI tariff survives the round trip; the
    engine cannot evaluate current (usage carries energy, not current) and refuses such tariffs, and an element
    restricted to a reservation never applies to the charging session itself (reservation time is not part of
    `SessionUsage`).
    """

    start_time: time | None = None
    end_time: time | None = None
    start_date: date | None = None
    end_date: date | None = None
    min_kwh: Decimal | None = None
    max_kwh: Decimal | None = None
    min_current_a: Decimal | None = None
    max_current_a: Decimal | None = None
    min_power_kw: Decimal | None = None
    max_power_kw: Decimal | None = None
    min_duration_s: int | None = None
    max_duration_s: int | None = None
    day_of_week: frozenset[str] | None = None
    reservation: str | None = None

    def __post_init__(self) -> None:
        for name in ("start_time", "end_time"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, time) or value.tzinfo is not None):
                raise TypeError(f"{name} must be a naive datetime.time (local to the tariff's time zone)")
        for name in ("start_date", "end_date"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, date) or isinstance(value, datetime)):
                raise TypeError(f"{name} must be a datetime.date")
        for name in ("min_kwh", "max_kwh", "min_current_a", "max_current_a", "min_power_kw", "max_power_kw"):
            _check_decimal(name, getattr(self, name), optional=True)
        _check_int("min_duration_s", self.min_duration_s, optional=True)
        _check_int("max_duration_s", self.max_duration_s, optional=True)
        if self.day_of_week is not None:
            days = frozenset(self.day_of_week)
            unknown = days - set(WEEKDAYS)
            if unknown:
                raise ValueError(f"unknown day_of_week values {sorted(unknown)}")
            object.__setattr__(self, "day_of_week", days or None)
        if self.reservation is not None and self.reservation not in RESERVATION_TYPES:
            raise ValueError(f"unknown reservation restriction {self.reservation!r}")


@dataclass(frozen=True, slots=True)
class TariffElement:
    price_components: tuple[PriceComponent, ...]
    restrictions: Restrictions | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "price_components", tuple(self.price_components))


@dataclass(frozen=True, slots=True, kw_only=True)
class Tariff:
    """A tariff as the engine sees it (see the module docstring for what differs from OCPI 2.2.1).

    `tax_rate` is a fraction (Decimal("0.19")). `min_price`, `max_price` and `parking_cap` are excl. tax, per
    session. `parking_grace_s`: idle time that is free, counted from the end of the last charging period
    (`billing.tariffs` documents it exactly). `time_zone`: IANA name of the site, for time/date restrictions.
    """

    currency: str
    tax_rate: Decimal
    elements: tuple[TariffElement, ...]
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    parking_grace_s: int = 0
    parking_cap: Decimal | None = None
    time_zone: str

    def __post_init__(self) -> None:
        if not (isinstance(self.currency, str) and len(self.currency) == 3 and self.currency.isalpha()):
            raise ValueError(f"currency must be an ISO 4217 code, got {self.currency!r}")
        object.__setattr__(self, "currency", self.currency.upper())
        _check_decimal("tax_rate", self.tax_rate)
        object.__setattr__(self, "elements", tuple(self.elements))
        _check_decimal("min_price", self.min_price, optional=True)
        _check_decimal("max_price", self.max_price, optional=True)
        _check_decimal("parking_cap", self.parking_cap, optional=True)
        _check_int("parking_grace_s", self.parking_grace_s)
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ValueError(f"min_price {self.min_price} exceeds max_price {self.max_price}")
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(f"unknown time zone {self.time_zone!r}") from None


@dataclass(frozen=True, slots=True)
class UsagePeriod:
    """[start, end) of a session in which `energy_wh` was delivered; `charging` False = connected, idle."""

    start: datetime
    end: datetime
    energy_wh: int
    charging: bool

    def __post_init__(self) -> None:
        _check_aware("start", self.start)
        _check_aware("end", self.end)
        if _instant(self.end) <= _instant(self.start):
            raise ValueError(f"period must have a positive duration: {self.start} .. {self.end}")
        _check_int("energy_wh", self.energy_wh)
        if not isinstance(self.charging, bool):
            raise TypeError("charging must be a bool")


@dataclass(frozen=True, slots=True)
class SessionUsage:
    """A session: `periods` are consecutive and cover [started_at, stopped_at] exactly (none if both are equal)."""

    started_at: datetime
    stopped_at: datetime
    periods: tuple[UsagePeriod, ...]

    def __post_init__(self) -> None:
        _check_aware("started_at", self.started_at)
        _check_aware("stopped_at", self.stopped_at)
        periods = tuple(self.periods)
        object.__setattr__(self, "periods", periods)
        started, stopped = _instant(self.started_at), _instant(self.stopped_at)
        if stopped < started:
            raise ValueError("stopped_at is before started_at")
        if not periods:
            if stopped != started:
                raise ValueError("periods must cover [started_at, stopped_at]")
            return
        if _instant(periods[0].start) != started or _instant(periods[-1].end) != stopped:
            raise ValueError("periods must cover [started_at, stopped_at]")
        for before, after in pairwise(periods):
            if _instant(before.end) != _instant(after.start):
                raise ValueError(
                    f"periods must be consecutive: gap or overlap at {before.end} / {after.start}"
                )

    @property
    def energy_wh(self) -> int:
        return sum(period.energy_wh for period in self.periods)


@dataclass(frozen=True, slots=True)
class PriceLine:
    """One line of a price: a dimension billed by one tariff element, or an adjustment (element_index None).

    `quantity` is the billed quantity (after step_size rounding) in `unit` ("kWh", "h" or "session");
    `used_quantity` is the measured one (before step_size rounding). kWh are exact (whole Wh); hours are shown
    to 6 decimals, while `amount` is computed from the exact duration. `amount` is excl. tax and rounded to the
    currency's minor unit. Adjustment lines have quantity 1, unit "session" and unit_price == amount.
    """

    dimension: Dimension
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal
    element_index: int | None
    used_quantity: Decimal


@dataclass(frozen=True, slots=True)
class PriceResult:
    """The price of a session: `subtotal` = sum of line amounts (excl. tax), `tax` = round(subtotal * tax_rate),
    `total` = subtotal + tax. Report figures: `energy_wh` delivered, `charging_s`/`parking_s` connected time
    charging/idle, `billed_parking_s` idle time outside the grace window (what a PARKING_TIME price applies to,
    before step_size rounding). Seconds are exact Decimals (sessions may carry sub-second timestamps).

    `lines` come in a fixed order: FLAT, ENERGY, TIME, PARKING_TIME (each by element index), then
    PARKING_CAP_ADJUSTMENT, then MIN_PRICE_ADJUSTMENT or MAX_PRICE_ADJUSTMENT.
    """

    currency: str
    lines: tuple[PriceLine, ...]
    subtotal: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal
    energy_wh: int
    charging_s: Decimal
    parking_s: Decimal
    billed_parking_s: Decimal


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    """One priced line of a receipt, as the driver reads it (excl. VAT, like the CDR's lines)."""

    label: str  # "Energy 12.345 kWh x 0.35 EUR/kWh"
    amount: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """What a driver's receipt (page, PDF, email) shows for one paid ad-hoc session: everything already in
    the site's time zone and the CDR's currency. Built by billing.selectors.payment_receipt."""

    number: str  # "R-<organisation slug>-<payment id>", stable
    operator_name: str
    operator_address: str
    operator_vat_id: str
    site_name: str
    site_address: str
    evse_label: str  # "<station identity> EVSE <n>" (the id printed on the QR label)
    time_zone: str
    started_at_local: datetime
    stopped_at_local: datetime
    meter_start_kwh: Decimal | None
    meter_stop_kwh: Decimal | None
    energy_kwh: Decimal
    currency: str
    lines: tuple[ReceiptLine, ...]
    subtotal: Decimal
    tax_rate: Decimal  # a fraction: 0.19 = 19 %
    tax: Decimal
    total: Decimal
    captured: Decimal
    refunded: Decimal
    card_hint: str  # "Visa ...4242" or ""
    tariff_label: str
