"""Reads of the energy app, and the picture of a site the balancer and the operators' view work from.

Scope (accounts.selectors): a site's topology (nodes, their schedules and signals) follows its site, an EVSE's
wiring, allocation and charging profiles follow its station. `view` reads, `manage` writes: a site host reads
the topology of their sites and changes none of it (the site-host role has no `manage`); finance reads.
`*_access` raises NotFound outside the view scope and PermissionDenied for a visible object the user lacks
`capability` on. Lists under an object (a node's signals, a station's profiles) are read after the caller
fetched that object with its `*_access`.

`site_balancing_input` builds the input of `energy.balancing.balance` at an instant, in a fixed number of
queries whatever the number of EVSEs:
- a node's limit in force: the first schedule row (by position) matching the site's local time, else the
  node's own limit (the smaller of `limit_a` and `limit_kw` as amps per phase), capped per phase by the newest
  valid dynamic-limit signal; nothing at all: unlimited;
- a node's base load: the newest valid meter reading at the node minus what the managed EVSEs under it were
  measured drawing, per grid phase, never below 0;
- an EVSE is active while it has an active charging session; its measured current is the newest
  `Current.Import` reading of that session per charger phase, of the last MEASURED_WINDOW.
A signal is valid at `at` from its `measured_at` (inclusive) to its `valid_until` (exclusive).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import django_filters
from django.db.models import Max, Prefetch, Q, QuerySet
from django.utils import timezone

from accounts.enums import Capability
from accounts.models import User
from cpms.errors import NotFound, PermissionDenied
from cpms.filters import filters_apply
from energy.enums import ProfileKind, SignalKind
from energy.models import (
    ChargingProfileRecord,
    EvseAllocation,
    EvseElectrical,
    GridNode,
    GridSignal,
    NodeLimitSchedule,
)
from energy.types import PHASES, UNLIMITED, EvseInput, Node
from sessions.enums import SessionStatus
from sessions.models import ChargingSession, MeterValue
from stations.models import ChargingStation, Evse, Site
from stations.scope import site_scope_q, station_scope_q, user_can

DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
CURRENT_MEASURAND = "Current.Import"
# OCPP phase names of a current reading -> the charger's phase index (L1 = 0). 1.6 section 7.31 and 2.0.1
# PhaseEnumType allow both the plain and the "-N" form for a current.
CURRENT_PHASES = {"L1": 0, "L2": 1, "L3": 2, "L1-N": 0, "L2-N": 1, "L3-N": 2}
# Readings older than this are not a measurement of now: the EVSE counts as unmeasured.
MEASURED_WINDOW = timedelta(minutes=5)

Phases = tuple[float, float, float]


# --- scope ----------------------------------------------------------------------------------------------


def grid_node_scope_q(*, user: User, capability: str = Capability.VIEW, prefix: str = "") -> Q:
    """Grid nodes (via `prefix`, e.g. "node__") the user may act on with `capability`: by their site."""
    return site_scope_q(user=user, capability=capability, prefix=f"{prefix}site__")


def _node_qs() -> QuerySet[GridNode]:
    schedules = Prefetch("schedules", queryset=NodeLimitSchedule.objects.order_by("position", "id"))
    return GridNode.objects.select_related("site").prefetch_related(schedules)


def grid_node_list(*, site: Site) -> QuerySet[GridNode]:
    """The site's nodes with their schedules, in creation order (the root first). The caller checked access
    to the site (`site_access`)."""
    return _node_qs().filter(site=site).order_by("id")


def grid_node_access(*, user: User, pk: int, capability: str = Capability.VIEW) -> GridNode:
    node = _node_qs().filter(grid_node_scope_q(user=user)).filter(pk=pk).first()
    if node is None:
        raise NotFound(f"Grid node {pk} not found.")
    if capability != Capability.VIEW and not user_can(
        user=user, capability=capability, organisation_id=node.site.organisation_id, site_id=node.site_id
    ):
        raise PermissionDenied(f"You may not {capability} grid node {node.pk}.")
    return node


def node_schedule_list(*, node: GridNode) -> QuerySet[NodeLimitSchedule]:
    return NodeLimitSchedule.objects.filter(node=node).order_by("position", "id")


class GridSignalFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=SignalKind.choices)

    class Meta:
        model = GridSignal
        fields = ["kind"]


def grid_signal_list(*, node: GridNode, filters: Mapping[str, Any] | None = None) -> QuerySet[GridSignal]:
    """The node's signals, newest measurement first. The caller checked access to the node."""
    qs = GridSignal.objects.filter(node=node).order_by("-measured_at", "-id")
    return filters_apply(GridSignalFilter, filters, qs)


