"""Remote command round trip: API request to the charger's answer, through Redis, with N connected chargers.

    python bench/command_rtt.py [--chargers 1000] [--seconds 20] [--concurrency 1 10 50]
                                [--action ClearCache] [--one-process] [--pin]
                                [--database-url postgres://...] [--redis-url redis://...]

What it measures: `POST /api/v1/stations/<identity>/ocpp/<Action>/` (stations.api.commands) from the moment
the request is written until the response is read. Behind it: the API records a `Command`, sends
`ocpp.command` to the station's channel-layer group (Redis), the process holding the charger's WebSocket
claims the command, sends the CALL, the charger answers, the answer is recorded, the issuer is told on its
reply channel and answers 200.

Setup (PostgreSQL, DATABASE_URL default postgres://postgres@127.0.0.1:5432/cpms_bench; Redis, default
redis://127.0.0.1:6379/8): migrate, make stations BENCH-00001..N (bench/ocpp_ingest.py `setup_database`),
an operator_admin user `bench-operator` of the bench organisation with an API token, and delete the
`Command` rows of earlier runs so that runs compare.

For each N in --chargers: start server A (`python -m cpms.server`, REDIS_URL set) and, unless
--one-process, server B. N simulated OCPP 1.6 chargers (one or two client processes: raw websockets,
orjson frames, basic auth, BootNotification) connect to A and answer every CSMS CALL with a valid
CALLRESULT. The API requests go to B, so every command crosses Redis both ways (with --one-process they go
to A: the group message still goes through Redis, but to the same process). Then, for each value of
--concurrency, that many workers (threads, one keep-alive HTTP connection each) POST --action to a station
picked uniformly among the connected ones, in a closed loop for --seconds.

Per run it prints: requests and requests/s, HTTP status counts, latency p50/p90/p99/max, CPU seconds of
server A and B during the window (from /proc/<pid>/stat) and CPU ms per command, their RSS, the CPU of the
charger clients and of the load generator, the CALLs the chargers answered, and from the database the
window's `Command` rows by status with the server-side round trip (created_at -> finished_at; also
created -> sent, i.e. delivery through Redis plus the claim, and sent -> finished). Then one JSON line
with the same figures, and at the end a table. Warnings and errors the servers logged during a run are
shown; the server logs are kept in a temporary directory whose path is printed.

Not a test: it asserts nothing, it measures. Only 127.0.0.1 is used; every wait is bounded. On a 2-core
box the servers, the chargers and the load generator share the cores: trust CPU per command and the
ratio between the client-side and the server-side round trip more than absolute rates.
"""

import argparse
import asyncio
import datetime as dt
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import ocpp_ingest as ingest

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/8"
BENCH_USERNAME = "bench-operator"
HOST = ingest.HOST
# The server tells chargers this interval at boot: long enough that nobody expects a heartbeat in a run.
HEARTBEAT_INTERVAL_S = 3600
# The API waits up to OCPP_CALL_TIMEOUT_S (30 s) plus grace for a charger: a request may take that long.
REQUEST_TIMEOUT_S = 60.0
CLIENT_IDLE_TIMEOUT_S = 3600.0
STOP_TIMEOUT_S = 60.0
LOG_LINES_SHOWN = 8

# The OCPP 1.6 body the API sends per action, and what the simulated charger answers.
REQUEST_BODIES: dict[str, dict] = {
    "ClearCache": {},
    "GetConfiguration": {},
    "ChangeConfiguration": {"key": "MeterValueSampleInterval", "value": "60"},
    "Reset": {"type": "Soft"},
    "TriggerMessage": {"requestedMessage": "Heartbeat"},
    "ChangeAvailability": {"connectorId": 0, "type": "Operative"},
    "UnlockConnector": {"connectorId": 1},
    "DataTransfer": {"vendorId": "CPMS-Bench"},
    "GetLocalListVersion": {},
}
CHARGER_ANSWERS: dict[str, dict] = {
    "ClearCache": {"status": "Accepted"},
    "GetConfiguration": {
        "configurationKey": [
            {"key": "HeartbeatInterval", "readonly": False, "value": str(HEARTBEAT_INTERVAL_S)},
            {"key": "MeterValueSampleInterval", "readonly": False, "value": "60"},
            {"key": "NumberOfConnectors", "readonly": True, "value": "1"},
        ],
        "unknownKey": [],
    },
    "ChangeConfiguration": {"status": "Accepted"},
    "Reset": {"status": "Accepted"},
    "TriggerMessage": {"status": "Accepted"},
    "ChangeAvailability": {"status": "Accepted"},
    "UnlockConnector": {"status": "Unlocked"},
    "DataTransfer": {"status": "Accepted"},
    "GetLocalListVersion": {"listVersion": 0},
}


