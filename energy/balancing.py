"""Load balancing: how much current each EVSE of a site may draw now. A pure function (`balance`): no
Django, no I/O, no clock; the same input always gives the same output.

Model (the types are in `energy.types`)
----------------------------------------
Input: the site's `Node`s (a tree: the grid connection at the root, panels, circuits) and its `EvseInput`s.
A *node phase* is one grid phase (0, 1, 2) of one node. Its capacity is

    capacity = max(0, limit_a - base_load)

where `base_load` is what the node carries besides the managed EVSEs. A node's `base_load_a` is taken as
what a meter at that node sees, so it already covers the non-EVSE loads below it; when the children's base
loads add up to more (no meter at the parent, or readings of different ages), the sum is used:
base_load(node) = max(node.base_load_a, sum of base_load(child)) per phase. An UNLIMITED limit gives an
unlimited capacity. An EVSE given `I` amps loads each grid phase it uses by `I` at its node and at every
ancestor of it. Several roots (a forest) are accepted and each tree is balanced on its own: a site has one
grid connection (the database enforces it), but nothing here needs that.

Grid phases an active EVSE loads (`Allocation.phases_used`): the grid phases its charger phases are wired to
(`EvseInput.phases`, rotation included), except when `measured_a` shows the car drawing on fewer phases
than the charger has (some charger phases above `phase_threshold_a`, the others not): then only the grid
phases of the charger phases above the threshold. When no phase is above it (the car has not started
drawing yet), all of the charger's phases are assumed. For a paused EVSE `phases_used` names the phases it
would load (its minimum did not fit on at least one of them); an inactive EVSE has none.

Output (`BalancingResult`): per EVSE, in id order, `limit_a` (amps per phase), `phases_used` and `paused`;
per node, the planned load per grid phase: the limits of the EVSEs below it on the phases they use, plus
its base load (as defined above).

Algorithm
---------
1. Minimum first. The active EVSEs are taken in this order: higher `priority` first; then EVSEs that were
   running last time (`previous_a` not None and > 0) before the others, so a running session keeps its
   place over a newcomer; then older `since` first; then lower id. Each one is given exactly its `min_a`
   if every node phase it loads still has room for it after the EVSEs served before it; otherwise it is
   paused (limit 0, `paused=True`): below `min_a` a car stops charging, so a smaller share would be wasted.
   Inactive EVSEs get 0, `paused=False`, and load nothing.
2. Fair share of the rest: weighted water-filling over the EVSEs that were not paused. The weight of an
   EVSE is w = 1 + max(priority, 0) (priorities below 0 still matter for step 1 only). A common water level
   L rises from 0; an EVSE that is not frozen has min(max(w * L, min_a), max_a). When a node phase becomes
   full, every EVSE that loads it is frozen where it is; when an EVSE reaches `max_a` it is frozen there;
   the others keep rising. So a full circuit freezes only its own EVSEs. The result (before rounding) is
   the weighted max-min fair allocation: an EVSE can only get more by taking from one that has no more
   per unit of weight than it, or is at its minimum.
   It is computed by events, not by small increments: a node phase's load is linear in L between events
   (intercept + slope * L, slope = the weights of its rising EVSEs), so its "full" level is
   (capacity - intercept) / slope; a heap yields the next event (an EVSE starts rising at min_a / w, reaches
   max_a at max_a / w, a node phase fills), and an event only reschedules the node phases of the EVSE(s)
   it changes.
3. Rounding: every limit is rounded DOWN to a multiple of `step_a` (chargers take 0.1 A steps), but never
   below `min_a` for an EVSE that is not paused (its minimum was reserved exactly in step 1). Limits are
   written as k / (1 / step_a) when 1 / step_a is a whole number (10.6, not 10.600000000000001).

Floats: a minimum fits when the sum is within 1e-10 A (TOLERANCE_A) of the capacity, so that float noise
(0.1 + 0.2 > 0.3) does not pause an EVSE whose minimum fits exactly; a share within 1e-11 A (SNAP_A) below
a multiple of `step_a` rounds to that multiple (2 x 6.5 A on 13 A may be computed as 6.499999999999999).
Steps 2 and 3 depend only on the set of EVSEs served, not on the order of step 1, and all iteration follows
node and EVSE ids (the event heap breaks ties by them), so permuting the input does not change a bit of the
output.

Guarantees (tested in tests/energy/test_balancing.py)
-----------------------------------------------------
- Safety: on every node phase, the planned EVSE load is at most the capacity, give or take the float
  tolerances above: 1e-10 A + 1e-11 A per EVSE on it (the tests allow 1e-9 A with up to 60 EVSEs).
- Bounds: an active EVSE gets 0 and `paused=True`, or a limit in [min_a, max_a] that is `min_a` or a
  multiple of `step_a`; an inactive one gets 0, `paused=False`.
- Pausing: taking the active EVSEs in the order of step 1, an EVSE is paused exactly when its `min_a` does
  not fit, on some node phase it loads, on top of the minimums of the EVSEs served before it.
- No waste: a non-paused EVSE whose limit is at least one `step_a` below its `max_a` loads a node phase
  whose spare capacity (capacity - planned load) is below step_a * n, n being the number of non-paused
  EVSEs loading that node phase (each loses less than one step to rounding down).
- Priority: of two EVSEs loading the same node phases with the same inputs but the priority, the higher
  priority one never gets less.
- Determinism and stability: permuting the input changes nothing; feeding the limits back as
  `previous_a` (everything else unchanged) changes nothing, so the result does not oscillate. Why: the
  served EVSEs now come first within their priority; their minimums fit all together, so each still fits;
  a paused one now comes after at least the served EVSEs that came before it last time, so it still does
  not fit; the served set is the same, hence steps 2 and 3 are. (A served EVSE with min_a 0 may get 0 and
  become a "newcomer", but a minimum of 0 always fits.)

Complexity, with N nodes, E EVSEs, depth D and P <= 3 phases per EVSE: O(N * D) for the paths,
O(E * D * P) for step 1, O(E * D * P * log(E * D * P)) for step 2 (each event touches the node phases of
one EVSE, a full node phase its EVSEs once), O(E) for rounding. 10-20 ms for 1,000 EVSEs on 50 circuits
(bench/rebalance.py).
"""

