"""A site's own prices, as the portal sets them: a simple price list published as a new version of a tariff
assigned to the site, through the tariff services (billing/services/tariffs.py). A version is never edited.

Which tariff is versioned: the tariff assigned at the site, if nothing else uses it (no other assignment);
otherwise, or when the site has none, a new tariff named after the site ("Site prices: <name>") is created and
assigned to the site, so that publishing a site's prices never changes another site's. The new version is
in force from `valid_from` (default: now).

Who may publish: `Capability.PRICING` on the site: operator admins and staff of its organisation, and site
hosts holding the per-site grant `stations.change_site` (`site_host_grant(..., may_set_prices=True)`).
The caller fetched the site with `stations.selectors.site_access(..., capability=PRICING)`; the service
checks again.

Reads for the prices page (`site_tariff_in_force`, `site_tariff_overrides`, `site_token_rules`) take a site
whose access the caller checked.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.enums import Capability
from accounts.models import User
from billing.models import Tariff, TariffAssignment, TariffVersion
from billing.services.tariffs import (
    TariffVersionInput,
    tariff_assign,
    tariff_create,
    tariff_version_create,
    version_in_force,
)
from cpms.errors import PermissionDenied, ValidationFailed
from sessions.models import IdToken
from sessions.selectors import id_token_list
from stations.models import Site
from stations.scope import user_can

SITE_TARIFF_PREFIX = "Site prices: "
_HUNDRED = Decimal(100)
_SECONDS_PER_MINUTE = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class SitePricesInput:
    """The simple price list of a site, excl. tax. Amounts are in `currency`; `tax_rate_percent` is 19 for
    19 %. Parking is charged per hour connected without charging, after `parking_grace_min` minutes."""

    currency: str
    energy_per_kwh: Decimal
    session_fee: Decimal = Decimal(0)
    charging_per_hour: Decimal = Decimal(0)
    parking_per_hour: Decimal = Decimal(0)
    parking_grace_min: int = 0
    tax_rate_percent: Decimal = Decimal(0)
    valid_from: datetime | None = None


def site_prices_elements(data: SitePricesInput) -> list[dict[str, object]]:
    """The OCPI TariffElement list of the price list: one element, a component per price (the energy price
    always, the others when not zero), step size 1."""
    components = []
    for kind, price in (
        ("FLAT", data.session_fee),
        ("ENERGY", data.energy_per_kwh),
        ("TIME", data.charging_per_hour),
        ("PARKING_TIME", data.parking_per_hour),
    ):
        if kind == "ENERGY" or price:
            components.append({"type": kind, "price": str(price), "step_size": 1})
    return [{"price_components": components}]


def _validate(data: SitePricesInput) -> None:
    currency = data.currency.strip()
    if len(currency) != 3 or not currency.isalpha():
        raise ValidationFailed("currency: a three-letter ISO 4217 code is required")
    for name in ("energy_per_kwh", "session_fee", "charging_per_hour", "parking_per_hour"):
        if getattr(data, name) < 0:
            raise ValidationFailed(f"{name}: must not be negative")
    if data.parking_grace_min < 0:
        raise ValidationFailed("parking_grace_min: must not be negative")
    if not Decimal(0) <= data.tax_rate_percent <= _HUNDRED:
        raise ValidationFailed("tax_rate_percent: between 0 and 100")


def _free_tariff_name(site: Site) -> str:
    base = f"{SITE_TARIFF_PREFIX}{site.name}"[:90]
    taken = set(
        Tariff.objects.filter(organisation_id=site.organisation_id, name__startswith=base).values_list(
            "name", flat=True
        )
    )
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base} ({number})"
    return name


def site_dedicated_tariff(*, site: Site) -> Tariff | None:
    """The tariff assigned at the site if no other assignment uses it (publishing versions it), else None."""
    assignment = (
        TariffAssignment.objects.filter(organisation_id=site.organisation_id, scope_key=f"site:{site.pk}")
        .select_related("tariff")
        .first()
    )
    if assignment is None:
        return None
    if TariffAssignment.objects.filter(tariff_id=assignment.tariff_id).exclude(pk=assignment.pk).exists():
        return None
    return assignment.tariff


def site_prices_publish(*, user: User, site: Site, data: SitePricesInput) -> TariffVersion:
    """Publish `data` as the site's prices from `data.valid_from` (default now): a new version of the site's
    dedicated tariff, creating and assigning one first if needed (module docstring). One transaction;
    PermissionDenied without PRICING on the site, ValidationFailed/Conflict from the tariff services."""
    if not user_can(
        user=user, capability=Capability.PRICING, organisation_id=site.organisation_id, site_id=site.pk
    ):
        raise PermissionDenied(f"You may not set the prices of site {site.pk}.")
    _validate(data)
    version_input = TariffVersionInput(
        valid_from=data.valid_from or timezone.now(),
        currency=data.currency.strip().upper(),
        tax_rate=data.tax_rate_percent / _HUNDRED,
        elements=site_prices_elements(data),
        parking_grace_s=data.parking_grace_min * _SECONDS_PER_MINUTE,
    )
    with transaction.atomic():
        # Two publishes for one site at once must not both create a dedicated tariff.
        Site.objects.select_for_update().filter(pk=site.pk).first()
        tariff = site_dedicated_tariff(site=site)
        if tariff is None:
            tariff = tariff_create(
                organisation=site.organisation,
                name=_free_tariff_name(site),
                description=f"The prices of site {site.name}, set in the portal.",
            )
            tariff_assign(tariff=tariff, site=site, user=user)
        return tariff_version_create(tariff=tariff, data=version_input, user=user)


# --- reads for the prices page ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteTariff:
    """The tariff version in force at a site for a session without a token or station tariff, and where it
    comes from ("site" or "organisation")."""

    version: TariffVersion
    level: str


def site_tariff_in_force(*, site: Site, at: datetime | None = None) -> SiteTariff | None:
    """Steps 4 and 5 of the precedence (billing/services/tariffs.py): the site's assignment, then the
    organisation's, the first whose tariff has a version in force `at` (default now)."""
    at = at or timezone.now()
    keys = [(f"site:{site.pk}", "site"), ("organisation", "organisation")]
    assignments = {
        a.scope_key: a
        for a in TariffAssignment.objects.filter(
            organisation_id=site.organisation_id, scope_key__in=[key for key, _ in keys]
        )
    }
    for key, level in keys:
        assignment = assignments.get(key)
        if assignment is None:
            continue
        version = version_in_force(tariff_id=assignment.tariff_id, at=at)
        if version is not None:
            return SiteTariff(version=version, level=level)
    return None


def site_tariff_overrides(*, site: Site) -> QuerySet[TariffAssignment]:
    """Assignments that take precedence over the site's tariff somewhere at the site: at its stations, and
    id-token/group tariffs narrowed to the site or one of its stations."""
    return (
        TariffAssignment.objects.filter(organisation_id=site.organisation_id)
        .filter(Q(station__site=site) | Q(id_token_group__isnull=False, site=site))
        .select_related("tariff", "station")
        .order_by("scope_key")
    )


def site_tariff_versions(*, tariff: Tariff, limit: int = 10) -> list[TariffVersion]:
    return list(TariffVersion.objects.filter(tariff=tariff).order_by("-version")[:limit])


def site_token_rules(*, user: User, site: Site) -> QuerySet[IdToken]:
    """Id tokens restricted to places that include this site (the site itself or one of its stations), as
    far as the user sees id tokens (organisation-wide roles only: none for a site host). Tokens without
    restrictions may charge at every site of their organisation."""
    return (
        id_token_list(user=user)
        .filter(organisation_id=site.organisation_id)
        .filter(Q(allowed_sites=site) | Q(allowed_stations__site=site))
        .select_related("group")
        .distinct()
        .order_by("value")
    )
