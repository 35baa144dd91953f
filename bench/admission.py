"""Admission benchmark: K chargers arriving at once (a reconnect storm), at the service layer.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cpms_bench python bench/admission.py [--chargers 200 1000]
                                                                                          [--connectors 1]

Each charger does what a handshake, a BootNotification and its StatusNotifications cost the database: the
station lookup, the connection's bookkeeping, the boot, a status for the station and one per connector;
then, once all are in, its close. Run twice per K, in one process on one event loop with the server's worker
threads (run_db), so the two compare:
- `single`: the single-item services, one worker-thread hop and one transaction each (what the consumer and
  the handlers did before admission went on group commit);
- `batched`: cpms/ocpp/admission.py (station_auth, connection_opened, connection_closed) and the shared
  boot/status writers of cpms/ocpp/common.py.
Prints, per mode, the wall time until all K were admitted, admissions per second, p50/p99 of one charger's
admission, the database transactions (commits, rollbacks, statements in autocommit) and SQL statements
(as Django sent them) per admission, and the same for the closes. No WebSocket, no OCPP parsing: bench/scale_chargers.py measures the
whole server.

Not a test: it asserts nothing, it measures. Only the database at DATABASE_URL is used; stations BENCH-*
are created (bench/harness.py) and their connection state, events and status rows reset before each run.
"""

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass

from harness import DEFAULT_DATABASE_URL, django_setup, ensure_database, identity, setup_database

PROTOCOL = "ocpp1.6"


@dataclass
class Figures:
    mode: str
    chargers: int
    admit_s: float
    latencies_s: list[float]
    admit_xacts: int
    admit_statements: int
    close_s: float
    close_xacts: int
    close_statements: int


