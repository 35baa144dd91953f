"""The columns of every export kind: one table per kind says each column's header and how its cell is made
from a typed row (rows.py). The CSV's header and rows come from these tables; for CDRs the table also says
which model fields the admin (change page, list) and the API show.

Cells (`\\r\\n` line ends, minimal quoting, UTF-8 without BOM: csv.py):
- money: the stored amounts with the currency's minor unit of decimals (`billing.money.minor_unit`);
  kWh with 3 decimals, hours with 6, `tax_rate` (a fraction) with 4; empty for "none".
- `*_utc`: `YYYY-MM-DDTHH:MM:SSZ`; `*_local`: `YYYY-MM-DD HH:MM:SS` in `time_zone`; empty when the instant
  is not representable there (docs/reliability.md case 45: its `*_utc` cell still carries it).
- text cells from users or chargers (names, identities, id tokens, tariff labels, credit reasons, flags,
  transaction ids, currencies, zones) lose NUL bytes and, when they start with `=`, `+`, `-`, `@`, TAB or
  CR, get a leading `'` so that a spreadsheet does not run them as formulas (CSV injection). Numbers we
  format ourselves, negative credits included, are never altered.

cdrs: a credit row repeats the CDR's identification and times, carries its own subtotal/tax/total
(negative), the CDR's tax_rate, its reason and its own created_at; the quantities (energy_kwh, hours) and
the per-dimension amounts stay empty, so that summing any column over the file counts each session once.
`margin` is what the row adds to the margin (rows.CdrRecord); `energy_cost` is empty on credits.
sessions: amounts, `tariff`, `currency` and `cdr_id` come from the session's CDR and are empty without one;
`credited` sums all the credits of that CDR issued so far (whatever their date), `net_total` = total +
credited. `energy_kwh` is the session's own.
payment_* (cdrs and sessions): the session's ad-hoc card payment as it stands when the export runs:
its status, the hold, what was captured, refunded (so far) and left unpaid, all tax included; empty for a
session paid otherwise, and on credit rows (a refund is a credit row of its own, so that summing
`payment_captured` counts each payment once).
revenue_sites / revenue_ports: the rows of revenue.py.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any, Generic, TypeVar

from billing.enums import ExportKind
from billing.models import ChargeDetailRecord
from billing.services.exports.rows import CdrRecord, RevenueRow, SessionRecord

_FORMULA_START = frozenset(("=", "+", "-", "@", "\t", "\r"))
_EXPONENTS = {places: Decimal(1).scaleb(-places) for places in range(7)}
_HALF_UP = Context(rounding=ROUND_HALF_UP)

# --- cells -----------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A text cell from user or charger data, neutralised for spreadsheets (see the module docstring)."""
    if value is None:
        return ""
    text = str(value)
    if "\x00" in text:
        text = text.replace("\x00", "")
    if text[:1] in _FORMULA_START:  # twice as fast as startswith(a tuple)
        return "'" + text
    return text


def _fixed(value: Decimal | None, places: int) -> str:
    # The rounding of rows.rounded, inlined (and through a context rather than keyword arguments): this
    # runs for every amount of a million-row export.
    if value is None:
        return ""
    value = _HALF_UP.quantize(value, _EXPONENTS[places])
    # str() of a Decimal with an exponent of -6..0 is never in scientific notation; abs(): never "-0.00".
    return str(value) if value else str(abs(value))


def _int(value: int | None) -> str:
    return "" if value is None else str(value)


def _kwh(energy_wh: int | None) -> str:
    # Wh to kWh with 3 decimals is exact: integer arithmetic, no Decimal.
    if energy_wh is None:
        return ""
    kwh, wh = divmod(abs(energy_wh), 1000)
    return f"-{kwh}.{wh:03d}" if energy_wh < 0 else f"{kwh}.{wh:03d}"


def _hours(seconds: Decimal | None) -> str:
    return "" if seconds is None else _fixed(seconds / 3600, 6)


# Dates: %-formatting of the fields is the fastest way (isoformat, f-strings and strftime cost up to twice as
# much), and five date cells are a quarter of a CDR row's cost.
def _utc(moment: datetime | None) -> str:
    if moment is None:
        return ""
    m = moment if moment.tzinfo is UTC else moment.astimezone(UTC)  # the database's datetimes are UTC
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (m.year, m.month, m.day, m.hour, m.minute, m.second)  # noqa: UP031


