"""Who may see and do what. Every list and lookup in API, admin, portal and exports goes through here.

Scope rules:
- superusers see everything;
- an organisation-wide role (operator admin/staff, finance, support) sees every site, station, session and
  id token of that organisation;
- a site host sees the sites they hold `stations.view_site` on (django-guardian), those sites' stations and
  sessions, and no id tokens.
Capabilities (what a role may do with what it sees) come from accounts.enums.ROLE_CAPABILITIES.
"""

from django.db.models import Q, QuerySet
from guardian.shortcuts import get_objects_for_user

from accounts.enums import ORGANISATION_WIDE_ROLES, ROLE_CAPABILITIES, Capability, Role
from accounts.models import Membership, Organisation, User
from cpms.errors import NotFound, PermissionDenied


def membership_roles(*, user: User) -> dict[int, str]:
    """organisation id -> role, cached on the user object for the request."""
    cached = getattr(user, "_cpms_roles", None)
    if cached is None:
        cached = dict(Membership.objects.filter(user=user).values_list("organisation_id", "role"))
        user._cpms_roles = cached
    return cached


def organisation_ids_with(*, user: User, capability: str = Capability.VIEW) -> list[int]:
    """Organisations where the user's organisation-wide role grants `capability`."""
    return [
        org_id
        for org_id, role in membership_roles(user=user).items()
        if role in ORGANISATION_WIDE_ROLES and capability in ROLE_CAPABILITIES[role]
    ]


def site_host_site_ids(*, user: User, capability: str = Capability.VIEW) -> list[int]:
    """Sites a site host holds, if the site-host role grants `capability` at all."""
    from stations.models import Site

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


def user_get(*, username: str) -> User | None:
    return User.objects.filter(username=username).first()


def organisation_list(*, user: User) -> QuerySet[Organisation]:
    if user.is_superuser:
        return Organisation.objects.all()
    return Organisation.objects.filter(pk__in=list(membership_roles(user=user)))


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


def organisation_access(*, user: User, pk: int, capability: str = Capability.VIEW) -> Organisation:
    """The organisation `pk` if the user belongs to it (NotFound otherwise), checked for `capability`
    organisation-wide (PermissionDenied): a site host belongs to the organisation but manages none of it."""
    organisation = organisation_list(user=user).filter(pk=pk).first()
    if organisation is None:
        raise NotFound(f"Organisation {pk} not found.")
    if capability != Capability.VIEW and not user_can(
        user=user, capability=capability, organisation_id=organisation.pk
    ):
        raise PermissionDenied(f"You may not {capability} organisation {organisation.pk}.")
    return organisation