class DatabaseCounter:
    """Counts, on every connection (the worker threads open their own), the SQL statements Django sends and
    the transactions: commits and rollbacks of atomic blocks, plus each statement run in autocommit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.statements = 0
        self.transactions = 0

    def figures(self) -> tuple[int, int]:
        with self._lock:
            return self.transactions, self.statements

    def since(self, transactions: int, statements: int) -> tuple[int, int]:
        now_transactions, now_statements = self.figures()
        return now_transactions - transactions, now_statements - statements

    def __call__(self, execute, sql, params, many, context):
        with self._lock:
            self.statements += 1
            if not context["connection"].in_atomic_block:
                self.transactions += 1
        return execute(sql, params, many, context)

    def _ended(self) -> None:
        with self._lock:
            self.transactions += 1

    def install(self) -> None:
        from django.db import connections
        from django.db.backends.base.base import BaseDatabaseWrapper
        from django.db.backends.signals import connection_created

        def on_created(sender, connection, **kwargs):
            if self not in connection.execute_wrappers:
                connection.execute_wrappers.append(self)

        connection_created.connect(on_created, weak=False)
        for conn in connections.all():
            on_created(None, conn)
        for name in ("commit", "rollback"):
            original = getattr(BaseDatabaseWrapper, name)

            def counted(wrapper, _original=original):
                self._ended()
                return _original(wrapper)

            setattr(BaseDatabaseWrapper, name, counted)


def reset(names: list[str]) -> None:
    from django.db import connections

    from stations.models import ChargingStation, StationEvent, StatusChange

    stations = ChargingStation.objects.filter(identity__in=names)
    stations.update(is_connected=False, connection_id="", connected_at=None)
    StationEvent.objects.filter(station__in=stations).delete()
    StatusChange.objects.filter(station__in=stations).delete()
    connections.close_all()


def reports(connectors: int):
    from django.utils import timezone

    from stations.types import ConnectorStatusReport

    now = timezone.now()
    places = [(None, None)] + [(1, n) for n in range(1, connectors + 1)]
    return [
        ConnectorStatusReport(
            evse_id=evse,
            connector_id=connector,
            status="Available",
            error_code="NoError",
            info="",
            vendor_id="",
            vendor_error_code="",
            occurred_at=now,
            received_at=now,
        )
        for evse, connector in places
    ]


async def admit_single(name: str, connectors: int) -> tuple[int, str, float]:
    from django.utils import timezone

    from cpms.ocpp.chargepoint import run_db
    from stations.services.ocpp import (
        connector_status_update,
        station_auth_get,
        station_boot,
        station_connected,
    )
    from stations.types import StationInfo

    start = time.perf_counter()
    auth = await run_db(station_auth_get, identity=name)
    connection_id = uuid.uuid4().hex
    await run_db(
        station_connected,
        station_id=auth.station_id,
        connection_id=connection_id,
        protocol=PROTOCOL,
        at=timezone.now(),
    )
    info = StationInfo(vendor="Bench", model="B1")
    await run_db(station_boot, station_id=auth.station_id, info=info, received_at=timezone.now())
    for report in reports(connectors):
        await run_db(connector_status_update, station_id=auth.station_id, report=report)
    return auth.station_id, connection_id, time.perf_counter() - start


async def close_single(station_id: int, connection_id: str) -> None:
    from django.utils import timezone

    from cpms.ocpp.chargepoint import run_db
    from stations.services.ocpp import station_disconnected

    await run_db(
        station_disconnected,
        station_id=station_id,
        connection_id=connection_id,
        at=timezone.now(),
        reason="bench",
    )


async def admit_batched(name: str, connectors: int) -> tuple[int, str, float]:
    from django.utils import timezone

    from cpms.ocpp import admission, common
    from stations.types import StationInfo

    start = time.perf_counter()
    auth = await admission.station_auth(name)
    connection_id = uuid.uuid4().hex
    await admission.connection_opened(
        station_id=auth.station_id, connection_id=connection_id, protocol=PROTOCOL, at=timezone.now()
    )
    info = StationInfo(vendor="Bench", model="B1")
    await common.boot_writer.submit(
        {"station_id": auth.station_id, "info": info, "received_at": timezone.now()}
    )
    for report in reports(connectors):
        await common.status_writer.submit({"station_id": auth.station_id, "report": report})
    return auth.station_id, connection_id, time.perf_counter() - start


async def close_batched(station_id: int, connection_id: str) -> None:
    from django.utils import timezone

    from cpms.ocpp import admission

    await admission.connection_closed(
        station_id=station_id, connection_id=connection_id, at=timezone.now(), reason="bench"
    )


MODES = {"single": (admit_single, close_single), "batched": (admit_batched, close_batched)}


def run_mode(mode: str, names: list[str], connectors: int, counter: DatabaseCounter) -> Figures:
    from stations.models import ChargingStation

    admit, close = MODES[mode]
    reset(names)

    async def storm():
        admitted_at = time.perf_counter()
        admitted = await asyncio.gather(*(admit(name, connectors) for name in names))
        admit_s = time.perf_counter() - admitted_at
        return admitted, admit_s

    async def closes(admitted):
        closed_at = time.perf_counter()
        await asyncio.gather(*(close(station_id, connection_id) for station_id, connection_id, _ in admitted))
        return time.perf_counter() - closed_at

    xacts, statements = counter.figures()
    admitted, admit_s = asyncio.run(storm())
    admit_xacts, admit_statements = counter.since(xacts, statements)
    connected = ChargingStation.objects.filter(identity__in=names, is_connected=True).count()
    if connected != len(names):
        print(f"  ! {mode}: {connected} of {len(names)} stations connected after the storm")

    xacts, statements = counter.figures()
    close_s = asyncio.run(closes(admitted))
    close_xacts, close_statements = counter.since(xacts, statements)
    still = ChargingStation.objects.filter(identity__in=names, is_connected=True).count()
    if still:
        print(f"  ! {mode}: {still} stations still connected after the closes")
    return Figures(
        mode=mode,
        chargers=len(names),
        admit_s=admit_s,
        latencies_s=[latency for _, _, latency in admitted],
        admit_xacts=admit_xacts,
        admit_statements=admit_statements,
        close_s=close_s,
        close_xacts=close_xacts,
        close_statements=close_statements,
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def print_figures(figures: Figures) -> None:
    k = figures.chargers
    print(
        f"  {figures.mode:<8} admit {figures.admit_s * 1000:8.0f} ms  {k / figures.admit_s:7.0f}/s  "
        f"p50 {statistics.median(figures.latencies_s) * 1000:6.0f} ms  "
        f"p99 {percentile(figures.latencies_s, 0.99) * 1000:6.0f} ms  "
        f"xacts/admission {figures.admit_xacts / k:5.2f}  statements/admission {figures.admit_statements / k:5.2f}"
    )
    print(
        f"  {'':<8} close {figures.close_s * 1000:8.0f} ms  {k / figures.close_s:7.0f}/s  "
        f"xacts/close {figures.close_xacts / k:5.2f}  statements/close {figures.close_statements / k:5.2f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, nargs="+", default=[200, 1000])
    parser.add_argument(
        "--connectors", type=int, default=1, help="connectors per charger (statuses: 1 + this)"
    )
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args(argv)
    database_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    ensure_database(database_url)
    django_setup(database_url)
    setup_database(database_url, max(args.chargers))
    counter = DatabaseCounter()
    counter.install()
    print(
        f"admission at the service layer, {args.connectors} connector(s) per charger, {os.cpu_count()} cores"
    )
    for count in args.chargers:
        names = [identity(n) for n in range(1, count + 1)]
        print(f"K = {count} chargers at once")
        for mode in args.modes:
            print_figures(run_mode(mode, names, args.connectors, counter))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