def _local(moment: datetime | None) -> str:
    """`moment`, already in the local zone."""
    if moment is None:
        return ""
    m = moment
    return "%04d-%02d-%02d %02d:%02d:%02d" % (m.year, m.month, m.day, m.hour, m.minute, m.second)  # noqa: UP031


# --- the tables ------------------------------------------------------------------------------------------

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Column(Generic[R]):
    """One column of an export: `header` and `cell` (its text from a typed row) for the CSV; for CDRs,
    `field`, the ChargeDetailRecord field the column shows, and where else that field is shown: `api` (its
    name in the API, usually the field's), `admin` (the admin's change page), `listed` (the admin's list).
    A model field that only the admin or the API shows is a column without a header."""

    header: str | None
    cell: Callable[[R], str] | None = None
    field: str | None = None
    api: str | None = None
    admin: bool = False
    listed: bool = False


def _shown(
    header: str | None,
    cell: Callable[[CdrRecord], str] | None,
    field: str,
    *,
    api: str | None = None,
    listed: bool = False,
) -> Column[CdrRecord]:
    """A CDR field on the admin's change page and in the API (as `api` if renamed there), and in the CSV
    under `header` unless None."""
    return Column(header, cell, field=field, api=api or field, admin=True, listed=listed)


CDR_COLUMNS: tuple[Column[CdrRecord], ...] = (
    Column("record_type", lambda r: r.record_type),
    Column("record_id", lambda r: str(r.record_id)),
    # The CDR's id: in the admin's list (its change page has it in the address) and the API.
    Column("cdr_id", lambda r: str(r.cdr_id), field="id", api="id", listed=True),
    _shown("session_id", lambda r: str(r.session_id), "session"),
    Column("transaction_id", lambda r: _text(r.transaction_id)),
    _shown("organisation", lambda r: _text(r.organisation), "organisation", listed=True),
    _shown("site", lambda r: _text(r.site), "site", listed=True),
    # The station's row, a link on the admin's change page; the CSV and the API carry the identity.
    Column(None, field="station", admin=True),
    _shown("station", lambda r: _text(r.station), "station_identity", api="station", listed=True),
    _shown("evse", lambda r: _int(r.evse), "evse_number"),
    _shown("connector", lambda r: _int(r.connector), "connector_number"),
    _shown("id_token", lambda r: _text(r.id_tag), "id_tag"),
    _shown(None, None, "tariff_version"),
    _shown("tariff", lambda r: _text(r.tariff), "tariff_label", listed=True),
    _shown("time_zone", lambda r: _text(r.zone.key), "time_zone"),
    Column("started_at_local", lambda r: _local(r.started_at_local)),
    Column("stopped_at_local", lambda r: _local(r.stopped_at_local)),
    _shown("started_at_utc", lambda r: _utc(r.started_at), "started_at"),
    _shown("stopped_at_utc", lambda r: _utc(r.stopped_at), "stopped_at", listed=True),
    _shown("energy_kwh", lambda r: _kwh(r.energy_wh), "energy_wh", listed=True),
    _shown("charging_hours", lambda r: _hours(r.charging_s), "charging_s"),
    _shown("parking_hours", lambda r: _hours(r.parking_s), "parking_s"),
    _shown("currency", lambda r: _text(r.currency), "currency", listed=True),
    _shown("flat_amount", lambda r: _fixed(r.flat_amount, r.places), "flat_amount"),
    _shown("energy_amount", lambda r: _fixed(r.energy_amount, r.places), "energy_amount"),
    _shown("time_amount", lambda r: _fixed(r.time_amount, r.places), "time_amount"),
    _shown("parking_amount", lambda r: _fixed(r.parking_amount, r.places), "parking_amount"),
    _shown("adjustment_amount", lambda r: _fixed(r.adjustment_amount, r.places), "adjustment_amount"),
    _shown("subtotal", lambda r: _fixed(r.subtotal, r.places), "subtotal", listed=True),
    _shown("tax_rate", lambda r: _fixed(r.tax_rate, 4), "tax_rate"),
    _shown("tax", lambda r: _fixed(r.tax, r.places), "tax", listed=True),
    _shown("total", lambda r: _fixed(r.total, r.places), "total", listed=True),
    _shown("energy_cost", lambda r: _fixed(r.energy_cost, r.places), "energy_cost"),
    Column("margin", lambda r: _fixed(r.margin, r.places)),
    Column("credit_reason", lambda r: _text(r.credit_reason)),
    _shown("created_at_utc", lambda r: _utc(r.created_at), "created_at"),
    Column("payment_status", lambda r: _text(r.payment_status)),
    Column("payment_hold", lambda r: _fixed(r.payment_hold, r.places)),
    Column("payment_captured", lambda r: _fixed(r.payment_captured, r.places)),
    Column("payment_refunded", lambda r: _fixed(r.payment_refunded, r.places)),
    Column("payment_unpaid", lambda r: _fixed(r.payment_unpaid, r.places)),
)

