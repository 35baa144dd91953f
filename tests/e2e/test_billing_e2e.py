"""Issue 5, acceptance 2: the simulated sessions of the foundation issue (one 1.6 and one 2.0.1 charger, real
server, real Celery worker) end with CDRs whose totals are computed here by hand from what the chargers
reported."""

import time
from decimal import ROUND_HALF_UP, Decimal

import pytest

from billing.models import ChargeDetailRecord
from billing.services.tariffs import TariffVersionInput, tariff_assign, tariff_create, tariff_version_create
from sessions.enums import IdTokenStatus
from sessions.models import ChargingSession
from tests.e2e.helpers import api_get, operator_token, parse_ts, simulate
from tests.factories import ChargingStationFactory, IdTokenFactory, SiteFactory

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

IDENTITIES = ("E2E-BILL-001", "E2E-BILL-002")
CDR_WAIT_S = 60.0


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def test_e2e_sessions_end_with_hand_checked_cdrs(cpms_server, celery_worker_process):
    site = SiteFactory(time_zone="Europe/Berlin")
    for identity in IDENTITIES:
        ChargingStationFactory(identity=identity, site=site)
    token = IdTokenFactory(
        organisation=site.organisation, value="E2E-BILL-TAG", status=IdTokenStatus.ACCEPTED
    )
    tariff = tariff_create(organisation=site.organisation, name="Ad hoc")
    tariff_version_create(
        tariff=tariff,
        data=TariffVersionInput(
            valid_from=parse_ts("2020-01-01T00:00:00Z"),
            currency="EUR",
            tax_rate=Decimal("0.19"),
            elements=[
                {"price_components": [{"type": "FLAT", "price": "0.50"}]},
                {"price_components": [{"type": "ENERGY", "price": "0.30"}]},
            ],
        ),
    )
    tariff_assign(tariff=tariff, site=site)
    api_token = operator_token(site.organisation, "e2e_billing_operator")

    summary = simulate(cpms_server, IDENTITIES, id_tag=token.value, meter_samples=3, seed=5, protocol="mixed")

    assert summary.ok, summary.format()
    assert summary.protocols == {"1.6": 1, "2.0.1": 1}
    deadline = time.monotonic() + CDR_WAIT_S
    while ChargeDetailRecord.objects.count() < len(IDENTITIES) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ChargeDetailRecord.objects.count() == len(IDENTITIES), celery_worker_process.log_tail()

    for charger in summary.chargers:
        [record] = charger.sessions
        session = ChargingSession.objects.get(station__identity=charger.identity)
        cdr = ChargeDetailRecord.objects.get(session=session)
        # By hand: a flat 0.50, plus the kWh the charger reported (its meter stop - start) at 0.30, each
        # rounded to the cent; then 19 % tax on the subtotal, rounded to the cent.
        kwh = Decimal(record.meter_stop_wh - record.meter_start_wh) / 1000
        energy_amount = cents(kwh * Decimal("0.30"))
        subtotal = Decimal("0.50") + energy_amount
        tax = cents(subtotal * Decimal("0.19"))
        assert kwh > 0
        assert (cdr.energy_wh, cdr.flat_amount, cdr.energy_amount, cdr.subtotal, cdr.tax, cdr.total) == (
            record.energy_wh,
            Decimal("0.50"),
            energy_amount,
            subtotal,
            tax,
            subtotal + tax,
        ), charger.protocol
        assert (cdr.started_at, cdr.stopped_at) == (parse_ts(record.started_at), parse_ts(record.stopped_at))
        assert (cdr.station_identity, cdr.id_tag, cdr.tariff_label) == (
            charger.identity,
            token.value,
            "Ad hoc v1",
        )

        status, body = api_get(cpms_server, f"/api/v1/sessions/{session.pk}/", token=api_token)
        assert status == 200
        assert (body["cost"]["currency"], Decimal(body["cost"]["total"])) == ("EUR", subtotal + tax)
