"""The revenue exports' sums: CDRs and credits of the period added up per month, site [and port] and currency.

revenue_sites / revenue_ports: one row per (month, organisation, site, currency), resp. per (month, site,
station, evse, connector, currency); the month is the local month of a CDR's stop and of a credit's
creation; sorted by month, organisation name, site name, [station, evse, connector,] currency (ids break
ties between equal names). `sessions` counts CDRs; revenue_* sum the CDRs; credits_* sum the credits
(negative); net_excl_tax = revenue_excl_tax + credits_excl_tax. `energy_cost` sums the CDRs that have one
(0 when the row has only credits; None when it has CDRs and none has a cost) and margin = net_excl_tax -
energy_cost (None with it; CDRs without an energy cost count as costing nothing). `energy_cost_per_kwh`
= energy_cost / kWh of the CDRs that have a cost, 4 decimals, None without such kWh. Never a sum across
currencies.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from billing.enums import ExportKind
from billing.money import minor_unit, round_half_up
from billing.services.exports.filters import Period, Zones
from billing.services.exports.records import DatabaseRows
from billing.services.exports.rows import RevenueRow, rounded

REVENUE_CDR_FIELDS = (
    "organisation_id",
    "organisation__name",
    "site_id",
    "site__name",
    "station_identity",
    "evse_number",
    "connector_number",
    "currency",
    "time_zone",
    "stopped_at",
    "energy_wh",
    "subtotal",
    "tax",
    "total",
    "energy_cost",
)
REVENUE_CREDIT_FIELDS = (
    "organisation_id",
    "organisation__name",
    "cdr__site_id",
    "cdr__site__name",
    "cdr__station_identity",
    "cdr__evse_number",
    "cdr__connector_number",
    "currency",
    "cdr__time_zone",
    "created_at",
    "subtotal",
    "tax",
    "total",
)

_ZERO = Decimal(0)


@dataclass(slots=True)
class _Totals:
    """One revenue row being summed."""

    sort_key: tuple[Any, ...]
    month: str
    organisation: str
    site: str | None
    station: str | None
    evse: int | None
    connector: int | None
    currency: str
    cdrs: int = 0
    energy_wh: int = 0
    subtotal: Decimal = _ZERO
    tax: Decimal = _ZERO
    total: Decimal = _ZERO
    credit_subtotal: Decimal = _ZERO
    credit_tax: Decimal = _ZERO
    energy_cost: Decimal = _ZERO
    costed_cdrs: int = 0
    costed_wh: int = 0

    def row(self) -> RevenueRow:
        places = minor_unit(self.currency)
        net = self.subtotal + self.credit_subtotal
        cost = self.energy_cost if self.costed_cdrs > 0 or self.cdrs == 0 else None
        per_kwh = None
        if self.costed_wh:
            per_kwh = round_half_up(Fraction(self.energy_cost) * 1000 / self.costed_wh, 4)
        return RevenueRow(
            month=self.month,
            organisation=self.organisation,
            site=self.site,
            station=self.station,
            evse=self.evse,
            connector=self.connector,
            currency=self.currency,
            places=places,
            sessions=self.cdrs,
            energy_kwh=rounded(Decimal(self.energy_wh).scaleb(-3), 3),
            revenue_excl_tax=rounded(self.subtotal, places),
            tax=rounded(self.tax, places),
            revenue_incl_tax=rounded(self.total, places),
            credits_excl_tax=rounded(self.credit_subtotal, places),
            credits_tax=rounded(self.credit_tax, places),
            net_excl_tax=rounded(net, places),
            energy_cost=None if cost is None else rounded(cost, places),
            margin=None if cost is None else rounded(net - cost, places),
            energy_cost_per_kwh=None if per_kwh is None else rounded(per_kwh, 4),
        )


def _site_order(site: str | None, site_id: int | None) -> tuple[str, int]:
    """A CDR may have no site (its station had none): such rows sort first in their month and organisation,
    and None is never compared with a name or an id."""
    return ("" if site is None else site, -1 if site_id is None else site_id)


class RevenueSums:
    """The totals of one revenue export, fed chunk by chunk (`add_cdrs`, `add_credits`: database rows of
    REVENUE_CDR_FIELDS / REVENUE_CREDIT_FIELDS after the pk; rows outside the period are skipped), then read
    once as sorted rows."""

    def __init__(self, *, kind: str, zones: Zones, period: Period):
        self._ports = kind == ExportKind.REVENUE_PORTS
        self._zones = zones
        self._period = period
        self._totals: dict[tuple[Any, ...], _Totals] = {}

    def rows(self) -> list[RevenueRow]:
        return [totals.row() for totals in sorted(self._totals.values(), key=lambda t: t.sort_key)]

    def _group(
        self,
        *,
        local: datetime,
        organisation_id: int,
        organisation: str,
        site_id: int | None,
        site: str | None,
        station: str,
        evse: int | None,
        connector: int | None,
        currency: str,
    ) -> _Totals:
        month = f"{local.year:04d}-{local.month:02d}"
        if self._ports:
            key: tuple[Any, ...] = (month, organisation_id, site_id, station, evse, connector, currency)
        else:
            key = (month, organisation_id, site_id, currency)
        totals = self._totals.get(key)
        if totals is None:
            if self._ports:
                totals = _Totals(
                    sort_key=(
                        month,
                        organisation,
                        organisation_id,
                        *_site_order(site, site_id),
                        station,
                        -1 if evse is None else evse,
                        -1 if connector is None else connector,
                        currency,
                    ),
                    month=month,
                    organisation=organisation,
                    site=site,
                    station=station,
                    evse=evse,
                    connector=connector,
                    currency=currency,
                )
            else:
                totals = _Totals(
                    sort_key=(month, organisation, organisation_id, *_site_order(site, site_id), currency),
                    month=month,
                    organisation=organisation,
                    site=site,
                    station=None,
                    evse=None,
                    connector=None,
                    currency=currency,
                )
            self._totals[key] = totals
        return totals

    def add_cdrs(self, rows: DatabaseRows) -> int:
        """Add the CDRs of the period among `rows`; returns how many."""
        zones, period, added = self._zones, self._period, 0
        for (
            _pk,
            organisation_id,
            organisation,
            site_id,
            site,
            station,
            evse,
            connector,
            currency,
            zone_name,
            stopped_at,
            energy_wh,
            subtotal,
            tax,
            total,
            energy_cost,
        ) in rows:
            local = stopped_at.astimezone(zones.get(zone_name))
            if not period.contains(stopped_at, local):
                continue
            added += 1
            totals = self._group(
                local=local,
                organisation_id=organisation_id,
                organisation=organisation,
                site_id=site_id,
                site=site,
                station=station,
                evse=evse,
                connector=connector,
                currency=currency,
            )
            totals.cdrs += 1
            totals.energy_wh += energy_wh
            totals.subtotal += subtotal
            totals.tax += tax
            totals.total += total
            if energy_cost is not None:
                totals.energy_cost += energy_cost
                totals.costed_cdrs += 1
                totals.costed_wh += energy_wh
        return added

    def add_credits(self, rows: DatabaseRows) -> int:
        """Add the credits of the period among `rows`; returns how many."""
        zones, period, added = self._zones, self._period, 0
        for (
            _pk,
            organisation_id,
            organisation,
            site_id,
            site,
            station,
            evse,
            connector,
            currency,
            zone_name,
            created_at,
            subtotal,
            tax,
            _total,
        ) in rows:
            local = created_at.astimezone(zones.get(zone_name))
            if not period.contains(created_at, local):
                continue
            added += 1
            totals = self._group(
                local=local,
                organisation_id=organisation_id,
                organisation=organisation,
                site_id=site_id,
                site=site,
                station=station,
                evse=evse,
                connector=connector,
                currency=currency,
            )
            totals.credit_subtotal += subtotal
            totals.credit_tax += tax
        return added
