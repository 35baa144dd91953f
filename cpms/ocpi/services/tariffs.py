"""OCPI 2.2.1 Tariffs module, CPO as Sender (OCPI 2.2.1 section 11): our billing tariffs as Tariff objects,
served on GET and pushed to the partners' receivers.

Which tariffs a partner sees: the tariffs its drivers can be priced with at the sites published to it, i.e.
the organisation's assignments (billing.TariffAssignment) at organisation level, at a published site or at a
station of one, either for everyone or for the partner's token group (`OcpiPartner.id_token_group`, the group
its drivers' tokens join). Assignments to other tokens or groups (a fleet, members) are never shown.

Which version a Tariff object shows: billing keeps versions of a tariff (`TariffVersion`, never edited); OCPI
has one object per Tariff.id. We show the version in force now, or, when none is, the next one to start;
start_date_time/end_date_time (OCPI 2.2.1 11.3.1) bound it: its valid_from, and its valid_until or the next
version's valid_from, whichever comes first. A tariff with no current or future version is not shown (and
is DELETEd from partners that had it).

Prices: billing stores every price excl. VAT and applies the version's tax_rate to the session's subtotal
(billing/tariffs.py, "Money"), exactly as OCPI 2.2.1 PriceComponent (11.4) reads: `price` excl. VAT, `vat`
the percentage that applies. min_price/max_price (OCPI Price, 16.5) carry both excl_vat and incl_vat.

Change detection for pushes: tariffs are few per organisation, so the sweep builds each partner's tariff
list and compares it to a fingerprint of what it last pushed (kept in `pushed_until["tariffs_pushed"]`,
{tariff id: fingerprint}): new or changed -> PUT, gone -> DELETE (OCPI 2.2.1 11.2.2). This also catches what
no timestamp says: a future version coming into force, an expiry, an assignment moved.
"""

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing.models import Tariff, TariffAssignment, TariffVersion
from billing.money import round_money
from cpms.ocpi import client, ids
from cpms.ocpi.enums import InterfaceRole, Module, PartnerStatus
from cpms.ocpi.models import OcpiPartner
from cpms.ocpi.protocol import Page, format_datetime
from cpms.ocpi.services.outbox import outbox_enqueue
from stations.enums import RegistrationStatus
from stations.models import ChargingStation

PUSHED_KEY = "tariffs_pushed"

# TariffRestrictions whose values billing stores as decimal strings; OCPI 2.2.1 TariffRestrictions (11.4) types them `number`.
_NUMBER_RESTRICTIONS = ("min_kwh", "max_kwh", "min_current", "max_current", "min_power", "max_power")


def _number(value: Decimal | str) -> float | int:
    """An OCPI `number` (16.4: a JSON number) from a stored decimal. Prices are at most 6 decimals, which a
    double carries exactly enough that its shortest repr is the decimal's text."""
    number = Decimal(value)
    return int(number) if number == number.to_integral_value() else float(number)


def tariff_id_of(tariff: Tariff | int) -> str:
    """Tariff.id = the Tariff's primary key (cpms/ocpi/ids.py names every object; it has no helper for this one)."""
    return str(tariff if isinstance(tariff, int) else tariff.pk)


# --- which tariffs apply ------------------------------------------------------------------------------------
def _versions_by_tariff(tariff_ids: Iterable[int]) -> dict[int, list[TariffVersion]]:
    versions: dict[int, list[TariffVersion]] = defaultdict(list)
    for version in TariffVersion.objects.filter(tariff_id__in=list(tariff_ids)).order_by(
        "tariff_id", "valid_from", "version"
    ):
        versions[version.tariff_id].append(version)
    return versions


def _in_force(versions: Sequence[TariffVersion], at: datetime) -> TariffVersion | None:
    """billing.services.tariffs.version_in_force on preloaded versions (sorted by valid_from): the latest
    that started, unless its valid_until has passed."""
    started = [version for version in versions if version.valid_from <= at]
    if not started:
        return None
    current = max(started, key=lambda version: (version.valid_from, version.version))
    if current.valid_until is not None and current.valid_until <= at:
        return None
    return current


def _partner_assignments(partner: OcpiPartner) -> Q:
    """The assignments that may price this partner's drivers: for everyone, or for its token group."""
    group_id = partner.id_token_group_id
    audience = Q(id_token_group__isnull=True)
    if group_id is not None:
        audience |= Q(id_token_group_id=group_id)
    return Q(organisation_id=partner.party.organisation_id) & audience


