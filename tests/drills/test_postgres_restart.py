"""PostgreSQL restart drills (docs/reliability.md case 31) on a private PostgreSQL cluster with a real server
process.

Every test here starts its own PostgreSQL 15 (tests/drills/services.py) and restarts it; the shared
database of the other tests is never touched. The test process reads the private database through
`django_run` (a process of its own), since its own Django connection belongs to the test database.
"""

import asyncio
import datetime as dt
import json
import os
import signal
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from cpms.simulator import FleetConfig, FleetSummary, run_fleet
from tests.drills.chargers import CALL_RESULT, RawCharger
from tests.drills.services import csms_server, django_run, migrate, missing_binaries, private_postgres
from tests.e2e.helpers import parse_ts
from tests.factories import DEFAULT_STATION_PASSWORD

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.xdist_group("e2e"),
    pytest.mark.skipif(bool(missing_binaries()), reason=missing_binaries() or "-"),
]

ID_TAG = "DRILL-TAG"

SEED = """
from sessions.enums import IdTokenStatus
from tests.factories import ChargingStationFactory, IdTokenFactory, OrganisationFactory, SiteFactory
# Factory sequences restart in every process: name what must be unique.
slug = {identities!r}[0].lower()
site = SiteFactory(organisation=OrganisationFactory(name=slug, slug=slug), name=slug)
for identity in {identities!r}:
    ChargingStationFactory(identity=identity, site=site)
IdTokenFactory(organisation=site.organisation, value={id_tag!r}, status=IdTokenStatus.ACCEPTED)
"""

METER_ROWS = """
import json
from collections import Counter
from sessions.models import MeterValue
rows = MeterValue.objects.filter(station__identity__in={identities!r})
print(json.dumps(sorted(Counter((r.station.identity, str(int(r.value))) for r in rows.select_related("station")).items())))
"""


@pytest.fixture(scope="module")
def drill_postgres(tmp_path_factory):
    """A private PostgreSQL with the project's schema, shared by this module's drills (migrating costs ~15 s)."""
    var_dir = tmp_path_factory.mktemp("drill-var")
    with private_postgres() as pg:
        url = pg.create_database("cpms_drill")
        migrate(url, var_dir=var_dir)
        yield pg, url, var_dir


def stored_meter_rows(url: str, var_dir: Path, identities: tuple[str, ...]) -> dict[tuple[str, str], int]:
    out = django_run(url, METER_ROWS.format(identities=identities), var_dir=var_dir)
    return {(identity, value): count for (identity, value), count in json.loads(out)}


def test_rel_31_first_messages_after_a_postgres_restart_are_answered(drill_postgres, tmp_path):
    """Pooled connections that the restart broke while idle must not fail the first messages after it."""
    pg, url, var_dir = drill_postgres
    identities = tuple(f"DRILL-PGR-{n:02d}" for n in range(1, 9))
    django_run(url, SEED.format(identities=identities, id_tag=ID_TAG), var_dir=var_dir)

    async def scenario(server) -> tuple[list, list]:
        chargers = [RawCharger(server.ws_url, identity, DEFAULT_STATION_PASSWORD) for identity in identities]
        await asyncio.gather(*(c.open() for c in chargers))
        assert [a.kind for a in await asyncio.gather(*(c.boot() for c in chargers))] == [CALL_RESULT] * 8
        transactions = await asyncio.gather(
            *(c.start_transaction(id_tag=ID_TAG, meter_start_wh=1000) for c in chargers)
        )
        # Several rounds at once, so that the server's pool holds several connections when PostgreSQL goes.
        for register in (1100, 1200):
            answers = await asyncio.gather(
                *(
                    c.meter_values(transaction_id=t, register_wh=register)
                    for c, t in zip(chargers, transactions, strict=True)
                )
            )
            assert [a.kind for a in answers] == [CALL_RESULT] * 8
        await asyncio.to_thread(pg.restart)
        back_at = time.monotonic()
        first = await asyncio.gather(
            *(
                c.meter_values(transaction_id=t, register_wh=1300)
                for c, t in zip(chargers, transactions, strict=True)
            )
        )
        second = await asyncio.gather(
            *(
                c.meter_values(transaction_id=t, register_wh=1400)
                for c, t in zip(chargers, transactions, strict=True)
            )
        )
        print(
            f"\nfirst answers after the restart: {[a.kind for a in first]}; slowest "
            f"{max(a.answered_at for a in first) - back_at:.2f} s after PostgreSQL accepted connections"
        )
        await asyncio.gather(*(c.close() for c in chargers))
        return first, second

    # Nothing but the chargers' messages may meet the stale connections first: the command poll and the
    # frame log's writer would otherwise take (and discard) some of them while the chargers are quiet.
    quiet = {"OCPP_COMMAND_POLL_S": "600", "OCPP_MESSAGE_LOG": "none"}
    with csms_server(
        database_url=url, redis_url=None, var_dir=var_dir, log_path=tmp_path / "server.log", env=quiet
    ) as server:
        first, second = asyncio.run(scenario(server))
        log = server.log_tail(200)

    assert [(a.kind, a.error_code) for a in first] == [(CALL_RESULT, "")] * 8, log
    assert [(a.kind, a.error_code) for a in second] == [(CALL_RESULT, "")] * 8, log
    stored = stored_meter_rows(url, var_dir, identities)
    assert stored == {(i, v): 1 for i in identities for v in ("1100", "1200", "1300", "1400")}


