"""A site's electrical topology as operators describe it (API, admin): grid nodes and their limits, a node's
limit schedule, the external signals for a node (meter readings, dynamic limits), and each EVSE's wiring.

The rules every topology obeys, whoever writes it:
- the nodes of a site form one tree: one root per site, the grid connection (kind `grid_connection`, and only
  the root has that kind); every other node hangs off a node of the same site, never off its own subtree;
- limits are amps per phase (or kW at `voltage_v`), 0 or more; empty means unlimited;
- an EVSE hangs off a node of its station's site, with 1-3 distinct grid phases and min <= max current.

Services take objects the caller fetched inside the user's scope (energy.selectors / stations.selectors);
other objects named in the input arrive as ids and are looked up inside the same site only, so an id from
another site or tenant is "not a node of this site" (400) and reveals nothing. Topology edits of a site are
serialised by locking the site row.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from enum import Enum

from django.db import IntegrityError, transaction
from django.utils import timezone

from cpms.errors import Conflict, NotFound, ValidationFailed
from energy.enums import NodeKind, SignalKind
from energy.models import EvseElectrical, GridNode, GridSignal, NodeLimitSchedule
from energy.selectors import DAYS
from stations.models import Evse, Site

# A signal without `valid_until` is trusted for this long after it was measured: a meter or grid operator
# that stops sending must not keep a stale value in force.
SIGNAL_VALIDITY = timedelta(minutes=5)
NAME_MAX_LENGTH = 100
SOURCE_MAX_LENGTH = 100
_ROTATION_RE = re.compile(r"[123]{1,3}")
_SMALLINT = (-32768, 32767)


class _Unset(Enum):
    UNSET = "unset"


# "Not given" in a partial update, where None means "set to empty".
UNSET = _Unset.UNSET


def _decimal_check(
    field: str, value: Decimal, *, max_digits: int, places: int, minimum: Decimal | None = Decimal(0)
) -> None:
    """`value` fits a DecimalField(max_digits, places) and is at least `minimum` (None: any sign)."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValidationFailed(f"{field}: a number is required.")
    if minimum is not None and value < minimum:
        raise ValidationFailed(f"{field}: must be {minimum} or more.")
    if abs(value) >= Decimal(10) ** (max_digits - places):
        raise ValidationFailed(f"{field}: at most {max_digits - places} digits before the decimal point.")
    if value != value.quantize(Decimal(1).scaleb(-places)):
        raise ValidationFailed(f"{field}: at most {places} decimal place(s).")


def _amps_check(field: str, value: Decimal, *, minimum: Decimal | None = Decimal(0)) -> None:
    _decimal_check(field, value, max_digits=8, places=1, minimum=minimum)


# --- grid nodes -----------------------------------------------------------------------------------------


def _site_lock(site_id: int) -> None:
    Site.objects.select_for_update().filter(pk=site_id).first()


def _parent_in_site(*, site_id: int, parent_id: int | None) -> GridNode | None:
    if parent_id is None:
        return None
    parent = GridNode.objects.filter(pk=parent_id, site_id=site_id).first()
    if parent is None:
        raise ValidationFailed(f"parent: grid node {parent_id} is not a node of site {site_id}.")
    return parent


