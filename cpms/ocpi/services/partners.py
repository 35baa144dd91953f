"""What the operator sets up around the credentials exchange (cpms.ocpi.services.credentials): its CPO party,
a partner's settings (what we publish to it, the real-time authorisation fallback, charging profiles), and
"sync now". Callers checked the user's access (cpms.ocpi.selectors); these check the data."""

import re
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from accounts.models import AuditAction, Organisation, User
from accounts.services import audit_record
from cpms.errors import Conflict, ValidationFailed
from cpms.ocpi.enums import PartnerStatus, RealtimeAuthFallback
from cpms.ocpi.models import OcpiPartner, OcpiParty
from stations.models import Site

COUNTRY_CODE_RE = re.compile(r"^[A-Z]{2}$")
PARTY_ID_RE = re.compile(r"^[A-Z0-9]{3}$")


def party_create(
    *,
    organisation: Organisation,
    country_code: str,
    party_id: str,
    name: str,
    website: str = "",
    actor: User | None = None,
) -> OcpiParty:
    """The organisation's CPO party (one per organisation; a country code and party id used by no other)."""
    country_code, party_id, name = country_code.strip().upper(), party_id.strip().upper(), name.strip()
    if not COUNTRY_CODE_RE.match(country_code):
        raise ValidationFailed("country_code: two letters (ISO 3166-1 alpha-2), e.g. NL.")
    if not PARTY_ID_RE.match(party_id):
        raise ValidationFailed("party_id: three letters or digits (ISO 15118), e.g. ABC.")
    if not name:
        raise ValidationFailed("name: required (the business name partners see).")
    existing = OcpiParty.objects.filter(organisation=organisation).first()
    if existing is not None:
        raise ValidationFailed(
            f"Organisation {organisation.pk} already has its roaming party ({existing}): one per organisation."
        )
    if OcpiParty.objects.filter(country_code=country_code, party_id=party_id).exists():
        raise ValidationFailed(f"{country_code}*{party_id} is already the party of another organisation.")
    try:
        with transaction.atomic():
            party = OcpiParty.objects.create(
                organisation=organisation,
                country_code=country_code,
                party_id=party_id,
                name=name,
                website=website,
            )
            # No roaming action of its own in the audit log yet: recorded as an addition, like the admin's.
            audit_record(
                actor=actor,
                action=AuditAction.ADMIN_ADD,
                obj=party,
                organisation_id=organisation.pk,
                changes={"country_code": country_code, "party_id": party_id, "name": name},
            )
    except IntegrityError as exc:  # a concurrent request won the race between the checks and the insert
        raise ValidationFailed(
            f"Organisation {organisation.pk} already has a roaming party, or {country_code}*{party_id} is "
            "taken."
        ) from exc
    return party


_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class SyncResult:
    """How many pushes "sync now" queued per module."""

    locations: int
    tariffs: int


def partner_update(
    *,
    partner: OcpiPartner,
    actor: User | None = None,
    name: str = _UNSET,
    realtime_auth_fallback: str = _UNSET,
    allow_charging_profiles: bool = _UNSET,
    publish_all_sites: bool = _UNSET,
    published_sites: list[Site] = _UNSET,
) -> OcpiPartner:
    """Changes a partner's settings (only the arguments given). Published sites must be the party's
    organisation's. When what we publish changes for a registered partner, everything published is queued
    again at once (`partner_sync`), so the partner does not wait for the next change of each site."""
    organisation_id = partner.party.organisation_id
    changes: dict[str, Any] = {}
    if name is not _UNSET:
        name = name.strip()
        if not name:
            raise ValidationFailed("name: required.")
        changes["name"] = name
    if realtime_auth_fallback is not _UNSET:
        if realtime_auth_fallback not in RealtimeAuthFallback.values:
            raise ValidationFailed(
                f"realtime_auth_fallback: one of {', '.join(RealtimeAuthFallback.values)}."
            )
        changes["realtime_auth_fallback"] = realtime_auth_fallback
    if allow_charging_profiles is not _UNSET:
        changes["allow_charging_profiles"] = bool(allow_charging_profiles)
    if publish_all_sites is not _UNSET:
        changes["publish_all_sites"] = bool(publish_all_sites)
    site_ids: list[int] | None = None
    if published_sites is not _UNSET:
        foreign = sorted(site.pk for site in published_sites if site.organisation_id != organisation_id)
        if foreign:
            raise ValidationFailed(
                f"published_sites: site {foreign[0]} is not a site of the partner's organisation."
            )
        site_ids = sorted({site.pk for site in published_sites})
    with transaction.atomic():
        locked = OcpiPartner.objects.select_for_update().get(pk=partner.pk)
        before_sites = sorted(locked.published_sites.values_list("pk", flat=True))
        publication_before = (locked.publish_all_sites, before_sites)
        for field, value in changes.items():
            setattr(locked, field, value)
        locked.save(update_fields=[*changes, "updated_at"])
        if site_ids is not None:
            locked.published_sites.set(site_ids)
            changes["published_sites"] = site_ids
        publication_after = (locked.publish_all_sites, site_ids if site_ids is not None else before_sites)
        audit_record(
            actor=actor,
            action=AuditAction.ROAMING_PARTNER_CHANGED,
            obj=locked,
            organisation_id=organisation_id,
            changes=changes,
        )
        if publication_after != publication_before and locked.status == PartnerStatus.REGISTERED:
            partner_push_all(locked)
    return locked


def partner_push_all(partner: OcpiPartner) -> SyncResult:
    """Queues a PUT of every tariff, then every location, published to the partner (tariffs first: a
    Location names the tariffs of its connectors). The caller checks the partner is registered."""
    from cpms.ocpi.services import locations, tariffs  # they read this module's partner settings
    from cpms.ocpi.services.outbox import kicks_deferred

    with kicks_deferred():
        queued_tariffs = tariffs.tariffs_push_all(partner)
        return SyncResult(locations=locations.locations_push_all(partner), tariffs=queued_tariffs)


def partner_sync(*, partner: OcpiPartner, actor: User | None = None) -> SyncResult:
    """ "Sync now": queues a PUT of every location and tariff published to the partner (delivered by the
    outbox, in order after what is already queued). Registered partners only: a suspended one is sent
    nothing, and one that is not registered has no endpoints to send to."""
    if partner.status == PartnerStatus.SUSPENDED:
        raise Conflict("The partner is suspended: resume it first.")
    if partner.status != PartnerStatus.REGISTERED:
        raise Conflict(f"The partner is {partner.get_status_display().lower()}: there is nowhere to send to.")
    with transaction.atomic():
        result = partner_push_all(partner)
        audit_record(
            actor=actor,
            action=AuditAction.ROAMING_PARTNER_CHANGED,
            obj=partner,
            organisation_id=partner.party.organisation_id,
            changes={"sync": {"locations": result.locations, "tariffs": result.tariffs}},
        )
    return result
