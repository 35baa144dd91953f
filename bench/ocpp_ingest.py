"""OCPP ingest benchmark: N chargers in a closed meter-value loop against a real server process.

    python bench/ocpp_ingest.py [--chargers 100 1000] [--seconds 20] [--protocol 1.6|2.0.1]
                                [--server-cmd daphne|uvicorn|uvicorn-cli|'<cmd>']

For each N in --chargers: migrate the database (PostgreSQL; DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/cpms_bench) and create N stations with a password, start the server
(`python -m cpms.server`, pinned to CPU 0 when there are two or more), connect N simulated chargers
from one or two client processes (raw websockets + orjson frames, so the client is not the bottleneck),
boot them and start one transaction each, then let every charger send its readings in a closed loop
(send, wait for the CALLRESULT, send the next) for --seconds: 1.6 MeterValues, or 2.0.1 TransactionEvent
Updated (seqNo increasing), each with SAMPLED_VALUES_PER_MESSAGE values. Prints messages/s, round-trip
latency percentiles, the server's CPU time (from /proc/<pid>/stat) and RSS, and the meter rows it stored.

Not a test: it asserts nothing, it measures. Only 127.0.0.1 is used; every wait is bounded.
"""

import argparse
import array
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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
from ingest_chargers import (
    CHARGERS,
    RESPONSE_TIMEOUT_S,
    SAMPLED_VALUES_PER_MESSAGE,
    BenchCharger,
    ClientStats,
)

GO_TIMEOUT_S = 600.0


# --- client process ------------------------------------------------------------------------------


async def client_main(args) -> None:
    stats = ClientStats()
    kind = CHARGERS[args.protocol]
    chargers = [kind(args.url, identity(n), stats) for n in range(args.first, args.first + args.count)]
    slots = asyncio.Semaphore(args.connect_concurrency)
    loop = asyncio.get_running_loop()

    async def open_one(charger: BenchCharger) -> bool:
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
    print(f"READY {stats.connected} {stats.failed}", flush=True)

    line = await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), timeout=GO_TIMEOUT_S)
    if line.strip() != "GO":
        raise SystemExit("no GO from the parent")
    started = time.perf_counter()
    until = started + args.seconds
    async with asyncio.timeout(args.seconds + RESPONSE_TIMEOUT_S + 5):
        await asyncio.gather(*(c.closed_loop(until) for c in ready))
    elapsed = time.perf_counter() - started

    with open(args.latency_file, "wb") as out:
        stats.latencies.tofile(out)
    print(
        "RESULT "
        + json.dumps(
            {
                "connected": stats.connected,
                "failed": stats.failed,
                "failures": stats.failures,
                "messages": stats.messages,
                "elapsed_s": elapsed,
                "errors": stats.errors,
                "error_samples": stats.error_samples,
            }
        ),
        flush=True,
    )
    async with asyncio.timeout(60):
        await asyncio.gather(*(c.close() for c in ready), return_exceptions=True)


def run_client(args) -> None:
    raise_fd_limit()
    try:
        import uvloop  # optional: a faster client loop when installed

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(client_main(args))


# --- parent: database, server, clients, figures --------------------------------------------------


def meter_rows(since: dt.datetime) -> int:
    from django.db import connections

    from sessions.models import MeterValue

    rows = MeterValue.objects.filter(
        station__identity__startswith=IDENTITY_PREFIX, received_at__gte=since
    ).count()
    connections.close_all()
    return rows


@dataclass
class RunFigures:
    chargers: int
    connected: int
    messages: int
    seconds: float
    rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_s: float
    cpu_us_per_msg: float
    rss_idle_mib: float
    rss_connected_mib: float
    rss_end_mib: float
    rss_peak_mib: float
    kib_per_connection: float
    rows: int
    errors: int


