"""TEST HOOK for the worker-kill drills (tests/e2e/test_worker_kill.py, docs/reliability.md cases 36 and 47):
a worker that pauses at a named point of a billing or export job, so that a drill can SIGKILL the whole worker
while the job is provably half done.

Off unless the environment sets CPMS_DRILL_PAUSE (never in production); when off, each point costs the caller
one module-attribute check (`if drill_hook.ARMED:`).

    CPMS_DRILL_PAUSE=<point>:<seconds>[,<point>:<seconds>...]
        export   after each chunk an export job wrote to its temporary file (the file is half written)
        billing  inside the transaction that writes a CDR, after the insert and before the commit
"""

import logging
import os
import time

logger = logging.getLogger(__name__)

POINTS = ("export", "billing")


def parse(value: str) -> dict[str, float]:
    pauses = {}
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        point, seconds = part.split(":")
        if point not in POINTS:
            raise ValueError(f"CPMS_DRILL_PAUSE: unknown point {point!r} (one of {', '.join(POINTS)})")
        pauses[point] = float(seconds)
    return pauses


ARMED: dict[str, float] = parse(os.environ.get("CPMS_DRILL_PAUSE", ""))


def reached(point: str, detail: str = "") -> None:
    """Called at `point` when ARMED: logs `drill pause at <point>` (the drill waits for that line) and
    sleeps."""
    seconds = ARMED.get(point)
    if seconds:
        logger.warning("drill pause at %s %s for %s s", point, detail, seconds)
        time.sleep(seconds)
