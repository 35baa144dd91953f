"""Energy in the admin: scoped like the rest (tests/admin/test_admin_scope.py covers every changelist), nodes,
their schedules and EVSE wiring written through energy.services.topology, signals, allocations and profiles
only shown."""

from datetime import time
from decimal import Decimal

import pytest
from django.urls import reverse

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
from tests.factories import EvseFactory
from tests.support import at


def change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def add_url(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")


def delete_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_delete", args=[obj.pk])


ENERGY_MODELS = (
    GridNode,
    NodeLimitSchedule,
    GridSignal,
    EvseElectrical,
    EvseAllocation,
    ChargingProfileRecord,
)


def rows() -> dict:
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in ENERGY_MODELS}


@pytest.fixture
def topology(world, tenants) -> dict:
    """Site A1: its grid connection, a garage circuit with two schedule rows feeding EVSE A1 (allocated, with a
    profile sent), a reading at the root. Sites A2 and B1: a grid connection each."""
    root = grid_node_create(site=world.site_a1, name="A1 grid", limit_a=Decimal(63))
    garage = grid_node_create(site=world.site_a1, name="A1 garage", parent_id=root.pk, limit_a=Decimal(32))
    schedule = node_schedule_set(
        node=garage,
        rows=[
            ScheduleRow(start_time=time(17), end_time=time(20), limit_a=Decimal(40)),
            ScheduleRow(start_time=time(22), end_time=time(6), limit_a=Decimal(25), day_of_week=("FRIDAY",)),
        ],
    )
    electrical = evse_electrical_set(evse=tenants.evse_a1, node_id=garage.pk)
    return {
        "root": root,
        "garage": garage,
        "schedule": schedule,
        "electrical": electrical,
        "root_a2": grid_node_create(site=world.site_a2, name="A2 grid"),
        "root_b1": grid_node_create(site=world.site_b1, name="B1 grid"),
        "signal": grid_signal_record(
            node=root,
            kind=SignalKind.METER_READING,
            l1_a=Decimal(1),
            l2_a=Decimal(2),
            l3_a=Decimal(3),
            measured_at=at(6),
        ),
        "allocation": EvseAllocation.objects.create(
            evse=tenants.evse_a1, limit_a=Decimal(16), computed_at=at(6)
        ),
        "profile": ChargingProfileRecord.objects.create(
            station=world.station_a1, evse_id=1, kind=ProfileKind.DEFAULT, profile_id=1, profile={}
        ),
    }


def node_form(node, **changes) -> dict:
    data = {
        "parent": node.parent_id or "",
        "name": node.name,
        "limit_a": node.limit_a if node.limit_a is not None else "",
        "limit_kw": node.limit_kw if node.limit_kw is not None else "",
        "voltage_v": node.voltage_v,
        "schedules-TOTAL_FORMS": 0,
        "schedules-INITIAL_FORMS": 0,
    }
    data.update(changes)
    return data


def schedule_forms(node, forms: list[dict], *, initial: int) -> dict:
    data = {"schedules-TOTAL_FORMS": len(forms), "schedules-INITIAL_FORMS": initial}
    for index, form in enumerate(forms):
        for key, value in form.items():
            data[f"schedules-{index}-{key}"] = value
        data[f"schedules-{index}-node"] = node.pk
    return data


def schedule_of(node) -> list[tuple]:
    return list(
        NodeLimitSchedule.objects.filter(node=node).values_list(
            "position", "start_time", "end_time", "day_of_week", "limit_a"
        )
    )


# --- grid nodes ---------------------------------------------------------------------------------------------