# --- charger client process ----------------------------------------------------------------------


@dataclass
class Tally:
    """What the chargers of one client process did with the CSMS's calls."""

    answered: Counter = field(default_factory=Counter)
    not_implemented: int = 0
    closed: int = 0
    samples: list[str] = field(default_factory=list)
    stopping: bool = False

    def note(self, text: str) -> None:
        if len(self.samples) < 10:
            self.samples.append(text)

    def snapshot(self) -> dict:
        return {
            "answered": sum(self.answered.values()),
            "by_action": dict(self.answered),
            "not_implemented": self.not_implemented,
            "closed": self.closed,
            "samples": self.samples,
        }


class CommandCharger(ingest.BenchCharger):
    """A booted OCPP 1.6 charger that answers every CSMS CALL it knows (CHARGER_ANSWERS)."""

    async def start_transaction(self) -> None:
        # open() calls this after BootNotification: no transaction here, only the connector's status.
        await self.call(
            "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
        )

    async def serve(self, tally: Tally) -> None:
        import orjson
        from websockets.exceptions import ConnectionClosed

        ws = self.ws
        try:
            async for raw in ws:
                frame = orjson.loads(raw)
                if frame[0] != 2:
                    continue  # the CSMS's answer to a Heartbeat we sent for a TriggerMessage
                unique_id, action, payload = frame[1], frame[2], frame[3]
                answer = CHARGER_ANSWERS.get(action)
                if answer is None:
                    await ws.send(
                        orjson.dumps(
                            [4, unique_id, "NotImplemented", f"bench charger: {action}", {}]
                        ).decode()
                    )
                    tally.not_implemented += 1
                    tally.note(f"{self.identity}: {action} not implemented")
                    continue
                await ws.send(orjson.dumps([3, unique_id, answer]).decode())
                tally.answered[action] += 1
                if action == "TriggerMessage" and payload.get("requestedMessage") == "Heartbeat":
                    # OCPP 1.6 TriggerMessage: the charger then sends the message it was asked for.
                    await ws.send(orjson.dumps([2, f"t{next(self.ids)}", "Heartbeat", {}]).decode())
        except ConnectionClosed as exc:
            if not tally.stopping:
                tally.closed += 1
                tally.note(f"{self.identity}: connection closed: {exc}")
            return
        if not tally.stopping:
            tally.closed += 1
            tally.note(f"{self.identity}: the server closed the connection")


def _stdin_lines(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue) -> None:
    # A daemon thread, not run_in_executor: a readline still blocked at exit must not hold the loop.
    for line in sys.stdin:
        loop.call_soon_threadsafe(lines.put_nowait, line.strip())
    loop.call_soon_threadsafe(lines.put_nowait, "")


