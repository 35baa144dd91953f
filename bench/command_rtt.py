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
redis://127.0.0.1:6379/8): migrate, make stations BENCH-00001..N (bench/harness.py `setup_database`),
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
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import harness
from command_chargers import HEARTBEAT_INTERVAL_S, run_client
from command_load import load
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
    memory_kib,
    percentile,
    raise_fd_limit,
    setup_database,
    stop_process,
    wait_listening,
)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/8"
BENCH_USERNAME = "bench-operator"
STOP_TIMEOUT_S = 60.0
LOG_LINES_SHOWN = 8

# The OCPP 1.6 body the API sends per action (what the charger answers: command_chargers.CHARGER_ANSWERS).
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
    deleted, _ = Command.objects.filter(station__identity__startswith=IDENTITY_PREFIX).delete()
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
            station__identity__startswith=IDENTITY_PREFIX, created_at__gte=since
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
        "rtt_p50_ms": percentile(round_trip, 0.50),
        "rtt_p99_ms": percentile(round_trip, 0.99),
        "created_to_sent_p50_ms": percentile(delivery, 0.50),
        "sent_to_finished_p50_ms": percentile(at_charger, 0.50),
    }


def database_connections(database_url: str) -> int:
    import psycopg

    name = urlsplit(database_url).path.lstrip("/")
    maintenance = urlsplit(database_url)._replace(path="/postgres").geturl()
    maintenance = maintenance.replace("postgres://", "postgresql://", 1)
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()
    return row[0]


def server_command(port: int) -> list[str]:
    return harness.server_command("daphne", port)


def start_server(name: str, port: int, env: dict, log_path: Path, cpus: set[int]) -> subprocess.Popen:
    print(f"   server {name}: port {port}, CPUs {sorted(cpus)}, log {log_path}", flush=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            server_command(port),
            cwd=BASE_DIR,
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
        self.readers: list[LineReader] = []
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
                cwd=BASE_DIR,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=client_log,
                text=True,
                start_new_session=True,
                preexec_fn=lambda: os.sched_setaffinity(0, cpus),
            )
            client_log.close()
            self.processes.append(process)
            self.readers.append(LineReader(process))

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
        return sum(cpu_seconds(process.pid) for process in self.processes)

    def stop(self) -> None:
        try:
            if all(process.poll() is None for process in self.processes):
                self._ask("STOP", "BYE", STOP_TIMEOUT_S)
        except (OSError, TimeoutError, EOFError) as exc:
            print(f"   ! charger clients did not stop cleanly: {exc}", flush=True)
        for process in self.processes:
            stop_process(process, group=True)


def percentiles_ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p90_ms": percentile(ordered, 0.90) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
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
            ports[name] = free_port()
            logs[name] = workdir / f"server-{name}-{count}.log"
            servers[name] = start_server(name, ports[name], env, logs[name], server_cpu)
        for name, server in servers.items():
            wait_listening(server, ports[name], logs[name])
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
            cpu_before = {name: cpu_seconds(server.pid) for name, server in servers.items()}
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
            cpu = {name: cpu_seconds(server.pid) - cpu_before[name] for name, server in servers.items()}
            client_cpu = clients.cpu_seconds() - client_cpu_before
            rss = {name: memory_kib(server.pid)["VmRSS"] / 1024 for name, server in servers.items()}
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
            stop_process(server, group=True)


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
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
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
    fd_limit = raise_fd_limit()
    if max(args.chargers) + 200 > fd_limit:
        print(f"warning: file descriptor limit {fd_limit} is below the charger count", flush=True)
    ensure_database(args.database_url)
    django_setup(args.database_url)
    name = urlsplit(args.database_url).path.lstrip("/")
    print(f"Setting up {max(args.chargers)} stations and user {BENCH_USERNAME} in {name} ...", flush=True)
    setup_database(args.database_url, max(args.chargers))
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