def test_a_node_is_added_with_its_schedule_through_the_service(world, topology, admin_client_for):
    client = admin_client_for(world.operator_a)
    page = client.get(add_url(GridNode))
    assert page.status_code == 200
    fields = page.context["adminform"].form.fields
    # Only what the operator may manage is offered.
    assert set(fields["site"].queryset) == {world.site_a1, world.site_a2}
    assert set(fields["parent"].queryset) == {topology["root"], topology["garage"], topology["root_a2"]}
    assert fields["parent"].label_from_instance(topology["root_a2"]) == "A2 / A2 grid"
    data = {
        "site": world.site_a1.pk,
        "parent": topology["root"].pk,
        "name": " Car park ",
        "kind": "circuit",
        "limit_a": "",
        "limit_kw": "11.04",
        "voltage_v": 230,
        **schedule_forms(
            GridNode(),
            [{"position": 0, "start_time": "07:00", "end_time": "09:00", "day_of_week": '["MONDAY"]', "limit_a": "10"}],
            initial=0,
        ),
    }  # fmt: skip
    data.pop("schedules-0-node")
    response = client.post(add_url(GridNode), data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    node = GridNode.objects.get(name="Car park")
    assert (node.site_id, node.parent_id, node.kind, node.limit_a, node.limit_kw) == (
        world.site_a1.pk,
        topology["root"].pk,
        "circuit",
        None,
        Decimal("11.04"),
    )
    assert schedule_of(node) == [(0, time(7), time(9), ["MONDAY"], Decimal(10))]


def test_the_schedule_inline_replaces_the_rows(world, topology, admin_client_for):
    garage = topology["garage"]
    first, second = topology["schedule"]
    data = node_form(
        garage,
        name="Garage",
        **schedule_forms(
            garage,
            [
                {"id": first.pk, "position": 0, "start_time": "17:00", "end_time": "20:00", "day_of_week": "[]", "limit_a": "35"},
                {"id": second.pk, "position": 1, "start_time": "22:00", "end_time": "06:00", "day_of_week": '["FRIDAY"]', "limit_a": "25", "DELETE": "on"},
                {"position": 5, "start_time": "06:00", "end_time": "09:00", "day_of_week": '["MONDAY", "TUESDAY"]', "limit_a": "30"},
            ],
            initial=2,
        ),
    )  # fmt: skip
    response = admin_client_for(world.operator_a).post(change_url(garage), data)
    assert response.status_code == 302
    garage.refresh_from_db()
    assert (garage.name, garage.kind, garage.site_id) == ("Garage", "circuit", world.site_a1.pk)
    # Numbered again in their order.
    assert schedule_of(garage) == [
        (0, time(17), time(20), [], Decimal(35)),
        (1, time(6), time(9), ["MONDAY", "TUESDAY"], Decimal(30)),
    ]


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"parent": ""}, "Site {site} already has its grid connection ('A1 grid', node {root}): every other node needs a parent."),
        ({"name": "A1 grid"}, "Site {site} already has a node named 'A1 grid'."),
        ({"limit_a": "-1"}, "limit_a: must be 0 or more."),
    ],
)  # fmt: skip
def test_node_rules_are_form_errors(world, topology, admin_client_for, changes, error):
    garage = topology["garage"]
    before = rows()
    response = admin_client_for(world.operator_a).post(change_url(garage), node_form(garage, **changes))
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        error.format(site=world.site_a1.pk, root=topology["root"].pk)
    ]
    assert rows() == before


def test_a_node_cannot_move_under_its_own_subtree_or_another_site(world, topology, admin_client_for):
    client = admin_client_for(world.operator_a)
    root, garage = topology["root"], topology["garage"]
    before = rows()
    response = client.post(change_url(root), node_form(root, parent=garage.pk))
    assert response.context["adminform"].form.non_field_errors() == [
        f"parent: node {garage.pk} is under node {root.pk}; a node cannot hang off its own subtree."
    ]
    foreign = client.post(change_url(garage), node_form(garage, parent=topology["root_b1"].pk))
    assert list(foreign.context["adminform"].form.errors) == ["parent"]
    other_site = client.post(change_url(garage), node_form(garage, parent=topology["root_a2"].pk))
    assert other_site.context["adminform"].form.non_field_errors() == [
        f"parent: grid node {topology['root_a2'].pk} is not a node of site {world.site_a1.pk}."
    ]
    assert rows() == before


def test_a_second_root_is_a_form_error_on_the_add_page(world, topology, admin_client_for):
    before = rows()
    response = admin_client_for(world.operator_a).post(
        add_url(GridNode),
        {"site": world.site_a1.pk, "name": "Another", "kind": "grid_connection", "voltage_v": 230,
         "schedules-TOTAL_FORMS": 0, "schedules-INITIAL_FORMS": 0},
    )  # fmt: skip
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        f"Site {world.site_a1.pk} already has its grid connection ('A1 grid', node {topology['root'].pk}): "
        "every other node needs a parent."
    ]
    assert rows() == before


