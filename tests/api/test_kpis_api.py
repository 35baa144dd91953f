"""GET /api/v1/kpis/ and GET/PATCH /api/v1/roi/: values, scope, validation, denials."""

from datetime import timedelta
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from accounts.services import membership_set
from billing.models import RoiInputs
from billing.services.kpis import kpi_days_compute
from tests.billing.test_kpis import DAY, NOW, berlin, connection, session, status, two_port_station
from tests.factories import OrganisationFactory, UserFactory
from tests.support import row

PERIOD = {"start": f"{DAY:%Y-%m-%d}", "end": f"{DAY:%Y-%m-%d}"}


@pytest.fixture
def kpis(world):
    a1 = two_port_station(world.site_a1, identity="UP-1", since=berlin(DAY - timedelta(days=1), 12))
    status(a1, 1, "Faulted", berlin(DAY, 10))
    status(a1, 1, "Available", berlin(DAY, 12, 30))
    connection(a1, False, berlin(DAY, 20))
    connection(a1, True, berlin(DAY, 21))
    session(a1, started=berlin(DAY, 9), stopped=berlin(DAY, 10), energy_wh=12000, tx="P1")
    a2 = two_port_station(world.site_a2, identity="A2-UP", since=berlin(DAY - timedelta(days=1), 12))
    session(a2, started=berlin(DAY, 10), stopped=berlin(DAY, 11), energy_wh=1000, tx="P2")
    kpi_days_compute(station_ids=[a1.pk, a2.pk], days=[DAY], now=NOW)
    return a1, a2


def test_kpis_summary_values_and_series(world, api, kpis):
    response = api(world.operator_a).get("/api/v1/kpis/", {**PERIOD, "station": "UP-1"})
    assert response.status_code == 200
    body = response.json()
    assert (body["observed_s"], body["in_service_s"], body["uptime_pct"]) == (172800, 156600, 90.625)
    assert (body["sessions"], body["sessions_per_port_day"], body["kwh_per_port_day"]) == (1, 0.5, 6.0)
    assert (body["mttr_s"], body["currency"], body["revenue"]) == (None, "EUR", "0.0000")
    assert body["series"] == [
        {
            "day": f"{DAY:%Y-%m-%d}",
            "uptime_pct": 90.625,
            "sessions_per_port": 0.5,
            "kwh_per_port": 6.0,
            "revenue": "0.0000",
        }
    ]


def test_kpis_scope(world, api, kpis):
    assert api(world.operator_a).get("/api/v1/kpis/", PERIOD).json()["sessions"] == 2
    assert api(world.host_a1).get("/api/v1/kpis/", PERIOD).json()["sessions"] == 1
    assert api(world.operator_b).get("/api/v1/kpis/", PERIOD).json()["sessions"] == 0
    for user, params, detail in (
        (world.operator_b, {"station": "UP-1"}, "Station 'UP-1' not found."),
        (world.operator_b, {"site": world.site_a1.pk}, f"Site {world.site_a1.pk} not found."),
        (world.host_a1, {"station": "A2-UP"}, "Station 'A2-UP' not found."),
        (world.host_a1, {"site": world.site_a2.pk}, f"Site {world.site_a2.pk} not found."),
    ):
        response = api(user).get("/api/v1/kpis/", {**PERIOD, **params})
        assert (response.status_code, response.json()) == (404, {"detail": detail})


def test_kpis_bad_input_and_anonymous(world, api):
    response = api(world.operator_a).get("/api/v1/kpis/", {"start": "2026-11-10", "end": "2026-11-09"})
    assert (response.status_code, response.json()) == (
        400,
        {"detail": "The end date is before the start date."},
    )
    response = api(world.operator_a).get("/api/v1/kpis/", {"start": "soon"})
    assert response.status_code == 400
    assert "start" in response.json()
    assert api(world.operator_a).get("/api/v1/kpis/", {"colour": "red"}).status_code == 400
    assert APIClient().get("/api/v1/kpis/").status_code in (401, 403)


# --- ROI --------------------------------------------------------------------------------------------------


def test_roi_get_and_patch(world, api):
    client = api(world.finance_a)
    body = client.get("/api/v1/roi/").json()
    assert (body["organisation"], body["currency"], body["can_edit"]) == (world.org_a.pk, "EUR", True)
    assert body["result"]["roi_pct"] is None
    response = client.patch(
        "/api/v1/roi/",
        {"cpms_cost_annual": "1000", "energy_savings_annual": "250", "integration_years": 2},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["result"]["roi_pct"] == "25.00"
    assert response.json()["inputs"]["integration_years"] == 2
    saved = RoiInputs.objects.get(organisation=world.org_a)
    assert (saved.cpms_cost_annual, saved.updated_by) == (Decimal("1000"), world.finance_a)


def test_roi_patch_refusals_change_nothing(world, api):
    api(world.operator_a).patch("/api/v1/roi/", {"truck_roll_cost": "100"}, format="json")
    saved = RoiInputs.objects.get(organisation=world.org_a)
    before = row(saved)
    staff = UserFactory(username="staff_a")
    membership_set(user=staff, organisation=world.org_a, role="operator_staff")
    cases = [
        (world.operator_a, "", {"truck_roll_cost": "-1"}, 400),
        (world.operator_a, "", {"integration_years": 0}, 400),
        (world.operator_a, "", {"organisation": world.org_b.pk}, 400),  # unknown field
        (world.operator_b, f"?organisation={world.org_a.pk}", {"truck_roll_cost": "1"}, 404),
        (world.host_a1, "", {"truck_roll_cost": "1"}, 403),
        (staff, "", {"truck_roll_cost": "1"}, 403),
    ]
    for user, query, data, code in cases:
        response = api(user).patch(f"/api/v1/roi/{query}", data, format="json")
        assert response.status_code == code, (user, data, response.json())
    assert row(saved) == before
    assert api(world.operator_b).get(f"/api/v1/roi/?organisation={world.org_a.pk}").status_code == 404
    assert api(world.host_a1).get("/api/v1/roi/").status_code == 403


def test_roi_of_one_of_several_organisations(world, api):
    other = OrganisationFactory(name="Org C", currency="CHF")
    membership_set(user=world.operator_a, organisation=other, role="finance")
    body = api(world.operator_a).get(f"/api/v1/roi/?organisation={other.pk}").json()
    assert (body["organisation"], body["currency"]) == (other.pk, "CHF")
    response = api(world.operator_a).patch(
        f"/api/v1/roi/?organisation={other.pk}", {"truck_roll_cost": "75"}, format="json"
    )
    assert response.status_code == 200
    assert RoiInputs.objects.get(organisation=other).truck_roll_cost == Decimal("75")
    assert not RoiInputs.objects.filter(organisation=world.org_a).exists()
