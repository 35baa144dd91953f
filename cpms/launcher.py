"""`make run`: the ASGI server, a Celery worker and the beat scheduler as one foreground program.

Ctrl-C (or SIGTERM) stops all three; if one dies, the others are stopped too.
"""

import os
import signal
import subprocess
import sys
import time


def main() -> int:
    python = sys.executable
    port = os.environ.get("CPMS_PORT", "8000")
    bind = os.environ.get("CPMS_BIND", "127.0.0.1")
    commands = {
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
    procs = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}  # noqa: S603
    # Beat runs interval jobs only after their first interval: compute today's KPIs now, so that the portal's
    # KPI page has numbers from the start (the job is idempotent).
    subprocess.run(  # noqa: S603
        [python, "-m", "celery", "-A", "cpms", "call", "billing.tasks.kpis_compute_recent"],
        check=False,
        stdout=subprocess.DEVNULL,
    )
    print(f"CPMS running: http://{bind}:{port}/  (OCPP: ws://{bind}:{port}/ocpp/<identity>). Ctrl-C stops.")

    stopping = False

    def stop(*_args):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for name, proc in procs.items():
            if proc.poll() is not None:
                print(f"{name} exited with {proc.returncode}; stopping the others.", file=sys.stderr)
                exit_code = proc.returncode or 1
                stopping = True
                break
        time.sleep(0.5)
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
