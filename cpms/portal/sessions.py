"""Portal pages about charging sessions: the list (filters, times in each site's zone, cost once billed) and a
session's page (facts, its CDR lines and credits, power and energy charts from its meter values).

The portal is an interface layer: access is decided by `session_list` / `session_access` (scoped by station),
never here. Site hosts see sessions of their sites but never id tokens (accounts.selectors); the token column
shows only for sessions of organisations where the user holds an organisation-wide role.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django import forms
from django.core.exceptions import ObjectDoesNotExist
from django.db.models import prefetch_related_objects
from django.http import HttpRequest
from django.shortcuts import render

from accounts.selectors import organisation_ids_with
from billing.money import minor_unit
from billing.selectors import session_payment_get
from cpms.portal.base import PAGE_SIZE, PortalRequest, portal_view
from sessions.enums import SessionStatus
from sessions.selectors import (
    session_access,
    session_energy_readings,
    session_list,
    session_power_readings,
    session_started_local_q,
)
from stations.selectors import site_list

# Charts are drawn server-side as SVG: at most this many points per chart.
CHART_POINTS = 300


class SessionFilterForm(forms.Form):
    site = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    station = forms.CharField(required=False, max_length=48)
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *SessionStatus.choices])
    started_after = forms.DateField(required=False, label="Started on or after")
    started_before = forms.DateField(required=False, label="Started before")

    def __init__(self, *args, sites=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["site"].choices = [("", "All sites"), *((site.pk, site.name) for site in sites)]

    def clean(self):
        data = super().clean()
        start, end = data.get("started_after"), data.get("started_before")
        if start and end and start >= end:
            raise forms.ValidationError("'Started on or after' must be before 'Started before'.")
        return data


@dataclass
class SlicePage:
    """A page of a queryset without counting the whole table: one extra row says whether there is a next
    page (a COUNT over the sessions table grows with it; the portal only needs previous/next)."""

    object_list: list
    number: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def next_page_number(self) -> int:
        return self.number + 1

    @property
    def previous_page_number(self) -> int:
        return self.number - 1


def slice_page(request: HttpRequest, qs, per_page: int = PAGE_SIZE) -> SlicePage:
    try:
        number = max(1, int(request.GET.get("page", 1)))
    except ValueError:
        number = 1
    offset = (number - 1) * per_page
    rows = list(qs[offset : offset + per_page + 1])
    return SlicePage(object_list=rows[:per_page], number=number, has_next=len(rows) > per_page)


def _zone(session) -> str:
    site = session.station.site
    return site.time_zone if site is not None else "UTC"


def _cdr(session):
    """The session's CDR (a reverse one-to-one owned by billing, prefetched), or None before billing."""
    try:
        return session.cdr
    except ObjectDoesNotExist:
        return None


def money(amount: Decimal | None, currency: str) -> str:
    """'6.93 EUR', '2145 JPY': the currency's minor unit of decimals (amounts are stored with 4)."""
    if amount is None:
        return "—"
    places = minor_unit(currency)
    value = amount.quantize(Decimal(1).scaleb(-places))
    return f"{value if value else abs(value)} {currency}"


def _cost(cdr) -> dict | None:
    """What the session cost, for display: total incl. tax, and after the CDR's credits."""
    if cdr is None:
        return None
    credited = sum((credit.total for credit in cdr.credits.all()), Decimal(0))
    return {
        "total": money(cdr.total, cdr.currency),
        "subtotal": money(cdr.subtotal, cdr.currency),
        "tax": money(cdr.tax, cdr.currency),
        "credited": bool(credited),
        "net_total": money(cdr.total + credited, cdr.currency),
    }


def _duration_s(session) -> float | None:
    if session.stopped_at is None:
        return None
    return (session.stopped_at - session.started_at).total_seconds()


@portal_view
def session_list_page(request: PortalRequest):
    user = request.user
    sites = list(site_list(user=user).order_by("name", "pk"))
    form = SessionFilterForm(request.GET or None, sites=sites)
    sessions = session_list(user=user).select_related("station__site")
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        filters = {
            "site": data["site"],
            "station": data["station"] or None,
            "status": data["status"] or None,
        }
        sessions = session_list(user=user, filters=filters).select_related("station__site")
        sessions = sessions.filter(
            session_started_local_q(user=user, start=data["started_after"], end=data["started_before"])
        )
    elif form.is_bound:
        sessions = sessions.none()
    sessions = sessions.order_by("-started_at", "-id").prefetch_related("cdr__credits")
    page = slice_page(request, sessions)
    token_orgs = None if user.is_superuser else set(organisation_ids_with(user=user))
    rows = []
    for session in page.object_list:
        rows.append(
            {
                "session": session,
                "zone": _zone(session),
                "duration_s": _duration_s(session),
                "cost": _cost(_cdr(session)),
                "show_token": token_orgs is None or session.station.organisation_id in token_orgs,
            }
        )
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "sessions/session_list.html",
        {
            "form": form,
            "page": page,
            "rows": rows,
            "any_token_column": token_orgs is None or bool(token_orgs),
            "query": query.urlencode(),
        },
    )


