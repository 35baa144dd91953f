"""OCPP ingest benchmark: N chargers in a closed meter-value loop against a real server process.

    python bench/ocpp_ingest.py [--chargers 100 1000] [--seconds 20] [--protocol 1.6|2.0.1]
                                [--server-cmd daphne|uvicorn|'<cmd>']

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
import base64
import datetime as dt
import itertools
import json
import os
import queue
import resource
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cpms_bench"
IDENTITY_PREFIX = "BENCH-"
PASSWORD = "bench-password-1"
ID_TAG = "BENCH-TAG"
HOST = "127.0.0.1"
RESPONSE_TIMEOUT_S = 30.0
SERVER_START_TIMEOUT_S = 60.0
GO_TIMEOUT_S = 600.0
SAMPLED_VALUES_PER_MESSAGE = 5


def identity(n: int) -> str:
    return f"{IDENTITY_PREFIX}{n:05d}"


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
        return hard
    return soft


# --- client process ------------------------------------------------------------------------------


def _now_text() -> str:
    moment = dt.datetime.now(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class ClientStats:
    connected: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    messages: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies: array.array = field(default_factory=lambda: array.array("d"))

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(text)


class BenchCharger:
    """One charger speaking just enough OCPP 1.6J, with frames built by hand (orjson)."""

    subprotocol = "ocpp1.6"
    loop_action = "MeterValues"

    def __init__(self, url: str, ident: str, stats: ClientStats):
        self.url = f"{url}/{ident}"
        self.identity = ident
        self.stats = stats
        self.ws = None
        self.ids = itertools.count(1)
        self.transaction_id: int | str | None = None
        self.register_wh = 1_000_000

    async def call(self, action: str, payload: dict):
        import orjson

        unique_id = str(next(self.ids))
        await self.ws.send(orjson.dumps([2, unique_id, action, payload]).decode())
        async with asyncio.timeout(RESPONSE_TIMEOUT_S):
            while True:
                frame = orjson.loads(await self.ws.recv())
                if frame[0] == 2:  # a CSMS call: not simulated here
                    await self.ws.send(
                        orjson.dumps([4, frame[1], "NotImplemented", "bench client", {}]).decode()
                    )
                    continue
                if frame[1] != unique_id:
                    continue
                if frame[0] == 4:
                    raise RuntimeError(f"{action}: CALLERROR {frame[2]} {frame[3]}")
                return frame[2]

    async def open(self, slots: asyncio.Semaphore) -> None:
        from websockets.asyncio.client import connect

        auth = base64.b64encode(f"{self.identity}:{PASSWORD}".encode()).decode()
        last_error = None
        for attempt in range(3):
            try:
                async with slots:
                    self.ws = await connect(
                        self.url,
                        subprotocols=[self.subprotocol],
                        additional_headers={"Authorization": f"Basic {auth}"},
                        open_timeout=30,
                        compression=None,
                        proxy=None,
                        ping_interval=None,
                        max_queue=4,
                    )
                break
            except Exception as exc:  # refused, timed out, reset: retried, then reported
                last_error = exc
                await asyncio.sleep(0.5 * (attempt + 1))
        else:
            raise RuntimeError(f"connect: {type(last_error).__name__}: {last_error}")
        boot = await self.call("BootNotification", self.boot_payload())
        if boot.get("status") != "Accepted":
            raise RuntimeError(f"BootNotification {boot.get('status')}")
        await self.start_transaction()

    def boot_payload(self) -> dict:
        return {"chargePointVendor": "CPMS", "chargePointModel": "Bench"}

    async def start_transaction(self) -> None:
        await self.call(
            "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Preparing"}
        )
        start = await self.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": ID_TAG, "meterStart": self.register_wh, "timestamp": _now_text()},
        )
        self.transaction_id = start["transactionId"]
        await self.call(
            "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}
        )

    def readings(self) -> list[tuple[str, str | None, int | float, str]]:
        """(measurand, phase, value, unit): SAMPLED_VALUES_PER_MESSAGE of them."""
        return [
            ("Energy.Active.Import.Register", None, self.register_wh, "Wh"),
            ("Power.Active.Import", None, 11040, "W"),
            *(("Current.Import", phase, 16.0, "A") for phase in ("L1", "L2", "L3")),
        ]

    def sampled_value(
        self,
        measurand: str,
        phase: str | None,
        value: int | float,
        unit: str,
        context: str = "Sample.Periodic",
    ) -> dict:
        sampled = {**self.value_and_unit(value, unit), "context": context, "measurand": measurand}
        return {**sampled, "phase": phase} if phase else sampled

    def value_and_unit(self, value: int | float, unit: str) -> dict:
        return {"value": str(value), "unit": unit}

    def meter_value(self) -> dict:
        return {"timestamp": _now_text(), "sampledValue": [self.sampled_value(*r) for r in self.readings()]}

    def loop_payload(self) -> dict:
        self.register_wh += 10
        return {"connectorId": 1, "transactionId": self.transaction_id, "meterValue": [self.meter_value()]}

    async def closed_loop(self, until: float) -> None:
        stats = self.stats
        clock = time.perf_counter
        while clock() < until:
            payload = self.loop_payload()
            started = clock()
            try:
                await self.call(self.loop_action, payload)
            except Exception as exc:  # a CALLERROR, a timeout or a closed connection ends this charger
                stats.error(f"{self.identity}: {type(exc).__name__}: {exc}")
                return
            stats.latencies.append(clock() - started)
            stats.messages += 1

    async def stop_transaction(self) -> None:
        await self.call(
            "StopTransaction",
            {
                "transactionId": self.transaction_id,
                "meterStop": self.register_wh,
                "timestamp": _now_text(),
                "reason": "Local",
            },
        )

    async def close(self) -> None:
        if self.ws is None:
            return
        try:
            if self.transaction_id is not None:
                await self.stop_transaction()
        except Exception as exc:  # the figures are already taken; note it and close anyway
            self.stats.error(f"{self.identity}: stop: {exc}")
        finally:
            await self.ws.close()


class BenchChargerV201(BenchCharger):
    """The same charger in OCPP 2.0.1: one transaction of TransactionEvents (Started, Updated..., Ended)."""

    subprotocol = "ocpp2.0.1"
    loop_action = "TransactionEvent"

    def __init__(self, url: str, ident: str, stats: ClientStats):
        super().__init__(url, ident, stats)
        self.seq_no = 0

    def boot_payload(self) -> dict:
        return {"chargingStation": {"vendorName": "CPMS", "model": "Bench"}, "reason": "PowerUp"}

    def transaction_event(self, event_type: str, trigger_reason: str, **fields) -> dict:
        payload = {
            "eventType": event_type,
            "timestamp": _now_text(),
            "triggerReason": trigger_reason,
            "seqNo": self.seq_no,
            "transactionInfo": {"transactionId": self.transaction_id, **fields.pop("info", {})},
            **fields,
        }
        self.seq_no += 1
        return payload

    async def start_transaction(self) -> None:
        await self.call(
            "StatusNotification",
            {"timestamp": _now_text(), "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
        )
        # Unique across runs: the bench database keeps the sessions of earlier runs.
        self.transaction_id = uuid.uuid4().hex[:20]
        register = self.sampled_value(
            "Energy.Active.Import.Register", None, self.register_wh, "Wh", context="Transaction.Begin"
        )
        begin = {"timestamp": _now_text(), "sampledValue": [register]}
        await self.call(
            "TransactionEvent",
            self.transaction_event(
                "Started",
                "Authorized",
                evse={"id": 1, "connectorId": 1},
                idToken={"idToken": ID_TAG, "type": "ISO14443"},
                meterValue=[begin],
            ),
        )

    def value_and_unit(self, value: int | float, unit: str) -> dict:
        return {"value": value, "unitOfMeasure": {"unit": unit}}

    def loop_payload(self) -> dict:
        self.register_wh += 10
        return self.transaction_event(
            "Updated",
            "MeterValuePeriodic",
            info={"chargingState": "Charging"},
            meterValue=[self.meter_value()],
        )

    async def stop_transaction(self) -> None:
        await self.call(
            "TransactionEvent",
            self.transaction_event("Ended", "StopAuthorized", info={"stoppedReason": "Local"}),
        )


class BenchChargerStatus(BenchCharger):
    """OCPP 1.6 with StatusNotification in the loop (Charging <-> SuspendedEV, every few a Faulted and back): the
    status path, with its history row, the incident check and the portal's live-status publish."""

    loop_action = "StatusNotification"

    def __init__(self, url: str, ident: str, stats: ClientStats):
        super().__init__(url, ident, stats)
        self.statuses = itertools.cycle(
            ["SuspendedEV", "Charging", "SuspendedEV", "Charging", "Faulted", "Charging"]
        )

    def loop_payload(self) -> dict:
        status = next(self.statuses)
        error = "GroundFailure" if status == "Faulted" else "NoError"
        return {"connectorId": 1, "errorCode": error, "status": status, "timestamp": _now_text()}


