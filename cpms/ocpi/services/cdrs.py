"""Roaming CDRs as OCPI 2.2.1 CDR objects (mod_cdrs, we are the Sender) and their pushes.

Our `ChargeDetailRecord` is written once by billing (billing/services/cdrs.py `session_bill`) and never
changed; the OCPI CDR is built from it, so its total_cost is the record's subtotal (excl_vat) and total
(incl_vat) to the cent. `cdrs_push_pending` (push sweep) queues a POST of each roaming session's CDR to the
partner's CDRs receiver once (`OcpiSession.cdr_pushed_at`), under the session's object key: the session's own
last PATCH (COMPLETED, final cost) is queued first in the same transaction, so the partner gets the session's
updates, then the CDR.

A correction (`CdrCredit`) is a Credit CDR (mod_cdrs 1.1): id "<cdr pk>-C<credit pk>", `credit` true,
`credit_reference_id` the original CDR's id, and "all the data of the original CDR. Only the values in the
total_cost field SHALL contain the negative amounts": total_cost is the credit's (negative) subtotal and
total. It is pushed once, after the original, under the same object key.
"""

import logging
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import CharField, Exists, OuterRef, Q, QuerySet, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from billing.models import CdrCredit, ChargeDetailRecord
from billing.money import round_money
from billing.services.cdrs import BillingError, session_usage
from billing.types import Dimension
from cpms.ocpi import ids
from cpms.ocpi.enums import Module, PartnerStatus
from cpms.ocpi.models import OcpiOutboxItem, OcpiPartner, OcpiSession
from cpms.ocpi.protocol import Page, format_datetime
from cpms.ocpi.services.locations import CONNECTOR_KINDS, country_alpha3
from cpms.ocpi.services.outbox import outbox_enqueue
from cpms.ocpi.services.sessions import (
    SESSION_RELATED,
    cdr_token,
    charging_periods,
    hours,
    kwh,
    number,
    price,
    session_object_key,
    session_sync,
)
from cpms.ocpi.services.tariffs import tariff_object
from sessions.models import ChargingSession
from stations.enums import ConnectorType
from stations.models import Site

logger = logging.getLogger(__name__)

# CDRs of sessions started longer ago are no longer looked for (keeps the sweep's query on the started_at
# index); credits are looked for this long after they were written, which must stay below
# OCPI_OUTBOX_KEEP_DAYS: whether a credit was pushed is read from the outbox.
CDR_PUSH_DAYS = 90
CREDIT_PUSH_DAYS = 7
SWEEP_BATCH = 100

# Partners whose CDRs are queued: a suspended partner gets them when it is registered again.
_RECEIVING = (PartnerStatus.REGISTERED, PartnerStatus.SUSPENDED)


def cdr_location(cdr: ChargeDetailRecord, *, ocpi: OcpiSession) -> dict[str, Any]:
    """OCPI CdrLocation (mod_cdrs 4.4.2): the site, EVSE and connector of the session."""
    site: Site | None = cdr.site
    session = cdr.session
    party = ocpi.partner.party
    data: dict[str, Any] = {"id": ids.location_id(site) if site else ""}
    if site is not None:
        # Cut to the CdrLocation field lengths (string(255), string(45), string(45), string(10)).
        data["name"] = site.name[:255]
        data["address"] = site.address[:45]
        data["city"] = site.city[:45]
        if site.postal_code:
            data["postal_code"] = site.postal_code[:10]
        data["country"] = country_alpha3(site.country) or ""
        # Coordinates are required: a receiver refuses a CDR without them, and a CDR must reach the partner
        # that pays it. A site whose position was never entered is sent at 0, 0, which nobody mistakes for a
        # real place (such a site is not published as a Location either).
        data["coordinates"] = {
            "latitude": f"{site.latitude or 0:.6f}",
            "longitude": f"{site.longitude or 0:.6f}",
        }
    data["evse_uid"] = ids.evse_uid(session.evse_id) if session.evse_id else ""
    data["evse_id"] = (
        ids.evse_id(party, cdr.station_id, cdr.evse_number) if cdr.evse_number is not None else ""
    )
    data["connector_id"] = str(cdr.connector_number) if cdr.connector_number is not None else ""
    # As the Location publishes the connector (an unknown type as a type 2 socket).
    kind = CONNECTOR_KINDS.get(
        session.connector.connector_type if session.connector else ConnectorType.UNKNOWN,
        CONNECTOR_KINDS[ConnectorType.TYPE2],
    )
    data["connector_standard"] = kind.standard
    data["connector_format"] = kind.format
    data["connector_power_type"] = kind.power_type
    return data