def downsample(
    readings: list[tuple[datetime, float]], *, limit: int = CHART_POINTS, mode: str = "mean"
) -> list[tuple[datetime, float]]:
    """At most `limit` points over the same time span: readings fall into `limit` equal time buckets, each
    non-empty bucket gives one point at its first reading's time with the mean (power) or the last value
    (a register). Fewer readings than `limit` are returned as they are."""
    if len(readings) <= limit:
        return list(readings)
    start, end = readings[0][0], readings[-1][0]
    span = (end - start).total_seconds() or 1.0
    buckets: dict[int, list[tuple[datetime, float]]] = {}
    for moment, value in readings:
        index = min(limit - 1, int((moment - start).total_seconds() / span * limit))
        buckets.setdefault(index, []).append((moment, value))
    points = []
    for index in sorted(buckets):
        bucket = buckets[index]
        value = sum(v for _, v in bucket) / len(bucket) if mode == "mean" else bucket[-1][1]
        points.append((bucket[0][0], value))
    return points


def _labelled(points: list[tuple[datetime, float]], zone_name: str) -> list[tuple[str, float]]:
    from zoneinfo import ZoneInfo

    try:
        zone = ZoneInfo(zone_name)
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    if any(not _fits(moment, zone) for moment, _ in points[:1] + points[-1:]):
        zone = ZoneInfo("UTC")  # a charger's absurd clock (docs/reliability.md case 45): the chart in UTC
    multi_day = bool(points) and points[0][0].astimezone(zone).date() != points[-1][0].astimezone(zone).date()
    label = "%d %b %H:%M" if multi_day else "%H:%M"
    return [(moment.astimezone(zone).strftime(label), value) for moment, value in points]


def _fits(moment: datetime, zone) -> bool:
    """Whether `moment` is representable in `zone` (not past year 9999 or before year 1 there)."""
    try:
        moment.astimezone(zone)
    except OverflowError:
        return False
    return True


def _plain(value: Decimal) -> str:
    """12.345000 -> '12.345', 10.000000 -> '10' (never scientific notation)."""
    return format(value.normalize(), "f")


@portal_view
def session_detail_page(request: PortalRequest, pk: int):
    user = request.user
    session = session_access(user=user, pk=pk)
    # The CDR, its lines and credits: reverse relations owned by billing (sessions does not import billing).
    prefetch_related_objects([session], "cdr__lines", "cdr__credits")
    cdr = _cdr(session)
    zone = _zone(session)
    power = downsample(session_power_readings(session=session), mode="mean")
    energy_readings = session_energy_readings(session=session)
    baseline = session.meter_start_wh
    if baseline is None and energy_readings:
        baseline = energy_readings[0][1]
    energy = downsample([(ts, wh - (baseline or 0)) for ts, wh in energy_readings], mode="last")
    organisation_wide = user.is_superuser or session.station.organisation_id in organisation_ids_with(
        user=user
    )
    payment = session_payment_get(session=session)
    return render(
        request,
        "sessions/session_detail.html",
        {
            "session": session,
            "zone": zone,
            "duration_s": _duration_s(session),
            "show_token": organisation_wide,
            "cdr": cdr,
            "lines": [
                {
                    "line": line,
                    "quantity": _plain(line.quantity),
                    "unit_price": _plain(line.unit_price),
                    "amount": money(line.amount, cdr.currency),
                }
                for line in sorted(cdr.lines.all() if cdr else [], key=lambda line: line.position)
            ],
            "credits": [
                {"credit": c, "subtotal": money(c.subtotal, c.currency), "total": money(c.total, c.currency)}
                for c in sorted(cdr.credits.all() if cdr else [], key=lambda c: (c.created_at, c.pk))
            ],
            "cost": _cost(cdr),
            "payment": payment,
            "payment_amounts": {
                name: money(getattr(payment, f"{name}_amount"), payment.currency)
                for name in ("hold", "captured", "refunded", "unpaid")
            }
            if payment
            else None,
            "power_points": _labelled(power, zone),
            "energy_points": _labelled(energy, zone),
        },
    )
