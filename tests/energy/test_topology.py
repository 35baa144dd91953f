"""The site topology's services (energy.services.topology) and the balancer's input built from the database
(energy.selectors.site_balancing_input, site_energy_view).

Standing objects: the `world` of tests/conftest.py (site A1 in Europe/Berlin with station A1-CP1, site A2 with
A2-CP1). 2025-03-07 is a Friday; Berlin is UTC+1 then.
"""

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cpms.errors import Conflict, NotFound, ValidationFailed
from energy.enums import NodeKind, ProfileKind, SignalKind
from energy.models import (
    ChargingProfileRecord,
    EvseAllocation,
    EvseElectrical,
    GridNode,
    GridSignal,
    NodeLimitSchedule,
)
from energy.selectors import site_balancing_input, site_energy_view
from energy.services.topology import (
    ScheduleRow,
    evse_electrical_set,
    grid_node_create,
    grid_node_delete,
    grid_node_update,
    grid_signal_record,
    node_schedule_set,
)
from energy.types import UNLIMITED, EvseInput, Node
from sessions.models import MeterValue
from tests.factories import ChargingSessionFactory, ChargingStationFactory, EvseFactory
from tests.support import row

FRIDAY = datetime(2025, 3, 7, tzinfo=UTC)


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=UTC)


def signal(node, kind, amps, *, measured_at, valid_until=None) -> GridSignal:
    l1, l2, l3 = (Decimal(str(value)) for value in amps)
    return grid_signal_record(
        node=node, kind=kind, l1_a=l1, l2_a=l2, l3_a=l3, measured_at=measured_at, valid_until=valid_until
    )


def current(session, phase: str, amps: str, at: datetime, *, evse_number: int = 1) -> MeterValue:
    return MeterValue.objects.create(
        station=session.station,
        session=session,
        evse_id=evse_number,
        timestamp=at,
        measurand="Current.Import",
        phase=phase,
        unit="A",
        value=Decimal(amps),
        received_at=at,
    )


@pytest.fixture
def root(world) -> GridNode:
    return grid_node_create(site=world.site_a1, name="Grid", limit_a=Decimal(63))


@pytest.fixture
def circuit(root) -> GridNode:
    return grid_node_create(site=root.site, name="Garage", parent_id=root.pk, limit_a=Decimal(32))


def managed_evse(
    station, number: int, node: GridNode, *, rotation: str = "123", **settings
) -> EvseElectrical:
    evse = EvseFactory(station=station, evse_id=number)
    return evse_electrical_set(evse=evse, node_id=node.pk, phase_rotation=rotation, **settings)


def charging(electrical: EvseElectrical, started_at: datetime, **fields):
    evse = electrical.evse
    return ChargingSessionFactory(
        station=evse.station, evse=evse, started_at=started_at, status="active", **fields
    )


def topology_rows() -> dict:
    models = (GridNode, NodeLimitSchedule, GridSignal, EvseElectrical)
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in models}


# --- grid nodes ---------------------------------------------------------------------------------------------


