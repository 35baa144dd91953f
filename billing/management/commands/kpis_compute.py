"""Backfill (or recompute) the KPI days of every station over a period, with progress on stdout."""

from datetime import date, timedelta

from django.core.management.base import BaseCommand, CommandError

from billing.services.kpis import kpi_days_compute, kpi_days_recent_targets

BATCH = 50


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"Not a date (YYYY-MM-DD): {value!r}.") from exc


class Command(BaseCommand):
    help = "Compute the KPI days (local to each site) from --start to --end inclusive, for every station."

    def add_arguments(self, parser):
        parser.add_argument("--start", required=True, help="First local day, YYYY-MM-DD.")
        parser.add_argument("--end", required=True, help="Last local day, YYYY-MM-DD (inclusive).")
        parser.add_argument("--station", type=int, action="append", help="Only this station id (repeatable).")

    def handle(self, *args, start: str, end: str, station=None, **options):
        first, last = _date(start), _date(end)
        if last < first:
            raise CommandError("--end is before --start.")
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        station_ids = station or kpi_days_recent_targets()
        written = 0
        for offset in range(0, len(station_ids), BATCH):
            batch = station_ids[offset : offset + BATCH]
            written += kpi_days_compute(station_ids=batch, days=days)
            self.stdout.write(
                f"{min(offset + BATCH, len(station_ids))}/{len(station_ids)} stations, {written} day rows written"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Done: {len(days)} day(s) x {len(station_ids)} station(s), {written} rows written."
            )
        )
