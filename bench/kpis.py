"""KPI job benchmark: how long the periodic KPI computation takes per station, on PostgreSQL.

    python bench/kpis.py [--stations 200 1000] [--database-url postgres://...cpms_bench_kpi]

Creates N stations (2 EVSEs each, on 10 sites in two time zones) with two days of history shaped like a busy
public site: per connector 24 status changes a day, 8 sessions a day per EVSE, a reconnect a day and one
incident a day per station. Then runs what Celery beat runs every KPI_COMPUTE_S (today and yesterday of every
station: `kpi_days_compute_recent`), twice: the first run writes every row, the second finds them unchanged.
Prints the wall time, the time per station and the queries per station. Not a test: it asserts nothing.
"""

import argparse
import os
import random
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cpms_bench_kpi"


def setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpms.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def populate(count: int) -> list[int]:
    from django.db import transaction
    from django.utils import timezone

    from accounts.models import Organisation
    from sessions.enums import SessionStatus
    from sessions.models import ChargingSession
    from stations.enums import IncidentKind, StationEventKind
    from stations.models import ChargingStation, Connector, Evse, Incident, Site, StationEvent, StatusChange

    rng = random.Random(7)
    now = timezone.now()
    start = now - timedelta(days=2)
    with transaction.atomic():
        # A new organisation per run: the rows of earlier runs stay (the database is the bench's own).
        run = f"{count}-{int(time.time())}"
        org = Organisation.objects.create(name=f"Bench KPI {run}", slug=f"bench-kpi-{run}")
        sites = [
            Site.objects.create(
                organisation=org, name=f"Site {i}", time_zone="Europe/Berlin" if i % 2 else "America/New_York"
            )
            for i in range(10)
        ]
        stations = ChargingStation.objects.bulk_create(
            ChargingStation(identity=f"KPI-{run}-{n:05d}", organisation=org, site=sites[n % 10])
            for n in range(count)
        )
        evses = Evse.objects.bulk_create(Evse(station=s, evse_id=e) for s in stations for e in (1, 2))
        Connector.objects.bulk_create(Connector(evse=e, connector_id=1) for e in evses)
        changes, events, sessions, incidents = [], [], [], []
        for station in stations:
            events.append(
                StationEvent(
                    station=station,
                    kind=StationEventKind.CONNECTED,
                    detail={},
                    occurred_at=start,
                    received_at=start,
                )
            )
            for day in range(2):
                day_start = start + timedelta(days=day)
                drop = day_start + timedelta(hours=rng.uniform(1, 20))
                events += [
                    StationEvent(
                        station=station,
                        kind=StationEventKind.DISCONNECTED,
                        detail={},
                        occurred_at=drop,
                        received_at=drop,
                    ),
                    StationEvent(
                        station=station,
                        kind=StationEventKind.CONNECTED,
                        detail={},
                        occurred_at=drop + timedelta(minutes=5),
                        received_at=drop + timedelta(minutes=5),
                    ),
                ]
                detected = day_start + timedelta(hours=rng.uniform(0, 20))
                incidents.append(
                    Incident(
                        organisation=org,
                        site=station.site,
                        station=station,
                        kind=IncidentKind.FAULT,
                        evse_id=1,
                        connector_id=1,
                        code="GroundFailure",
                        occurred_at=detected - timedelta(seconds=30),
                        detected_at=detected,
                        resolved_at=detected + timedelta(minutes=40),
                        resolved_remotely=True,
                    )
                )
                for evse_id in (1, 2):
                    for k in range(24):
                        at = day_start + timedelta(hours=k, minutes=rng.uniform(0, 59))
                        status = ("Available", "Charging", "Finishing", "Faulted")[k % 4 if k % 12 else 3]
                        changes.append(
                            StatusChange(
                                station=station,
                                evse_id=evse_id,
                                connector_id=1,
                                status=status,
                                occurred_at=at,
                                received_at=at,
                            )
                        )
                    for k in range(8):
                        begun = day_start + timedelta(hours=3 * k, minutes=rng.uniform(0, 30))
                        sessions.append(
                            ChargingSession(
                                station=station,
                                transaction_id=f"{station.identity}-{day}-{evse_id}-{k}",
                                started_at=begun,
                                start_received_at=begun,
                                stopped_at=begun + timedelta(hours=1),
                                meter_start_wh=0,
                                meter_stop_wh=11_000,
                                energy_wh=11_000,
                                status=SessionStatus.COMPLETED,
                            )
                        )
        StationEvent.objects.bulk_create(events, batch_size=5000)
        StatusChange.objects.bulk_create(changes, batch_size=5000)
        ChargingSession.objects.bulk_create(sessions, batch_size=5000)
        Incident.objects.bulk_create(incidents, batch_size=5000)
    print(
        f"  {count} stations: {len(changes)} status changes, {len(sessions)} sessions, {len(events)} connection "
        f"events, {len(incidents)} incidents",
        flush=True,
    )
    return [s.pk for s in stations]


def measure(station_ids: list[int], label: str) -> None:
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    from billing.services.kpis import kpi_days_compute_recent

    reset_queries()
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        written = kpi_days_compute_recent(station_ids=station_ids)
        elapsed = time.perf_counter() - started
    n = len(station_ids)
    print(
        f"  {label:<14} {elapsed:8.2f} s   {elapsed / n * 1000:7.1f} ms/station   "
        f"{len(queries) / n:5.1f} queries/station   {written} rows written",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    args = parser.parse_args()
    url = urlsplit(args.database_url)
    if url.scheme not in {"postgres", "postgresql"} or "bench" not in url.path:
        raise SystemExit("Use a PostgreSQL database whose name contains 'bench'.")
    from psycopg import connect, sql

    maintenance = url._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)
    with connect(maintenance, autocommit=True) as conn:
        name = url.path.lstrip("/")
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    setup(args.database_url)
    for count in args.stations:
        print(
            f"\n== {count} stations, today and yesterday each (what beat runs every KPI_COMPUTE_S)",
            flush=True,
        )
        ids = populate(count)
        measure(ids, "first run")
        measure(ids, "unchanged rerun")


if __name__ == "__main__":
    main()