def test_create_root_and_children(world, root):
    panel = grid_node_create(
        site=world.site_a1, name=" Panel ", kind=NodeKind.PANEL, parent_id=root.pk, limit_kw=Decimal("22.08")
    )
    circuit = grid_node_create(site=world.site_a1, name="Garage", parent_id=panel.pk, voltage_v=240)
    assert (root.parent_id, root.kind, root.limit_a, root.limit_kw, root.voltage_v) == (
        None,
        NodeKind.GRID_CONNECTION,
        Decimal(63),
        None,
        230,
    )
    assert (panel.name, panel.parent_id, panel.kind, panel.limit_a, panel.limit_kw) == (
        "Panel",
        root.pk,
        NodeKind.PANEL,
        None,
        Decimal("22.08"),
    )
    assert (circuit.parent_id, circuit.kind, circuit.voltage_v) == (panel.pk, NodeKind.CIRCUIT, 240)
    assert list(GridNode.objects.filter(site=world.site_a1).values_list("name", flat=True)) == [
        "Grid",
        "Panel",
        "Garage",
    ]


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"name": "Second"}, Conflict, "Site {site} already has its grid connection ('Grid', node {root}): every other node needs a parent."),
        ({"name": "Grid", "parent": True}, Conflict, "Site {site} already has a node named 'Grid'."),
        ({"name": "  "}, ValidationFailed, "name: 1-100 characters."),
        ({"name": "X", "parent": True, "kind": "grid_connection"}, ValidationFailed, "kind: only the root node is the grid connection; a node with a parent is a panel or a circuit."),
        ({"name": "X", "parent": True, "kind": "fuse"}, ValidationFailed, "kind: one of grid_connection, panel, circuit, not 'fuse'."),
        ({"name": "X", "parent": True, "limit_a": Decimal("-1")}, ValidationFailed, "limit_a: must be 0 or more."),
        ({"name": "X", "parent": True, "limit_a": Decimal("16.25")}, ValidationFailed, "limit_a: at most 1 decimal place(s)."),
        ({"name": "X", "parent": True, "limit_a": Decimal("10000000")}, ValidationFailed, "limit_a: at most 7 digits before the decimal point."),
        ({"name": "X", "parent": True, "limit_kw": Decimal("-0.01")}, ValidationFailed, "limit_kw: must be 0 or more."),
        ({"name": "X", "parent": True, "voltage_v": 0}, ValidationFailed, "voltage_v: the phase-to-neutral voltage in volts, 1 or more (e.g. 230)."),
    ],
)  # fmt: skip
def test_create_refuses(world, root, fields, error, message):
    fields = dict(fields)
    if fields.pop("parent", False):
        fields["parent_id"] = root.pk
    before = topology_rows()
    with pytest.raises(error) as raised:
        grid_node_create(site=world.site_a1, **fields)
    assert raised.value.message == message.format(site=world.site_a1.pk, root=root.pk)
    assert topology_rows() == before


def test_a_root_must_be_the_grid_connection(world):
    with pytest.raises(ValidationFailed) as raised:
        grid_node_create(site=world.site_a1, name="Panel", kind=NodeKind.PANEL)
    assert (
        raised.value.message
        == "kind: the root node (no parent) is the site's grid connection: 'grid_connection'."
    )
    assert not GridNode.objects.exists()


def test_a_parent_of_another_site_is_not_found(world, root):
    other = grid_node_create(site=world.site_b1, name="B root")
    with pytest.raises(ValidationFailed) as raised:
        grid_node_create(site=world.site_b1, name="Sneaky", parent_id=root.pk)
    assert raised.value.message == f"parent: grid node {root.pk} is not a node of site {world.site_b1.pk}."
    with pytest.raises(ValidationFailed):
        grid_node_update(node=other, parent_id=root.pk)
    assert GridNode.objects.filter(site=world.site_b1).count() == 1


def test_update_changes_what_is_given(world, root, circuit):
    updated = grid_node_update(node=circuit, name="Car park", limit_a=None, limit_kw=Decimal("11.04"))
    assert (updated.name, updated.limit_a, updated.limit_kw, updated.voltage_v, updated.parent_id) == (
        "Car park",
        None,
        Decimal("11.04"),
        230,
        root.pk,
    )
    assert row(circuit)["name"] == "Car park"
    grid_node_update(node=circuit, voltage_v=240)
    assert row(circuit)["limit_kw"] == Decimal("11.04")


def test_moving_a_node_keeps_the_tree_a_tree(world, root, circuit):
    panel = grid_node_create(site=world.site_a1, name="Panel", kind=NodeKind.PANEL, parent_id=root.pk)
    moved = grid_node_update(node=circuit, parent_id=panel.pk)
    assert moved.parent_id == panel.pk
    before = topology_rows()
    cases = [
        (panel, circuit.pk, ValidationFailed, f"parent: node {circuit.pk} is under node {panel.pk}; a node cannot hang off its own subtree."),
        (root, circuit.pk, ValidationFailed, f"parent: node {circuit.pk} is under node {root.pk}; a node cannot hang off its own subtree."),
        (panel, panel.pk, ValidationFailed, "parent: a node cannot be its own parent."),
        (panel, None, Conflict, f"Site {world.site_a1.pk} already has its grid connection ('Grid', node {root.pk}): every other node needs a parent."),
        (panel, 10**9, ValidationFailed, f"parent: grid node {10**9} is not a node of site {world.site_a1.pk}."),
        (circuit, None, Conflict, f"Site {world.site_a1.pk} already has its grid connection ('Grid', node {root.pk}): every other node needs a parent."),
    ]  # fmt: skip
    for node, parent_id, error, message in cases:
        with pytest.raises(error) as raised:
            grid_node_update(node=node, parent_id=parent_id)
        assert raised.value.message == message
    with pytest.raises(Conflict) as raised:
        grid_node_update(node=circuit, name="Panel")
    assert raised.value.message == f"Site {world.site_a1.pk} already has a node named 'Panel'."
    assert topology_rows() == before


