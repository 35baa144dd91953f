"""Scale benchmark (issue 13, first version): the production layout under N chargers with realistic open-loop traffic.

    python bench/scale.py N [--servers 4] [--client-procs 2] [--heartbeat-s 300] [--meter-s 30]
                            [--charging 0.3] [--steady-s 60] [--ramp-s 0] [--settle-s 5]

It starts the production layout itself: --servers processes of `python -m cpms.server`, one port each, a
Celery worker and beat, against PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/cpms_bench,
created and migrated, stations BENCH-00001..N with the bench password) and Redis (REDIS_URL, default
redis://127.0.0.1:6379/14: give it a db number of its own, the run leaves channel and broker keys behind).
Then --client-procs processes (asyncio + websockets, frames built by hand) play N OCPP 1.6 chargers spread
over the servers: connect (all at once, a storm, unless --ramp-s spreads the starts), BootNotification,
StatusNotification, and for the --charging fraction a StartTransaction. After every charger is booted (or has
given up) the steady window of --steady-s starts: each charger sends a Heartbeat every --heartbeat-s and each
charging one MeterValues every --meter-s, both on a fixed schedule with a random phase (open loop: a slow
answer does not delay the next send of other chargers, nor the schedule of this one).

Prints: admission time (first connect to all booted) and rate, connection failures and retries, steady msg/s,
p50/p95/p99/max latency per action, server CPU per steady message (the server processes' CPU during the
window / messages answered in it), the server RSS per connection (after admission minus before any charger
connected), and a loss check: acknowledged StartTransactions and MeterValues against the sessions and meter
rows in the database after --settle-s; the ERROR and WARNING lines in the servers' logs and their commonest kinds.

Modes: the one above, and --ceiling: the same generator and figures against --servers bare websockets
processes that answer every call with a canned CALLRESULT (no database, worker, beat or Redis; no loss check),
run separately for the ratio of the CPMS's CPU and RSS to the transport's. Not yet: --storm (kill and restart
the servers, time until all are back), --protocol 2.0.1 / mixed.

Not a test: it asserts nothing, it measures. Only 127.0.0.1 is used; every wait is bounded.
"""

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import (
    BASE_DIR,
    DEFAULT_DATABASE_URL,
    IDENTITY_PREFIX,
    LineReader,
    cpu_seconds,
    django_setup,
    ensure_database,
    free_port,
    memory_kib,
    percentile,
    raise_fd_limit,
    server_command,
    setup_database,
    stop_process,
    wait_listening,
)
from scale_chargers import RESPONSE_TIMEOUT_S, SAMPLED_VALUES, ceiling_server, client_main

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"


ADMISSION_TIMEOUT_S = 600.0


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


def row_counts(since_session_pk: int) -> tuple[int, int]:
    from django.db import connections

    from sessions.models import ChargingSession, MeterValue

    sessions = ChargingSession.objects.filter(
        station__identity__startswith=IDENTITY_PREFIX, pk__gt=since_session_pk
    ).count()
    meter_rows = MeterValue.objects.filter(station__identity__startswith=IDENTITY_PREFIX).count()
    connections.close_all()
    return sessions, meter_rows


def last_session_pk() -> int:
    from django.db import connections

    from sessions.models import ChargingSession

    pk = ChargingSession.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    connections.close_all()
    return pk


