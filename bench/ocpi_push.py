"""Roaming push benchmark: what the OCPI push sweep, the outbox delivery and "sync now" cost, on PostgreSQL.

    python bench/ocpi_push.py [--evses 5000] [--sites 500] [--partners 3] [--changed 0.10] [--items 2000]
                              [--history 20]

On PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/cpms_bench; created if missing,
then migrated). Seeds, with the ORM in bulk and once per (--evses, --sites, --history) (a later run reuses them), an
organisation with its OCPI party and --sites sites with coordinates, each with its share of the EVSEs on
stations of 2 EVSEs, one connector each, all connected and Accepted, with a day of status history (--history
StatusChange rows per EVSE, a reconnect per station); their definitions and history are dated before the
sweeps' windows, so that only what the bench changes falls in them. Each run then replaces the bench's partners
with --partners registered eMSPs that see every site (the partners of other bench organisations are set
UNREGISTERED, so the sweeps, which cover every registered partner, look only at this run's).

Measures, each with the wall time and the queries (counted by a `connection.execute_wrapper`):

1. The push sweep (what `cpms.ocpi.tasks.push_sweep` calls: tariffs, locations, sessions, cdrs): --changed
   of the EVSEs get a StatusNotification (a StatusChange row and the connector's status, as the OCPP path
   writes them) inside the window, then one sweep: time and queries per part, outbox rows queued; then a
   second sweep at once, with nothing changed; and the Celery kicks the queued items caused (counted by
   wrapping `outbox._kick`) with the time they took. No roaming sessions or tariffs are seeded: their parts only
   show their fixed cost.
2. Outbox delivery to a receiver in a child process (ThreadingHTTPServer answering every request with the
   OCPI envelope, status_code 1000): --items items queued for one partner, then `outbox_deliver` rounds
   until none remain: items/s, rounds, queries per item. Then the same partner pointed at a port where
   nothing listens (connection refused): one round's time and the requests it made (counted by wrapping
   `cpms.ocpi.client.call`), and a second round at once (the back-off holds it: no request).
3. `locations_push_all` ("sync now") for one partner: time, queries and rows queued.

Every queued item is kicked to Celery after its transaction commits (`outbox_enqueue`), through the broker
of REDIS_URL (or the file broker without it): give the bench a Redis db of its own; no worker is started,
the kicks stay in that queue. Not a test: it asserts nothing, it measures. Only 127.0.0.1 is used; every
wait is bounded.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from harness import BASE_DIR, HOST, ensure_database, free_port

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cpms_bench"
ORG_PREFIX = "bench-ocpi-"
EVSES_PER_STATION = 2
RECEIVER_START_TIMEOUT_S = 30.0


# --- the receiver (child process) ----------------------------------------------------------------------


def receiver_main(port: int) -> None:
    """A partner's receiver: every request answered 200 with the OCPI envelope (status_code 1000)."""
    import socket
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body leave in two writes: without this a keep-alive client waits out the
            # delayed ACK (40 ms) on every request.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                json.loads(self.rfile.read(length))
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            payload = json.dumps({"status_code": 1000, "timestamp": stamp}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer((HOST, port), Handler)
    print("listening", flush=True)
    server.serve_forever()


def receiver_start(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, __file__, "--receiver", str(port)],
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + RECEIVER_START_TIMEOUT_S
    import socket

    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"receiver exited with {process.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("receiver did not listen")


def receiver_stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


# --- database ------------------------------------------------------------------------------------------


def django_setup(database_url: str) -> None:
    import django

    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "cpms.settings"
    # The partner-down measurement makes the outbox log a warning per failed attempt.
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    if str(BASE_DIR) not in sys.path:
        sys.path.insert(0, str(BASE_DIR))
    django.setup()


def migrate(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "cpms.settings"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env, check=True
    )


def _party_id(number: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = ""
    for _ in range(3):
        number, rest = divmod(number, 36)
        out = digits[rest] + out
    return out


def seed(evses: int, sites: int, history: int):
    """The organisation, its party, sites, stations, EVSEs and connectors, and their status history (once per
    size). Returns the party."""
    from django.db import connection, transaction
    from django.utils import timezone

    from accounts.models import Organisation
    from cpms.ocpi.models import OcpiParty
    from stations.enums import ConnectorStatus, ConnectorType, RegistrationStatus, StationEventKind
    from stations.models import ChargingStation, Connector, Evse, Site, StationEvent, StatusChange

    slug = f"{ORG_PREFIX}{evses}x{sites}h{history}"
    organisation = Organisation.objects.filter(slug=slug).first()
    if organisation is not None:
        count = Evse.objects.filter(station__organisation=organisation).count()
        print(f"reusing {count:,} EVSEs of {slug}", flush=True)
        return OcpiParty.objects.get(organisation=organisation)
    started = time.monotonic()
    stations_count = -(-evses // EVSES_PER_STATION)
    with transaction.atomic():
        organisation = Organisation.objects.create(
            slug=slug, name=f"Bench OCPI {evses}x{sites}", currency="EUR"
        )
        party = OcpiParty.objects.create(
            organisation=organisation,
            country_code="NL",
            party_id=_party_id(organisation.pk),
            name="Bench CPO",
        )
        site_rows = Site.objects.bulk_create(
            [
                Site(
                    organisation=organisation,
                    name=f"Bench OCPI site {n:05d}",
                    time_zone="Europe/Amsterdam",
                    address=f"Benchstraat {n}",
                    city="Utrecht",
                    postal_code="3500 AA",
                    country="NL",
                    latitude=52 + n / 100_000,
                    longitude=5 + n / 100_000,
                )
                for n in range(sites)
            ],
            batch_size=2000,
        )
        now = timezone.now()
        station_rows = ChargingStation.objects.bulk_create(
            [
                ChargingStation(
                    identity=f"BOCPI-{evses}x{sites}h{history}-{n:06d}",
                    organisation=organisation,
                    site=site_rows[n % sites],
                    registration_status=RegistrationStatus.ACCEPTED,
                    is_connected=True,
                    connected_at=now,
                    status=ConnectorStatus.AVAILABLE,
                )
                for n in range(stations_count)
            ],
            batch_size=2000,
        )
        evse_rows = Evse.objects.bulk_create(
            [
                Evse(station=station, evse_id=number, max_power_w=22_000)
                for station in station_rows
                for number in range(1, EVSES_PER_STATION + 1)
            ][:evses],
            batch_size=2000,
        )
        Connector.objects.bulk_create(
            [
                Connector(
                    evse=evse,
                    connector_id=1,
                    connector_type=ConnectorType.TYPE2,
                    status=ConnectorStatus.AVAILABLE,
                    status_changed_at=now,
                )
                for evse in evse_rows
            ],
            batch_size=2000,
        )
        # Defined a day ago: the sweeps' windows start after it, so only what a measurement changes is new.
        before = now - timedelta(days=1)
        Site.objects.filter(organisation=organisation).update(created_at=before, updated_at=before)
        ChargingStation.objects.filter(organisation=organisation).update(
            created_at=before, updated_at=before, connected_at=before
        )
        Evse.objects.filter(station__organisation=organisation).update(updated_at=before)
        Connector.objects.filter(evse__station__organisation=organisation).update(
            updated_at=before, status_changed_at=before
        )
        # The history a day of traffic leaves (the sweep's probes read it through the (station, received_at)
        # indexes): `history` StatusNotifications per EVSE and a reconnect per station, all before the window.
        statuses = (ConnectorStatus.CHARGING, ConnectorStatus.FINISHING, ConnectorStatus.AVAILABLE)
        StatusChange.objects.bulk_create(
            (
                StatusChange(
                    station_id=evse.station_id,
                    evse_id=evse.evse_id,
                    connector_id=1,
                    status=statuses[k % len(statuses)],
                    occurred_at=at,
                    received_at=at,
                )
                for evse in evse_rows
                for k in range(history)
                for at in (before + timedelta(seconds=(k + 1) * 80_000 // max(history, 1)),)
            ),
            batch_size=5000,
        )
        StationEvent.objects.bulk_create(
            (
                StationEvent(station=station, kind=kind, detail={}, occurred_at=at, received_at=at)
                for station in station_rows
                for kind, at in (
                    (StationEventKind.DISCONNECTED, before + timedelta(hours=3)),
                    (StationEventKind.CONNECTED, before + timedelta(hours=3, minutes=2)),
                )
            ),
            batch_size=5000,
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # planner statistics for the new rows, as a production database has
    print(
        f"seeded {sites:,} sites, {len(station_rows):,} stations, {len(evse_rows):,} EVSEs and connectors, "
        f"{len(evse_rows) * history:,} status rows in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    return party


def partners_replace(party, count: int, base_url: str, registered_at) -> list:
    """This run's partners: registered eMSPs seeing every site, endpoints under `base_url`. Every other
    bench partner is deleted (this party's, with their outbox) or set UNREGISTERED (other bench sizes')."""
    from django.db import transaction

    from cpms.ocpi import client, protocol
    from cpms.ocpi.enums import PartnerStatus, Role
    from cpms.ocpi.models import OcpiPartner

    with transaction.atomic():
        OcpiPartner.objects.filter(party=party).delete()
        OcpiPartner.objects.filter(party__organisation__slug__startswith=ORG_PREFIX).update(
            status=PartnerStatus.UNREGISTERED
        )
        partners = []
        for n in range(count):
            name = f"Bench eMSP {n}"
            partners.append(
                OcpiPartner.objects.create(
                    party=party,
                    name=name,
                    status=PartnerStatus.REGISTERED,
                    incoming_token_hash=protocol.token_hash(protocol.token_new()),
                    outgoing_token_encrypted=client.outgoing_token_seal(f"out-{party.pk}-{n}"),
                    versions_url=f"{base_url}/versions",
                    version="2.2.1",
                    endpoints=endpoints(base_url),
                    roles=[
                        {
                            "role": Role.EMSP,
                            "country_code": "DE",
                            "party_id": f"E{n:02d}"[:3],
                            "business_details": {"name": name},
                        }
                    ],
                    publish_all_sites=True,
                    registered_at=registered_at,
                )
            )
    return partners


def endpoints(base_url: str) -> list[dict[str, str]]:
    modules = ("credentials", "locations", "tariffs", "sessions", "cdrs", "tokens", "commands")
    return [
        {
            "identifier": module,
            "role": "SENDER" if module in ("tokens", "commands") else "RECEIVER",
            "url": f"{base_url}/{module}",
        }
        for module in modules
    ]


def status_changes_write(party, fraction: float, received_at, seed_value: int) -> int:
    """`fraction` of the party's EVSEs report a new status at `received_at`: a StatusChange row each and the
    connector's status, as the OCPP path stores a StatusNotification. Returns how many EVSEs."""
    from django.db import transaction

    from stations.enums import ConnectorStatus
    from stations.models import Connector, Evse, StatusChange

    rows = list(
        Evse.objects.filter(station__organisation_id=party.organisation_id).values_list(
            "pk", "station_id", "evse_id"
        )
    )
    chosen = random.Random(seed_value).sample(rows, round(len(rows) * fraction))
    status = random.Random(seed_value).choice([ConnectorStatus.CHARGING, ConnectorStatus.RESERVED])
    with transaction.atomic():
        StatusChange.objects.bulk_create(
            [
                StatusChange(
                    station_id=station_id,
                    evse_id=evse_number,
                    connector_id=1,
                    status=status,
                    occurred_at=received_at,
                    received_at=received_at,
                )
                for _, station_id, evse_number in chosen
            ],
            batch_size=2000,
        )
        Connector.objects.filter(evse_id__in=[pk for pk, _, _ in chosen]).update(
            status=status, status_changed_at=received_at
        )
    return len(chosen)


# --- measurements --------------------------------------------------------------------------------------


def measured(function: Callable[[], Any]) -> tuple[Any, float, int]:
    """function() -> (its result, seconds, queries). Queries are counted by an execute wrapper, not read
    from a query log (CaptureQueriesContext's log keeps only the last 9,000)."""
    from django.db import connection

    queries = 0

    def count(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        started = time.perf_counter()
        result = function()
        seconds = time.perf_counter() - started
    return result, seconds, queries


def outbox_count(partners) -> int:
    from cpms.ocpi.models import OcpiOutboxItem

    return OcpiOutboxItem.objects.filter(partner__in=partners).count()


def _deferred(function: Callable[[], Any]) -> Any:
    from cpms.ocpi.services.outbox import kicks_deferred

    with kicks_deferred():
        return function()


def sweep(label: str, partners) -> list[tuple[str, str]]:
    """One push sweep, part by part in push_sweep's order. Returns table rows."""
    from cpms.ocpi.services import cdrs, locations, sessions, tariffs

    rows = []
    before = outbox_count(partners)
    total_s = 0.0
    total_q = total_kicks = 0
    for part in (
        tariffs.tariffs_push_changes,
        locations.locations_push_changes,
        sessions.sessions_push_changes,
        cdrs.cdrs_push_pending,
    ):
        with kicks_counted() as kicks:
            # As cpms.ocpi.tasks.push_sweep runs each part: one delivery started per partner, not per item.
            queued, seconds, queries = measured(lambda part=part: _deferred(part))
        total_s += seconds
        total_q += queries
        total_kicks += kicks.count
        rows.append(
            (
                f"{label}: {part.__module__.rsplit('.', 1)[-1]}.{part.__name__}",
                f"{seconds * 1000:,.0f} ms, {queries:,} queries, {queued:,} queued, "
                f"{kicks.count:,} Celery kicks ({kicks.seconds * 1000:,.0f} ms of it)",
            )
        )
    queued = outbox_count(partners) - before
    rows.append(
        (
            f"{label}: whole sweep",
            f"{total_s * 1000:,.0f} ms, {total_q:,} queries, {queued:,} outbox rows, {total_kicks:,} Celery kicks",
        )
    )
    return rows


def items_queue(partner, count: int) -> None:
    """`count` EVSE status PATCHes for `partner`, as the locations sweep queues them, in bulk (the delivery
    is measured, not the enqueue)."""
    from django.utils import timezone

    from cpms.ocpi.enums import Module
    from cpms.ocpi.models import OcpiOutboxItem

    now = timezone.now()
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    OcpiOutboxItem.objects.bulk_create(
        [
            OcpiOutboxItem(
                partner=partner,
                module=Module.LOCATIONS,
                object_key=f"location:{n // 10}",
                method="PATCH",
                path=f"/NL/BEN/{n // 10}/{n}",
                body={"status": "CHARGING", "last_updated": stamp},
                to_country_code="DE",
                to_party_id="E00",
                next_attempt_at=now,
            )
            for n in range(count)
        ],
        batch_size=2000,
    )


class Counter:
    """Counts the calls of a module's function that its callers look up by name at call time: the requests
    the outbox makes (`cpms.ocpi.client.call`), the Celery kicks queued items cause (`outbox._kick`)."""

    def __init__(self, module: Any, name: str) -> None:
        self.module = module
        self.name = name
        self.original = getattr(module, name)
        self.count = 0
        self.seconds = 0.0

    def __enter__(self) -> "Counter":
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            started = time.perf_counter()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        setattr(self.module, self.name, counted)
        return self

    def __exit__(self, *exc: object) -> None:
        setattr(self.module, self.name, self.original)


def calls_counted() -> Counter:
    from cpms.ocpi import client

    return Counter(client, "call")


def kicks_counted() -> Counter:
    from cpms.ocpi.services import outbox

    return Counter(outbox, "_kick")


def delivery(partner, items: int, up_url: str) -> list[tuple[str, str]]:
    from cpms.ocpi.enums import OutboxStatus
    from cpms.ocpi.models import OcpiOutboxItem, OcpiPartner
    from cpms.ocpi.services.outbox import outbox_deliver

    rows = []
    OcpiOutboxItem.objects.filter(partner=partner).delete()
    OcpiPartner.objects.filter(pk=partner.pk).update(endpoints=endpoints(up_url))
    items_queue(partner, items)
    rounds = queries = 0
    with calls_counted() as calls:
        started = time.perf_counter()
        while True:
            result, _, round_queries = measured(lambda: outbox_deliver(partner_id=partner.pk))
            rounds += 1
            queries += round_queries
            if not result.remaining or not result.delivered or rounds > items:
                break
        seconds = time.perf_counter() - started
    delivered = OcpiOutboxItem.objects.filter(partner=partner, status=OutboxStatus.DELIVERED).count()
    rows.append(
        (
            f"delivery, partner up: {items:,} items",
            f"{delivered:,} delivered in {seconds:.2f} s = {delivered / seconds:,.0f} items/s, {rounds} rounds, "
            f"{calls.count:,} requests, {queries / max(delivered, 1):.1f} queries/item",
        )
    )

    # Down: nothing listens on the endpoints' port (connection refused).
    OcpiOutboxItem.objects.filter(partner=partner).delete()
    down_url = f"http://{HOST}:{free_port()}/ocpi/emsp/2.2.1"
    OcpiPartner.objects.filter(pk=partner.pk).update(endpoints=endpoints(down_url))
    items_queue(partner, items)
    for label in ("delivery, partner down: 1st round", "delivery, partner down: round at once after"):
        with calls_counted() as calls:
            result, seconds, round_queries = measured(lambda: outbox_deliver(partner_id=partner.pk))
        rows.append(
            (
                f"{label} ({items:,} due)",
                f"{seconds * 1000:,.1f} ms, {calls.count} request(s), {round_queries} queries, "
                f"{result.failed} failed, {result.remaining:,} remaining",
            )
        )
    OcpiOutboxItem.objects.filter(partner=partner).delete()
    return rows


def push_all(partner) -> list[tuple[str, str]]:
    from cpms.ocpi.models import OcpiOutboxItem
    from cpms.ocpi.services.locations import locations_push_all

    OcpiOutboxItem.objects.filter(partner=partner).delete()
    with kicks_counted() as kicks:
        queued, seconds, queries = measured(lambda: _deferred(lambda: locations_push_all(partner)))
    rows = OcpiOutboxItem.objects.filter(partner=partner).count()
    return [
        (
            "locations_push_all (sync now), 1 partner",
            f"{seconds * 1000:,.0f} ms, {queries:,} queries, {queued:,} Locations queued, {rows:,} outbox rows, "
            f"{kicks.count:,} Celery kicks ({kicks.seconds * 1000:,.0f} ms of it)",
        )
    ]


# --- main ----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evses", type=int, default=5000)
    parser.add_argument("--sites", type=int, default=500)
    parser.add_argument("--partners", type=int, default=3)
    parser.add_argument("--changed", type=float, default=0.10, help="fraction of EVSEs whose status changes")
    parser.add_argument("--history", type=int, default=20, help="status rows per EVSE seeded (a day's)")
    parser.add_argument("--items", type=int, default=2000, help="items queued for the delivery measurement")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)  # internal: the receiver process
    args = parser.parse_args()
    if args.receiver:
        receiver_main(args.receiver)
        return
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("This benchmark needs PostgreSQL (DATABASE_URL=postgres://...).")

    ensure_database(args.database_url)
    migrate(args.database_url)
    django_setup(args.database_url)
    from django.utils import timezone

    party = seed(args.evses, args.sites, args.history)
    port = free_port()
    up_url = f"http://{HOST}:{port}/ocpi/emsp/2.2.1"
    now = timezone.now()
    partners = partners_replace(party, args.partners, up_url, registered_at=now - timedelta(seconds=60))
    # Inside the first sweep's window (registration .. now - the sweep's 2 s lag).
    changed = status_changes_write(party, args.changed, now - timedelta(seconds=30), seed_value=args.evses)
    print(
        f"\n{args.evses:,} EVSEs on {args.sites:,} sites, {args.partners} partners, {changed:,} EVSEs with a new "
        f"status ({args.changed:.0%})\n",
        flush=True,
    )
    rows = sweep("sweep, status changed", partners)
    rows += sweep("sweep, nothing changed", partners)
    rows += push_all(partners[0])
    receiver = receiver_start(port)
    try:
        rows += delivery(partners[0], args.items, up_url)
    finally:
        receiver_stop(receiver)
    width = max(len(label) for label, _ in rows)
    for label, figures in rows:
        print(f"{label:<{width}}  {figures}", flush=True)
    from django.db import connections

    connections.close_all()


if __name__ == "__main__":
    main()
