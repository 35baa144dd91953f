"""The records of the `cdrs` and `sessions` exports (rows.py) from database rows: the fields each selects and
how a record is made of them, once its instant is known to lie in the period.

Records are made with `_make` of a tuple in field order: a third cheaper than passing 30-odd arguments, for
every row of a million-row export.

cdrs: a CDR record per CDR whose stop is in the period, then a credit record per credit issued in the
period (whatever the period of its CDR). sessions: every session started in the period, any status.
Both carry the session's ad-hoc card payment, if any (CDR rows, not credit rows).
"""

from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from billing.money import minor_unit
from billing.services.exports.filters import Period, Zones
from billing.services.exports.rows import CdrRecord, SessionRecord
from sessions.enums import SessionStatus

DatabaseRows = list[tuple[Any, ...]]  # the pk, then the fields selected

CDR_FIELDS = (
    "session_id",
    "session__transaction_id",
    "organisation__name",
    "site__name",
    "station_identity",
    "evse_number",
    "connector_number",
    "id_tag",
    "tariff_label",
    "time_zone",
    "started_at",
    "stopped_at",
    "energy_wh",
    "charging_s",
    "parking_s",
    "currency",
    "flat_amount",
    "energy_amount",
    "time_amount",
    "parking_amount",
    "adjustment_amount",
    "subtotal",
    "tax_rate",
    "tax",
    "total",
    "energy_cost",
    "created_at",
    # The session's payment: a left join on its unique session_id, one row per CDR.
    "session__payment__status",
    "session__payment__hold_amount",
    "session__payment__captured_amount",
    "session__payment__refunded_amount",
    "session__payment__unpaid_amount",
)
CREDIT_FIELDS = (
    "cdr_id",
    "cdr__session_id",
    "cdr__session__transaction_id",
    "organisation__name",
    "cdr__site__name",
    "cdr__station_identity",
    "cdr__evse_number",
    "cdr__connector_number",
    "cdr__id_tag",
    "cdr__tariff_label",
    "cdr__time_zone",
    "cdr__started_at",
    "cdr__stopped_at",
    "currency",
    "subtotal",
    "cdr__tax_rate",
    "tax",
    "total",
    "reason",
    "created_at",
)
SESSION_FIELDS = (
    "transaction_id",
    "station__organisation__name",
    "station__site__name",
    "station__identity",
    "evse__evse_id",
    "connector__connector_id",
    "id_tag",
    "status",
    "held_for_review",
    "flags",
    "station__site__time_zone",
    "started_at",
    "stopped_at",
    "energy_wh",
    "cdr__id",
    "cdr__tariff_label",
    "cdr__currency",
    "cdr__flat_amount",
    "cdr__energy_amount",
    "cdr__time_amount",
    "cdr__parking_amount",
    "cdr__adjustment_amount",
    "cdr__subtotal",
    "cdr__tax",
    "cdr__total",
    "payment__currency",
    "payment__status",
    "payment__hold_amount",
    "payment__captured_amount",
    "payment__refunded_amount",
    "payment__unpaid_amount",
)

_ZERO = Decimal(0)


def _in_zone(moment: datetime, zone: ZoneInfo) -> datetime | None:
    """`moment` in `zone`; None when it is not representable there (past year 9999 or before year 1: a
    charger's absurd clock in rows older than the timestamp window, docs/reliability.md case 45)."""
    try:
        return moment.astimezone(zone)
    except OverflowError:
        return None


def cdr_records(rows: DatabaseRows, zones: Zones, period: Period) -> list[CdrRecord]:
    """The CDRs of the period among `rows` (the pk, then CDR_FIELDS)."""
    out = []
    for (
        cdr_id,
        session_id,
        transaction_id,
        organisation,
        site,
        station,
        evse,
        connector,
        id_tag,
        tariff,
        zone_name,
        started_at,
        stopped_at,
        energy_wh,
        charging_s,
        parking_s,
        currency,
        flat,
        energy,
        time_amount,
        parking,
        adjustment,
        subtotal,
        tax_rate,
        tax,
        total,
        energy_cost,
        created_at,
        payment_status,
        payment_hold,
        payment_captured,
        payment_refunded,
        payment_unpaid,
    ) in rows:
        zone = zones.get(zone_name)
        stopped_local = stopped_at.astimezone(zone)
        if not period.contains(stopped_at, stopped_local):
            continue
        out.append(
            CdrRecord._make(
                (
                    "cdr",
                    cdr_id,
                    cdr_id,
                    session_id,
                    transaction_id,
                    organisation,
                    site,
                    station,
                    evse,
                    connector,
                    id_tag,
                    tariff,
                    zone,
                    started_at,
                    stopped_at,
                    _in_zone(started_at, zone),
                    stopped_local,
                    energy_wh,
                    charging_s,
                    parking_s,
                    currency,
                    minor_unit(currency),
                    flat,
                    energy,
                    time_amount,
                    parking,
                    adjustment,
                    subtotal,
                    tax_rate,
                    tax,
                    total,
                    energy_cost,
                    None if energy_cost is None else subtotal - energy_cost,
                    None,
                    created_at,
                    payment_status,
                    payment_hold,
                    payment_captured,
                    payment_refunded,
                    payment_unpaid,
                )
            )
        )
    return out


