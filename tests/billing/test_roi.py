"""The ROI arithmetic (docs/kpis.md#roi), exactly, and who may edit the inputs."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.services import membership_set
from billing.models import KpiDay, RoiInputs
from billing.services.roi import roi_access, roi_compute, roi_inputs_update, roi_report
from cpms.errors import NotFound, PermissionDenied, ValidationFailed
from tests.factories import UserFactory
from tests.support import row

INPUTS = {
    "cpms_cost_annual": Decimal("12000"),
    "integration_cost": Decimal("9000"),
    "integration_years": 3,
    "support_cost_annual": Decimal("2000"),
    "energy_savings_annual": Decimal("1500"),
    "truck_roll_cost": Decimal("250"),
    "incremental_costs_annual": Decimal("800"),
    "baseline_uptime_pct": Decimal("90"),
}


def test_roi_compute_exact():
    result = roi_compute(
        inputs=RoiInputs(**INPUTS),
        revenue_365=Decimal("96000"),
        uptime_pct=Decimal("96"),
        remote_resolved_365=40,
    )
    # 96000 x (96 - 90) / 96 = 6000; 40 x 250 = 10000; 6000 + 1500 + 10000 - 800 = 16700.
    assert result.incremental_revenue == Decimal("6000.00")
    assert result.om_savings == Decimal("10000.00")
    assert result.annual_return == Decimal("16700.00")
    # 12000 + 9000 / 3 + 2000 = 17000; 16700 / 17000 x 100 = 98.235... -> 98.24.
    assert (result.integration_annual, result.annual_cost) == (Decimal("3000.00"), Decimal("17000.00"))
    assert result.roi_pct == Decimal("98.24")


def test_roi_without_baseline_or_uptime_counts_no_incremental_revenue():
    no_baseline = roi_compute(
        inputs=RoiInputs(**{**INPUTS, "baseline_uptime_pct": None}),
        revenue_365=Decimal("96000"),
        uptime_pct=Decimal("96"),
        remote_resolved_365=0,
    )
    assert (no_baseline.incremental_revenue, no_baseline.annual_return) == (
        Decimal("0.00"),
        Decimal("700.00"),
    )
    no_uptime = roi_compute(
        inputs=RoiInputs(**INPUTS), revenue_365=Decimal("0"), uptime_pct=None, remote_resolved_365=0
    )
    assert no_uptime.incremental_revenue == Decimal("0.00")


def test_roi_below_baseline_is_negative_and_zero_cost_has_no_percentage():
    result = roi_compute(
        inputs=RoiInputs(
            **{**INPUTS, "cpms_cost_annual": 0, "integration_cost": 0, "support_cost_annual": 0}
        ),
        revenue_365=Decimal("8000"),
        uptime_pct=Decimal("80"),
        remote_resolved_365=0,
    )
    # 8000 x (80 - 90) / 80 = -1000
    assert result.incremental_revenue == Decimal("-1000.00")
    assert (result.annual_cost, result.roi_pct) == (Decimal("0.00"), None)


def kpi_day(station, day: date, **values) -> KpiDay:
    return KpiDay.objects.create(
        organisation=station.organisation,
        site=station.site,
        station=station,
        day=day,
        currency=station.organisation.currency,
        computed_at=timezone.now(),
        **values,
    )


def test_roi_report_reads_the_last_365_days_of_the_organisation(world):
    today = date(2026, 11, 20)
    RoiInputs.objects.create(organisation=world.org_a, **INPUTS)
    kpi_day(
        world.station_a1,
        today,
        observed_s=1000,
        in_service_s=960,
        revenue=Decimal("50000"),
        resolved_remotely=30,
    )
    kpi_day(
        world.station_a2,
        today - timedelta(days=364),
        observed_s=1000,
        in_service_s=960,
        revenue=Decimal("46000"),
        resolved_remotely=10,
    )
    kpi_day(
        world.station_a1, today - timedelta(days=365), observed_s=1000, revenue=Decimal("99999")
    )  # too old
    kpi_day(world.station_b1, today, observed_s=1000, revenue=Decimal("99999"), resolved_remotely=99)  # org B
    result = roi_report(organisation=world.org_a, today=today)
    assert (result.revenue_365, result.uptime_pct, result.remote_resolved_365) == (
        Decimal("96000.00"),
        Decimal("96.000"),
        40,
    )
    assert (result.annual_return, result.annual_cost, result.roi_pct) == (
        Decimal("16700.00"),
        Decimal("17000.00"),
        Decimal("98.24"),
    )


def test_roi_inputs_update_validates_and_records_the_editor(world):
    inputs = roi_inputs_update(user=world.finance_a, organisation=world.org_a, data=dict(INPUTS))
    assert (inputs.updated_by, inputs.integration_years, inputs.cpms_cost_annual) == (
        world.finance_a,
        3,
        Decimal("12000"),
    )
    before = row(inputs)
    for data in (
        {"truck_roll_cost": Decimal("-1")},
        {"integration_years": 0},
        {"baseline_uptime_pct": Decimal("100.5")},
        {"colour": "red"},
    ):
        with pytest.raises(ValidationFailed):
            roi_inputs_update(user=world.operator_a, organisation=world.org_a, data=data)
    assert row(inputs) == before


def test_roi_access_and_edit_rights(world):
    staff = UserFactory(username="staff_a")
    membership_set(user=staff, organisation=world.org_a, role="operator_staff")
    assert roi_access(user=world.operator_a).pk == world.org_a.pk
    assert roi_access(user=world.finance_a, organisation_id=world.org_a.pk).pk == world.org_a.pk
    with pytest.raises(NotFound):
        roi_access(user=world.operator_b, organisation_id=world.org_a.pk)
    for user in (staff, world.host_a1):
        with pytest.raises(PermissionDenied):
            roi_access(user=user)
        with pytest.raises(PermissionDenied):
            roi_inputs_update(user=user, organisation=world.org_a, data={"truck_roll_cost": Decimal(1)})
    with pytest.raises(PermissionDenied):
        roi_inputs_update(
            user=world.operator_b, organisation=world.org_a, data={"truck_roll_cost": Decimal(1)}
        )
    assert not RoiInputs.objects.exists()
