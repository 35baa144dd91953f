import json
import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import validate_email, validate_slug
from django.db import IntegrityError, models, transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from guardian.shortcuts import assign_perm, remove_perm
from rest_framework.authtoken.models import Token

from accounts.enums import Capability, Role
from accounts.models import AuditAction, AuditRecord, Membership, Organisation, User
from accounts.selectors import organisation_access, organisation_ids_with, user_site_grants
from cpms.errors import NotFound, PermissionDenied, ValidationFailed

logger = logging.getLogger(__name__)


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


# --- audit log (RELIABILITY 42) --------------------------------------------------------------------

# Paths tried, in order, to find the organisation of an audited object (a station, a session, a CDR...).
_ORGANISATION_PATHS = ("station", "site", "evse", "session", "cdr", "tariff", "node", "user_organisation")


def _organisation_id_of(obj: Any, depth: int = 0) -> int | None:
    if obj is None or depth > 3:
        return None
    if isinstance(obj, Organisation):
        return obj.pk
    organisation_id = getattr(obj, "organisation_id", None)
    if organisation_id is not None:
        return organisation_id
    for name in _ORGANISATION_PATHS:
        try:
            related = getattr(obj, name, None)
        except Exception:  # a missing related row (RelatedObjectDoesNotExist) says nothing
            related = None
        if isinstance(related, models.Model):
            found = _organisation_id_of(related, depth + 1)
            if found is not None:
                return found
    return None


def _remote_addr(request) -> str | None:
    """The client's address as login throttling sees it (accounts.backends.client_ip)."""
    from accounts.backends import client_ip

    return None if request is None else client_ip(request)


def audit_record(
    *,
    actor: User | None,
    action: str,
    obj: models.Model | None = None,
    organisation_id: int | None = None,
    changes: dict | None = None,
    request=None,
) -> AuditRecord:
    """Write one audit record in the caller's transaction. `actor` None (or anonymous) is the system.
    `organisation_id` defaults to the object's organisation (found through its station, site... if any).
    `changes` must be JSON-serialisable with Django's encoder (dates, decimals and UUIDs become strings)."""
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    if organisation_id is None:
        organisation_id = _organisation_id_of(obj)
    return AuditRecord.objects.create(
        actor=actor,
        organisation_id=organisation_id,
        action=action,
        object_type=f"{obj._meta.app_label}.{obj._meta.model_name}" if obj is not None else "",
        object_id=str(obj.pk) if obj is not None and obj.pk is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        changes=json.loads(json.dumps(changes or {}, cls=DjangoJSONEncoder)),
        remote_addr=_remote_addr(request),
    )


# --- user management (operator admins: Capability.MANAGE_USERS) ------------------------------------


def _manage_users_access(*, actor: User, organisation: Organisation) -> Organisation:
    """NotFound outside the actor's organisations, PermissionDenied without MANAGE_USERS there."""
    return organisation_access(user=actor, pk=organisation.pk, capability=Capability.MANAGE_USERS)


def _forget_roles(user: User) -> None:
    if hasattr(user, "_cpms_roles"):
        del user._cpms_roles


def _membership_in(*, user: User, organisation: Organisation) -> Membership:
    membership = Membership.objects.select_for_update().filter(user=user, organisation=organisation).first()
    if membership is None:
        raise NotFound(f"User {user.pk} not found.")
    return membership


def _sites_of(*, organisation: Organisation, sites: Iterable) -> list:
    """The sites (objects or ids) as Site rows of `organisation`, by pk; NotFound for any other."""
    from stations.models import Site

    wanted = sorted({getattr(site, "pk", site) for site in sites})
    found = {site.pk: site for site in Site.objects.filter(organisation=organisation, pk__in=wanted)}
    for pk in wanted:
        if pk not in found:
            raise NotFound(f"Site {pk} not found.")
    return [found[pk] for pk in wanted]


def _active_admin_count(*, organisation: Organisation) -> int:
    return Membership.objects.filter(
        organisation=organisation, role=Role.OPERATOR_ADMIN, user__is_active=True
    ).count()


def invite_link_path(*, user: User) -> str:
    """The path of the one-time link that lets an invited user set a password (Django's password-reset
    tokens: the token covers the password hash and last login, so it stops working once used)."""
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return reverse("portal:invite-accept", args=[uidb64, token])


def _invitation_send(*, user: User, organisation: Organisation, actor: User, base_url: str) -> None:
    link = base_url.rstrip("/") + invite_link_path(user=user)
    hours = settings.PASSWORD_RESET_TIMEOUT // 3600
    body = (
        f"Hello,\n\n{actor.get_full_name() or actor.get_username()} invited you to {organisation.name} on the "
        f"charge point management system.\n\nYour username is: {user.get_username()}\n\n"
        f"Set your password here (the link works once and expires in {hours} hours):\n{link}\n\n"
        "If you did not expect this invitation, ignore this email.\n"
    )
    try:
        send_mail(f"Your invitation to {organisation.name}", body, None, [user.email])
    except Exception:  # the user exists: the invitation can be sent again from their page
        logger.exception("could not send the invitation to user %s", user.pk)


def user_invite(
    *,
    actor: User,
    organisation: Organisation,
    email: str,
    role: str,
    sites: Iterable = (),
    may_set_prices: bool = False,
    request=None,
) -> User:
    """Create a user without a usable password, give them `role` in `organisation` (a site host: on
    `sites`), and email them a one-time link to set a password (sent once the transaction commits).
    The username is the email address, lower-cased."""
    _manage_users_access(actor=actor, organisation=organisation)
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
        site_rows = _sites_of(organisation=organisation, sites=sites)
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
            lambda: _invitation_send(user=user, organisation=organisation, actor=actor, base_url=base_url)
        )
    return user