def _tariffs(cdr: ChargeDetailRecord, *, ocpi: OcpiSession) -> list[dict[str, Any]]:
    """The tariff that priced the session: the version in the CDR (the one snapshotted at its start)."""
    version = cdr.tariff_version
    if version is None:
        return []
    return [
        tariff_object(version.tariff, version, version.valid_until, partner=ocpi.partner, at=cdr.started_at)
    ]


def _line_sums(cdr: ChargeDetailRecord) -> dict[str, Decimal]:
    sums: dict[str, Decimal] = {}
    for line in cdr.lines.all():
        sums[line.dimension] = sums.get(line.dimension, Decimal(0)) + line.amount
    return sums


def _periods(cdr: ChargeDetailRecord, tariff_id: str | None) -> list[dict[str, Any]]:
    """The session's usage as billing priced it, in periods (sessions.charging_periods). When the readings no
    longer give the CDR's energy (a reading that arrived after billing), or give no period at all (a session
    of no duration), one period at the start carries the CDR's own figures: the periods never contradict
    the CDR, and OCPI wants at least one."""
    try:
        usage = session_usage(cdr.session)
    except BillingError:
        usage = None
    if usage is not None and usage.periods and usage.energy_wh == cdr.energy_wh:
        return charging_periods(usage, tariff_id=tariff_id)
    dimensions = [{"type": "ENERGY", "volume": number(kwh(cdr.energy_wh))}]
    if cdr.charging_s:
        dimensions.append({"type": "TIME", "volume": number(hours(cdr.charging_s))})
    if cdr.parking_s:
        dimensions.append({"type": "PARKING_TIME", "volume": number(hours(cdr.parking_s))})
    single: dict[str, Any] = {"start_date_time": format_datetime(cdr.started_at), "dimensions": dimensions}
    if tariff_id is not None:
        single["tariff_id"] = tariff_id
    return [single]


def cdr_object(cdr: ChargeDetailRecord, *, ocpi: OcpiSession) -> dict[str, Any]:
    """The OCPI 2.2.1 CDR object (mod_cdrs 4.1) of one of our CDRs. Costs come from the CDR and its lines:
    total_cost = (subtotal, total); per dimension, the sum of its lines excl. VAT and that sum with the CDR's
    tax rate, rounded as billing rounds tax (so the parts may differ from the total by the rounding; a
    minimum/maximum price adjustment is in total_cost only, as OCPI has no field for it)."""
    party = ocpi.partner.party
    currency = cdr.currency
    sums = _line_sums(cdr)
    tariffs = _tariffs(cdr, ocpi=ocpi)
    tariff_id = tariffs[0]["id"] if tariffs else None

    def cost(*dimensions: str) -> dict[str, float] | None:
        if not any(dimension in sums for dimension in dimensions):
            return None
        excl = sum((sums.get(dimension, Decimal(0)) for dimension in dimensions), Decimal(0))
        return price(excl, round_money(excl * (1 + cdr.tax_rate), currency))

    data: dict[str, Any] = {
        "country_code": party.country_code,
        "party_id": party.party_id,
        "id": str(cdr.pk),
        "start_date_time": format_datetime(cdr.started_at),
        "end_date_time": format_datetime(cdr.stopped_at),
        "session_id": str(cdr.session_id),
        "cdr_token": cdr_token(ocpi.token),
        "auth_method": ocpi.auth_method,
    }
    if ocpi.authorization_reference:
        data["authorization_reference"] = ocpi.authorization_reference
    data["cdr_location"] = cdr_location(cdr, ocpi=ocpi)
    if cdr.station.meter_serial_number:
        data["meter_id"] = cdr.station.meter_serial_number
    data["currency"] = currency
    if tariffs:
        data["tariffs"] = tariffs
    data["charging_periods"] = _periods(cdr, tariff_id)
    data["total_cost"] = price(cdr.subtotal, cdr.total)
    optional = {
        "total_fixed_cost": cost(Dimension.FLAT),
        "total_energy": number(kwh(cdr.energy_wh)),
        "total_energy_cost": cost(Dimension.ENERGY),
        "total_time": number(hours(cdr.charging_s + cdr.parking_s)),
        "total_time_cost": cost(Dimension.TIME),
        "total_parking_time": number(hours(cdr.parking_s)),
        # The parking cap bounds the parking lines: it is part of the parking cost.
        "total_parking_cost": cost(Dimension.PARKING_TIME, Dimension.PARKING_CAP_ADJUSTMENT),
    }
    data.update({key: value for key, value in optional.items() if value is not None})
    adjusted = [d for d in (Dimension.MIN_PRICE_ADJUSTMENT, Dimension.MAX_PRICE_ADJUSTMENT) if d in sums]
    if adjusted:
        data["remark"] = (
            "Total includes the tariff's minimum price."
            if adjusted[0] == Dimension.MIN_PRICE_ADJUSTMENT
            else "Total limited to the tariff's maximum price."
        )
    data["last_updated"] = format_datetime(cdr.created_at)
    return data


