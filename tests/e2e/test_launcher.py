"""`make run`'s launcher supervises its children (docs/reliability.md case 47, issue 15 item 4): a child that
dies is restarted with backoff, the others keep running, and SIGTERM still stops everything cleanly. The real
`python -m cpms.launcher` in embedded mode (the filesystem broker) on the test database."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.e2e.conftest import database_url, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

START_TIMEOUT_S = 60.0


def _children(parent_pid: int) -> dict[str, int]:
    """The launcher's live children by role, from /proc (Linux)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid != parent_pid or stat.rsplit(")", 1)[1].split()[0] == "Z":
            continue
        args = [a.decode() for a in cmdline]
        role = (
            "web"
            if "cpms.server" in args
            else "worker"
            if "worker" in args
            else "beat"
            if "beat" in args
            else None
        )
        if role:
            found[role] = int(entry.name)
    return found


def _wait_for(predicate, what: str, log_path: Path, timeout_s: float = START_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(
        f"{what} not seen within {timeout_s} s; launcher log:\n{log_path.read_text(errors='replace')}"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


@contextlib.contextmanager
def _launcher(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Path, dict[str, str]]]:
    """`python -m cpms.launcher` in embedded mode on the test database; killed on exit if still running."""
    log_path = tmp_path / "launcher.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "CPMS_VAR_DIR": str(tmp_path / "var"),
        "CPMS_PORT": str(free_port()),
        "CELERY_QUEUE": f"launcher-{os.getpid()}",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)  # embedded mode, as `make run`
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cpms.launcher"],
            cwd=settings.BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process, log_path, env
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_rel_47_launcher_restarts_a_killed_worker_and_stops_cleanly_on_sigterm(transactional_db, tmp_path):
    with _launcher(tmp_path) as (process, log_path, _env):
        first = _wait_for(lambda: (c := _children(process.pid)) and len(c) == 3 and c, "3 children", log_path)
        _wait_for(lambda: b"CPMS running" in log_path.read_bytes(), "the start line", log_path)

        os.kill(first["worker"], signal.SIGKILL)

        restarted = _wait_for(
            lambda: b"worker restarted" in log_path.read_bytes() and _children(process.pid).get("worker"),
            "the worker's restart",
            log_path,
        )
        assert process.poll() is None
        assert restarted != first["worker"]
        assert {k: v for k, v in _children(process.pid).items() if k != "worker"} == {
            "web": first["web"],
            "beat": first["beat"],
        }
        text = log_path.read_text(errors="replace")
        assert re.search(
            rf"launcher: worker \(pid {first['worker']}\) exited with -9 \(SIGKILL\) after [0-9.]+ s; "
            r"restart 1 in 1 s",
            text,
        ), text
        assert f"launcher: worker restarted (pid {restarted}), restart 1" in text

        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=30) == 0

    text = log_path.read_text(errors="replace")
    assert "launcher: stopped (restarts: web 0, worker 1, beat 0)" in text
    assert [pid for pid in [first["web"], first["beat"], restarted] if _pid_alive(pid)] == []


def test_rel_47_worker_quarantines_an_undecodable_message_and_keeps_consuming(transactional_db, tmp_path):
    with _launcher(tmp_path) as (process, log_path, env):
        first = _wait_for(lambda: (c := _children(process.pid)) and len(c) == 3 and c, "3 children", log_path)
        _wait_for(lambda: re.search(rb"celery@\S+ ready", log_path.read_bytes()), "the worker", log_path)
        # What kombu's own transport leaves when a reader is faster than its writer: a *.msg name, half a
        # message. The oldest name of the worker's queue, so it is read first.
        broker = tmp_path / "var" / "celery-broker"
        bad_name = f"{0:020d}_half.{env['CELERY_QUEUE']}.msg"
        (broker / bad_name).write_bytes(b'{"body": "eyJ')

        subprocess.run(
            [sys.executable, "-m", "celery", "-A", "cpms", "call", "stations.tasks.commands_expire"],
            cwd=settings.BASE_DIR,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )

        _wait_for(
            lambda: re.search(
                rb"Task stations.tasks.commands_expire\[\S+\] succeeded", log_path.read_bytes()
            ),
            "the task after the bad file",
            log_path,
        )
        assert _children(process.pid) == first
        assert os.listdir(broker / "bad") == [bad_name]
        text = log_path.read_text(errors="replace")
        assert f"broker: message file {bad_name} cannot be decoded (JSONDecodeError: " in text
        assert "exited with" not in text

        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=30) == 0
