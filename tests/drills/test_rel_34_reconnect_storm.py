"""docs/reliability.md case 34 (bounded): a reconnect storm after kill -9 of a web process. Hundreds of
chargers (half 1.6, half 2.0.1) hold their connections to web process 1 of two, on PostgreSQL with Redis as
channel layer; process 1 is killed; every charger that lost its connection reconnects at once (to process 2,
or to process 1 once it is back) and is re-admitted exactly once. Prints how long the storm took and how many
error lines were logged (see the comment at the end).

The scale work of issue 13 (case 43: 10,000 chargers over several processes) is beyond what this test
runs in CI; DRILL_STORM_CHARGERS makes it bigger by hand (docs/reliability.md).
"""

import asyncio
import statistics
import time

import pytest

from stations.models import ChargingStation
from tests.drills.harness import (
    Storm,
    cluster,
    fleet,
    hold_connections,
    identities,
    scaled,
    skip_without_postgres_and_redis,
)
from tests.factories import ChargingStationFactory, SiteFactory

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

ERROR_MARKS = (" ERROR ", "Traceback", " CRITICAL ")


def still_connected(names: list[str], *, timeout_s: float) -> int:
    """Stations still marked connected once the chargers left (the server records each close)."""
    deadline = time.monotonic() + timeout_s
    while (count := ChargingStation.objects.filter(identity__in=names, is_connected=True).count()) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    return count


def test_rel_34_reconnect_storm_after_kill_9_of_a_web_process(request, transactional_db, tmp_path):
    skip_without_postgres_and_redis()
    chargers_n = scaled("STORM_CHARGERS", 300)
    names = identities("DRILL-S", chargers_n)
    site = SiteFactory()
    for name in names:
        ChargingStationFactory(identity=name, site=site)

    with cluster(request, tmp_path, processes=2) as web:
        chargers = fleet(web, names, id_tag="DRILL-TAG")
        for charger in chargers:
            charger.home = 0  # everybody on process 1: its kill sends them all away at once
        storm = Storm()
        figures: dict[str, float] = {}
        errors_in_storm: list[str] = []

        async def drill() -> None:
            stop = asyncio.Event()
            holding = asyncio.create_task(
                hold_connections(chargers, storm=storm, stop=stop, spread_s=5.0, deadline_s=80)
            )
            started = time.monotonic()
            while storm.booted < chargers_n and time.monotonic() - started < 30:
                await asyncio.sleep(0.1)
            figures["connect_s"] = time.monotonic() - started
            on_victim = sum(1 for c in chargers if c.connected_to == 0 and not c.closed.is_set())
            figures["on_victim"] = on_victim
            figures["errors_connecting"] = len(web.log_lines(*ERROR_MARKS))
            killed_at = time.monotonic()
            web.kill(web.slots[0])
            restart = asyncio.get_running_loop().run_in_executor(None, web.restart, web.slots[0])
            while len(storm.readmitted_at) < on_victim and time.monotonic() - killed_at < 45:
                await asyncio.sleep(0.05)
            figures["storm_s"] = max(storm.readmitted_at, default=killed_at) - killed_at
            await restart
            errors_in_storm.extend(web.log_lines(*ERROR_MARKS))
            stop.set()
            await holding

        asyncio.run(drill())
        connected = still_connected(names, timeout_s=15)
        # The chargers have left, all at once (channels_redis has been seen logging clean-up errors then).
        errors_after_leaving = web.log_lines(*ERROR_MARKS)

    readmitted = [c.stats.readmitted_s for c in chargers if c.stats.readmitted_s]
    waits = [w for per_charger in readmitted for w in per_charger]
    print(
        f"case 34, reconnect storm: {chargers_n} chargers booted in {figures['connect_s']:.1f} s; "
        f"kill -9 of the process holding {figures['on_victim']:.0f} of them; all {len(storm.readmitted_at)} "
        f"re-admitted {figures['storm_s']:.1f} s after the kill (per charger: median "
        f"{statistics.median(waits) if waits else 0:.2f} s, max {max(waits, default=0):.2f} s); "
        f"error lines logged: {figures['errors_connecting']:.0f} while they first connected, "
        f"{len(errors_in_storm) - figures['errors_connecting']:.0f} in the storm, "
        f"{len(errors_after_leaving) - len(errors_in_storm)} when they all left at once"
    )
    assert [c.identity for c in chargers if c.stats.failure] == []
    assert storm.booted == chargers_n
    assert figures["on_victim"] > 0
    # Every charger that lost its connection was re-admitted exactly once, and nobody else reconnected.
    assert len(storm.readmitted_at) == figures["on_victim"]
    assert sorted(c.stats.connections for c in chargers if c.stats.readmitted_s) == [2] * int(
        figures["on_victim"]
    )
    # No assertion on the error lines: the handshake no longer waits on the channel layer (case 43, shown
    # deterministically by tests/ocpp/test_rel_43_handshake_layer.py), but a loaded machine may still log the
    # layer's own clean-up errors when a storm's connections leave at once; here the count is printed.
    # The chargers left (stop) before this count: each disconnect was recorded, none is left "connected".
    assert connected == 0