def grid_node_validate(node: GridNode) -> None:
    """The rules of the module docstring for `node` as it is about to be saved (new or changed). Reads the
    site's other nodes: callers that save hold the site lock."""
    name = node.name.strip()
    if not 1 <= len(name) <= NAME_MAX_LENGTH:
        raise ValidationFailed(f"name: 1-{NAME_MAX_LENGTH} characters.")
    if node.kind not in NodeKind.values:
        raise ValidationFailed(f"kind: one of {', '.join(NodeKind.values)}, not {node.kind!r}.")
    if node.limit_a is not None:
        _amps_check("limit_a", node.limit_a)
    if node.limit_kw is not None:
        _decimal_check("limit_kw", node.limit_kw, max_digits=10, places=2)
    if node.voltage_v is None or not 1 <= node.voltage_v <= 100_000:
        raise ValidationFailed("voltage_v: the phase-to-neutral voltage in volts, 1 or more (e.g. 230).")
    parent = node.parent
    if parent is not None:
        if parent.site_id != node.site_id:
            raise ValidationFailed(f"parent: grid node {parent.pk} is not a node of site {node.site_id}.")
        if node.pk is not None:
            _cycle_refuse(node=node, parent=parent)
        if node.kind == NodeKind.GRID_CONNECTION:
            raise ValidationFailed(
                "kind: only the root node is the grid connection; a node with a parent is a panel or a "
                "circuit."
            )
    else:
        root = GridNode.objects.filter(site_id=node.site_id, parent__isnull=True).exclude(pk=node.pk).first()
        if root is not None:
            raise Conflict(
                f"Site {node.site_id} already has its grid connection ({root.name!r}, node {root.pk}): "
                "every other node needs a parent."
            )
        if node.kind != NodeKind.GRID_CONNECTION:
            raise ValidationFailed(
                "kind: the root node (no parent) is the site's grid connection: 'grid_connection'."
            )
    taken = GridNode.objects.filter(site_id=node.site_id, name=name).exclude(pk=node.pk)
    if taken.exists():
        raise Conflict(f"Site {node.site_id} already has a node named {name!r}.")


def _cycle_refuse(*, node: GridNode, parent: GridNode) -> None:
    if parent.pk == node.pk:
        raise ValidationFailed("parent: a node cannot be its own parent.")
    parents = dict(GridNode.objects.filter(site_id=node.site_id).values_list("pk", "parent_id"))
    seen: set[int] = set()
    current: int | None = parent.pk
    while current is not None and current not in seen:
        if current == node.pk:
            raise ValidationFailed(
                f"parent: node {parent.pk} is under node {node.pk}; a node cannot hang off its own subtree."
            )
        seen.add(current)
        current = parents.get(current)


def _node_save(node: GridNode) -> GridNode:
    node.name = node.name.strip()
    grid_node_validate(node)
    try:
        with transaction.atomic():
            node.save()
    except IntegrityError:
        # The checks above ran under the site lock; this is a row written without it.
        raise Conflict(f"Site {node.site_id}'s topology changed meanwhile; try again.") from None
    return node


def grid_node_create(
    *,
    site: Site,
    name: str,
    kind: str | None = None,
    parent_id: int | None = None,
    limit_a: Decimal | None = None,
    limit_kw: Decimal | None = None,
    voltage_v: int = 230,
) -> GridNode:
    """A node of `site`. `kind` defaults to the grid connection for the root (no parent), else a circuit."""
    with transaction.atomic():
        _site_lock(site.pk)
        parent = _parent_in_site(site_id=site.pk, parent_id=parent_id)
        if kind is None:
            kind = NodeKind.GRID_CONNECTION if parent is None else NodeKind.CIRCUIT
        node = GridNode(
            site=site,
            parent=parent,
            name=name,
            kind=kind,
            limit_a=limit_a,
            limit_kw=limit_kw,
            voltage_v=voltage_v,
        )
        return _node_save(node)


def grid_node_update(
    *,
    node: GridNode,
    name: str | _Unset = UNSET,
    limit_a: Decimal | _Unset | None = UNSET,
    limit_kw: Decimal | _Unset | None = UNSET,
    voltage_v: int | _Unset = UNSET,
    parent_id: int | _Unset | None = UNSET,
) -> GridNode:
    """Change what is given (UNSET: keep). A node never changes site or kind; moving it (`parent_id`) keeps
    the tree a tree."""
    with transaction.atomic():
        _site_lock(node.site_id)
        pk = node.pk
        current = GridNode.objects.select_related("parent").filter(pk=pk).first()
        if current is None:  # deleted meanwhile
            raise NotFound(f"Grid node {pk} not found.")
        node = current
        if name is not UNSET:
            node.name = name
        if limit_a is not UNSET:
            node.limit_a = limit_a
        if limit_kw is not UNSET:
            node.limit_kw = limit_kw
        if voltage_v is not UNSET:
            node.voltage_v = voltage_v
        if parent_id is not UNSET:
            node.parent = _parent_in_site(site_id=node.site_id, parent_id=parent_id)
        return _node_save(node)


