"""The energy API: grid nodes and their schedules, external signals, EVSE wiring, charging profiles sent and
a site's live energy view.

Standing objects (`energy` fixture, next to the `world` and `tenants` of tests/conftest.py and tests/tenants.py):
site A1 has its grid connection (63 A), a garage circuit under it (32 A, a whole-day schedule of 20 A) feeding
EVSE A1 (tenants.evse_a1), and a spare circuit without EVSEs; site A2 and site B1 each have a grid connection
feeding an EVSE of their station, and A2 a spare circuit. Every root has a meter reading, every station a
charging profile record.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from energy.enums import ProfileKind, SignalKind
from energy.models import (
    ChargingProfileRecord,
    EvseAllocation,
    EvseElectrical,
    GridNode,
    GridSignal,
    NodeLimitSchedule,
)
from energy.services.topology import (
    ScheduleRow,
    evse_electrical_set,
    grid_node_create,
    grid_signal_record,
    node_schedule_set,
)
from sessions.models import MeterValue
from stations.models import Evse
from tests.factories import ChargingSessionFactory, EvseFactory
from tests.support import at, iso

MEASURED = at(12)


@dataclass
class Energy:
    node_a1: GridNode
    circuit_a1: GridNode
    spare_a1: GridNode
    node_a2: GridNode
    spare_a2: GridNode
    node_b1: GridNode
    evse_a1: Evse
    evse_a2: Evse
    evse_b1: Evse
    electrical_a1: EvseElectrical
    signal_a1: GridSignal
    profile_a1: ChargingProfileRecord


def _reading(node) -> GridSignal:
    return grid_signal_record(
        node=node,
        kind=SignalKind.METER_READING,
        l1_a=Decimal(10),
        l2_a=Decimal(11),
        l3_a=Decimal(12),
        measured_at=MEASURED,
        source="meter",
    )


def _profile(station, evse_number: int) -> ChargingProfileRecord:
    return ChargingProfileRecord.objects.create(
        station=station,
        evse_id=evse_number,
        kind=ProfileKind.DEFAULT,
        profile_id=9_000_000 + evse_number,
        limit_a=Decimal(16),
        profile={"chargingProfileId": 9_000_000 + evse_number},
        status="Accepted",
    )


def energy_make(world, tenants) -> Energy:
    node_a1 = grid_node_create(site=world.site_a1, name="A1 grid", limit_a=Decimal(63))
    circuit_a1 = grid_node_create(
        site=world.site_a1, name="A1 garage", parent_id=node_a1.pk, limit_a=Decimal(32)
    )
    node_schedule_set(
        node=circuit_a1, rows=[ScheduleRow(start_time=time(0), end_time=time(0), limit_a=Decimal(20))]
    )
    spare_a1 = grid_node_create(
        site=world.site_a1, name="A1 spare", parent_id=node_a1.pk, limit_kw=Decimal("11.04")
    )
    node_a2 = grid_node_create(site=world.site_a2, name="A2 grid", limit_a=Decimal(100))
    spare_a2 = grid_node_create(site=world.site_a2, name="A2 spare", parent_id=node_a2.pk)
    node_b1 = grid_node_create(site=world.site_b1, name="B1 grid", limit_a=Decimal(80))
    evse_a2 = EvseFactory(station=world.station_a2, evse_id=1)
    evse_b1 = EvseFactory(station=world.station_b1, evse_id=1)
    electrical_a1 = evse_electrical_set(
        evse=tenants.evse_a1, node_id=circuit_a1.pk, phase_rotation="231", priority=1
    )
    evse_electrical_set(evse=evse_a2, node_id=node_a2.pk)
    evse_electrical_set(evse=evse_b1, node_id=node_b1.pk)
    signal_a1 = _reading(node_a1)
    _reading(node_a2)
    _reading(node_b1)
    profile_a1 = _profile(world.station_a1, tenants.evse_a1.evse_id)
    _profile(world.station_a2, 1)
    _profile(world.station_b1, 1)
    return Energy(
        node_a1=node_a1,
        circuit_a1=circuit_a1,
        spare_a1=spare_a1,
        node_a2=node_a2,
        spare_a2=spare_a2,
        node_b1=node_b1,
        evse_a1=tenants.evse_a1,
        evse_a2=evse_a2,
        evse_b1=evse_b1,
        electrical_a1=electrical_a1,
        signal_a1=signal_a1,
        profile_a1=profile_a1,
    )


@pytest.fixture
def energy(world, tenants) -> Energy:
    return energy_make(world, tenants)


def energy_state() -> dict:
    """Every energy row as stored now: compare before and after a refused write."""
    models = (GridNode, NodeLimitSchedule, GridSignal, EvseElectrical, EvseAllocation, ChargingProfileRecord)
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in models}


def node_json(node, schedule=()) -> dict:
    return {
        "id": node.pk,
        "site": node.site_id,
        "parent": node.parent_id,
        "name": node.name,
        "kind": node.kind,
        "limit_a": None if node.limit_a is None else f"{node.limit_a:.1f}",
        "limit_kw": None if node.limit_kw is None else f"{node.limit_kw:.2f}",
        "voltage_v": node.voltage_v,
        "schedule": list(schedule),
        "created_at": iso(node.created_at),
    }


WHOLE_DAY_20 = {
    "position": 0,
    "start_time": "00:00:00",
    "end_time": "00:00:00",
    "day_of_week": [],
    "limit_a": "20.0",
}


def results(response) -> list:
    assert response.status_code == 200, response.content
    return response.json()["results"]


def electrical_url(identity: str, evse_number: int) -> str:
    return f"/api/v1/stations/{identity}/evses/{evse_number}/electrical/"


# --- grid nodes ---------------------------------------------------------------------------------------------


def test_grid_node_list_and_retrieve(world, energy, api):
    client = api(world.host_a1)  # a site host reads the topology of their site
    listed = results(client.get(f"/api/v1/sites/{world.site_a1.pk}/grid-nodes/"))
    assert listed == [
        node_json(energy.node_a1),
        node_json(energy.circuit_a1, [WHOLE_DAY_20]),
        node_json(energy.spare_a1),
    ]
    response = client.get(f"/api/v1/grid-nodes/{energy.circuit_a1.pk}/")
    assert response.status_code == 200
    assert response.json() == {
        "id": energy.circuit_a1.pk,
        "site": world.site_a1.pk,
        "parent": energy.node_a1.pk,
        "name": "A1 garage",
        "kind": "circuit",
        "limit_a": "32.0",
        "limit_kw": None,
        "voltage_v": 230,
        "schedule": [WHOLE_DAY_20],
        "created_at": iso(energy.circuit_a1.created_at),
    }
    assert client.get(f"/api/v1/grid-nodes/{energy.spare_a1.pk}/").json()["limit_kw"] == "11.04"


def test_grid_node_create(world, energy, api):
    client = api(world.operator_a)
    response = client.post(
        f"/api/v1/sites/{world.site_a1.pk}/grid-nodes/",
        {"name": "Panel", "kind": "panel", "parent": energy.node_a1.pk, "limit_a": "40", "voltage_v": 240},
        format="json",
    )
    assert response.status_code == 201, response.content
    node = GridNode.objects.get(pk=response.json()["id"])
    assert response.json() == {
        "id": node.pk,
        "site": world.site_a1.pk,
        "parent": energy.node_a1.pk,
        "name": "Panel",
        "kind": "panel",
        "limit_a": "40.0",
        "limit_kw": None,
        "voltage_v": 240,
        "schedule": [],
        "created_at": iso(node.created_at),
    }
    # A site's first node is its grid connection.
    root = client.post(f"/api/v1/sites/{world.site_a2.pk}/grid-nodes/", {"name": "x"}, format="json")
    assert root.status_code == 409
    empty_site = client.post(
        "/api/v1/sites/", {"name": "Empty", "organisation": world.org_a.pk}, format="json"
    ).json()["id"]
    created = client.post(
        f"/api/v1/sites/{empty_site}/grid-nodes/", {"name": "Grid", "limit_a": 50}, format="json"
    )
    assert created.status_code == 201
    assert (created.json()["kind"], created.json()["parent"], created.json()["limit_a"]) == (
        "grid_connection",
        None,
        "50.0",
    )


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        ({"name": "Second root"}, 409, {"detail": "Site {site} already has its grid connection ('A1 grid', node {root}): every other node needs a parent."}),
        ({"name": "A1 spare", "parent": "root"}, 409, {"detail": "Site {site} already has a node named 'A1 spare'."}),
        ({"name": "X", "parent": "node_b1"}, 400, {"detail": "parent: grid node {node_b1} is not a node of site {site}."}),
        ({"name": "X", "parent": "root", "kind": "grid_connection"}, 400, {"detail": "kind: only the root node is the grid connection; a node with a parent is a panel or a circuit."}),
        ({"name": "X", "parent": "root", "kind": "fuse"}, 400, {"kind": ['"fuse" is not a valid choice.']}),
        ({"name": "X", "parent": "root", "limit_a": "-1"}, 400, {"limit_a": ["Ensure this value is greater than or equal to 0."]}),
        ({"name": "X", "parent": "root", "limit_a": "16.25"}, 400, {"limit_a": ["Ensure that there are no more than 1 decimal places."]}),
        ({"name": "X", "parent": "root", "voltage_v": 0}, 400, {"voltage_v": ["Ensure this value is greater than or equal to 1."]}),
        ({"name": "X", "site": "site"}, 400, {"site": ["Unknown or read-only field; it cannot be set."]}),
        ({"parent": "root"}, 400, {"name": ["This field is required."]}),
    ],
)  # fmt: skip
def test_grid_node_create_refuses(world, energy, api, body, status, expected):
    ids = {"root": energy.node_a1.pk, "node_b1": energy.node_b1.pk, "site": world.site_a1.pk}
    body = {key: ids.get(value, value) if isinstance(value, str) else value for key, value in body.items()}
    before = energy_state()
    response = api(world.operator_a).post(
        f"/api/v1/sites/{world.site_a1.pk}/grid-nodes/", body, format="json"
    )
    assert response.status_code == status
    if "detail" in expected:
        expected = {"detail": expected["detail"].format(**ids)}
    assert response.json() == expected
    assert energy_state() == before


def test_grid_node_patch(world, energy, api):
    client = api(world.operator_a)
    url = f"/api/v1/grid-nodes/{energy.spare_a1.pk}/"
    response = client.patch(
        url,
        {"name": "Car park", "limit_a": "25.5", "limit_kw": None, "parent": energy.circuit_a1.pk},
        format="json",
    )
    assert response.status_code == 200, response.content
    energy.spare_a1.refresh_from_db()
    assert (
        energy.spare_a1.name,
        energy.spare_a1.limit_a,
        energy.spare_a1.limit_kw,
        energy.spare_a1.parent_id,
    ) == (
        "Car park",
        Decimal("25.5"),
        None,
        energy.circuit_a1.pk,
    )
    assert response.json() == node_json(energy.spare_a1)
    # What is not given stays.
    assert client.patch(url, {"voltage_v": 240}, format="json").json()["limit_a"] == "25.5"


@pytest.mark.parametrize(
    ("node", "body", "status", "expected"),
    [
        ("node_a1", {"parent": "circuit_a1"}, 400, "parent: node {circuit_a1} is under node {node_a1}; a node cannot hang off its own subtree."),
        ("circuit_a1", {"parent": None}, 409, "Site {site} already has its grid connection ('A1 grid', node {node_a1}): every other node needs a parent."),
        ("circuit_a1", {"parent": "node_a2"}, 400, "parent: grid node {node_a2} is not a node of site {site}."),
        ("circuit_a1", {"name": "A1 spare"}, 409, "Site {site} already has a node named 'A1 spare'."),
        ("circuit_a1", {"kind": "panel"}, 400, {"kind": ["Unknown or read-only field; it cannot be set."]}),
        ("circuit_a1", {"site": "site"}, 400, {"site": ["Unknown or read-only field; it cannot be set."]}),
        ("circuit_a1", {"limit_a": "-0.1"}, 400, {"limit_a": ["Ensure this value is greater than or equal to 0."]}),
    ],
)  # fmt: skip
def test_grid_node_patch_refuses(world, energy, api, node, body, status, expected):
    ids = {
        "node_a1": energy.node_a1.pk,
        "circuit_a1": energy.circuit_a1.pk,
        "node_a2": energy.node_a2.pk,
        "site": world.site_a1.pk,
    }
    body = {key: ids.get(value, value) if isinstance(value, str) else value for key, value in body.items()}
    before = energy_state()
    response = api(world.operator_a).patch(
        f"/api/v1/grid-nodes/{getattr(energy, node).pk}/", body, format="json"
    )
    assert response.status_code == status
    assert response.json() == ({"detail": expected.format(**ids)} if isinstance(expected, str) else expected)
    assert energy_state() == before


def test_grid_node_delete(world, energy, api):
    client = api(world.operator_a)
    before = energy_state()
    feeding = client.delete(f"/api/v1/grid-nodes/{energy.circuit_a1.pk}/")
    assert feeding.status_code == 409
    assert feeding.json() == {
        "detail": f"Grid node {energy.circuit_a1.pk} ('A1 garage') feeds 1 EVSE(s); move them to another node first."
    }
    parent = client.delete(f"/api/v1/grid-nodes/{energy.node_a1.pk}/")
    assert parent.status_code == 409
    assert parent.json() == {
        "detail": f"Grid node {energy.node_a1.pk} ('A1 grid') has child nodes; delete or move them first."
    }
    assert energy_state() == before
    assert client.delete(f"/api/v1/grid-nodes/{energy.spare_a1.pk}/").status_code == 204
    assert not GridNode.objects.filter(pk=energy.spare_a1.pk).exists()
    assert client.get(f"/api/v1/grid-nodes/{energy.spare_a1.pk}/").status_code == 404


# --- schedules ---------------------------------------------------------------------------------------------


def test_schedule_put_and_get(world, energy, api):
    client = api(world.operator_a)
    url = f"/api/v1/grid-nodes/{energy.node_a1.pk}/schedule/"
    body = {
        "schedule": [
            {"start_time": "17:00", "end_time": "20:00", "day_of_week": ["MONDAY", "FRIDAY"], "limit_a": 40},
            {"start_time": "22:00:00", "end_time": "06:00", "limit_a": "25.5"},
        ]
    }
    response = client.put(url, body, format="json")
    assert response.status_code == 200, response.content
    expected = {
        "schedule": [
            {"position": 0, "start_time": "17:00:00", "end_time": "20:00:00", "day_of_week": ["MONDAY", "FRIDAY"], "limit_a": "40.0"},
            {"position": 1, "start_time": "22:00:00", "end_time": "06:00:00", "day_of_week": [], "limit_a": "25.5"},
        ]
    }  # fmt: skip
    assert response.json() == expected
    assert api(world.host_a1).get(url).json() == expected
    assert client.get(f"/api/v1/grid-nodes/{energy.node_a1.pk}/").json()["schedule"] == expected["schedule"]
    assert client.put(url, {"schedule": []}, format="json").json() == {"schedule": []}
    assert NodeLimitSchedule.objects.filter(node=energy.node_a1).count() == 0


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"day_of_week": ["Funday"]}, {"schedule": {"1": {"day_of_week": {"0": ['"Funday" is not a valid choice.']}}}}),
        ({"day_of_week": ["MONDAY", "MONDAY"]}, {"detail": "schedule[1].day_of_week: a day is named twice."}),
        ({"limit_a": "-1"}, {"schedule": {"1": {"limit_a": ["Ensure this value is greater than or equal to 0."]}}}),
        ({"start_time": "25:00"}, {"schedule": {"1": {"start_time": ["Time has wrong format. Use one of these formats instead: hh:mm[:ss[.uuuuuu]]."]}}}),
        ({"position": 3}, {"schedule": {"1": {"position": ["Unknown or read-only field; it cannot be set."]}}}),
    ],
)  # fmt: skip
def test_schedule_put_refuses(world, energy, api, row, expected):
    good = {"start_time": "17:00", "end_time": "20:00", "limit_a": "40"}
    before = energy_state()
    response = api(world.operator_a).put(
        f"/api/v1/grid-nodes/{energy.circuit_a1.pk}/schedule/",
        {"schedule": [good, {**good, **row}]},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == expected
    assert energy_state() == before


# --- signals -----------------------------------------------------------------------------------------------


def signal_json(signal) -> dict:
    return {
        "id": signal.pk,
        "node": signal.node_id,
        "kind": signal.kind,
        "l1_a": f"{signal.l1_a:.1f}",
        "l2_a": f"{signal.l2_a:.1f}",
        "l3_a": f"{signal.l3_a:.1f}",
        "source": signal.source,
        "measured_at": iso(signal.measured_at),
        "valid_until": iso(signal.valid_until),
        "received_at": iso(signal.received_at),
    }


def test_signal_post(world, energy, api):
    client = api(world.operator_a)
    url = f"/api/v1/grid-nodes/{energy.node_a1.pk}/signals/"
    response = client.post(
        url,
        {"kind": "dynamic_limit", "l1_a": 20, "l2_a": "20.5", "l3_a": "0", "measured_at": "2025-03-01T13:00:00+01:00", "source": "pv-inverter"},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.content
    signal = GridSignal.objects.get(pk=response.json()["id"])
    assert response.json() == {
        "id": signal.pk,
        "node": energy.node_a1.pk,
        "kind": "dynamic_limit",
        "l1_a": "20.0",
        "l2_a": "20.5",
        "l3_a": "0.0",
        "source": "pv-inverter",
        "measured_at": "2025-03-01T12:00:00Z",
        "valid_until": "2025-03-01T12:05:00Z",
        "received_at": iso(signal.received_at),
    }
    before = timezone.now()
    now = client.post(
        url, {"kind": "meter_reading", "l1_a": "-3", "l2_a": 1, "l3_a": 2, "valid_until": None}, format="json"
    ).json()
    measured_at = parse_datetime(now["measured_at"])
    assert before <= measured_at <= timezone.now()
    assert parse_datetime(now["valid_until"]) == measured_at + timedelta(minutes=5)
    assert (now["l1_a"], now["source"]) == ("-3.0", "")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"l1_a": "-1"}, {"detail": "l1_a: must be 0 or more."}),
        ({"valid_until": "2025-03-01T11:59:00Z"}, {"detail": "valid_until: must be after measured_at."}),
        ({"kind": "price"}, {"kind": ['"price" is not a valid choice.']}),
        ({"l3_a": "1.25"}, {"l3_a": ["Ensure that there are no more than 1 decimal places."]}),
        ({"node": 1}, {"node": ["Unknown or read-only field; it cannot be set."]}),
        ({"l2_a": None}, {"l2_a": ["This field may not be null."]}),
    ],
)
def test_signal_post_refuses(world, energy, api, change, expected):
    body = {"kind": "dynamic_limit", "l1_a": 1, "l2_a": 1, "l3_a": 1, "measured_at": "2025-03-01T12:00:00Z"}
    before = energy_state()
    response = api(world.operator_a).post(
        f"/api/v1/grid-nodes/{energy.node_a1.pk}/signals/", {**body, **change}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == expected
    assert energy_state() == before


def test_signal_list_newest_first_with_a_kind_filter(world, energy, api):
    later = grid_signal_record(
        node=energy.node_a1,
        kind=SignalKind.DYNAMIC_LIMIT,
        l1_a=Decimal(5),
        l2_a=Decimal(6),
        l3_a=Decimal(7),
        measured_at=MEASURED + timedelta(minutes=1),
    )
    client = api(world.finance_a)
    url = f"/api/v1/grid-nodes/{energy.node_a1.pk}/signals/"
    assert results(client.get(url)) == [signal_json(later), signal_json(energy.signal_a1)]
    assert results(client.get(f"{url}?kind=meter_reading")) == [signal_json(energy.signal_a1)]
    assert client.get(f"{url}?kind=x").json() == {"kind": ['"x" is not a valid choice.']}


# --- EVSE wiring -------------------------------------------------------------------------------------------


def test_evse_electrical_get_and_put(world, energy, api):
    number = energy.evse_a1.evse_id
    url = electrical_url("A1-CP1", number)
    expected = {
        "station": "A1-CP1",
        "evse_id": number,
        "node": energy.circuit_a1.pk,
        "phase_rotation": "231",
        "min_current_a": "6.0",
        "max_current_a": "32.0",
        "priority": 1,
    }
    assert api(world.host_a1).get(url).json() == expected
    client = api(world.operator_a)
    response = client.put(
        url, {"node": energy.node_a1.pk, "phase_rotation": "3", "max_current_a": "16"}, format="json"
    )
    assert response.status_code == 200, response.content
    # PUT is the whole wiring: the priority left out is back to its default.
    assert response.json() == {
        **expected,
        "node": energy.node_a1.pk,
        "phase_rotation": "3",
        "max_current_a": "16.0",
        "priority": 0,
    }
    assert EvseElectrical.objects.filter(evse=energy.evse_a1).values_list(
        "node_id", "phase_rotation"
    ).get() == (
        energy.node_a1.pk,
        "3",
    )


def test_evse_electrical_put_puts_a_new_evse_under_management(world, energy, api):
    evse = EvseFactory(station=world.station_a1, evse_id=7)
    url = electrical_url("A1-CP1", 7)
    client = api(world.operator_a)
    missing = client.get(url)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "EVSE 7 of station 'A1-CP1' is not load-managed."}
    assert client.put(url, {"node": energy.spare_a1.pk}, format="json").status_code == 200
    assert EvseElectrical.objects.get(evse=evse).node_id == energy.spare_a1.pk
    no_evse = client.get(electrical_url("A1-CP1", 99))
    assert (no_evse.status_code, no_evse.json()) == (404, {"detail": "Station 'A1-CP1' has no EVSE 99."})


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"node": "node_a2"}, {"detail": "node: grid node {node_a2} is not a node of site {site}."}),
        ({"node": "node_b1"}, {"detail": "node: grid node {node_b1} is not a node of site {site}."}),
        ({"node": "circuit_a1", "phase_rotation": "113"}, {"detail": "phase_rotation: the grid phases (1-3, each at most once) the charger's L1, L2, L3 are wired to, e.g. '123', '231', or '3' for a single-phase charger on L3; not '113'."}),
        ({"node": "circuit_a1", "min_current_a": "20", "max_current_a": "16"}, {"detail": "min_current_a (20.0) must not exceed max_current_a (16.0)."}),
        ({"node": "circuit_a1", "priority": 40000}, {"priority": ["Ensure this value is less than or equal to 32767."]}),
        ({"node": "circuit_a1", "evse": 1}, {"evse": ["Unknown or read-only field; it cannot be set."]}),
        ({}, {"node": ["This field is required."]}),
    ],
)  # fmt: skip
def test_evse_electrical_put_refuses(world, energy, api, body, expected):
    ids = {
        "node_a2": energy.node_a2.pk,
        "node_b1": energy.node_b1.pk,
        "circuit_a1": energy.circuit_a1.pk,
        "site": world.site_a1.pk,
    }
    body = {key: ids.get(value, value) if isinstance(value, str) else value for key, value in body.items()}
    before = energy_state()
    response = api(world.operator_a).put(
        electrical_url("A1-CP1", energy.evse_a1.evse_id), body, format="json"
    )
    assert response.status_code == 400
    if "detail" in expected:
        expected = {"detail": expected["detail"].format(**ids)}
    assert response.json() == expected
    assert energy_state() == before


# --- charging profiles -------------------------------------------------------------------------------------


def test_charging_profiles_newest_first(world, energy, api):
    newer = ChargingProfileRecord.objects.create(
        station=world.station_a1,
        evse_id=energy.evse_a1.evse_id,
        kind=ProfileKind.TRANSACTION,
        profile_id=9_100_000,
        stack_level=1,
        limit_a=Decimal("12.5"),
        transaction_id="1001",
        profile={"x": 1},
        status="Rejected",
    )
    client = api(world.host_a1)
    listed = results(client.get("/api/v1/stations/A1-CP1/charging-profiles/"))
    assert listed == [
        {
            "id": newer.pk,
            "station": "A1-CP1",
            "evse_id": energy.evse_a1.evse_id,
            "kind": "transaction",
            "profile_id": 9_100_000,
            "stack_level": 1,
            "limit_a": "12.5",
            "transaction_id": "1001",
            "profile": {"x": 1},
            "command": None,
            "status": "Rejected",
            "created_at": iso(newer.created_at),
        },
        {
            "id": energy.profile_a1.pk,
            "station": "A1-CP1",
            "evse_id": energy.evse_a1.evse_id,
            "kind": "default",
            "profile_id": 9_000_000 + energy.evse_a1.evse_id,
            "stack_level": 0,
            "limit_a": "16.0",
            "transaction_id": "",
            "profile": {"chargingProfileId": 9_000_000 + energy.evse_a1.evse_id},
            "command": None,
            "status": "Accepted",
            "created_at": iso(energy.profile_a1.created_at),
        },
    ]
    assert [
        p["id"] for p in results(client.get("/api/v1/stations/A1-CP1/charging-profiles/?kind=default"))
    ] == [energy.profile_a1.pk]
    assert results(client.get("/api/v1/stations/A1-CP1/charging-profiles/?evse_id=0")) == []
    page = client.get("/api/v1/stations/A1-CP1/charging-profiles/?limit=1").json()
    assert (page["count"], [p["id"] for p in page["results"]]) == (2, [newer.pk])
    assert client.get("/api/v1/stations/A1-CP1/charging-profiles/?evse_id=x").status_code == 400


# --- the live view -----------------------------------------------------------------------------------------


def test_site_energy_view(world, tenants, energy, api):
    now = timezone.now()
    session = ChargingSessionFactory(
        station=world.station_a1,
        evse=energy.evse_a1,
        transaction_id="live",
        started_at=now - timedelta(hours=1),
    )
    for phase, amps in (("L1", "10"), ("L2", "10"), ("L3", "10")):
        MeterValue.objects.create(
            station=world.station_a1,
            session=session,
            timestamp=now - timedelta(minutes=1),
            measurand="Current.Import",
            phase=phase,
            value=Decimal(amps),
            received_at=now,
        )
    reading = grid_signal_record(
        node=energy.node_a1,
        kind=SignalKind.METER_READING,
        l1_a=Decimal(30),
        l2_a=Decimal(25),
        l3_a=Decimal(12),
        measured_at=now - timedelta(minutes=1),
    )
    cap = grid_signal_record(
        node=energy.node_a1,
        kind=SignalKind.DYNAMIC_LIMIT,
        l1_a=Decimal(50),
        l2_a=Decimal(70),
        l3_a=Decimal("45.5"),
        measured_at=now - timedelta(minutes=1),
    )
    computed = datetime(2025, 3, 1, 12, tzinfo=UTC)
    EvseAllocation.objects.create(
        evse=energy.evse_a1,
        limit_a=Decimal(14),
        phases_used="231",
        computed_at=computed,
        sent_limit_a=Decimal(13),
        sent_at=computed,
    )
    before = timezone.now()
    response = api(world.host_a1).get(f"/api/v1/sites/{world.site_a1.pk}/energy/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert before <= parse_datetime(body.pop("at")) <= timezone.now()
    profile = api(world.operator_a).get("/api/v1/stations/A1-CP1/charging-profiles/").json()["results"][0]
    # EVSE A1 draws 10 A on each grid phase; 14 A are allocated on grid L2, L3, L1 (rotation 231).
    assert body == {
        "site": world.site_a1.pk,
        "time_zone": "Europe/Berlin",
        "nodes": [
            {
                "id": energy.node_a1.pk,
                "parent": None,
                "name": "A1 grid",
                "kind": "grid_connection",
                "limit_a": ["50.0", "63.0", "45.5"],
                "base_load_a": ["20.0", "15.0", "2.0"],
                "planned_load_a": ["34.0", "29.0", "16.0"],
                "schedule_position": None,
                "dynamic_limit": cap.pk,
                "meter_reading": reading.pk,
            },
            {
                "id": energy.circuit_a1.pk,
                "parent": energy.node_a1.pk,
                "name": "A1 garage",
                "kind": "circuit",
                "limit_a": ["20.0", "20.0", "20.0"],
                "base_load_a": ["0.0", "0.0", "0.0"],
                "planned_load_a": ["14.0", "14.0", "14.0"],
                "schedule_position": 0,
                "dynamic_limit": None,
                "meter_reading": None,
            },
            {
                "id": energy.spare_a1.pk,
                "parent": energy.node_a1.pk,
                "name": "A1 spare",
                "kind": "circuit",
                # 11.04 kW over three phases at 230 V.
                "limit_a": ["16.0", "16.0", "16.0"],
                "base_load_a": ["0.0", "0.0", "0.0"],
                "planned_load_a": ["0.0", "0.0", "0.0"],
                "schedule_position": None,
                "dynamic_limit": None,
                "meter_reading": None,
            },
        ],
        "evses": [
            {
                "station": "A1-CP1",
                "evse_id": energy.evse_a1.evse_id,
                "node": energy.circuit_a1.pk,
                "phase_rotation": "231",
                "min_current_a": "6.0",
                "max_current_a": "32.0",
                "priority": 1,
                "active": True,
                "session": session.pk,
                "measured_a": ["10.0", "10.0", "10.0"],
                "allocation": {
                    "limit_a": "14.0",
                    "paused": False,
                    "phases_used": "231",
                    "computed_at": "2025-03-01T12:00:00Z",
                    "sent_limit_a": "13.0",
                    "sent_at": "2025-03-01T12:00:00Z",
                },
                "latest_profile": profile,
            }
        ],
    }
    assert profile["id"] == energy.profile_a1.pk


def test_site_energy_view_without_topology(world, api):
    response = api(world.operator_a).get(f"/api/v1/sites/{world.site_a2.pk}/energy/")
    body = response.json()
    body.pop("at")
    assert body == {"site": world.site_a2.pk, "time_zone": "America/New_York", "nodes": [], "evses": []}


def test_unlimited_nodes_show_null_limits(world, energy, api):
    open_node = grid_node_create(site=world.site_a1, name="Open", parent_id=energy.node_a1.pk)
    nodes = api(world.operator_a).get(f"/api/v1/sites/{world.site_a1.pk}/energy/").json()["nodes"]
    assert next(node for node in nodes if node["id"] == open_node.pk)["limit_a"] == [None, None, None]


# --- denials -----------------------------------------------------------------------------------------------


def write_requests(world, energy) -> dict:
    signal = {"kind": "dynamic_limit", "l1_a": 10, "l2_a": 10, "l3_a": 10}
    schedule = {"schedule": [{"start_time": "17:00", "end_time": "20:00", "limit_a": 30}]}
    return {
        "node_create_a1": ("post", f"/api/v1/sites/{world.site_a1.pk}/grid-nodes/", {"name": "New", "parent": energy.node_a1.pk}),
        "node_create_a2": ("post", f"/api/v1/sites/{world.site_a2.pk}/grid-nodes/", {"name": "New", "parent": energy.node_a2.pk}),
        "node_patch_a1": ("patch", f"/api/v1/grid-nodes/{energy.spare_a1.pk}/", {"name": "Renamed"}),
        "node_patch_a2": ("patch", f"/api/v1/grid-nodes/{energy.spare_a2.pk}/", {"name": "Renamed"}),
        "node_delete_a1": ("delete", f"/api/v1/grid-nodes/{energy.spare_a1.pk}/", None),
        "node_delete_a2": ("delete", f"/api/v1/grid-nodes/{energy.spare_a2.pk}/", None),
        "schedule_a1": ("put", f"/api/v1/grid-nodes/{energy.circuit_a1.pk}/schedule/", schedule),
        "schedule_a2": ("put", f"/api/v1/grid-nodes/{energy.node_a2.pk}/schedule/", schedule),
        "signal_a1": ("post", f"/api/v1/grid-nodes/{energy.node_a1.pk}/signals/", signal),
        "signal_a2": ("post", f"/api/v1/grid-nodes/{energy.node_a2.pk}/signals/", signal),
        "electrical_a1": ("put", electrical_url("A1-CP1", energy.evse_a1.evse_id), {"node": energy.spare_a1.pk}),
        "electrical_a2": ("put", electrical_url("A2-CP1", 1), {"node": energy.spare_a2.pk}),
    }  # fmt: skip


WRITE_NAMES = [
    "node_create_a1",
    "node_create_a2",
    "node_patch_a1",
    "node_patch_a2",
    "node_delete_a1",
    "node_delete_a2",
    "schedule_a1",
    "schedule_a2",
    "signal_a1",
    "signal_a2",
    "electrical_a1",
    "electrical_a2",
]
# "a1" objects are at host_a1's site (visible to them: 403), "a2" at another site of org A (404); finance sees
# all of org A and manages none of it; for operator B everything of org A is 404.
DENIED = {
    "host_a1": {name: 403 if name.endswith("_a1") else 404 for name in WRITE_NAMES},
    "finance_a": dict.fromkeys(WRITE_NAMES, 403),
    "operator_b": dict.fromkeys(WRITE_NAMES, 404),
}


@pytest.mark.parametrize(
    ("actor", "name", "status"),
    [(actor, name, status) for actor, cases in DENIED.items() for name, status in cases.items()],
)
def test_denied_writes_change_nothing(world, energy, api, actor, name, status):
    method, url, body = write_requests(world, energy)[name]
    before = energy_state()
    response = getattr(api(getattr(world, actor)), method)(url, body, format="json")
    assert response.status_code == status, response.content
    assert set(response.json()) == {"detail"}
    assert response.json()["detail"].endswith("not found." if status == 404 else ".")
    if status == 403:
        assert response.json()["detail"].startswith("You may not manage ")
    assert energy_state() == before


@pytest.mark.parametrize("name", WRITE_NAMES)
def test_the_same_writes_succeed_for_operator_admin(world, energy, api, name):
    """The denial cases above are valid requests: an operator admin of org A gets them through."""
    method, url, body = write_requests(world, energy)[name]
    before = energy_state()
    response = getattr(api(world.operator_a), method)(url, body, format="json")
    assert response.status_code in {200, 201, 204}, response.content
    assert energy_state() != before


READS = {
    "nodes_a1": "/api/v1/sites/{site_a1}/grid-nodes/",
    "nodes_a2": "/api/v1/sites/{site_a2}/grid-nodes/",
    "energy_a1": "/api/v1/sites/{site_a1}/energy/",
    "energy_a2": "/api/v1/sites/{site_a2}/energy/",
    "node_a1": "/api/v1/grid-nodes/{circuit_a1}/",
    "node_a2": "/api/v1/grid-nodes/{node_a2}/",
    "schedule_a1": "/api/v1/grid-nodes/{circuit_a1}/schedule/",
    "schedule_a2": "/api/v1/grid-nodes/{node_a2}/schedule/",
    "signals_a1": "/api/v1/grid-nodes/{node_a1}/signals/",
    "signals_a2": "/api/v1/grid-nodes/{node_a2}/signals/",
    "electrical_a1": "/api/v1/stations/A1-CP1/evses/{evse_a1}/electrical/",
    "electrical_a2": "/api/v1/stations/A2-CP1/evses/1/electrical/",
    "profiles_a1": "/api/v1/stations/A1-CP1/charging-profiles/",
    "profiles_a2": "/api/v1/stations/A2-CP1/charging-profiles/",
}


@pytest.mark.parametrize("actor", ["host_a1", "finance_a", "operator_b"])
@pytest.mark.parametrize("name", sorted(READS))
def test_reads_follow_the_scope(world, energy, api, actor, name):
    ids = {
        "site_a1": world.site_a1.pk,
        "site_a2": world.site_a2.pk,
        "node_a1": energy.node_a1.pk,
        "circuit_a1": energy.circuit_a1.pk,
        "node_a2": energy.node_a2.pk,
        "evse_a1": energy.evse_a1.evse_id,
    }
    response = api(getattr(world, actor)).get(READS[name].format(**ids))
    visible = actor == "finance_a" or (actor == "host_a1" and name.endswith("_a1"))
    assert response.status_code == (200 if visible else 404), response.content
    if not visible:
        assert set(response.json()) == {"detail"}
        assert response.json()["detail"].endswith("not found.")


def test_foreign_objects_are_404_even_with_a_bad_body(world, energy, api):
    """Scope first: a 400 would tell operator B that the object exists."""
    client = api(world.operator_b)
    cases = [
        ("post", f"/api/v1/sites/{world.site_a1.pk}/grid-nodes/", {"name": ""}),
        ("patch", f"/api/v1/grid-nodes/{energy.node_a1.pk}/", {"limit_a": "x"}),
        ("put", f"/api/v1/grid-nodes/{energy.node_a1.pk}/schedule/", {"schedule": "x"}),
        ("post", f"/api/v1/grid-nodes/{energy.node_a1.pk}/signals/", {"kind": "x"}),
        ("put", electrical_url("A1-CP1", energy.evse_a1.evse_id), {"node": "x"}),
        ("get", "/api/v1/stations/A1-CP1/charging-profiles/?evse_id=x", None),
        ("get", f"/api/v1/grid-nodes/{energy.node_a1.pk}/signals/?kind=x", None),
    ]
    for method, url, body in cases:
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == 404, url