@dataclass(frozen=True, slots=True)
class TariffIndex:
    """Which tariff a partner's driver is priced with at each station (the connectors' tariff_ids)."""

    # scope_key -> tariff id, for assignments whose tariff has a version in force now.
    scopes: dict[str, int]
    group_id: int | None

    def tariff_ids(self, *, site_id: int | None, station_id: int) -> list[str]:
        """The precedence of billing.services.tariffs.tariff_resolve for a token of the partner's group
        (a driver's own token assignment is not known ahead of the session): the group narrowed to the
        station, to the site, anywhere; then the station, the site, the organisation. The first assignment
        with a version in force wins."""
        locations = [f"station:{station_id}"] + ([f"site:{site_id}"] if site_id else [])
        keys: list[str] = []
        if self.group_id is not None:
            keys += [f"token:{self.group_id}/{location}" for location in locations]
            keys.append(f"token:{self.group_id}")
        keys += [*locations, "organisation"]
        for key in keys:
            if key in self.scopes:
                return [tariff_id_of(self.scopes[key])]
        return []


def tariff_index(*, partner: OcpiPartner, at: datetime | None = None) -> TariffIndex:
    """Two queries whatever the number of stations."""
    at = at or timezone.now()
    assignments = list(
        TariffAssignment.objects.filter(_partner_assignments(partner)).values_list("scope_key", "tariff_id")
    )
    versions = _versions_by_tariff({tariff_id for _, tariff_id in assignments})
    live = {tariff_id for tariff_id, items in versions.items() if _in_force(items, at) is not None}
    return TariffIndex(
        scopes={key: tariff_id for key, tariff_id in assignments if tariff_id in live},
        group_id=partner.id_token_group_id,
    )


# --- the Tariff object (OCPI 2.2.1 11.3.1) --------------------------------------------------------------------
def _shown_version(
    versions: Sequence[TariffVersion], at: datetime
) -> tuple[TariffVersion, datetime | None] | None:
    """The version a Tariff object shows and when it stops applying (module docstring)."""
    shown = _in_force(versions, at)
    if shown is None:
        upcoming = [version for version in versions if version.valid_from > at]
        if not upcoming:
            return None
        shown = upcoming[0]
    later = [version.valid_from for version in versions if version.valid_from > shown.valid_from]
    ends = [moment for moment in (shown.valid_until, min(later, default=None)) if moment is not None]
    return shown, min(ends, default=None)


def _price(amount: Decimal, version: TariffVersion) -> dict[str, Any]:
    """OCPI 2.2.1 16.5 Price; incl_vat rounded to the currency's minor unit as billing rounds tax."""
    incl = round_money(amount * (1 + version.tax_rate), version.currency)
    return {"excl_vat": _number(amount), "incl_vat": _number(incl)}


def _elements(version: TariffVersion) -> list[dict[str, Any]]:
    """The stored elements are OCPI TariffElements already (billing/tariff_json.py); numbers stored as
    decimal strings become JSON numbers, and each component carries the VAT percentage (PriceComponent, 11.4)."""
    vat = _number(version.tax_rate * 100)
    elements = []
    for element in version.elements:
        item: dict[str, Any] = {
            "price_components": [
                {
                    "type": component["type"],
                    "price": _number(component["price"]),
                    "vat": vat,
                    "step_size": int(component.get("step_size", 1)),
                }
                for component in element["price_components"]
            ]
        }
        restrictions = element.get("restrictions")
        if restrictions:
            item["restrictions"] = {
                key: _number(value) if key in _NUMBER_RESTRICTIONS else value
                for key, value in restrictions.items()
            }
        elements.append(item)
    return elements


def tariff_object(
    tariff: Tariff, version: TariffVersion, ends_at: datetime | None, *, partner: OcpiPartner, at: datetime
) -> dict[str, Any]:
    party = partner.party
    # A future version coming into force changes the object at its valid_from: that is its last update.
    changed = [tariff.updated_at, version.created_at] + (
        [version.valid_from] if version.valid_from <= at else []
    )
    data: dict[str, Any] = {
        "country_code": party.country_code,
        "party_id": party.party_id,
        "id": tariff_id_of(tariff),
        "currency": version.currency,
        # No `type`: "when omitted, this tariff is valid for all sessions" (11.3.1). Our prices do not depend
        # on charging preferences or on how the session was started (RFID, app, command).
    }
    if tariff.description:
        data["tariff_alt_text"] = [{"language": settings.LANGUAGE_CODE[:2], "text": tariff.description[:512]}]
    if version.min_price is not None:
        data["min_price"] = _price(version.min_price, version)
    if version.max_price is not None:
        data["max_price"] = _price(version.max_price, version)
    data["elements"] = _elements(version)
    data["start_date_time"] = format_datetime(version.valid_from)
    if ends_at is not None:
        data["end_date_time"] = format_datetime(ends_at)
    data["last_updated"] = format_datetime(max(changed))
    return data


def _partner_tariffs(partner: OcpiPartner) -> list[Tariff]:
    """The tariffs assigned where the partner's drivers can charge (module docstring)."""
    sites = ids.sites_published_to(partner)
    stations = ChargingStation.objects.filter(
        site__in=sites, registration_status=RegistrationStatus.ACCEPTED
    ).values("pk")
    where = Q(site__isnull=True, station__isnull=True) | Q(site__in=sites) | Q(station__in=stations)
    tariff_pks = TariffAssignment.objects.filter(_partner_assignments(partner) & where).values("tariff_id")
    return list(Tariff.objects.filter(pk__in=tariff_pks).order_by("pk"))