import heapq
import math
from collections.abc import Sequence

from energy.types import PHASES, UNLIMITED, Allocation, BalancingResult, EvseInput, Node

TOLERANCE_A = 1e-10
# A share this close below a multiple of step_a is taken as that multiple: 2 x 6.5 A on 13 A may come out of
# the float arithmetic as 6.499999999999999, which must not become 6.4.
SNAP_A = 1e-11

# Event kinds on the heap. At the same level, reaching max_a and a full node phase are handled before an
# EVSE starts rising, which would be frozen again at once (same values either way; fewer heap entries).
_MAX, _FULL, _START = 0, 1, 2
# State of a served EVSE during water-filling.
_WAITING, _RISING, _FROZEN = 0, 1, 2


def balance(
    nodes: Sequence[Node],
    evses: Sequence[EvseInput],
    *,
    phase_threshold_a: float = 1.0,
    step_a: float = 0.1,
) -> BalancingResult:
    """Limits for every EVSE and the planned load of every node (module docstring). Raises ValueError on
    invalid input: unknown or duplicate ids, a cycle, phases out of range or repeated, min_a > max_a,
    negative or non-finite currents (only a node limit may be UNLIMITED)."""
    if not (math.isfinite(phase_threshold_a) and phase_threshold_a >= 0):
        raise ValueError(f"phase_threshold_a must be a finite number >= 0, not {phase_threshold_a!r}")
    if not (math.isfinite(step_a) and step_a > 0):
        raise ValueError(f"step_a must be a finite number > 0, not {step_a!r}")

    node_ids, paths, base_load, capacity = _topology(nodes)
    evses = sorted(evses, key=lambda evse: evse.id)
    _check_evses(evses, node_ids)
    node_index = {node_id: index for index, node_id in enumerate(node_ids)}

    # Node phases are numbered node_index * PHASES + phase. For each EVSE: its phases, then the finite node
    # phases it loads (an unlimited one can neither pause it nor fill).
    phases_used: list[tuple[int, ...]] = []
    loaded: list[list[int]] = []
    for evse in evses:
        phases = _phases_used(evse, phase_threshold_a) if evse.active else ()
        phases_used.append(phases)
        path = paths[node_index[evse.node_id]]
        loaded.append(
            [
                node * PHASES + phase
                for node in path
                for phase in phases
                if capacity[node * PHASES + phase] != UNLIMITED
            ]
        )

    # 1. Minimum first.
    reserved = [0.0] * (len(node_ids) * PHASES)
    served: list[int] = []
    paused = [False] * len(evses)
    active = [index for index, evse in enumerate(evses) if evse.active]
    for index in sorted(active, key=lambda index: _serve_order(evses[index])):
        min_a = evses[index].min_a
        if all(reserved[r] + min_a <= capacity[r] + TOLERANCE_A for r in loaded[index]):
            for r in loaded[index]:
                reserved[r] += min_a
            served.append(index)
        else:
            paused[index] = True

    # 2. Water-filling, 3. rounding. From here on nothing depends on the serving order (the water-filling
    # sums the minimums again, in id order): a sum in serving order can differ in the last bit once an EVSE
    # moved ahead (previous_a), and that can tip a rounding, so feeding a result back would change it.
    served.sort()
    shares = _water_fill(evses, served, loaded, capacity)
    limits = [0.0] * len(evses)
    inverse = round(1 / step_a)
    if not (inverse >= 1 and abs(inverse * step_a - 1) <= 1e-12):
        inverse = 0
    for index in served:
        evse = evses[index]
        # min(): SNAP_A could lift a max_a just below a multiple of step_a onto that multiple.
        limits[index] = min(evse.max_a, max(evse.min_a, _floor_to_step(shares[index], step_a, inverse)))

    allocations = tuple(
        Allocation(
            evse_id=evse.id, limit_a=limits[index], phases_used=phases_used[index], paused=paused[index]
        )
        for index, evse in enumerate(evses)
    )
    return BalancingResult(
        allocations=allocations,
        node_load_a=_node_loads(evses, served, limits, phases_used, paths, node_index, node_ids, base_load),
    )


