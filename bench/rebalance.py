"""One rebalance of a large site: `energy.balancing.balance` on 1,000 EVSEs under 50 circuits.

    python bench/rebalance.py [--evses 1000] [--circuits 50] [--panels 5] [--runs 20] [--seed 1]

The site (built from --seed, the same every run): a grid connection of 2,500 A per phase with 150-250 A of
other loads, --panels panels of 630 A, --circuits circuits of 40-80 A spread over the panels, and --evses
EVSEs spread over the circuits. EVSEs: 60 % three-phase (rotated 123, 231 or 312), 40 % single-phase on a
random grid phase; 6 A min, 16 or 32 A max; 70 % active; a quarter of the active three-phase ones with a
single-phase car (measured on one phase only); priorities 0 (90 %), 1 or 2; most active ones running
(previous_a set). The limits are tight on purpose: the minimums alone exceed some circuits and the grid
connection, so both pausing (step 1) and water-filling (step 2) have work to do.

Prints: milliseconds per rebalance (median, p95, max over --runs, after one warm-up run), the outcome
(EVSEs active, paused, at their max, limited by a node), the grid connection's planned load per phase and
its utilisation, and the peak memory of one rebalance (tracemalloc, a separate run: tracing slows it).

Not a test: it asserts nothing, it measures. Pure CPU, no database.
"""

import argparse
import random
import statistics
import time
import tracemalloc

from energy.balancing import balance
from energy.types import EvseInput, Node

ROOT_LIMIT_A = 2500.0
PANEL_LIMIT_A = 630.0
CIRCUIT_LIMITS_A = [40.0, 50.0, 63.0, 63.0, 80.0]
ROTATIONS = [(0, 1, 2), (1, 2, 0), (2, 0, 1)]


def build_site(*, evses: int, circuits: int, panels: int, seed: int) -> tuple[list[Node], list[EvseInput]]:
    rng = random.Random(seed)
    root = Node(1, None, (ROOT_LIMIT_A,) * 3, tuple(float(rng.randint(150, 250)) for _ in range(3)))
    nodes = [root]
    panel_ids = list(range(2, 2 + panels))
    nodes += [Node(panel_id, root.id, (PANEL_LIMIT_A,) * 3) for panel_id in panel_ids]
    circuit_ids = list(range(1000, 1000 + circuits))
    nodes += [
        Node(circuit_id, panel_ids[position % panels], (rng.choice(CIRCUIT_LIMITS_A),) * 3)
        for position, circuit_id in enumerate(circuit_ids)
    ]
    site_evses = []
    for position in range(evses):
        three_phase = rng.random() < 0.6
        phases = rng.choice(ROTATIONS) if three_phase else (rng.randrange(3),)
        active = rng.random() < 0.7
        measured = None
        previous = None
        if active and rng.random() < 0.8:  # running
            previous = float(rng.randint(60, 320)) / 10
            draw = previous * rng.uniform(0.5, 1.0)
            single_phase_car = three_phase and rng.random() < 0.25
            measured = (draw, 0.0, 0.0) if single_phase_car else (draw,) * len(phases)
        site_evses.append(
            EvseInput(
                id=10_000 + position,
                node_id=circuit_ids[position % circuits],
                phases=phases,
                min_a=6.0,
                max_a=rng.choice([16.0, 32.0]),
                active=active,
                priority=rng.choices([0, 1, 2], weights=[90, 7, 3])[0],
                since=float(rng.randint(0, 8 * 3600)),
                measured_a=measured,
                previous_a=previous,
            )
        )
    rng.shuffle(site_evses)  # the input order is not the id order
    return nodes, site_evses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evses", type=int, default=1000)
    parser.add_argument("--circuits", type=int, default=50)
    parser.add_argument("--panels", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    nodes, evses = build_site(evses=args.evses, circuits=args.circuits, panels=args.panels, seed=args.seed)
    result = balance(nodes, evses)  # warm-up
    timings_ms = []
    for _ in range(args.runs):
        started = time.perf_counter()
        result = balance(nodes, evses)
        timings_ms.append((time.perf_counter() - started) * 1000)
    timings_ms.sort()
    p95 = timings_ms[min(len(timings_ms) - 1, round(0.95 * (len(timings_ms) - 1)))]

    tracemalloc.start()
    balance(nodes, evses)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    by_id = {evse.id: evse for evse in evses}
    charging = [a for a in result.allocations if a.phases_used and not a.paused]
    at_max = sum(a.limit_a == by_id[a.evse_id].max_a for a in charging)
    active = sum(evse.active for evse in evses)
    paused = sum(a.paused for a in result.allocations)
    root = nodes[0]
    load = result.node_load_a[root.id]

    print(
        f"site: {len(nodes)} nodes ({args.panels} panels, {args.circuits} circuits), {len(evses)} EVSEs, "
        f"{args.runs} runs"
    )
    print(
        f"ms per rebalance: median {statistics.median(timings_ms):.2f}  p95 {p95:.2f}  max {timings_ms[-1]:.2f}"
    )
    fewer_phases = sum(
        bool(a.phases_used) and len(a.phases_used) < len(by_id[a.evse_id].phases) for a in result.allocations
    )
    print(
        f"EVSEs: {active} active, {paused} paused, {len(charging)} charging "
        f"({at_max} at their max, {len(charging) - at_max} limited by a node); "
        f"{fewer_phases} single-phase cars on three-phase chargers"
    )
    print(
        "grid connection: "
        + "  ".join(
            f"L{phase + 1} {load[phase]:.1f} / {root.limit_a[phase]:.0f} A ({load[phase] / root.limit_a[phase]:.1%}, "
            f"base {root.base_load_a[phase]:.0f} A)"
            for phase in range(3)
        )
    )
    print(f"peak memory of one rebalance (tracemalloc): {peak / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
