"""Finance and pricing pages of the portal: revenue per site and month, CSV exports (direct downloads and
export jobs with progress), and a site's prices.

- Revenue and exports need `Capability.EXPORT` (operator admins, finance). The revenue page shows the typed
  rows of the `revenue_sites` export for the period (`billing.services.exports.readers.revenue_site_rows`),
  which the CSV is written from, so its numbers are the CSV's. Download links go to the API's CSV
  endpoints, which accept the portal's session cookie.
- Prices need `Capability.PRICING` on the site (operator admins and staff; site hosts with the per-site
  grant); `site_access` decides, `site_prices_publish` writes.
"""

from collections import OrderedDict
from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import messages
from django.http import HttpRequest, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from accounts.enums import Capability
from billing.enums import ExportKind, ExportStatus
from billing.money import minor_unit
from billing.services.exports.filters import MAX_STREAM_SPAN_DAYS, ExportFilters
from billing.services.exports.jobs import export_job_access, export_job_create, export_job_list
from billing.services.exports.readers import revenue_site_rows
from billing.services.exports.rows import RevenueRow
from billing.services.site_prices import (
    SitePricesInput,
    site_dedicated_tariff,
    site_prices_publish,
    site_tariff_in_force,
    site_tariff_overrides,
    site_tariff_versions,
    site_token_rules,
)
from cpms.errors import DomainError
from cpms.portal.base import PortalRequest, page_of, portal_view, require_capability
from cpms.portal.site_access import site_access_rules_context
from stations.models import Site
from stations.scope import site_scope_q
from stations.selectors import site_access, site_list

# --- shared helpers ------------------------------------------------------------------------------------


def money(amount: Decimal | None, currency: str) -> str:
    """'6.93 EUR', '2145 JPY'; '—' for an unknown amount."""
    if amount is None:
        return "—"
    value = amount.quantize(Decimal(1).scaleb(-minor_unit(currency)))
    return f"{value if value else abs(value)} {currency}"


