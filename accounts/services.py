from django.db import transaction
from guardian.shortcuts import assign_perm, remove_perm

from accounts.enums import Role
from accounts.models import Membership, Organisation, User
from cpms.errors import ValidationFailed


@transaction.atomic
def membership_set(*, user: User, organisation: Organisation, role: str) -> Membership:
    """Give `user` exactly one role in `organisation` (replacing any previous role there)."""
    if role not in Role.values:
        raise ValidationFailed(f"Unknown role {role!r}; expected one of {', '.join(Role.values)}.")
    membership, _ = Membership.objects.update_or_create(
        user=user, organisation=organisation, defaults={"role": role}
    )
    if hasattr(user, "_cpms_roles"):
        del user._cpms_roles
    return membership


@transaction.atomic
def site_host_grant(*, user: User, site) -> None:
    """Make `user` a site host of `site` (a membership in the site's organisation plus object perms)."""
    existing = Membership.objects.filter(user=user, organisation_id=site.organisation_id).first()
    if existing is None:
        membership_set(user=user, organisation=site.organisation, role=Role.SITE_HOST)
    elif existing.role != Role.SITE_HOST:
        raise ValidationFailed(f"{user} already has the organisation-wide role {existing.role}.")
    assign_perm("stations.view_site", user, site)
    assign_perm("stations.operate_site", user, site)


@transaction.atomic
def site_host_revoke(*, user: User, site) -> None:
    remove_perm("stations.view_site", user, site)
    remove_perm("stations.operate_site", user, site)
