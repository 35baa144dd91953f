"""The demo's load management (load_demo): created once, through the services."""

from energy.models import EvseElectrical, GridNode
from energy.services.demo import demo_energy_load
from stations.services.demo import demo_data_load


def test_demo_topology_is_created_once(db):
    data = demo_data_load()
    assert demo_energy_load(organisation=data.organisation) == 6
    assert demo_energy_load(organisation=data.organisation) == 0
    nodes = list(GridNode.objects.order_by("id").values_list("name", "kind", "limit_a", "parent__name"))
    assert [(name, kind, int(limit), parent) for name, kind, limit, parent in nodes] == [
        ("Grid connection", "grid_connection", 63, None),
        ("Chargers circuit", "circuit", 40, "Grid connection"),
    ]
    managed = EvseElectrical.objects.order_by("evse__station__identity", "evse__evse_id")
    assert [(e.evse.station.identity, e.evse.evse_id, e.node.name) for e in managed] == [
        ("DEMO-BER-01", 1, "Chargers circuit"),
        ("DEMO-BER-01", 2, "Chargers circuit"),
        ("DEMO-BER-02", 1, "Chargers circuit"),
        ("DEMO-BER-02", 2, "Chargers circuit"),
    ]