SESSION_COLUMNS: tuple[Column[SessionRecord], ...] = (
    Column("session_id", lambda r: str(r.session_id)),
    Column("transaction_id", lambda r: _text(r.transaction_id)),
    Column("organisation", lambda r: _text(r.organisation)),
    Column("site", lambda r: _text(r.site)),
    Column("station", lambda r: _text(r.station)),
    Column("evse", lambda r: _int(r.evse)),
    Column("connector", lambda r: _int(r.connector)),
    Column("id_token", lambda r: _text(r.id_tag)),
    Column("status", lambda r: _text(r.status)),
    Column("billing_status", lambda r: r.billing_status),
    Column("flags", lambda r: _text(";".join(map(str, r.flags)) if isinstance(r.flags, list) else "")),
    Column("time_zone", lambda r: _text(r.zone.key)),
    Column("started_at_local", lambda r: _local(r.started_at_local)),
    Column("stopped_at_local", lambda r: _local(r.stopped_at_local)),
    Column("started_at_utc", lambda r: _utc(r.started_at)),
    Column("stopped_at_utc", lambda r: _utc(r.stopped_at)),
    Column("energy_kwh", lambda r: _kwh(r.energy_wh)),
    Column("tariff", lambda r: _text(r.tariff)),
    Column("currency", lambda r: _text(r.currency)),
    Column("flat_amount", lambda r: _fixed(r.flat_amount, r.places)),
    Column("energy_amount", lambda r: _fixed(r.energy_amount, r.places)),
    Column("time_amount", lambda r: _fixed(r.time_amount, r.places)),
    Column("parking_amount", lambda r: _fixed(r.parking_amount, r.places)),
    Column("adjustment_amount", lambda r: _fixed(r.adjustment_amount, r.places)),
    Column("subtotal", lambda r: _fixed(r.subtotal, r.places)),
    Column("tax", lambda r: _fixed(r.tax, r.places)),
    Column("total", lambda r: _fixed(r.total, r.places)),
    Column("credited", lambda r: _fixed(r.credited, r.places)),
    Column("net_total", lambda r: _fixed(r.net_total, r.places)),
    Column("cdr_id", lambda r: _int(r.cdr_id)),
    Column("payment_status", lambda r: _text(r.payment_status)),
    Column("payment_hold", lambda r: _fixed(r.payment_hold, r.payment_places)),
    Column("payment_captured", lambda r: _fixed(r.payment_captured, r.payment_places)),
    Column("payment_refunded", lambda r: _fixed(r.payment_refunded, r.payment_places)),
    Column("payment_unpaid", lambda r: _fixed(r.payment_unpaid, r.payment_places)),
)

