from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_slug
from django.db import IntegrityError, transaction
from guardian.shortcuts import assign_perm, remove_perm
from rest_framework.authtoken.models import Token

from accounts.enums import Role
from accounts.models import Membership, Organisation, User
from cpms.errors import PermissionDenied, ValidationFailed


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
def site_host_grant(*, user: User, site, may_set_prices: bool = False) -> None:
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
def site_host_revoke(*, user: User, site) -> None:
    remove_perm("stations.view_site", user, site)
    remove_perm("stations.operate_site", user, site)
    remove_perm("stations.change_site", user, site)


@transaction.atomic
def organisation_create(
    *, actor: User, name: str, slug: str, auto_register_stations: bool = False, currency: str = "EUR"
) -> Organisation:
    """A new tenant. Only superusers create tenants: an operator admin manages one, not the platform."""
    if not actor.is_superuser:
        raise PermissionDenied("Only a superuser may create organisations.")
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationFailed("Organisation name must be 1-200 characters long.")
    try:
        validate_slug(slug)
    except DjangoValidationError as exc:
        raise ValidationFailed(f"Invalid slug {slug!r}: letters, digits, '-' and '_' only.") from exc
    if len(slug) > 64:
        raise ValidationFailed("Organisation slug must be at most 64 characters long.")
    if not (len(currency) == 3 and currency.isascii() and currency.isalpha()):
        raise ValidationFailed(f"Invalid currency {currency!r}: an ISO 4217 code such as EUR.")
    if Organisation.objects.filter(slug=slug).exists():
        raise ValidationFailed(f"An organisation with the slug {slug!r} already exists.")
    try:
        with transaction.atomic():
            return Organisation.objects.create(
                name=name,
                slug=slug,
                auto_register_stations=auto_register_stations,
                currency=currency.upper(),
            )
    except IntegrityError as exc:  # a concurrent create won the unique slug
        raise ValidationFailed(f"An organisation with the slug {slug!r} already exists.") from exc


def api_token_get_or_create(*, user: User) -> Token:
    """The user's REST API token (CONTRACT.md: `create_api_token`); an existing key is kept, not rotated."""
    token, _ = Token.objects.get_or_create(user=user)
    return token
