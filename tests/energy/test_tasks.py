"""The energy jobs retry what a database restart or a Redis outage made fail
(docs/reliability.md cases 31 and 32, issue 15).

The fault is injected where the database would raise it (the service call), and the real service runs on
the retry. Celery runs a retry at once when a task is applied eagerly (`apply`), so no countdown is waited.
"""

import pytest
from django.db import OperationalError

from energy import tasks
from tests.factories import ChargingStationFactory


def _flaky(real, failures: int, calls: list, exc: Exception):
    def service(**kwargs):
        calls.append(kwargs)
        if len(calls) <= failures:
            raise exc
        return real(**kwargs)

    return service


@pytest.mark.parametrize(
    ("task_name", "service_name", "arg"),
    [
        ("site_rebalance", "rebalance", "site"),
        ("station_site_rebalance", "rebalance", "station"),
        ("station_default_profiles", "station_default_profiles_send", "station"),
    ],
)
def test_rel_31_energy_job_that_failed_in_a_database_outage_is_retried(
    db, monkeypatch, task_name, service_name, arg
):
    station = ChargingStationFactory()
    calls = []
    outage = OperationalError("terminating connection due to administrator command")
    monkeypatch.setattr(tasks, service_name, _flaky(getattr(tasks, service_name), 2, calls, outage))
    pk = station.site_id if arg == "site" else station.pk

    result = getattr(tasks, task_name).apply(args=(pk,))

    assert result.successful(), result.traceback
    assert result.get() == 0  # no managed EVSEs: the real service sends nothing
    expected = {"site_id": station.site_id} if service_name == "rebalance" else {"station_id": station.pk}
    assert calls == [expected] * 3


def test_energy_job_gives_up_after_its_retries(db, monkeypatch):
    station = ChargingStationFactory()
    calls = []
    outage = OperationalError("connection refused")
    monkeypatch.setattr(tasks, "rebalance", _flaky(tasks.rebalance, 100, calls, outage))

    result = tasks.site_rebalance.apply(args=(station.site_id,))

    assert result.failed()
    assert isinstance(result.result, OperationalError)
    assert len(calls) == 1 + tasks.RETRY["max_retries"]


def test_energy_job_does_not_retry_a_bug(db, monkeypatch):
    station = ChargingStationFactory()
    calls = []
    monkeypatch.setattr(tasks, "rebalance", _flaky(tasks.rebalance, 100, calls, ValueError("a bug")))

    result = tasks.site_rebalance.apply(args=(station.site_id,))

    assert result.failed()
    assert isinstance(result.result, ValueError)
    assert calls == [{"site_id": station.site_id}]