def tariff_objects(*, partner: OcpiPartner, at: datetime | None = None) -> list[dict[str, Any]]:
    """Every Tariff object of this partner, by id. Three queries."""
    at = at or timezone.now()
    tariffs = _partner_tariffs(partner)
    versions = _versions_by_tariff(tariff.pk for tariff in tariffs)
    objects = []
    for tariff in tariffs:
        shown = _shown_version(versions.get(tariff.pk, []), at)
        if shown is not None:
            objects.append(tariff_object(tariff, shown[0], shown[1], partner=partner, at=at))
    return objects


def tariff_list(*, partner: OcpiPartner, page: Page) -> tuple[list[dict[str, Any]], int]:
    """GET list (OCPI 2.2.1 11.2.1.1): date_from inclusive, date_to exclusive on last_updated (transport and format: pagination). The
    list is built whole (an organisation has tens of tariffs, not thousands), then filtered and cut."""
    objects = tariff_objects(partner=partner)
    if page.date_from is not None:
        objects = [o for o in objects if o["last_updated"] >= format_datetime(page.date_from)]
    if page.date_to is not None:
        objects = [o for o in objects if o["last_updated"] < format_datetime(page.date_to)]
    return objects[page.offset : page.offset + page.limit], len(objects)


# --- pushes (OCPI 2.2.1 11.2.2, the eMSP's Receiver interface) ---------------------------------------------
def _fingerprint(data: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _to_party(partner: OcpiPartner) -> tuple[str, str] | None:
    from cpms.ocpi.services.locations import push_to_party

    return push_to_party(partner)


def _push(partner: OcpiPartner, *, only_changed: bool) -> int:
    """Caller holds the partner row lock (select_for_update) inside a transaction."""
    party = partner.party
    pushed: dict[str, str] = dict(partner.pushed_until.get(PUSHED_KEY) or {})
    current = {data["id"]: data for data in tariff_objects(partner=partner)}
    to_party = _to_party(partner)
    queued = 0
    for tariff_id, data in current.items():
        fingerprint = _fingerprint(data)
        if only_changed and pushed.get(tariff_id) == fingerprint:
            continue
        outbox_enqueue(
            partner=partner,
            module=Module.TARIFFS,
            object_key=f"tariff:{tariff_id}",
            method="PUT",
            path=f"/{party.country_code}/{party.party_id}/{tariff_id}",
            body=data,
            to_party=to_party,
        )
        pushed[tariff_id] = fingerprint
        queued += 1
    for tariff_id in sorted(set(pushed) - set(current)):
        # No longer applies to this partner's drivers (expired, unassigned, site unpublished).
        outbox_enqueue(
            partner=partner,
            module=Module.TARIFFS,
            object_key=f"tariff:{tariff_id}",
            method="DELETE",
            path=f"/{party.country_code}/{party.party_id}/{tariff_id}",
            body=None,
            to_party=to_party,
        )
        del pushed[tariff_id]
        queued += 1
    if pushed != partner.pushed_until.get(PUSHED_KEY):
        # Caller holds the row lock: the other modules' cursors in the same JSON are kept as they are.
        partner.pushed_until = {**partner.pushed_until, PUSHED_KEY: pushed}
        OcpiPartner.objects.filter(pk=partner.pk).update(pushed_until=partner.pushed_until)
    return queued


def _locked(partner_id: int) -> OcpiPartner | None:
    return (
        OcpiPartner.objects.select_for_update(of=("self",))
        .select_related("party")
        .filter(pk=partner_id, status=PartnerStatus.REGISTERED)
        .first()
    )


def tariffs_push_changes() -> int:
    """The sweep (cpms.ocpi.tasks.push_sweep): PUT new or changed tariffs, DELETE those gone, per registered
    partner that has a tariffs receiver. Returns how many items it queued."""
    queued = 0
    for partner_id in OcpiPartner.objects.filter(status=PartnerStatus.REGISTERED).values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            partner = _locked(partner_id)
            if (
                partner is None
                or client.endpoint_url(partner, Module.TARIFFS, InterfaceRole.RECEIVER) is None
            ):
                continue
            queued += _push(partner, only_changed=True)
    return queued


def tariffs_push_all(partner: OcpiPartner) -> int:
    """ "Sync now": PUT every tariff of the partner again (and DELETE those it should no longer have)."""
    with transaction.atomic():
        locked = _locked(partner.pk)
        if locked is None or client.endpoint_url(locked, Module.TARIFFS, InterfaceRole.RECEIVER) is None:
            return 0
        return _push(locked, only_changed=False)
