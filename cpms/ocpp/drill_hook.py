"""TEST HOOK for the fault drills (tests/drills, docs/reliability.md case 30): a server process that kills
itself with SIGKILL at a named point of the Nth charger CALL of one action, so that a drill can put a crash
exactly before the commit, between the commit and the answer, or after the answer.

Off unless the environment sets CPMS_DRILL_KILL_AT (never in production); when off, each point costs the
caller one module-attribute check (`if drill_hook.ARMED:`).

    CPMS_DRILL_KILL_AT=<point>:<action>:<n>[,<point>:<action>:<n>...]
        point   received   the frame is parsed, its handler not yet run: nothing of it is committed
                committed  the handler returned (its data committed), the answer not yet sent
                answered   the answer was handed to the server (the kill follows ANSWERED_DELAY_S later,
                           once the frame has left the process)
        n       the Nth CALL of `action` this process receives (1-based)
    CPMS_DRILL_KILL_ONCE=<path prefix>
        each spec fires once across all processes: the process that fires it first creates
        `<prefix>.<index>`; a restarted process finds the file and lets that spec pass.
"""

import asyncio
import os
import signal
from collections import Counter
from dataclasses import dataclass

POINTS = ("received", "committed", "answered")
ANSWERED_DELAY_S = 0.3


@dataclass(frozen=True)
class KillSpec:
    index: int
    point: str
    action: str
    n: int


def parse(value: str) -> tuple[KillSpec, ...]:
    specs = []
    for index, part in enumerate(p for p in value.split(",") if p.strip()):
        point, action, n = part.strip().split(":")
        if point not in POINTS:
            raise ValueError(f"CPMS_DRILL_KILL_AT: unknown point {point!r} (one of {', '.join(POINTS)})")
        specs.append(KillSpec(index=index, point=point, action=action, n=int(n)))
    return tuple(specs)


ARMED: tuple[KillSpec, ...] = parse(os.environ.get("CPMS_DRILL_KILL_AT", ""))
_ONCE = os.environ.get("CPMS_DRILL_KILL_ONCE", "")
_seen: Counter = Counter()


def _claim(spec: KillSpec) -> bool:
    if not _ONCE:
        return True
    try:
        os.close(os.open(f"{_ONCE}.{spec.index}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


_dying = False


def reached(point: str, action: str) -> None:
    """Called at `point` for every CALL when ARMED; kills this process if a spec says so.

    Once an `answered` kill is scheduled, no other spec fires in this process: it would be claimed (once
    across all processes) by a process that dies of the first one, and the drill would count one kill less."""
    global _dying
    if _dying:
        return
    for spec in ARMED:
        if spec.point != point or spec.action != action:
            continue
        _seen[spec.index] += 1
        if _seen[spec.index] == spec.n and _claim(spec):
            if point == "answered":
                _dying = True
                asyncio.get_running_loop().call_later(ANSWERED_DELAY_S, _kill)
            else:
                _kill()
