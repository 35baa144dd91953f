"""Private PostgreSQL and Redis servers for fault drills: started, stopped and restarted by the test.

The shared PostgreSQL (5432) and Redis (6379) serve every other test on the machine and are never touched:
each drill gets a PostgreSQL 15 cluster of its own (initdb in a temporary directory, trust auth on
127.0.0.1, fsync off) and a redis-server of its own, each on a free port, torn down at the end.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

PG_BIN = Path(os.environ.get("CPMS_DRILL_PG_BIN", "/usr/lib/postgresql/15/bin"))
REDIS_SERVER = os.environ.get("CPMS_DRILL_REDIS_SERVER", "redis-server")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _as_postgres(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: drop to the postgres user when we are root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


class PrivatePostgres:
    """A throwaway PostgreSQL 15 cluster on 127.0.0.1:<free port>, superuser `postgres`, trust auth."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise FileNotFoundError(f"no PostgreSQL binaries in {PG_BIN} (set CPMS_DRILL_PG_BIN)")
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cpms-drill-pg-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        if os.geteuid() == 0:
            shutil.chown(self.root, user="postgres", group="postgres")
        self._run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ]
        )

    def _run(self, command: list[str], *, timeout: float = START_TIMEOUT_S) -> None:
        done = subprocess.run(
            _as_postgres(command), capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-o",
                options,
                "-w",
                "-t",
                str(int(START_TIMEOUT_S)),
                "start",
            ]
        )

    def stop(self, *, mode: str = "fast") -> None:
        """`fast` is what a restart by an operator or a package upgrade does: every session is terminated."""
        self._run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                mode,
                "-w",
                "-t",
                str(int(STOP_TIMEOUT_S)),
                "stop",
            ],
            timeout=STOP_TIMEOUT_S + 5,
        )

    def restart(self, *, down_s: float = 0.0) -> None:
        self.stop()
        if down_s:
            time.sleep(down_s)
        self.start()

    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists() and _listening(self.port)

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no postgres log)"

    def destroy(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.stop(mode="immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A throwaway redis-server on 127.0.0.1:<free port>, no persistence; stop() is a crash (SIGKILL)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cpms-drill-redis-"))
        self.log_path = self.root / "redis.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(self.root), "--logfile", str(self.log_path)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on {self.port}:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_S)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None and _listening(self.port)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no redis log)"

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def missing_binaries() -> str:
    """Why the drills on private servers cannot run here ("" when they can): for a pytest.skip."""
    if not (PG_BIN / "initdb").exists():
        return f"no PostgreSQL binaries in {PG_BIN} (set CPMS_DRILL_PG_BIN)"
    if shutil.which(REDIS_SERVER) is None:
        return f"no {REDIS_SERVER} on PATH (set CPMS_DRILL_REDIS_SERVER)"
    return ""


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


def _run_django(args: list[str], *, database_url: str, var_dir: Path, timeout_s: float, what: str) -> str:
    """`python ARGS` with Django's settings on `database_url` (no Redis) in a process of its own; its output."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cpms.settings",
        "DATABASE_URL": database_url,
        "CPMS_VAR_DIR": str(var_dir),
    }
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, *args],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def migrate(database_url: str, *, var_dir: Path) -> None:
    """`manage.py migrate` on `database_url` in a process of its own (the test process keeps its database)."""
    _run_django(
        ["manage.py", "migrate", "--noinput", "-v", "0"],
        database_url=database_url,
        var_dir=var_dir,
        timeout_s=300,
        what="migrate",
    )


def django_run(database_url: str, code: str, *, var_dir: Path) -> str:
    """Run `code` with Django set up on `database_url` in a process of its own; returns what it printed.
    Seeds and reads a private database that the test process (on its own test database) cannot reach."""
    script = "import django\ndjango.setup()\n" + code
    return _run_django(
        ["-c", script], database_url=database_url, var_dir=var_dir, timeout_s=120, what="django_run"
    )


@contextlib.contextmanager
def csms_server(
    *, database_url: str, redis_url: str | None, var_dir: Path, log_path: Path, env: dict | None = None
) -> Iterator["LiveCsms"]:  # noqa: F821 - tests.e2e.conftest.LiveCsms
    """`python -m cpms.server` on a free port, on the given database and Redis (None: in-memory layer)."""
    from tests.e2e.conftest import server_process

    process_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cpms.settings",
        "DATABASE_URL": database_url,
        "CPMS_VAR_DIR": str(var_dir),
        "PYTHONUNBUFFERED": "1",
        "OCPP_COMMAND_POLL_S": "0.2",
        **(env or {}),
    }
    if redis_url:
        process_env["REDIS_URL"] = redis_url
    else:
        process_env.pop("REDIS_URL", None)
    with server_process(process_env, log_path) as server:
        yield server
