"""Who may see and do what. Every list and lookup in API, admin, portal and exports goes through here.

Scope rules:
- superusers see everything;
- an organisation-wide role (operator admin/staff, finance, support) sees every site, station, session and
  id token of that organisation;
- a site host sees the sites they hold `stations.view_site` on (django-guardian), those sites' stations and
  sessions, and no id tokens.
Capabilities (what a role may do with what it sees) come from accounts.enums.ROLE_CAPABILITIES.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Prefetch, Q, QuerySet
from guardian.shortcuts import get_objects_for_user

from accounts.enums import ORGANISATION_WIDE_ROLES, ROLE_CAPABILITIES, Capability, Role
from accounts.models import AuditRecord, Membership, Organisation, User
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


# --- user management and the audit log (Capability.MANAGE_USERS) -----------------------------------


def managed_organisation_list(*, user: User) -> QuerySet[Organisation]:
    """The organisations whose users `user` manages (superusers: all)."""
    if user.is_superuser:
        return Organisation.objects.all()
    return Organisation.objects.filter(
        pk__in=organisation_ids_with(user=user, capability=Capability.MANAGE_USERS)
    )


def _managed_organisation_ids(*, user: User) -> list[int] | None:
    """None for superusers (everything); PermissionDenied for a user who manages no organisation."""
    if user.is_superuser:
        return None
    ids = organisation_ids_with(user=user, capability=Capability.MANAGE_USERS)
    if not ids:
        raise PermissionDenied("Your role may not manage users.")
    return ids


def organisation_user_list(*, user: User, organisation: Organisation | None = None) -> QuerySet[User]:
    """The users with a membership in the organisations `user` manages (or in `organisation` only), each
    with `managed_memberships` (their memberships there) prefetched. A user whose only memberships are in
    other organisations is not listed."""
    if organisation is not None:
        organisation = organisation_access(user=user, pk=organisation.pk, capability=Capability.MANAGE_USERS)
        org_ids = [organisation.pk]
    else:
        org_ids = _managed_organisation_ids(user=user)
    memberships = Membership.objects.select_related("organisation").order_by("organisation__name")
    users = User.objects.all()
    if org_ids is not None:
        memberships = memberships.filter(organisation_id__in=org_ids)
        users = users.filter(memberships__organisation_id__in=org_ids).distinct()
    else:
        users = users.filter(memberships__isnull=False).distinct()
    return users.prefetch_related(
        Prefetch("memberships", queryset=memberships, to_attr="managed_memberships")
    ).order_by("username")


def organisation_user_access(*, user: User, pk: int, organisation: Organisation | None = None) -> User:
    """The user `pk` if `user` manages one of their organisations (or `organisation`); NotFound otherwise,
    so that other tenants' users are indistinguishable from missing ones."""
    target = organisation_user_list(user=user, organisation=organisation).filter(pk=pk).first()
    if target is None:
        raise NotFound(f"User {pk} not found.")
    return target


def user_site_grants(*, user: User, organisation: Organisation) -> tuple[list[int], list[int]]:
    """(ids of the sites `user` hosts in `organisation`, ids of those where they may set prices)."""
    from stations.models import Site

    in_org = Site.objects.filter(organisation=organisation)
    view = get_objects_for_user(user, "stations.view_site", klass=in_org, accept_global_perms=False)
    change = get_objects_for_user(user, "stations.change_site", klass=in_org, accept_global_perms=False)
    return sorted(view.values_list("pk", flat=True)), sorted(change.values_list("pk", flat=True))


@dataclass(frozen=True, kw_only=True)
class AuditFilters:
    """Audit log filters; `since` inclusive, `until` exclusive (aware datetimes)."""

    action: str = ""
    actor_id: int | None = None
    organisation_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


def audit_record_list(*, user: User, filters: AuditFilters | None = None) -> QuerySet[AuditRecord]:
    """Audit records of the organisations where `user` manages users (superusers: all, those without an
    organisation too), newest first. PermissionDenied for a user who manages no organisation; NotFound for
    an organisation filter outside them."""
    filters = filters or AuditFilters()
    records = AuditRecord.objects.select_related("actor", "organisation")
    org_ids = _managed_organisation_ids(user=user)
    if org_ids is not None:
        records = records.filter(organisation_id__in=org_ids)
    if filters.organisation_id is not None:
        if org_ids is not None and filters.organisation_id not in org_ids:
            raise NotFound(f"Organisation {filters.organisation_id} not found.")
        records = records.filter(organisation_id=filters.organisation_id)
    if filters.action:
        records = records.filter(action=filters.action)
    if filters.actor_id is not None:
        records = records.filter(actor_id=filters.actor_id)
    if filters.since is not None:
        records = records.filter(created_at__gte=filters.since)
    if filters.until is not None:
        records = records.filter(created_at__lt=filters.until)
    return records.order_by("-created_at", "-id")