def credit_cdr_id(credit: CdrCredit) -> str:
    return f"{credit.cdr_id}-C{credit.pk}"


def credit_cdr_object(credit: CdrCredit, *, original: dict[str, Any]) -> dict[str, Any]:
    """The Credit CDR of `credit` (module docstring), from the original CDR's object."""
    data = {key: value for key, value in original.items() if key not in ("remark", "last_updated")}
    data["id"] = credit_cdr_id(credit)
    data["total_cost"] = price(credit.subtotal, credit.total)
    data["remark"] = credit.reason[:255]
    data["credit"] = True
    data["credit_reference_id"] = original["id"]
    data["last_updated"] = format_datetime(credit.created_at)
    return data


# --- pushes -------------------------------------------------------------------------------------------------
def _cdrs_with_related() -> QuerySet[ChargeDetailRecord]:
    return ChargeDetailRecord.objects.select_related(
        "site", "station", "tariff_version__tariff", *(f"session__{name}" for name in SESSION_RELATED)
    ).prefetch_related("lines")


def _cdr_load(cdr_id: int) -> ChargeDetailRecord:
    return _cdrs_with_related().get(pk=cdr_id)


def _cdr_push(cdr_id: int) -> int:
    cdr = _cdr_load(cdr_id)
    session: ChargingSession = cdr.session
    with transaction.atomic():
        # The session first (creating its OcpiSession if the sweep has not yet): its final state is queued
        # before the CDR, and its row stays locked while the CDR is queued.
        ocpi, queued = session_sync(session=session)
        if ocpi is None or ocpi.cdr_pushed_at is not None:
            return queued
        outbox_enqueue(
            partner=ocpi.partner,
            module=Module.CDRS,
            object_key=session_object_key(session.pk),
            method="POST",
            body=cdr_object(cdr, ocpi=ocpi),
            to_party=(ocpi.token.country_code, ocpi.token.party_id),
        )
        OcpiSession.objects.filter(pk=ocpi.pk).update(cdr_pushed_at=timezone.now())
    return queued + 1


def _credit_push(credit: CdrCredit) -> int:
    cdr = _cdr_load(credit.cdr_id)
    key = session_object_key(cdr.session_id)
    with transaction.atomic():
        ocpi = (
            OcpiSession.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("partner__party", "token")
            .filter(session_id=cdr.session_id, cdr_pushed_at__isnull=False)
            .first()
        )
        if ocpi is None:
            return 0  # its CDR is not queued yet, or another sweep holds the session
        if OcpiOutboxItem.objects.filter(
            partner=ocpi.partner, module=Module.CDRS, object_key=key, body__id=credit_cdr_id(credit)
        ).exists():
            return 0
        outbox_enqueue(
            partner=ocpi.partner,
            module=Module.CDRS,
            object_key=key,
            method="POST",
            body=credit_cdr_object(credit, original=cdr_object(cdr, ocpi=ocpi)),
            to_party=(ocpi.token.country_code, ocpi.token.party_id),
        )
    return 1


def _credit_items() -> QuerySet[OcpiOutboxItem]:
    """The outbox items of the credit CDR of the outer CdrCredit (its POST, pending or delivered)."""
    return OcpiOutboxItem.objects.annotate(cdr_id=KeyTextTransform("id", "body")).filter(
        partner_id=OuterRef("cdr__session__ocpi__partner_id"),
        module=Module.CDRS,
        object_key=Concat(Value("session:"), Cast(OuterRef("cdr__session_id"), CharField())),
        cdr_id=Concat(Cast(OuterRef("cdr_id"), CharField()), Value("-C"), Cast(OuterRef("pk"), CharField())),
    )


