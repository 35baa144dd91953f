"""What operators do to id tokens (API, admin), and what a token may do where (its status at a station).
Looking tokens up for a charger is the transactions side.

Id tokens belong to an organisation as a whole: creating and changing them needs the `manage` capability
organisation-wide (site hosts hold no id tokens). References arrive as ids and are resolved inside the
actor's scope, as in stations.services.management.

Where a token may charge: with neither `allowed_sites` nor `allowed_stations`, at every station of its
organisation; otherwise only at the stations of those sites and at those stations. A site whose access is
restricted (sessions.services.site_access) further admits only its allowed groups and their members.
Elsewhere its status is NotAtThisLocation (2.0.1 AuthorizationStatusEnumType; the 1.6 mappers say Invalid).
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import BooleanField, Exists, ExpressionWrapper, OuterRef, Q, QuerySet

from accounts.enums import Capability
from accounts.models import User
from accounts.selectors import organisation_access
from cpms.errors import NotFound, PermissionDenied, ValidationFailed
from sessions.enums import IdTokenStatus, IdTokenType
from sessions.models import IdToken, LocalListState, SiteAccessGroup
from stations.models import ChargingStation, Site, SiteAccessMode
from stations.scope import site_scope_q, station_scope_q, user_can

# ConcurrentTx is an answer to an authorisation, not something a token is.
SETTABLE_STATUSES = (
    IdTokenStatus.ACCEPTED,
    IdTokenStatus.BLOCKED,
    IdTokenStatus.EXPIRED,
    IdTokenStatus.INVALID,
)
VALUE_MAX_LENGTH = 255
ID_TOKEN_FIELDS = frozenset(
    {
        "organisation_id",
        "value",
        "type",
        "status",
        "expires_at",
        "group_id",
        "owner_name",
        "owner_email",
        "in_local_list",
        "allowed_sites",
        "allowed_stations",
    }
)
# The many-to-many fields of ID_TOKEN_FIELDS: site ids and station identities.
PLACE_FIELDS = frozenset({"allowed_sites", "allowed_stations"})
# An answer to an authorisation (2.0.1 AuthorizationStatusEnumType), not something a token is: too long for
# the status columns, never stored.
NOT_AT_THIS_LOCATION = "NotAtThisLocation"
# LocalListState.last_error that makes the next sync of a station's local list a full one.
LOCAL_LIST_STALE = "A listed token changed its value or was deleted: the next sync sends the full list."


# --- where a token may charge -----------------------------------------------------------------------
def id_token_allowed_q(*, station_id: int) -> Q:
    """The id tokens (a Q on IdToken) that may charge at station `station_id` as far as places go:
    - the token's own restriction: unrestricted ones, and those allowed at its site or at it;
    - and the site's rule: at a station whose site is restricted (Site.access_mode), only a token that is,
      or whose group is, one of the site's allowed groups (SiteAccessGroup).
    EXISTS subqueries on the link tables' unique indexes: no join that multiplies rows, no extra round trip."""
    sites = IdToken.allowed_sites.through.objects
    stations = IdToken.allowed_stations.through.objects
    token = OuterRef("pk")
    unrestricted = ~Q(Exists(sites.filter(idtoken_id=token))) & ~Q(Exists(stations.filter(idtoken_id=token)))
    own_places = (
        unrestricted
        | Q(Exists(sites.filter(idtoken_id=token, site__stations=station_id)))
        | Q(Exists(stations.filter(idtoken_id=token, chargingstation_id=station_id)))
    )
    restricted_site = ChargingStation.objects.filter(
        pk=station_id, site__access_mode=SiteAccessMode.RESTRICTED
    )
    in_allowed_group = SiteAccessGroup.objects.filter(site__stations=station_id).filter(
        Q(group_id=token) | Q(group_id=OuterRef("group_id"))
    )
    return own_places & (~Q(Exists(restricted_site)) | Q(Exists(in_allowed_group)))


def id_token_with_place(qs: QuerySet[IdToken], *, station_id: int) -> QuerySet[IdToken]:
    """`qs` annotated with `allowed_here` (bool) for station `station_id`: read in the same query as the
    token row, so an unrestricted token costs nothing more than its lookup."""
    return qs.annotate(
        allowed_here=ExpressionWrapper(id_token_allowed_q(station_id=station_id), output_field=BooleanField())
    )