async def client_main(args) -> None:
    stats = ingest.ClientStats()
    tally = Tally()
    chargers = [
        CommandCharger(args.url, ingest.identity(n), stats)
        for n in range(args.first, args.first + args.count)
    ]
    slots = asyncio.Semaphore(args.connect_concurrency)

    async def open_one(charger: CommandCharger) -> bool:
        try:
            await charger.open(slots)
        except Exception as exc:  # counted as a failed charger, the run goes on with the others
            stats.failed += 1
            if len(stats.failures) < 10:
                stats.failures.append(f"{charger.identity}: {exc}")
            if charger.ws is not None:
                await charger.ws.close()
                charger.ws = None
            return False
        stats.connected += 1
        return True

    async with asyncio.timeout(args.connect_timeout):
        opened = await asyncio.gather(*(open_one(c) for c in chargers))
    ready = [c for c, ok in zip(chargers, opened, strict=True) if ok]
    serving = [asyncio.create_task(c.serve(tally)) for c in ready]
    ready_line = {
        "connected": stats.connected,
        "failed": stats.failed,
        "failures": stats.failures,
        "identities": [c.identity for c in ready],
    }
    print("READY " + json.dumps(ready_line), flush=True)

    lines: asyncio.Queue[str] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    threading.Thread(target=_stdin_lines, args=(loop, lines), daemon=True).start()
    while True:
        try:
            word = await asyncio.wait_for(lines.get(), timeout=CLIENT_IDLE_TIMEOUT_S)
        except TimeoutError:
            break
        if word == "COUNT":
            print("COUNT " + json.dumps(tally.snapshot()), flush=True)
        else:
            break  # STOP, or the parent is gone (end of stdin)
    tally.stopping = True
    async with asyncio.timeout(30):
        await asyncio.gather(*(c.ws.close() for c in ready), return_exceptions=True)
    for task in serving:
        task.cancel()
    await asyncio.gather(*serving, return_exceptions=True)
    print("BYE " + json.dumps(tally.snapshot()), flush=True)


def run_client(args) -> None:
    ingest.raise_fd_limit()
    try:
        import uvloop  # optional: a faster client loop when installed

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(client_main(args))


# --- parent: database, servers, chargers, load, figures --------------------------------------------


def bench_token() -> str:
    """The API token of `bench-operator`, operator_admin of the bench organisation. Deletes the commands
    of earlier runs on the bench stations so that runs compare."""
    from django.db import connections

    from accounts.enums import Role
    from accounts.models import Organisation, User
    from accounts.services import api_token_get_or_create, membership_set
    from stations.models import Command

    organisation = Organisation.objects.get(slug="bench")
    user, _ = User.objects.get_or_create(username=BENCH_USERNAME)
    membership_set(user=user, organisation=organisation, role=Role.OPERATOR_ADMIN)
    key = api_token_get_or_create(user=user).key
    deleted, _ = Command.objects.filter(station__identity__startswith=ingest.IDENTITY_PREFIX).delete()
    print(f"   deleted {deleted} rows of earlier commands", flush=True)
    connections.close_all()
    return key


def command_rows(since: dt.datetime) -> dict:
    """The bench commands created since `since`: counts by status (with error code), and the server-side
    round trip percentiles in ms."""
    from django.db import connections

    from stations.enums import CommandStatus
    from stations.models import Command

    rows = list(
        Command.objects.filter(
            station__identity__startswith=ingest.IDENTITY_PREFIX, created_at__gte=since
        ).values_list("status", "error_code", "created_at", "sent_at", "finished_at")
    )
    connections.close_all()
    by_status = Counter(f"{status}/{code}" if code else status for status, code, *_ in rows)
    answered = [(c, s, f) for status, _, c, s, f in rows if status == CommandStatus.ANSWERED]

    def ms(pairs) -> list[float]:
        return sorted((b - a).total_seconds() * 1000 for a, b in pairs if a is not None and b is not None)

    round_trip = ms((c, f) for c, _, f in answered)
    delivery = ms((c, s) for c, s, _ in answered)
    at_charger = ms((s, f) for _, s, f in answered)
    return {
        "rows": len(rows),
        "by_status": dict(by_status),
        "rtt_p50_ms": ingest.percentile(round_trip, 0.50),
        "rtt_p99_ms": ingest.percentile(round_trip, 0.99),
        "created_to_sent_p50_ms": ingest.percentile(delivery, 0.50),
        "sent_to_finished_p50_ms": ingest.percentile(at_charger, 0.50),
    }


def database_connections(database_url: str) -> int:
    import psycopg

    name = urlsplit(database_url).path.lstrip("/")
    maintenance = urlsplit(database_url)._replace(path="/postgres").geturl()
    maintenance = maintenance.replace("postgres://", "postgresql://", 1)
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()
    return row[0]


@dataclass
class LoadResult:
    latencies: list[float]
    statuses: Counter
    samples: list[str]
    elapsed: float
    cpu_s: float