def _topology(nodes: Sequence[Node]) -> tuple[list[int], list[list[int]], list[list[float]], list[float]]:
    """Validate the nodes; return their ids (sorted), each node's path to its root (node indexes, itself
    first), the base load per node (indexed like the ids) and the capacity per node phase."""
    by_id: dict[int, Node] = {}
    for node in nodes:
        if node.id in by_id:
            raise ValueError(f"node {node.id} appears twice")
        by_id[node.id] = node
        for name in ("limit_a", "base_load_a"):
            values = getattr(node, name)
            if len(values) != PHASES:
                raise ValueError(f"node {node.id}: {name} must have {PHASES} values, not {len(values)}")
        # `not x >= 0` also rejects NaN.
        if any(not value >= 0 for value in node.limit_a):
            raise ValueError(f"node {node.id}: limit_a {node.limit_a} must be >= 0 (or UNLIMITED)")
        if any(not (math.isfinite(value) and value >= 0) for value in node.base_load_a):
            raise ValueError(f"node {node.id}: base_load_a {node.base_load_a} must be finite and >= 0")
    for node in by_id.values():
        if node.parent_id is not None and node.parent_id not in by_id:
            raise ValueError(f"node {node.id}: parent {node.parent_id} is not one of the nodes")

    node_ids = sorted(by_id)
    index = {node_id: position for position, node_id in enumerate(node_ids)}
    known: dict[int, list[int]] = {}  # node index -> its path
    for node_id in node_ids:
        # Walk up until a node whose path is known (or a root), then fill in the paths on the way down.
        chain: list[int] = []
        seen: set[int] = set()
        current: int | None = node_id
        while current is not None and index[current] not in known:
            if current in seen:
                cycle = [*chain[chain.index(current) :], current]
                raise ValueError(f"nodes {' -> '.join(map(str, cycle))} form a cycle")
            seen.add(current)
            chain.append(current)
            current = by_id[current].parent_id
        above = [] if current is None else known[index[current]]
        for member in reversed(chain):
            above = [index[member], *above]
            known[index[member]] = above
    paths = [known[position] for position in range(len(node_ids))]

    # Children before parents (deepest first) for the base loads.
    base_load = [list(by_id[node_id].base_load_a) for node_id in node_ids]
    children_sum = [[0.0] * PHASES for _ in node_ids]
    for position in sorted(range(len(node_ids)), key=lambda position: -len(paths[position])):
        own = base_load[position]
        own[:] = [max(value, below) for value, below in zip(own, children_sum[position], strict=True)]
        path = paths[position]
        if len(path) > 1:
            parent_sum = children_sum[path[1]]
            for phase in range(PHASES):
                parent_sum[phase] += own[phase]
    capacity = [
        max(0.0, by_id[node_id].limit_a[phase] - base_load[position][phase])
        for position, node_id in enumerate(node_ids)
        for phase in range(PHASES)
    ]
    return node_ids, paths, base_load, capacity


