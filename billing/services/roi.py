"""The ROI view (docs/kpis.md#roi): an organisation's inputs (costs, savings, a baseline uptime) against the
last 365 days of its KpiDay rows (billing.services.kpis computes those)."""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.enums import Capability
from accounts.models import Organisation, User
from accounts.selectors import organisation_list
from billing.models import KpiDay, RoiInputs
from cpms.errors import NotFound, PermissionDenied, ValidationFailed
from stations.scope import user_can

ZERO = Decimal(0)

ROI_INPUT_FIELDS = (
    "cpms_cost_annual",
    "integration_cost",
    "integration_years",
    "support_cost_annual",
    "energy_savings_annual",
    "truck_roll_cost",
    "incremental_costs_annual",
    "baseline_uptime_pct",
)


@dataclass(frozen=True)
class RoiResult:
    """The annual ROI lines (docs/kpis.md#roi). Amounts in the organisation's currency, rounded to 0.01."""

    revenue_365: Decimal
    uptime_pct: Decimal | None
    remote_resolved_365: int
    incremental_revenue: Decimal
    energy_savings: Decimal
    om_savings: Decimal
    incremental_costs: Decimal
    annual_return: Decimal
    integration_annual: Decimal
    annual_cost: Decimal
    roi_pct: Decimal | None


def roi_compute(
    *, inputs: RoiInputs, revenue_365: Decimal, uptime_pct: Decimal | None, remote_resolved_365: int
) -> RoiResult:
    """Pure: the ROI from the inputs and the last 365 days' revenue, uptime and remote resolutions.

    Incremental revenue from uptime = revenue * (uptime - baseline) / uptime (0 without a baseline or an
    uptime); O&M savings = remotely resolved incidents * truck roll cost."""
    cent = Decimal("0.01")
    if inputs.baseline_uptime_pct is None or not uptime_pct:
        incremental_revenue = ZERO
    else:
        incremental_revenue = revenue_365 * (uptime_pct - Decimal(inputs.baseline_uptime_pct)) / uptime_pct
    om_savings = Decimal(remote_resolved_365) * Decimal(inputs.truck_roll_cost)
    energy_savings = Decimal(inputs.energy_savings_annual)
    incremental_costs = Decimal(inputs.incremental_costs_annual)
    annual_return = incremental_revenue + energy_savings + om_savings - incremental_costs
    integration_annual = Decimal(inputs.integration_cost) / Decimal(inputs.integration_years)
    annual_cost = Decimal(inputs.cpms_cost_annual) + integration_annual + Decimal(inputs.support_cost_annual)
    roi_pct = None if not annual_cost else (annual_return / annual_cost * 100).quantize(cent)
    return RoiResult(
        revenue_365=revenue_365.quantize(cent),
        uptime_pct=None if uptime_pct is None else uptime_pct.quantize(Decimal("0.001")),
        remote_resolved_365=remote_resolved_365,
        incremental_revenue=incremental_revenue.quantize(cent),
        energy_savings=energy_savings.quantize(cent),
        om_savings=om_savings.quantize(cent),
        incremental_costs=incremental_costs.quantize(cent),
        annual_return=annual_return.quantize(cent),
        integration_annual=integration_annual.quantize(cent),
        annual_cost=annual_cost.quantize(cent),
        roi_pct=roi_pct,
    )


def roi_organisations(*, user: User) -> list[Organisation]:
    """The organisations whose ROI the user may see (export right, organisation-wide)."""
    return [
        org
        for org in organisation_list(user=user).order_by("name")
        if user_can(user=user, capability=Capability.EXPORT, organisation_id=org.pk)
    ]


def roi_access(*, user: User, organisation_id: int | None = None) -> Organisation:
    """The organisation of the ROI view: `organisation_id`, or the user's first. NotFound outside the user's
    organisations, PermissionDenied without the export right there."""
    if organisation_id is None:
        allowed = roi_organisations(user=user)
        if not allowed:
            raise PermissionDenied("Your role does not give access to the ROI view.")
        return allowed[0]
    organisation = organisation_list(user=user).filter(pk=organisation_id).first()
    if organisation is None:
        raise NotFound(f"Organisation {organisation_id} not found.")
    if not user_can(user=user, capability=Capability.EXPORT, organisation_id=organisation.pk):
        raise PermissionDenied("Your role does not give access to the ROI view.")
    return organisation


def roi_inputs_get(*, organisation: Organisation) -> RoiInputs:
    """The saved inputs, or unsaved defaults (a GET writes nothing)."""
    return RoiInputs.objects.filter(organisation=organisation).first() or RoiInputs(organisation=organisation)


def roi_can_edit(*, user: User, organisation: Organisation) -> bool:
    return any(
        user_can(user=user, capability=capability, organisation_id=organisation.pk)
        for capability in (Capability.BILLING, Capability.EXPORT)
    )


def roi_inputs_validate(data: dict[str, Any]) -> dict[str, str]:
    """Field -> message for every invalid value (amounts negative, years below 1, baseline outside 0-100)."""
    errors = {}
    for field, value in data.items():
        if value is None:
            continue
        if field == "integration_years":
            if value < 1:
                errors[field] = "Must be at least 1 year."
        elif field == "baseline_uptime_pct":
            if not 0 <= value <= 100:
                errors[field] = "Must be between 0 and 100."
        elif value < 0:
            errors[field] = "Must not be negative."
    return errors


@transaction.atomic
def roi_inputs_update(*, user: User, organisation: Organisation, data: dict[str, Any]) -> RoiInputs:
    """Saves some or all inputs (ROI_INPUT_FIELDS). Needs the billing or export right on the organisation."""
    if not roi_can_edit(user=user, organisation=organisation):
        raise PermissionDenied("Your role may not edit the ROI inputs.")
    unknown = set(data) - set(ROI_INPUT_FIELDS)
    if unknown:
        raise ValidationFailed(f"Unknown fields: {', '.join(sorted(unknown))}.")
    errors = roi_inputs_validate(data)
    if errors:
        raise ValidationFailed("; ".join(f"{field}: {message}" for field, message in sorted(errors.items())))
    if "integration_years" in data and data["integration_years"] is None:
        raise ValidationFailed("integration_years: Must be at least 1 year.")
    inputs, _ = RoiInputs.objects.select_for_update().get_or_create(organisation=organisation)
    for field, value in data.items():
        if value is None and field != "baseline_uptime_pct":
            value = ZERO
        setattr(inputs, field, value)
    inputs.updated_by = user
    inputs.save()
    return inputs


def roi_report(*, organisation: Organisation, today: date | None = None) -> RoiResult:
    """The ROI of the organisation from its inputs and the KpiDay rows of the last 365 days."""
    today = today or timezone.now().date()
    inputs = roi_inputs_get(organisation=organisation)
    rows = KpiDay.objects.filter(
        organisation=organisation,
        currency=organisation.currency,
        day__gt=today - timedelta(days=365),
        day__lte=today,
    )
    total = rows.aggregate(
        revenue=Sum("revenue"),
        observed=Sum("observed_s"),
        in_service=Sum("in_service_s"),
        remote=Sum("resolved_remotely"),
    )
    uptime = None
    if total["observed"]:
        uptime = Decimal(total["in_service"]) * 100 / Decimal(total["observed"])
    return roi_compute(
        inputs=inputs,
        revenue_365=Decimal(total["revenue"] or 0),
        uptime_pct=uptime,
        remote_resolved_365=total["remote"] or 0,
    )