def test_a_bad_schedule_row_is_a_form_error(world, topology, admin_client_for):
    garage = topology["garage"]
    before = rows()
    data = node_form(
        garage,
        **schedule_forms(
            garage,
            [{"position": 0, "start_time": "17:00", "end_time": "20:00", "day_of_week": '["Funday"]', "limit_a": "35"}],
            initial=0,
        ),
    )  # fmt: skip
    response = admin_client_for(world.operator_a).post(change_url(garage), data)
    assert response.status_code == 200
    assert response.context["inline_admin_formsets"][0].formset.errors == [
        {"__all__": ["row.day_of_week: unknown day(s) 'Funday'."]}
    ]
    assert rows() == before


@pytest.mark.parametrize("actor", ["host_a1", "finance_a"])
def test_site_hosts_and_finance_read_the_topology_only(world, topology, admin_client_for, actor):
    client = admin_client_for(getattr(world, actor))
    garage = topology["garage"]
    page = client.get(change_url(garage))
    assert page.status_code == 200
    assert (page.context["has_change_permission"], page.context["has_delete_permission"]) == (False, False)
    inline = page.context["inline_admin_formsets"][0]
    assert (inline.has_add_permission, inline.has_change_permission, inline.has_delete_permission) == (
        False,
        False,
        False,
    )
    before = rows()
    assert client.post(change_url(garage), node_form(garage, name="Taken")).status_code == 403
    assert client.get(add_url(GridNode)).status_code == 403
    assert client.post(delete_url(garage), {"post": "yes"}).status_code == 403
    electrical = topology["electrical"]
    assert (
        client.post(change_url(electrical), {"node": topology["root"].pk, "phase_rotation": "3"}).status_code
        == 403
    )
    assert client.get(add_url(EvseElectrical)).status_code == 403
    assert rows() == before
    # A site host sees nothing of the other site.
    if actor == "host_a1":
        assert client.get(change_url(topology["root_a2"])).status_code == 302


def test_another_organisations_rows_are_not_there(world, topology, admin_client_for):
    client = admin_client_for(world.operator_b)
    before = rows()
    for key in ("root", "garage", "electrical", "signal", "allocation", "profile"):
        response = client.get(change_url(topology[key]))
        assert (response.status_code, response["Location"]) == (302, reverse("admin:index")), key
    assert client.get(change_url(topology["schedule"][0])).status_code == 302
    client.post(change_url(topology["garage"]), node_form(topology["garage"], name="Taken"))
    assert rows() == before


def test_only_superusers_delete_nodes_and_through_the_service(world, topology, admin_client_for):
    spare = grid_node_create(site=world.site_a2, name="A2 spare", parent_id=topology["root_a2"].pk)
    assert admin_client_for(world.operator_a).post(delete_url(spare), {"post": "yes"}).status_code == 403
    client = admin_client_for(world.superuser)
    # Django's own check: the EVSE wiring protects the node it hangs off.
    protected = client.post(delete_url(topology["garage"]), {"post": "yes"})
    assert (protected.status_code, protected.context["title"]) == (200, "Cannot delete grid node")
    # The service refuses what Django would cascade: a node with nodes under it.
    assert client.post(delete_url(topology["root_a2"]), {"post": "yes"}).status_code == 400
    assert set(GridNode.objects.filter(site=world.site_a2)) == {topology["root_a2"], spare}
    assert client.post(delete_url(spare), {"post": "yes"}).status_code == 302
    assert client.post(delete_url(topology["root_a2"]), {"post": "yes"}).status_code == 302
    assert not GridNode.objects.filter(site=world.site_a2).exists()
    assert GridNode.objects.filter(pk=topology["garage"].pk).exists()


# --- EVSE wiring -------------------------------------------------------------------------------------------


def test_evse_wiring_is_set_through_the_service(world, topology, admin_client_for):
    client = admin_client_for(world.operator_a)
    evse = EvseFactory(station=world.station_a1, evse_id=9)
    page = client.get(add_url(EvseElectrical))
    assert set(page.context["adminform"].form.fields["node"].queryset) == {
        topology["root"],
        topology["garage"],
        topology["root_a2"],
    }
    body = {"evse": evse.pk, "node": topology["root"].pk, "phase_rotation": "231", "min_current_a": "8",
            "max_current_a": "16", "priority": 2}  # fmt: skip
    response = client.post(add_url(EvseElectrical), body)
    assert response.status_code == 302
    assert EvseElectrical.objects.filter(evse=evse).values_list(
        "node_id", "phase_rotation", "min_current_a", "max_current_a", "priority"
    ).get() == (topology["root"].pk, "231", Decimal(8), Decimal(16), 2)
    electrical = topology["electrical"]
    changed = client.post(
        change_url(electrical),
        {"node": topology["root"].pk, "phase_rotation": "3", "min_current_a": "6", "max_current_a": "32", "priority": 0},
    )  # fmt: skip
    assert changed.status_code == 302
    electrical.refresh_from_db()
    assert (electrical.node_id, electrical.phase_rotation, electrical.evse_id) == (
        topology["root"].pk,
        "3",
        world.station_a1.evses.get(pk=electrical.evse_id).pk,
    )


