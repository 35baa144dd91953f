"""Billing a completed session into one immutable CDR, and correcting CDRs with credits.

`session_bill` is what the Celery job runs when a session ends (and what the periodic sweep runs for any
completed session still without a CDR). It is idempotent: the CDR's unique session key means a duplicate stop,
a redelivered task or a rerun finds the CDR and writes nothing.

Usage comes from the session's energy-register readings (`usage_from_readings`): meter start, every
Energy.Active.Import.Register sample inside the session, meter stop. A period is charging when the register
rose by more than BILLING_IDLE_POWER_W on average; otherwise it is idle (parking) time.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import User
from billing import drill_hook
from billing.models import CdrCredit, CdrLine, ChargeDetailRecord, SessionPricing
from billing.money import minor_unit, round_money
from billing.services.energy_prices import energy_cost, energy_price_in_force
from billing.services.tariffs import session_pricing_snapshot, station_time_zone
from billing.tariff_json import tariff_load
from billing.tariffs import UnsupportedTariffError, price_session, running_cost, usage_from_readings
from billing.types import Dimension, PriceResult, SessionUsage, Tariff
from cpms.errors import Conflict, ValidationFailed
from sessions.enums import AnomalyKind, SessionFlag, SessionStatus
from sessions.models import ChargingSession
from sessions.selectors import session_energy_readings
from sessions.services.review import session_hold

logger = logging.getLogger(__name__)

_AMOUNT_FIELD = {
    Dimension.FLAT: "flat_amount",
    Dimension.ENERGY: "energy_amount",
    Dimension.TIME: "time_amount",
    Dimension.PARKING_TIME: "parking_amount",
}


@dataclass(frozen=True, slots=True)
class BillResult:
    """`outcome`: billed (a CDR was written now), exists (it was already), held, not_ended, failed."""

    outcome: str
    cdr: ChargeDetailRecord | None = None


class BillingError(ValueError):
    """The session's data cannot be priced as it is."""


def session_usage(session: ChargingSession) -> SessionUsage:
    """The session's usage from its meter readings (module docstring). BillingError if they do not add up."""
    start_wh, stop_wh = session.meter_start_wh, session.meter_stop_wh
    started_at, stopped_at = session.started_at, session.stopped_at
    if stopped_at is None:  # the callers bill ended sessions only
        raise BillingError("the session has not ended")
    inside = [
        (timestamp, wh)
        for timestamp, wh in session_energy_readings(session=session)
        if started_at < timestamp < stopped_at
    ]
    if start_wh is None:
        start_wh = inside[0][1] if inside else stop_wh
    if stop_wh is None:
        stop_wh = inside[-1][1] if inside else start_wh
    if start_wh is None or stop_wh is None:
        raise BillingError("no energy register reading: the session's energy is unknown")
    readings = [(started_at, start_wh), *inside, (stopped_at, stop_wh)]
    try:
        return usage_from_readings(
            started_at, stopped_at, readings, idle_power_w=Decimal(settings.BILLING_IDLE_POWER_W)
        )
    except (TypeError, ValueError) as error:
        raise BillingError(str(error)) from None


def _price(session: ChargingSession, pricing: SessionPricing, usage: SessionUsage) -> tuple[PriceResult, str]:
    """The price under the snapshot; without a tariff, under an empty one (everything free, in the
    organisation's currency), so that a free session still has its CDR with exact times."""
    if pricing.tariff is None:
        station = session.station
        free = Tariff(
            currency=station.organisation.currency,
            tax_rate=Decimal(0),
            elements=(),
            time_zone=station_time_zone(station),
        )
        return price_session(free, usage), ""
    try:
        return price_session(tariff_load(pricing.tariff), usage), pricing.tariff.get("tariff_label", "")
    except UnsupportedTariffError as error:
        raise BillingError(str(error)) from None


def _zero(currency: str) -> Decimal:
    return round_money(0, currency)