def run_one(args, count: int, workdir: Path) -> RunFigures:
    port = args.port or free_port()
    cpus = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cpus) >= 2
    server_cpus, client_cpus = ({cpus[0]}, set(cpus[1:])) if pin else (set(cpus), set(cpus))
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "DJANGO_SETTINGS_MODULE": "cpms.settings",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "PYTHONUNBUFFERED": "1",
        # A closed loop sends as fast as it is answered: no per-connection rate limit while measuring.
        "OCPP_MESSAGES_PER_S": "0",
    }
    if args.message_log:
        env["OCPP_MESSAGE_LOG"] = args.message_log
    log_path = workdir / f"server-{count}.log"
    command = server_command(args.server_cmd, port)
    print(f"\n== {count} OCPP {args.protocol} chargers, {args.seconds:g} s: {' '.join(command)}", flush=True)
    print(
        f"   server CPUs {sorted(server_cpus)}, client CPUs {sorted(client_cpus)}, log {log_path}", flush=True
    )
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            command,
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Before exec, so every thread the server starts inherits it.
            preexec_fn=lambda: os.sched_setaffinity(0, server_cpus),
        )
    clients: list[subprocess.Popen] = []
    try:
        wait_listening(server, port, log_path)
        time.sleep(1.0)  # let the server finish importing before taking its idle RSS
        rss_idle = memory_kib(server.pid)["VmRSS"]

        procs = args.client_procs or (1 if count <= 500 else 2)
        per_proc = -(-count // procs)
        readers = []
        ranges = [(first, min(per_proc, count - first + 1)) for first in range(1, count + 1, per_proc)]
        for index, (first, n) in enumerate(ranges):
            client_log = (workdir / f"client-{count}-{index}.log").open("wb")
            client = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--client",
                    "--url",
                    f"ws://{HOST}:{port}/ocpp",
                    "--first",
                    str(first),
                    "--count",
                    str(n),
                    "--seconds",
                    str(args.seconds),
                    "--latency-file",
                    str(workdir / f"latency-{count}-{index}.bin"),
                    "--connect-timeout",
                    str(args.connect_timeout),
                    "--protocol",
                    args.protocol,
                ],
                cwd=BASE_DIR,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=client_log,
                text=True,
                start_new_session=True,
                preexec_fn=lambda: os.sched_setaffinity(0, client_cpus),
            )
            client_log.close()
            clients.append(client)
            readers.append(LineReader(client))

        connected = failed = 0
        for reader in readers:
            ok, bad = reader.expect("READY", args.connect_timeout + 30).split()
            connected += int(ok)
            failed += int(bad)
        print(f"   connected {connected}, failed {failed}", flush=True)
        rss_connected = memory_kib(server.pid)["VmRSS"]

        window_start = dt.datetime.now(dt.UTC)
        cpu_before = cpu_seconds(server.pid)
        for client in clients:
            client.stdin.write("GO\n")
            client.stdin.flush()
        results = [
            json.loads(reader.expect("RESULT", args.seconds + RESPONSE_TIMEOUT_S + 30)) for reader in readers
        ]
        cpu_used = cpu_seconds(server.pid) - cpu_before
        memory = memory_kib(server.pid)

        latencies = array.array("d")
        for index in range(len(clients)):
            with open(workdir / f"latency-{count}-{index}.bin", "rb") as data:
                latencies.frombytes(data.read())
        ordered = sorted(latencies)
        messages = sum(r["messages"] for r in results)
        seconds = max(r["elapsed_s"] for r in results)
        errors = sum(r["errors"] for r in results)
        for result in results:
            for text in result["failures"][:3] + result["error_samples"][:3]:
                print(f"   ! {text}", flush=True)
        for client in clients:
            client.wait(timeout=90)
        rows = meter_rows(window_start)
        return RunFigures(
            chargers=count,
            connected=connected,
            messages=messages,
            seconds=seconds,
            rate=messages / seconds if seconds else 0.0,
            p50_ms=percentile(ordered, 0.50) * 1000,
            p95_ms=percentile(ordered, 0.95) * 1000,
            p99_ms=percentile(ordered, 0.99) * 1000,
            cpu_s=cpu_used,
            cpu_us_per_msg=cpu_used / messages * 1e6 if messages else float("nan"),
            rss_idle_mib=rss_idle / 1024,
            rss_connected_mib=rss_connected / 1024,
            rss_end_mib=memory["VmRSS"] / 1024,
            rss_peak_mib=memory["VmHWM"] / 1024,
            kib_per_connection=(rss_connected - rss_idle) / connected if connected else float("nan"),
            rows=rows,
            errors=errors,
        )
    finally:
        for client in clients:
            stop_process(client, group=True)
        stop_process(server, group=True)