def _check_evses(evses: Sequence[EvseInput], node_ids: Sequence[int]) -> None:
    known_nodes = set(node_ids)
    previous_id = None
    for evse in evses:  # sorted by id
        if evse.id == previous_id:
            raise ValueError(f"EVSE {evse.id} appears twice")
        previous_id = evse.id
        if evse.node_id not in known_nodes:
            raise ValueError(f"EVSE {evse.id}: node {evse.node_id} is not one of the nodes")
        phases = evse.phases
        if not 1 <= len(phases) <= PHASES or any(phase not in range(PHASES) for phase in phases):
            raise ValueError(f"EVSE {evse.id}: phases {phases} must be 1 to 3 grid phases among 0, 1, 2")
        if len(set(phases)) != len(phases):
            raise ValueError(f"EVSE {evse.id}: phases {phases} repeat a grid phase")
        if not (math.isfinite(evse.min_a) and math.isfinite(evse.max_a) and evse.min_a >= 0):
            raise ValueError(
                f"EVSE {evse.id}: min_a {evse.min_a} and max_a {evse.max_a} must be finite, >= 0"
            )
        if evse.min_a > evse.max_a:
            raise ValueError(f"EVSE {evse.id}: min_a {evse.min_a} > max_a {evse.max_a}")
        if not math.isfinite(evse.since):
            raise ValueError(f"EVSE {evse.id}: since {evse.since} must be finite")
        if evse.measured_a is not None:
            if len(evse.measured_a) != len(phases):
                raise ValueError(
                    f"EVSE {evse.id}: measured_a has {len(evse.measured_a)} values for {len(phases)} phases"
                )
            if any(not (math.isfinite(value) and value >= 0) for value in evse.measured_a):
                raise ValueError(f"EVSE {evse.id}: measured_a {evse.measured_a} must be finite and >= 0")
        if evse.previous_a is not None and not (math.isfinite(evse.previous_a) and evse.previous_a >= 0):
            raise ValueError(f"EVSE {evse.id}: previous_a {evse.previous_a} must be finite and >= 0")


def _phases_used(evse: EvseInput, threshold_a: float) -> tuple[int, ...]:
    if evse.measured_a is None:
        return evse.phases
    drawing = tuple(
        phase for phase, measured in zip(evse.phases, evse.measured_a, strict=True) if measured > threshold_a
    )
    # None drawing: the car has not started; assume every phase rather than guess which it will use.
    return drawing or evse.phases


def _serve_order(evse: EvseInput) -> tuple[int, bool, float, int]:
    running = evse.previous_a is not None and evse.previous_a > 0
    return (-evse.priority, not running, evse.since, evse.id)


