"""Finance export benchmark: the CSV of 1,000,000 CDRs and sessions, written by the reader the API and the
export jobs use, and once streamed over HTTP from a real server process.

    python bench/export_csv.py [--rows 1000000] [--kinds cdrs sessions] [--no-http] [--tracemalloc]

On PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/cpms_bench_export; created if
missing, then migrated). Seeds --rows completed sessions, each with a CDR (one in a hundred also with a
credit), with set-based SQL (INSERT ... SELECT ... FROM generate_series): one organisation, 10 sites in
three time zones, 100 stations with 2 EVSEs each, a session every 30 seconds from 2024-01-01. Seeding
happens once: a later run reuses the rows and only adds what is missing for a larger --rows.

Then, for each kind, a child process runs `ExportReader` + `export_write` (billing/services/exports/csv.py)
over the whole period (local dates) into a file, and prints rows/s, seconds, output MB and the peak RSS
growth of that process: VmHWM at the end minus VmRSS just before the export (/proc/self/status), i.e. what
the export added to the process at its peak. With --tracemalloc the child also reports tracemalloc's peak
(Python allocations only; tracing makes the export about twice as slow, so its rows/s are not comparable).

HTTP: starts `python -m cpms.server` (Daphne, the production server) on a free port, creates a finance
user and its token (`manage.py create_api_token`), downloads GET /api/v1/exports/cdrs.csv for the same
period with a streaming client (http.client, 1 MiB reads), and prints rows/s, time to first byte, and the
server's RSS before and its VmHWM after.

Not a test: it asserts nothing, it measures. Only 127.0.0.1 is used; every wait is bounded.
"""

import argparse
import datetime as dt
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import BASE_DIR, HOST, ensure_database, free_port, memory_kib, wait_listening

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cpms_bench_export"
ORG_SLUG = "bench-export"
STATION_PREFIX = "BX-"
STATIONS = 100
SITES = 10
SITE_ZONES = ("Europe/Berlin", "UTC", "America/New_York")
SESSION_EVERY_S = 30
FIRST_START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
FINANCE_USER = "bench_export_finance"
HTTP_TIMEOUT_S = 900.0


# --- database ------------------------------------------------------------------------------------


def django_setup(database_url: str) -> None:
    import django

    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "cpms.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if str(BASE_DIR) not in sys.path:
        sys.path.insert(0, str(BASE_DIR))
    django.setup()


def migrate(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "cpms.settings"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env, check=True
    )


def seed_fixtures():
    """The organisation, sites, stations, EVSEs and connectors (ORM, idempotent)."""
    from django.db import transaction

    from accounts.models import Organisation
    from stations.models import ChargingStation, Connector, Evse, Site

    with transaction.atomic():
        organisation, _ = Organisation.objects.get_or_create(
            slug=ORG_SLUG, defaults={"name": "Bench Export", "currency": "EUR"}
        )
        sites = []
        for n in range(SITES):
            site, _ = Site.objects.get_or_create(
                organisation=organisation,
                name=f"Bench site {n:02d}",
                defaults={"time_zone": SITE_ZONES[n % len(SITE_ZONES)]},
            )
            sites.append(site)
        for n in range(STATIONS):
            station, _ = ChargingStation.objects.get_or_create(
                identity=f"{STATION_PREFIX}{n:04d}",
                defaults={"organisation": organisation, "site": sites[n % SITES]},
            )
            for evse_id in (1, 2):
                evse, _ = Evse.objects.get_or_create(station=station, evse_id=evse_id)
                Connector.objects.get_or_create(evse=evse, connector_id=1)
    return organisation


