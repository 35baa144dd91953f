"""Inputs and outputs of the load-balancing algorithm (`energy.balancing.balance`): frozen, database-free.

Currents are amps per phase (float). A site is a tree of `Node`s (the grid connection at the root, then
panels and circuits); every EVSE hangs off one node. The three grid phases are numbered 0, 1, 2 (L1, L2, L3
of the grid connection). A charger's own phases L1..Ln are wired to grid phases given by `EvseInput.phases`
in order: (0, 1, 2) is no rotation, (1, 2, 0) a rotated three-phase charger, (2,) a single-phase charger on
grid L3. An EVSE drawing `I` amps on each of its phases loads each grid phase it uses by `I`, at its node and
every ancestor of that node.
"""

from dataclasses import dataclass

PHASES = 3
UNLIMITED = float("inf")


@dataclass(frozen=True, slots=True)
class Node:
    """A grid connection, panel or circuit. `limit_a`: the limit per grid phase (UNLIMITED allowed) in force
    now (schedules and external signals already applied). `base_load_a`: current per grid phase drawn at this
    node by loads that are not managed EVSEs (from a site meter reading), which the EVSEs cannot use."""

    id: int
    parent_id: int | None
    limit_a: tuple[float, float, float]
    base_load_a: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class EvseInput:
    """One EVSE. `active`: a session wants power now (plugged in, authorised, not finished by the car).
    `phases`: the grid phases its L1..Ln are wired to (see the module docstring). `min_a`/`max_a`: the current
    it may be given per phase when charging (below `min_a` a car stops: such an EVSE is paused at 0).
    `priority`: higher first (e.g. a fleet vehicle due out). `since`: when the session started (seconds since
    the epoch), older first among equal priorities. `measured_a`: the last measured current per charger phase
    (L1..Ln), or None; a phase below the algorithm's threshold while another is above it means the car
    charges on fewer phases than the charger has (a single-phase car on a three-phase charger).
    `previous_a`: the limit it was given last time (None = never), which keeps a running session ahead of a
    newcomer when there is not enough for both."""

    id: int
    node_id: int
    phases: tuple[int, ...]
    min_a: float
    max_a: float
    active: bool
    priority: int = 0
    since: float = 0.0
    measured_a: tuple[float, ...] | None = None
    previous_a: float | None = None


@dataclass(frozen=True, slots=True)
class Allocation:
    """The limit per phase for one EVSE: `limit_a` is 0 when paused (or inactive), else in [min_a, max_a].
    `phases_used`: the grid phases the allocation was reserved on."""

    evse_id: int
    limit_a: float
    phases_used: tuple[int, ...]
    paused: bool


@dataclass(frozen=True, slots=True)
class BalancingResult:
    """`allocations` in EVSE id order; `node_load_a`: per node, the planned load per grid phase (EVSE
    allocations plus base load), for the operator's view."""

    allocations: tuple[Allocation, ...]
    node_load_a: dict[int, tuple[float, float, float]]