def test_delete_refuses_while_nodes_or_evses_hang_off_it(world, root, circuit):
    electrical = managed_evse(world.station_a1, 1, circuit)
    with pytest.raises(Conflict) as raised:
        grid_node_delete(node=root)
    assert raised.value.message == f"Grid node {root.pk} ('Grid') has child nodes; delete or move them first."
    with pytest.raises(Conflict) as raised:
        grid_node_delete(node=circuit)
    assert (
        raised.value.message
        == f"Grid node {circuit.pk} ('Garage') feeds 1 EVSE(s); move them to another node first."
    )
    assert GridNode.objects.count() == 2
    electrical.delete()
    node_schedule_set(
        node=circuit, rows=[ScheduleRow(start_time=time(17), end_time=time(20), limit_a=Decimal(10))]
    )
    signal(circuit, SignalKind.METER_READING, (1, 2, 3), measured_at=FRIDAY)
    grid_node_delete(node=circuit)
    assert list(GridNode.objects.values_list("pk", flat=True)) == [root.pk]
    assert (NodeLimitSchedule.objects.count(), GridSignal.objects.count()) == (0, 0)


# --- schedules ---------------------------------------------------------------------------------------------


def test_schedule_set_replaces_the_rows_in_order(root):
    node_schedule_set(node=root, rows=[ScheduleRow(start_time=time(8), end_time=time(9), limit_a=Decimal(1))])
    saved = node_schedule_set(
        node=root,
        rows=[
            ScheduleRow(
                start_time=time(17), end_time=time(20), limit_a=Decimal(40), day_of_week=("MONDAY", "FRIDAY")
            ),
            ScheduleRow(start_time=time(22), end_time=time(6), limit_a=Decimal("25.5")),
        ],
    )
    assert [(r.position, r.start_time, r.end_time, r.day_of_week, r.limit_a) for r in saved] == [
        (0, time(17), time(20), ["MONDAY", "FRIDAY"], Decimal(40)),
        (1, time(22), time(6), [], Decimal("25.5")),
    ]
    assert list(NodeLimitSchedule.objects.values_list("pk", flat=True)) == [r.pk for r in saved]
    assert node_schedule_set(node=root, rows=[]) == []
    assert not NodeLimitSchedule.objects.exists()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"limit_a": Decimal(-1)}, "schedule[1].limit_a: must be 0 or more."),
        ({"day_of_week": ("MONDAY", "Funday")}, "schedule[1].day_of_week: unknown day(s) 'Funday'."),
        ({"day_of_week": ("MONDAY", "MONDAY")}, "schedule[1].day_of_week: a day is named twice."),
        (
            {"start_time": time(8, tzinfo=UTC)},
            "schedule[1]: times are site local times, without a UTC offset.",
        ),
    ],
)
def test_schedule_set_refuses_a_bad_row_and_keeps_the_old_schedule(root, bad, message):
    old = node_schedule_set(
        node=root, rows=[ScheduleRow(start_time=time(8), end_time=time(9), limit_a=Decimal(1))]
    )
    good = {"start_time": time(17), "end_time": time(20), "limit_a": Decimal(40)}
    with pytest.raises(ValidationFailed) as raised:
        node_schedule_set(node=root, rows=[ScheduleRow(**good), ScheduleRow(**{**good, **bad})])
    assert raised.value.message == message
    assert list(NodeLimitSchedule.objects.all()) == old


# --- signals -----------------------------------------------------------------------------------------------