FRAMES = """
import json
from stations.models import OcppMessage
rows = OcppMessage.objects.filter(identity__in={identities!r}).values_list("unique_id", "direction", "message_type")
print(json.dumps([list(r) for r in rows]))
"""


def test_rel_31_frame_log_keeps_frames_acknowledged_around_an_outage(drill_postgres, tmp_path):
    """Frames answered just before PostgreSQL went away are still queued in the log when it goes: they are
    written once it is back, not dropped (issue 15: 146 log rows lost in an outage)."""
    pg, url, var_dir = drill_postgres
    identities = tuple(f"DRILL-LOG-{n:02d}" for n in range(1, 5))
    django_run(url, SEED.format(identities=identities, id_tag=ID_TAG), var_dir=var_dir)
    acknowledged: list[str] = []

    async def send_until(charger, transaction_id, stop: asyncio.Event, register: list[int]) -> None:
        while not stop.is_set():
            register[0] += 10
            answer = await charger.meter_values(
                transaction_id=transaction_id, register_wh=register[0], timeout_s=12
            )
            if answer.kind == CALL_RESULT:
                acknowledged.append(answer.unique_id)
            else:
                await asyncio.sleep(0.2)

    async def scenario(server) -> None:
        chargers = [RawCharger(server.ws_url, identity, DEFAULT_STATION_PASSWORD) for identity in identities]
        await asyncio.gather(*(c.open() for c in chargers))
        for answer in await asyncio.gather(*(c.boot() for c in chargers)):
            assert answer.kind == CALL_RESULT
            acknowledged.append(answer.unique_id)
        transactions = await asyncio.gather(
            *(c.start_transaction(id_tag=ID_TAG, meter_start_wh=1000) for c in chargers)
        )
        stop = asyncio.Event()
        senders = [
            asyncio.create_task(send_until(c, t, stop, [1000]))
            for c, t in zip(chargers, transactions, strict=True)
        ]
        await asyncio.sleep(1.0)
        # Down for longer than the log's flush interval, so that at least one of its writes fails.
        await asyncio.to_thread(pg.restart, down_s=2.5)
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.gather(*senders)
        await asyncio.sleep(2.5)  # the log's next flushes
        await asyncio.gather(*(c.close() for c in chargers))

    # A database call waits up to the pool timeout (10 s) for a connection: an outage shorter than that is
    # a wait, not a failure. One second here makes this short outage one that fails writes.
    env = {"DATABASE_POOL_TIMEOUT_S": "1"}
    with csms_server(
        database_url=url, redis_url=None, var_dir=var_dir, log_path=tmp_path / "server.log", env=env
    ) as server:
        asyncio.run(scenario(server))
        log = server.log_tail(60)

    frames = json.loads(django_run(url, FRAMES.format(identities=identities), var_dir=var_dir))
    logged = {(unique_id, direction, kind) for unique_id, direction, kind in frames}
    missing = [u for u in acknowledged if (u, "in", 2) not in logged or (u, "out", 3) not in logged]
    print(
        f"\nframe log: {len(acknowledged)} acknowledged CALLs, {len(frames)} rows logged, {len(missing)} missing"
    )
    assert missing == [], log
    # Each frame once: a retried write must not write a row twice.
    assert len(frames) == len({tuple(f) for f in frames})


SESSIONS_AND_METER_ROWS = """
import json
from sessions.models import ChargingSession, MeterValue
sessions = ChargingSession.objects.filter(station__identity__in={identities!r}).select_related("station")
rows = MeterValue.objects.filter(station__identity__in={identities!r}).select_related("station")
print(json.dumps({{
    "sessions": [
        [s.station.identity, s.transaction_id, s.status, s.meter_start_wh, s.meter_stop_wh] for s in sessions
    ],
    "meter_rows": [
        [r.station.identity, r.timestamp.isoformat(), r.measurand, r.phase, r.location, r.unit, r.context,
         str(r.value.normalize())]
        for r in rows
    ],
}}))
"""