def station_evse_get(*, station: ChargingStation, evse_id: int) -> Evse:
    """EVSE `evse_id` (the OCPP number) of a station the caller fetched with `station_access`."""
    evse = Evse.objects.filter(station=station, evse_id=evse_id).first()
    if evse is None:
        raise NotFound(f"Station {station.identity!r} has no EVSE {evse_id}.")
    evse.station = station
    return evse


def evse_electrical_get(*, evse: Evse) -> EvseElectrical:
    electrical = EvseElectrical.objects.filter(evse=evse).select_related("node").first()
    if electrical is None:
        raise NotFound(f"EVSE {evse.evse_id} of station {evse.station.identity!r} is not load-managed.")
    electrical.evse = evse
    return electrical


def evse_electrical_scope_q(*, user: User, capability: str = Capability.VIEW, prefix: str = "") -> Q:
    return station_scope_q(user=user, capability=capability, prefix=f"{prefix}evse__station__")


class ChargingProfileFilter(django_filters.FilterSet):
    evse_id = django_filters.NumberFilter(field_name="evse_id")
    kind = django_filters.ChoiceFilter(choices=ProfileKind.choices)

    class Meta:
        model = ChargingProfileRecord
        fields = ["evse_id", "kind"]


def charging_profile_list(
    *, station: ChargingStation, filters: Mapping[str, Any] | None = None
) -> QuerySet[ChargingProfileRecord]:
    """The profiles sent to the station, newest first. The caller checked access to the station."""
    qs = ChargingProfileRecord.objects.filter(station=station).order_by("-created_at", "-id")
    return filters_apply(ChargingProfileFilter, filters, qs)


# --- the picture of a site ------------------------------------------------------------------------------


def kw_limit_as_a(*, limit_kw: Decimal, voltage_v: int) -> Decimal:
    """A power limit as amps per phase. `limit_kw` is the power of the whole (three-phase) connection and
    `voltage_v` the phase-to-neutral voltage: P = 3 x U x I. (energy.services.profiles derives the safe
    default shares the same way.)"""
    return limit_kw * 1000 / (PHASES * voltage_v)


def node_own_limit_a(node: GridNode) -> float:
    """The node's limit without schedules and signals: the smaller of `limit_a` and `limit_kw` in amps."""
    limits = []
    if node.limit_a is not None:
        limits.append(node.limit_a)
    if node.limit_kw is not None and node.voltage_v:
        limits.append(kw_limit_as_a(limit_kw=node.limit_kw, voltage_v=node.voltage_v))
    return float(min(limits)) if limits else UNLIMITED


def schedule_row_matches(row: NodeLimitSchedule, local: datetime) -> bool:
    """Whether `row` is in force at the site-local instant `local`. A row whose end is at or before its start
    wraps past midnight (equal: 24 hours); `day_of_week` names the day its period starts on, so a Friday
    22:00-06:00 row is in force on Saturday at 02:00."""
    now = local.time().replace(tzinfo=None)
    start, end = row.start_time, row.end_time
    if start < end:
        if not start <= now < end:
            return False
        day = local
    elif now >= start:
        day = local
    elif now < end:
        day = local - timedelta(days=1)
    else:
        return False
    return not row.day_of_week or DAYS[day.weekday()] in row.day_of_week


def _signal_phases(signal: GridSignal) -> Phases:
    return (float(signal.l1_a), float(signal.l2_a), float(signal.l3_a))


@dataclass(frozen=True, slots=True)
class NodeState:
    """A node at an instant: its limit per grid phase (UNLIMITED allowed), its base load, and what made
    them (the schedule row in force, the dynamic limit and meter reading used; None: none)."""

    node: GridNode
    limit_a: Phases
    base_load_a: Phases
    schedule: NodeLimitSchedule | None
    dynamic_limit: GridSignal | None
    meter_reading: GridSignal | None


@dataclass(frozen=True, slots=True)
class EvseState:
    """A managed EVSE at an instant; `electrical.evse.station` is loaded."""

    electrical: EvseElectrical
    allocation: EvseAllocation | None
    session: ChargingSession | None
    input: EvseInput


@dataclass(frozen=True, slots=True)
class SitePicture:
    site: Site
    at: datetime
    nodes: list[NodeState]
    evses: list[EvseState]


def _measured(readings: dict[int, float], phase_count: int) -> tuple[float, ...] | None:
    """The charger's phases L1..Ln as measured, or None unless every one of them has a reading: a phase
    missing is not a phase at 0 A (assuming so could reserve too few phases for the car)."""
    if all(index in readings for index in range(phase_count)):
        return tuple(readings[index] for index in range(phase_count))
    return None


