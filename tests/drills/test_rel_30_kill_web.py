"""docs/reliability.md case 30 (issue 15, acceptance 1): kill -9 of web processes under load. Two web
processes on PostgreSQL with Redis as channel layer, a Celery worker, and drill chargers (half 1.6, half
2.0.1) that re-send every unacknowledged transaction message after a reconnect, to the same process once it is
back or to the other one. Afterwards every session is stored exactly once with the charger's totals, every
acknowledged meter value once, every CDR once: nothing lost, nothing twice.

Two drills: kills at random moments under load (from outside, like an OOM killer), and kills at the three
points of case 30 made exact by the server's test hook (cpms/ocpp/drill_hook.py): before the commit,
after the commit before the answer, after the answer.
"""

import asyncio
import time
from decimal import Decimal

import pytest

from billing.services.tariffs import TariffVersionInput, tariff_assign, tariff_create, tariff_version_create
from billing.tasks import sessions_bill_pending
from sessions.enums import IdTokenStatus
from tests.drills.harness import (
    cluster,
    fleet,
    identities,
    kill_repeatedly,
    run_sessions,
    scaled,
    skip_without_postgres_and_redis,
    supervise,
    verify,
    wait_for_cdrs,
)
from tests.e2e.helpers import parse_ts
from tests.factories import ChargingStationFactory, IdTokenFactory, SiteFactory

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

ID_TAG = "DRILL-TAG"
CDR_WAIT_S = 20.0


def _platform(names: list[str]) -> None:
    site = SiteFactory(time_zone="Europe/Berlin")
    for name in names:
        ChargingStationFactory(identity=name, site=site)
    IdTokenFactory(organisation=site.organisation, value=ID_TAG, status=IdTokenStatus.ACCEPTED)
    tariff = tariff_create(organisation=site.organisation, name="Drill")
    tariff_version_create(
        tariff=tariff,
        data=TariffVersionInput(
            valid_from=parse_ts("2020-01-01T00:00:00Z"),
            currency="EUR",
            tax_rate=Decimal("0.19"),
            elements=[{"price_components": [{"type": "ENERGY", "price": "0.30"}]}],
        ),
    )
    tariff_assign(tariff=tariff, site=site)


def _cdrs_with_sweep(web, expected: int) -> tuple[int, bool]:
    """Wait for the CDRs the session ends queued; a job lost with a killed process is what the
    minute's sweep is for: queue it once (as beat would) and wait again. (count, sweep needed)."""
    count = wait_for_cdrs(expected, timeout_s=CDR_WAIT_S)
    if count == expected:
        return count, False
    sessions_bill_pending.apply_async(queue=web.env["CELERY_QUEUE"])
    return wait_for_cdrs(expected, timeout_s=CDR_WAIT_S), True


def test_rel_30_kill_9_of_web_processes_under_load(
    request,
    transactional_db,
    tmp_path,
    celery_worker_process,
):
    skip_without_postgres_and_redis()
    chargers_n = scaled("CHARGERS", 24)
    sessions_n = scaled("SESSIONS", 1)
    samples_n = scaled("SAMPLES", 8)
    kills_n = scaled("KILLS", 3)
    names = identities("DRILL-K", chargers_n)
    _platform(names)

    with cluster(request, tmp_path, processes=2) as web:
        chargers = fleet(web, names, id_tag=ID_TAG, seed=30)

        async def drill() -> None:
            faults_done = asyncio.Event()
            load = asyncio.create_task(
                run_sessions(
                    chargers,
                    sessions=sessions_n,
                    samples=samples_n,
                    interval_s=0.25,
                    deadline_s=75,
                    until=faults_done,
                )
            )
            await kill_repeatedly(web, kills=kills_n, first_after_s=2.0, every_s=2.0)
            faults_done.set()
            await load

        started = time.monotonic()
        asyncio.run(drill())
        elapsed = time.monotonic() - started
        sessions_total = sum(len(c.sessions) for c in chargers)
        cdrs, swept = _cdrs_with_sweep(web, sessions_total)
        errors = web.log_lines(" ERROR ", " CRITICAL ")

    report = verify(chargers, cdrs=True)
    print(
        report.format(
            "case 30, kill -9 under load",
            kills=len(web.kills),
            seconds=f"{elapsed:.1f}",
            sweep_needed=swept,
            error_lines=len(errors),
        )
    )
    assert len(web.kills) == kills_n
    assert report.problems == [], report.problems
    assert report.sessions == sessions_total >= chargers_n * sessions_n
    assert report.cdrs == cdrs == sessions_total, celery_worker_process.log_tail()
    # The kills really hit chargers in the middle of their work: some messages had to be sent again.
    assert report.attempts > report.calls
    assert report.connections > chargers_n


# Per point, one kill at each kind of transaction message: a 1.6 start, a 1.6 meter value, a 1.6 stop,
# and 2.0.1 Started/Updated/Ended events (the Nth of each this process receives).
KILL_SPECS = (
    "{point}:StartTransaction:2,{point}:MeterValues:10,{point}:StopTransaction:2,{point}:TransactionEvent:20"
)


@pytest.mark.parametrize("point", ["received", "committed", "answered"])
def test_rel_30_kill_before_commit_after_commit_and_after_answer(
    request,
    transactional_db,
    tmp_path,
    celery_worker_process,
    point,
):
    skip_without_postgres_and_redis()
    chargers_n = scaled("POINT_CHARGERS", 8)
    names = identities(f"DRILL-{point[:3].upper()}", chargers_n)
    _platform(names)
    env = {
        "CPMS_DRILL_KILL_AT": KILL_SPECS.format(point=point),
        "CPMS_DRILL_KILL_ONCE": str(tmp_path / "fired"),
    }

    with cluster(request, tmp_path, processes=2, extra_env=env) as web:
        chargers = fleet(web, names, id_tag=ID_TAG, seed=31)
        restarts: list[str] = []

        async def drill() -> None:
            stop = asyncio.Event()
            supervisor = asyncio.create_task(supervise(web, stop, restarts))
            await run_sessions(chargers, sessions=2, samples=6, interval_s=0.2, deadline_s=75)
            stop.set()
            await supervisor

        asyncio.run(drill())
        cdrs, swept = _cdrs_with_sweep(web, chargers_n * 2)

    fired = sorted(p.name for p in tmp_path.glob("fired.*"))
    report = verify(chargers, cdrs=True)
    print(report.format(f"case 30, kill at '{point}'", kills=len(restarts), sweep_needed=swept))
    # Every spec fired once, each killing the process that reached it (and a supervisor restarted it).
    assert fired == ["fired.0", "fired.1", "fired.2", "fired.3"]
    assert len(restarts) == 4
    assert report.problems == [], report.problems
    assert report.sessions == chargers_n * 2
    assert report.cdrs == cdrs == chargers_n * 2, celery_worker_process.log_tail()