def grid_node_delete(*, node: GridNode) -> None:
    """Delete a leaf node without EVSEs (with its schedule and signals). Refused (409) while nodes or EVSEs
    hang off it: deleting them along would silently drop EVSEs from load management."""
    with transaction.atomic():
        _site_lock(node.site_id)
        if GridNode.objects.filter(parent_id=node.pk).exists():
            raise Conflict(f"Grid node {node.pk} ({node.name!r}) has child nodes; delete or move them first.")
        evses = EvseElectrical.objects.filter(node_id=node.pk).count()
        if evses:
            raise Conflict(
                f"Grid node {node.pk} ({node.name!r}) feeds {evses} EVSE(s); move them to another node first."
            )
        GridNode.objects.filter(pk=node.pk).delete()


# --- schedules ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleRow:
    """From `start_time` (inclusive) to `end_time` (exclusive), site local time; an end at or before the
    start wraps past midnight (equal: 24 hours). `day_of_week`: the days the period *starts* on (a Friday
    22:00-06:00 row covers Saturday 02:00); empty: every day."""

    start_time: time
    end_time: time
    limit_a: Decimal
    day_of_week: tuple[str, ...] = ()


def schedule_row_validate(row: ScheduleRow, *, field: str = "schedule") -> None:
    _amps_check(f"{field}.limit_a", row.limit_a)
    if row.start_time.tzinfo is not None or row.end_time.tzinfo is not None:
        raise ValidationFailed(f"{field}: times are site local times, without a UTC offset.")
    unknown = [day for day in row.day_of_week if day not in DAYS]
    if unknown:
        raise ValidationFailed(f"{field}.day_of_week: unknown day(s) {', '.join(map(repr, unknown))}.")
    if len(set(row.day_of_week)) != len(row.day_of_week):
        raise ValidationFailed(f"{field}.day_of_week: a day is named twice.")


def node_schedule_set(*, node: GridNode, rows: Sequence[ScheduleRow]) -> list[NodeLimitSchedule]:
    """Replace the node's schedule with `rows`, in that order (the first matching row wins)."""
    for index, row in enumerate(rows):
        schedule_row_validate(row, field=f"schedule[{index}]")
    with transaction.atomic():
        GridNode.objects.select_for_update().filter(pk=node.pk).first()
        NodeLimitSchedule.objects.filter(node_id=node.pk).delete()
        NodeLimitSchedule.objects.bulk_create(
            NodeLimitSchedule(
                node_id=node.pk,
                position=position,
                start_time=row.start_time,
                end_time=row.end_time,
                day_of_week=list(row.day_of_week),
                limit_a=row.limit_a,
            )
            for position, row in enumerate(rows)
        )
    return list(NodeLimitSchedule.objects.filter(node_id=node.pk).order_by("position", "id"))


# --- external signals -----------------------------------------------------------------------------------


def grid_signal_record(
    *,
    node: GridNode,
    kind: str,
    l1_a: Decimal,
    l2_a: Decimal,
    l3_a: Decimal,
    measured_at: datetime | None = None,
    valid_until: datetime | None = None,
    source: str = "",
) -> GridSignal:
    """A meter reading (the current per phase measured at the node, all loads included; negative when the
    node exports) or a dynamic limit (per phase, 0 or more) for `node`, in force from `measured_at` (default:
    now) until `valid_until` (default: measured_at + SIGNAL_VALIDITY). Queues a rebalance of the site."""
    if kind not in SignalKind.values:
        raise ValidationFailed(f"kind: one of {', '.join(SignalKind.values)}, not {kind!r}.")
    minimum = None if kind == SignalKind.METER_READING else Decimal(0)
    for field, value in (("l1_a", l1_a), ("l2_a", l2_a), ("l3_a", l3_a)):
        _amps_check(field, value, minimum=minimum)
    measured_at = measured_at or timezone.now()
    valid_until = valid_until or measured_at + SIGNAL_VALIDITY
    if timezone.is_naive(measured_at) or timezone.is_naive(valid_until):
        raise ValidationFailed("measured_at, valid_until: give a UTC offset.")
    if valid_until <= measured_at:
        raise ValidationFailed("valid_until: must be after measured_at.")
    if len(source) > SOURCE_MAX_LENGTH:
        raise ValidationFailed(f"source: at most {SOURCE_MAX_LENGTH} characters.")
    signal = GridSignal.objects.create(
        node=node,
        kind=kind,
        l1_a=l1_a,
        l2_a=l2_a,
        l3_a=l3_a,
        measured_at=measured_at,
        valid_until=valid_until,
        source=source,
    )
    # A new limit or reading changes the picture now, not at the next periodic rebalance.
    from energy.tasks import site_rebalance  # the tasks module imports the services

    site_id = node.site_id
    transaction.on_commit(lambda: site_rebalance.delay(site_id))
    return signal