def test_signal_defaults_to_now_and_five_minutes(root):
    before = timezone.now()
    recorded = grid_signal_record(
        node=root,
        kind=SignalKind.DYNAMIC_LIMIT,
        l1_a=Decimal(10),
        l2_a=Decimal(11),
        l3_a=Decimal(12),
        source="pv",
    )
    assert before <= recorded.measured_at <= timezone.now()
    assert recorded.valid_until == recorded.measured_at + timedelta(minutes=5)
    stored = GridSignal.objects.get()
    assert (stored.kind, stored.l1_a, stored.l2_a, stored.l3_a, stored.source) == (
        "dynamic_limit",
        Decimal(10),
        Decimal(11),
        Decimal(12),
        "pv",
    )
    explicit = signal(
        root,
        SignalKind.METER_READING,
        (-5, 0, 3),
        measured_at=FRIDAY,
        valid_until=FRIDAY + timedelta(hours=1),
    )
    assert (explicit.l1_a, explicit.measured_at, explicit.valid_until) == (
        Decimal(-5),
        FRIDAY,
        FRIDAY + timedelta(hours=1),
    )


@pytest.mark.parametrize(
    ("kind", "amps", "valid_until", "message"),
    [
        ("dynamic_limit", (10, -1, 10), None, "l2_a: must be 0 or more."),
        ("price", (1, 1, 1), None, "kind: one of meter_reading, dynamic_limit, not 'price'."),
        ("meter_reading", (1, 1, "1.25"), None, "l3_a: at most 1 decimal place(s)."),
        ("meter_reading", (1, 1, 1), FRIDAY, "valid_until: must be after measured_at."),
    ],
)
def test_signal_refuses(root, kind, amps, valid_until, message):
    with pytest.raises(ValidationFailed) as raised:
        signal(root, kind, amps, measured_at=FRIDAY, valid_until=valid_until)
    assert raised.value.message == message
    assert not GridSignal.objects.exists()


# --- EVSE wiring -------------------------------------------------------------------------------------------


def test_evse_electrical_set_and_replace(world, root, circuit):
    evse = EvseFactory(station=world.station_a1, evse_id=2)
    first = evse_electrical_set(evse=evse, node_id=circuit.pk)
    assert (
        first.node_id,
        first.phase_rotation,
        first.min_current_a,
        first.max_current_a,
        first.priority,
    ) == (
        circuit.pk,
        "123",
        Decimal(6),
        Decimal(32),
        0,
    )
    second = evse_electrical_set(
        evse=evse,
        node_id=root.pk,
        phase_rotation="3",
        min_current_a=Decimal(8),
        max_current_a=Decimal(16),
        priority=5,
    )
    assert second.pk == first.pk
    assert row(second) == {
        "id": first.pk,
        "evse_id": evse.pk,
        "node_id": root.pk,
        "phase_rotation": "3",
        "min_current_a": Decimal(8),
        "max_current_a": Decimal(16),
        "priority": 5,
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"phase_rotation": "113"}, "phase_rotation: the grid phases (1-3, each at most once) the charger's L1, L2, L3 are wired to, e.g. '123', '231', or '3' for a single-phase charger on L3; not '113'."),
        ({"phase_rotation": "4"}, "phase_rotation: the grid phases (1-3, each at most once) the charger's L1, L2, L3 are wired to, e.g. '123', '231', or '3' for a single-phase charger on L3; not '4'."),
        ({"phase_rotation": ""}, "phase_rotation: the grid phases (1-3, each at most once) the charger's L1, L2, L3 are wired to, e.g. '123', '231', or '3' for a single-phase charger on L3; not ''."),
        ({"phase_rotation": "1234"}, "phase_rotation: the grid phases (1-3, each at most once) the charger's L1, L2, L3 are wired to, e.g. '123', '231', or '3' for a single-phase charger on L3; not '1234'."),
        ({"min_current_a": Decimal(20), "max_current_a": Decimal(16)}, "min_current_a (20) must not exceed max_current_a (16)."),
        ({"min_current_a": Decimal(-1)}, "min_current_a: must be 0 or more."),
        ({"priority": 40000}, "priority: from -32768 to 32767."),
    ],
)  # fmt: skip
def test_evse_electrical_refuses(world, circuit, fields, message):
    evse = EvseFactory(station=world.station_a1, evse_id=2)
    with pytest.raises(ValidationFailed) as raised:
        evse_electrical_set(evse=evse, node_id=circuit.pk, **fields)
    assert raised.value.message == message
    assert not EvseElectrical.objects.exists()


