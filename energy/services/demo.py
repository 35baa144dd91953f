"""Demo load management for `make run` (called by `load_demo`): the Berlin Depot's grid connection and one
circuit feeding both of its chargers, so the demo shows fail-safe defaults at boot and TxProfiles from the
balancer. Idempotent: a site that already has a topology is left as it is."""

from decimal import Decimal

from django.db import transaction

from accounts.models import Organisation
from energy.models import EvseElectrical, GridNode
from energy.services.topology import evse_electrical_set, grid_node_create
from stations.models import Evse, Site

DEMO_SITE = "Berlin Depot"
GRID_LIMIT_A = Decimal(63)
CIRCUIT_LIMIT_A = Decimal(40)


@transaction.atomic
def demo_energy_load(*, organisation: Organisation) -> int:
    """Create the demo topology where missing; returns how many rows were created."""
    site = Site.objects.filter(organisation=organisation, name=DEMO_SITE).first()
    if site is None or GridNode.objects.filter(site=site).exists():
        return 0
    grid = grid_node_create(site=site, name="Grid connection", limit_a=GRID_LIMIT_A)
    circuit = grid_node_create(site=site, name="Chargers circuit", parent_id=grid.pk, limit_a=CIRCUIT_LIMIT_A)
    created = 2
    for evse in Evse.objects.filter(station__site=site).order_by("station__identity", "evse_id"):
        if not EvseElectrical.objects.filter(evse=evse).exists():
            evse_electrical_set(evse=evse, node_id=circuit.pk, max_current_a=Decimal(32))
            created += 1
    return created