def credit_records(rows: DatabaseRows, zones: Zones, period: Period) -> list[CdrRecord]:
    """The credits of the period among `rows` (the pk, then CREDIT_FIELDS)."""
    out = []
    for (
        credit_id,
        cdr_id,
        session_id,
        transaction_id,
        organisation,
        site,
        station,
        evse,
        connector,
        id_tag,
        tariff,
        zone_name,
        started_at,
        stopped_at,
        currency,
        subtotal,
        tax_rate,
        tax,
        total,
        reason,
        created_at,
    ) in rows:
        zone = zones.get(zone_name)
        if not period.contains(created_at, created_at.astimezone(zone)):
            continue
        out.append(
            CdrRecord._make(
                (
                    "credit",
                    credit_id,
                    cdr_id,
                    session_id,
                    transaction_id,
                    organisation,
                    site,
                    station,
                    evse,
                    connector,
                    id_tag,
                    tariff,
                    zone,
                    started_at,
                    stopped_at,
                    _in_zone(started_at, zone),
                    _in_zone(stopped_at, zone),
                    None,
                    None,
                    None,
                    currency,
                    minor_unit(currency),
                    None,
                    None,
                    None,
                    None,
                    None,
                    subtotal,
                    tax_rate,
                    tax,
                    total,
                    None,
                    subtotal,
                    reason,
                    created_at,
                    None,
                    None,
                    None,
                    None,
                    None,
                )
            )
        )
    return out


def session_records(rows: DatabaseRows, zones: Zones, period: Period) -> list[SessionRecord]:
    """The sessions of the period among `rows` (the pk, then SESSION_FIELDS and `credited`)."""
    out = []
    for (
        session_id,
        transaction_id,
        organisation,
        site,
        station,
        evse,
        connector,
        id_tag,
        status,
        held,
        flags,
        zone_name,
        started_at,
        stopped_at,
        energy_wh,
        cdr_id,
        tariff,
        currency,
        flat,
        energy,
        time_amount,
        parking,
        adjustment,
        subtotal,
        tax,
        total,
        payment_currency,
        payment_status,
        payment_hold,
        payment_captured,
        payment_refunded,
        payment_unpaid,
        credited,
    ) in rows:
        zone = zones.get(zone_name)
        started_local = started_at.astimezone(zone)
        if not period.contains(started_at, started_local):
            continue
        if cdr_id is not None:
            billing_status = "billed"
        elif held:
            billing_status = "held"
        elif status != SessionStatus.COMPLETED:
            billing_status = "active"
        else:
            billing_status = "pending"
        if cdr_id is None:
            credited = net_total = None
        else:
            credited = credited or _ZERO
            net_total = total + credited
        out.append(
            SessionRecord._make(
                (
                    session_id,
                    transaction_id,
                    organisation,
                    site,
                    station,
                    evse,
                    connector,
                    id_tag,
                    status,
                    billing_status,
                    flags,
                    zone,
                    started_at,
                    stopped_at,
                    started_local,
                    None if stopped_at is None else _in_zone(stopped_at, zone),
                    energy_wh,
                    cdr_id,
                    tariff,
                    currency,
                    0 if currency is None else minor_unit(currency),
                    flat,
                    energy,
                    time_amount,
                    parking,
                    adjustment,
                    subtotal,
                    tax,
                    total,
                    credited,
                    net_total,
                    payment_status,
                    0 if payment_currency is None else minor_unit(payment_currency),
                    payment_hold,
                    payment_captured,
                    payment_refunded,
                    payment_unpaid,
                )
            )
        )
    return out
