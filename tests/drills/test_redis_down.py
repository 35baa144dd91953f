"""Redis down drill (docs/reliability.md case 32): two web processes on a private Redis, which is killed for
some seconds.

The chargers hold their connections to process A and run sessions; the operator's remote commands go to
process B (so each one crosses processes) before, during and after the outage. OCPP ingest must not
notice; a command during the outage either succeeds (the database outbox and poll carry it) or fails
visibly, and none is executed twice or silently dropped; after Redis returns, commands work again.
"""

import asyncio
import concurrent.futures
import time
from collections import Counter

import pytest
from django.conf import settings
from django.db import connection

from cpms.simulator import FleetConfig, run_fleet
from sessions.models import MeterValue
from stations.enums import CommandStatus
from stations.models import Command
from tests.drills.services import csms_server, missing_binaries, private_redis
from tests.e2e.conftest import database_url
from tests.e2e.helpers import api_post, operator_token, sent_meter_rows
from tests.e2e.test_commands_two_processes import wait_connected
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory, IdTokenFactory, SiteFactory

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.xdist_group("e2e"),
    pytest.mark.skipif(bool(missing_binaries()), reason=missing_binaries() or "-"),
]

CHARGERS = 6
OUTAGE_S = 6.0


def _clear_cache(server, identity: str, token: str) -> tuple[int, str]:
    status, body = api_post(
        server, f"/api/v1/stations/{identity}/ocpp/ClearCache/?timeout=10", {}, token=token, timeout_s=30
    )
    return status, (body or {}).get("detail", "") if status != 200 else ""


def _round(pool, server, identities, token) -> list[tuple[int, str]]:
    return list(pool.map(lambda identity: _clear_cache(server, identity, token), identities))


def test_rel_32_redis_down_ingest_continues_and_commands_are_never_lost_or_doubled(
    transactional_db, tmp_path
):
    site = SiteFactory()
    identities = tuple(f"DRILL-RD-{n:02d}" for n in range(1, CHARGERS + 1))
    stations = {identity: ChargingStationFactory(identity=identity, site=site) for identity in identities}
    id_token = IdTokenFactory(organisation=site.organisation, value="DRILL-RD-TAG", status="Accepted")
    token = operator_token(site.organisation, "drill-redis-operator")
    db_url = database_url(connection.settings_dict)
    # The production poll interval: commands during the outage travel by the database, a second late.
    env = {"OCPP_COMMAND_POLL_S": "1.0", "CELERY_QUEUE": f"drill-redis-{time.monotonic_ns()}"}

    with (
        private_redis() as redis,
        csms_server(
            database_url=db_url,
            redis_url=redis.url,
            var_dir=settings.VAR_DIR,
            log_path=tmp_path / "a.log",
            env=env,
        ) as server_a,
        csms_server(
            database_url=db_url,
            redis_url=redis.url,
            var_dir=settings.VAR_DIR,
            log_path=tmp_path / "b.log",
            env=env,
        ) as server_b,
    ):
        config = FleetConfig(
            url=server_a.ws_url,
            identities=identities,
            password=DEFAULT_STATION_PASSWORD,
            sessions=True,
            session_count=3,
            meter_samples=8,
            meter_interval_s=0.4,
            speedup=600,
            id_tag=id_token.value,
            seed=32,
            duration_s=20,
            response_timeout_s=15,
        )
        with concurrent.futures.ThreadPoolExecutor(CHARGERS + 1) as pool:
            fleet = pool.submit(asyncio.run, run_fleet(config))
            wait_connected(identities)
            before = _round(pool, server_b, identities, token)
            redis.stop()
            down_at = time.monotonic()
            during = _round(pool, server_b, identities, token)
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
            redis.start()
            back_at = time.monotonic()
            after = _round(pool, server_b, identities, token)
            after_s = time.monotonic() - back_at
            # Let the sessions finish; the fleet leaves at its deadline.
            summary = fleet.result(timeout=60)
        log_a, log_b = server_a.log_tail(60), server_b.log_tail(60)

    commands = list(Command.objects.filter(station__identity__in=identities, action="ClearCache"))
    answered = Counter(c.station.identity for c in commands if c.status == CommandStatus.ANSWERED)
    received = {c.identity: c.calls_received["ClearCache"] for c in summary.chargers}
    records = [(c.identity, r) for c in summary.chargers for r in c.sessions]
    completed = [r for _, r in records if r.status == "completed"]
    acknowledged = sum(sum(sent_meter_rows(r).values()) for _, r in records)
    print(
        f"\nRedis down drill: 2 web processes, {CHARGERS} chargers on A, Redis down {OUTAGE_S:.0f} s; "
        f"sessions {len(completed)}/{len(records)} completed, {acknowledged} meter values acknowledged, "
        f"{MeterValue.objects.filter(station__identity__in=identities).count()} stored, "
        f"{summary.call_errors} CALLERRORs; ClearCache via B: before {Counter(s for s, _ in before)}, "
        f"during {Counter(s for s, _ in during)}, after {Counter(s for s, _ in after)} "
        f"(after-round took {after_s:.1f} s); {len(commands)} command rows, "
        f"{sum(answered.values())} answered, {sum(received.values())} received by the chargers"
    )

    # Ingest never noticed: every session ran to its end, every value it sent is stored once.
    assert summary.ok, summary.format() + log_a
    assert summary.call_errors == 0, summary.format()
    assert len(completed) == len(records) == CHARGERS * 3
    for identity, station in stations.items():
        rows = Counter(
            (r.timestamp, r.measurand, r.phase, r.location, r.unit, r.context, r.value)
            for r in MeterValue.objects.filter(station=station)
        )
        sent = Counter()
        for who, record in records:
            if who == identity:
                sent += sent_meter_rows(record)
        assert rows == sent, identity
    # Commands before and after the outage work across processes.
    assert [s for s, _ in before] == [200] * CHARGERS, (before, log_b)
    assert [s for s, _ in after] == [200] * CHARGERS, (after, log_b)
    # During it: answered (200) or a visible failure; never executed twice, never left hanging.
    assert {s for s, _ in during} <= {200, 409, 502, 504}, during
    assert {c.status for c in commands} <= {
        CommandStatus.ANSWERED,
        CommandStatus.FAILED,
        CommandStatus.TIMED_OUT,
    }
    assert len(commands) == 3 * CHARGERS
    assert received == {identity: answered[identity] for identity in identities}
    ok_during = sum(s == 200 for s, _ in during)
    assert sum(answered.values()) == 2 * CHARGERS + ok_during