def load(
    *,
    port: int,
    token: str,
    targets: list[str],
    action: str,
    body: dict,
    concurrency: int,
    seconds: float,
) -> LoadResult:
    """`concurrency` threads, each with one keep-alive HTTP connection, POST commands in a closed loop."""
    payload = json.dumps(body).encode()
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    go = threading.Event()
    window = {"deadline": 0.0}
    latencies: list[float] = []
    statuses: Counter = Counter()
    samples: list[str] = []
    merge = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        mine: list[float] = []
        codes: Counter = Counter()
        notes: list[str] = []
        conn: http.client.HTTPConnection | None = None
        if not go.wait(timeout=30):
            return
        clock = time.perf_counter
        while clock() < window["deadline"]:
            ident = rng.choice(targets)
            if conn is None:
                conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
            started = clock()
            try:
                conn.request(
                    "POST", f"/api/v1/stations/{ident}/ocpp/{action}/", body=payload, headers=headers
                )
                response = conn.getresponse()
                data = response.read()
                code: int | str = response.status
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                code, data = type(exc).__name__, str(exc).encode()
                conn.close()
                conn = None
            mine.append(clock() - started)
            codes[code] += 1
            if code != 200 and len(notes) < 5:
                notes.append(f"{ident}: {code} {data[:400].decode(errors='replace')}")
        if conn is not None:
            conn.close()
        with merge:
            latencies.extend(mine)
            statuses.update(codes)
            samples.extend(notes[: max(0, 10 - len(samples))])

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    cpu_before = time.process_time()
    started = time.perf_counter()
    window["deadline"] = started + seconds
    go.set()
    for thread in threads:
        thread.join(timeout=max(0.0, window["deadline"] - time.perf_counter()) + REQUEST_TIMEOUT_S + 5)
    elapsed = time.perf_counter() - started
    stuck = sum(thread.is_alive() for thread in threads)
    if stuck:
        samples.append(f"{stuck} workers still waiting for a response after the bound")
    return LoadResult(latencies, statuses, samples, elapsed, time.process_time() - cpu_before)


def server_command(port: int) -> list[str]:
    return ingest.server_command("daphne", port)


def start_server(name: str, port: int, env: dict, log_path: Path, cpus: set[int]) -> subprocess.Popen:
    print(f"   server {name}: port {port}, CPUs {sorted(cpus)}, log {log_path}", flush=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            server_command(port),
            cwd=ingest.BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Before exec, so every thread the server starts inherits it.
            preexec_fn=lambda: os.sched_setaffinity(0, cpus),
        )


def log_problems(path: Path, offset: int) -> tuple[int, list[str]]:
    """Lines a server logged past `offset` that report a problem: their count and the first few."""
    with path.open("rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
    marks = ("WARNING", "ERROR", "CRITICAL", "Traceback", "Exception")
    lines = [line for line in text.splitlines() if any(mark in line for mark in marks)]
    return len(lines), lines[:LOG_LINES_SHOWN]


class ChargerClients:
    """The client processes holding the chargers; COUNT asks each for its tally."""

    def __init__(self, *, count: int, port: int, procs: int, args, workdir: Path, cpus: set[int]):
        per_proc = -(-count // procs)
        self.processes: list[subprocess.Popen] = []
        self.readers: list[ingest.LineReader] = []
        for index, first in enumerate(range(1, count + 1, per_proc)):
            n = min(per_proc, count - first + 1)
            client_log = (workdir / f"chargers-{count}-{index}.log").open("wb")
            process = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--client",
                    "--url",
                    f"ws://{HOST}:{port}/ocpp",
                    "--first",
                    str(first),
                    "--count",
                    str(n),
                    "--connect-timeout",
                    str(args.connect_timeout),
                ],
                cwd=ingest.BASE_DIR,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=client_log,
                text=True,
                start_new_session=True,
                preexec_fn=lambda: os.sched_setaffinity(0, cpus),
            )
            client_log.close()
            self.processes.append(process)
            self.readers.append(ingest.LineReader(process))

    def ready(self, timeout: float) -> dict:
        lines = [json.loads(reader.expect("READY", timeout)) for reader in self.readers]
        return {
            "connected": sum(line["connected"] for line in lines),
            "failed": sum(line["failed"] for line in lines),
            "failures": [text for line in lines for text in line["failures"]],
            "identities": [ident for line in lines for ident in line["identities"]],
        }

    def _ask(self, word: str, prefix: str, timeout: float) -> dict:
        for process in self.processes:
            process.stdin.write(word + "\n")
            process.stdin.flush()
        tallies = [json.loads(reader.expect(prefix, timeout)) for reader in self.readers]
        return {
            "answered": sum(t["answered"] for t in tallies),
            "not_implemented": sum(t["not_implemented"] for t in tallies),
            "closed": sum(t["closed"] for t in tallies),
            "samples": [text for t in tallies for text in t["samples"]],
        }

    def count(self) -> dict:
        return self._ask("COUNT", "COUNT", 30)

    def cpu_seconds(self) -> float:
        return sum(ingest.cpu_seconds(process.pid) for process in self.processes)

    def stop(self) -> None:
        try:
            if all(process.poll() is None for process in self.processes):
                self._ask("STOP", "BYE", STOP_TIMEOUT_S)
        except (OSError, TimeoutError, EOFError) as exc:
            print(f"   ! charger clients did not stop cleanly: {exc}", flush=True)
        for process in self.processes:
            ingest.stop_process(process, group=True)


