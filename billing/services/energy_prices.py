"""What a site pays for electricity, and the energy cost of a session priced with the tariff engine.

A SiteEnergyPrice is turned into an engine Tariff: one ENERGY element per time-of-use window (restricted by
start/end time and weekdays, first match wins), then the flat `price_per_kwh` for every other moment, no tax.
So energy cost follows the same time-of-use and DST rules as the prices drivers pay.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction

from billing.models import SiteEnergyPrice
from billing.tariff_json import TariffFormatError, decimal_from_json, restrictions_parse
from billing.tariffs import price_session
from billing.types import Dimension, PriceComponent, SessionUsage, Tariff, TariffElement
from cpms.errors import Conflict, ValidationFailed
from stations.models import Site

_WINDOW_KEYS = frozenset({"start_time", "end_time", "day_of_week", "price_per_kwh"})


def _tariff(*, currency: str, price_per_kwh: Decimal, time_of_use: list[object], time_zone: str) -> Tariff:
    if not isinstance(time_of_use, list):
        raise TariffFormatError("time_of_use: a list is required")
    elements = []
    for index, window in enumerate(time_of_use):
        path = f"time_of_use[{index}]"
        if not isinstance(window, dict):
            raise TariffFormatError(f"{path}: an object is required")
        unknown = sorted(set(window) - _WINDOW_KEYS)
        if unknown:
            raise TariffFormatError(f"{path}: unknown field(s) {', '.join(unknown)}")
        restrictions = restrictions_parse(
            {key: window[key] for key in ("start_time", "end_time", "day_of_week") if key in window}, path
        )
        price = decimal_from_json(window.get("price_per_kwh"), f"{path}.price_per_kwh")
        if price < 0:
            raise TariffFormatError(f"{path}.price_per_kwh: must be >= 0")
        elements.append(TariffElement((PriceComponent(Dimension.ENERGY, price),), restrictions))
    elements.append(TariffElement((PriceComponent(Dimension.ENERGY, price_per_kwh),)))
    return Tariff(currency=currency, tax_rate=Decimal(0), elements=tuple(elements), time_zone=time_zone)


@dataclass(frozen=True, slots=True, kw_only=True)
class EnergyPriceInput:
    valid_from: datetime
    currency: str
    price_per_kwh: Decimal
    time_of_use: list[object]  # as received, checked by _tariff


def site_energy_price_create(*, site: Site, data: EnergyPriceInput) -> SiteEnergyPrice:
    """The site's electricity price from `valid_from` on (a change is a new row; history stays)."""
    try:
        _tariff(
            currency=data.currency,
            price_per_kwh=data.price_per_kwh,
            time_of_use=data.time_of_use,
            time_zone=site.time_zone,
        )
    except (TariffFormatError, TypeError, ValueError) as error:
        raise ValidationFailed(str(error)) from None
    try:
        with transaction.atomic():
            return SiteEnergyPrice.objects.create(
                site=site,
                valid_from=data.valid_from,
                currency=data.currency.upper(),
                price_per_kwh=data.price_per_kwh,
                time_of_use=data.time_of_use,
            )
    except IntegrityError:
        raise Conflict(
            f"Site {site.pk} already has an energy price from {data.valid_from.isoformat()}."
        ) from None


def energy_price_in_force(*, site_id: int, at: datetime) -> SiteEnergyPrice | None:
    return SiteEnergyPrice.objects.filter(site_id=site_id, valid_from__lte=at).order_by("-valid_from").first()


def energy_cost(*, price: SiteEnergyPrice, usage: SessionUsage, time_zone: str) -> Decimal:
    """What the energy of `usage` cost the site under `price`, excl. tax, rounded to the minor unit."""
    tariff = _tariff(
        currency=price.currency,
        price_per_kwh=price.price_per_kwh,
        time_of_use=price.time_of_use,
        time_zone=time_zone,
    )
    return price_session(tariff, usage).subtotal
