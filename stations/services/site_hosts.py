"""Site hosts: a role whose scope is a set of sites, granted as django-guardian permissions on Site.

Inviting a user, changing a member's role and a site host's sites all touch these grants, so they live
here, above accounts (accounts <- stations): accounts.services keeps what only concerns organisations
and users (memberships, activation, the audit log, the invitation email).
"""

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, models, transaction
from guardian.shortcuts import assign_perm, remove_perm

from accounts.enums import Role
from accounts.models import AuditAction, Membership, Organisation, User
from accounts.services import (
    active_admin_count,
    audit_record,
    invitation_send,
    membership_locked,
    membership_set,
    user_roles_forget,
    users_manage_access,
)
from cpms.errors import ValidationFailed
from stations.models import Site
from stations.scope import organisation_site_list, user_site_grants


@transaction.atomic
def site_host_grant(*, user: User, site: Site, may_set_prices: bool = False) -> None:
    """Make `user` a site host of `site` (a membership in the site's organisation plus object perms).
    `may_set_prices` also lets them set the site's prices and access rules (Capability.PRICING)."""
    existing = Membership.objects.filter(user=user, organisation_id=site.organisation_id).first()
    if existing is None:
        membership_set(user=user, organisation=site.organisation, role=Role.SITE_HOST)
    elif existing.role != Role.SITE_HOST:
        raise ValidationFailed(f"{user} already has the organisation-wide role {existing.role}.")
    assign_perm("stations.view_site", user, site)
    assign_perm("stations.operate_site", user, site)
    if may_set_prices:
        assign_perm("stations.change_site", user, site)
    else:
        remove_perm("stations.change_site", user, site)


@transaction.atomic
def site_host_revoke(*, user: User, site: Site) -> None:
    remove_perm("stations.view_site", user, site)
    remove_perm("stations.operate_site", user, site)
    remove_perm("stations.change_site", user, site)


def user_invite(
    *,
    actor: User,
    organisation: Organisation,
    email: str,
    role: str,
    sites: Iterable[Site | int] = (),
    may_set_prices: bool = False,
    request: Any = None,
) -> User:
    """Create a user without a usable password, give them `role` in `organisation` (a site host: on
    `sites`), and email them a one-time link to set a password (sent once the transaction commits).
    The username is the email address, lower-cased."""
    users_manage_access(actor=actor, organisation=organisation)
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except DjangoValidationError as exc:
        raise ValidationFailed(f"{email!r} is not a valid email address.") from exc
    if len(email) > 150:
        raise ValidationFailed("The email address must be at most 150 characters long.")
    if role not in Role.values:
        raise ValidationFailed(f"Unknown role {role!r}; expected one of {', '.join(Role.values)}.")
    sites = list(sites)
    if role == Role.SITE_HOST and not sites:
        raise ValidationFailed("A site host needs at least one site.")
    if role != Role.SITE_HOST and (sites or may_set_prices):
        raise ValidationFailed("Sites and 'may set prices' are for site hosts only.")
    with transaction.atomic():
        site_rows = organisation_site_list(organisation=organisation, sites=sites)
        if User.objects.filter(models.Q(username__iexact=email) | models.Q(email__iexact=email)).exists():
            raise ValidationFailed(f"A user with the email address {email} already exists.")
        try:
            with transaction.atomic():
                user = User(username=email, email=email, is_active=True)
                user.set_unusable_password()
                user.save()
        except IntegrityError as exc:  # a concurrent invitation won the unique username
            raise ValidationFailed(f"A user with the email address {email} already exists.") from exc
        if role == Role.SITE_HOST:
            for site in site_rows:
                site_host_grant(user=user, site=site, may_set_prices=may_set_prices)
        else:
            membership_set(user=user, organisation=organisation, role=role)
        audit_record(
            actor=actor,
            action=AuditAction.USER_INVITED,
            obj=user,
            organisation_id=organisation.pk,
            changes={
                "email": email,
                "role": role,
                "sites": [site.pk for site in site_rows],
                "may_set_prices": bool(may_set_prices) if role == Role.SITE_HOST else False,
            },
            request=request,
        )
        base_url = request.build_absolute_uri("/") if request is not None else settings.CPMS_PUBLIC_URL
        transaction.on_commit(
            lambda: invitation_send(user=user, organisation=organisation, actor=actor, base_url=base_url)
        )
    return user


