"""What the database can hold, checked where OCPP values come in (docs/reliability.md case 44).

The OCPP schemas give sampled values no bounds (1.6: any string; 2.0.1: any JSON number, times 10^multiplier)
and the 2.0.1 schemas (JSON Schema draft 6) count 1.0 as an integer. A value the columns cannot hold used to
fail in the database, and on the group-commit path it failed every message of the batch, other chargers'
included. Checked here, such a value is answered with PropertyConstraintViolation for its own message, before
anything of it is written. Integers are bounded to 32 bits by the schemas (cpms.ocpp_wire.schemas), which every
integer column on the ingest path holds.

The bounds come from the model fields, so that they follow the columns.
"""

from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

from cpms.ocpp.errors import ErrorKind, OcppError
from sessions.models import MeterValue
from stations.models import DeviceVariable

_VALUE = MeterValue._meta.get_field("value")
VALUE_PLACES: int = _VALUE.decimal_places
# DECIMAL(p, s) holds magnitudes below 10^(p - s) once rounded to s places (else PostgreSQL's "numeric field
# overflow").
VALUE_LIMIT = Decimal(10) ** (_VALUE.max_digits - _VALUE.decimal_places)
_QUANTUM = Decimal(1).scaleb(-VALUE_PLACES)
UNIT_LENGTH: int | None = MeterValue._meta.get_field("unit").max_length
_LIMIT = DeviceVariable._meta.get_field("max_limit")
_LIMIT_BOUND = Decimal(10) ** (_LIMIT.max_digits - _LIMIT.decimal_places)
_LIMIT_QUANTUM = Decimal(1).scaleb(-_LIMIT.decimal_places)

# Exponents as wide as decimal allows: a multiplier of 2^31 - 1 must scale, not raise Overflow (the default
# context's Emax is 999,999); PostgreSQL's numeric rounds half away from zero, as ROUND_HALF_UP does.
_ZERO = Decimal(0)
_WIDE = Context(prec=60, Emax=999_999_999_999, Emin=-999_999_999_999, rounding=ROUND_HALF_UP, traps=[])


def number(value: object) -> Decimal | None:
    """A JSON number or numeric string as a Decimal; None when it is not a finite number."""
    try:
        parsed = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return parsed if parsed.is_finite() else None


def _fits(value: Decimal, bound: Decimal, quantum: Decimal) -> bool:
    """Whether `value` rounded to `quantum` stays below `bound` in magnitude (bound a power of ten)."""
    if value.adjusted() < bound.adjusted() - 1:
        return True  # the common case, no rounding needed to tell
    if value.adjusted() > bound.adjusted():
        return False
    return abs(value.quantize(quantum, context=_WIDE)) < bound


def _stored(value: Decimal, quantum: Decimal) -> Decimal:
    """Zero for what rounds to zero in the column: PostgreSQL refuses exponents like 5E-2147483648."""
    return _ZERO if value.adjusted() < quantum.adjusted() - 1 else value


def sampled_value(raw: object, *, multiplier: int | float | str = 0) -> Decimal | None:
    """A sampled value (times 10^multiplier, 2.0.1) as stored in MeterValue.value.

    None when the charger sent no finite number (kept as no value, the frame log has the original). Raises
    OcppError(PROPERTY) when the number does not fit the column: the message is refused, nothing of it stored.
    """
    value = number(raw)
    if value is None:
        return None
    exponent = int(multiplier)
    if exponent:
        value = value.scaleb(exponent, context=_WIDE)
    if not value:
        return _ZERO
    if not _fits(value, VALUE_LIMIT, _QUANTUM):
        shown = str(raw)[:40] + (f" x 10^{exponent}" if exponent else "")
        limit = f"10^{VALUE_LIMIT.adjusted()}"
        raise OcppError(
            ErrorKind.PROPERTY,
            f"sampledValue.value: {shown} is out of range (the magnitude must be below {limit})",
        )
    return _stored(value, _QUANTUM)


def unit(value: str) -> str:
    """A unit of measure as the column holds it: 2.0.1 allows 20 characters (the frame log keeps them all)."""
    return value[:UNIT_LENGTH]


def variable_limit(raw: object) -> Decimal | None:
    """A device model minLimit/maxLimit. Chargers write "no limit" as the largest float (3.4e38): a limit the
    column cannot hold is kept as none rather than refusing the whole report."""
    value = number(raw)
    if value is None or not value:
        return value if value is None else _ZERO
    return _stored(value, _LIMIT_QUANTUM) if _fits(value, _LIMIT_BOUND, _LIMIT_QUANTUM) else None