def log_problems(workdir: Path) -> tuple[int, int, list[tuple[int, str]]]:
    """ERROR and WARNING lines in the servers' logs, and the commonest kinds (logger and message start)."""
    import collections

    kinds: collections.Counter[str] = collections.Counter()
    errors = warnings = 0
    for path in workdir.glob("server-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            for level in (" ERROR ", " WARNING "):
                if level in line:
                    errors += level == " ERROR "
                    warnings += level == " WARNING "
                    kinds[line.split(level, 1)[1][:90]] += 1
    return errors, warnings, [(n, kind) for kind, n in kinds.most_common(3)]


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


def storm_run(args, servers, ports, env, workdir, readers, clients) -> dict:
    """--storm: every client watches its chargers' connections; kill -9 every server at once, start them again on
    the same ports, and wait until every charger has connected and booted again."""
    expected = sum(
        json.loads((workdir / f"result-{i}.json").read_text())["booted"] for i in range(len(readers))
    )
    killed_at = time.time()
    for server in servers:
        os.killpg(server.pid, signal.SIGKILL)
    for server in servers:
        server.wait(timeout=30)
    print(f"   storm: {len(servers)} servers killed; starting them again", flush=True)
    python = sys.executable
    for i, port in enumerate(ports):
        servers[i] = (
            start(f"server-{port}-b", [python, __file__, "--ceiling-server", str(port)], env, workdir)
            if args.ceiling
            else start(f"server-{port}-b", server_command("daphne", port), env, workdir)
        )
    for server, port in zip(servers, ports, strict=True):
        wait_listening(server, port, workdir / f"server-{port}-b.log")
    listening_at = time.time()
    done: list[str | None] = [None] * len(readers)
    deadline = time.monotonic() + ADMISSION_TIMEOUT_S
    while None in done:
        if time.monotonic() > deadline:
            raise SystemExit("the storm did not settle in time")
        back = 0
        for i, reader in enumerate(readers):
            while done[i] is None and not reader.lines.empty():
                line = reader.lines.get()
                if line is None:
                    raise SystemExit(f"client {i} exited during the storm (see {workdir}/client-{i}.log)")
                if line.startswith("REJOINED"):
                    done[i] = line
                elif line.startswith("REJOINING"):
                    back += int(line.split()[1])
        if None in done:
            print(f"   storm: {time.time() - killed_at:.0f} s since the kill", flush=True)
            time.sleep(1.0)
    fields = [line.split()[1:] for line in done]
    rejoined = sum(int(f[0]) for f in fields)
    last = max(float(f[1]) for f in fields)
    for client in clients:
        client.stdin.write("END\n")
        client.stdin.flush()
    for reader in readers:
        reader.expect("DONE", RESPONSE_TIMEOUT_S + 30)
    return {
        "expected": expected,
        "rejoined": rejoined,
        "back_s": last - killed_at,
        "after_restart_s": last - listening_at,
        "failures": sum(int(f[2]) for f in fields),
    }


def parent_main(args) -> None:
    raise_fd_limit()
    count = args.n
    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    workdir = Path(tempfile.mkdtemp(prefix="cpms-scale-"))
    layout = "raw websockets servers (--ceiling)" if args.ceiling else "servers, worker + beat"
    print(f"== scale: {count} OCPP 1.6 chargers, {args.servers} {layout}, logs in {workdir}", flush=True)
    print(f"   database {database_url}, redis {redis_url}, load average {os.getloadavg()}", flush=True)
    session_pk = 0
    if not args.ceiling:
        ensure_database(database_url)
        django_setup(database_url)
        started = time.monotonic()
        setup_database(database_url, count)
        session_pk = last_session_pk()
        print(f"   database ready in {time.monotonic() - started:.1f} s", flush=True)

    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "cpms.settings",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "PYTHONUNBUFFERED": "1",
        "CPMS_VAR_DIR": str(workdir / "var"),
    }
    ports = [free_port() for _ in range(args.servers)]
    python = sys.executable
    if args.ceiling:
        servers = [
            start(f"server-{p}", [python, __file__, "--ceiling-server", str(p)], env, workdir) for p in ports
        ]
    else:
        servers = [start(f"server-{p}", server_command("daphne", p), env, workdir) for p in ports]
    others = (
        []
        if args.ceiling
        else [
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
                env,
                workdir,
            ),
            start(
                "beat",
                [python, "-m", "celery", "-A", "cpms", "beat", "--loglevel", "WARNING"],
                env,
                workdir,
            ),
        ]
    )
    clients: list[subprocess.Popen] = []
    try:
        for server, port in zip(servers, ports, strict=True):
            wait_listening(server, port, workdir / f"server-{port}.log")
        time.sleep(2.0)  # imports finished before the idle RSS is taken
        rss_idle = sum(memory_kib(s.pid)["VmRSS"] for s in servers)
        print(f"   servers listening on {ports}, RSS {rss_idle / 1024:.0f} MiB in all", flush=True)

        procs = max(1, min(args.client_procs, count))
        per_proc = -(-count // procs)
        readers = []
        for index, first in enumerate(range(1, count + 1, per_proc)):
            client = subprocess.Popen(
                [
                    python,
                    __file__,
                    "--client",
                    "--first",
                    str(first),
                    "--count",
                    str(min(per_proc, count - first + 1)),
                    "--total",
                    str(count),
                    "--ports",
                    ",".join(map(str, ports)),
                    "--charging",
                    str(args.charging),
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
            )
            clients.append(client)
            readers.append(LineReader(client))

        # Admission: progress lines until every client reports ADMITTED.
        admitted: list[str | None] = [None] * len(clients)
        progress = [(0, 0)] * len(clients)
        deadline = time.monotonic() + ADMISSION_TIMEOUT_S
        while None in admitted:
            if time.monotonic() > deadline:
                raise SystemExit("admission did not finish in time")
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
            booted = sum(p[0] for p in progress)
            if None in admitted:
                print(
                    f"   admission: {booted}/{count} booted, {sum(p[1] for p in progress)} connect failures",
                    flush=True,
                )
        fields = [line.split()[1:] for line in admitted]
        booted = sum(int(f[0]) for f in fields)
        first_connect = min(float(f[1]) for f in fields if float(f[1]))
        last_boot = max(float(f[2]) for f in fields)
        admission_s = last_boot - first_connect
        time.sleep(2.0)
        rss_admitted = sum(memory_kib(s.pid)["VmRSS"] for s in servers)
        print(f"   admitted {booted}/{count} in {admission_s:.1f} s", flush=True)

        # Steady window: clients get the wall-clock bounds; the server CPU is sampled at both ends.
        window_start = time.time() + 1.0
        window_end = window_start + args.steady_s
        for client in clients:
            client.stdin.write(f"GO {window_start} {window_end}\n")
            client.stdin.flush()
        time.sleep(max(0.0, window_start - time.time()))
        cpu_before = sum(cpu_seconds(s.pid) for s in servers)
        worker_before = cpu_seconds(others[0].pid) if others else 0.0
        while time.time() < window_end:
            time.sleep(min(10.0, max(0.0, window_end - time.time())))
            print(f"   steady: {window_end - time.time():.0f} s left", flush=True)
        cpu_steady = sum(cpu_seconds(s.pid) for s in servers) - cpu_before
        worker_cpu = cpu_seconds(others[0].pid) - worker_before if others else 0.0
        rss_end = sum(memory_kib(s.pid)["VmRSS"] for s in servers)
        for reader in readers:
            reader.expect("STORM_READY" if args.storm else "DONE", RESPONSE_TIMEOUT_S + 30)
        results = [json.loads((workdir / f"result-{i}.json").read_text()) for i in range(len(clients))]
        load = os.getloadavg()
        storm = storm_run(args, servers, ports, env, workdir, readers, clients) if args.storm else None
        sessions = meter_rows = 0
        if not args.ceiling:
            print(f"   settling {args.settle_s:g} s before counting rows", flush=True)
            time.sleep(args.settle_s)
            sessions, meter_rows = row_counts(session_pk)
    finally:
        for client in clients:
            stop_process(client, group=False)
        for process in servers + others:
            stop_process(process, group=True)

    def merged(kind: str) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for result in results:
            for action, values in result[kind].items():
                out.setdefault(action, []).extend(values)
        return out

    acked = {k: sum(r["acked"][k] for r in results) for k in results[0]["acked"]}
    steady = merged("steady")
    steady_messages = sum(len(v) for v in steady.values())
    failures = sum(r["failures"] for r in results)
    errors = sum(r["errors"] for r in results)
    print(
        f"\n== {count} chargers over {args.servers} servers (load average at the end {load[0]:.2f} {load[1]:.2f})"
    )
    print(
        f"   admission          {admission_s:.1f} s, {booted / admission_s if admission_s else 0:.0f} boots/s, "
        f"{booted}/{count} booted, {failures} connection failures (each one retried)"
    )
    print(f"   steady             {steady_messages / args.steady_s:.1f} msg/s over {args.steady_s:g} s")
    print(
        f"   server CPU / msg   {cpu_steady * 1000 / max(1, steady_messages):.2f} ms "
        f"({cpu_steady:.1f} s in {args.servers} servers; worker {worker_cpu:.1f} s)"
    )
    print(
        f"   server RSS / conn  {(rss_admitted - rss_idle) / max(1, booted):.0f} KiB "
        f"(idle {rss_idle / 1024:.0f} MiB, admitted {rss_admitted / 1024:.0f} MiB, end {rss_end / 1024:.0f} MiB)"
    )
    print("   latency, admission:")
    for action, values in sorted(merged("admission").items()):
        print(f"     {action:<18} {millis(values)}")
    print("   latency, steady window:")
    for action, values in sorted(steady.items()):
        print(f"     {action:<18} {millis(values)}")
    if not args.ceiling:  # nothing is stored
        print(
            f"   loss check         StartTransaction acked {acked['StartTransaction']}, sessions stored {sessions}; "
            f"MeterValues acked {acked['MeterValues']} x {SAMPLED_VALUES} = {acked['MeterValues'] * SAMPLED_VALUES}, "
            f"meter rows stored {meter_rows}"
        )
    if storm is not None:
        print(
            f"   storm              {storm['rejoined']}/{storm['expected']} back {storm['back_s']:.1f} s after the "
            f"kill ({storm['after_restart_s']:.1f} s after the servers listened again), "
            f"{storm['failures']} connection failures in all"
        )
    print(f"   client errors      {errors}")
    logged_errors, logged_warnings, kinds = log_problems(workdir)
    print(f"   server log         {logged_errors} ERROR, {logged_warnings} WARNING lines")
    for n, kind in kinds:
        print(f"     {n:>6} x {kind}")
    for result in results:
        for sample in result["failure_samples"][:2] + result["error_samples"][:3]:
            print(f"     {sample}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=200, help="chargers")
    parser.add_argument("--servers", type=int, default=4)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--heartbeat-s", type=float, default=300.0)
    parser.add_argument("--meter-s", type=float, default=30.0)
    parser.add_argument("--charging", type=float, default=0.3)
    parser.add_argument("--steady-s", type=float, default=60.0)
    parser.add_argument("--ramp-s", type=float, default=0.0)
    parser.add_argument("--settle-s", type=float, default=5.0)
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
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ceiling-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--total", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ceiling_server:
        raise_fd_limit()
        asyncio.run(ceiling_server(args.ceiling_server))
    elif args.client:
        asyncio.run(client_main(args))
    else:
        parent_main(args)


if __name__ == "__main__":
    main()