def cdrs_push_pending(*, limit: int = SWEEP_BATCH) -> int:
    """The push sweep of roaming CDRs and credit CDRs (module docstring); returns how many items it queued.
    Idempotent: each CDR and credit is queued once."""
    queued = 0
    now = timezone.now()
    pending = (
        ChargeDetailRecord.objects.filter(
            session__started_at__gte=now - timedelta(days=CDR_PUSH_DAYS),
            session__id_token__ocpi__partner__status__in=_RECEIVING,
        )
        .filter(Q(session__ocpi__isnull=True) | Q(session__ocpi__cdr_pushed_at__isnull=True))
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    for cdr_id in pending:
        try:
            queued += _cdr_push(cdr_id)
        except Exception:  # one CDR's failure must not stop the others
            logger.exception("OCPI CDR push of CDR %s failed", cdr_id)
    credits = (
        CdrCredit.objects.filter(
            created_at__gte=now - timedelta(days=CREDIT_PUSH_DAYS),
            cdr__session__ocpi__cdr_pushed_at__isnull=False,
            cdr__session__ocpi__partner__status__in=_RECEIVING,
        )
        .exclude(Exists(_credit_items()))
        .order_by("pk")[:limit]
    )
    for credit in credits:
        try:
            queued += _credit_push(credit)
        except Exception:
            logger.exception("OCPI credit CDR push of credit %s failed", credit.pk)
    return queued


# --- the Sender interface -----------------------------------------------------------------------------------
def _scoped(
    queryset: QuerySet[Any], prefix: str, partner: OcpiPartner, party: tuple[str, str] | None
) -> QuerySet[Any]:
    queryset = queryset.filter(**{f"{prefix}__partner": partner})
    if party is not None:
        queryset = queryset.filter(
            **{f"{prefix}__token__country_code": party[0], f"{prefix}__token__party_id": party[1]}
        )
    return queryset


def _dated(queryset: QuerySet[Any], page: Page) -> QuerySet[Any]:
    if page.date_from is not None:
        queryset = queryset.filter(created_at__gte=page.date_from)
    if page.date_to is not None:
        queryset = queryset.filter(created_at__lt=page.date_to)
    return queryset


def cdr_list(
    *, partner: OcpiPartner, party: tuple[str, str] | None, page: Page
) -> tuple[list[dict[str, Any]], int]:
    """The partner's CDRs and credit CDRs (through a hub, only those of `party`), by last_updated (their
    creation: neither ever changes), `date_from` inclusive, `date_to` exclusive (mod_cdrs 2.1.1). Returns
    (this page's CDR objects, the count of all)."""
    cdrs = _dated(_scoped(ChargeDetailRecord.objects.all(), "session__ocpi", partner, party), page)
    credits = _dated(_scoped(CdrCredit.objects.all(), "cdr__session__ocpi", partner, party), page)
    total = cdrs.count() + credits.count()
    rows = list(
        cdrs.annotate(kind=Value(0))
        .values_list("kind", "pk", "created_at")
        .union(credits.annotate(kind=Value(1)).values_list("kind", "pk", "created_at"), all=True)
        .order_by("created_at", "kind", "pk")[page.offset : page.offset + page.limit]
    )
    cdr_ids = {pk for kind, pk, _ in rows if kind == 0}
    credit_rows = CdrCredit.objects.in_bulk([pk for kind, pk, _ in rows if kind == 1])
    cdr_ids |= {credit.cdr_id for credit in credit_rows.values()}
    loaded = _cdrs_with_related().in_bulk(cdr_ids)
    ocpis = OcpiSession.objects.select_related("partner__party", "token").in_bulk(
        [cdr.session_id for cdr in loaded.values()], field_name="session_id"
    )
    objects: dict[int, dict[str, Any]] = {
        cdr_id: cdr_object(cdr, ocpi=ocpis[cdr.session_id]) for cdr_id, cdr in loaded.items()
    }
    return [
        objects[pk]
        if kind == 0
        else credit_cdr_object(credit_rows[pk], original=objects[credit_rows[pk].cdr_id])
        for kind, pk, _ in rows
    ], total