def site_picture(*, site_id: int, at: datetime) -> SitePicture:
    """The site's nodes and managed EVSEs at `at` (module docstring), in seven queries."""
    site = Site.objects.filter(pk=site_id).first()
    if site is None:
        raise NotFound(f"Site {site_id} not found.")
    local = at.astimezone(ZoneInfo(site.time_zone))
    nodes = list(
        GridNode.objects.filter(site_id=site_id)
        .prefetch_related(
            Prefetch("schedules", queryset=NodeLimitSchedule.objects.order_by("position", "id"))
        )
        .order_by("id")
    )
    newest: dict[tuple[int, str], GridSignal] = {}
    signals = GridSignal.objects.filter(node__site_id=site_id, measured_at__lte=at, valid_until__gt=at)
    for signal in signals.order_by("node_id", "kind", "-measured_at", "-id"):
        newest.setdefault((signal.node_id, signal.kind), signal)
    electricals = list(
        EvseElectrical.objects.filter(node__site_id=site_id)
        .select_related("evse__station", "evse__allocation")
        .order_by("evse_id")
    )
    sessions: dict[int, ChargingSession] = {}
    active = ChargingSession.objects.filter(
        evse__electrical__node__site_id=site_id, status=SessionStatus.ACTIVE
    ).order_by("evse_id", "-started_at", "-id")
    for running in active:
        if running.evse_id is not None:  # always: the query joins through the EVSE
            sessions.setdefault(running.evse_id, running)
    # session pk -> charger phase index -> amps; ascending time, so the newest reading of a phase stays.
    readings: dict[int, dict[int, float]] = {}
    values = MeterValue.objects.filter(
        session_id__in=[session.pk for session in sessions.values()],
        measurand=CURRENT_MEASURAND,
        phase__in=list(CURRENT_PHASES),
        timestamp__gt=at - MEASURED_WINDOW,
        timestamp__lte=at,
        value__isnull=False,
    ).order_by("timestamp", "id")
    for session_id, phase, value in values.values_list("session_id", "phase", "value"):
        if session_id is None or value is None:  # excluded by the query
            continue
        # Some chargers report a few tenths below zero for an idle phase; no current is less than none.
        readings.setdefault(session_id, {})[CURRENT_PHASES[phase]] = max(0.0, float(value))

    evses = []
    for electrical in electricals:
        evse = electrical.evse
        # Reverse one-to-one: no row raises (an AttributeError), which getattr turns into None.
        allocation = getattr(evse, "allocation", None)
        session = sessions.get(evse.pk)
        phases = tuple(int(digit) - 1 for digit in electrical.phase_rotation)
        measured = _measured(readings.get(session.pk, {}), len(phases)) if session is not None else None
        evses.append(
            EvseState(
                electrical=electrical,
                allocation=allocation,
                session=session,
                input=EvseInput(
                    id=evse.pk,
                    node_id=electrical.node_id,
                    phases=phases,
                    min_a=float(electrical.min_current_a),
                    max_a=float(electrical.max_current_a),
                    active=session is not None,
                    priority=electrical.priority,
                    since=session.started_at.timestamp() if session is not None else 0.0,
                    measured_a=measured,
                    previous_a=float(allocation.limit_a) if allocation is not None else None,
                ),
            )
        )

    # What the managed EVSEs draw at each node (theirs and every ancestor's), per grid phase.
    parents = {node.pk: node.parent_id for node in nodes}
    evse_load: dict[int, list[float]] = {node.pk: [0.0] * PHASES for node in nodes}
    for state in evses:
        if state.input.measured_a is None:
            continue
        node_id: int | None = state.input.node_id
        seen: set[int] = set()
        while node_id is not None and node_id not in seen and node_id in evse_load:
            seen.add(node_id)
            for grid_phase, amps in zip(state.input.phases, state.input.measured_a, strict=True):
                evse_load[node_id][grid_phase] += amps
            node_id = parents[node_id]

    states = []
    for node in nodes:
        schedule = next((row for row in node.schedules.all() if schedule_row_matches(row, local)), None)
        own = float(schedule.limit_a) if schedule is not None else node_own_limit_a(node)
        limit = [own] * PHASES
        dynamic = newest.get((node.pk, SignalKind.DYNAMIC_LIMIT))
        if dynamic is not None:
            limit = [min(mine, theirs) for mine, theirs in zip(limit, _signal_phases(dynamic), strict=True)]
        reading = newest.get((node.pk, SignalKind.METER_READING))
        base = [0.0] * PHASES
        if reading is not None:
            base = [
                max(0.0, measured - evses_a)
                for measured, evses_a in zip(_signal_phases(reading), evse_load[node.pk], strict=True)
            ]
        states.append(
            NodeState(
                node=node,
                limit_a=(limit[0], limit[1], limit[2]),
                base_load_a=(base[0], base[1], base[2]),
                schedule=schedule,
                dynamic_limit=dynamic,
                meter_reading=reading,
            )
        )
    return SitePicture(site=site, at=at, nodes=states, evses=evses)