def percentiles_ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": ingest.percentile(ordered, 0.50) * 1000,
        "p90_ms": ingest.percentile(ordered, 0.90) * 1000,
        "p99_ms": ingest.percentile(ordered, 0.99) * 1000,
        "max_ms": ordered[-1] * 1000 if ordered else float("nan"),
    }


def run_chargers(args, count: int, token: str, workdir: Path) -> list[dict]:
    """Servers and chargers for one N, then one load run per --concurrency value."""
    cpus = sorted(os.sched_getaffinity(0))
    pin = args.pin and len(cpus) >= 2
    if pin and args.one_process:
        server_cpus, client_cpus = {"A": {cpus[0]}}, set(cpus[1:])
    elif pin:
        server_cpus = {"A": {cpus[0]}, "B": {cpus[1]}}
        client_cpus = set(cpus[2:]) or set(cpus)
    else:
        server_cpus = {"A": set(cpus)} if args.one_process else {"A": set(cpus), "B": set(cpus)}
        client_cpus = set(cpus)
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "DJANGO_SETTINGS_MODULE": "cpms.settings",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "OCPP_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_INTERVAL_S),
        "PYTHONUNBUFFERED": "1",
    }
    layout = "one process" if args.one_process else "chargers on A, API on B"
    print(f"\n== {count} OCPP 1.6 chargers, {layout}, REDIS_URL {args.redis_url}", flush=True)
    servers: dict[str, subprocess.Popen] = {}
    ports: dict[str, int] = {}
    logs: dict[str, Path] = {}
    clients: ChargerClients | None = None
    try:
        for name, server_cpu in server_cpus.items():
            ports[name] = ingest.free_port()
            logs[name] = workdir / f"server-{name}-{count}.log"
            servers[name] = start_server(name, ports[name], env, logs[name], server_cpu)
        for name, server in servers.items():
            ingest.wait_listening(server, ports[name], logs[name])
        api = "B" if "B" in servers else "A"

        procs = args.client_procs or (1 if count <= 500 else 2)
        clients = ChargerClients(
            count=count, port=ports["A"], procs=procs, args=args, workdir=workdir, cpus=client_cpus
        )
        connect_started = time.monotonic()
        ready = clients.ready(args.connect_timeout + 30)
        print(
            f"   chargers connected  {ready['connected']} ({ready['failed']} failed) "
            f"in {time.monotonic() - connect_started:.1f} s",
            flush=True,
        )
        for text in ready["failures"][:5]:
            print(f"   ! {text}", flush=True)
        targets = ready["identities"]
        if not targets:
            raise SystemExit("no charger connected")

        body = REQUEST_BODIES[args.action]
        if args.warmup > 0:
            warm = load(
                port=ports[api],
                token=token,
                targets=targets,
                action=args.action,
                body=body,
                concurrency=2,
                seconds=args.warmup,
            )
            print(f"   warm-up             {len(warm.latencies)} requests {dict(warm.statuses)}", flush=True)
            for text in warm.samples[:3]:
                print(f"   ! {text}", flush=True)

        results = []
        for concurrency in args.concurrency:
            offsets = {name: path.stat().st_size for name, path in logs.items()}
            answered_before = clients.count()["answered"]
            window_start = dt.datetime.now(dt.UTC)
            cpu_before = {name: ingest.cpu_seconds(server.pid) for name, server in servers.items()}
            client_cpu_before = clients.cpu_seconds()
            run = load(
                port=ports[api],
                token=token,
                targets=targets,
                action=args.action,
                body=body,
                concurrency=concurrency,
                seconds=args.seconds,
            )
            cpu = {
                name: ingest.cpu_seconds(server.pid) - cpu_before[name] for name, server in servers.items()
            }
            client_cpu = clients.cpu_seconds() - client_cpu_before
            rss = {name: ingest.memory_kib(server.pid)["VmRSS"] / 1024 for name, server in servers.items()}
            tally = clients.count()
            # The last answers are recorded after the responses are sent; give the rows a moment.
            time.sleep(0.5)
            database = command_rows(window_start)
            requests = len(run.latencies)
            figures = {
                "chargers": count,
                "connected": len(targets),
                "layout": "one-process" if args.one_process else "two-process",
                "action": args.action,
                "concurrency": concurrency,
                "seconds": run.elapsed,
                "requests": requests,
                "req_per_s": requests / run.elapsed if run.elapsed else 0.0,
                "statuses": {str(code): n for code, n in sorted(run.statuses.items(), key=str)},
                **percentiles_ms(run.latencies),
                "cpu_s": cpu,
                "cpu_ms_per_command": {
                    name: used / requests * 1000 if requests else float("nan") for name, used in cpu.items()
                },
                "rss_mib": rss,
                "charger_client_cpu_s": client_cpu,
                "load_generator_cpu_s": run.cpu_s,
                "charger_answered": tally["answered"] - answered_before,
                "charger_closed": tally["closed"],
                "db": database,
                "db_connections": database_connections(args.database_url),
            }
            problems = {name: log_problems(path, offsets[name]) for name, path in logs.items()}
            figures["server_log_problems"] = {name: n for name, (n, _) in problems.items()}
            print_run(figures, run.samples, tally["samples"], problems)
            print(json.dumps(figures), flush=True)
            results.append(figures)
        return results
    finally:
        if clients is not None:
            clients.stop()
        for server in servers.values():
            ingest.stop_process(server, group=True)