def _cdr_fields(
    session: ChargingSession, usage: SessionUsage, result: PriceResult, label: str
) -> dict[str, Any]:
    station = session.station
    zero = _zero(result.currency)
    money = dict.fromkeys(
        ["flat_amount", "energy_amount", "time_amount", "parking_amount", "adjustment_amount"], zero
    )
    for line in result.lines:
        field = _AMOUNT_FIELD.get(line.dimension, "adjustment_amount")
        money[field] += line.amount
    return {
        "session": session,
        "organisation_id": station.organisation_id,
        "site_id": station.site_id,
        "station": station,
        "station_identity": station.identity,
        "evse_number": session.evse.evse_id if session.evse else None,
        "connector_number": session.connector.connector_id if session.connector else None,
        "id_tag": session.id_tag,
        "time_zone": station_time_zone(station),
        "tariff_label": label,
        "started_at": session.started_at,
        "stopped_at": session.stopped_at,
        "energy_wh": usage.energy_wh,
        "charging_s": result.charging_s,
        "parking_s": result.parking_s,
        "currency": result.currency,
        "tax_rate": result.tax_rate,
        "subtotal": result.subtotal,
        "tax": result.tax,
        "total": result.total,
        **money,
    }


def _energy_cost(session: ChargingSession, usage: SessionUsage, currency: str) -> Decimal | None:
    site = session.station.site
    if site is None:
        return None
    price = energy_price_in_force(site_id=site.pk, at=session.started_at)
    if price is None or price.currency != currency:
        return None
    return energy_cost(price=price, usage=usage, time_zone=site.time_zone)


def session_bill(*, session_id: int) -> BillResult:
    """Price a completed session and write its CDR with its lines, once (module docstring)."""
    existing = ChargeDetailRecord.objects.filter(session_id=session_id).first()
    if existing is not None:
        return BillResult("exists", existing)
    session = ChargingSession.objects.select_related(
        "station__site", "station__organisation", "evse", "connector"
    ).get(pk=session_id)
    if session.status != SessionStatus.COMPLETED or session.stopped_at is None:
        return BillResult("not_ended")
    if session.held_for_review:
        return BillResult("held")
    pricing = session_pricing_snapshot(session_id=session.pk)
    try:
        usage = session_usage(session)
        result, label = _price(session, pricing, usage)
    except BillingError as error:
        logger.warning("session %s held from billing: %s", session.pk, error)
        session_hold(
            session_id=session.pk,
            flag=SessionFlag.BILLING_ERROR,
            kind=AnomalyKind.BILLING_ERROR,
            detail={"error": str(error)},
        )
        return BillResult("held")
    fields = _cdr_fields(session, usage, result, label)
    fields["tariff_version_id"] = pricing.tariff_version_id
    fields["energy_cost"] = _energy_cost(session, usage, fields["currency"])
    try:
        with transaction.atomic():
            cdr = ChargeDetailRecord.objects.create(**fields)
            CdrLine.objects.bulk_create(
                CdrLine(
                    cdr=cdr,
                    position=position,
                    dimension=str(line.dimension),
                    element_index=line.element_index,
                    quantity=line.quantity,
                    used_quantity=line.used_quantity,
                    unit=line.unit,
                    unit_price=line.unit_price,
                    amount=line.amount,
                )
                for position, line in enumerate(result.lines, start=1)
            )
            if drill_hook.ARMED:  # test hook (worker-kill drill): a kill here must leave no CDR
                drill_hook.reached("billing", f"session {session_id}")
    except IntegrityError:
        # Billed at the same moment by another worker (a redelivered task): theirs stands.
        return BillResult("exists", ChargeDetailRecord.objects.get(session_id=session_id))
    return BillResult("billed", cdr)


def session_final_cost(*, session_id: int) -> Decimal | None:
    """The total (tax included) the session's CDR has or will have, for the answer to a 2.0.1 Ended
    TransactionEvent (I03: totalCost), computed now rather than waiting for the billing job. The same
    functions as session_bill price the same committed readings under the same snapshot, so the amounts are
    equal to the cent. None when the session has no tariff (the platform does not price it), is not completed,
    is held for review, or cannot be priced; a read only: the snapshot taken at the start is required (taking
    one here would write on the charger's reply path)."""
    pricing = SessionPricing.objects.filter(session_id=session_id, tariff__isnull=False).first()
    if pricing is None:
        return None  # one query for an unpriced session
    cdr = ChargeDetailRecord.objects.filter(session_id=session_id).values_list("total", flat=True).first()
    if cdr is not None:
        return cdr
    session = ChargingSession.objects.select_related("station").get(pk=session_id)
    if session.status != SessionStatus.COMPLETED or session.stopped_at is None or session.held_for_review:
        return None
    try:
        result, _label = _price(session, pricing, session_usage(session))
    except BillingError:
        return None
    return result.total


