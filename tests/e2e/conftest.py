"""A real CSMS server process (`python -m cpms.server`) on the test database, for end-to-end tests.

The server is another process, so it sees only committed data: tests using it take `transactional_db`.
Its output goes to a log file whose tail is printed when a test fails (pytest shows it under
"Captured stdout teardown").
"""

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

# The shared assertions of the e2e tests explain their failures like the tests' own.
pytest.register_assert_rewrite("tests.e2e.helpers")

SERVER_START_TIMEOUT_S = 30.0
SERVER_STOP_TIMEOUT_S = 10.0


def pytest_configure(config):
    # Registered here too so that `--strict-markers` accepts it when xdist is disabled (-p no:xdist).
    config.addinivalue_line("markers", "xdist_group(name): run in the same xdist worker as its group")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@dataclass(frozen=True)
class LiveCsms:
    host: str
    port: int
    log_path: Path
    process: subprocess.Popen

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ocpp"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])


def database_url(settings_dict: dict) -> str:
    """DATABASE_URL for another process to open the database this test process uses."""
    engine = settings_dict["ENGINE"]
    name = str(settings_dict["NAME"])
    if engine.endswith("sqlite3"):
        if name in {"", ":memory:"} or name.startswith("file:memorydb"):
            pytest.skip("an in-memory SQLite test database cannot be shared with a server process")
        return f"sqlite:///{name}"
    if engine.endswith("postgresql"):
        user = quote(settings_dict.get("USER") or "", safe="")
        password = settings_dict.get("PASSWORD") or ""
        credentials = f"{user}:{quote(password, safe='')}" if password else user
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or 5432
        return f"postgres://{credentials}@{host}:{port}/{quote(name, safe='')}"
    raise NotImplementedError(f"no DATABASE_URL for engine {engine}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_listening(process: subprocess.Popen, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode} before listening:\n{log_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(
        f"server not listening on port {port} after {SERVER_START_TIMEOUT_S} s:\n{log_path.read_text()}"
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    # Its own process group (start_new_session): a signal reaches the server and nothing else.
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=SERVER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=SERVER_STOP_TIMEOUT_S)


def celery_queue(request) -> str:
    return "e2e-" + hashlib.sha256(f"{os.getpid()}:{request.node.nodeid}".encode()).hexdigest()[:16]


def _process_env(request) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cpms.settings",
        "DATABASE_URL": database_url(connection.settings_dict),
        "CPMS_VAR_DIR": str(settings.VAR_DIR),
        "PYTHONUNBUFFERED": "1",
        # Without Redis, commands between two server processes go by the database: look often.
        "OCPP_COMMAND_POLL_S": "0.1",
        # This test's own Celery queue: a task it queues never reaches another test's worker.
        "CELERY_QUEUE": celery_queue(request),
    }
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    else:
        env.pop("REDIS_URL", None)
    return env


@contextlib.contextmanager
def server_process(env: dict[str, str], log_path: Path) -> Iterator[LiveCsms]:
    """`python -m cpms.server` on a free loopback port with `env`, listening when yielded; stopped on exit."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cpms.server", "--bind", "127.0.0.1", "--port", str(port)],
            cwd=settings.BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_listening(process, port, log_path)
        yield LiveCsms(host="127.0.0.1", port=port, log_path=log_path, process=process)
    finally:
        _stop(process)


@contextlib.contextmanager
def _serving(request, log_path: Path) -> Iterator[LiveCsms]:
    """A server process on this test's database; its log's tail printed when the test failed."""
    try:
        with server_process(_process_env(request), log_path) as server:
            yield server
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            print(f"--- server log ({log_path}), last lines ---\n{server.log_tail()}")


@pytest.fixture
def cpms_server(request, transactional_db, tmp_path) -> Iterator[LiveCsms]:
    """A real server process on this test's database."""
    with _serving(request, tmp_path / "server.log") as server:
        yield server


@pytest.fixture
def cpms_server_b(request, cpms_server, tmp_path) -> Iterator[LiveCsms]:
    """A second server process on the same database (and Redis, when REDIS_URL is set): the platform
    scaled out to two processes."""
    with _serving(request, tmp_path / "server-b.log") as server:
        yield server


@dataclass
class LiveWorker:
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no worker log)"


@pytest.fixture
def celery_worker_process(request, transactional_db, tmp_path) -> Iterator[LiveWorker]:
    """A real Celery worker (solo pool) on this test's database, broker and own queue."""
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "cpms", "worker", "--pool", "solo", "--loglevel", "INFO"],
            cwd=settings.BASE_DIR,
            env=_process_env(request),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = LiveWorker(process=process, log_path=log_path)
    try:
        yield worker
    finally:
        _stop(process)
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            print(f"--- worker log ({log_path}), last lines ---\n{worker.log_tail()}")
