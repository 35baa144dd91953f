"""What the end-to-end roaming tests share: a CPO organisation with published sites and a FLAT + ENERGY tariff,
simulated chargers kept connected in a thread of their own (sessions started and stopped on demand), the work
Celery beat does in production (the OCPI push sweep and the outbox delivery rounds) run in a thread of the
test process, and readers of what the test eMSP received.

Beat does not run in the e2e tests, and a task queued by the test process goes to a queue no worker reads
(CELERY_QUEUE is set only for the server and worker processes): the `Sweeper` calls the same functions beat's
tasks call, in this process; the deliveries are real HTTP from our code to the eMSP's server either way."""

import asyncio
import concurrent.futures
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db import connections

from billing.services.tariffs import TariffVersionInput, tariff_assign, tariff_create, tariff_version_create
from cpms.ocpi.models import OcpiParty
from cpms.ocpi.services import outbox
from cpms.ocpi.tasks import push_sweep
from cpms.simulator.charger import SimulatedCharger
from cpms.simulator.config import ChargerConfig
from cpms.simulator.summary import SessionRecord
from stations.models import ChargingStation, Evse, Site
from tests.e2e.helpers import parse_ts
from tests.factories import (
    DEFAULT_STATION_PASSWORD,
    ChargingStationFactory,
    ConnectorFactory,
    EvseFactory,
    OrganisationFactory,
    SiteFactory,
)
from tests.ocpi_parties import Emsp

# The tariff every site of a test CPO has: a flat 0.50 per session plus 0.30 per kWh, excl. VAT, 19 % VAT.
FLAT = Decimal("0.50")
PER_KWH = Decimal("0.30")
TAX_RATE = Decimal("0.19")


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def cost_by_hand(energy_wh: int) -> tuple[Decimal, Decimal]:
    """(excl. VAT, incl. VAT) of a session of `energy_wh` at FLAT + PER_KWH: each component rounded to the
    cent, then the VAT on the subtotal rounded to the cent (billing's rule, test_billing_e2e.py)."""
    subtotal = FLAT + cents(Decimal(energy_wh) / 1000 * PER_KWH)
    return subtotal, subtotal + cents(subtotal * TAX_RATE)


@dataclass
class CpoSite:
    site: Site
    station: ChargingStation
    evses: list[Evse]

    @property
    def location_id(self) -> str:
        # cpms/ocpi/ids.py: Location.id = str(site.pk), EVSE.uid = str(evse.pk).
        return str(self.site.pk)

    def evse_uid(self, number: int) -> str:
        return str(self.evses[number - 1].pk)


@dataclass
class Cpo:
    party: OcpiParty
    sites: list[CpoSite]


def roaming_cpo(*, slug: str, country_code: str, party_id: str, stations: list[str], evses: int = 2) -> Cpo:
    """An organisation with its CPO party and one published site per station identity (address and
    coordinates: what a Location needs), each station with `evses` EVSEs of one connector (a 1.6 charger's
    connector N is our EVSE N, connector 1), and the FLAT + ENERGY tariff assigned to each site under its
    own name (so that the tariffs list has one per site)."""
    organisation = OrganisationFactory(name=f"Roaming {slug}", slug=f"roaming-{slug}")
    party = OcpiParty.objects.create(
        organisation=organisation, country_code=country_code, party_id=party_id, name=f"CPO {party_id}"
    )
    sites = []
    for index, identity in enumerate(stations, start=1):
        site = SiteFactory(
            organisation=organisation,
            name=f"{slug} site {index}",
            time_zone="Europe/Amsterdam",
            address=f"Stationsplein {index}",
            city="Utrecht",
            postal_code="3511 AA",
            country="NL",
            latitude=Decimal("52.090000") + index,
            longitude=Decimal("5.120000"),
        )
        station = ChargingStationFactory(site=site, identity=identity)
        site_evses = []
        for number in range(1, evses + 1):
            evse = EvseFactory(station=station, evse_id=number)
            ConnectorFactory(evse=evse, connector_id=1)
            site_evses.append(evse)
        tariff = tariff_create(organisation=organisation, name=f"Ad hoc {slug} {index}")
        tariff_version_create(
            tariff=tariff,
            data=TariffVersionInput(
                valid_from=parse_ts("2020-01-01T00:00:00Z"),
                currency="EUR",
                tax_rate=TAX_RATE,
                elements=[
                    {"price_components": [{"type": "FLAT", "price": str(FLAT)}]},
                    {"price_components": [{"type": "ENERGY", "price": str(PER_KWH)}]},
                ],
            ),
        )
        tariff_assign(tariff=tariff, site=site)
        sites.append(CpoSite(site=site, station=station, evses=site_evses))
    return Cpo(party=party, sites=sites)


