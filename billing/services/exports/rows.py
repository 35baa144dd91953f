"""The typed rows of the exports, as readers.py reads them from the database and columns.py turns them into
cells: one record of the `cdrs` export (a CDR or a credit), one session, one revenue row.

Named tuples: a reader builds one per record of a million-row export, and a tuple is the cheapest typed
object to build and to read.
"""

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple
from zoneinfo import ZoneInfo

_EXPONENTS = {places: Decimal(1).scaleb(-places) for places in range(7)}


def rounded(value: Decimal, places: int) -> Decimal:
    """`value` with `places` decimals, half up, as every export states amounts and quantities: never -0."""
    value = value.quantize(_EXPONENTS[places], rounding=ROUND_HALF_UP)
    return value if value else abs(value)


class CdrRecord(NamedTuple):
    """A row of the `cdrs` export: a CDR (`record_type` "cdr") or a credit ("credit") with its CDR's
    identification and times. Values as stored; None where the record has none (a credit has no quantities,
    per-dimension amounts or energy cost; a CDR no credit reason)."""

    record_type: str
    record_id: int  # the CDR's or the credit's id
    cdr_id: int
    session_id: int
    transaction_id: str
    organisation: str
    site: str | None
    station: str  # the identity when the CDR was written
    evse: int | None  # OCPP numbers, not row ids
    connector: int | None
    id_tag: str
    tariff: str
    zone: ZoneInfo  # the CDR's own time zone; UTC when unknown
    started_at: datetime
    stopped_at: datetime
    started_at_local: datetime | None  # in `zone`; None when not representable there
    stopped_at_local: datetime | None
    energy_wh: int | None
    charging_s: Decimal | None
    parking_s: Decimal | None
    currency: str
    places: int  # the currency's decimals (billing.money.minor_unit)
    flat_amount: Decimal | None
    energy_amount: Decimal | None
    time_amount: Decimal | None
    parking_amount: Decimal | None
    adjustment_amount: Decimal | None
    subtotal: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal
    energy_cost: Decimal | None
    # What the record adds to the margin: subtotal - energy_cost on a CDR (None without an energy cost); the
    # credit's subtotal on a credit (a credit returns revenue and buys no energy).
    margin: Decimal | None
    credit_reason: str | None
    created_at: datetime
    # The session's ad-hoc card payment (billing.Payment), on the CDR's row only; None without one and on
    # credits (a refund is a credit row of its own).
    payment_status: str | None
    payment_hold: Decimal | None
    payment_captured: Decimal | None
    payment_refunded: Decimal | None
    payment_unpaid: Decimal | None


class SessionRecord(NamedTuple):
    """A row of the `sessions` export: a session and, once billed, its CDR's amounts (None before)."""

    session_id: int
    transaction_id: str
    organisation: str
    site: str | None
    station: str
    evse: int | None
    connector: int | None
    id_tag: str
    status: str
    billing_status: str  # billed, held, active or pending
    flags: list[str] | None
    zone: ZoneInfo  # the site's time zone; UTC without a site
    started_at: datetime
    stopped_at: datetime | None
    started_at_local: datetime
    stopped_at_local: datetime | None
    energy_wh: int | None
    cdr_id: int | None
    tariff: str | None
    currency: str | None
    places: int  # the currency's decimals; 0 without a CDR
    flat_amount: Decimal | None
    energy_amount: Decimal | None
    time_amount: Decimal | None
    parking_amount: Decimal | None
    adjustment_amount: Decimal | None
    subtotal: Decimal | None
    tax: Decimal | None
    total: Decimal | None
    credited: Decimal | None  # the CDR's credits so far (negative or 0)
    net_total: Decimal | None  # total + credited
    # The session's ad-hoc card payment (billing.Payment), None without one; its amounts in its own
    # currency (`payment_places` decimals), known before the session has a CDR.
    payment_status: str | None
    payment_places: int
    payment_hold: Decimal | None
    payment_captured: Decimal | None
    payment_refunded: Decimal | None
    payment_unpaid: Decimal | None


class RevenueRow(NamedTuple):
    """A row of `revenue_sites` (station, evse and connector None) or `revenue_ports`: the sums of one
    month, site [and port] and currency, rounded as the export states them (money to the currency's minor
    unit, kWh to 3 decimals, energy_cost_per_kwh to 4; half up). The portal's revenue page shows these."""

    month: str  # YYYY-MM, the local month
    organisation: str
    site: str | None
    station: str | None
    evse: int | None
    connector: int | None
    currency: str
    places: int
    sessions: int  # CDRs
    energy_kwh: Decimal
    revenue_excl_tax: Decimal
    tax: Decimal
    revenue_incl_tax: Decimal
    credits_excl_tax: Decimal  # negative or 0
    credits_tax: Decimal
    net_excl_tax: Decimal
    energy_cost: Decimal | None  # None: CDRs and none of them with an energy cost
    margin: Decimal | None
    energy_cost_per_kwh: Decimal | None