@pytest.mark.parametrize(
    ("changes", "field", "error"),
    [
        ({"phase_rotation": "113"}, None, "phase_rotation: the grid phases (1-3, each at most once) the charger's L1, L2, L3 are wired to, e.g. '123', '231', or '3' for a single-phase charger on L3; not '113'."),
        ({"min_current_a": "20", "max_current_a": "16"}, None, "min_current_a (20) must not exceed max_current_a (16)."),
        ({"node": "root_a2"}, None, "node: grid node {root_a2} is not a node of site {site}."),
        ({"node": "root_b1"}, "node", None),
        ({"evse": "foreign_evse"}, "evse", None),
    ],
)  # fmt: skip
def test_evse_wiring_rules_are_form_errors(world, topology, admin_client_for, changes, field, error):
    foreign_evse = EvseFactory(station=world.station_b1, evse_id=9)
    ids = {
        "root_a2": topology["root_a2"].pk,
        "root_b1": topology["root_b1"].pk,
        "foreign_evse": foreign_evse.pk,
    }
    evse = EvseFactory(station=world.station_a1, evse_id=9)
    body = {"evse": evse.pk, "node": topology["root"].pk, "phase_rotation": "123", "min_current_a": "6",
            "max_current_a": "32", "priority": 0}  # fmt: skip
    body.update({key: ids.get(value, value) for key, value in changes.items()})
    before = rows()
    response = admin_client_for(world.operator_a).post(add_url(EvseElectrical), body)
    assert response.status_code == 200
    form = response.context["adminform"].form
    if field is None:
        assert form.non_field_errors() == [error.format(site=world.site_a1.pk, **ids)]
    else:
        assert list(form.errors) == [field]
    assert rows() == before


# --- what the system wrote ---------------------------------------------------------------------------------


@pytest.mark.parametrize("actor", ["operator_a", "superuser"])
def test_signals_allocations_profiles_and_schedule_rows_are_read_only(
    world, topology, admin_client_for, actor
):
    client = admin_client_for(getattr(world, actor))
    before = rows()
    for key, model in (
        ("signal", GridSignal),
        ("allocation", EvseAllocation),
        ("profile", ChargingProfileRecord),
    ):
        obj = topology[key]
        page = client.get(change_url(obj))
        assert page.status_code == 200, key
        assert (page.context["has_change_permission"], page.context["has_delete_permission"]) == (
            False,
            False,
        )
        assert client.post(change_url(obj), {"limit_a": "0", "l1_a": "0"}).status_code == 403, key
        assert client.post(delete_url(obj), {"post": "yes"}).status_code == 403, key
        assert client.get(add_url(model)).status_code == 403, key
    row = topology["schedule"][0]
    assert client.post(change_url(row), {"limit_a": "0"}).status_code == 403
    assert client.get(add_url(NodeLimitSchedule)).status_code == 403
    assert rows() == before


def test_signal_and_profile_changelists_are_newest_first_without_full_counts(
    world, topology, admin_client_for
):
    newer = grid_signal_record(
        node=topology["root"],
        kind=SignalKind.DYNAMIC_LIMIT,
        l1_a=Decimal(5),
        l2_a=Decimal(5),
        l3_a=Decimal(5),
        measured_at=at(7),
    )
    client = admin_client_for(world.operator_a)
    signals = client.get(reverse("admin:energy_gridsignal_changelist")).context["cl"]
    assert [signal.pk for signal in signals.result_list] == [newer.pk, topology["signal"].pk]
    assert signals.show_full_result_count is False
    profiles = client.get(reverse("admin:energy_chargingprofilerecord_changelist")).context["cl"]
    assert [profile.pk for profile in profiles.result_list] == [topology["profile"].pk]
    assert profiles.show_full_result_count is False
    nodes = client.get(reverse("admin:energy_gridnode_changelist") + f"?site__id__exact={world.site_a1.pk}")
    assert [node.name for node in nodes.context["cl"].result_list] == ["A1 grid", "A1 garage"]
