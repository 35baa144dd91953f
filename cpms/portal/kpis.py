"""Portal pages: the KPI page (tiles with their definitions, daily charts) and the ROI view (inputs form and
every computed line with its formula). The KPIs are read from the KpiDay rows (billing/services/kpis.py)."""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django import forms
from django.shortcuts import redirect, render
from django.utils import timezone

from accounts.enums import Capability
from billing.models import RoiInputs
from billing.services.kpis import DAYS_PER_MONTH, KpiSummary
from billing.services.kpis import kpi_summary as summarise
from billing.services.roi import (
    ROI_INPUT_FIELDS,
    roi_access,
    roi_can_edit,
    roi_inputs_get,
    roi_inputs_update,
    roi_inputs_validate,
    roi_organisations,
    roi_report,
)
from cpms.errors import NotFound, PermissionDenied
from cpms.portal.base import PortalRequest, portal_view, require_capability
from cpms.templatetags.portal import duration
from stations.selectors import site_list, station_list

DEFAULT_DAYS = 30

# Shown under each tile and in docs/kpis.md: keep the two in step.
DEFINITIONS = {
    "uptime": "In-service port-seconds / observed port-seconds x 100. A port (EVSE) is in service while its "
    "station is connected and neither the station nor the port last reported Faulted or Unavailable; time "
    "before anything was known about it is not counted.",
    "sessions": "Sessions started in the period / (ports x days), counted on the local day they started.",
    "kwh": "kWh of the sessions started in the period / (ports x days).",
    "mttd": "Mean time to detect: the sum of (detected - occurred) / incidents detected in the period.",
    "mttr": "Mean time to repair: the sum of (resolved - detected) / incidents resolved in the period.",
    "remote": "Incidents resolved without a site visit / incidents resolved x 100.",
    "revenue": "CDR amounts excl. tax of sessions that stopped in the period, minus credits issued in it "
    "(CDRs in another currency are left out).",
    "revenue_port": "Revenue / port-days x 30.4375 (an average month): what one port earns in a month.",
    "energy_cost": "Energy cost of the CDRs / their energy in kWh (CDRs without a site energy price count 0).",
    "disputes": "CDRs that received their first credit in the period / CDRs of the period x 100.",
}


class KpiFilterForm(forms.Form):
    site = forms.IntegerField(required=False, min_value=1)
    station = forms.IntegerField(required=False, min_value=1)
    start = forms.DateField(required=False, input_formats=["%Y-%m-%d"])
    end = forms.DateField(required=False, input_formats=["%Y-%m-%d"])

    def clean(self):
        data = super().clean()
        end = data.get("end") or timezone.localdate()
        start = data.get("start") or end - timedelta(days=DEFAULT_DAYS - 1)
        if end < start:
            raise forms.ValidationError("The end date is before the start date.")
        if (end - start).days > 366 * 3:
            raise forms.ValidationError("The period is limited to three years.")
        data["start"], data["end"] = start, end
        return data


@dataclass(frozen=True)
class Tile:
    key: str
    label: str
    value: str
    detail: str
    definition: str


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


def _num(value: float | None, places: int = 2) -> str:
    return "—" if value is None else f"{value:.{places}f}"


def _money(value: Decimal | None, currency: str | None) -> str:
    return "—" if value is None else f"{value:,.2f} {currency or ''}".strip()


