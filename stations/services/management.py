"""What operators do to sites and stations (API, admin). The charger-reported side is services/ocpp.py.

Every service takes the acting user and checks the `manage` capability itself, whichever interface calls it.
References to other objects arrive as ids and are resolved inside the actor's scope: one the actor cannot see
is reported as not found (400: the request body is wrong, the URL is fine), one the actor sees but may not
manage is PermissionDenied (403).

Tenant fields are fixed once created: a site or station never moves to another organisation (its sessions and
history would move with it, into another tenant's view), and a station only moves between its own
organisation's sites.
"""

import re
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

from django.db import IntegrityError, transaction

from accounts.enums import Capability
from accounts.models import Organisation, User
from accounts.selectors import organisation_access
from cpms.errors import NotFound, PermissionDenied, ValidationFailed
from stations.enums import RegistrationStatus
from stations.models import ChargingStation, Site
from stations.scope import site_scope_q, user_can
from stations.services.credentials import password_validate, station_password_set

IDENTITY_MAX_LENGTH = 48
# Profiles 1 and 2 authenticate with HTTP Basic; 0 has no authentication and 3 uses a client certificate.
PASSWORD_PROFILES = frozenset({1, 2})
SITE_FIELDS = frozenset(
    {
        "organisation_id",
        "name",
        "time_zone",
        "address",
        "city",
        "postal_code",
        "country",
        "latitude",
        "longitude",
        "grid_capacity_w",
    }
)
STATION_FIELDS = frozenset(
    {
        "identity",
        "name",
        "organisation_id",
        "site_id",
        "registration_status",
        "security_profile",
        "password",
    }
)
_COUNTRY_RE = re.compile(r"[A-Z]{2}")


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    # available_timezones() walks the tz database on disk: once per process is enough.
    return frozenset(available_timezones())


def time_zone_validate(time_zone: str) -> None:
    if time_zone not in _time_zones():
        raise ValidationFailed(f"Unknown time zone {time_zone!r}; use an IANA name such as 'Europe/Berlin'.")


def identity_validate(identity: str) -> None:
    """docs/contract.md#url-and-identity: the identity is the last segment of the charger's OCPP URL, 1-48
    characters."""
    if not 1 <= len(identity) <= IDENTITY_MAX_LENGTH:
        raise ValidationFailed(f"Station identity must be 1-{IDENTITY_MAX_LENGTH} characters long.")
    if "/" in identity:
        raise ValidationFailed("Station identity must not contain '/': it is one segment of the OCPP URL.")
    if not identity.isprintable():
        raise ValidationFailed("Station identity must contain printable characters only.")


def _organisation_to_manage(*, actor: User, organisation_id: int) -> Organisation:
    try:
        return organisation_access(user=actor, pk=organisation_id, capability=Capability.MANAGE)
    except NotFound as exc:
        raise ValidationFailed(exc.message) from exc


def _site_to_manage(*, actor: User, site_id: int) -> Site:
    site = Site.objects.filter(site_scope_q(user=actor)).filter(pk=site_id).first()
    if site is None:
        raise ValidationFailed(f"Site {site_id} not found.")
    if not user_can(
        user=actor, capability=Capability.MANAGE, organisation_id=site.organisation_id, site_id=site.pk
    ):
        raise PermissionDenied(f"You may not manage site {site.pk}.")
    return site


def _require_manage(*, actor: User, organisation_id: int, site_id: int | None, what: str) -> None:
    if not user_can(
        user=actor, capability=Capability.MANAGE, organisation_id=organisation_id, site_id=site_id
    ):
        raise PermissionDenied(f"You may not manage {what}.")