def _sent_rows(identity: str, record) -> list[tuple]:
    return [
        (
            identity,
            parse_ts(mv["timestamp"]).isoformat(),
            sv["measurand"],
            sv.get("phase", ""),
            sv.get("location", ""),
            sv["unit"],
            sv["context"],
            str(Decimal(str(sv["value"])).normalize()),
        )
        for mv in [*record.meter_values, *record.transaction_data]
        for sv in mv["sampledValue"]
    ]


def test_rel_31_postgres_restart_under_load(drill_postgres, tmp_path):
    """Drill: simulated chargers run sessions with meter values while PostgreSQL restarts (down ~3 s).

    Whatever a charger got a CALLRESULT for is stored exactly once; nothing is stored twice; sessions
    started once the database is back complete; the time until the first message is answered again is
    printed."""
    pg, url, var_dir = drill_postgres
    identities = tuple(f"DRILL-PGL-{n:02d}" for n in range(1, 11))
    django_run(url, SEED.format(identities=identities, id_tag=ID_TAG), var_dir=var_dir)
    probe_identity = "DRILL-PGL-PROBE"
    django_run(url, SEED.format(identities=(probe_identity,), id_tag=ID_TAG + "-P"), var_dir=var_dir)
    timeline: dict[str, float] = {}

    async def probe(server, stop: asyncio.Event) -> None:
        """One MeterValues at a time: when PostgreSQL is back, how long until one is answered again."""
        charger = RawCharger(server.ws_url, probe_identity, DEFAULT_STATION_PASSWORD)
        await charger.open()
        assert (await charger.boot()).kind == CALL_RESULT
        transaction_id = await charger.start_transaction(id_tag=ID_TAG + "-P", meter_start_wh=0)
        register = 0
        while not stop.is_set():
            register += 1
            answer = await charger.meter_values(
                transaction_id=transaction_id, register_wh=register, timeout_s=15
            )
            if answer.kind == CALL_RESULT and "back" in timeline and "recovered" not in timeline:
                timeline["recovered"] = answer.answered_at
            elif answer.kind != CALL_RESULT:
                timeline["first_failure"] = timeline.get("first_failure", time.monotonic())
            await asyncio.sleep(0.1)
        await charger.close()

    async def outage() -> None:
        await asyncio.sleep(3.0)
        timeline["down"] = time.monotonic()
        await asyncio.to_thread(pg.restart, down_s=3.0)
        timeline["back"] = time.monotonic()

    async def scenario(server) -> FleetSummary:
        config = FleetConfig(
            url=server.ws_url,
            identities=identities,
            password=DEFAULT_STATION_PASSWORD,
            sessions=True,
            session_count=5,
            meter_samples=6,
            meter_interval_s=0.25,
            speedup=600,
            id_tag=ID_TAG,
            seed=31,
            response_timeout_s=15,
        )
        stop = asyncio.Event()
        probe_task = asyncio.create_task(probe(server, stop))
        fleet, _ = await asyncio.gather(run_fleet(config), outage())
        stop.set()
        await probe_task
        return fleet

    # With the default pool timeout (10 s) a short outage is only a wait; a shorter one makes part of this
    # outage answer errors too, so both paths are drilled.
    env = {"DATABASE_POOL_TIMEOUT_S": "1.5"}
    with csms_server(
        database_url=url, redis_url=None, var_dir=var_dir, log_path=tmp_path / "server.log", env=env
    ) as server:
        summary = asyncio.run(scenario(server))
        log = server.log_tail(60)

    stored = json.loads(
        django_run(url, SESSIONS_AND_METER_ROWS.format(identities=identities), var_dir=var_dir)
    )
    stored_sessions = Counter((identity, tx) for identity, tx, *_ in stored["sessions"])
    stored_rows = Counter(tuple(row) for row in stored["meter_rows"])
    records = [(c.identity, r) for c in summary.chargers for r in c.sessions]
    started = [(i, r) for i, r in records if r.transaction_id is not None]
    completed = [(i, r) for i, r in records if r.status == "completed"]
    acknowledged_rows = Counter(row for i, r in records for row in _sent_rows(i, r))
    assert "recovered" in timeline, log
    # Sessions that began once the server answered again (half a second of margin for requests that were
    # already waiting for a connection when the probe's went through).
    recovered_wall = dt.datetime.now(dt.UTC) - dt.timedelta(
        seconds=time.monotonic() - timeline["recovered"] - 0.5
    )
    started_after = [(i, r) for i, r in records if r.started_at and parse_ts(r.started_at) > recovered_wall]
    print(
        f"\nPostgreSQL restart drill: {len(identities)} chargers, {len(records)} sessions "
        f"({len(started)} started, {len(completed)} completed, {len(records) - len(completed)} failed in the "
        f"outage, {len(started_after)} started after the recovery), {sum(acknowledged_rows.values())} meter values acknowledged, {sum(stored_rows.values())} "
        f"stored, {summary.call_errors} CALLERRORs, {sum(len(c.errors) for c in summary.chargers)} other errors; "
        f"down {timeline['back'] - timeline['down']:.1f} s, first answer "
        f"{timeline['recovered'] - timeline['back']:.2f} s after PostgreSQL was back"
    )
    # Everything acknowledged is stored, once; nothing is stored twice.
    assert {row: stored_rows[row] for row in acknowledged_rows} == dict.fromkeys(acknowledged_rows, 1)
    assert [row for row, n in stored_rows.items() if n > 1] == []
    assert {key: stored_sessions[key] for key in ((i, r.transaction_id) for i, r in started)} == {
        (i, r.transaction_id): 1 for i, r in started
    }
    assert [key for key, n in stored_sessions.items() if n > 1] == []
    # Sessions started after the database came back run to the end.
    assert started_after, "no session started after the recovery: the drill did not test it"
    assert [(i, r.failure) for i, r in started_after if r.status != "completed"] == []
    for identity, record in completed:
        assert [
            identity,
            record.transaction_id,
            "completed",
            record.meter_start_wh,
            record.meter_stop_wh,
        ] in stored["sessions"]