def test_evse_electrical_node_must_be_of_the_stations_site(world, circuit):
    other_root = grid_node_create(site=world.site_a2, name="A2 grid")
    evse = EvseFactory(station=world.station_a1, evse_id=2)
    with pytest.raises(ValidationFailed) as raised:
        evse_electrical_set(evse=evse, node_id=other_root.pk)
    assert (
        raised.value.message == f"node: grid node {other_root.pk} is not a node of site {world.site_a1.pk}."
    )
    siteless = EvseFactory(
        station=ChargingStationFactory(identity="NOSITE", site=None, organisation=world.org_a)
    )
    with pytest.raises(ValidationFailed) as raised:
        evse_electrical_set(evse=siteless, node_id=circuit.pk)
    assert (
        raised.value.message == "Station 'NOSITE' has no site: put it on a site with a grid topology first."
    )
    assert not EvseElectrical.objects.exists()


# --- the balancer's input ----------------------------------------------------------------------------------


def limits_at(site, at: datetime) -> dict[str, tuple]:
    nodes, _ = site_balancing_input(site_id=site.pk, at=at)
    names = dict(GridNode.objects.values_list("pk", "name"))
    return {names[node.id]: node.limit_a for node in nodes}


def test_schedule_applies_in_site_local_time_and_wraps_past_midnight(world, root):
    node_schedule_set(
        node=root,
        rows=[
            ScheduleRow(start_time=time(17), end_time=time(20), limit_a=Decimal(40), day_of_week=("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY")),
            ScheduleRow(start_time=time(22), end_time=time(6), limit_a=Decimal(25), day_of_week=("FRIDAY",)),
            ScheduleRow(start_time=time(18), end_time=time(19), limit_a=Decimal(1)),  # shadowed by the first row
        ],
    )  # fmt: skip
    expected = [
        (utc(7, 15, 59), 63.0),  # Friday 16:59 in Berlin: before the evening row
        (utc(7, 16, 0), 40.0),  # Friday 17:00 local (16:00 UTC): the first row, not UTC's 17:00
        (utc(7, 17, 30), 40.0),  # 18:30 local: both evening rows match, the first wins
        (utc(7, 19, 0), 63.0),  # 20:00 local: the end is exclusive
        (utc(7, 21, 0), 25.0),  # Friday 22:00 local
        (utc(8, 1, 0), 25.0),  # Saturday 02:00 local: Friday's night row wrapped past midnight
        (utc(8, 5, 0), 63.0),  # Saturday 06:00 local: over
        (utc(8, 21, 30), 63.0),  # Saturday 22:30 local: the night row is Friday's only
        (utc(9, 1, 0), 63.0),  # Sunday 02:00 local: Saturday's night, not in force
        (utc(8, 16, 30), 63.0),  # Saturday 17:30 local: the evening row is for weekdays
    ]
    assert [(at, limits_at(world.site_a1, at)["Grid"]) for at, _ in expected] == [
        (at, (limit, limit, limit)) for at, limit in expected
    ]


def test_an_end_equal_to_the_start_is_a_whole_day(world, root):
    node_schedule_set(
        node=root,
        rows=[
            ScheduleRow(start_time=time(12), end_time=time(12), limit_a=Decimal(20), day_of_week=("FRIDAY",))
        ],
    )
    # From Friday 12:00 to Saturday 12:00 local.
    assert limits_at(world.site_a1, utc(7, 10, 59))["Grid"] == (63.0, 63.0, 63.0)
    assert limits_at(world.site_a1, utc(7, 11, 0))["Grid"] == (20.0, 20.0, 20.0)
    assert limits_at(world.site_a1, utc(8, 10, 59))["Grid"] == (20.0, 20.0, 20.0)
    assert limits_at(world.site_a1, utc(8, 11, 0))["Grid"] == (63.0, 63.0, 63.0)


def test_kw_limits_are_amps_per_phase_and_the_smaller_limit_wins(world, root):
    # 13.8 kW over three phases at 230 V: 13800 / (3 x 230) = 20 A per phase.
    grid_node_create(site=world.site_a1, name="kW only", parent_id=root.pk, limit_kw=Decimal("13.80"))
    grid_node_create(
        site=world.site_a1, name="kW lower", parent_id=root.pk, limit_a=Decimal(32), limit_kw=Decimal("13.80")
    )
    grid_node_create(
        site=world.site_a1, name="A lower", parent_id=root.pk, limit_a=Decimal(16), limit_kw=Decimal("13.80")
    )
    grid_node_create(
        site=world.site_a1, name="110 V", parent_id=root.pk, limit_kw=Decimal("3.30"), voltage_v=110
    )
    grid_node_create(site=world.site_a1, name="Open", parent_id=root.pk)
    assert limits_at(world.site_a1, FRIDAY) == {
        "Grid": (63.0, 63.0, 63.0),
        "kW only": (20.0, 20.0, 20.0),
        "kW lower": (20.0, 20.0, 20.0),
        "A lower": (16.0, 16.0, 16.0),
        "110 V": (10.0, 10.0, 10.0),
        "Open": (UNLIMITED, UNLIMITED, UNLIMITED),
    }  # fmt: skip