def _water_fill(
    evses: Sequence[EvseInput],
    served: Sequence[int],
    loaded: Sequence[Sequence[int]],
    capacity: Sequence[float],
) -> dict[int, float]:
    """The share of each served EVSE (unrounded), starting from their minimums (module docstring, step 2)."""
    minimums: list[list[float]] = [[] for _ in capacity]
    for index in served:
        for r in loaded[index]:
            minimums[r].append(evses[index].min_a)
    # Load of node phase r at level L: intercept[r] + slope[r] * L (slope: weights of its rising EVSEs).
    intercept = [math.fsum(values) for values in minimums]
    slope = [0] * len(capacity)
    version = [0] * len(capacity)
    full = [False] * len(capacity)
    members: dict[int, list[int]] = {}
    state: dict[int, int] = {}
    share: dict[int, float] = {}
    weight: dict[int, int] = {}
    heap: list[tuple[float, int, int, int]] = []
    for index in served:  # id order: members lists too
        evse = evses[index]
        weight[index] = w = 1 + max(evse.priority, 0)
        share[index] = evse.min_a
        if evse.min_a == evse.max_a:
            state[index] = _FROZEN
            continue
        state[index] = _WAITING
        for r in loaded[index]:
            members.setdefault(r, []).append(index)
        heap.append((evse.min_a / w, _START, index, 0))
        heap.append((evse.max_a / w, _MAX, index, 0))
    heapq.heapify(heap)

    level = 0.0

    def schedule(r: int) -> None:
        if full[r]:
            return
        version[r] += 1
        if slope[r] > 0:
            # max(): float noise may put the crossing a hair below the current level; it is full now.
            heapq.heappush(heap, (max(level, (capacity[r] - intercept[r]) / slope[r]), _FULL, r, version[r]))

    def freeze(index: int, value: float) -> None:
        if state[index] == _RISING:
            for r in loaded[index]:
                slope[r] -= weight[index]
                intercept[r] += value
                schedule(r)
        state[index] = _FROZEN
        share[index] = value

    while heap:
        level, kind, key, entry_version = heapq.heappop(heap)
        if kind == _FULL:
            if full[key] or entry_version != version[key]:
                continue  # superseded by a later schedule()
            full[key] = True
            for index in members[key]:
                if state[index] != _FROZEN:
                    evse = evses[index]
                    freeze(index, min(max(weight[index] * level, evse.min_a), evse.max_a))
        elif state[key] == _FROZEN:
            continue
        elif kind == _MAX:
            freeze(key, evses[key].max_a)
        else:  # _START
            state[key] = _RISING
            for r in loaded[key]:
                intercept[r] -= evses[key].min_a
                slope[r] += weight[key]
                schedule(r)
    return share


def _floor_to_step(value: float, step_a: float, inverse: int) -> float:
    """The largest multiple of step_a that is <= value + SNAP_A."""

    def multiple(k: int) -> float:
        return k / inverse if inverse else k * step_a

    value += SNAP_A
    k = math.floor(value / step_a)
    while k > 0 and multiple(k) > value:
        k -= 1
    while multiple(k + 1) <= value:
        k += 1
    return multiple(k)


def _node_loads(
    evses: Sequence[EvseInput],
    served: Sequence[int],
    limits: Sequence[float],
    phases_used: Sequence[tuple[int, ...]],
    paths: Sequence[Sequence[int]],
    node_index: dict[int, int],
    node_ids: Sequence[int],
    base_load: Sequence[Sequence[float]],
) -> dict[int, tuple[float, float, float]]:
    parts: list[list[list[float]]] = [[[] for _ in range(PHASES)] for _ in node_ids]
    for index in served:
        for node in paths[node_index[evses[index].node_id]]:
            for phase in phases_used[index]:
                parts[node][phase].append(limits[index])
    loads: dict[int, tuple[float, float, float]] = {}
    for position, node_id in enumerate(node_ids):
        # fsum is exactly rounded, so the sums do not depend on the order of the terms.
        l1, l2, l3 = (
            math.fsum(parts[position][phase]) + base_load[position][phase] for phase in range(PHASES)
        )
        loads[node_id] = (l1, l2, l3)
    return loads