def sessions_to_bill(*, limit: int = 500) -> list[int]:
    """Completed, not held sessions of the last BILLING_SWEEP_DAYS that have no CDR yet (oldest first):
    what the periodic sweep bills, in case the job queued at the session's end was lost."""
    since = timezone.now() - timedelta(days=settings.BILLING_SWEEP_DAYS)
    return list(
        ChargingSession.objects.filter(
            status=SessionStatus.COMPLETED, held_for_review=False, started_at__gte=since, cdr__isnull=True
        )
        .order_by("started_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )


def cdr_credit_create(
    *, cdr: ChargeDetailRecord, user: User | None, reason: str, subtotal: Decimal | None = None
) -> CdrCredit:
    """Credit `subtotal` (excl. tax, positive, in the CDR's currency) of the CDR, or all that is left when
    None. Tax is credited at the CDR's rate; the credit that brings a CDR to zero takes exactly the tax left,
    so a fully credited CDR nets to 0. The credits of a CDR never exceed it: the CDR row is locked while
    they are summed."""
    reason = reason.strip()
    if not reason:
        raise ValidationFailed("reason: required")
    currency = cdr.currency
    if subtotal is not None:
        if subtotal <= 0:
            raise ValidationFailed("subtotal: must be greater than 0")
        if subtotal != round_money(subtotal, currency):
            raise ValidationFailed(f"subtotal: at most {minor_unit(currency)} decimals for {currency}")
    with transaction.atomic():
        # SELECT ... FOR UPDATE takes a row lock; it is not an UPDATE, so the immutability trigger allows it.
        ChargeDetailRecord.objects.select_for_update().filter(pk=cdr.pk).first()
        credited = CdrCredit.objects.filter(cdr=cdr).aggregate(subtotal=Sum("subtotal"), tax=Sum("tax"))
        left_subtotal = cdr.subtotal + (credited["subtotal"] or 0)
        left_tax = cdr.tax + (credited["tax"] or 0)
        if left_subtotal <= 0:
            raise Conflict(f"CDR {cdr.pk} is fully credited.")
        amount = left_subtotal if subtotal is None else subtotal
        if amount > left_subtotal:
            raise ValidationFailed(
                f"subtotal: at most {round_money(left_subtotal, currency)} {currency} is left to credit on CDR {cdr.pk}"
            )
        tax = (
            left_tax
            if amount == left_subtotal
            else min(round_money(amount * cdr.tax_rate, currency), left_tax)
        )
        return CdrCredit.objects.create(
            cdr=cdr,
            organisation_id=cdr.organisation_id,
            currency=currency,
            subtotal=-amount,
            tax=-tax,
            total=-(amount + tax),
            reason=reason,
            created_by=user,
        )


def cdr_credit_totals(*, cdr: ChargeDetailRecord) -> dict[str, Decimal]:
    """Credited so far (negative sums) and what the CDR nets to."""
    credited = CdrCredit.objects.filter(cdr=cdr).aggregate(subtotal=Sum("subtotal"), total=Sum("total"))
    credited_total = credited["total"] or _zero(cdr.currency)
    return {
        "credited_subtotal": credited["subtotal"] or _zero(cdr.currency),
        "credited_total": credited_total,
        "net_total": cdr.total + credited_total,
    }


def session_cost_so_far(*, session: ChargingSession, at: datetime | None = None) -> PriceResult | None:
    """The running cost of an active session (price_session without min_price) up to its last register
    reading, or None if it has no tariff or no reading yet."""
    pricing = SessionPricing.objects.filter(
        session_id=session.pk
    ).first()  # taken at the start; a read writes nothing
    if (
        pricing is None
        or pricing.tariff is None
        or session.meter_last_at is None
        or session.meter_last_wh is None
    ):
        return None
    end = at or session.meter_last_at
    start_wh = session.meter_start_wh if session.meter_start_wh is not None else session.meter_last_wh
    if end <= session.started_at:
        return None
    readings = [(session.started_at, start_wh)]
    readings += [
        (timestamp, wh)
        for timestamp, wh in session_energy_readings(session=session)
        if session.started_at < timestamp < end
    ]
    readings.append((end, session.meter_last_wh))
    try:
        usage = usage_from_readings(
            session.started_at, end, readings, idle_power_w=Decimal(settings.BILLING_IDLE_POWER_W)
        )
        return running_cost(tariff_load(pricing.tariff), usage)
    except (TypeError, ValueError):
        return None