def print_run(f: dict, samples: list[str], charger_samples: list[str], problems: dict) -> None:
    statuses = ", ".join(f"{code}: {n}" for code, n in f["statuses"].items()) or "-"
    db = f["db"]
    by_status = ", ".join(f"{status} {n}" for status, n in sorted(db["by_status"].items())) or "-"
    print(
        f"\n-- {f['chargers']} chargers, {f['layout']}, {f['action']}, concurrency {f['concurrency']}\n"
        f"   requests            {f['requests']} in {f['seconds']:.1f} s ({f['req_per_s']:.1f} req/s)\n"
        f"   HTTP status         {statuses}\n"
        f"   latency (client)    p50 {f['p50_ms']:.1f}  p90 {f['p90_ms']:.1f}  p99 {f['p99_ms']:.1f}  "
        f"max {f['max_ms']:.1f} ms",
        flush=True,
    )
    for name in f["cpu_s"]:
        print(
            f"   server {name}            CPU {f['cpu_s'][name]:.2f} s "
            f"({f['cpu_ms_per_command'][name]:.2f} ms/command), RSS {f['rss_mib'][name]:.0f} MiB",
            flush=True,
        )
    print(
        f"   chargers            answered {f['charger_answered']} CALLs, {f['charger_closed']} connections "
        f"closed, client CPU {f['charger_client_cpu_s']:.2f} s\n"
        f"   load generator      CPU {f['load_generator_cpu_s']:.2f} s\n"
        f"   database            {db['rows']} command rows: {by_status}; "
        f"{f['db_connections']} PostgreSQL connections open\n"
        f"   round trip (server) p50 {db['rtt_p50_ms']:.1f}  p99 {db['rtt_p99_ms']:.1f} ms created->finished "
        f"(created->sent p50 {db['created_to_sent_p50_ms']:.1f}, sent->finished p50 "
        f"{db['sent_to_finished_p50_ms']:.1f}); client-side p50 {f['p50_ms']:.1f} ms",
        flush=True,
    )
    for text in samples[:5] + charger_samples[:5]:
        print(f"   ! {text}", flush=True)
    for name, (n, lines) in problems.items():
        if n:
            print(f"   ! server {name} logged {n} warning/error lines, first ones:", flush=True)
            for line in lines:
                print(f"   !   {line[:300]}", flush=True)


