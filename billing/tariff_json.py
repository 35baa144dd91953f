"""Tariffs as JSON (OCPI 2.2.1 shapes) <-> the engine's frozen types (`billing.types`).

Stored and accepted form of `TariffVersion.elements`, an OCPI 2.2.1 TariffElement list:

    [{"price_components": [{"type": "ENERGY", "price": "0.30", "step_size": 1}],
      "restrictions": {"start_time": "08:00", "end_time": "18:00", "day_of_week": ["MONDAY"], ...}}]

Restrictions use OCPI's names and units: start_time/end_time "HH:MM", start_date/end_date "YYYY-MM-DD",
min_kwh/max_kwh, min_current/max_current (A), min_power/max_power (kW), min_duration/max_duration (seconds),
day_of_week, reservation. Prices may be JSON numbers or strings; they are read as decimals of their text, never
through binary floats, and stored as strings (`elements_normalise`).

Every parse error is a `TariffFormatError` whose message names the field (`elements[0].price_components[1].price`).
"""

from collections.abc import Mapping
from datetime import date, time
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from billing.types import Dimension, PriceComponent, Restrictions, Tariff, TariffElement

_DECIMAL_RESTRICTIONS = {
    "min_kwh": "min_kwh",
    "max_kwh": "max_kwh",
    "min_current": "min_current_a",
    "max_current": "max_current_a",
    "min_power": "min_power_kw",
    "max_power": "max_power_kw",
}
_INT_RESTRICTIONS = {"min_duration": "min_duration_s", "max_duration": "max_duration_s"}
_RESTRICTION_KEYS = frozenset(
    {*_DECIMAL_RESTRICTIONS, *_INT_RESTRICTIONS, "start_time", "end_time", "start_date", "end_date"}
    | {"day_of_week", "reservation"}
)


class TariffFormatError(ValueError):
    """Invalid tariff JSON; the message starts with the path of the offending field."""


