"""Scale benchmark (issue 13): the production layout under N chargers with realistic open-loop traffic.

    python bench/scale.py N [--server daphne|uvicorn] [--v201 0.5] [--servers S] [--client-procs C]
                            [--heartbeat-s 300] [--meter-s 30] [--charging 0.3] [--steady-s 60]
                            [--idle-s 10] [--warm-up 10] [--ramp-s 0] [--settle-s 5] [--db-pool P]
                            [--commands K --command-rate R --command-action ClearCache]
                            [--storm] [--ceiling | --with-ceiling]

It starts the production layout itself: S processes of `python -m cpms.server` (env CPMS_ASGI_SERVER=--server),
one port each, a Celery worker and beat, against PostgreSQL (DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/cpms_bench, created and migrated, stations BENCH-00001..N with the bench
password and their EVSE 1 / connector 1, made in bulk) and Redis (REDIS_URL, default redis://127.0.0.1:6379/14:
give it a db number of its own, the run leaves channel and broker keys behind). S defaults to
max(4, ceil(N / 12,000)) and C to max(2, ceil(N / 12,000)), so that no process holds more than ~12,000 sockets
(the per-process descriptor limit here is 20,000). Each server's database pool (DATABASE_POOL_MAX) is sized from
PostgreSQL's max_connections minus the connections in use (or --db-pool) and printed.

Then C client processes (asyncio + websockets, uvloop when installed, frames built by hand) play N chargers
spread over the servers, a --v201 fraction of them OCPP 2.0.1 and the rest 1.6: connect (all at once, a
storm, unless --ramp-s spreads the starts), BootNotification, StatusNotification, and for the --charging
fraction a StartTransaction (1.6) or TransactionEvent Started with idToken, evse and a Transaction.Begin
reading (2.0.1), then a StatusNotification Charging / Occupied. A refused or failed connection is retried with a
growing pause, like a charger. Before them, --warm-up chargers per server (numbers past N) boot, send each
message once and stay connected, idle: the servers' one-time allocations are then in the baseline RSS. After every
charger is booted (or has given up) the servers get --idle-s of quiet (the idle RSS and idle CPU are taken then),
then the steady window of --steady-s: each charger sends a Heartbeat every --heartbeat-s and each charging one
MeterValues (1.6) or TransactionEvent Updated (2.0.1, MeterValuePeriodic) with 5 sampled values every --meter-s,
on a fixed schedule with a random phase (open loop). With --commands K, K remote commands (--command-action,
ClearCache or TriggerMessage(Heartbeat); the chargers answer both) go at --command-rate per second (open loop)
through the REST API of the first server process to chargers held by the others, right after the window while
the same traffic goes on (so the window's CPU per message is the traffic's alone); the API answers once the
charger has.

Prints: admission (first connect to the last BootNotification accepted; connections accepted per second,
overall and in the busiest second; boots per second; failures), steady msg/s, p50/p95/p99/max latency per
action and version, server CPU per steady message (the server processes' CPU during the window / messages
answered in it) and while idle, server RSS per idle connection (after the quiet pause, minus before any of the N
chargers connected) and per connection at the end, the CALLERRORs the servers answered and the CSMS calls the
chargers got, the remote commands' end-to-end latency, a loss check (acknowledged 1.6 StartTransactions and
2.0.1 Started events against sessions stored; acknowledged MeterValues / TransactionEvents x sampled values
against meter rows; acknowledged TransactionEvents against TransactionEvent rows) after --settle-s, and the
ERROR and WARNING lines in the servers' logs with their commonest kinds.

Modes: the one above; --ceiling: the same generator and figures against S bare websockets processes (uvloop) that
answer every call with a canned CALLRESULT (no database, worker, beat or Redis; no loss check or commands);
--with-ceiling: both in the same invocation (the ceiling first, then the CPMS) and a side-by-side table with the
ratios CPMS/ceiling; --storm: after the steady window, kill -9 every server at once, start them again on the
same ports, and print the time until every charger is back (connected and booted), the reconnection rate and
the ERROR lines the restarted servers logged.

Not a test: it asserts nothing, it measures. Only 127.0.0.1 is used; every wait is bounded.
"""

import argparse
import asyncio
import collections
import http.client
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from harness import (
    BASE_DIR,
    DEFAULT_DATABASE_URL,
    HOST,
    IDENTITY_PREFIX,
    LineReader,
    cpu_seconds,
    django_setup,
    ensure_database,
    free_port,
    identity,
    memory_kib,
    percentile,
    raise_fd_limit,
    server_command,
    setup_database,
    stop_process,
    wait_listening,
)
from scale_chargers import (
    RESPONSE_TIMEOUT_S,
    SAMPLED_VALUES,
    STARTED_SAMPLED_VALUES,
    V16,
    V201,
    ceiling_server,
    client_main,
    is_v201,
)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"


# Sockets per process the defaults aim at (servers and client processes): well under the 20,000 descriptors a
# process may have here, with room for the database pool, Redis and log files.
CONNECTIONS_PER_PROCESS = 12_000


# PostgreSQL connections left to everything else on the box (other databases, psql, the bench itself).
DATABASE_RESERVE = 20
DATABASE_POOL_WORKER = 4


