"""`make run`: the ASGI server, a Celery worker and the beat scheduler as one foreground program, supervised.

A child that exits on its own (a crash, a kill) is restarted after a pause, with a line on stderr naming it,
its exit code and its restart count. The pause doubles while the child keeps dying quickly (1 s, 2 s, 4 s, ...
up to `CPMS_RESTART_MAX_DELAY_S`), and starts again at 1 s once a child has run `STABLE_AFTER_S`. When a child
dies quickly more than `CPMS_RESTART_LIMIT` times in a row, the launcher gives up: it stops the others and
exits 1, its only non-zero exit.

Ctrl-C (or SIGTERM) stops all three (SIGTERM to each; SIGKILL to each one's process group after it exited or
after `STOP_TIMEOUT_S`; a second Ctrl-C kills at once) and exits 0. Each child runs in its own process group, so
that a dead child's own children (the worker's pool processes) are killed with it, and a Ctrl-C in the terminal
reaches the children only through the launcher: one orderly stop.
"""

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from cpms.env import env_float, env_int

PR_SET_PDEATHSIG = 1
try:
    _LIBC = ctypes.CDLL("libc.so.6", use_errno=True) if sys.platform.startswith("linux") else None
except OSError:
    _LIBC = None

STABLE_AFTER_S = 60.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.5


def log(message: str) -> None:
    print(f"launcher: {message}", file=sys.stderr, flush=True)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"{returncode} ({signal.Signals(-returncode).name})"
    return str(returncode)


@dataclass
class Child:
    name: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    # Exits the launcher did not ask for; quick_deaths counts those in a row that came soon after a start.
    crashes: int = 0
    quick_deaths: int = 0
    restart_at: float | None = None
    exit_codes: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            self.command, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent
        )
        self.started_at = time.monotonic()
        self.restart_at = None

    @property
    def started(self) -> subprocess.Popen[bytes]:
        """The process of the last start(): the supervisor only looks at children it started."""
        if self.process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.process

    def signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)


def _die_with_parent() -> None:
    """Linux, in the child before exec: SIGTERM when the launcher dies, even by SIGKILL (in a process group of
    its own, the child would otherwise live on)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def commands(python: str, bind: str, port: str) -> dict[str, list[str]]:
    return {
        "web": [python, "-m", "cpms.server", "--bind", bind, "--port", port],
        "worker": [
            python,
            "-m",
            "celery",
            "-A",
            "cpms",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "2",
        ],
        "beat": [python, "-m", "celery", "-A", "cpms", "beat", "--loglevel", "INFO"],
    }


class Supervisor:
    def __init__(self, children: list[Child], *, restart_limit: int, max_delay_s: float):
        self.children = children
        self.restart_limit = restart_limit
        self.max_delay_s = max_delay_s
        self.stop_requests = 0

    def request_stop(self, *_args) -> None:
        self.stop_requests += 1
        if self.stop_requests > 1:
            log("second stop request: killing the children now")
            for child in self.children:
                child.signal_group(signal.SIGKILL)

    def check(self, now: float) -> str | None:
        """Restart what is due, notice what died; the name of a child given up on, if any."""
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    child.start()
                    log(f"{child.name} restarted (pid {child.started.pid}), restart {child.restarts}")
                continue
            returncode = child.started.poll()
            if returncode is None:
                continue
            # Whatever it left behind in its process group (the worker's pool processes) goes with it.
            child.signal_group(signal.SIGKILL)
            child.crashes += 1
            child.exit_codes.append(returncode)
            ran_s = now - child.started_at
            child.quick_deaths = 0 if ran_s >= STABLE_AFTER_S else child.quick_deaths + 1
            if child.quick_deaths > self.restart_limit:
                log(
                    f"{child.name} exited with {describe_exit(returncode)} after {ran_s:.1f} s, its "
                    f"{child.quick_deaths}th quick exit in a row; giving up"
                )
                return child.name
            delay = min(self.max_delay_s, 2.0 ** max(0, child.quick_deaths - 1))
            log(
                f"{child.name} (pid {child.started.pid}) exited with {describe_exit(returncode)} after "
                f"{ran_s:.1f} s; restart {child.restarts + 1} in {delay:.0f} s"
            )
            child.restart_at = now + delay
        return None

    def stop_all(self) -> None:
        running = [c for c in self.children if c.process is not None and c.process.poll() is None]
        for child in running:
            # The main process only: the worker stops its own pool (a SIGTERM to the whole group would kill
            # the pool processes under it, which it reports as errors and replaces).
            child.started.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in running:
            try:
                child.started.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{child.name} did not stop within {STOP_TIMEOUT_S:.0f} s; killing it")
                child.signal_group(signal.SIGKILL)
                child.started.wait()
        for child in self.children:
            child.signal_group(signal.SIGKILL)  # stragglers of each group


def main() -> int:
    python = sys.executable
    port = os.environ.get("CPMS_PORT", "8000")
    bind = os.environ.get("CPMS_BIND", "127.0.0.1")
    supervisor = Supervisor(
        [Child(name, command) for name, command in commands(python, bind, port).items()],
        restart_limit=env_int("CPMS_RESTART_LIMIT", 8),
        max_delay_s=env_float("CPMS_RESTART_MAX_DELAY_S", 30.0),
    )
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    for child in supervisor.children:
        child.start()
    # Beat runs interval jobs only after their first interval: compute today's KPIs now, so that the portal's
    # KPI page has numbers from the start (the job is idempotent).
    subprocess.run(  # noqa: S603
        [python, "-m", "celery", "-A", "cpms", "call", "billing.tasks.kpis_compute_recent"],
        check=False,
        stdout=subprocess.DEVNULL,
    )
    print(
        f"CPMS running: http://{bind}:{port}/  (OCPP: ws://{bind}:{port}/ocpp/<identity>). Ctrl-C stops.",
        flush=True,
    )
    gave_up = None
    while not supervisor.stop_requests and gave_up is None:
        gave_up = supervisor.check(time.monotonic())
        time.sleep(POLL_S)
    log("stopping web, worker and beat")
    supervisor.stop_all()
    summary = ", ".join(f"{c.name} {c.restarts}" for c in supervisor.children)
    log(f"stopped (restarts: {summary})")
    return 1 if gave_up else 0


if __name__ == "__main__":
    sys.exit(main())