SESSIONS_SQL = """
WITH ports AS (
    SELECT row_number() OVER (ORDER BY st.identity, e.evse_id) - 1 AS port,
           st.id AS station_id, e.id AS evse_id, c.id AS connector_id
    FROM stations_chargingstation st
    JOIN stations_evse e ON e.station_id = st.id
    JOIN stations_connector c ON c.evse_id = e.id
    WHERE st.identity LIKE %(prefix)s
)
INSERT INTO charging_chargingsession (
    station_id, evse_id, connector_id, transaction_id, id_tag, id_token_status, started_at,
    start_received_at, stopped_at, stop_received_at, meter_start_wh, meter_stop_wh, meter_last_wh,
    meter_last_at, energy_wh, stop_reason, charging_state, status, flags, held_for_review, offline,
    start_fingerprint, created_at, updated_at
)
SELECT p.station_id, p.evse_id, p.connector_id, 'BX' || g.i, 'TAG' || lpad((g.i %% 5000)::text, 5, '0'),
       'Accepted', t.started, t.started, t.started + interval '25 minutes',
       t.started + interval '25 minutes', 0, 5000 + g.i %% 40000, 5000 + g.i %% 40000,
       t.started + interval '25 minutes', 5000 + g.i %% 40000, 'Local', '', 'completed', '[]'::jsonb,
       false, false, '', now(), now()
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g(i)
CROSS JOIN LATERAL (SELECT %(start)s::timestamptz + g.i * %(every)s * interval '1 second' AS started) t
JOIN ports p ON p.port = g.i %% (%(stations)s * 2)
"""

CDRS_SQL = """
INSERT INTO billing_chargedetailrecord (
    session_id, organisation_id, site_id, station_id, station_identity, evse_number, connector_number,
    id_tag, time_zone, tariff_label, started_at, stopped_at, energy_wh, charging_s, parking_s, currency,
    tax_rate, flat_amount, energy_amount, time_amount, parking_amount, adjustment_amount, subtotal, tax,
    total, energy_cost, created_at
)
SELECT s.id, st.organisation_id, st.site_id, st.id, st.identity, e.evse_id, c.connector_id, s.id_tag,
       si.time_zone, 'Bench AC v1', s.started_at, s.stopped_at, s.energy_wh, 1380, 120, 'EUR', 0.19,
       a.flat, a.energy, 0, 0, 0, a.flat + a.energy, round((a.flat + a.energy) * 0.19, 2),
       a.flat + a.energy + round((a.flat + a.energy) * 0.19, 2),
       CASE WHEN s.id %% 10 = 0 THEN NULL ELSE round(s.energy_wh * 0.00021, 2) END,
       s.stopped_at + interval '5 seconds'
FROM charging_chargingsession s
JOIN stations_chargingstation st ON st.id = s.station_id
JOIN stations_site si ON si.id = st.site_id
JOIN stations_evse e ON e.id = s.evse_id
JOIN stations_connector c ON c.id = s.connector_id
CROSS JOIN LATERAL (SELECT 1.00::numeric AS flat, round(s.energy_wh * 0.00039, 2) AS energy) a
WHERE s.id > %(after)s AND st.identity LIKE %(prefix)s
ORDER BY s.id
"""

CREDITS_SQL = """
INSERT INTO billing_cdrcredit (cdr_id, organisation_id, currency, subtotal, tax, total, reason, created_at)
SELECT d.id, d.organisation_id, d.currency, -1.00, -0.19, -1.19, 'Goodwill: bench', d.created_at + interval '2 days'
FROM billing_chargedetailrecord d
WHERE d.session_id > %(after)s AND d.session_id %% 100 = 0 AND d.station_identity LIKE %(prefix)s
ORDER BY d.id
"""