# The labels of a revenue row, then its figures (revenue.py; already rounded, so `_fixed` only writes them).
_MONTH: Column[RevenueRow] = Column("month", lambda r: r.month)
_ORGANISATION: Column[RevenueRow] = Column("organisation", lambda r: _text(r.organisation))
_SITE: Column[RevenueRow] = Column("site", lambda r: _text(r.site))
_CURRENCY: Column[RevenueRow] = Column("currency", lambda r: _text(r.currency))
_SESSIONS: Column[RevenueRow] = Column("sessions", lambda r: str(r.sessions))
_ENERGY: Column[RevenueRow] = Column("energy_kwh", lambda r: _fixed(r.energy_kwh, 3))
_MONEY: tuple[Column[RevenueRow], ...] = (
    Column("revenue_excl_tax", lambda r: _fixed(r.revenue_excl_tax, r.places)),
    Column("tax", lambda r: _fixed(r.tax, r.places)),
    Column("revenue_incl_tax", lambda r: _fixed(r.revenue_incl_tax, r.places)),
    Column("credits_excl_tax", lambda r: _fixed(r.credits_excl_tax, r.places)),
)
_CREDITS_TAX: Column[RevenueRow] = Column("credits_tax", lambda r: _fixed(r.credits_tax, r.places))
_NET_COST_MARGIN: tuple[Column[RevenueRow], ...] = (
    Column("net_excl_tax", lambda r: _fixed(r.net_excl_tax, r.places)),
    Column("energy_cost", lambda r: _fixed(r.energy_cost, r.places)),
    Column("margin", lambda r: _fixed(r.margin, r.places)),
)

REVENUE_SITES_COLUMNS: tuple[Column[RevenueRow], ...] = (
    _MONTH,
    _ORGANISATION,
    _SITE,
    _CURRENCY,
    _SESSIONS,
    _ENERGY,
    *_MONEY,
    _CREDITS_TAX,
    *_NET_COST_MARGIN,
    Column("energy_cost_per_kwh", lambda r: _fixed(r.energy_cost_per_kwh, 4)),
)
REVENUE_PORTS_COLUMNS: tuple[Column[RevenueRow], ...] = (
    _MONTH,
    _ORGANISATION,
    _SITE,
    Column("station", lambda r: _text(r.station)),
    Column("evse", lambda r: _int(r.evse)),
    Column("connector", lambda r: _int(r.connector)),
    _CURRENCY,
    _SESSIONS,
    _ENERGY,
    *_MONEY,
    *_NET_COST_MARGIN,
)

COLUMNS: dict[str, tuple[Column[Any], ...]] = {
    ExportKind.CDRS: CDR_COLUMNS,
    ExportKind.SESSIONS: SESSION_COLUMNS,
    ExportKind.REVENUE_SITES: REVENUE_SITES_COLUMNS,
    ExportKind.REVENUE_PORTS: REVENUE_PORTS_COLUMNS,
}


def header_of(columns: tuple[Column[Any], ...]) -> tuple[str, ...]:
    return tuple(column.header for column in columns if column.header is not None)


def row_function(columns: tuple[Column[R], ...]) -> Callable[[R], list[str]]:
    """`row -> its CSV cells`, one call per row for `map` (csv.py): the CSV writer then reads the rows as
    they are made, without a list of lists per chunk."""
    cells = tuple(column.cell for column in columns if column.cell is not None)

    def cells_of(row: R) -> list[str]:
        return [cell(row) for cell in cells]

    return cells_of


HEADERS = {kind: header_of(columns) for kind, columns in COLUMNS.items()}
CDR_HEADER = HEADERS[ExportKind.CDRS]
SESSION_HEADER = HEADERS[ExportKind.SESSIONS]
REVENUE_SITES_HEADER = HEADERS[ExportKind.REVENUE_SITES]
REVENUE_PORTS_HEADER = HEADERS[ExportKind.REVENUE_PORTS]


def _cdr_fields(names: list[tuple[str, str]]) -> tuple[str, ...]:
    """`(field, name)` pairs in the model's field order, as names: the admin and the API have always listed
    a CDR's fields in that order, while the CSV has its own."""
    position = {f.name: index for index, f in enumerate(ChargeDetailRecord._meta.fields)}
    return tuple(name for field, name in sorted(names, key=lambda pair: position[pair[0]]))


# What the API's CDR serializer shows, the admin's CDR change page and its list (billing/api/serializers.py,
# billing/admin.py).
CDR_API_FIELDS = _cdr_fields([(c.field, c.api) for c in CDR_COLUMNS if c.field and c.api])
CDR_ADMIN_FIELDS = _cdr_fields([(c.field, c.field) for c in CDR_COLUMNS if c.field and c.admin])
CDR_ADMIN_LIST = _cdr_fields([(c.field, c.field) for c in CDR_COLUMNS if c.field and c.listed])
