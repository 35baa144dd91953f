from stations.models import ChargingStation
from stations.scope import station_scope_q, user_can


def visible(user):
    return set(ChargingStation.objects.filter(station_scope_q(user=user)).values_list("identity", flat=True))


def test_station_scope_per_role(world):
    assert visible(world.operator_a) == {"A1-CP1", "A2-CP1"}
    assert visible(world.operator_b) == {"B1-CP1"}
    assert visible(world.host_a1) == {"A1-CP1"}
    assert visible(world.finance_a) == {"A1-CP1", "A2-CP1"}
    assert visible(world.superuser) == {"A1-CP1", "A2-CP1", "B1-CP1"}


def test_finance_cannot_command_and_host_only_own_site(world):
    org_a = world.org_a.pk
    assert not user_can(
        user=world.finance_a, capability="command", organisation_id=org_a, site_id=world.site_a1.pk
    )
    assert user_can(user=world.host_a1, capability="command", organisation_id=org_a, site_id=world.site_a1.pk)
    assert not user_can(
        user=world.host_a1, capability="command", organisation_id=org_a, site_id=world.site_a2.pk
    )
    assert not user_can(
        user=world.operator_b, capability="view", organisation_id=org_a, site_id=world.site_a1.pk
    )