def seed(rows: int) -> tuple[int, int]:
    """Make sure `rows` bench sessions exist, each with a CDR. Returns (organisation id, sessions now)."""
    from django.db import connection, transaction

    from sessions.models import ChargingSession

    organisation = seed_fixtures()
    bench = ChargingSession.objects.filter(station__identity__startswith=STATION_PREFIX)
    existing = bench.count()
    if existing >= rows:
        print(f"reusing {existing:,} seeded sessions", flush=True)
        return organisation.pk, existing
    started = time.monotonic()
    params = {"prefix": f"{STATION_PREFIX}%", "start": FIRST_START, "every": SESSION_EVERY_S}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM charging_chargingsession")
        after = cursor.fetchone()[0]
        cursor.execute(SESSIONS_SQL, {**params, "first": existing, "last": rows - 1, "stations": STATIONS})
        sessions = cursor.rowcount
        cursor.execute(CDRS_SQL, {**params, "after": after})
        cdrs = cursor.rowcount
        cursor.execute(CREDITS_SQL, {**params, "after": after})
        credits = cursor.rowcount
    with connection.cursor() as cursor:
        # Planner statistics for the new rows and the fixtures (a production database has them): without
        # them PostgreSQL takes the 100 bench stations for one and picks poor plans.
        cursor.execute("ANALYZE")
    print(
        f"seeded {sessions:,} sessions, {cdrs:,} CDRs, {credits:,} credits "
        f"in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    return organisation.pk, existing + sessions


def period_for(rows: int) -> tuple[dt.date, dt.date]:
    """Local dates covering the first `rows` sessions at every site (New York is behind UTC, Berlin ahead)."""
    last_stop = FIRST_START + dt.timedelta(seconds=(rows - 1) * SESSION_EVERY_S + 25 * 60)
    return (FIRST_START - dt.timedelta(days=1)).date(), (last_stop + dt.timedelta(days=2)).date()


# --- one export in a child process ---------------------------------------------------------------


def child_export(args) -> None:
    """Run one export into --out and print its figures as JSON (the parent reads the last line)."""
    django_setup(args.database_url)
    import tracemalloc

    from billing.services.exports.csv import ExportReader, export_write
    from billing.services.exports.filters import ExportFilters
    from billing.services.exports.scope import ExportScope

    filters = ExportFilters(
        period_from=dt.date.fromisoformat(args.period_from), period_to=dt.date.fromisoformat(args.period_to)
    )
    scope = ExportScope(organisation_ids=(args.organisation,))
    reader = ExportReader(kind=args.child, filters=filters, scope=scope)
    baseline = memory_kib()["VmRSS"]
    if args.tracemalloc:
        tracemalloc.start()
    started = time.monotonic()
    with open(args.out, "wb", buffering=1 << 20) as out:
        rows = export_write(reader=reader, out=out)
    seconds = time.monotonic() - started
    traced_peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
    figures = {
        "kind": args.child,
        "rows": rows,
        "seconds": seconds,
        "bytes": os.path.getsize(args.out),
        "rss_before_kib": baseline,
        "hwm_kib": memory_kib()["VmHWM"],
        "tracemalloc_peak_bytes": traced_peak,
    }
    print(json.dumps(figures), flush=True)


def run_child(args, kind: str, organisation_id: int, period: tuple[dt.date, dt.date], out: Path) -> dict:
    command = [
        sys.executable,
        __file__,
        "--database-url",
        args.database_url,
        "--child",
        kind,
        "--organisation",
        str(organisation_id),
        "--period-from",
        period[0].isoformat(),
        "--period-to",
        period[1].isoformat(),
        "--out",
        str(out),
    ]
    if args.tracemalloc:
        command.append("--tracemalloc")
    done = subprocess.run(command, cwd=BASE_DIR, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"export {kind} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_export(figures: dict) -> None:
    growth = figures["hwm_kib"] - figures["rss_before_kib"]
    line = (
        f"{figures['kind']:>13}: {figures['rows']:>10,} rows in {figures['seconds']:7.1f} s = "
        f"{figures['rows'] / figures['seconds']:>9,.0f} rows/s, {figures['bytes'] / 1e6:8.1f} MB; "
        f"RSS {figures['rss_before_kib'] / 1024:.0f} MiB before, peak {figures['hwm_kib'] / 1024:.0f} MiB "
        f"(growth {growth / 1024:.1f} MiB)"
    )
    if figures["tracemalloc_peak_bytes"] is not None:
        line += f"; tracemalloc peak {figures['tracemalloc_peak_bytes'] / 1e6:.1f} MB"
    print(line, flush=True)


# --- HTTP ----------------------------------------------------------------------------------------


def api_token(database_url: str, organisation_id: int) -> str:
    from accounts.models import Organisation, User
    from accounts.services import membership_set

    user, _ = User.objects.get_or_create(username=FINANCE_USER)
    membership_set(user=user, organisation=Organisation.objects.get(pk=organisation_id), role="finance")
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "cpms.settings"}
    done = subprocess.run(
        [sys.executable, "manage.py", "create_api_token", FINANCE_USER],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout.strip()


def download(port: int, token: str, path: str) -> dict:
    """GET `path`, reading the body in 1 MiB blocks; bytes, lines, time to first byte and in all."""
    started = time.monotonic()
    conn = http.client.HTTPConnection(HOST, port, timeout=HTTP_TIMEOUT_S)
    conn.request("GET", path, headers={"Authorization": f"Token {token}"})
    response = conn.getresponse()
    first_byte = None
    size = lines = 0
    while block := response.read(1 << 20):
        if first_byte is None:
            first_byte = time.monotonic() - started
        size += len(block)
        lines += block.count(b"\n")
    conn.close()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status}")
    return {"seconds": time.monotonic() - started, "first_byte_s": first_byte, "bytes": size, "lines": lines}


def http_export(args, organisation_id: int, period: tuple[dt.date, dt.date], workdir: Path) -> None:
    token = api_token(args.database_url, organisation_id)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "DJANGO_SETTINGS_MODULE": "cpms.settings",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "cpms.server", "--bind", HOST, "--port", str(port)],
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_listening(server, port, log_path)
        # A small export first, so that the idle RSS includes everything the export path imports.
        warm = download(port, token, "/api/v1/exports/cdrs.csv?from=2024-01-02&to=2024-01-03")
        before = memory_kib(server.pid)
        query = f"from={period[0].isoformat()}&to={period[1].isoformat()}"
        figures = download(port, token, f"/api/v1/exports/cdrs.csv?{query}")
        after = memory_kib(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)
    rows = figures["lines"] - 1
    print(
        f"    HTTP cdrs: {rows:>10,} rows in {figures['seconds']:7.1f} s = {rows / figures['seconds']:>9,.0f} rows/s, "
        f"{figures['bytes'] / 1e6:8.1f} MB, first byte after {figures['first_byte_s'] * 1000:.0f} ms "
        f"(warm-up export: {warm['lines'] - 1:,} rows); server RSS {before['VmRSS'] / 1024:.0f} MiB before, "
        f"VmHWM {after['VmHWM'] / 1024:.0f} MiB after (VmHWM before: {before['VmHWM'] / 1024:.0f} MiB)",
        flush=True,
    )


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="sessions (each with a CDR) to export")
    parser.add_argument("--kinds", nargs="+", default=["cdrs", "sessions"])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP streaming measurement")
    parser.add_argument("--tracemalloc", action="store_true", help="also report tracemalloc's peak")
    parser.add_argument("--keep-files", action="store_true", help="keep the CSV files written")
    # Internal: one export in a child process.
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--organisation", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--period-from", help=argparse.SUPPRESS)
    parser.add_argument("--period-to", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_export(args)
        return
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("This benchmark needs PostgreSQL (DATABASE_URL=postgres://...).")

    ensure_database(args.database_url)
    migrate(args.database_url)
    django_setup(args.database_url)
    organisation_id, _ = seed(args.rows)
    from django.db import connections

    connections.close_all()
    period = period_for(args.rows)
    print(f"\nexporting the period {period[0]} .. {period[1]} (local dates, `to` exclusive)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        workdir = Path(tmp)
        for kind in args.kinds:
            out = workdir / f"{kind}.csv"
            print_export(run_child(args, kind, organisation_id, period, out))
            if args.keep_files:
                kept = BASE_DIR / "var" / f"bench-{kind}.csv"
                out.replace(kept)
                print(f"           kept as {kept}", flush=True)
            else:
                out.unlink()
        if not args.no_http:
            http_export(args, organisation_id, period, workdir)
        connections.close_all()


if __name__ == "__main__":
    main()
