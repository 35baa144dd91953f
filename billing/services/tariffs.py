"""Tariffs: creating them and their versions, assigning them, and choosing the one a session is priced with.

Precedence (`tariff_resolve`), most specific first; the first whose tariff has a version in force at the
session's start wins:
    1. the session's id token itself, narrowed to the station, then to the site, then anywhere;
    2. the token's group (IdToken.group: members, a fleet...), narrowed likewise;
    3. the station;
    4. the station's site;
    5. the organisation.
No match: the session is free (a CDR of 0 in the organisation's currency).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from accounts.models import Organisation, User
from billing.enums import AssignmentLevel
from billing.models import SessionPricing, Tariff, TariffAssignment, TariffVersion
from billing.tariff_json import TariffFormatError, elements_normalise, elements_parse, tariff_dump
from billing.types import Tariff as EngineTariff
from cpms.errors import Conflict, ValidationFailed
from sessions.models import ChargingSession, IdToken
from stations.models import ChargingStation, Site


def tariff_create(*, organisation: Organisation, name: str, description: str = "") -> Tariff:
    name = name.strip()
    if not name:
        raise ValidationFailed("name: required")
    try:
        with transaction.atomic():
            return Tariff.objects.create(organisation=organisation, name=name, description=description)
    except IntegrityError:
        raise Conflict(f"A tariff named {name!r} already exists in this organisation.") from None


def tariff_update(*, tariff: Tariff, name: str | None = None, description: str | None = None) -> Tariff:
    """Name and description only: prices change through a new version."""
    if name is not None:
        name = name.strip()
        if not name:
            raise ValidationFailed("name: required")
        tariff.name = name
    if description is not None:
        tariff.description = description
    try:
        with transaction.atomic():
            tariff.save(update_fields=["name", "description", "updated_at"])
    except IntegrityError:
        raise Conflict(f"A tariff named {name!r} already exists in this organisation.") from None
    return tariff


@dataclass(frozen=True, slots=True, kw_only=True)
class TariffVersionInput:
    valid_from: datetime
    currency: str
    tax_rate: Decimal
    elements: Sequence[object]  # OCPI TariffElements as received, checked by elements_parse
    valid_until: datetime | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    parking_grace_s: int = 0
    parking_cap: Decimal | None = None


def tariff_version_create(
    *, tariff: Tariff, data: TariffVersionInput, user: User | None = None
) -> TariffVersion:
    """A new version of `tariff`, numbered after the last. Validated by building the engine's Tariff from it,
    so a stored version can always be priced. Versions are never edited."""
    try:
        elements = elements_normalise(data.elements)
        EngineTariff(
            currency=data.currency,
            tax_rate=data.tax_rate,
            elements=elements_parse(elements),
            min_price=data.min_price,
            max_price=data.max_price,
            parking_grace_s=data.parking_grace_s,
            parking_cap=data.parking_cap,
            time_zone="UTC",
        )
    except (TariffFormatError, TypeError, ValueError) as error:
        raise ValidationFailed(str(error)) from None
    if data.valid_until is not None and data.valid_until <= data.valid_from:
        raise ValidationFailed("valid_until: must be after valid_from")
    with transaction.atomic():
        # Lock the tariff so that two versions created at once get distinct numbers.
        Tariff.objects.select_for_update().filter(pk=tariff.pk).first()
        if TariffVersion.objects.filter(tariff=tariff, valid_from=data.valid_from).exists():
            raise Conflict(
                f"Tariff {tariff.pk} already has a version starting at {data.valid_from.isoformat()}."
            )
        number = (TariffVersion.objects.filter(tariff=tariff).aggregate(last=Max("version"))["last"] or 0) + 1
        return TariffVersion.objects.create(
            tariff=tariff,
            version=number,
            valid_from=data.valid_from,
            valid_until=data.valid_until,
            currency=data.currency.upper(),
            tax_rate=data.tax_rate,
            min_price=data.min_price,
            max_price=data.max_price,
            parking_grace_s=data.parking_grace_s,
            parking_cap=data.parking_cap,
            elements=elements,
            created_by=user,
        )


def _scope_key(*, site_id: int | None, station_id: int | None, id_token_group_id: int | None) -> str:
    location = f"station:{station_id}" if station_id else f"site:{site_id}" if site_id else ""
    if id_token_group_id:
        return f"token:{id_token_group_id}" + (f"/{location}" if location else "")
    return location or "organisation"


def tariff_assign(
    *,
    tariff: Tariff,
    site: Site | None = None,
    station: ChargingStation | None = None,
    id_token_group: IdToken | None = None,
    user: User | None = None,
) -> TariffAssignment:
    """Put `tariff` in force at one scope (replacing the tariff assigned there before). All objects must
    belong to the tariff's organisation; `site` and `station` exclude each other."""
    organisation_id = tariff.organisation_id
    if site is not None and station is not None:
        raise ValidationFailed("Give a site or a station, not both.")
    for name, obj in (("site", site), ("station", station), ("id_token_group", id_token_group)):
        if obj is not None and obj.organisation_id != organisation_id:
            raise ValidationFailed(f"{name}: not in the tariff's organisation")
    level = (
        AssignmentLevel.ID_TOKEN_GROUP
        if id_token_group
        else AssignmentLevel.STATION
        if station
        else AssignmentLevel.SITE
        if site
        else AssignmentLevel.ORGANISATION
    )
    key = _scope_key(
        site_id=site.pk if site else None,
        station_id=station.pk if station else None,
        id_token_group_id=id_token_group.pk if id_token_group else None,
    )
    with transaction.atomic():
        assignment, _ = TariffAssignment.objects.update_or_create(
            organisation_id=organisation_id,
            scope_key=key,
            defaults={
                "tariff": tariff,
                "level": level,
                "site": site,
                "station": station,
                "id_token_group": id_token_group,
                "created_by": user,
            },
        )
    return assignment


