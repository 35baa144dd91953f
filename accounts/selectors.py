"""Who may see and do what, as far as roles in organisations say. Every list and lookup in API, admin,
portal and exports goes through here or through stations.scope, which adds the site host's per-site grants
(permissions on `stations.Site`, a model of the app above this one).

- superusers see everything;
- an organisation-wide role (operator admin/staff, finance, support) sees all of that organisation;
- a site host belongs to the organisation but sees only their sites (stations.scope).
Capabilities (what a role may do with what it sees) come from accounts.enums.ROLE_CAPABILITIES.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Prefetch, QuerySet

from accounts.enums import ORGANISATION_WIDE_ROLES, ROLE_CAPABILITIES, Capability
from accounts.models import AuditRecord, Membership, Organisation, User
from cpms.errors import NotFound, PermissionDenied


def membership_roles(*, user: User) -> dict[int, str]:
    """organisation id -> role, cached on the user object for the request."""
    cached = getattr(user, "_cpms_roles", None)
    if cached is None:
        cached = dict(Membership.objects.filter(user=user).values_list("organisation_id", "role"))
        setattr(user, "_cpms_roles", cached)  # noqa: B010 - not a field of User: a per-request cache
    return cached


def organisation_ids_with(*, user: User, capability: str = Capability.VIEW) -> list[int]:
    """Organisations where the user's organisation-wide role grants `capability`."""
    return [
        org_id
        for org_id, role in membership_roles(user=user).items()
        if role in ORGANISATION_WIDE_ROLES and capability in ROLE_CAPABILITIES[role]
    ]


def user_get(*, username: str) -> User | None:
    return User.objects.filter(username=username).first()


def organisation_list(*, user: User) -> QuerySet[Organisation]:
    if user.is_superuser:
        return Organisation.objects.all()
    return Organisation.objects.filter(pk__in=list(membership_roles(user=user)))


def organisation_access(*, user: User, pk: int, capability: str = Capability.VIEW) -> Organisation:
    """The organisation `pk` if the user belongs to it (NotFound otherwise), checked for `capability`
    organisation-wide (PermissionDenied): a site host belongs to the organisation but manages none of it."""
    organisation = organisation_list(user=user).filter(pk=pk).first()
    if organisation is None:
        raise NotFound(f"Organisation {pk} not found.")
    if capability != Capability.VIEW and not (
        user.is_superuser or organisation.pk in organisation_ids_with(user=user, capability=capability)
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
        org_ids: list[int] | None = [organisation.pk]
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