def test_a_schedule_row_replaces_the_nodes_own_limits(world, root):
    node = grid_node_create(
        site=world.site_a1, name="Garage", parent_id=root.pk, limit_a=Decimal(16), limit_kw=Decimal("6.90")
    )
    node_schedule_set(
        node=node, rows=[ScheduleRow(start_time=time(0), end_time=time(0), limit_a=Decimal(25))]
    )
    assert limits_at(world.site_a1, FRIDAY)["Garage"] == (25.0, 25.0, 25.0)


def test_the_newest_valid_dynamic_limit_caps_the_node_per_phase(world, root, circuit):
    at = utc(7, 12)
    signal(root, SignalKind.DYNAMIC_LIMIT, (1, 1, 1), measured_at=at - timedelta(minutes=3))  # older
    newest = signal(root, SignalKind.DYNAMIC_LIMIT, (50, "10.5", 70), measured_at=at - timedelta(minutes=1))
    signal(root, SignalKind.DYNAMIC_LIMIT, (2, 2, 2), measured_at=at - timedelta(minutes=10))  # expired
    signal(root, SignalKind.DYNAMIC_LIMIT, (3, 3, 3), measured_at=at + timedelta(seconds=1))  # not yet
    signal(root, SignalKind.METER_READING, (0, 0, 0), measured_at=at)  # another kind
    signal(
        circuit, SignalKind.DYNAMIC_LIMIT, (5, 5, 5), measured_at=at - timedelta(minutes=4), valid_until=at
    )
    assert limits_at(world.site_a1, at) == {"Grid": (50.0, 10.5, 63.0), "Garage": (32.0, 32.0, 32.0)}
    site_view = site_energy_view(site_id=world.site_a1.pk, at=at)
    assert site_view.nodes[0].state.dynamic_limit == newest
    # A dynamic limit also bounds an unlimited node.
    open_node = grid_node_create(site=world.site_a1, name="Open", parent_id=root.pk)
    signal(open_node, SignalKind.DYNAMIC_LIMIT, (7, 8, 9), measured_at=at)
    assert limits_at(world.site_a1, at)["Open"] == (7.0, 8.0, 9.0)


def test_a_meter_reading_minus_the_managed_evses_is_the_base_load(world, root, circuit):
    at = utc(7, 12)
    rotated = managed_evse(world.station_a1, 1, circuit, rotation="231")
    unmeasured = managed_evse(world.station_a1, 2, root)
    session = charging(rotated, at - timedelta(hours=1))
    charging(unmeasured, at - timedelta(hours=1))
    for phase, amps in (("L1", "16"), ("L2", "10"), ("L3", "4")):
        current(session, phase, amps, at - timedelta(seconds=30))
    # The rotated charger's L1, L2, L3 draw on grid L2, L3, L1: (4, 16, 10) A per grid phase. Measured at the
    # grid connection: all loads; at the circuit: its loads.
    signal(root, SignalKind.METER_READING, (30, 20, 10), measured_at=at - timedelta(seconds=10))
    signal(circuit, SignalKind.METER_READING, ("16.5", 17, 16), measured_at=at - timedelta(seconds=10))
    nodes, _ = site_balancing_input(site_id=world.site_a1.pk, at=at)
    assert nodes == [
        Node(id=root.pk, parent_id=None, limit_a=(63.0, 63.0, 63.0), base_load_a=(26.0, 4.0, 0.0)),
        Node(id=circuit.pk, parent_id=root.pk, limit_a=(32.0, 32.0, 32.0), base_load_a=(12.5, 1.0, 6.0)),
    ]
    # Without a valid reading a node has no base load.
    nodes, _ = site_balancing_input(site_id=world.site_a1.pk, at=at + timedelta(minutes=5))
    assert [node.base_load_a for node in nodes] == [(0.0, 0.0, 0.0), (0.0, 0.0, 0.0)]