def kpi_tiles(summary: KpiSummary) -> list[Tile]:
    s = summary
    return [
        Tile("uptime", "Uptime", _pct(s.uptime_pct), f"{s.port_days} port-days", DEFINITIONS["uptime"]),
        Tile(
            "sessions",
            "Sessions per port per day",
            _num(s.sessions_per_port_day),
            f"{s.sessions} sessions",
            DEFINITIONS["sessions"],
        ),
        Tile(
            "kwh",
            "kWh per port per day",
            _num(s.kwh_per_port_day),
            f"{s.energy_wh / 1000:,.2f} kWh",
            DEFINITIONS["kwh"],
        ),
        Tile("mttd", "MTTD", duration(s.mttd_s), f"{s.incidents_detected} detected", DEFINITIONS["mttd"]),
        Tile("mttr", "MTTR", duration(s.mttr_s), f"{s.incidents_resolved} resolved", DEFINITIONS["mttr"]),
        Tile(
            "remote",
            "Remote resolution rate",
            _pct(s.remote_resolution_pct),
            f"{s.resolved_remotely} remotely",
            DEFINITIONS["remote"],
        ),
        Tile("revenue", "Revenue", _money(s.revenue, s.currency), f"{s.cdrs} CDRs", DEFINITIONS["revenue"]),
        Tile(
            "revenue_port",
            "Revenue per port per month",
            _money(s.revenue_per_port_month, s.currency),
            "",
            DEFINITIONS["revenue_port"],
        ),
        Tile(
            "energy_cost",
            "Energy cost per kWh",
            "—" if s.energy_cost_per_kwh is None else f"{s.energy_cost_per_kwh} {s.currency or ''}".strip(),
            f"{_money(s.energy_cost, s.currency)} for {s.cdr_energy_wh / 1000:,.2f} kWh",
            DEFINITIONS["energy_cost"],
        ),
        Tile(
            "disputes",
            "Billing dispute rate",
            _pct(s.dispute_rate_pct),
            f"{s.disputed_sessions} credited of {s.cdrs}",
            DEFINITIONS["disputes"],
        ),
    ]


def _label(day: date) -> str:
    return f"{day:%d %b}"


@portal_view
def kpis_page(request: PortalRequest):
    """KPIs of what the user may see (site hosts: their sites), filtered by site / station / local dates."""
    require_capability(request, Capability.VIEW)
    form = KpiFilterForm(request.GET)
    if not form.is_valid():
        status, summary = 400, None
    else:
        data = form.cleaned_data
        summary = summarise(
            user=request.user,
            site=data.get("site"),
            station=data.get("station"),
            start=data["start"],
            end=data["end"],
        )
        status = 200
    context: dict[str, object] = {
        "form": form,
        "summary": summary,
        "tiles": kpi_tiles(summary) if summary else [],
        "sites": site_list(user=request.user).order_by("name"),
        "stations": station_list(user=request.user).order_by("identity"),
    }
    if summary is not None:
        context["charts"] = {
            "uptime": [(_label(p.day), p.uptime_pct) for p in summary.series],
            "sessions": [(_label(p.day), p.sessions_per_port) for p in summary.series],
            "kwh": [(_label(p.day), p.kwh_per_port) for p in summary.series],
            "revenue": [(_label(p.day), p.revenue) for p in summary.series],
        }
    return render(request, "billing/kpis.html", context, status=status)


# --- ROI --------------------------------------------------------------------------------------------------


class RoiInputsForm(forms.ModelForm):
    class Meta:
        model = RoiInputs
        fields = list(ROI_INPUT_FIELDS)

    def clean(self):
        data = super().clean()
        for field, message in roi_inputs_validate(
            {name: value for name, value in data.items() if name in self.Meta.fields}
        ).items():
            self.add_error(field, message)
        return data


@portal_view
def roi_page(request: PortalRequest):
    """The ROI of one organisation (?organisation=): inputs (editable with the billing or export right) and
    every line with its formula. Export right needed (operator admins and finance)."""
    require_capability(request, Capability.EXPORT)
    raw = request.GET.get("organisation", "")
    if raw and not raw.isdigit():
        raise NotFound("Organisation not found.")
    organisation = roi_access(user=request.user, organisation_id=int(raw) if raw else None)
    inputs = roi_inputs_get(organisation=organisation)
    can_edit = roi_can_edit(user=request.user, organisation=organisation)
    status = 200
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied("Your role may not edit the ROI inputs.")
        form = RoiInputsForm(request.POST, instance=RoiInputs(organisation=organisation))
        if form.is_valid():
            roi_inputs_update(
                user=request.user,
                organisation=organisation,
                data={field: form.cleaned_data[field] for field in RoiInputsForm.Meta.fields},
            )
            return redirect(f"{request.path}?organisation={organisation.pk}")
        status = 400
    else:
        form = RoiInputsForm(instance=inputs)
    result = roi_report(organisation=organisation)
    context = {
        "organisation": organisation,
        "organisations": roi_organisations(user=request.user),
        "inputs": inputs,
        "form": form,
        "can_edit": can_edit,
        "result": result,
        "currency": organisation.currency,
        "days_per_month": DAYS_PER_MONTH,
    }
    return render(request, "billing/roi.html", context, status=status)