def user_invite_resend(*, actor: User, user: User, organisation: Organisation, request=None) -> None:
    """Send the invitation again, to a member of `organisation` who never set a password."""
    _manage_users_access(actor=actor, organisation=organisation)
    with transaction.atomic():
        _membership_in(user=user, organisation=organisation)
        if user.has_usable_password():
            raise ValidationFailed(f"{user.get_username()} has already set a password.")
        base_url = request.build_absolute_uri("/") if request is not None else settings.CPMS_PUBLIC_URL
        transaction.on_commit(
            lambda: _invitation_send(user=user, organisation=organisation, actor=actor, base_url=base_url)
        )


@transaction.atomic
def user_invite_accept(*, user: User, password: str, request=None) -> User:
    """The invited user sets their password (the caller checked the link's token and the password's
    strength, e.g. with Django's SetPasswordForm)."""
    user.set_password(password)
    user.save(update_fields=["password"])
    first = Membership.objects.filter(user=user).order_by("created_at", "pk").first()
    audit_record(
        actor=user,
        action=AuditAction.INVITE_ACCEPTED,
        obj=user,
        organisation_id=first.organisation_id if first is not None else None,
        request=request,
    )
    return user


def user_role_set(
    *, actor: User, user: User, organisation: Organisation, role: str, request=None
) -> Membership:
    """Change a member's role in `organisation`. Leaving the site-host role drops their site grants there.
    The last active operator admin of an organisation keeps that role."""
    _manage_users_access(actor=actor, organisation=organisation)
    if role not in Role.values:
        raise ValidationFailed(f"Unknown role {role!r}; expected one of {', '.join(Role.values)}.")
    with transaction.atomic():
        membership = _membership_in(user=user, organisation=organisation)
        before = membership.role
        if before == role:
            return membership
        if (
            before == Role.OPERATOR_ADMIN
            and user.is_active
            and _active_admin_count(organisation=organisation) <= 1
        ):
            raise ValidationFailed(
                f"{user.get_username()} is the last operator admin of {organisation.name}."
            )
        changes: dict[str, Any] = {"role": {"before": before, "after": role}}
        if before == Role.SITE_HOST:
            site_ids, price_ids = user_site_grants(user=user, organisation=organisation)
            for site in _sites_of(organisation=organisation, sites=site_ids):
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
    _forget_roles(user)
    return membership


def user_site_grants_set(
    *,
    actor: User,
    user: User,
    organisation: Organisation,
    sites: Iterable,
    may_set_prices: bool,
    request=None,
) -> list[int]:
    """Make `sites` exactly the sites of `organisation` the site host `user` holds, each with pricing
    rights if `may_set_prices`. Returns the site ids now held. Audited per kind of change: added,
    removed, and the pricing right changed on sites kept."""
    _manage_users_access(actor=actor, organisation=organisation)
    with transaction.atomic():
        membership = _membership_in(user=user, organisation=organisation)
        if membership.role != Role.SITE_HOST:
            raise ValidationFailed(
                f"{user.get_username()} has the organisation-wide role {membership.role}: site grants are for "
                "site hosts."
            )
        wanted = _sites_of(organisation=organisation, sites=sites)
        before, price_before = user_site_grants(user=user, organisation=organisation)
        after = [site.pk for site in wanted]
        removed = [pk for pk in before if pk not in after]
        added = [pk for pk in after if pk not in before]
        repriced = [pk for pk in after if pk in before and (pk in price_before) != bool(may_set_prices)]
        for site in _sites_of(organisation=organisation, sites=removed):
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


def _active_set(*, actor: User, user: User, organisation: Organisation, active: bool, request=None) -> User:
    _manage_users_access(actor=actor, organisation=organisation)
    with transaction.atomic():
        _membership_in(user=user, organisation=organisation)
        user = User.objects.select_for_update().get(pk=user.pk)
        if user.is_active == active:
            return user
        if user.is_superuser and not actor.is_superuser:
            raise PermissionDenied("Only a superuser may change a superuser's account.")
        # is_active is global: a member of organisations the actor does not manage is not theirs to switch.
        elsewhere = set(Membership.objects.filter(user=user).values_list("organisation_id", flat=True))
        if not actor.is_superuser and not elsewhere <= set(
            organisation_ids_with(user=actor, capability=Capability.MANAGE_USERS)
        ):
            raise PermissionDenied(
                f"{user.get_username()} also belongs to organisations you do not manage; ask a platform admin."
            )
        if not active:
            if user.pk == actor.pk:
                raise ValidationFailed("You cannot deactivate your own account.")
            for membership in Membership.objects.filter(user=user, role=Role.OPERATOR_ADMIN).select_related(
                "organisation"
            ):
                if _active_admin_count(organisation=membership.organisation) <= 1:
                    raise ValidationFailed(
                        f"{user.get_username()} is the last operator admin of {membership.organisation.name}."
                    )
        user.is_active = active
        user.save(update_fields=["is_active"])
        audit_record(
            actor=actor,
            action=AuditAction.USER_ACTIVATED if active else AuditAction.USER_DEACTIVATED,
            obj=user,
            organisation_id=organisation.pk,
            changes={"is_active": {"before": not active, "after": active}},
            request=request,
        )
    return user


def user_deactivate(*, actor: User, user: User, organisation: Organisation, request=None) -> User:
    """The user can no longer log in (portal, admin, API token). Not yourself, not the last active
    operator admin of an organisation, not a member of organisations the actor does not manage."""
    return _active_set(actor=actor, user=user, organisation=organisation, active=False, request=request)


def user_activate(*, actor: User, user: User, organisation: Organisation, request=None) -> User:
    """Undo `user_deactivate`."""
    return _active_set(actor=actor, user=user, organisation=organisation, active=True, request=request)
