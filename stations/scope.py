"""Who may see and do what on sites, and so on everything hanging off a site (stations, sessions, CDRs...).

The organisation-wide roles come from accounts.selectors; the site host's grants are django-guardian
permissions on `stations.Site` (granted by stations.services.site_hosts), so the scope that combines both
lives here, above accounts (accounts <- stations <- sessions <- energy <- billing).

Scope rules (see accounts.selectors for the roles):
- superusers see everything;
- an organisation-wide role (operator admin/staff, finance, support) sees every site, station, session and
  id token of that organisation;
- a site host sees the sites they hold `stations.view_site` on, those sites' stations and sessions, and no
  id tokens.
"""

from collections.abc import Iterable
from typing import Any

from django.db.models import Q
from guardian.shortcuts import get_objects_for_user

from accounts.enums import ROLE_CAPABILITIES, Capability, Role
from accounts.models import Organisation, User
from accounts.selectors import membership_roles, organisation_ids_with
from cpms.errors import NotFound
from stations.models import Site


def site_host_site_ids(*, user: User, capability: str = Capability.VIEW) -> list[int]:
    """Sites a site host holds, if the site-host role grants `capability` at all."""
    if capability not in ROLE_CAPABILITIES[Role.SITE_HOST]:
        return []
    host_orgs = [org for org, role in membership_roles(user=user).items() if role == Role.SITE_HOST]
    if not host_orgs:
        return []
    # Pricing (prices and access rules) needs a second, per-site grant: `stations.change_site`.
    permission = "stations.change_site" if capability == Capability.PRICING else "stations.view_site"
    sites = get_objects_for_user(
        user,
        permission,
        klass=Site.objects.filter(organisation_id__in=host_orgs),
        accept_global_perms=False,
    )
    return list(sites.values_list("pk", flat=True))


def site_scope_q(*, user: User, capability: str = Capability.VIEW, prefix: str = "") -> Q:
    """A Q selecting the sites (via `prefix`, e.g. "site__") the user may act on with `capability`.

    Stations and sessions use it with their path to Site; superusers get an always-true Q.
    """
    if user.is_superuser:
        return Q()
    q = Q(**{f"{prefix}organisation_id__in": organisation_ids_with(user=user, capability=capability)})
    site_ids = site_host_site_ids(user=user, capability=capability)
    if site_ids:
        q |= Q(**{f"{prefix}pk__in": site_ids})
    return q


def station_scope_q(*, user: User, capability: str = Capability.VIEW, prefix: str = "") -> Q:
    """Stations the user may act on with `capability`. `prefix` is the path to ChargingStation."""
    if user.is_superuser:
        return Q()
    q = Q(**{f"{prefix}organisation_id__in": organisation_ids_with(user=user, capability=capability)})
    site_ids = site_host_site_ids(user=user, capability=capability)
    if site_ids:
        q |= Q(**{f"{prefix}site_id__in": site_ids})
    return q


def user_can(*, user: User, capability: str, organisation_id: int, site_id: int | None = None) -> bool:
    """Whether `user` has `capability` on an object of `organisation_id` (and `site_id`, if any)."""
    if user.is_superuser:
        return True
    if organisation_id in organisation_ids_with(user=user, capability=capability):
        return True
    return site_id is not None and site_id in site_host_site_ids(user=user, capability=capability)


def user_site_grants(*, user: User, organisation: Organisation) -> tuple[list[int], list[int]]:
    """(ids of the sites `user` hosts in `organisation`, ids of those where they may set prices)."""
    in_org = Site.objects.filter(organisation=organisation)
    view = get_objects_for_user(user, "stations.view_site", klass=in_org, accept_global_perms=False)
    change = get_objects_for_user(user, "stations.change_site", klass=in_org, accept_global_perms=False)
    return sorted(view.values_list("pk", flat=True)), sorted(change.values_list("pk", flat=True))


def organisation_site_list(*, organisation: Organisation, sites: Iterable[Any]) -> list[Site]:
    """The sites (objects or ids) as Site rows of `organisation`, by pk; NotFound for any other."""
    wanted = sorted({getattr(site, "pk", site) for site in sites})
    found = {site.pk: site for site in Site.objects.filter(organisation=organisation, pk__in=wanted)}
    for pk in wanted:
        if pk not in found:
            raise NotFound(f"Site {pk} not found.")
    return [found[pk] for pk in wanted]
