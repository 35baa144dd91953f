"""CostUpdated during a session to the 2.0.1 chargers that show costs (OCPP 2.0.1 I02)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import SessionPricing
from billing.services.running_costs import running_costs_send
from billing.services.tariffs import session_pricing_snapshot, tariff_assign
from sessions.models import MeterValue
from stations.models import DeviceVariable
from tests.billing.test_billing_records import energy, make_tariff
from tests.factories import ChargingSessionFactory, ChargingStationFactory


@pytest.fixture
def running(world):
    tariff_assign(tariff=make_tariff(world.org_a, "t", [energy("0.30")]))

    def make(identity: str, *, protocol: str = "ocpp2.0.1", shows_costs: bool = True):
        station = ChargingStationFactory(
            identity=identity, site=world.site_a1, protocol=protocol, is_connected=True
        )
        if shows_costs:
            DeviceVariable.objects.create(
                station=station,
                component="TariffCostCtrlr",
                variable="Enabled",
                variable_instance="Cost",
                value="true",
                updated_at=timezone.now(),
            )
        started = timezone.now().replace(microsecond=0) - timedelta(minutes=30)
        session = ChargingSessionFactory(
            station=station,
            transaction_id=f"TX-{identity}",
            started_at=started,
            meter_start_wh=1_000,
            meter_last_wh=6_000,
            meter_last_at=started + timedelta(minutes=20),
        )
        MeterValue.objects.create(
            station=station,
            session=session,
            timestamp=started,
            value=Decimal(1_000),
            unit="Wh",
            received_at=started,
        )
        session_pricing_snapshot(session_id=session.pk)
        return session

    return make


def test_the_running_cost_goes_to_chargers_that_show_costs_once_per_change(running, fake_charger, settings):
    settings.BILLING_COST_UPDATE_S = 300
    fake_charger.answers["CostUpdated"] = {}
    session = running("CP-COST")
    running("CP-NOCOST", shows_costs=False)
    running("CP-16", protocol="ocpp1.6")

    assert running_costs_send() == 1
    # 5 kWh x 0.30 = 1.50 + 19 % tax = 1.785 -> 1.79.
    assert fake_charger.received == [
        ("CP-COST", "CostUpdated", {"totalCost": 1.79, "transactionId": "TX-CP-COST"})
    ]
    pricing = SessionPricing.objects.get(session=session)
    assert pricing.cost_sent_total == Decimal("1.79") and pricing.cost_sent_at is not None

    assert running_costs_send() == 0  # not due again for BILLING_COST_UPDATE_S
    settings.BILLING_COST_UPDATE_S = 1
    SessionPricing.objects.filter(pk=pricing.pk).update(cost_sent_at=timezone.now() - timedelta(seconds=5))
    assert running_costs_send() == 0  # due, but the cost has not changed
    assert len(fake_charger.received) == 1


def test_a_refused_cost_update_is_tried_again(running, fake_charger):
    from tests.commands import CallError

    fake_charger.answers["CostUpdated"] = CallError("NotSupported")
    session = running("CP-COST")
    assert running_costs_send() == 0
    assert SessionPricing.objects.get(session=session).cost_sent_at is None
    fake_charger.answers["CostUpdated"] = {}
    assert running_costs_send() == 1
