"""Fixtures of the payment tests: a real localstripe process (one per test session, emptied before each
test) and an organisation that takes ad-hoc card payments at a station with a priced ad-hoc tariff."""

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.models import PaymentSettings
from billing.services.payments import PaymentSettingsInput, payment_settings_update
from billing.services.tariffs import TariffVersionInput, tariff_assign, tariff_create, tariff_version_create
from tests.factories import ConnectorFactory, EvseFactory
from tests.payments.localstripe import (
    PUBLISHABLE_KEY,
    SECRET_KEY,
    WEBHOOK_SECRET,
    LocalStripe,
    localstripe_process,
)

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
# 0.30 EUR/kWh + a 1.00 EUR session fee, 19 % VAT: a 10 kWh session costs (3.00 + 1.00) * 1.19 = 4.76.
ADHOC_ELEMENTS = [
    {"price_components": [{"type": "FLAT", "price": "1.00", "step_size": 1}]},
    {"price_components": [{"type": "ENERGY", "price": "0.30", "step_size": 1}]},
]


@pytest.fixture(scope="session")
def localstripe_server(tmp_path_factory) -> LocalStripe:
    with localstripe_process(tmp_path_factory.mktemp("localstripe") / "localstripe.log") as server:
        yield server


@pytest.fixture
def localstripe(localstripe_server) -> LocalStripe:
    localstripe_server.flush()
    return localstripe_server


@dataclass
class PayWorld:
    organisation: object
    station: object
    evse: object
    connector: object
    settings: PaymentSettings
    server: LocalStripe


def enable_payments(organisation, server: LocalStripe, *, hold: str = "50.00") -> PaymentSettings:
    return payment_settings_update(
        organisation=organisation,
        user=None,
        data=PaymentSettingsInput(
            enabled=True,
            publishable_key=PUBLISHABLE_KEY,
            secret_key=SECRET_KEY,
            webhook_secret=WEBHOOK_SECRET,
            api_base=server.url,
            js_url=f"{server.url}/js.stripe.com/v3/",
            hold_amount=Decimal(hold),
            start_timeout_s=120,
            operator_legal_name="Org A Charging GmbH",
            operator_address="Hauptstr. 1\n10115 Berlin",
            operator_vat_id="DE123456789",
        ),
    )


def assign_adhoc_tariff(
    organisation, settings_row: PaymentSettings, elements=None, *, tax="0.19", name="Ad hoc"
):
    tariff = tariff_create(organisation=organisation, name=name)
    tariff_version_create(
        tariff=tariff,
        data=TariffVersionInput(
            valid_from=EPOCH, currency="EUR", tax_rate=Decimal(tax), elements=elements or ADHOC_ELEMENTS
        ),
    )
    tariff_assign(tariff=tariff, id_token_group=settings_row.adhoc_group)
    return tariff


@pytest.fixture
def pay_world(world, localstripe) -> PayWorld:
    station = world.station_a1
    station.is_connected = True
    station.protocol = "ocpp1.6"
    station.save(update_fields=["is_connected", "protocol"])
    evse = EvseFactory(station=station, evse_id=1)
    connector = ConnectorFactory(evse=evse, connector_id=1, status="Available")
    settings_row = enable_payments(world.org_a, localstripe)
    assign_adhoc_tariff(world.org_a, settings_row)
    return PayWorld(world.org_a, station, evse, connector, settings_row, localstripe)
