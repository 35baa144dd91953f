import json
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.mail import send_mail
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import validate_slug
from django.db import IntegrityError, models, transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from rest_framework.authtoken.models import Token

from accounts.enums import Capability, Role
from accounts.models import AuditAction, AuditRecord, Membership, Organisation, User
from accounts.selectors import organisation_access, organisation_ids_with
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
    """The user's REST API token (docs/contract.md#commands-and-settings: `create_api_token`); an existing key
    is kept, not rotated."""
    token, _ = Token.objects.get_or_create(user=user)
    return token


# --- audit log (docs/reliability.md case 42) ----------------------------------------------------

# Paths tried, in order, to find the organisation of an audited object (a station, a session, a CDR...).
_ORGANISATION_PATHS = ("station", "site", "evse", "session", "cdr", "tariff", "node", "user_organisation")


def _organisation_id_of(obj: Any, depth: int = 0) -> int | None:
    if obj is None or depth > 3:
        return None
    if isinstance(obj, Organisation):
        return obj.pk
    organisation_id: int | None = getattr(obj, "organisation_id", None)
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


def _remote_addr(request: Any) -> str | None:
    """The client's address as login throttling sees it (accounts.backends.client_ip)."""
    from accounts.backends import client_ip

    return None if request is None else client_ip(request)


def audit_record(
    *,
    actor: User | None,
    action: str,
    obj: models.Model | None = None,
    organisation_id: int | None = None,
    changes: dict[str, Any] | None = None,
    request: Any = None,
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
# Inviting a user, changing a role and a site host's grants touch sites: they are in
# stations.services.site_hosts, which builds on the helpers below.


def users_manage_access(*, actor: User, organisation: Organisation) -> Organisation:
    """NotFound outside the actor's organisations, PermissionDenied without MANAGE_USERS there."""
    return organisation_access(user=actor, pk=organisation.pk, capability=Capability.MANAGE_USERS)


def user_roles_forget(user: User) -> None:
    """Drop the roles cached on `user` (membership_roles) after changing them."""
    if hasattr(user, "_cpms_roles"):
        del user._cpms_roles


def membership_locked(*, user: User, organisation: Organisation) -> Membership:
    """The user's membership in `organisation`, locked for update; NotFound if they have none there."""
    membership = Membership.objects.select_for_update().filter(user=user, organisation=organisation).first()
    if membership is None:
        raise NotFound(f"User {user.pk} not found.")
    return membership


def active_admin_count(*, organisation: Organisation) -> int:
    """How many active operator admins `organisation` has (the last one keeps that role)."""
    return Membership.objects.filter(
        organisation=organisation, role=Role.OPERATOR_ADMIN, user__is_active=True
    ).count()


def invite_link_path(*, user: User) -> str:
    """The path of the one-time link that lets an invited user set a password (Django's password-reset
    tokens: the token covers the password hash and last login, so it stops working once used)."""
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return reverse("portal:invite-accept", args=[uidb64, token])


def invitation_send(*, user: User, organisation: Organisation, actor: User, base_url: str) -> None:
    """Email `user` the one-time link (call after commit); a failure is logged, the user can be re-invited."""
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


def user_invite_resend(*, actor: User, user: User, organisation: Organisation, request: Any = None) -> None:
    """Send the invitation again, to a member of `organisation` who never set a password."""
    users_manage_access(actor=actor, organisation=organisation)
    with transaction.atomic():
        membership_locked(user=user, organisation=organisation)
        if user.has_usable_password():
            raise ValidationFailed(f"{user.get_username()} has already set a password.")
        base_url = request.build_absolute_uri("/") if request is not None else settings.CPMS_PUBLIC_URL
        transaction.on_commit(
            lambda: invitation_send(user=user, organisation=organisation, actor=actor, base_url=base_url)
        )


@transaction.atomic
def user_invite_accept(*, user: User, password: str, request: Any = None) -> User:
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


def _active_set(
    *, actor: User, user: User, organisation: Organisation, active: bool, request: Any = None
) -> User:
    users_manage_access(actor=actor, organisation=organisation)
    with transaction.atomic():
        membership_locked(user=user, organisation=organisation)
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
                if active_admin_count(organisation=membership.organisation) <= 1:
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


def user_deactivate(*, actor: User, user: User, organisation: Organisation, request: Any = None) -> User:
    """The user can no longer log in (portal, admin, API token). Not yourself, not the last active
    operator admin of an organisation, not a member of organisations the actor does not manage."""
    return _active_set(actor=actor, user=user, organisation=organisation, active=False, request=request)


def user_activate(*, actor: User, user: User, organisation: Organisation, request: Any = None) -> User:
    """Undo `user_deactivate`."""
    return _active_set(actor=actor, user=user, organisation=organisation, active=True, request=request)