class LiveCharger:
    """A simulated charger connected to the server in a thread of its own until closed. It charges only when
    asked (`start`: Authorize then StartTransaction / TransactionEvent Started, like a driver's card) or
    when the CSMS starts a session remotely, sending a meter reading every METER_INTERVAL_S that stands for
    3 minutes of charging, until stopped (`stop`, or a remote stop)."""

    METER_INTERVAL_S = 0.3

    def __init__(self, server, identity: str, protocol: str, *, connectors: int = 2, duration_s: float = 170):
        self.identity = identity
        self.charger = SimulatedCharger(
            ChargerConfig(
                url=server.ws_url,
                identity=identity,
                protocol=protocol,
                password=DEFAULT_STATION_PASSWORD,
                connectors=connectors,
                sessions=False,
                meter_samples=10_000,
                meter_interval_s=self.METER_INTERVAL_S,
                speedup=600,
                # Stays connected this long at most (the simulator's deadline), answering the CSMS.
                duration_s=duration_s,
                seed=17,
                response_timeout_s=15,
            )
        )
        self.loop = asyncio.new_event_loop()
        self._task: asyncio.Task | None = None
        self._thread = threading.Thread(target=self._run, name=f"charger-{identity}", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._task = self.loop.create_task(self.charger.run())
        try:
            self.loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            leftover = asyncio.all_tasks(self.loop)
            for task in leftover:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        finally:
            self.loop.close()

    def __enter__(self) -> "LiveCharger":
        self._thread.start()
        wait_until(lambda: self._connected(), 20, f"{self.identity} connected and booted")
        return self

    def _connected(self) -> bool:
        station = ChargingStation.objects.get(identity=self.identity)
        return station.is_connected and self.charger.result.boot_status == "Accepted"

    def __exit__(self, *exc_info) -> None:
        if self._task is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=15)

    def start(self, connector_id: int, id_tag: str) -> concurrent.futures.Future:
        """A driver presents `id_tag` at `connector_id`: the future gives the SessionRecord once it ended."""
        connector = self.charger.connectors[connector_id]
        return asyncio.run_coroutine_threadsafe(
            self.charger.run_session(connector, id_tag=id_tag, remote=False), self.loop
        )

    def stop(self, connector_id: int) -> None:
        """The driver ends the session running on `connector_id` (stop reason Local)."""

        def request() -> None:
            session = self.charger.connectors[connector_id].session
            assert session is not None, f"no session on connector {connector_id} of {self.identity}"
            session.request_stop("Local")

        asyncio.run_coroutine_threadsafe(_call(request), self.loop).result(timeout=5)

    def records(self, connector_id: int) -> list[SessionRecord]:
        return [r for r in self.charger.result.sessions if r.connector_id == connector_id]

    def transaction_started(self, connector_id: int) -> SessionRecord:
        """The record of the session running on `connector_id`, once its transaction started."""
        return wait_until(
            lambda: next(
                (r for r in self.records(connector_id) if r.transaction_id and r.status == "running"), None
            ),
            20,
            f"a transaction on {self.identity} connector {connector_id}",
        )

    def samples_sent(self, connector_id: int) -> int:
        session = self.charger.connectors[connector_id].session
        return len(session.record.meter_values) if session is not None else 0


async def _call(function: Callable[[], Any]) -> Any:
    return function()


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str, *, every_s: float = 0.1) -> Any:
    """`predicate()`'s first truthy value, polled; fails with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


class _ErrorLog(logging.Handler):
    def __init__(self, errors: list[str]):
        super().__init__(level=logging.ERROR)
        self.errors = errors

    def emit(self, record: logging.LogRecord) -> None:
        self.errors.append(self.format(record))


class Sweeper:
    """Beat's OCPI jobs in a thread of the test process, every `interval_s`: the push sweep
    (`cpms.ocpi.tasks.push_sweep`, which queues what changed), then a delivery round
    (`cpms.ocpi.services.outbox.outbox_deliver`) for every partner with due items. `pause()` holds it (after
    the round in progress), `round()` runs one now. Errors the sweep logs (it catches each module's failure
    so that the others still run) are collected in `errors`."""

    def __init__(self, interval_s: float = 0.25):
        self.interval_s = interval_s
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._lock = threading.Lock()
        self._handler = _ErrorLog(self.errors)
        self._thread = threading.Thread(target=self._run, name="ocpi-sweeper", daemon=True)

    def round(self) -> None:
        with self._lock:
            push_sweep()
            for partner_id in outbox.partners_with_due_items():
                outbox.outbox_deliver(partner_id=partner_id)

    def pause(self) -> None:
        self._running.clear()
        with self._lock:  # the round in progress ends first
            pass

    def resume(self) -> None:
        self._running.set()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                if not self._running.is_set():
                    continue
                try:
                    self.round()
                except Exception:
                    self.errors.append(traceback.format_exc())
        finally:
            connections.close_all()

    def __enter__(self) -> "Sweeper":
        logging.getLogger("cpms.ocpi").addHandler(self._handler)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        logging.getLogger("cpms.ocpi").removeHandler(self._handler)


# --- what the test eMSP received ------------------------------------------------------------------------


def received(platform, method: str | None, path: str) -> list:
    """The requests `platform` received on exactly `path` (or, for a path ending in "/", under it), in the
    order they arrived, with their answers."""
    return [
        r
        for r in platform.received(method)
        if (r.path.rstrip("/") == path.rstrip("/")) or (path.endswith("/") and r.path.startswith(path))
    ]


def session_path(party: OcpiParty, session_pk: int) -> str:
    return f"/ocpi/2.2.1/sessions/{party.country_code}/{party.party_id}/{session_pk}"


def session_pushes(emsp: Emsp, party: OcpiParty, session_pk: int) -> list[tuple[str, dict]]:
    """(method, body) of every push of one Session the eMSP received, in order, each answered 2xx 1000."""
    pushes = received(emsp, None, session_path(party, session_pk))
    for r in pushes:
        assert (r.response_status in (200, 201), (r.response_body or {}).get("status_code")) == (
            True,
            1000,
        ), (r.method, r.path, r.response_body)
    return [(r.method, r.body) for r in pushes]


def cdr_posts(emsp: Emsp, cdr_id: str) -> list:
    return [r for r in emsp.received("POST", "/ocpi/2.2.1/cdrs") if (r.body or {}).get("id") == cdr_id]