def test_evse_inputs(world, root, circuit):
    at = utc(7, 12)
    first = managed_evse(
        world.station_a1, 1, circuit, priority=3, min_current_a=Decimal(8), max_current_a=Decimal("16.5")
    )
    single = managed_evse(world.station_a1, 2, root, rotation="3")
    idle = managed_evse(world.station_a1, 3, root, rotation="231")
    session = charging(first, utc(7, 10, 30))
    for phase, amps in (("L1", "15.5"), ("L2", "0.2"), ("L3", "0.1")):
        current(session, phase, amps, at - timedelta(minutes=1))
    single_session = charging(single, utc(7, 11))
    current(single_session, "L1-N", "9", at - timedelta(minutes=2))
    current(single_session, "L1-N", "12.3", at - timedelta(minutes=1))  # the newest counts
    # Another EVSE's reading, and an old session of this EVSE, change nothing.
    old = ChargingSessionFactory(
        station=world.station_a1, evse=single.evse, started_at=utc(7, 8), status="completed"
    )
    current(old, "L1", "30", at - timedelta(minutes=1))
    EvseAllocation.objects.create(evse=first.evse, limit_a=Decimal("14.5"), phases_used="1", computed_at=at)
    EvseAllocation.objects.create(evse=idle.evse, limit_a=Decimal(0), paused=True, computed_at=at)
    _, evses = site_balancing_input(site_id=world.site_a1.pk, at=at)
    assert evses == [
        EvseInput(id=first.evse_id, node_id=circuit.pk, phases=(0, 1, 2), min_a=8.0, max_a=16.5, active=True, priority=3, since=utc(7, 10, 30).timestamp(), measured_a=(15.5, 0.2, 0.1), previous_a=14.5),
        EvseInput(id=single.evse_id, node_id=root.pk, phases=(2,), min_a=6.0, max_a=32.0, active=True, priority=0, since=utc(7, 11).timestamp(), measured_a=(12.3,), previous_a=None),
        EvseInput(id=idle.evse_id, node_id=root.pk, phases=(1, 2, 0), min_a=6.0, max_a=32.0, active=False, priority=0, since=0.0, measured_a=None, previous_a=0.0),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("readings", "expected"),
    [
        ([("L1", "16", 1), ("L2", "0", 1), ("L3", "0", 1)], (16.0, 0.0, 0.0)),  # a single-phase car
        ([("L1-N", "16", 1), ("L2-N", "15.8", 1), ("L3-N", "16.1", 1)], (16.0, 15.8, 16.1)),
        ([("L1", "16", 1), ("L2", "16", 1)], None),  # L3 unknown is not L3 at 0 A
        ([("L1", "16", 6), ("L2", "0", 6), ("L3", "0", 6)], None),  # older than five minutes
        ([("", "16", 1)], None),  # no phase named
        ([("L1", "16", 1), ("L2", "-0.2", 1), ("L3", "0", 1)], (16.0, 0.0, 0.0)),  # idle-phase noise
        ([("L1", "16", 1), ("L2", "16", 1), ("L3", "16", 1), ("L1", "0", 0)], (0.0, 16.0, 16.0)),
    ],
)
def test_measured_current_per_charger_phase(world, root, readings, expected):
    at = utc(7, 12)
    electrical = managed_evse(world.station_a1, 1, root)
    session = charging(electrical, utc(7, 11))
    for phase, amps, minutes_ago in readings:
        current(session, phase, amps, at - timedelta(minutes=minutes_ago))
    _, evses = site_balancing_input(site_id=world.site_a1.pk, at=at)
    assert evses[0].measured_a == expected


def test_other_measurands_and_unsigned_values_are_not_currents(world, root):
    at = utc(7, 12)
    electrical = managed_evse(world.station_a1, 1, root, rotation="2")
    session = charging(electrical, utc(7, 11))
    MeterValue.objects.create(
        station=world.station_a1, session=session, timestamp=at, measurand="Power.Active.Import", phase="L1",
        value=Decimal(3000), received_at=at,
    )  # fmt: skip
    MeterValue.objects.create(
        station=world.station_a1, session=session, timestamp=at, measurand="Current.Import", phase="L1",
        value=None, signed_data="...", received_at=at,
    )  # fmt: skip
    _, evses = site_balancing_input(site_id=world.site_a1.pk, at=at)
    assert evses[0].measured_a is None