def test_frame_log_loses_at_most_the_last_seconds_of_a_killed_process(drill_postgres, tmp_path):
    """The documented bound of the best-effort log (docs/ocpp.md#the-frame-log): a process killed with
    SIGKILL loses only the frames of its last flush interval. Checked with a margin (frames acknowledged
    more than 3 s before the kill must all be logged), since the write itself takes a moment."""
    _pg, url, var_dir = drill_postgres
    identities = tuple(f"DRILL-KIL-{n:02d}" for n in range(1, 5))
    django_run(url, SEED.format(identities=identities, id_tag=ID_TAG), var_dir=var_dir)
    acknowledged: list[tuple[str, float]] = []

    async def send_until(charger, transaction_id, stop: asyncio.Event) -> None:
        register = 1000
        while not stop.is_set():
            register += 10
            answer = await charger.meter_values(
                transaction_id=transaction_id, register_wh=register, timeout_s=3
            )
            if answer.kind != CALL_RESULT:
                return  # the server is gone
            acknowledged.append((answer.unique_id, answer.answered_at))

    async def scenario(server) -> float:
        chargers = [RawCharger(server.ws_url, identity, DEFAULT_STATION_PASSWORD) for identity in identities]
        await asyncio.gather(*(c.open() for c in chargers))
        assert [a.kind for a in await asyncio.gather(*(c.boot() for c in chargers))] == [CALL_RESULT] * 4
        transactions = await asyncio.gather(
            *(c.start_transaction(id_tag=ID_TAG, meter_start_wh=1000) for c in chargers)
        )
        stop = asyncio.Event()
        senders = [
            asyncio.create_task(send_until(c, t, stop)) for c, t in zip(chargers, transactions, strict=True)
        ]
        await asyncio.sleep(6.0)
        killed_at = time.monotonic()
        os.killpg(server.process.pid, signal.SIGKILL)
        stop.set()
        await asyncio.gather(*senders, return_exceptions=True)
        return killed_at

    with csms_server(
        database_url=url, redis_url=None, var_dir=var_dir, log_path=tmp_path / "server.log"
    ) as server:
        killed_at = asyncio.run(scenario(server))
        log = server.log_tail(40)

    frames = json.loads(django_run(url, FRAMES.format(identities=identities), var_dir=var_dir))
    logged = {unique_id for unique_id, direction, kind in frames if (direction, kind) == ("in", 2)}
    old = [u for u, at in acknowledged if at < killed_at - 3.0]
    recent = [u for u, at in acknowledged if at >= killed_at - 3.0]
    lost_recent = [u for u in recent if u not in logged]
    print(
        f"\nframe log across a kill -9: {len(acknowledged)} MeterValues acknowledged, "
        f"{len(old)} more than 3 s before the kill (all must be logged), {len(lost_recent)} of the "
        f"{len(recent)} in its last 3 s not logged"
    )
    assert old, "nothing acknowledged before the kill"
    assert [u for u in old if u not in logged] == [], log
