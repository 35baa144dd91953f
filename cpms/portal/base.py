"""What every portal page shares: the wrapper that requires a login and turns domain errors into the 404 and
403 pages, the navigation each role sees, and pagination.

Portal views follow the same layering as the API: parse the request, call one selector or service (which
scopes and checks permissions), render a template under templates/<app>/. A view never decides access on its
own: `*_access` selectors raise NotFound for what the user may not see (a 404, so that another tenant's ids
reveal nothing) and PermissionDenied for what they may see but not do (a 403).
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse

from accounts.enums import Capability
from accounts.models import User
from accounts.selectors import organisation_ids_with
from cpms.errors import NotFound, PermissionDenied
from stations.scope import site_host_site_ids

PAGE_SIZE = 25


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    capability: str


# In display order. An item shows when the user holds its capability somewhere and its page exists.
NAV: tuple[NavItem, ...] = (
    NavItem("Overview", "portal:overview", Capability.VIEW),
    NavItem("Stations", "portal:station-list", Capability.VIEW),
    NavItem("Sessions", "portal:session-list", Capability.VIEW),
    NavItem("Payments", "portal:payment-list", Capability.VIEW),
    NavItem("Incidents", "portal:incident-list", Capability.VIEW),
    NavItem("KPIs", "portal:kpis", Capability.VIEW),
    NavItem("Waitlists", "portal:waitlist-list", Capability.VIEW),
    NavItem("Prices", "portal:site-prices", Capability.PRICING),
    NavItem("Revenue", "portal:revenue", Capability.EXPORT),
    NavItem("Exports", "portal:exports", Capability.EXPORT),
    NavItem("ROI", "portal:roi", Capability.EXPORT),
    NavItem("Roaming", "portal:roaming", Capability.MANAGE),
    NavItem("Certificates", "portal:certificate-authorities", Capability.MANAGE),
    NavItem("Users", "portal:user-list", Capability.MANAGE_USERS),
    NavItem("Audit log", "portal:audit-log", Capability.MANAGE_USERS),
)


class PortalRequest(HttpRequest):
    """The request a `portal_view` page gets: its user is logged in (a type for the checker only; the
    object is the request Django made)."""

    user: User


def user_has_capability(user, capability: str) -> bool:
    """Whether the user holds `capability` anywhere (an organisation-wide role or a site)."""
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    return bool(organisation_ids_with(user=user, capability=capability)) or bool(
        site_host_site_ids(user=user, capability=capability)
    )


def nav_items(request: HttpRequest) -> list[dict]:
    items = []
    for item in NAV:
        if not user_has_capability(request.user, item.capability):
            continue
        try:
            url = reverse(item.url_name)
        except NoReverseMatch:
            continue
        current = request.path == url or (url != reverse("portal:overview") and request.path.startswith(url))
        items.append({"label": item.label, "url": url, "current": current})
    return items


def portal_context(request: HttpRequest) -> dict:
    """Template context processor: the navigation on portal pages (lazy, so that API and admin pages pay
    nothing)."""
    if not request.path.startswith("/portal/") or not request.user.is_authenticated:
        return {}
    return {"portal_nav": nav_items(request)}


def error_page(request: HttpRequest, status: int, message: str) -> HttpResponse:
    return render(request, "portal/error.html", {"status": status, "message": message}, status=status)


def portal_view(view: Callable) -> Callable:
    """Login required (anonymous users go to the login page); NotFound -> 404 page, PermissionDenied -> 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        try:
            return view(request, *args, **kwargs)
        except NotFound as exc:
            return error_page(request, 404, exc.message)
        except PermissionDenied as exc:
            return error_page(request, 403, exc.message)

    return wrapper


def require_capability(request: HttpRequest, capability: str) -> None:
    """PermissionDenied unless the user holds `capability` somewhere (for pages that are not about one object,
    e.g. the exports page: finance and operator admins only)."""
    if not user_has_capability(request.user, capability):
        raise PermissionDenied("Your role does not give access to this page.")


def page_of(request: HttpRequest, items, per_page: int = PAGE_SIZE) -> Page:
    """The page of `items` named by ?page= (an out-of-range or malformed number gives the last/first page)."""
    return Paginator(items, per_page).get_page(request.GET.get("page"))