def decimal_from_json(value: object, path: str) -> Decimal:
    """A JSON number or numeric string as the Decimal of its text (0.1 stays 0.1)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise TariffFormatError(f"{path}: a number is required")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise TariffFormatError(f"{path}: {value!r} is not a number") from None
    if not number.is_finite():
        raise TariffFormatError(f"{path}: must be finite")
    return number


def _int(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TariffFormatError(f"{path}: a non-negative integer is required")
    return value


def _time(value: object, path: str) -> time:
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        raise TariffFormatError(f"{path}: expected HH:MM")
    try:
        return time(int(value[:2]), int(value[3:]))
    except ValueError:
        raise TariffFormatError(f"{path}: expected HH:MM") from None


def _date(value: object, path: str) -> date:
    # Anything but YYYY-MM-DD is refused: read as "no restriction", a date limit would silently widen.
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise TariffFormatError(f"{path}: expected YYYY-MM-DD")


def restrictions_parse(data: object, path: str) -> Restrictions | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise TariffFormatError(f"{path}: an object is required")
    unknown = sorted(set(data) - _RESTRICTION_KEYS)
    if unknown:
        raise TariffFormatError(f"{path}: unknown field(s) {', '.join(unknown)}")
    # Restrictions' keyword arguments, of several types: Restrictions itself checks each (TypeError/ValueError).
    fields: dict[str, Any] = {}
    for key in ("start_time", "end_time"):
        if data.get(key) is not None:
            fields[key] = _time(data[key], f"{path}.{key}")
    for key in ("start_date", "end_date"):
        if data.get(key) is not None:
            fields[key] = _date(data[key], f"{path}.{key}")
    for key, name in _DECIMAL_RESTRICTIONS.items():
        if data.get(key) is not None:
            fields[name] = decimal_from_json(data[key], f"{path}.{key}")
    for key, name in _INT_RESTRICTIONS.items():
        if data.get(key) is not None:
            fields[name] = _int(data[key], f"{path}.{key}")
    if data.get("day_of_week") is not None:
        days = data["day_of_week"]
        if not isinstance(days, list) or not all(isinstance(day, str) for day in days):
            raise TariffFormatError(f"{path}.day_of_week: a list of day names is required")
        fields["day_of_week"] = frozenset(days)
    if data.get("reservation") is not None:
        fields["reservation"] = data["reservation"]
    try:
        return Restrictions(**fields)
    except (TypeError, ValueError) as error:
        raise TariffFormatError(f"{path}: {error}") from None


def elements_parse(data: object) -> tuple[TariffElement, ...]:
    """OCPI TariffElement list -> engine elements; TariffFormatError on anything invalid."""
    if not isinstance(data, list) or not data:
        raise TariffFormatError("elements: a non-empty list is required")
    elements = []
    for index, element in enumerate(data):
        path = f"elements[{index}]"
        if not isinstance(element, Mapping):
            raise TariffFormatError(f"{path}: an object is required")
        unknown = sorted(set(element) - {"price_components", "restrictions"})
        if unknown:
            raise TariffFormatError(f"{path}: unknown field(s) {', '.join(unknown)}")
        components_data = element.get("price_components")
        if not isinstance(components_data, list) or not components_data:
            raise TariffFormatError(f"{path}.price_components: a non-empty list is required")
        components = []
        for number, component in enumerate(components_data):
            component_path = f"{path}.price_components[{number}]"
            if not isinstance(component, Mapping):
                raise TariffFormatError(f"{component_path}: an object is required")
            unknown = sorted(set(component) - {"type", "price", "step_size", "vat"})
            if unknown:
                raise TariffFormatError(f"{component_path}: unknown field(s) {', '.join(unknown)}")
            try:
                components.append(
                    PriceComponent(
                        # Checked by PriceComponent (ValueError for an unknown type).
                        type=cast(Dimension, component.get("type")),
                        price=decimal_from_json(component.get("price"), f"{component_path}.price"),
                        step_size=_int(component.get("step_size", 1), f"{component_path}.step_size"),
                    )
                )
            except (TypeError, ValueError) as error:
                if isinstance(error, TariffFormatError):
                    raise
                raise TariffFormatError(f"{component_path}: {error}") from None
        elements.append(
            TariffElement(
                price_components=tuple(components),
                restrictions=restrictions_parse(element.get("restrictions"), f"{path}.restrictions"),
            )
        )
    return tuple(elements)


def _decimal_text(value: Decimal) -> str:
    return format(value, "f")


def restrictions_dump(restrictions: Restrictions | None) -> dict[str, object] | None:
    if restrictions is None:
        return None
    data: dict[str, object] = {}
    for key in ("start_time", "end_time"):
        value = getattr(restrictions, key)
        if value is not None:
            data[key] = value.strftime("%H:%M")
    for key in ("start_date", "end_date"):
        value = getattr(restrictions, key)
        if value is not None:
            data[key] = value.isoformat()
    for key, name in _DECIMAL_RESTRICTIONS.items():
        value = getattr(restrictions, name)
        if value is not None:
            data[key] = _decimal_text(value)
    for key, name in _INT_RESTRICTIONS.items():
        value = getattr(restrictions, name)
        if value is not None:
            data[key] = value
    if restrictions.day_of_week:
        order = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
        data["day_of_week"] = [day for day in order if day in restrictions.day_of_week]
    if restrictions.reservation is not None:
        data["reservation"] = restrictions.reservation
    return data


def elements_dump(elements: tuple[TariffElement, ...]) -> list[dict[str, object]]:
    """Engine elements -> the stored JSON form (prices as strings)."""
    dumped = []
    for element in elements:
        item: dict[str, object] = {
            "price_components": [
                {
                    "type": str(component.type),
                    "price": _decimal_text(component.price),
                    "step_size": component.step_size,
                }
                for component in element.price_components
            ]
        }
        restrictions = restrictions_dump(element.restrictions)
        if restrictions is not None:
            item["restrictions"] = restrictions
        dumped.append(item)
    return dumped


def elements_normalise(data: object) -> list[dict[str, object]]:
    """Validate OCPI elements and return their canonical stored form."""
    return elements_dump(elements_parse(data))


def tariff_dump(tariff: Tariff) -> dict[str, object]:
    """An engine Tariff as JSON: the session snapshot (`SessionPricing.tariff`)."""
    return {
        "currency": tariff.currency,
        "tax_rate": _decimal_text(tariff.tax_rate),
        "min_price": None if tariff.min_price is None else _decimal_text(tariff.min_price),
        "max_price": None if tariff.max_price is None else _decimal_text(tariff.max_price),
        "parking_grace_s": tariff.parking_grace_s,
        "parking_cap": None if tariff.parking_cap is None else _decimal_text(tariff.parking_cap),
        "time_zone": tariff.time_zone,
        "elements": elements_dump(tariff.elements),
    }


def tariff_load(data: Mapping[str, Any]) -> Tariff:
    """The inverse of `tariff_dump`."""

    def optional(key: str) -> Decimal | None:
        return None if data.get(key) is None else decimal_from_json(data[key], key)

    try:
        return Tariff(
            currency=data["currency"],
            tax_rate=decimal_from_json(data["tax_rate"], "tax_rate"),
            min_price=optional("min_price"),
            max_price=optional("max_price"),
            parking_grace_s=_int(data.get("parking_grace_s", 0), "parking_grace_s"),
            parking_cap=optional("parking_cap"),
            time_zone=data["time_zone"],
            elements=elements_parse(data["elements"]),
        )
    except KeyError as missing:
        raise TariffFormatError(f"{missing.args[0]}: required") from None
    except (TypeError, ValueError) as error:
        if isinstance(error, TariffFormatError):
            raise
        raise TariffFormatError(str(error)) from None