def tariff_unassign(*, assignment: TariffAssignment) -> None:
    assignment.delete()


@dataclass(frozen=True, slots=True)
class ResolvedTariff:
    version: TariffVersion
    scope_key: str


def _candidate_keys(*, site_id: int | None, station_id: int, token: IdToken | None) -> list[str]:
    locations = [f"station:{station_id}"] + ([f"site:{site_id}"] if site_id else [])
    keys = []
    token_ids = [token.pk, token.group_id] if token is not None else []
    for token_id in token_ids:
        if token_id:
            keys += [f"token:{token_id}/{location}" for location in locations] + [f"token:{token_id}"]
    return [*keys, *locations, "organisation"]


def version_in_force(*, tariff_id: int, at: datetime) -> TariffVersion | None:
    version = (
        TariffVersion.objects.filter(tariff_id=tariff_id, valid_from__lte=at)
        .order_by("-valid_from", "-version")
        .first()
    )
    if version is None or (version.valid_until is not None and version.valid_until <= at):
        return None
    return version


def tariff_resolve(
    *, organisation_id: int, site_id: int | None, station_id: int, token: IdToken | None, at: datetime
) -> ResolvedTariff | None:
    """The tariff version in force for a session (module docstring: the precedence)."""
    keys = _candidate_keys(site_id=site_id, station_id=station_id, token=token)
    assignments = {
        assignment.scope_key: assignment
        for assignment in TariffAssignment.objects.filter(organisation_id=organisation_id, scope_key__in=keys)
    }
    for key in keys:
        assignment = assignments.get(key)
        if assignment is None:
            continue
        version = version_in_force(tariff_id=assignment.tariff_id, at=at)
        if version is not None:
            return ResolvedTariff(version=version, scope_key=key)
    return None


def engine_tariff(version: TariffVersion, *, time_zone: str) -> EngineTariff:
    """The engine's Tariff for a stored version, with the site's time zone."""
    return EngineTariff(
        currency=version.currency,
        tax_rate=version.tax_rate,
        elements=elements_parse(version.elements),
        min_price=version.min_price,
        max_price=version.max_price,
        parking_grace_s=version.parking_grace_s,
        parking_cap=version.parking_cap,
        time_zone=time_zone,
    )


def station_time_zone(station: ChargingStation) -> str:
    """Where a station's local times are taken: its site's time zone, UTC for a station without a site."""
    return station.site.time_zone if station.site is not None else "UTC"


def session_pricing_snapshot(*, session_id: int) -> SessionPricing:
    """Copy the tariff in force at the session's start onto the session, once (idempotent: the first
    snapshot stays, so later tariff changes never reprice a session)."""
    existing = SessionPricing.objects.filter(session_id=session_id).first()
    if existing is not None:
        return existing
    session = ChargingSession.objects.select_related("station__site", "id_token").get(pk=session_id)
    station = session.station
    resolved = tariff_resolve(
        organisation_id=station.organisation_id,
        site_id=station.site_id,
        station_id=station.pk,
        token=session.id_token,
        at=session.started_at,
    )
    snapshot = None
    if resolved is not None:
        snapshot = tariff_dump(engine_tariff(resolved.version, time_zone=station_time_zone(station)))
        snapshot["tariff_label"] = f"{resolved.version.tariff.name} v{resolved.version.version}"
    try:
        with transaction.atomic():
            return SessionPricing.objects.create(
                session=session,
                tariff_version=resolved.version if resolved else None,
                assignment_scope=resolved.scope_key if resolved else "",
                tariff=snapshot,
                snapshotted_at=timezone.now(),
            )
    except IntegrityError:
        # Taken at the same moment by another process (the start handler and the billing job).
        return SessionPricing.objects.get(session_id=session_id)
