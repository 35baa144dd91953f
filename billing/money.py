"""Currency minor units and the one rounding function of billing.

Money is `Decimal` everywhere and never `float`. Exact intermediate values (a quantity times a unit price, a
subtotal times a tax rate) may be `Fraction`s; they become money only through `round_money`, which rounds
half up (half away from zero, `decimal.ROUND_HALF_UP`) to the currency's minor unit. Where the engine rounds is
documented in `billing.tariffs`.
"""

import math
from decimal import Decimal
from fractions import Fraction

# ISO 4217 currencies whose minor unit is not 2 (list one of ISO 4217, as published by SIX). Every other code,
# including codes unknown here, has 2 decimals.
_MINOR_UNITS: dict[str, int] = {
    # 0 decimals
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    # 3 decimals
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
    # 4 decimals
    "CLF": 4,
    "UYW": 4,
}
DEFAULT_MINOR_UNIT = 2

Exact = Decimal | Fraction | int


def minor_unit(currency: str) -> int:
    """Number of decimals of `currency` (ISO 4217 minor unit); 2 for codes not listed."""
    return _MINOR_UNITS.get(currency.upper(), DEFAULT_MINOR_UNIT)


def round_half_up(value: Exact, places: int) -> Decimal:
    """`value` rounded half away from zero to `places` decimals, computed exactly.

    The result has exactly `places` decimals (`Decimal("1.20")`, not `Decimal("1.2")`), so sums of rounded
    amounts keep the currency's exponent. Floats are refused: they are not exact.
    """
    if isinstance(value, float | bool) or not isinstance(value, Decimal | Fraction | int):
        raise TypeError(f"exact number expected, got {type(value).__name__}")
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError(f"finite number expected, got {value}")
    scaled = Fraction(value) * 10**places
    units = math.floor(abs(scaled) + Fraction(1, 2))
    if scaled < 0:
        units = -units
    # Built from a string so that no decimal context (precision 28) rounds it a second time.
    return Decimal(f"{units}E-{places}")


def round_money(value: Exact, currency: str) -> Decimal:
    """`value` rounded half up to the minor unit of `currency`: the only place money is rounded."""
    return round_half_up(value, minor_unit(currency))
