"""Billing at the edges of a session, in both OCPP versions: the tariff snapshot when it starts, one billing
job when it ends, none for a duplicate stop; the job then writes exactly one CDR."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import ChargeDetailRecord, SessionPricing
from billing.services.cdrs import session_bill
from billing.services.tariffs import TariffVersionInput, tariff_assign, tariff_create, tariff_version_create
from sessions.models import ChargingSession
from tests.factories import ChargingStationFactory, IdTokenFactory
from tests.ocpp.dialects import DIALECTS
from tests.ocpp.harness import Harness, inline_db  # noqa: F401

pytestmark = pytest.mark.usefixtures("inline_db")


@pytest.fixture(params=DIALECTS, ids=lambda d: d.name)
def dialect(request):
    return request.param()


@pytest.fixture
def station():
    station = ChargingStationFactory(identity="CP-BILL")
    IdTokenFactory(organisation=station.organisation, value="GOOD")
    tariff = tariff_create(organisation=station.organisation, name="standard")
    tariff_version_create(
        tariff=tariff,
        data=TariffVersionInput(
            valid_from=timezone.now() - timedelta(days=1),
            currency="EUR",
            tax_rate=Decimal("0.20"),
            elements=[{"price_components": [{"type": "ENERGY", "price": "0.25"}]}],
        ),
    )
    tariff_assign(tariff=tariff)
    return station


def billed(queued_tasks) -> list[int]:
    return [args[0] for name, args in queued_tasks if name == "billing.tasks.session_bill"]


def test_snapshot_at_start_one_job_at_the_end_one_cdr(dialect, station, queued_tasks):
    cp = Harness(dialect.cp_class, station)
    t0 = timezone.now().replace(microsecond=0) - timedelta(minutes=10)
    dialect.started("TX-1", cp.call(*dialect.start("TX-1", "GOOD", 10_000, t0), "s"))
    session = ChargingSession.objects.get(station=station)
    pricing = SessionPricing.objects.get(session=session)
    assert (pricing.tariff["currency"], pricing.tariff["elements"], billed(queued_tasks)) == (
        "EUR",
        [{"price_components": [{"type": "ENERGY", "price": "0.25", "step_size": 1}]}],
        [],
    )

    stop = dialect.stop("TX-1", 22_000, t0 + timedelta(minutes=5))
    assert cp.call(*stop, "e")[0] == 3
    assert billed(queued_tasks) == [session.pk]
    # The same stop again (1.6: a new message; 2.0.1: the same seqNo, then a new one): answered, no new job.
    assert cp.call(*stop, "e2")[0] == 3
    assert cp.call(*dialect.stop("TX-1", 22_000, t0 + timedelta(minutes=5)), "e3")[0] == 3
    assert billed(queued_tasks) == [session.pk]

    for session_id in [*billed(queued_tasks), session.pk]:  # the job, and a redelivery of it
        session_bill(session_id=session_id)
    cdr = ChargeDetailRecord.objects.get()
    # 12 kWh x 0.25 = 3.00, 20 % tax 0.60, total 3.60.
    assert (cdr.session_id, cdr.energy_wh, cdr.subtotal, cdr.tax, cdr.total) == (
        session.pk,
        12_000,
        Decimal("3.00"),
        Decimal("0.60"),
        Decimal("3.60"),
    )
