"""Demo prices for `make run` (called by `load_demo` after the stations' demo data): a tariff per demo site in
its currency and each site's electricity price. Idempotent: what exists is left as it is."""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import transaction

from accounts.models import Organisation
from billing.models import SiteEnergyPrice, Tariff, TariffAssignment
from billing.services.energy_prices import EnergyPriceInput, site_energy_price_create
from billing.services.tariffs import TariffVersionInput, tariff_assign, tariff_create, tariff_version_create
from stations.models import Site

VALID_FROM = datetime(2024, 1, 1, tzinfo=UTC)

# (site name, tariff name, currency, tax rate, energy price per kWh, price per idle hour after the grace,
#  site's electricity price per kWh, its evening peak price 17:00-21:00)
DEMO_PRICES = (
    ("Berlin Depot", "Berlin ad hoc", "EUR", "0.19", "0.49", "6.00", "0.18", "0.28"),
    ("Boston Plaza", "Boston ad hoc", "USD", "0.0625", "0.45", "9.00", "0.16", "0.24"),
)


@transaction.atomic
def demo_prices_load(*, organisation: Organisation) -> int:
    """Create the demo tariffs, their assignments and the sites' energy prices where missing; returns how
    many rows were created."""
    created = 0
    for site_name, name, currency, tax, per_kwh, per_idle_hour, energy, peak in DEMO_PRICES:
        site = Site.objects.filter(organisation=organisation, name=site_name).first()
        if site is None:
            continue
        tariff = Tariff.objects.filter(organisation=organisation, name=name).first()
        if tariff is None:
            tariff = tariff_create(organisation=organisation, name=name, description="Pay as you go.")
            tariff_version_create(
                tariff=tariff,
                data=TariffVersionInput(
                    valid_from=VALID_FROM,
                    currency=currency,
                    tax_rate=Decimal(tax),
                    elements=[
                        {"price_components": [{"type": "ENERGY", "price": per_kwh, "step_size": 1}]},
                        {
                            "price_components": [
                                {"type": "PARKING_TIME", "price": per_idle_hour, "step_size": 60}
                            ]
                        },
                    ],
                    parking_grace_s=30 * 60,
                    parking_cap=Decimal(20),
                ),
            )
            created += 2
        if not TariffAssignment.objects.filter(organisation=organisation, site=site).exists():
            tariff_assign(tariff=tariff, site=site)
            created += 1
        if not SiteEnergyPrice.objects.filter(site=site).exists():
            site_energy_price_create(
                site=site,
                data=EnergyPriceInput(
                    valid_from=VALID_FROM,
                    currency=currency,
                    price_per_kwh=Decimal(energy),
                    time_of_use=[{"start_time": "17:00", "end_time": "21:00", "price_per_kwh": peak}],
                ),
            )
            created += 1
    return created