# The API waits up to OCPP_CALL_TIMEOUT_S (30 s) for a charger: a command request may take that long.
COMMAND_REQUEST_TIMEOUT_S = 60.0
STALE_CONNECTION_ERRORS = (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected)
COMMAND_BODIES = {"ClearCache": {}, "TriggerMessage": {"requestedMessage": "Heartbeat"}}


WARM_UP_TIMEOUT_S = 180.0


def start(name: str, command: list[str], env: dict, workdir: Path) -> subprocess.Popen:
    log = (workdir / f"{name}.log").open("wb")
    return subprocess.Popen(
        command,
        cwd=BASE_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


# ---------------------------------------------------------------- database


def database_connections(database_url: str) -> tuple[int, int]:
    """(max_connections, connections open now) of the PostgreSQL server."""
    import psycopg

    url = (
        urlsplit(database_url)._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    )
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        limit = int(conn.execute("SHOW max_connections").fetchone()[0])
        in_use = conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()[0]
    return limit, in_use


def database_pool_size(args, database_url: str) -> int:
    """Connections per server process: what max_connections leaves after the ones open now, the reserve and
    the worker and beat, shared by the servers; at most the settings' default (20), at least 2 (the pool's
    min_size)."""
    limit, in_use = database_connections(database_url)
    if args.db_pool:
        size = args.db_pool
    else:
        free = limit - in_use - DATABASE_RESERVE - 3 * DATABASE_POOL_WORKER
        size = max(2, min(20, free // args.servers))
    total = size * args.servers + 3 * DATABASE_POOL_WORKER
    print(
        f"   PostgreSQL max_connections {limit}, {in_use} in use: pool of {size} per server "
        f"(up to {total} for the layout)",
        flush=True,
    )
    if in_use + total > limit:
        print("   ! the layout may exhaust max_connections", flush=True)
    return size


def row_counts(since_session_pk: int) -> dict[str, int]:
    from django.db import connections
    from django.db.models import Q

    from sessions.models import ChargingSession, MeterValue, TransactionEvent

    counts = {
        "sessions": ChargingSession.objects.filter(
            station__identity__startswith=IDENTITY_PREFIX, pk__gt=since_session_pk
        ).count(),
        "meter_rows": MeterValue.objects.filter(
            Q(session_id__gt=since_session_pk) | Q(session__isnull=True),
            station__identity__startswith=IDENTITY_PREFIX,
        ).count(),
        "events": TransactionEvent.objects.filter(
            station__identity__startswith=IDENTITY_PREFIX, session_id__gt=since_session_pk
        ).count(),
    }
    connections.close_all()
    return counts


def last_session_pk() -> int:
    from django.db import connections

    from sessions.models import ChargingSession

    pk = ChargingSession.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    connections.close_all()
    return pk


# ---------------------------------------------------------------- figures


def log_problems(paths: list[Path]) -> dict:
    """ERROR and WARNING lines in these logs, the commonest kinds (logger and message start), a few ERRORs."""
    kinds: collections.Counter[str] = collections.Counter()
    errors = warnings = 0
    samples: list[str] = []
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            for level in (" ERROR ", " WARNING "):
                if level in line:
                    errors += level == " ERROR "
                    warnings += level == " WARNING "
                    kinds[line.split(level, 1)[1][:90]] += 1
                    if level == " ERROR " and len(samples) < 3:
                        samples.append(line[:300])
    return {
        "errors": errors,
        "warnings": warnings,
        "kinds": [(n, kind) for kind, n in kinds.most_common(3)],
        "samples": samples,
    }


def rates(stamps: list[float], start: float) -> tuple[float, float]:
    """(overall per second from `start` (the first attempt, the kill) to the last, the most in any 1 s window) of
    these instants."""
    if not stamps:
        return 0.0, 0.0
    stamps = sorted(stamps)
    span = stamps[-1] - min(start, stamps[0])
    overall = len(stamps) / span if span > 0 else float(len(stamps))
    peak = 0
    low = 0
    for high, moment in enumerate(stamps):
        while moment - stamps[low] >= 1.0:
            low += 1
        peak = max(peak, high - low + 1)
    return overall, float(peak)


def millis(values: list[float]) -> str:
    values = sorted(values)
    if not values:
        return "no samples"
    cells = [percentile(values, f) * 1000 for f in (0.5, 0.95, 0.99)] + [values[-1] * 1000]
    return (
        f"n={len(values):>6}  "
        + "  ".join(f"{label} {v:8.1f}" for label, v in zip(("p50", "p95", "p99", "max"), cells, strict=True))
        + "  ms"
    )


def rss_kib(processes: list[subprocess.Popen]) -> int:
    return sum(memory_kib(p.pid)["VmRSS"] for p in processes)


# ---------------------------------------------------------------- remote commands (--commands)


def commands_run(
    *,
    port: int,
    token: str,
    targets: list[tuple[str, str]],
    action: str,
    count: int,
    rate: float,
    start_at: float,
) -> dict:
    """`count` POSTs of `action` to stations picked among `targets` ((identity, version)), one every 1/rate s from
    `start_at` (open loop: a slow answer does not delay the next request), each on a pool thread's keep-alive
    connection. Returns per version the latencies (request written to response read) and the statuses."""
    body = json.dumps(COMMAND_BODIES[action]).encode()
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    local = threading.local()
    merge = threading.Lock()
    latencies: dict[str, list[float]] = collections.defaultdict(list)
    statuses: collections.Counter = collections.Counter()
    samples: list[str] = []
    lags: list[float] = []
    rng = random.Random(13)

    def one(ident: str, version: str, due: float) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(HOST, port, timeout=COMMAND_REQUEST_TIMEOUT_S)
        started = time.time()
        clock = time.perf_counter()
        for attempt in (1, 2):
            try:
                conn.request("POST", f"/api/v1/stations/{ident}/ocpp/{action}/", body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                code: int | str = response.status
                if response.will_close:
                    conn.close()
                    local.conn = None
                break
            except (OSError, http.client.HTTPException) as exc:
                code, data = type(exc).__name__, str(exc).encode()
                conn.close()
                conn = local.conn = http.client.HTTPConnection(HOST, port, timeout=COMMAND_REQUEST_TIMEOUT_S)
                # A kept-alive connection the server closed while idle (uvicorn: after 5 s) fails at once on
                # its next request: once more on a new connection, as an HTTP client pool does.
                if attempt == 2 or not isinstance(exc, STALE_CONNECTION_ERRORS):
                    break
        seconds = time.perf_counter() - clock
        with merge:
            lags.append(started - due)
            statuses[code] += 1
            if code == 200:
                latencies[version].append(seconds)
            elif len(samples) < 5:
                samples.append(f"{ident}: {code} {data[:300].decode(errors='replace')}")

    # Enough threads that a slow answer (up to seconds) does not hold back the next request; the sender's lag
    # behind the schedule is reported, so a load that could not be kept is seen.
    workers = max(16, min(512, math.ceil(rate * 10)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="command") as pool:
        for index in range(count):
            due = start_at + index / rate
            time.sleep(max(0.0, due - time.time()))
            pool.submit(one, *rng.choice(targets), due)
    # Every request is bounded by COMMAND_REQUEST_TIMEOUT_S, so leaving the pool's block is too.
    return {
        "latencies": dict(latencies),
        "statuses": {str(k): v for k, v in statuses.items()},
        "samples": samples,
        "lag_max_s": max(lags, default=0.0),
        "workers": workers,
    }


def command_targets(workdir: Path, clients: int, servers: int, fraction: float) -> list[tuple[str, str]]:
    """Booted chargers held by a server other than the first (charger n is on server n % servers)."""
    numbers: list[int] = []
    for index in range(clients):
        numbers += json.loads((workdir / f"result-{index}.booted.json").read_text())
    return [(identity(n), V201 if is_v201(n, fraction) else V16) for n in numbers if n % servers != 0]


# ---------------------------------------------------------------- one layout


class Layout:
    """The server processes of one run (CPMS or ceiling), started and restarted the same way."""

    def __init__(self, args, *, ceiling: bool, env: dict, workdir: Path):
        self.args = args
        self.ceiling = ceiling
        self.env = env
        self.workdir = workdir
        self.ports = [free_port() for _ in range(args.servers)]
        self.servers: list[subprocess.Popen] = []
        self.others: list[subprocess.Popen] = []

    def server(self, port: int, suffix: str = "") -> subprocess.Popen:
        command = (
            [sys.executable, __file__, "--ceiling-server", str(port)]
            if self.ceiling
            else server_command("daphne", port)
        )
        return start(f"server-{port}{suffix}", command, self.env, self.workdir)

    def start(self) -> None:
        self.servers = [self.server(p) for p in self.ports]
        if not self.ceiling:
            python = sys.executable
            worker_env = {**self.env, "DATABASE_POOL_MAX": str(DATABASE_POOL_WORKER)}
            self.others = [
                start(
                    "worker",
                    [
                        python,
                        "-m",
                        "celery",
                        "-A",
                        "cpms",
                        "worker",
                        "--loglevel",
                        "WARNING",
                        "--concurrency",
                        "2",
                    ],
                    worker_env,
                    self.workdir,
                ),
                start(
                    "beat",
                    [python, "-m", "celery", "-A", "cpms", "beat", "--loglevel", "WARNING"],
                    worker_env,
                    self.workdir,
                ),
            ]
        for server, port in zip(self.servers, self.ports, strict=True):
            wait_listening(server, port, self.workdir / f"server-{port}.log")

    def restart(self) -> None:
        for server in self.servers:
            os.killpg(server.pid, signal.SIGKILL)
        for server in self.servers:
            server.wait(timeout=30)
        self.servers = [self.server(p, "-b") for p in self.ports]
        for server, port in zip(self.servers, self.ports, strict=True):
            wait_listening(server, port, self.workdir / f"server-{port}-b.log")

    def stop(self) -> None:
        for process in self.servers + self.others:
            stop_process(process, group=True)


def storm_run(
    layout: Layout, readers: list[LineReader], clients: list[subprocess.Popen], timeout: float
) -> dict:
    """--storm: every client watches its chargers' connections; kill -9 every server at once, start them again on
    the same ports, and wait until every charger has connected and booted again."""
    workdir = layout.workdir
    for client in clients:
        client.stdin.write("STORM\n")
        client.stdin.flush()
    for reader in readers:
        reader.expect("STORM_READY", 60)
    # Each client has written its result (with the chargers it booted) before STORM_READY.
    expected = sum(
        json.loads((workdir / f"result-{i}.json").read_text())["booted"] for i in range(len(readers))
    )
    killed_at = time.time()
    layout.restart()
    listening_at = time.time()
    print(f"   storm: {len(layout.servers)} servers killed and started again", flush=True)
    done: list[str | None] = [None] * len(readers)
    deadline = time.monotonic() + timeout
    while None in done:
        if time.monotonic() > deadline:
            raise SystemExit("the storm did not settle in time")
        for i, reader in enumerate(readers):
            while done[i] is None and not reader.lines.empty():
                line = reader.lines.get()
                if line is None:
                    raise SystemExit(f"client {i} exited during the storm (see {workdir}/client-{i}.log)")
                if line.startswith("REJOINED"):
                    done[i] = line
        if None in done:
            print(f"   storm: {time.time() - killed_at:.0f} s since the kill", flush=True)
            time.sleep(1.0)
    fields = [line.split()[1:] for line in done]
    rejoined = sum(int(f[0]) for f in fields)
    last = max(float(f[1]) for f in fields)
    stamps: list[float] = []
    samples: list[str] = []
    errors = 0
    for i in range(len(readers)):
        storm = json.loads((workdir / f"result-{i}.storm.json").read_text())
        stamps += storm["reconnected_at"]
        errors += storm["errors"]
        samples += storm["error_samples"][:2]
    for client in clients:
        client.stdin.write("END\n")
        client.stdin.flush()
    for reader in readers:
        reader.expect("DONE", RESPONSE_TIMEOUT_S + 30)
    overall, peak = rates(stamps, killed_at)
    return {
        "expected": expected,
        "rejoined": rejoined,
        "back_s": last - killed_at,
        "after_restart_s": last - listening_at,
        "failures": sum(int(f[2]) for f in fields),
        "accept_rate": overall,
        "accept_peak": peak,
        "log": log_problems(sorted(workdir.glob("server-*-b.log"))),
        "errors": errors,
        "samples": samples,
    }


def warm_up(args, layout: Layout) -> subprocess.Popen | None:
    """--warm-up chargers per server (numbers past N) boot, start a transaction, send a Heartbeat and a meter
    reading, and stay connected, idle, before the servers' RSS without chargers is taken: what a server allocates
    once (lazy imports, thread and database pools, caches) is then not counted as memory per connection. They
    stay so that the N chargers do not reuse memory they freed. The caller stops the process."""
    count = args.warm_up * args.servers
    if not count:
        return None
    process = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--client",
            "--warm-up-client",
            "--first",
            str(args.n + 1),
            "--count",
            str(count),
            "--total",
            str(count),
            "--ports",
            ",".join(map(str, layout.ports)),
            "--v201",
            str(args.v201),
            "--result-file",
            str(layout.workdir / "warm-up.json"),
        ],
        cwd=BASE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(layout.workdir / "warm-up.log").open("wb"),
        text=True,
        start_new_session=True,
    )
    try:
        booted, errors, callerrors = LineReader(process).expect("WARM", WARM_UP_TIMEOUT_S).split()
    except (TimeoutError, EOFError) as exc:
        print(f"   ! the warm-up failed ({exc}; see {layout.workdir}/warm-up.log)", flush=True)
        return process
    print(
        f"   warm-up: {booted}/{count} chargers booted and stay idle ({errors} errors, {callerrors} CALLERRORs)",
        flush=True,
    )
    return process


def run_layout(args, *, ceiling: bool, database_url: str, redis_url: str, token: str | None) -> dict:
    """Start one layout, play the chargers, measure; the figures as a dict (printed by report())."""
    count = args.n
    workdir = Path(tempfile.mkdtemp(prefix="cpms-scale-ceiling-" if ceiling else "cpms-scale-"))
    name = "ceiling" if ceiling else f"CPMS ({args.server})"
    print(f"\n== {name}: {count} chargers, {args.servers} servers, logs in {workdir}", flush=True)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "cpms.settings",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "PYTHONUNBUFFERED": "1",
        "CPMS_VAR_DIR": str(workdir / "var"),
        "CPMS_ASGI_SERVER": args.server,
    }
    session_pk = 0
    if not ceiling:
        env["DATABASE_POOL_MAX"] = str(database_pool_size(args, database_url))
    layout = Layout(args, ceiling=ceiling, env=env, workdir=workdir)
    clients: list[subprocess.Popen] = []
    warm: subprocess.Popen | None = None
    figures: dict = {"name": name, "ceiling": ceiling, "count": count, "servers": args.servers}
    admission_timeout = args.admission_timeout or 600.0 + count / 50
    try:
        layout.start()
        servers = layout.servers
        warm = warm_up(args, layout)
        if not ceiling:
            # The loss check counts from here: the warm-up's rows are not in it.
            session_pk = last_session_pk()
        time.sleep(2.0)
        rss_before = rss_kib(servers)
        print(f"   servers listening on {layout.ports}, RSS {rss_before / 1024:.0f} MiB in all", flush=True)

        procs = max(1, min(args.client_procs, count))
        per_proc = -(-count // procs)
        readers = []
        cpu_start = sum(cpu_seconds(s.pid) for s in servers)
        for index, first in enumerate(range(1, count + 1, per_proc)):
            client = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--client",
                    "--first",
                    str(first),
                    "--count",
                    str(min(per_proc, count - first + 1)),
                    "--total",
                    str(count),
                    "--ports",
                    ",".join(map(str, layout.ports)),
                    "--charging",
                    str(args.charging),
                    "--v201",
                    str(args.v201),
                    "--heartbeat-s",
                    str(args.heartbeat_s),
                    "--meter-s",
                    str(args.meter_s),
                    "--ramp-s",
                    str(args.ramp_s),
                    "--result-file",
                    str(workdir / f"result-{index}.json"),
                    *(["--storm"] if args.storm else []),
                ],
                cwd=BASE_DIR,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=(workdir / f"client-{index}.log").open("wb"),
                text=True,
                start_new_session=True,
            )
            clients.append(client)
            readers.append(LineReader(client))

        # Admission: progress lines until every client reports ADMITTED.
        admitted: list[str | None] = [None] * len(clients)
        progress = [(0, 0)] * len(clients)
        deadline = time.monotonic() + admission_timeout
        while None in admitted:
            if time.monotonic() > deadline:
                raise SystemExit(f"admission did not finish in {admission_timeout:.0f} s")
            for i, reader in enumerate(readers):
                while admitted[i] is None and not reader.lines.empty():
                    line = reader.lines.get()
                    if line is None:
                        raise SystemExit(f"client {i} exited during admission (see {workdir}/client-{i}.log)")
                    if line.startswith("PROGRESS"):
                        progress[i] = tuple(int(x) for x in line.split()[1:3])
                    elif line.startswith("ADMITTED"):
                        admitted[i] = line
            time.sleep(2.0)
            if None in admitted:
                booted = sum(p[0] for p in progress)
                print(
                    f"   admission: {booted}/{count} booted, {sum(p[1] for p in progress)} connect failures",
                    flush=True,
                )
        cpu_admission = sum(cpu_seconds(s.pid) for s in servers) - cpu_start
        fields = [line.split()[1:] for line in admitted]
        booted = sum(int(f[0]) for f in fields)
        first_connect = min((float(f[1]) for f in fields if float(f[1])), default=0.0)
        last_boot = max(float(f[2]) for f in fields)
        admission_s = max(0.0, last_boot - first_connect)
        rss_admitted = rss_kib(servers)
        print(
            f"   admitted {booted}/{count} in {admission_s:.1f} s; {args.idle_s:g} s of quiet before the idle RSS",
            flush=True,
        )
        cpu_quiet = sum(cpu_seconds(s.pid) for s in servers)
        time.sleep(args.idle_s)
        cpu_quiet = sum(cpu_seconds(s.pid) for s in servers) - cpu_quiet
        rss_idle = rss_kib(servers)

        # Steady window: clients get its wall-clock bounds, and the end of their traffic (later when remote
        # commands follow: they are sent while the same traffic goes on). The server CPU is sampled at both ends.
        window_start = time.time() + 1.0
        window_end = window_start + args.steady_s
        with_commands = bool(args.commands) and not ceiling
        commands_s = args.commands / args.command_rate if with_commands else 0.0
        traffic_end = window_end + (commands_s + 5.0 if with_commands else 0.0)
        for client in clients:
            client.stdin.write(f"GO {window_start} {window_end} {traffic_end}\n")
            client.stdin.flush()
        time.sleep(max(0.0, window_start - time.time()))
        cpu_before = sum(cpu_seconds(s.pid) for s in servers)
        worker_before = cpu_seconds(layout.others[0].pid) if layout.others else 0.0
        while time.time() < window_end:
            time.sleep(min(10.0, max(0.0, window_end - time.time())))
            print(f"   steady: {window_end - time.time():.0f} s left", flush=True)
        cpu_after = sum(cpu_seconds(s.pid) for s in servers)
        cpu_steady = cpu_after - cpu_before
        worker_cpu = cpu_seconds(layout.others[0].pid) - worker_before if layout.others else 0.0
        rss_end = rss_kib(servers)
        command_result: dict = {}
        if with_commands:
            targets = command_targets(workdir, len(clients), args.servers, args.v201)
            print(
                f"   commands: {args.commands} x {args.command_action} at {args.command_rate:g}/s to "
                f"{len(targets)} chargers held by servers 2..{args.servers}, through the API of server 1",
                flush=True,
            )
            if targets:
                phase_start = time.time()
                command_result = commands_run(
                    port=layout.ports[0],
                    token=token,
                    targets=targets,
                    action=args.command_action,
                    count=args.commands,
                    rate=args.command_rate,
                    start_at=phase_start,
                )
                command_result["cpu_s"] = sum(cpu_seconds(s.pid) for s in servers) - cpu_after
                command_result["phase_s"] = time.time() - phase_start
            else:
                print("   ! no booted charger on a server other than the API's: no commands", flush=True)
        for reader in readers:
            reader.expect("STEADY_DONE", max(0.0, traffic_end - time.time()) + RESPONSE_TIMEOUT_S + 60)
        figures["load"] = os.getloadavg()
        figures["log"] = log_problems(sorted(workdir.glob("server-*.log")))
        if args.storm:
            figures["storm"] = storm_run(layout, readers, clients, admission_timeout)
        else:
            for client in clients:
                client.stdin.write("END\n")
                client.stdin.flush()
            for reader in readers:
                reader.expect("DONE", 60)
        results = [json.loads((workdir / f"result-{i}.json").read_text()) for i in range(len(clients))]
        if not ceiling:
            print(f"   settling {args.settle_s:g} s before counting rows", flush=True)
            time.sleep(args.settle_s)
            figures["rows"] = row_counts(session_pk)
    finally:
        for client in clients + ([warm] if warm is not None else []):
            stop_process(client, group=True)
        layout.stop()

    def merged(kind: str) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for result in results:
            for key, values in result[kind].items():
                out.setdefault(key, []).extend(values)
        return out

    def summed(kind: str) -> dict[str, int]:
        out: collections.Counter[str] = collections.Counter()
        for result in results:
            out.update(result[kind])
        return dict(out)

    steady = merged("steady")
    steady_messages = sum(len(v) for v in steady.values())
    if command_result:
        # The background traffic's share of the command phase's CPU, at the steady window's cost per message.
        background = (
            command_result["phase_s"] * steady_messages / args.steady_s * cpu_steady / max(1, steady_messages)
        )
        answered = int(command_result["statuses"].get("200", 0))
        command_result["cpu_ms_per_command"] = (
            (command_result["cpu_s"] - background) * 1000 / max(1, answered)
        )
    overall, peak = rates([t for r in results for t in r["connected_at"]], first_connect)
    figures.update(
        booted=booted,
        admission_s=admission_s,
        boots_per_s=booted / admission_s if admission_s else 0.0,
        accept_rate=overall,
        accept_peak=peak,
        failures=sum(r["failures"] for r in results),
        cpu_admission_ms_per_conn=cpu_admission * 1000 / max(1, booted),
        steady_messages=steady_messages,
        steady_rate=steady_messages / args.steady_s,
        cpu_steady=cpu_steady,
        cpu_per_msg_ms=cpu_steady * 1000 / max(1, steady_messages),
        # What the servers spend with every charger connected and none sending (timers, pings, flush loops):
        # in the steady window too, so the CPU per message above includes it.
        cpu_idle_ms_per_s=cpu_quiet * 1000 / args.idle_s if args.idle_s else 0.0,
        worker_cpu=worker_cpu,
        rss_before=rss_before,
        rss_admitted=rss_admitted,
        rss_idle=rss_idle,
        rss_end=rss_end,
        rss_idle_per_conn=(rss_idle - rss_before) / max(1, booted),
        rss_admitted_per_conn=(rss_admitted - rss_before) / max(1, booted),
        rss_end_per_conn=(rss_end - rss_before) / max(1, booted),
        admission_latency=merged("admission"),
        steady_latency=steady,
        triggered=merged("triggered"),
        acked=summed("acked"),
        callerrors=summed("callerrors"),
        csms_calls=summed("csms_calls"),
        errors=sum(r["errors"] for r in results),
        samples=[s for r in results for s in r["failure_samples"][:2] + r["error_samples"][:3]],
        callerror_samples=[s for r in results for s in r["callerror_samples"][:3]],
        commands=command_result,
    )
    return figures


# ---------------------------------------------------------------- printing


def report(args, f: dict) -> None:
    load = f["load"]
    print(
        f"\n== {f['name']}: {f['count']} chargers ({args.v201:.0%} OCPP 2.0.1) over {f['servers']} servers "
        f"(load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})"
    )
    print(
        f"   admission          all booted {f['admission_s']:.1f} s after the first connect, {f['booted']}/{f['count']}"
        f" booted, {f['boots_per_s']:.0f} boots/s; {f['failures']} connection failures (each one retried)"
    )
    print(
        f"   connections/s      {f['accept_rate']:.0f} overall (first attempt to last accepted), "
        f"{f['accept_peak']:.0f} in the busiest second; "
        f"server CPU {f['cpu_admission_ms_per_conn']:.2f} ms per admitted charger"
    )
    print(f"   steady             {f['steady_rate']:.1f} msg/s over {args.steady_s:g} s")
    print(
        f"   server CPU / msg   {f['cpu_per_msg_ms']:.3f} ms ({f['cpu_steady']:.1f} s in {f['servers']} servers; "
        f"worker {f['worker_cpu']:.1f} s)"
    )
    if args.idle_s:
        print(
            f"   server CPU idle    {f['cpu_idle_ms_per_s']:.1f} ms/s in all servers with every charger connected and "
            f"none sending ({args.idle_s:g} s after admission); the steady window's share of it: "
            f"{f['cpu_idle_ms_per_s'] * args.steady_s / max(1, f['steady_messages']):.3f} ms per message"
        )
    print(
        f"   RSS per idle connection {f['rss_idle_per_conn']:.1f} KiB ({args.idle_s:g} s after admission); "
        f"right after admission {f['rss_admitted_per_conn']:.1f} KiB, at the end {f['rss_end_per_conn']:.1f} KiB "
        f"(servers {f['rss_before'] / 1024:.0f} MiB before, {f['rss_idle'] / 1024:.0f} MiB idle, "
        f"{f['rss_end'] / 1024:.0f} MiB at the end)"
    )
    print("   latency, admission:")
    for key, values in sorted(f["admission_latency"].items()):
        print(f"     {key:<30} {millis(values)}")
    print("   latency, steady window:")
    for key, values in sorted(f["steady_latency"].items()):
        print(f"     {key:<30} {millis(values)}")
    commands = f["commands"]
    if commands:
        statuses = ", ".join(f"{code}: {n}" for code, n in sorted(commands["statuses"].items()))
        print(
            f"   remote commands    {args.commands} x {args.command_action} at {args.command_rate:g}/s through the "
            f"API of server 1 to chargers on the others, after the window with the same traffic going on "
            f"({statuses}; sender lag max {commands['lag_max_s'] * 1000:.0f} ms; server CPU "
            f"{commands['cpu_ms_per_command']:.1f} ms per command beyond the traffic's)"
        )
        everything = [s for v in commands["latencies"].values() for s in v]
        for version, values in sorted(commands["latencies"].items()):
            print(f"     {'API round trip ' + version:<30} {millis(values)}")
        print(f"     {'API round trip, all':<30} {millis(everything)}")
        for key, values in sorted(f["triggered"].items()):
            print(f"     {key:<30} {millis(values)}")
        for sample in commands["samples"]:
            print(f"     {sample}")
    callerrors = f["callerrors"]
    print(f"   CALLERRORs         {sum(callerrors.values())} {callerrors or ''}")
    for sample in f["callerror_samples"][:5]:
        print(f"     {sample}")
    if f["csms_calls"]:
        print(f"   CSMS calls got     {f['csms_calls']}")
    if "rows" in f:
        acked, rows = f["acked"], f["rows"]
        started = acked.get(f"StartTransaction {V16}", 0) + acked.get(f"TransactionEvent.Started {V201}", 0)
        updated = acked.get(f"TransactionEvent.Updated {V201}", 0)
        events = acked.get(f"TransactionEvent.Started {V201}", 0) + updated
        meter = (
            acked.get(f"MeterValues {V16}", 0) * SAMPLED_VALUES
            + updated * SAMPLED_VALUES
            + acked.get(f"TransactionEvent.Started {V201}", 0) * STARTED_SAMPLED_VALUES
        )
        pairs = [(started, rows["sessions"]), (meter, rows["meter_rows"]), (events, rows["events"])]
        # Stored but not acknowledged: the answer came after the charger's timeout (RESPONSE_TIMEOUT_S) or
        # the connection went first. Acknowledged but not stored is a loss.
        if any(acked_n > stored_n for acked_n, stored_n in pairs):
            verdict = "LOST"
        elif any(acked_n < stored_n for acked_n, stored_n in pairs):
            verdict = "nothing lost (more stored than acknowledged: answers the chargers gave up on)"
        else:
            verdict = "nothing lost"
        print(
            f"   loss check         {verdict}: sessions acked {started} / stored {rows['sessions']}; meter rows "
            f"acked {meter} / stored {rows['meter_rows']}; TransactionEvents acked {events} / stored {rows['events']}"
        )
    storm = f.get("storm")
    if storm is not None:
        print(
            f"   storm              {storm['rejoined']}/{storm['expected']} back {storm['back_s']:.1f} s after the "
            f"kill ({storm['after_restart_s']:.1f} s after the servers listened again), "
            f"{storm['accept_rate']:.0f} connections/s overall, {storm['accept_peak']:.0f} in the busiest second, "
            f"{storm['failures']} connection failures in all"
        )
        log = storm["log"]
        print(f"   storm server log   {log['errors']} ERROR, {log['warnings']} WARNING lines")
        for n, kind in log["kinds"]:
            print(f"     {n:>6} x {kind}")
        for line in log["samples"]:
            print(f"     {line}")
        print(f"   storm client errors {storm['errors']}")
        for sample in storm["samples"][:3]:
            print(f"     {sample}")
    print(f"   client errors      {f['errors']}")
    log = f["log"]
    print(f"   server log         {log['errors']} ERROR, {log['warnings']} WARNING lines (before any storm)")
    for n, kind in log["kinds"]:
        print(f"     {n:>6} x {kind}")
    for sample in f["samples"][:8]:
        print(f"     {sample}")


def side_by_side(cpms: dict, ceiling: dict) -> None:
    def ratio(a: float, b: float) -> str:
        return f"{a / b:8.2f}" if b else "       -"

    rows: list[tuple[str, float, float, str]] = [
        ("all booted after (s)", cpms["admission_s"], ceiling["admission_s"], "{:.1f}"),
        ("connections accepted/s, overall", cpms["accept_rate"], ceiling["accept_rate"], "{:.0f}"),
        ("connections accepted/s, busiest s", cpms["accept_peak"], ceiling["accept_peak"], "{:.0f}"),
        ("boots/s", cpms["boots_per_s"], ceiling["boots_per_s"], "{:.0f}"),
        ("connection failures", cpms["failures"], ceiling["failures"], "{:.0f}"),
        ("steady msg/s", cpms["steady_rate"], ceiling["steady_rate"], "{:.1f}"),
        ("server CPU per steady msg (ms)", cpms["cpu_per_msg_ms"], ceiling["cpu_per_msg_ms"], "{:.3f}"),
        (
            "server CPU idle (ms/s, all servers)",
            cpms["cpu_idle_ms_per_s"],
            ceiling["cpu_idle_ms_per_s"],
            "{:.1f}",
        ),
        ("RSS per idle connection (KiB)", cpms["rss_idle_per_conn"], ceiling["rss_idle_per_conn"], "{:.1f}"),
        ("RSS per connection at end (KiB)", cpms["rss_end_per_conn"], ceiling["rss_end_per_conn"], "{:.1f}"),
    ]
    for key in sorted(set(cpms["steady_latency"]) & set(ceiling["steady_latency"])):
        a, b = sorted(cpms["steady_latency"][key]), sorted(ceiling["steady_latency"][key])
        if a and b:
            rows.append((f"{key} p99 (ms)", percentile(a, 0.99) * 1000, percentile(b, 0.99) * 1000, "{:.1f}"))
    if "storm" in cpms and "storm" in ceiling:
        rows.append(
            ("storm: all back after (s)", cpms["storm"]["back_s"], ceiling["storm"]["back_s"], "{:.1f}")
        )
    print(
        f"\n== side by side, {cpms['count']} chargers: {cpms['name']} and the ceiling, in the same invocation"
    )
    print(f"   {'':<38} {'CPMS':>10} {'ceiling':>10} {'CPMS/ceiling':>13}")
    for label, a, b, form in rows:
        print(f"   {label:<38} {form.format(a):>10} {form.format(b):>10} {ratio(a, b):>13}")


# ---------------------------------------------------------------- main


def parent_main(args) -> None:
    fd_limit = raise_fd_limit()
    count = args.n
    per_process = math.ceil(count / CONNECTIONS_PER_PROCESS)
    args.servers = args.servers or max(4, per_process)
    args.client_procs = args.client_procs or max(2, per_process)
    busiest = math.ceil(count / min(args.servers, args.client_procs))
    if busiest + 500 > fd_limit:
        print(
            f"warning: {busiest} sockets in one process against a descriptor limit of {fd_limit}", flush=True
        )
    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    modes = ["ceiling"] if args.ceiling else (["ceiling", "cpms"] if args.with_ceiling else ["cpms"])
    print(
        f"== scale: {count} chargers ({args.v201:.0%} OCPP 2.0.1), {args.servers} servers ({args.server}), "
        f"{args.client_procs} client processes; runs: {', '.join(modes)}",
        flush=True,
    )
    print(f"   database {database_url}, redis {redis_url}, load average {os.getloadavg()}", flush=True)
    token = None
    if "cpms" in modes:
        ensure_database(database_url)
        django_setup(database_url)
        started = time.monotonic()
        setup_database(database_url, count + args.warm_up * args.servers)
        if args.commands:
            from command_rtt import bench_token

            token = bench_token()
        print(f"   database ready in {time.monotonic() - started:.1f} s", flush=True)
    figures = {}
    for mode in modes:
        figures[mode] = run_layout(
            args, ceiling=mode == "ceiling", database_url=database_url, redis_url=redis_url, token=token
        )
        report(args, figures[mode])
    if len(figures) == 2:
        side_by_side(figures["cpms"], figures["ceiling"])


def run_loop(coroutine) -> None:
    try:
        import uvloop  # a cheaper loop for the generator and the ceiling, when installed
    except ImportError:
        asyncio.run(coroutine)
        return
    uvloop.run(coroutine)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=200, help="chargers")
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="daphne", help="CPMS_ASGI_SERVER")
    parser.add_argument(
        "--v201", type=float, default=0.5, help="fraction of the chargers speaking OCPP 2.0.1"
    )
    parser.add_argument("--servers", type=int, default=0, help="default max(4, ceil(N / 12000))")
    parser.add_argument("--client-procs", type=int, default=0, help="default max(2, ceil(N / 12000))")
    parser.add_argument("--heartbeat-s", type=float, default=300.0)
    parser.add_argument("--meter-s", type=float, default=30.0)
    parser.add_argument("--charging", type=float, default=0.3)
    parser.add_argument("--steady-s", type=float, default=60.0)
    parser.add_argument(
        "--idle-s", type=float, default=10.0, help="quiet after admission before the idle RSS"
    )
    parser.add_argument("--ramp-s", type=float, default=0.0)
    parser.add_argument(
        "--warm-up", type=int, default=10, help="chargers per server that come and go before the baseline RSS"
    )
    parser.add_argument("--settle-s", type=float, default=5.0)
    parser.add_argument("--admission-timeout", type=float, default=0.0, help="default 600 + N / 50 s")
    parser.add_argument("--db-pool", type=int, default=0, help="database pool per server (default: sized)")
    parser.add_argument("--commands", type=int, default=0, help="remote commands during the steady window")
    parser.add_argument("--command-rate", type=float, default=20.0, help="commands per second")
    parser.add_argument("--command-action", choices=sorted(COMMAND_BODIES), default="ClearCache")
    parser.add_argument(
        "--storm",
        action="store_true",
        help="after the steady window, kill -9 every server, start them again and time until all are back",
    )
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="raw websockets servers with canned answers instead of the CPMS",
    )
    parser.add_argument(
        "--with-ceiling", action="store_true", help="the ceiling, then the CPMS, and both side by side"
    )
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--warm-up-client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ceiling-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--total", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.commands and args.command_rate <= 0:
        parser.error("--command-rate must be positive")
    if args.ceiling_server:
        raise_fd_limit()
        run_loop(ceiling_server(args.ceiling_server))
    elif args.client:
        run_loop(client_main(args))
    else:
        parent_main(args)


if __name__ == "__main__":
    main()