def site_balancing_input(*, site_id: int, at: datetime) -> tuple[list[Node], list[EvseInput]]:
    """The input of `energy.balancing.balance` for the site at `at`: nodes by id, EVSEs by EVSE pk."""
    picture = site_picture(site_id=site_id, at=at)
    nodes = [
        Node(
            id=state.node.pk,
            parent_id=state.node.parent_id,
            limit_a=state.limit_a,
            base_load_a=state.base_load_a,
        )
        for state in picture.nodes
    ]
    return nodes, [state.input for state in picture.evses]


# --- the operators' view --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeView:
    state: NodeState
    # The base load the balancer plans with plus the current allocated to the EVSEs under the node, per grid
    # phase: what energy.balancing reports as the node's load.
    planned_load_a: Phases


@dataclass(frozen=True, slots=True)
class EvseView:
    state: EvseState
    latest_profile: ChargingProfileRecord | None


@dataclass(frozen=True, slots=True)
class SiteEnergyView:
    site: Site
    at: datetime
    nodes: list[NodeView]
    evses: list[EvseView]


def _effective_base_loads(nodes: list[NodeState]) -> dict[int, list[float]]:
    """node pk -> the base load the balancer plans with (energy.balancing): a node's own (its meter sees the
    loads below it), or the sum of its children's when that is more (no meter at the node, or readings of
    different ages), per grid phase."""
    children: dict[int | None, list[NodeState]] = {}
    for state in nodes:
        children.setdefault(state.node.parent_id, []).append(state)
    loads: dict[int, list[float]] = {}

    def visit(state: NodeState, path: frozenset[int]) -> list[float]:
        below = [0.0] * PHASES
        for child in children.get(state.node.pk, []):
            if child.node.pk not in path:  # a cycle cannot be saved, but never loop on one
                below = [a + b for a, b in zip(below, visit(child, path | {child.node.pk}), strict=True)]
        loads[state.node.pk] = [max(own, sum_) for own, sum_ in zip(state.base_load_a, below, strict=True)]
        return loads[state.node.pk]

    for state in nodes:
        if state.node.pk not in loads:
            visit(state, frozenset({state.node.pk}))
    return {pk: list(load) for pk, load in loads.items()}


def site_energy_view(*, site_id: int, at: datetime | None = None) -> SiteEnergyView:
    """The site's topology now (or at `at`): per node the limit in force and the planned load (the base load
    the balancer plans with plus the allocations last decided for the EVSEs under it), per EVSE its
    allocation, the limit last sent, the measured current and the latest profile sent. The caller checked
    access to the site."""
    picture = site_picture(site_id=site_id, at=at or timezone.now())
    parents = {state.node.pk: state.node.parent_id for state in picture.nodes}
    planned = _effective_base_loads(picture.nodes)
    for evse in picture.evses:
        allocation = evse.allocation
        if allocation is None or not allocation.phases_used:
            continue
        grid_phases = [int(digit) - 1 for digit in allocation.phases_used]
        node_id: int | None = evse.electrical.node_id
        seen: set[int] = set()
        while node_id is not None and node_id not in seen and node_id in planned:
            seen.add(node_id)
            for grid_phase in grid_phases:
                planned[node_id][grid_phase] += float(allocation.limit_a)
            node_id = parents[node_id]
    # The newest record per (station, EVSE number), in one query.
    station_ids = {evse.electrical.evse.station_id for evse in picture.evses}
    newest_ids = (
        ChargingProfileRecord.objects.filter(station_id__in=station_ids)
        .order_by()
        .values("station_id", "evse_id")
        .annotate(newest=Max("id"))
        .values("newest")
    )
    records = {
        (record.station_id, record.evse_id): record
        for record in ChargingProfileRecord.objects.filter(pk__in=newest_ids)
    }
    return SiteEnergyView(
        site=picture.site,
        at=picture.at,
        nodes=[
            NodeView(state=state, planned_load_a=(load[0], load[1], load[2]))
            for state in picture.nodes
            for load in [planned[state.node.pk]]
        ],
        evses=[
            EvseView(
                state=evse,
                latest_profile=records.get((evse.electrical.evse.station_id, evse.electrical.evse.evse_id)),
            )
            for evse in picture.evses
        ],
    )
