"""What the benchmarks that run a real server share: the bench database and its stations, the server
process (started, pinned, waited for, measured, stopped), free ports, percentiles. Not a test, no figures."""

import os
import queue
import resource
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent


DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cpms_bench"


IDENTITY_PREFIX = "BENCH-"


PASSWORD = "bench-password-1"


ID_TAG = "BENCH-TAG"


HOST = "127.0.0.1"


SERVER_START_TIMEOUT_S = 60.0


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
    from stations.models import ChargingStation, Connector, Evse, OcppMessage, Site, StatusChange
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
        # EVSE 1 with connector 1, as every charger here reports them: a real network's stations have them
        # already, so a first run on a fresh database measures the same as the next ones.
        Evse.objects.bulk_create(
            [
                Evse(station_id=pk, evse_id=1)
                for pk in stations.filter(evses__isnull=True).values_list("pk", flat=True)
            ],
            ignore_conflicts=True,
            batch_size=5000,
        )
        Connector.objects.bulk_create(
            [
                Connector(evse_id=pk, connector_id=1)
                for pk in Evse.objects.filter(
                    station__in=stations, evse_id=1, connectors__isnull=True
                ).values_list("pk", flat=True)
            ],
            ignore_conflicts=True,
            batch_size=5000,
        )
        # No relation points at these append-only tables: each delete is one DELETE statement.
        for model in (MeterValue, OcppMessage, StatusChange):
            model.objects.filter(station__in=stations).delete()
    connections.close_all()


def server_command(spec: str, port: int) -> list[str]:
    if spec == "daphne":
        return [sys.executable, "-m", "cpms.server", "--bind", HOST, "--port", str(port)]
    if spec == "uvicorn":
        # Through cpms.server, as in production: the compat bounds, no compression (docs/deployment.md#server-choice).
        return [
            sys.executable,
            "-m",
            "cpms.server",
            "--server",
            "uvicorn",
            "--bind",
            HOST,
            "--port",
            str(port),
        ]
    if spec == "uvicorn-cli":
        # uvicorn's own CLI, none of the compat bounds: for comparison only.
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


def memory_kib(pid: int | str = "self") -> dict[str, int]:
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


def ensure_database(database_url: str) -> None:
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