# --- EVSE wiring ----------------------------------------------------------------------------------------


def evse_electrical_validate(electrical: EvseElectrical) -> None:
    """The EVSE's wiring as it is about to be saved: node of the station's site, rotation, current range."""
    station = electrical.evse.station
    if station.site_id is None:
        raise ValidationFailed(
            f"Station {station.identity!r} has no site: put it on a site with a grid topology first."
        )
    if electrical.node.site_id != station.site_id:
        raise ValidationFailed(
            f"node: grid node {electrical.node_id} is not a node of site {station.site_id}."
        )
    rotation = electrical.phase_rotation
    if not _ROTATION_RE.fullmatch(rotation or "") or len(set(rotation)) != len(rotation):
        raise ValidationFailed(
            "phase_rotation: the grid phases (1-3, each at most once) the charger's L1, L2, L3 are wired to, "
            f"e.g. '123', '231', or '3' for a single-phase charger on L3; not {rotation!r}."
        )
    _amps_check("min_current_a", electrical.min_current_a)
    _amps_check("max_current_a", electrical.max_current_a)
    if electrical.min_current_a > electrical.max_current_a:
        raise ValidationFailed(
            f"min_current_a ({electrical.min_current_a}) must not exceed max_current_a "
            f"({electrical.max_current_a})."
        )
    if not _SMALLINT[0] <= electrical.priority <= _SMALLINT[1]:
        raise ValidationFailed(f"priority: from {_SMALLINT[0]} to {_SMALLINT[1]}.")


def evse_electrical_set(
    *,
    evse: Evse,
    node_id: int,
    phase_rotation: str = "123",
    min_current_a: Decimal = Decimal(6),
    max_current_a: Decimal = Decimal(32),
    priority: int = 0,
) -> EvseElectrical:
    """Put `evse` under load management (or replace its settings): hung off node `node_id` of its station's
    site, wired as `phase_rotation`, driven between `min_current_a` and `max_current_a` per phase."""
    station = evse.station
    if station.site_id is None:
        raise ValidationFailed(
            f"Station {station.identity!r} has no site: put it on a site with a grid topology first."
        )
    node = GridNode.objects.filter(pk=node_id, site_id=station.site_id).first()
    if node is None:
        raise ValidationFailed(f"node: grid node {node_id} is not a node of site {station.site_id}.")
    evse_electrical_validate(
        EvseElectrical(
            evse=evse,
            node=node,
            phase_rotation=phase_rotation,
            min_current_a=min_current_a,
            max_current_a=max_current_a,
            priority=priority,
        )
    )
    try:
        with transaction.atomic():
            electrical, _ = EvseElectrical.objects.update_or_create(
                evse=evse,
                defaults={
                    "node": node,
                    "phase_rotation": phase_rotation,
                    "min_current_a": min_current_a,
                    "max_current_a": max_current_a,
                    "priority": priority,
                },
            )
    except IntegrityError:
        raise Conflict(
            f"EVSE {evse.evse_id} of station {evse.station.identity!r} changed meanwhile."
        ) from None
    return electrical
