"""Template helpers shared by every portal page: times in a site's own time zone, status badges, charts."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from django import template
from django.utils import timezone
from django.utils.html import format_html

from cpms import charts

register = template.Library()

# Status -> badge colour class (cpms.css). Unknown statuses get the neutral badge.
STATUS_TONES = {
    "Available": "ok",
    "Charging": "live",
    "Occupied": "live",
    "Preparing": "live",
    "SuspendedEV": "live",
    "SuspendedEVSE": "warn",
    "Finishing": "live",
    "Reserved": "warn",
    "Unavailable": "muted",
    "Faulted": "bad",
    "Offline": "bad",
    "Online": "ok",
    "active": "live",
    "answered": "ok",
    "pending": "muted",
    "failed": "bad",
    "timed_out": "warn",
    "completed": "ok",
    "open": "bad",
    "acknowledged": "warn",
    "resolved": "ok",
    "Active": "ok",
    "Inactive": "muted",
    "waiting": "warn",
    "offered": "live",
    "fulfilled": "ok",
    "expired": "muted",
    "cancelled": "muted",
}


@register.filter
def local(value: datetime | None, time_zone: str | None = None) -> str:
    """'24 Nov 2026, 14:05 CET': the instant in `time_zone` (a site's), else the server's, with its zone."""
    if not value:
        return "—"
    try:
        zone = ZoneInfo(time_zone) if time_zone else timezone.get_current_timezone()
    except (KeyError, ValueError):
        zone = timezone.get_current_timezone()
    try:
        moment = value.astimezone(zone)
    except OverflowError:
        # A charger's absurd clock (9999-12-31 is in year 10000 east of UTC; docs/reliability.md case 45): in
        # UTC.
        moment = value.astimezone(UTC)
    # The year by hand: strftime's %Y gives "1", not "0001", for year 1 on glibc.
    return f"{moment:%d %b} {moment.year:04d}, {moment:%H:%M} {moment.tzname()}"


@register.filter
def duration(seconds: float | int | None) -> str:
    """'2 h 05 min', '4 min 10 s', '—' for None."""
    if seconds is None:
        return "—"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


@register.filter
def kwh(energy_wh: int | None) -> str:
    if energy_wh is None:
        return "—"
    return f"{energy_wh / 1000:,.2f} kWh"


@register.simple_tag
def status_badge(status: str, label: str = "") -> str:
    tone = STATUS_TONES.get(status, "muted")
    return format_html(
        '<span class="badge badge-{}" data-status="{}">{}</span>', tone, status, label or status
    )


@register.simple_tag
def line_chart(points, title: str, unit: str = "", height: int = 180):
    """An SVG line chart of [(label, value)] (see cpms.charts)."""
    return charts.line_chart(points, title=title, unit=unit, height=height)


@register.simple_tag
def bar_chart(points, title: str, unit: str = "", height: int = 180):
    """An SVG bar chart of [(label, value)] (see cpms.charts)."""
    return charts.bar_chart(points, title=title, unit=unit, height=height)
