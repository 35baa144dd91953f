"""What follows boots and session starts is queued in batches per web process (cpms/ocpp/task_queue.py; issue
13): a storm of boots is one job per OCPP_TASK_BATCH_S with every station once, and the batched jobs rebalance
each site once and survive one station's failure."""

import asyncio

import pytest

from cpms.ocpp import task_queue
from energy import tasks
from tests.factories import ChargingStationFactory, SiteFactory


def test_a_burst_is_one_job_per_kind_with_each_station_once(settings, queued_tasks):
    settings.OCPP_TASK_BATCH_S = 0.1

    async def burst():
        for station_id in (3, 1, 2, 1, 3):
            task_queue.submit_batched(tasks.stations_default_profiles, station_id)
        task_queue.submit_batched(tasks.stations_site_rebalance, 9)
        assert queued_tasks == []  # gathered, not yet queued
        await asyncio.sleep(0.4)

    asyncio.run(burst())
    assert sorted(queued_tasks) == [
        ("energy.tasks.stations_default_profiles", ([3, 1, 2],)),
        ("energy.tasks.stations_site_rebalance", ([9],)),
    ]


@pytest.mark.django_db
def test_a_batch_rebalances_each_site_once(monkeypatch):
    site_a, site_b = SiteFactory(), SiteFactory()
    stations = [ChargingStationFactory(site=site_a) for _ in range(3)] + [ChargingStationFactory(site=site_b)]
    rebalanced = []

    class Result:
        accepted = 1

    monkeypatch.setattr(tasks, "rebalance", lambda *, site_id: rebalanced.append(site_id) or Result())
    assert tasks.stations_site_rebalance([s.pk for s in stations]) == 2
    assert rebalanced == sorted([site_a.pk, site_b.pk])


@pytest.mark.django_db
def test_one_station_failing_does_not_stop_the_batch(monkeypatch, caplog):
    def send(*, station_id):
        if station_id == 2:
            raise ValueError("broken station")
        return 3

    monkeypatch.setattr(tasks, "station_default_profiles_send", send)
    assert tasks.stations_default_profiles([1, 2, 3]) == 6
    assert "station 2: energy job failed" in caplog.text