def _unknown_fields_refuse(data: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValidationFailed(f"Cannot set {', '.join(unknown)}.")


def site_validate(site: Site) -> None:
    """The rules every site obeys, whoever writes it (services, and admin forms before they call them)."""
    name = site.name.strip()
    if not name or len(name) > 200:
        raise ValidationFailed("Site name must be 1-200 characters long.")
    time_zone_validate(site.time_zone)
    if site.country and not _COUNTRY_RE.fullmatch(site.country):
        raise ValidationFailed(
            f"Country must be an ISO 3166-1 alpha-2 code such as 'DE', not {site.country!r}."
        )
    if site.grid_capacity_w is not None and site.grid_capacity_w < 0:
        raise ValidationFailed("Grid capacity must not be negative.")
    if site.latitude is not None and not Decimal(-90) <= Decimal(site.latitude) <= Decimal(90):
        raise ValidationFailed("Latitude must be between -90 and 90.")
    if site.longitude is not None and not Decimal(-180) <= Decimal(site.longitude) <= Decimal(180):
        raise ValidationFailed("Longitude must be between -180 and 180.")
    clash = Site.objects.filter(organisation_id=site.organisation_id, name=site.name).exclude(pk=site.pk)
    if clash.exists():
        raise ValidationFailed(f"The organisation already has a site named {site.name!r}.")


def _site_save(site: Site, *, update_fields: list[str] | None = None) -> None:
    try:
        with transaction.atomic():
            site.save(update_fields=[*update_fields, "updated_at"] if update_fields is not None else None)
    except IntegrityError as exc:  # a concurrent request took the name between our check and the write
        raise ValidationFailed(f"The organisation already has a site named {site.name!r}.") from exc


@transaction.atomic
def site_create(
    *,
    actor: User,
    organisation_id: int,
    name: str,
    time_zone: str = "UTC",
    address: str = "",
    city: str = "",
    postal_code: str = "",
    country: str = "",
    latitude: Decimal | None = None,
    longitude: Decimal | None = None,
    grid_capacity_w: int | None = None,
) -> Site:
    organisation = _organisation_to_manage(actor=actor, organisation_id=organisation_id)
    site = Site(
        organisation=organisation,
        name=name,
        time_zone=time_zone,
        address=address,
        city=city,
        postal_code=postal_code,
        country=country,
        latitude=latitude,
        longitude=longitude,
        grid_capacity_w=grid_capacity_w,
    )
    site_validate(site)
    _site_save(site)
    return site


@transaction.atomic
def site_update(*, actor: User, site: Site, data: dict[str, Any]) -> Site:
    """Change the fields in `data` (keys from SITE_FIELDS); `organisation_id` may only repeat the current one."""
    _unknown_fields_refuse(data, SITE_FIELDS)
    site = Site.objects.select_for_update().get(pk=site.pk)
    _require_manage(
        actor=actor, organisation_id=site.organisation_id, site_id=site.pk, what=f"site {site.pk}"
    )
    if "organisation_id" in data and data["organisation_id"] != site.organisation_id:
        raise ValidationFailed("A site cannot move to another organisation.")
    changed = [field for field in SITE_FIELDS - {"organisation_id"} if field in data]
    for field in changed:
        setattr(site, field, data[field])
    site_validate(site)
    if changed:
        _site_save(site, update_fields=changed)
    return site


def _station_password_rule(*, security_profile: int, has_password: bool) -> None:
    if security_profile in PASSWORD_PROFILES and not has_password:
        raise ValidationFailed(
            f"Security profile {security_profile} authenticates with HTTP Basic: set a password."
        )


def _station_values_validate(*, registration_status: str, security_profile: int) -> None:
    if registration_status not in RegistrationStatus.values:
        raise ValidationFailed(
            f"Unknown registration status {registration_status!r}; "
            f"expected one of {', '.join(RegistrationStatus.values)}."
        )
    if not 0 <= security_profile <= 3:
        raise ValidationFailed("Security profile must be 0, 1, 2 or 3.")


def station_validate(
    station: ChargingStation, *, password: str | None = None, profile_changed: bool = False
) -> None:
    """The rules every station obeys, whoever writes it. `password`: a new password about to be set.

    A Basic-auth profile without a password is refused when it is being set up (a new station, or a change of
    `security_profile`, as `profile_changed` says), not on every later edit: such a station can exist (imported,
    or made before this rule) and its operator must still be able to rename or accept it.
    """
    if station._state.adding:  # an existing identity is the charger's and cannot change anyway
        identity_validate(station.identity)
    _station_values_validate(
        registration_status=station.registration_status, security_profile=station.security_profile
    )
    if password is not None:
        password_validate(password)
    if station._state.adding or profile_changed:
        _station_password_rule(
            security_profile=station.security_profile,
            has_password=bool(station.password_hash) or password is not None,
        )
        if station.security_profile in (1, 2) and ":" in station.identity:
            # The identity is the Basic-auth user-id, which cannot contain ':' (RFC 7617 section 2).
            raise ValidationFailed(
                f"Identity {station.identity!r} contains ':', so it cannot log in with HTTP Basic auth "
                "(security profiles 1 and 2)."
            )
    if station.site is not None and station.site.organisation_id != station.organisation_id:
        raise ValidationFailed(
            f"Site {station.site_id} belongs to another organisation than station {station.identity!r}."
        )
    clash = ChargingStation.objects.filter(identity=station.identity).exclude(pk=station.pk)
    if clash.exists():
        raise ValidationFailed(f"A station with the identity {station.identity!r} already exists.")


@transaction.atomic
def station_create(
    *,
    actor: User,
    identity: str,
    organisation_id: int | None = None,
    site_id: int | None = None,
    name: str = "",
    registration_status: str = RegistrationStatus.ACCEPTED,
    security_profile: int = 1,
    password: str | None = None,
) -> ChargingStation:
    """A station an operator registers ahead of its first connection.

    Give `site_id`, `organisation_id` or both (then the site must belong to that organisation).
    """
    identity_validate(identity)
    if site_id is not None:
        site = _site_to_manage(actor=actor, site_id=site_id)
        if organisation_id is not None and organisation_id != site.organisation_id:
            raise ValidationFailed(f"Site {site.pk} does not belong to organisation {organisation_id}.")
        organisation = site.organisation
    elif organisation_id is not None:
        site = None
        organisation = _organisation_to_manage(actor=actor, organisation_id=organisation_id)
    else:
        raise ValidationFailed("Give the station's site or organisation.")
    station = ChargingStation(
        identity=identity,
        organisation=organisation,
        site=site,
        name=name,
        registration_status=registration_status,
        security_profile=security_profile,
    )
    station_validate(station, password=password)
    try:
        with transaction.atomic():
            station.save()
    except IntegrityError as exc:  # the identity is taken (possibly just now, by a charger auto-registering)
        raise ValidationFailed(f"A station with the identity {identity!r} already exists.") from exc
    if password is not None:
        station_password_set(station=station, password=password)
    return station


@transaction.atomic
def station_update(*, actor: User, station: ChargingStation, data: dict[str, Any]) -> ChargingStation:
    """Change the fields in `data` (keys from STATION_FIELDS).

    `identity` and `organisation_id` may only repeat the current value: the identity is the charger's own
    configuration (changing it here would lock it out), and stations do not change tenant. `site_id` must be a
    site of the station's organisation, or None. Only the given fields are written, under the row lock, so that
    the connection state the OCPP side writes concurrently is not overwritten.
    """
    _unknown_fields_refuse(data, STATION_FIELDS)
    station = ChargingStation.objects.select_for_update().get(pk=station.pk)
    _require_manage(
        actor=actor,
        organisation_id=station.organisation_id,
        site_id=station.site_id,
        what=f"station {station.identity!r}",
    )
    if "identity" in data and data["identity"] != station.identity:
        raise ValidationFailed("A station's identity cannot be changed; register a new station instead.")
    if "organisation_id" in data and data["organisation_id"] != station.organisation_id:
        raise ValidationFailed("A station cannot move to another organisation.")
    changed: list[str] = []
    if "site_id" in data and data["site_id"] != station.site_id:
        if data["site_id"] is not None:
            _site_to_manage(actor=actor, site_id=data["site_id"])
        station.site_id = data["site_id"]
        changed.append("site")
    for field in ("name", "registration_status", "security_profile"):
        if field in data and data[field] != getattr(station, field):
            setattr(station, field, data[field])
            changed.append(field)
    password = data.get("password")
    station_validate(station, password=password, profile_changed="security_profile" in changed)
    if changed:
        station.save(update_fields=[*changed, "updated_at"])
    if password is not None:
        station_password_set(station=station, password=password)
    return station
