"""What operators do to id tokens (API, admin). Looking tokens up for a charger is the transactions side.

Id tokens belong to an organisation as a whole: creating and changing them needs the `manage` capability
organisation-wide (site hosts hold no id tokens). References arrive as ids and are resolved inside the
actor's scope, as in stations.services.management.
"""

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from accounts.enums import Capability
from accounts.models import User
from accounts.selectors import organisation_access, user_can
from cpms.errors import NotFound, PermissionDenied, ValidationFailed
from sessions.enums import IdTokenStatus, IdTokenType
from sessions.models import IdToken

# ConcurrentTx is an answer to an authorisation, not something a token is.
SETTABLE_STATUSES = (
    IdTokenStatus.ACCEPTED,
    IdTokenStatus.BLOCKED,
    IdTokenStatus.EXPIRED,
    IdTokenStatus.INVALID,
)
VALUE_MAX_LENGTH = 255
ID_TOKEN_FIELDS = frozenset(
    {"organisation_id", "value", "type", "status", "expires_at", "group_id", "owner_name", "owner_email"}
)


def id_token_status_validate(status: str) -> None:
    if status not in SETTABLE_STATUSES:
        raise ValidationFailed(
            f"Unknown id token status {status!r}; expected one of {', '.join(SETTABLE_STATUSES)}."
        )


def id_token_validate(token: IdToken) -> None:
    """The rules every id token obeys, whoever writes it (services, and admin forms before they call them)."""
    if not 1 <= len(token.value) <= VALUE_MAX_LENGTH:
        raise ValidationFailed(f"Id token value must be 1-{VALUE_MAX_LENGTH} characters long.")
    if not token.value.isprintable():
        raise ValidationFailed("Id token value must contain printable characters only.")
    if token.type not in IdTokenType.values:
        raise ValidationFailed(
            f"Unknown id token type {token.type!r}; expected one of {', '.join(IdTokenType.values)}."
        )
    id_token_status_validate(token.status)
    if token.expires_at is not None and not isinstance(token.expires_at, datetime):
        raise ValidationFailed("expires_at must be a date and time.")
    if token.expires_at is not None and token.expires_at.tzinfo is None:
        raise ValidationFailed("expires_at must carry a time zone.")
    if token.owner_email:
        try:
            validate_email(token.owner_email)
        except DjangoValidationError as exc:
            raise ValidationFailed(f"Invalid owner e-mail address {token.owner_email!r}.") from exc
    if token.group_id is not None:
        if token.pk is not None and token.group_id == token.pk:
            raise ValidationFailed("An id token cannot be its own group.")
        # Only tokens of the same organisation: a group in another tenant would both leak its existence and
        # let a charger of one operator authorise against another operator's grouping.
        if not IdToken.objects.filter(pk=token.group_id, organisation_id=token.organisation_id).exists():
            raise ValidationFailed(f"Group id token {token.group_id} not found in this organisation.")
    clash = IdToken.objects.filter(organisation_id=token.organisation_id, value=token.value).exclude(
        pk=token.pk
    )
    if clash.exists():
        raise ValidationFailed(f"The organisation already has an id token {token.value!r}.")


def _id_token_save(token: IdToken, **save_kwargs) -> None:
    try:
        with transaction.atomic():
            token.save(**save_kwargs)
    except IntegrityError as exc:  # the same value created concurrently
        raise ValidationFailed(f"The organisation already has an id token {token.value!r}.") from exc


@transaction.atomic
def id_token_create(
    *,
    actor: User,
    organisation_id: int,
    value: str,
    type: str = IdTokenType.ISO14443,
    status: str = IdTokenStatus.ACCEPTED,
    expires_at: datetime | None = None,
    group_id: int | None = None,
    owner_name: str = "",
    owner_email: str = "",
) -> IdToken:
    try:
        organisation = organisation_access(user=actor, pk=organisation_id, capability=Capability.MANAGE)
    except NotFound as exc:  # a reference in the request body, not the URL: the body is wrong
        raise ValidationFailed(exc.message) from exc
    token = IdToken(
        organisation=organisation,
        value=value,
        type=type,
        status=status,
        expires_at=expires_at,
        group_id=group_id,
        owner_name=owner_name,
        owner_email=owner_email,
    )
    id_token_validate(token)
    _id_token_save(token)
    return token


@transaction.atomic
def id_token_update(*, actor: User, id_token: IdToken, data: dict[str, Any]) -> IdToken:
    """Change the fields in `data` (keys from ID_TOKEN_FIELDS); `organisation_id` may only repeat the current
    one: a token does not change tenant."""
    unknown = sorted(set(data) - ID_TOKEN_FIELDS)
    if unknown:
        raise ValidationFailed(f"Cannot set {', '.join(unknown)}.")
    token = IdToken.objects.select_for_update().get(pk=id_token.pk)
    if not user_can(user=actor, capability=Capability.MANAGE, organisation_id=token.organisation_id):
        raise PermissionDenied(f"You may not manage id token {token.pk}.")
    if "organisation_id" in data and data["organisation_id"] != token.organisation_id:
        raise ValidationFailed("An id token cannot move to another organisation.")
    changed = [field for field in sorted(ID_TOKEN_FIELDS - {"organisation_id"}) if field in data]
    for field in changed:
        setattr(token, field, data[field])
    id_token_validate(token)
    if changed:
        update_fields = [field.removesuffix("_id") if field == "group_id" else field for field in changed]
        _id_token_save(token, update_fields=[*update_fields, "updated_at"])
    return token
