"""Portal KPI page (tiles with values and definitions, charts, filters, scope) and ROI view (lines, inputs
form, validation), with the denials."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client

from accounts.services import membership_set
from billing.models import RoiInputs
from billing.services.kpis import kpi_days_compute
from cpms.portal.kpis import DEFINITIONS
from tests.billing.test_kpis import DAY, NOW, berlin, connection, session, status, two_port_station
from tests.factories import UserFactory
from tests.support import row

PERIOD = f"start={DAY:%Y-%m-%d}&end={DAY:%Y-%m-%d}"


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def tile(html: str, key: str) -> str:
    match = re.search(rf'<div class="stat" data-kpi="{key}">\s*<span class="value">([^<]*)</span>', html)
    assert match, f"no tile {key}"
    return match.group(1)


@pytest.fixture
def kpis(world):
    """Station UP-1 at site A1 (uptime 90.625 %), one at A2, one of organisation B, computed for DAY."""
    a1 = two_port_station(world.site_a1, identity="UP-1", since=berlin(DAY - timedelta(days=1), 12))
    status(a1, 1, "Faulted", berlin(DAY, 10))
    status(a1, 1, "Available", berlin(DAY, 12, 30))
    connection(a1, False, berlin(DAY, 20))
    connection(a1, True, berlin(DAY, 21))
    session(a1, started=berlin(DAY, 9), stopped=berlin(DAY, 10), energy_wh=12000, tx="P1")
    a2 = two_port_station(world.site_a2, identity="A2-UP", since=berlin(DAY - timedelta(days=1), 12))
    for n in range(3):
        session(a2, started=berlin(DAY, 10 + n), stopped=berlin(DAY, 11 + n), energy_wh=1000, tx=f"P2{n}")
    b1 = two_port_station(world.site_b1, identity="B1-UP", since=berlin(DAY - timedelta(days=1), 12))
    kpi_days_compute(station_ids=[a1.pk, a2.pk, b1.pk], days=[DAY], now=NOW)
    return a1, a2, b1


def test_kpi_page_anonymous_goes_to_login(world):
    response = Client().get("/portal/kpis/")
    assert (response.status_code, response["Location"]) == (302, "/portal/login/?next=/portal/kpis/")


def test_kpi_page_shows_values_definitions_and_charts(world, kpis):
    a1, _, _ = kpis
    response = client_for(world.operator_a).get(f"/portal/kpis/?station={a1.pk}&{PERIOD}")
    assert response.status_code == 200
    html = response.content.decode()
    assert tile(html, "uptime") == "90.6 %"
    assert tile(html, "sessions") == "0.50"  # 1 session / 2 port-days
    assert tile(html, "kwh") == "6.00"
    assert tile(html, "mttr") == "—"
    assert html.count('<p class="definition">') == len(DEFINITIONS) == 10
    for definition in DEFINITIONS.values():
        assert definition in html
    assert "Uptime per day" in html and "Revenue per day" in html
    assert 'id="computed-at"' in html


def test_kpi_page_sums_the_organisation_and_site_hosts_see_their_sites(world, kpis):
    html = client_for(world.operator_a).get(f"/portal/kpis/?{PERIOD}").content.decode()
    assert tile(html, "sessions") == "1.00"  # 4 sessions / 4 port-days
    html = client_for(world.finance_a).get(f"/portal/kpis/?{PERIOD}").content.decode()
    assert tile(html, "sessions") == "1.00"
    html = client_for(world.host_a1).get(f"/portal/kpis/?{PERIOD}").content.decode()
    assert tile(html, "sessions") == "0.50"
    assert "A2-UP" not in html and "B1-UP" not in html
    html = client_for(world.operator_b).get(f"/portal/kpis/?{PERIOD}").content.decode()
    assert tile(html, "sessions") == "0.00"
    assert tile(html, "uptime") == "100.0 %"
    assert "UP-1" not in html


def test_kpi_page_another_tenants_site_or_station_is_404(world, kpis):
    a1, a2, _ = kpis
    for user, query in (
        (world.operator_b, f"site={world.site_a1.pk}"),
        (world.operator_b, f"station={a1.pk}"),
        (world.host_a1, f"site={world.site_a2.pk}"),
        (world.host_a1, f"station={a2.pk}"),
    ):
        response = client_for(user).get(f"/portal/kpis/?{query}&{PERIOD}")
        assert response.status_code == 404, (user, query)
        assert "UP" not in response.content.decode().split("<main")[-1]


def test_kpi_page_bad_dates_are_400_and_no_rows_is_the_empty_state(world):
    response = client_for(world.operator_a).get(f"/portal/kpis/?start={DAY}&end={DAY - timedelta(days=1)}")
    assert response.status_code == 400
    assert "The end date is before the start date." in response.content.decode()
    assert client_for(world.operator_a).get("/portal/kpis/?start=yesterday").status_code == 400
    response = client_for(world.operator_a).get(f"/portal/kpis/?{PERIOD}")
    assert response.status_code == 200
    assert "No KPIs computed for this period yet." in response.content.decode()
    # Without filters: the last 30 days.
    assert client_for(world.operator_a).get("/portal/kpis/").context["summary"].days == 30


# --- ROI --------------------------------------------------------------------------------------------------

VALID = {
    "cpms_cost_annual": "12000",
    "integration_cost": "9000",
    "integration_years": "3",
    "support_cost_annual": "2000",
    "energy_savings_annual": "1500",
    "truck_roll_cost": "250",
    "incremental_costs_annual": "800",
    "baseline_uptime_pct": "90",
}


def line(html: str, name: str) -> str:
    match = re.search(rf'<tr data-line="{name}">.*?<t[dh] class="num">([^<]*)</t[dh]>', html, re.S)
    assert match, name
    return match.group(1)


def test_roi_page_denials(world):
    staff = UserFactory(username="staff_a")
    membership_set(user=staff, organisation=world.org_a, role="operator_staff")
    response = Client().get("/portal/roi/")
    assert (response.status_code, response["Location"]) == (302, "/portal/login/?next=/portal/roi/")
    assert client_for(world.host_a1).get("/portal/roi/").status_code == 403
    assert client_for(staff).get("/portal/roi/").status_code == 403
    assert client_for(staff).post("/portal/roi/", VALID).status_code == 403
    assert client_for(world.operator_b).get(f"/portal/roi/?organisation={world.org_a.pk}").status_code == 404
    response = client_for(world.operator_b).post(f"/portal/roi/?organisation={world.org_a.pk}", VALID)
    assert response.status_code == 404
    assert client_for(world.operator_a).get("/portal/roi/?organisation=x").status_code == 404
    assert not RoiInputs.objects.exists()


def test_roi_page_shows_every_line_and_saves_the_inputs(world, kpis):
    client = client_for(world.finance_a)
    html = client.get("/portal/roi/").content.decode()
    assert line(html, "roi_pct") == "— (enter the annual costs)"
    response = client.post(f"/portal/roi/?organisation={world.org_a.pk}", VALID)
    assert (response.status_code, response["Location"]) == (
        302,
        f"/portal/roi/?organisation={world.org_a.pk}",
    )
    inputs = RoiInputs.objects.get(organisation=world.org_a)
    assert (inputs.truck_roll_cost, inputs.integration_years, inputs.updated_by) == (
        Decimal("250"),
        3,
        world.finance_a,
    )
    html = client.get(f"/portal/roi/?organisation={world.org_a.pk}").content.decode()
    # No revenue and no remote resolutions yet: return = 1500 - 800; cost = 12000 + 3000 + 2000.
    assert line(html, "annual_return") == "700.00"
    assert line(html, "annual_cost") == "17000.00"
    assert line(html, "integration_annual") == "3000.00"
    assert line(html, "roi_pct") == "4.12 %"
    assert "incidents resolved remotely in the last 365 days x truck roll cost" in html


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("truck_roll_cost", "-5", "Must not be negative."),
        ("integration_years", "0", "Must be at least 1 year."),
        ("baseline_uptime_pct", "101", "Must be between 0 and 100."),
    ],
)
def test_roi_page_refuses_invalid_inputs(world, field, value, message):
    client = client_for(world.operator_a)
    client.post("/portal/roi/", VALID)
    inputs = RoiInputs.objects.get(organisation=world.org_a)
    before = row(inputs)
    response = client.post("/portal/roi/", {**VALID, field: value})
    assert response.status_code == 400
    assert f'<p class="form-error" data-error="{field}">{message}</p>' in response.content.decode()
    assert row(inputs) == before