def _month_start(day: date, months_back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - months_back
    return date(index // 12, index % 12 + 1, 1)


def default_period(today: date | None = None) -> tuple[date, date]:
    """The last twelve months including the current one: [first of the month 11 months ago, first of next)."""
    today = today or timezone.localdate()
    return _month_start(today, 11), _month_start(today, -1)


class PeriodForm(forms.Form):
    period_from = forms.DateField(label="From (inclusive)")
    period_to = forms.DateField(label="To (exclusive)")

    def clean(self):
        data = super().clean()
        start, end = data.get("period_from"), data.get("period_to")
        if start and end and start >= end:
            raise forms.ValidationError("'From' must be before 'To' ('To' is exclusive).")
        return data


def _period_form(request: HttpRequest) -> PeriodForm:
    if "period_from" in request.GET or "period_to" in request.GET:
        return PeriodForm(request.GET)
    start, end = default_period()
    return PeriodForm({"period_from": start.isoformat(), "period_to": end.isoformat()})


# --- revenue -------------------------------------------------------------------------------------------


def revenue_view_model(revenue_rows: list[RevenueRow]) -> dict:
    """What the revenue page shows, from the revenue_sites rows: per currency, the rows by month, the
    per-site sums over the period, the totals and the monthly net revenue for the chart. Never a sum across
    currencies. A margin or energy cost sum is marked partial when a row of it has none (a CDR without an
    energy price)."""
    currencies: OrderedDict[str, dict] = OrderedDict()
    # A CDR without a site (its station had none) has no site name: shown empty, as in the CSV.
    rows = [{**row._asdict(), "site": row.site or ""} for row in revenue_rows]
    for row in sorted(rows, key=lambda r: r["currency"]):
        currency = row["currency"]
        group = currencies.setdefault(
            currency,
            {
                "currency": currency,
                "rows": [],
                "sites": OrderedDict(),
                "months": OrderedDict(),
                "totals": None,
            },
        )
        group["rows"].append(row)
        site_key = (row["organisation"], row["site"])
        site = group["sites"].setdefault(site_key, _empty_sum(row["organisation"], row["site"]))
        _add(site, row)
        month = group["months"].setdefault(row["month"], _empty_sum("", row["month"]))
        _add(month, row)
    out = []
    for currency, group in currencies.items():
        totals = _empty_sum("", "Total")
        for row in group["rows"]:
            _add(totals, row)
        out.append(
            {
                "currency": currency,
                "rows": [_formatted(row, currency) for row in group["rows"]],
                "sites": [_formatted(s, currency) for s in group["sites"].values()],
                "totals": _formatted(totals, currency),
                # Negative months (more credited than earned) are drawn as 0; the table shows the number.
                "chart": [(m, max(s["net_excl_tax"], Decimal(0))) for m, s in group["months"].items()],
            }
        )
    return {"currencies": out}


def _empty_sum(organisation: str, label: str) -> dict:
    return {
        "organisation": organisation,
        "site": label,
        "month": label,
        "sessions": 0,
        "energy_kwh": Decimal(0),
        "revenue_excl_tax": Decimal(0),
        "credits_excl_tax": Decimal(0),
        "net_excl_tax": Decimal(0),
        "energy_cost": Decimal(0),
        "margin": Decimal(0),
        "partial": False,
    }


def _add(total: dict, row: dict) -> None:
    for key in ("sessions", "energy_kwh", "revenue_excl_tax", "credits_excl_tax", "net_excl_tax"):
        total[key] += row[key]
    if row["energy_cost"] is None:
        total["partial"] = True
    else:
        total["energy_cost"] += row["energy_cost"]
        total["margin"] += row["margin"]


def _formatted(row: dict, currency: str) -> dict:
    return {
        **row,
        "energy_kwh_text": f"{row['energy_kwh']:,.3f} kWh",
        "revenue_text": money(row["revenue_excl_tax"], currency),
        "credits_text": money(row["credits_excl_tax"], currency),
        "net_text": money(row["net_excl_tax"], currency),
        "energy_cost_text": money(row["energy_cost"], currency),
        "margin_text": money(row["margin"], currency),
        "partial": row.get("partial", row["energy_cost"] is None),
    }


@portal_view
def revenue_page(request: PortalRequest):
    require_capability(request, Capability.EXPORT)
    form = _period_form(request)
    view, error = None, ""
    if form.is_valid():
        filters = ExportFilters(
            period_from=form.cleaned_data["period_from"], period_to=form.cleaned_data["period_to"]
        )
        try:
            view = revenue_view_model(revenue_site_rows(user=request.user, filters=filters))
        except DomainError as exc:
            if exc.status_code != 400:
                raise
            error = exc.message
    return render(
        request,
        "billing/revenue.html",
        {"form": form, "view": view, "error": error, "max_days": MAX_STREAM_SPAN_DAYS},
    )


# --- exports -------------------------------------------------------------------------------------------


_DATE_INPUT = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


class ExportJobForm(forms.Form):
    kind = forms.ChoiceField(choices=ExportKind.choices)
    period_from = forms.DateField(label="From (inclusive)", widget=_DATE_INPUT)
    period_to = forms.DateField(label="To (exclusive)", widget=_DATE_INPUT)
    site = forms.TypedMultipleChoiceField(coerce=int, required=False, label="Sites (none: all)")

    def __init__(self, *args, sites=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["site"].choices = [(site.pk, site.name) for site in sites]


def _exportable_sites(user) -> list[Site]:
    return list(
        Site.objects.filter(site_scope_q(user=user, capability=Capability.EXPORT)).order_by("name", "pk")
    )


def export_links(*, period_from: date, period_to: date) -> list[dict]:
    """One direct CSV download per export kind over the period: the API's streaming endpoint."""
    query = QueryDict(mutable=True)
    query["from"], query["to"] = period_from.isoformat(), period_to.isoformat()
    return [
        {
            "kind": kind,
            "label": label,
            "url": f"{reverse('export-stream', kwargs={'kind': kind})}?{query.urlencode()}",
        }
        for kind, label in ExportKind.choices
    ]


def job_row_context(job) -> dict:
    running = job.status in (ExportStatus.QUEUED, ExportStatus.RUNNING)
    if job.status == ExportStatus.DONE:
        progress = 100
    elif job.rows_total:
        progress = min(100, int(100 * job.rows_done / job.rows_total))
    else:
        progress = 0
    return {
        "job": job,
        "running": running,
        "progress": progress,
        "download_url": reverse("export-job-download", kwargs={"pk": job.pk})
        if job.status == ExportStatus.DONE
        else "",
    }


@portal_view
def exports_page(request: PortalRequest):
    require_capability(request, Capability.EXPORT)
    sites = _exportable_sites(request.user)
    if request.method == "POST":
        job_form = ExportJobForm(request.POST, sites=sites)
        if job_form.is_valid():
            data = job_form.cleaned_data
            try:
                job = export_job_create(
                    user=request.user,
                    kind=data["kind"],
                    filters=ExportFilters(
                        period_from=data["period_from"],
                        period_to=data["period_to"],
                        site_ids=tuple(data["site"]),
                    ),
                )
            except DomainError as exc:
                if exc.status_code not in (400, 404):
                    raise
                job_form.add_error(None, exc.message)
            else:
                messages.success(request, f"Export {job.pk} started; it shows below with its progress.")
                return redirect("portal:exports")
    else:
        start, end = default_period()
        job_form = ExportJobForm(
            initial={"kind": ExportKind.CDRS, "period_from": start, "period_to": end}, sites=sites
        )
    period_form = _period_form(request)
    links, link_error = [], ""
    if period_form.is_valid():
        start, end = period_form.cleaned_data["period_from"], period_form.cleaned_data["period_to"]
        if (end - start).days > MAX_STREAM_SPAN_DAYS:
            link_error = (
                f"Direct downloads cover at most {MAX_STREAM_SPAN_DAYS} days: start an export job below."
            )
        else:
            links = export_links(period_from=start, period_to=end)
    page = page_of(request, export_job_list(user=request.user))
    return render(
        request,
        "billing/exports.html",
        {
            "period_form": period_form,
            "links": links,
            "link_error": link_error,
            "job_form": job_form,
            "page": page,
            "jobs": [job_row_context(job) for job in page.object_list],
        },
        status=400 if request.method == "POST" else 200,
    )


@portal_view
def export_job_row(request: PortalRequest, pk: int):
    """The job's table row (htmx polls it every 2 s while the job is queued or running)."""
    require_capability(request, Capability.EXPORT)
    job = export_job_access(user=request.user, pk=pk)
    return render(request, "billing/_export_job_row.html", job_row_context(job))


# --- site prices ---------------------------------------------------------------------------------------


class SitePricesForm(forms.Form):
    currency = forms.CharField(min_length=3, max_length=3)
    energy_per_kwh = forms.DecimalField(
        min_value=0, max_digits=12, decimal_places=6, label="Energy price per kWh"
    )
    session_fee = forms.DecimalField(
        min_value=0, max_digits=12, decimal_places=4, initial=0, label="Session fee"
    )
    charging_per_hour = forms.DecimalField(
        min_value=0, max_digits=12, decimal_places=6, initial=0, label="Price per hour charging"
    )
    parking_per_hour = forms.DecimalField(
        min_value=0,
        max_digits=12,
        decimal_places=6,
        initial=0,
        label="Parking price per hour (connected, not charging)",
    )
    parking_grace_min = forms.IntegerField(
        min_value=0, max_value=24 * 60, initial=0, label="Free parking after charging (minutes)"
    )
    tax_rate_percent = forms.DecimalField(
        min_value=0, max_value=100, max_digits=6, decimal_places=2, label="Tax rate (%)"
    )
    valid_from = forms.DateTimeField(
        required=False,
        label="In force from (site's local time; empty: now)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
    )


def _zone(site: Site) -> ZoneInfo:
    try:
        return ZoneInfo(site.time_zone)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def version_summary(version) -> list[str]:
    """The prices of a tariff version in words, one line per priced component."""
    units = {
        "ENERGY": "per kWh",
        "TIME": "per hour charging",
        "PARKING_TIME": "per hour parking",
        "FLAT": "per session",
    }
    lines = []
    for element in version.elements:
        restrictions = element.get("restrictions")
        suffix = ""
        if restrictions:
            suffix = " (when " + ", ".join(f"{k} {v}" for k, v in sorted(restrictions.items())) + ")"
        for component in element["price_components"]:
            unit = units.get(component["type"], component["type"])
            lines.append(f"{component['price']} {version.currency} {unit}{suffix}")
    lines.append(f"Tax {(version.tax_rate * 100).normalize():f} %")
    if version.parking_grace_s:
        lines.append(f"Parking free for {version.parking_grace_s // 60} min after charging")
    return lines


def _initial_prices(in_force) -> dict:
    """The form prefilled from the version in force when it is a simple one (a single element)."""
    if in_force is None:
        return {"tax_rate_percent": Decimal(0), "energy_per_kwh": Decimal(0)}
    version = in_force.version
    initial = {
        "currency": version.currency,
        "tax_rate_percent": (version.tax_rate * 100).normalize(),
        "parking_grace_min": version.parking_grace_s // 60,
    }
    if len(version.elements) == 1 and not version.elements[0].get("restrictions"):
        names = {
            "FLAT": "session_fee",
            "ENERGY": "energy_per_kwh",
            "TIME": "charging_per_hour",
            "PARKING_TIME": "parking_per_hour",
        }
        for component in version.elements[0]["price_components"]:
            if component["type"] in names:
                initial[names[component["type"]]] = Decimal(component["price"])
    return initial


@portal_view
def site_prices_page(request: PortalRequest):
    """The sites where the user may set prices, with the tariff in force at each."""
    require_capability(request, Capability.PRICING)
    sites = (
        site_list(user=request.user)
        .filter(site_scope_q(user=request.user, capability=Capability.PRICING))
        .select_related("organisation")
        .order_by("name", "pk")
    )
    page = page_of(request, sites)
    rows = []
    for site in page.object_list:
        in_force = site_tariff_in_force(site=site)
        rows.append(
            {
                "site": site,
                "in_force": in_force,
                "summary": version_summary(in_force.version) if in_force else [],
            }
        )
    return render(request, "billing/site_prices_list.html", {"page": page, "rows": rows})


@portal_view
def site_prices_site_page(request: PortalRequest, site_id: int):
    user = request.user
    site = site_access(user=user, pk=site_id, capability=Capability.PRICING)
    in_force = site_tariff_in_force(site=site)
    if request.method == "POST":
        form = SitePricesForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            valid_from = data["valid_from"]
            if valid_from is not None:
                # The field is the site's wall-clock time; Django made it aware in the server's zone (UTC)
                # with the same wall clock: put it in the site's zone instead.
                valid_from = valid_from.replace(tzinfo=None).replace(tzinfo=_zone(site))
            try:
                version = site_prices_publish(
                    user=user,
                    site=site,
                    data=SitePricesInput(
                        currency=data["currency"],
                        energy_per_kwh=data["energy_per_kwh"],
                        session_fee=data["session_fee"],
                        charging_per_hour=data["charging_per_hour"],
                        parking_per_hour=data["parking_per_hour"],
                        parking_grace_min=data["parking_grace_min"],
                        tax_rate_percent=data["tax_rate_percent"],
                        valid_from=valid_from,
                    ),
                )
            except DomainError as exc:
                if exc.status_code not in (400, 409):
                    raise
                form.add_error(None, exc.message)
            else:
                messages.success(
                    request, f"Published version {version.version} of {version.tariff.name} for {site.name}."
                )
                return redirect("portal:site-prices-site", site_id=site.pk)
    else:
        initial = {"currency": site.organisation.currency, **_initial_prices(in_force)}
        form = SitePricesForm(initial=initial)
    dedicated = site_dedicated_tariff(site=site)
    return render(
        request,
        "billing/site_prices.html",
        {
            "site": site,
            "in_force": in_force,
            "summary": version_summary(in_force.version) if in_force else [],
            "dedicated": dedicated,
            "versions": site_tariff_versions(tariff=dedicated) if dedicated else [],
            "overrides": site_tariff_overrides(site=site),
            "tokens": site_token_rules(user=user, site=site),
            "access": site_access_rules_context(site=site),
            "form": form,
        },
        status=400 if request.method == "POST" else 200,
    )
