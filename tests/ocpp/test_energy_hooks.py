"""Energy jobs queued by the OCPP handlers of both versions: the fail-safe defaults when a station boots
(and boots again after a reconnect), a rebalance when a session starts or stops; nothing for a duplicate."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import ChargingStationFactory, IdTokenFactory
from tests.ocpp.dialects import DIALECTS
from tests.ocpp.harness import Harness, inline_db  # noqa: F401

pytestmark = pytest.mark.usefixtures("inline_db")


@pytest.fixture(params=DIALECTS, ids=lambda d: d.name)
def dialect(request):
    return request.param()


def energy_jobs(queued_tasks) -> list[tuple[str, tuple]]:
    return [
        (name.removeprefix("energy.tasks."), args)
        for name, args in queued_tasks
        if name.startswith("energy.")
    ]


def test_boot_and_reconnect_queue_the_default_profiles(dialect, queued_tasks):
    station = ChargingStationFactory(identity="CP-EN")
    Harness(dialect.cp_class, station).call(*dialect.boot(), "b1")
    # A reconnect is a new connection that boots again.
    Harness(dialect.cp_class, station).call(*dialect.boot(), "b2")
    assert energy_jobs(queued_tasks) == [
        ("stations_default_profiles", ([station.pk],)),
        ("stations_default_profiles", ([station.pk],)),
    ]


def test_a_pending_station_gets_no_profiles(dialect, queued_tasks):
    station = ChargingStationFactory(identity="CP-PEND", registration_status="Pending")
    Harness(dialect.cp_class, station).call(*dialect.boot(), "b1")
    assert energy_jobs(queued_tasks) == []


def test_session_start_and_stop_queue_a_rebalance_once(dialect, queued_tasks):
    station = ChargingStationFactory(identity="CP-EN2")
    IdTokenFactory(organisation=station.organisation, value="GOOD")
    cp = Harness(dialect.cp_class, station)
    t0 = timezone.now().replace(microsecond=0) - timedelta(minutes=5)
    dialect.started("TX", cp.call(*dialect.start("TX", "GOOD", 0, t0), "s"))
    stop = dialect.stop("TX", 1_000, t0 + timedelta(minutes=2))
    cp.call(*stop, "e1")
    cp.call(*stop, "e2")  # a duplicate stop changes nothing
    assert energy_jobs(queued_tasks) == [
        ("stations_site_rebalance", ([station.pk],)),
        ("stations_site_rebalance", ([station.pk],)),
    ]