def id_token_status_at(token: IdToken, now: datetime) -> str:
    """The status a charger is told for `token` (with its `group` loaded): its own status, Expired past its
    expiry, its group's status when the group is not Accepted (a blocked fleet blocks its cards), and
    NotAtThisLocation when the token was loaded with `id_token_with_place` for a station it may not use."""
    status = token.status
    if status == IdTokenStatus.ACCEPTED and token.expires_at is not None and token.expires_at <= now:
        status = IdTokenStatus.EXPIRED
    group = token.group
    if status == IdTokenStatus.ACCEPTED and group is not None and group.status != IdTokenStatus.ACCEPTED:
        status = group.status
    if status == IdTokenStatus.ACCEPTED and not getattr(token, "allowed_here", True):
        status = NOT_AT_THIS_LOCATION
    return status


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


def _places_resolve(
    *, actor: User, organisation_id: int, site_ids: Iterable[int], identities: Iterable[str]
) -> tuple[list[Site], list[ChargingStation]]:
    """Sites (by id) and stations (by identity) of the token's organisation that the actor sees. Anything
    else is reported as not found, whether it exists elsewhere or not."""
    site_ids, identities = set(site_ids), set(identities)
    sites = list(
        Site.objects.filter(site_scope_q(user=actor), organisation_id=organisation_id, pk__in=site_ids)
    )
    missing_sites = site_ids - {site.pk for site in sites}
    if missing_sites:
        listed = ", ".join(str(pk) for pk in sorted(missing_sites))
        raise ValidationFailed(f"Sites not found in this organisation: {listed}.")
    stations = list(
        ChargingStation.objects.filter(
            station_scope_q(user=actor), organisation_id=organisation_id, identity__in=identities
        )
    )
    missing_stations = identities - {station.identity for station in stations}
    if missing_stations:
        listed = ", ".join(repr(identity) for identity in sorted(missing_stations))
        raise ValidationFailed(f"Stations not found in this organisation: {listed}.")
    return sites, stations


def _local_lists_mark_stale(token_ids: Iterable[int]) -> None:
    """The stations that hold these tokens in their local list get a full list next time: a differential
    update could not remove a value we no longer know (LocalListEntry keeps the token, not the value)."""
    LocalListState.objects.filter(station__local_list_entries__id_token_id__in=list(token_ids)).update(
        last_error=LOCAL_LIST_STALE
    )


def _id_token_save(token: IdToken, *, update_fields: list[str] | None = None) -> None:
    try:
        with transaction.atomic():
            token.save(update_fields=update_fields)
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
    in_local_list: bool = False,
    allowed_sites: Iterable[int] = (),
    allowed_stations: Iterable[str] = (),
) -> IdToken:
    """A new id token. `allowed_sites` (site ids) and `allowed_stations` (identities) restrict where it may
    charge; both empty: anywhere in its organisation."""
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
        in_local_list=in_local_list,
    )
    id_token_validate(token)
    sites, stations = _places_resolve(
        actor=actor, organisation_id=organisation.pk, site_ids=allowed_sites, identities=allowed_stations
    )
    _id_token_save(token)
    if sites:
        token.allowed_sites.set(sites)
    if stations:
        token.allowed_stations.set(stations)
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
    changed = [
        field for field in sorted(ID_TOKEN_FIELDS - PLACE_FIELDS - {"organisation_id"}) if field in data
    ]
    value_changed = "value" in data and data["value"] != token.value
    for field in changed:
        setattr(token, field, data[field])
    id_token_validate(token)
    places = _places_resolve(
        actor=actor,
        organisation_id=token.organisation_id,
        site_ids=data.get("allowed_sites", ()),
        identities=data.get("allowed_stations", ()),
    )
    if changed:
        update_fields = [field.removesuffix("_id") if field == "group_id" else field for field in changed]
        _id_token_save(token, update_fields=[*update_fields, "updated_at"])
    if "allowed_sites" in data:
        token.allowed_sites.set(places[0])
    if "allowed_stations" in data:
        token.allowed_stations.set(places[1])
    if value_changed:
        _local_lists_mark_stale([token.pk])
    return token


@transaction.atomic
def id_token_delete(*, actor: User, id_token: IdToken) -> None:
    """Delete an id token (the admin's delete, superusers only there). Stations that hold it in their local
    list get a full list at their next sync, which leaves it out."""
    if not user_can(user=actor, capability=Capability.MANAGE, organisation_id=id_token.organisation_id):
        raise PermissionDenied(f"You may not manage id token {id_token.pk}.")
    _local_lists_mark_stale([id_token.pk])
    IdToken.objects.filter(pk=id_token.pk).delete()