CHARGERS = {"1.6": BenchCharger, "2.0.1": BenchChargerV201, "1.6-status": BenchChargerStatus}


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


def django_setup(database_url: str) -> None:
    """This process talks to the bench database through the ORM (setup and the final row count)."""
    import django

    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "cpms.settings"
    if str(BASE_DIR) not in sys.path:
        sys.path.insert(0, str(BASE_DIR))
    django.setup()


def setup_database(database_url: str, count: int) -> None:
    """Migrate, then make sure stations BENCH-00001..count exist with the bench password, plus an id token.
    Meter values, OCPP frames and status rows of earlier runs are deleted so that runs compare."""
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "cpms.settings"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env, check=True
    )
    from django.db import connections, transaction

    from accounts.models import Organisation
    from sessions.models import IdToken, MeterValue
    from stations.models import ChargingStation, OcppMessage, Site, StatusChange
    from stations.services.credentials import password_hash_make

    with transaction.atomic():
        organisation, _ = Organisation.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
        site, _ = Site.objects.get_or_create(organisation=organisation, name="Bench site")
        IdToken.objects.update_or_create(
            organisation=organisation, value=ID_TAG, defaults={"status": "Accepted"}
        )
        ChargingStation.objects.bulk_create(
            [
                ChargingStation(identity=identity(n), organisation=organisation, site=site)
                for n in range(1, count + 1)
            ],
            ignore_conflicts=True,
            batch_size=1000,
        )
        stations = ChargingStation.objects.filter(identity__startswith=IDENTITY_PREFIX)
        # One hash for all: the server checks each handshake against it exactly as with distinct ones.
        stations.update(
            password_hash=password_hash_make(PASSWORD),
            registration_status="Accepted",
            security_profile=1,
            organisation=organisation,
            site=site,
        )
        # No relation points at these append-only tables: each delete is one DELETE statement.
        for model in (MeterValue, OcppMessage, StatusChange):
            model.objects.filter(station__in=stations).delete()
    connections.close_all()