def user_role_set(
    *, actor: User, user: User, organisation: Organisation, role: str, request: Any = None
) -> Membership:
    """Change a member's role in `organisation`. Leaving the site-host role drops their site grants there.
    The last active operator admin of an organisation keeps that role."""
    users_manage_access(actor=actor, organisation=organisation)
    if role not in Role.values:
        raise ValidationFailed(f"Unknown role {role!r}; expected one of {', '.join(Role.values)}.")
    with transaction.atomic():
        membership = membership_locked(user=user, organisation=organisation)
        before = membership.role
        if before == role:
            return membership
        if (
            before == Role.OPERATOR_ADMIN
            and user.is_active
            and active_admin_count(organisation=organisation) <= 1
        ):
            raise ValidationFailed(
                f"{user.get_username()} is the last operator admin of {organisation.name}."
            )
        changes: dict[str, Any] = {"role": {"before": before, "after": role}}
        if before == Role.SITE_HOST:
            site_ids, price_ids = user_site_grants(user=user, organisation=organisation)
            for site in organisation_site_list(organisation=organisation, sites=site_ids):
                site_host_revoke(user=user, site=site)
            changes["sites"] = {"before": site_ids, "after": []}
            changes["may_set_prices"] = {"before": price_ids, "after": []}
        membership = membership_set(user=user, organisation=organisation, role=role)
        audit_record(
            actor=actor,
            action=AuditAction.MEMBERSHIP_CHANGED,
            obj=membership,
            organisation_id=organisation.pk,
            changes=changes,
            request=request,
        )
    user_roles_forget(user)
    return membership


def user_site_grants_set(
    *,
    actor: User,
    user: User,
    organisation: Organisation,
    sites: Iterable[Site | int],
    may_set_prices: bool,
    request: Any = None,
) -> list[int]:
    """Make `sites` exactly the sites of `organisation` the site host `user` holds, each with pricing
    rights if `may_set_prices`. Returns the site ids now held. Audited per kind of change: added,
    removed, and the pricing right changed on sites kept."""
    users_manage_access(actor=actor, organisation=organisation)
    with transaction.atomic():
        membership = membership_locked(user=user, organisation=organisation)
        if membership.role != Role.SITE_HOST:
            raise ValidationFailed(
                f"{user.get_username()} has the organisation-wide role {membership.role}: site grants are for "
                "site hosts."
            )
        wanted = organisation_site_list(organisation=organisation, sites=sites)
        before, price_before = user_site_grants(user=user, organisation=organisation)
        after = [site.pk for site in wanted]
        removed = [pk for pk in before if pk not in after]
        added = [pk for pk in after if pk not in before]
        repriced = [pk for pk in after if pk in before and (pk in price_before) != bool(may_set_prices)]
        for site in organisation_site_list(organisation=organisation, sites=removed):
            site_host_revoke(user=user, site=site)
        for site in wanted:
            site_host_grant(user=user, site=site, may_set_prices=may_set_prices)
        common = {"actor": actor, "obj": user, "organisation_id": organisation.pk, "request": request}
        if added:
            audit_record(
                action=AuditAction.SITE_GRANT_ADDED,
                changes={"sites": added, "may_set_prices": bool(may_set_prices)},
                **common,
            )
        if removed:
            audit_record(action=AuditAction.SITE_GRANT_REMOVED, changes={"sites": removed}, **common)
        if repriced:
            audit_record(
                action=AuditAction.SITE_GRANT_CHANGED,
                changes={
                    "sites": repriced,
                    "may_set_prices": {"before": not may_set_prices, "after": bool(may_set_prices)},
                },
                **common,
            )
    return after