def print_summary(results: list[dict]) -> None:
    print(f"\nSummary (client-side latency, API request to response; {results[0]['action']})", flush=True)
    print(
        f"{'chargers':>8} {'layout':>12} {'conc':>5} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'srv p50':>8} {'non-200':>8} {'CPU ms/cmd A/B':>16}",
        flush=True,
    )
    for f in results:
        non_ok = f["requests"] - int(f["statuses"].get("200", 0))
        cpu = "/".join(f"{f['cpu_ms_per_command'][name]:.2f}" for name in f["cpu_ms_per_command"])
        print(
            f"{f['chargers']:>8} {f['layout']:>12} {f['concurrency']:>5} {f['req_per_s']:>8.1f} "
            f"{f['p50_ms']:>8.1f} {f['p90_ms']:>8.1f} {f['p99_ms']:>8.1f} {f['max_ms']:>8.1f} "
            f"{f['db']['rtt_p50_ms']:>8.1f} {non_ok:>8} {cpu:>16}",
            flush=True,
        )


def check_urls(args) -> None:
    url = urlsplit(args.database_url)
    if url.scheme not in {"postgres", "postgresql"}:
        raise SystemExit("The command benchmark runs on PostgreSQL (DATABASE_URL=postgres://...).")
    redis = urlsplit(args.redis_url)
    if redis.scheme != "redis":
        raise SystemExit("--redis-url must be redis://...")
    for where in (url, redis):
        if where.hostname not in {"127.0.0.1", "localhost", "::1"}:
            raise SystemExit("The benchmark only uses 127.0.0.1.")
    if "bench" not in url.path and not args.allow_any_database:
        raise SystemExit(
            f"Refusing to write benchmark stations into {url.path.lstrip('/')!r}: use a database whose name "
            "contains 'bench', or pass --allow-any-database."
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, nargs="+", default=[1000])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 10, 50], help="API requests in flight"
    )
    parser.add_argument("--action", choices=sorted(REQUEST_BODIES), default="ClearCache")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ingest.DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument(
        "--one-process",
        action="store_true",
        help="API and chargers on the same server process (default: chargers on A, API on B)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin server A to CPU 0 and B to CPU 1 (one process: A on 0, chargers on 1); default unpinned",
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of requests before the runs")
    parser.add_argument("--client-procs", type=int, default=0, help="default: 1 up to 500 chargers, else 2")
    parser.add_argument("--connect-timeout", type=float, default=180.0)
    parser.add_argument("--allow-any-database", action="store_true")
    # Client process mode (started by the parent).
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--connect-concurrency", type=int, default=50, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.client:
        run_client(args)
        return

    check_urls(args)
    fd_limit = ingest.raise_fd_limit()
    if max(args.chargers) + 200 > fd_limit:
        print(f"warning: file descriptor limit {fd_limit} is below the charger count", flush=True)
    ingest._ensure_database(args.database_url)
    ingest.django_setup(args.database_url)
    name = urlsplit(args.database_url).path.lstrip("/")
    print(f"Setting up {max(args.chargers)} stations and user {BENCH_USERNAME} in {name} ...", flush=True)
    ingest.setup_database(args.database_url, max(args.chargers))
    token = bench_token()

    workdir = Path(tempfile.mkdtemp(prefix="command-rtt-"))
    print(f"Logs in {workdir}", flush=True)
    results = []
    for count in args.chargers:
        results.extend(run_chargers(args, count, token, workdir))
    if results:
        print_summary(results)


if __name__ == "__main__":
    main()