def print_figures(figures: RunFigures) -> None:
    expected = figures.messages * SAMPLED_VALUES_PER_MESSAGE
    rows = f"{figures.rows} (sent: {expected})"
    print(
        f"   chargers            {figures.chargers} ({figures.connected} connected)\n"
        f"   messages            {figures.messages} in {figures.seconds:.1f} s\n"
        f"   messages/s          {figures.rate:.0f}\n"
        f"   latency p50/p95/p99 {figures.p50_ms:.1f} / {figures.p95_ms:.1f} / {figures.p99_ms:.1f} ms\n"
        f"   server CPU          {figures.cpu_s:.2f} s ({figures.cpu_us_per_msg:.0f} us/msg)\n"
        f"   server RSS          idle {figures.rss_idle_mib:.0f} MiB, connected {figures.rss_connected_mib:.0f} MiB "
        f"({figures.kib_per_connection:.0f} KiB/connection), end {figures.rss_end_mib:.0f} MiB, "
        f"peak {figures.rss_peak_mib:.0f} MiB\n"
        f"   meter rows stored   {rows}\n"
        f"   client errors       {figures.errors}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--protocol",
        choices=sorted(CHARGERS),
        default="1.6",
        help="1.6: MeterValues in the loop; 2.0.1: TransactionEvent Updated; 1.6-status: StatusNotification "
        "(with a fault opened and resolved every sixth message)",
    )
    parser.add_argument(
        "--server-cmd",
        default="daphne",
        help="daphne (python -m cpms.server), uvicorn (python -m cpms.server --server uvicorn), uvicorn-cli "
        "(uvicorn's own CLI, for comparison), or a command with {port}, {host}, {python}",
    )
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--client-procs", type=int, default=0, help="default: 1 up to 500 chargers, else 2")
    parser.add_argument("--connect-timeout", type=float, default=180.0)
    parser.add_argument("--message-log", choices=["all", "none"], default=None, help="OCPP_MESSAGE_LOG")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the server to one CPU")
    parser.add_argument("--allow-any-database", action="store_true")
    # Client process mode (started by the parent).
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--latency-file", help=argparse.SUPPRESS)
    parser.add_argument("--connect-concurrency", type=int, default=50, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.client:
        run_client(args)
        return

    url = urlsplit(args.database_url)
    if url.scheme not in {"postgres", "postgresql"}:
        raise SystemExit("The ingest benchmark runs on PostgreSQL (DATABASE_URL=postgres://...).")
    if url.hostname not in {"127.0.0.1", "localhost", "::1"}:
        raise SystemExit("The benchmark only uses 127.0.0.1.")
    if "bench" not in url.path and not args.allow_any_database:
        raise SystemExit(
            f"Refusing to write benchmark stations into {url.path.lstrip('/')!r}: use a database whose name "
            "contains 'bench', or pass --allow-any-database."
        )
    fd_limit = raise_fd_limit()
    if max(args.chargers) + 100 > fd_limit:
        print(f"warning: file descriptor limit {fd_limit} is below the charger count", flush=True)
    ensure_database(args.database_url)
    django_setup(args.database_url)
    print(f"Setting up {max(args.chargers)} stations in {url.path.lstrip('/')} ...", flush=True)
    setup_database(args.database_url, max(args.chargers))

    all_figures = []
    with tempfile.TemporaryDirectory(prefix="ocpp-ingest-") as tmp:
        workdir = Path(tmp)
        for count in args.chargers:
            figures = run_one(args, count, workdir)
            print_figures(figures)
            all_figures.append(figures)

    print(
        f"\nSummary ({args.server_cmd}, OCPP {args.protocol}, {args.seconds:g} s closed-loop "
        f"{CHARGERS[args.protocol].loop_action}, {SAMPLED_VALUES_PER_MESSAGE} sampled values each)"
    )
    print(
        f"{'chargers':>8} {'msg/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'CPU us/msg':>10} {'RSS MiB':>8}"
    )
    for f in all_figures:
        print(
            f"{f.chargers:>8} {f.rate:>8.0f} {f.p50_ms:>8.1f} {f.p95_ms:>8.1f} {f.p99_ms:>8.1f} "
            f"{f.cpu_us_per_msg:>10.0f} {f.rss_end_mib:>8.0f}"
        )


if __name__ == "__main__":
    main()