def meter_rows(since: dt.datetime) -> int:
    from django.db import connections

    from sessions.models import MeterValue

    rows = MeterValue.objects.filter(
        station__identity__startswith=IDENTITY_PREFIX, received_at__gte=since
    ).count()
    connections.close_all()
    return rows


def server_command(spec: str, port: int) -> list[str]:
    if spec == "daphne":
        return [sys.executable, "-m", "cpms.server", "--bind", HOST, "--port", str(port)]
    if spec == "uvicorn":
        try:
            import uvicorn  # noqa: F401
        except ImportError:
            raise SystemExit("uvicorn is not installed: pip install -e '.[fast]'") from None
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "cpms.asgi:application",
            "--host",
            HOST,
            "--port",
            str(port),
            "--ws",
            "websockets-sansio",
            "--loop",
            "auto",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    return shlex.split(spec.format(port=port, host=HOST, python=sys.executable))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_listening(process: subprocess.Popen, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(
        f"server not listening after {SERVER_START_TIMEOUT_S} s:\n{log_path.read_text()[-4000:]}"
    )


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (/proc/<pid>/stat fields 14 and 15), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in {"VmRSS", "VmHWM"}:
                values[key] = int(rest.split()[0])
    return values


def stop_process(process: subprocess.Popen, *, group: bool) -> None:
    if process.poll() is not None:
        return
    try:
        if group:
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.terminate()
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait(timeout=15)
    except ProcessLookupError:
        pass


class LineReader:
    """Lines from a child's stdout, readable with a timeout (a thread feeds a queue)."""

    def __init__(self, process: subprocess.Popen):
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {prefix} line within {timeout:.0f} s")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise EOFError(f"client exited before {prefix}")
            if line.startswith(prefix):
                return line[len(prefix) :].strip()


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


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
        help="daphne (python -m cpms.server), uvicorn, or a command with {port}, {host}, {python}",
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
    _ensure_database(args.database_url)
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


def _ensure_database(database_url: str) -> None:
    """Create the bench database when it does not exist (connects to the `postgres` maintenance DB)."""
    import psycopg
    from psycopg import sql

    url = urlsplit(database_url)
    name = url.path.lstrip("/")
    maintenance = url._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