def test_input_is_read_in_a_fixed_number_of_queries(world, root, circuit):
    at = utc(7, 12)

    def add_evse(number: int) -> None:
        electrical = managed_evse(world.station_a1, number, circuit if number % 2 else root)
        session = charging(electrical, utc(7, 11))
        for phase in ("L1", "L2", "L3"):
            current(session, phase, "10", at - timedelta(minutes=1))
        EvseAllocation.objects.create(
            evse=electrical.evse, limit_a=Decimal(10), phases_used="123", computed_at=at
        )

    node_schedule_set(
        node=root, rows=[ScheduleRow(start_time=time(0), end_time=time(23), limit_a=Decimal(50))]
    )
    signal(root, SignalKind.METER_READING, (40, 40, 40), measured_at=at)
    signal(circuit, SignalKind.DYNAMIC_LIMIT, (20, 20, 20), measured_at=at)
    add_evse(1)
    with CaptureQueriesContext(connection) as one:
        site_balancing_input(site_id=world.site_a1.pk, at=at)
    for number in range(2, 9):
        add_evse(number)
    with CaptureQueriesContext(connection) as eight:
        _, evses = site_balancing_input(site_id=world.site_a1.pk, at=at)
    assert [evse.measured_a for evse in evses] == [(10.0, 10.0, 10.0)] * 8
    assert len(eight) == len(one) == 7
    with CaptureQueriesContext(connection) as view:
        site_energy_view(site_id=world.site_a1.pk, at=at)
    assert len(view) == 8


def test_a_site_without_topology_has_no_input(world):
    assert site_balancing_input(site_id=world.site_a2.pk, at=FRIDAY) == ([], [])


# --- the operators' view -----------------------------------------------------------------------------------


def test_site_energy_view(world, root, circuit):
    at = utc(7, 12)
    first = managed_evse(world.station_a1, 1, circuit)
    second = managed_evse(world.station_a1, 2, root, rotation="2")
    managed_evse(world.station_a1, 3, root)  # never allocated
    session = charging(first, utc(7, 11))
    for phase in ("L1", "L2", "L3"):
        current(session, phase, "10", at - timedelta(minutes=1))
    signal(root, SignalKind.METER_READING, (40, 20, 10), measured_at=at)
    signal(circuit, SignalKind.METER_READING, (12, 12, 12), measured_at=at)
    EvseAllocation.objects.create(
        evse=first.evse,
        limit_a=Decimal(12),
        phases_used="123",
        computed_at=at,
        sent_limit_a=Decimal(10),
        sent_at=at,
    )
    EvseAllocation.objects.create(evse=second.evse, limit_a=Decimal(7), phases_used="2", computed_at=at)
    old = ChargingProfileRecord.objects.create(
        station=world.station_a1,
        evse_id=1,
        kind=ProfileKind.DEFAULT,
        profile_id=9000001,
        profile={},
        status="Accepted",
    )
    newest = ChargingProfileRecord.objects.create(
        station=world.station_a1, evse_id=1, kind=ProfileKind.TRANSACTION, profile_id=9100001, limit_a=Decimal(10),
        profile={}, status="Accepted",
    )  # fmt: skip
    view = site_energy_view(site_id=world.site_a1.pk, at=at)
    # Base loads: the root 40-10, 20-10, 10-10; the circuit 12-10 on each phase, which is more than the root's
    # on L3, so the root plans with 2 A there (as the balancer does). Planned: plus the 12 A allocated on all
    # phases under them, and 7 A on L2 at the root.
    assert [(n.state.node.pk, n.state.base_load_a, n.planned_load_a) for n in view.nodes] == [
        (root.pk, (30.0, 10.0, 0.0), (42.0, 29.0, 14.0)),
        (circuit.pk, (2.0, 2.0, 2.0), (14.0, 14.0, 14.0)),
    ]
    assert [
        (e.state.electrical.evse.evse_id, e.state.allocation is not None, e.latest_profile)
        for e in view.evses
    ] == [
        (1, True, newest),
        (2, True, None),
        (3, False, None),
    ]
    assert old != newest


def test_site_picture_of_a_missing_site_is_not_found(db):
    with pytest.raises(NotFound) as raised:
        site_balancing_input(site_id=10**9, at=FRIDAY)
    assert raised.value.message == f"Site {10**9} not found."
