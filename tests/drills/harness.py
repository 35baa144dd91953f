"""Fault drills with real processes: several web processes (`python -m cpms.server`) on the test database,
Redis as channel layer when REDIS_URL is set, a Celery worker, and a fleet of drill chargers that behave as
OCPP requires of a real charger across a crash of the CSMS: a transaction-related message that got no
answer (connection lost, no answer in time, CALLERROR) is sent again after the reconnect, with a new
message id and the same content, until it is acknowledged (OCPP 1.6 section 4.x "transaction-related
messages", 2.0.1 E04.FR.01). The simulator of `manage.py simulate` abandons a session on a lost connection,
which suits demos but not a count of "nothing lost, nothing twice"; these chargers keep a ledger instead:
every message with what was answered, every meter value sent.

`cluster()` starts the web processes (reusing tests/e2e/conftest.py's process plumbing) and can kill and
restart one; `run_fleet()` runs the chargers (each prefers one process and moves to the next when its
process is gone); `verify()` counts what the chargers had acknowledged against what was stored.

Scale: the tests' counts are small so that each stays well under a minute on a shared 2-core box; the
DRILL_* environment variables (see `scaled`) make the same drills bigger by hand (docs/reliability.md).
"""

import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from billing.models import ChargeDetailRecord
from sessions.enums import SessionStatus
from sessions.models import ChargingSession, MeterValue, SessionAnomaly, TransactionEvent
from tests.e2e.conftest import (
    SERVER_STOP_TIMEOUT_S,
    LiveCsms,
    _process_env,
    _wait_until_listening,
    free_port,
)
from tests.factories import DEFAULT_STATION_PASSWORD

RESPONSE_TIMEOUT_S = 10.0
OPEN_TIMEOUT_S = 10.0


def scaled(name: str, default: int) -> int:
    """A drill count, DRILL_<NAME> in the environment to run it bigger by hand."""
    return int(os.environ.get(f"DRILL_{name}", default))


# --- the web processes ------------------------------------------------------------------------------


@dataclass
class WebProcess:
    """One web process slot: a fixed port (a supervisor restarts the process on it) and its log."""

    name: str
    port: int
    log_path: Path
    process: subprocess.Popen | None = None
    starts: int = 0

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def live(self) -> LiveCsms:
        return LiveCsms(host="127.0.0.1", port=self.port, log_path=self.log_path, process=self.process)


class Cluster:
    """Web processes on the test database (and Redis when REDIS_URL is set), each restartable."""

    def __init__(self, request, tmp_path: Path, *, processes: int, extra_env: dict[str, str] | None = None):
        self.env = {**_process_env(request), **(extra_env or {})}
        self.slots = [
            WebProcess(name=f"web-{i + 1}", port=free_port(), log_path=tmp_path / f"web-{i + 1}.log")
            for i in range(processes)
        ]
        self.kills: list[tuple[str, float]] = []

    def urls(self) -> list[str]:
        return [slot.ws_url for slot in self.slots]

    def _popen(self, slot: WebProcess) -> None:
        # Appended: a restarted process writes after its predecessor's last line.
        with slot.log_path.open("ab") as log:
            slot.process = subprocess.Popen(
                [sys.executable, "-m", "cpms.server", "--bind", "127.0.0.1", "--port", str(slot.port)],
                cwd=settings.BASE_DIR,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        slot.starts += 1

    def start(self) -> None:
        for slot in self.slots:
            self._popen(slot)
        for slot in self.slots:
            _wait_until_listening(slot.process, slot.port, slot.log_path)

    def kill(self, slot: WebProcess) -> None:
        """kill -9 of the web process (its process group: the server and nothing else)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(slot.process.pid, signal.SIGKILL)
        slot.process.wait(timeout=SERVER_STOP_TIMEOUT_S)
        self.kills.append((slot.name, time.monotonic()))

    def restart(self, slot: WebProcess) -> None:
        """Start the slot's process again on its port (what a supervisor does) and wait until it listens."""
        self._popen(slot)
        _wait_until_listening(slot.process, slot.port, slot.log_path)

    def died(self) -> list[WebProcess]:
        """Slots whose process exited by itself (the drill hook kills a process from the inside)."""
        return [slot for slot in self.slots if slot.process is not None and slot.process.poll() is not None]

    def stop(self) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                os.killpg(slot.process.pid, signal.SIGTERM)
        for slot in self.slots:
            if slot.process is None:
                continue
            try:
                slot.process.wait(timeout=SERVER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(slot.process.pid, signal.SIGKILL)
                slot.process.wait(timeout=SERVER_STOP_TIMEOUT_S)

    def log_lines(self, *needles: str) -> list[str]:
        """Lines of every process's log containing one of `needles`."""
        found = []
        for slot in self.slots:
            with contextlib.suppress(FileNotFoundError):
                for line in slot.log_path.read_text(errors="replace").splitlines():
                    if any(needle in line for needle in needles):
                        found.append(f"{slot.name}: {line}")
        return found

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(f"--- {slot.name} ---\n{slot.live().log_tail(lines)}" for slot in self.slots)


@contextlib.contextmanager
def cluster(
    request, tmp_path: Path, *, processes: int = 2, extra_env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    web = Cluster(request, tmp_path, processes=processes, extra_env=extra_env)

    def show_logs_if_failed() -> None:
        # After the test's call phase (the report hook of tests/e2e/conftest.py is shared by conftest.py).
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            print(web.log_tails())

    request.addfinalizer(show_logs_if_failed)
    try:
        web.start()
        yield web
    finally:
        web.stop()


async def supervise(web: Cluster, stop: asyncio.Event, restarts: list[str]) -> None:
    """Restart a web process that died by itself (the drill hook), like a process supervisor would."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        for slot in web.died():
            web.kills.append((slot.name, time.monotonic()))
            restarts.append(slot.name)
            await loop.run_in_executor(None, web.restart, slot)
        await asyncio.sleep(0.1)


async def kill_repeatedly(web: Cluster, *, kills: int, first_after_s: float, every_s: float) -> None:
    """kill -9 of the web processes in turn, each restarted at once (in the background), `kills` times."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(first_after_s)
    for k in range(kills):
        slot = web.slots[k % len(web.slots)]
        web.kill(slot)
        await loop.run_in_executor(None, web.restart, slot)
        if k < kills - 1:
            await asyncio.sleep(every_s)


# --- the chargers -----------------------------------------------------------------------------------


def _ts(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class SentSession:
    """One charging session as the charger saw it: what it sent and what the CSMS acknowledged."""

    connector_id: int
    id_tag: str
    started_at: dt.datetime
    meter_start_wh: int
    transaction_id: str = ""
    stopped_at: dt.datetime | None = None
    meter_stop_wh: int | None = None
    # (timestamp, measurand, context, value) of every sampled value sent, each acknowledged.
    values: Counter = field(default_factory=Counter)
    events: int = 0  # 2.0.1 TransactionEvents acknowledged
    completed: bool = False

    @property
    def energy_wh(self) -> int:
        return self.meter_stop_wh - self.meter_start_wh


@dataclass
class ChargerStats:
    calls: int = 0  # distinct messages, each acknowledged once at the end
    attempts: int = 0  # frames sent for them (retries included)
    connections: int = 0
    call_errors: list[str] = field(default_factory=list)
    # Seconds from a lost connection to the first answer on the new one.
    readmitted_s: list[float] = field(default_factory=list)
    failure: str = ""


class Unanswered(Exception):
    """The connection went away (or timed out) before the answer: send again after a reconnect."""


class DrillCharger:
    """A charger that keeps every transaction-related message until the CSMS acknowledged it.

    It prefers web process `home` and moves on to the next one when that one refuses connections. It never
    sends BootNotification again after a reconnect (a CSMS restart is not a charger reboot;
    docs/reliability.md case 16).
    """

    def __init__(
        self,
        *,
        identity: str,
        protocol: str,
        urls: Callable[[], list[str]],
        home: int,
        id_tag: str,
        seed: int = 0,
        password: str | None = DEFAULT_STATION_PASSWORD,
    ):
        self.identity = identity
        self.protocol = protocol
        self.urls = urls
        self.home = home
        self.id_tag = id_tag
        self.password = password
        self.rng = random.Random(f"{seed}:{identity}")
        self.register_wh = self.rng.randrange(1_000, 5_000_000)
        self.sessions: list[SentSession] = []
        self.stats = ChargerStats()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task | None = None
        self._pending: dict[str, asyncio.Future] = {}
        self._lost_at: float | None = None
        self.closed = asyncio.Event()
        # The index of the web process the current connection goes to.
        self.connected_to: int | None = None

    # --- transport ------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        if self.password is None:
            return {}
        token = base64.b64encode(f"{self.identity}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    async def _connect(self, deadline: float) -> ClientConnection:
        subprotocol = "ocpp1.6" if self.protocol == "1.6" else "ocpp2.0.1"
        index = self.home
        while True:
            urls = self.urls()
            url = f"{urls[index % len(urls)]}/{self.identity}"
            try:
                ws = await connect(
                    url,
                    subprotocols=[subprotocol],
                    additional_headers=self._headers(),
                    open_timeout=OPEN_TIMEOUT_S,
                    compression=None,
                    proxy=None,
                    ping_interval=None,
                )
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                if time.monotonic() > deadline:
                    raise Unanswered(f"could not connect: {exc!r}") from exc
                index += 1  # that process is down: try the next one, with a little jitter
                await asyncio.sleep(self.rng.uniform(0.05, 0.3))
                continue
            self.stats.connections += 1
            self.connected_to = index % len(urls)
            self.closed.clear()
            self._ws = ws
            self._reader = asyncio.create_task(self._read(ws))
            return ws

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                message = json.loads(raw)
                if message[0] == 2:
                    # A CSMS call (none expected in the drills): refuse it plainly.
                    await ws.send(json.dumps([4, message[1], "NotSupported", "drill charger", {}]))
                    continue
                future = self._pending.pop(message[1], None)
                if future is not None and not future.done():
                    future.set_result(message)
        except ConnectionClosed:
            pass
        finally:
            if self._ws is ws:
                self._ws = None
                self._lost_at = time.monotonic()
                self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(Unanswered("connection closed"))
            self._pending.clear()

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def call(self, action: str, payload: dict, *, deadline: float) -> dict:
        """Send until acknowledged (CALLRESULT); each attempt a new message id, the same payload."""
        self.stats.calls += 1
        while True:
            if time.monotonic() > deadline:
                raise Unanswered(f"{action}: not acknowledged before the drill's deadline")
            future = asyncio.get_running_loop().create_future()
            try:
                ws = self._ws or await self._connect(deadline)
                unique_id = uuid.uuid4().hex
                self._pending[unique_id] = future
                self.stats.attempts += 1
                await ws.send(json.dumps([2, unique_id, action, payload]))
                async with asyncio.timeout(RESPONSE_TIMEOUT_S):
                    answer = await future
            except (Unanswered, ConnectionClosed, TimeoutError):
                if future.done():
                    future.exception()  # retrieved: the reason is the retry itself
                else:
                    future.cancel()
                await self.close()
                await asyncio.sleep(self.rng.uniform(0.0, 0.2))
                continue
            if self._lost_at is not None:
                self.stats.readmitted_s.append(time.monotonic() - self._lost_at)
                self._lost_at = None
            if answer[0] == 3:
                return answer[2]
            # CALLERROR (InternalError while the database is unreachable, ...): the charger tries again.
            self.stats.call_errors.append(f"{action}: {answer[2]} {answer[3]}")
            await asyncio.sleep(0.5)

    # --- scenario -------------------------------------------------------------------------------

    async def boot(self, *, deadline: float) -> None:
        if self.protocol == "1.6":
            answer = await self.call(
                "BootNotification",
                {"chargePointVendor": "CPMS", "chargePointModel": "Drill"},
                deadline=deadline,
            )
            await self.call(
                "StatusNotification",
                {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
                deadline=deadline,
            )
        else:
            answer = await self.call(
                "BootNotification",
                {"reason": "PowerUp", "chargingStation": {"model": "Drill", "vendorName": "CPMS"}},
                deadline=deadline,
            )
            await self.call(
                "StatusNotification",
                {
                    "timestamp": _ts(dt.datetime.now(dt.UTC)),
                    "connectorStatus": "Available",
                    "evseId": 1,
                    "connectorId": 1,
                },
                deadline=deadline,
            )
        assert answer["status"] == "Accepted", answer

    def _energy_value(self, value: int, context: str) -> dict:
        if self.protocol == "1.6":
            return {
                "value": str(value),
                "context": context,
                "measurand": "Energy.Active.Import.Register",
                "location": "Outlet",
                "unit": "Wh",
            }
        return {
            "value": value,
            "context": context,
            "measurand": "Energy.Active.Import.Register",
            "location": "Outlet",
            "unitOfMeasure": {"unit": "Wh"},
        }

    def _power_value(self, value: int) -> dict:
        if self.protocol == "1.6":
            return {
                "value": str(value),
                "context": "Sample.Periodic",
                "measurand": "Power.Active.Import",
                "unit": "W",
            }
        return {
            "value": value,
            "context": "Sample.Periodic",
            "measurand": "Power.Active.Import",
            "unitOfMeasure": {"unit": "W"},
        }

    @staticmethod
    def _record(session: SentSession, meter_value: dict) -> None:
        at = dt.datetime.fromisoformat(meter_value["timestamp"].replace("Z", "+00:00"))
        for sv in meter_value["sampledValue"]:
            session.values[(at, sv["measurand"], sv["context"], Decimal(str(sv["value"])))] += 1

    async def charge(self, *, samples: int, interval_s: float, deadline: float) -> SentSession:
        """One session: start, `samples` periodic readings `interval_s` apart, stop. Times are the
        charger's clock: one simulated second per reading, ending now."""
        base = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=samples + 2)
        session = SentSession(
            connector_id=1, id_tag=self.id_tag, started_at=base, meter_start_wh=self.register_wh
        )
        self.sessions.append(session)
        seq = 0
        if self.protocol == "1.6":
            answer = await self.call(
                "StartTransaction",
                {
                    "connectorId": 1,
                    "idTag": self.id_tag,
                    "meterStart": session.meter_start_wh,
                    "timestamp": _ts(base),
                },
                deadline=deadline,
            )
            session.transaction_id = str(answer["transactionId"])
            assert answer["idTagInfo"]["status"] == "Accepted", answer
        else:
            session.transaction_id = uuid.UUID(int=self.rng.getrandbits(128)).hex[:24]
            begin = {
                "timestamp": _ts(base),
                "sampledValue": [self._energy_value(session.meter_start_wh, "Transaction.Begin")],
            }
            answer = await self.call(
                "TransactionEvent",
                {
                    "eventType": "Started",
                    "timestamp": _ts(base),
                    "triggerReason": "Authorized",
                    "seqNo": seq,
                    "transactionInfo": {"transactionId": session.transaction_id, "chargingState": "Charging"},
                    "idToken": {"idToken": self.id_tag, "type": "ISO14443"},
                    "evse": {"id": 1, "connectorId": 1},
                    "meterValue": [begin],
                },
                deadline=deadline,
            )
            self._record(session, begin)
            session.events += 1
            assert answer["idTokenInfo"]["status"] == "Accepted", answer
        for i in range(1, samples + 1):
            await asyncio.sleep(interval_s)
            power_w = self.rng.randrange(3_000, 22_000)
            self.register_wh += power_w // 3600 + 1 + self.rng.randrange(0, 400)
            meter_value = {
                "timestamp": _ts(base + dt.timedelta(seconds=i)),
                "sampledValue": [
                    self._energy_value(self.register_wh, "Sample.Periodic"),
                    self._power_value(power_w),
                ],
            }
            if self.protocol == "1.6":
                await self.call(
                    "MeterValues",
                    {
                        "connectorId": 1,
                        "transactionId": int(session.transaction_id),
                        "meterValue": [meter_value],
                    },
                    deadline=deadline,
                )
            else:
                seq += 1
                await self.call(
                    "TransactionEvent",
                    {
                        "eventType": "Updated",
                        "timestamp": meter_value["timestamp"],
                        "triggerReason": "MeterValuePeriodic",
                        "seqNo": seq,
                        "transactionInfo": {
                            "transactionId": session.transaction_id,
                            "chargingState": "Charging",
                        },
                        "meterValue": [meter_value],
                    },
                    deadline=deadline,
                )
                session.events += 1
            self._record(session, meter_value)
        session.stopped_at = base + dt.timedelta(seconds=samples + 1)
        session.meter_stop_wh = self.register_wh
        if self.protocol == "1.6":
            await self.call(
                "StopTransaction",
                {
                    "transactionId": int(session.transaction_id),
                    "idTag": self.id_tag,
                    "meterStop": session.meter_stop_wh,
                    "timestamp": _ts(session.stopped_at),
                    "reason": "Local",
                },
                deadline=deadline,
            )
        else:
            end = {
                "timestamp": _ts(session.stopped_at),
                "sampledValue": [self._energy_value(session.meter_stop_wh, "Transaction.End")],
            }
            await self.call(
                "TransactionEvent",
                {
                    "eventType": "Ended",
                    "timestamp": _ts(session.stopped_at),
                    "triggerReason": "StopAuthorized",
                    "seqNo": seq + 1,
                    "transactionInfo": {"transactionId": session.transaction_id, "stoppedReason": "Local"},
                    "idToken": {"idToken": self.id_tag, "type": "ISO14443"},
                    "meterValue": [end],
                },
                deadline=deadline,
            )
            self._record(session, end)
            session.events += 1
        session.completed = True
        return session

    async def heartbeat(self, *, deadline: float) -> None:
        await self.call("Heartbeat", {}, deadline=deadline)


def identities(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(1, count + 1)]


def fleet(
    web: Cluster,
    names: list[str],
    *,
    id_tag: str,
    seed: int = 0,
    protocols: tuple[str, ...] = ("1.6", "2.0.1"),
) -> list[DrillCharger]:
    """One charger per identity, protocols alternating, homes spread over the web processes (each process
    gets chargers of every protocol)."""
    return [
        DrillCharger(
            identity=name,
            protocol=protocols[i % len(protocols)],
            urls=web.urls,
            home=(i // len(protocols)) % len(web.slots),
            id_tag=id_tag,
            seed=seed,
        )
        for i, name in enumerate(names)
    ]


async def run_sessions(
    chargers: list[DrillCharger],
    *,
    sessions: int,
    samples: int,
    interval_s: float,
    deadline_s: float,
    until: asyncio.Event | None = None,
) -> None:
    """Every charger boots and charges `sessions` sessions back to back, and more while `until` is not
    set (so that the load lasts as long as the faults); a charger that cannot finish before the deadline
    records why."""
    deadline = time.monotonic() + deadline_s

    async def one(charger: DrillCharger) -> None:
        try:
            # Spread the first handshakes over a second, as chargers powering up would be.
            await asyncio.sleep(charger.rng.uniform(0, 1.0))
            await charger.boot(deadline=deadline)
            done = 0
            while done < sessions or (until is not None and not until.is_set()):
                await charger.charge(samples=samples, interval_s=interval_s, deadline=deadline)
                done += 1
        except Unanswered as exc:
            charger.stats.failure = str(exc)
        finally:
            await charger.close()

    await asyncio.gather(*(one(charger) for charger in chargers))


@dataclass
class Storm:
    """What a reconnect storm measured: when each lost connection was re-admitted (a Heartbeat answered
    on the new connection), time.monotonic()."""

    readmitted_at: list[float] = field(default_factory=list)
    booted: int = 0


async def hold_connections(
    chargers: list[DrillCharger], *, storm: Storm, stop: asyncio.Event, spread_s: float, deadline_s: float
) -> None:
    """Every charger boots (first handshakes spread over `spread_s`) and stays connected until `stop`;
    a charger whose connection is lost reconnects at once (a little jitter, as firmware has) and proves
    it was re-admitted with a Heartbeat."""
    deadline = time.monotonic() + deadline_s

    async def one(charger: DrillCharger) -> None:
        try:
            await asyncio.sleep(charger.rng.uniform(0, spread_s))
            await charger.boot(deadline=deadline)
            storm.booted += 1
            while not stop.is_set():
                lost = asyncio.create_task(charger.closed.wait())
                stopped = asyncio.create_task(stop.wait())
                await asyncio.wait({lost, stopped}, return_when=asyncio.FIRST_COMPLETED)
                lost.cancel()
                stopped.cancel()
                if stop.is_set():
                    break
                await asyncio.sleep(charger.rng.uniform(0, 0.1))
                await charger.heartbeat(deadline=deadline)
                storm.readmitted_at.append(time.monotonic())
        except Unanswered as exc:
            charger.stats.failure = str(exc)
        finally:
            await charger.close()

    await asyncio.gather(*(one(charger) for charger in chargers))


# --- the count ---------------------------------------------------------------------------------------


@dataclass
class DrillReport:
    chargers: int
    sessions: int
    meter_values: int
    transaction_events: int
    calls: int
    attempts: int
    connections: int
    call_errors: int
    cdrs: int
    anomalies: dict[str, int]
    problems: list[str]

    def format(self, title: str, **figures) -> str:
        extra = "".join(f", {key} {value}" for key, value in figures.items())
        return (
            f"{title}: {self.chargers} chargers, {self.sessions} sessions, {self.meter_values} meter values, "
            f"{self.transaction_events} 2.0.1 events, {self.cdrs} CDRs; {self.calls} messages acknowledged "
            f"after {self.attempts} attempts ({self.attempts - self.calls} re-sent), {self.connections} "
            f"connections, {self.call_errors} CALLERRORs, anomalies {self.anomalies or '{}'}{extra}"
        )


def verify(chargers: list[DrillCharger], *, cdrs: bool) -> DrillReport:
    """Everything each charger had acknowledged is stored exactly once, with the charger's totals; and
    nothing is stored that it did not send. `cdrs`: also one CDR per session with the session's energy."""
    problems = [f"{c.identity}: {c.stats.failure}" for c in chargers if c.stats.failure]
    sessions = meter_values = events = cdr_count = 0
    for charger in chargers:
        stored = {
            s.transaction_id: s
            for s in ChargingSession.objects.filter(station__identity=charger.identity).order_by("pk")
        }
        count = ChargingSession.objects.filter(station__identity=charger.identity).count()
        sent = [s for s in charger.sessions if s.completed]
        if count != len(sent) or set(stored) != {s.transaction_id for s in sent}:
            problems.append(
                f"{charger.identity}: {count} sessions stored {sorted(stored)}, "
                f"{len(sent)} acknowledged {[s.transaction_id for s in sent]}"
            )
        for s in sent:
            row = stored.get(s.transaction_id)
            if row is None:
                continue
            sessions += 1
            got = (
                row.status,
                row.meter_start_wh,
                row.meter_stop_wh,
                row.energy_wh,
                row.started_at,
                row.stopped_at,
            )
            want = (
                SessionStatus.COMPLETED,
                s.meter_start_wh,
                s.meter_stop_wh,
                s.energy_wh,
                s.started_at,
                s.stopped_at,
            )
            if got != want or row.flags:
                problems.append(
                    f"{charger.identity} tx {s.transaction_id}: stored {got} flags {row.flags}, sent {want}"
                )
            values = Counter(
                (v.timestamp, v.measurand, v.context, v.value)
                for v in MeterValue.objects.filter(session=row).only(
                    "timestamp", "measurand", "context", "value"
                )
            )
            meter_values += sum(values.values())
            if values != s.values:
                problems.append(
                    f"{charger.identity} tx {s.transaction_id}: meter values missing {dict(s.values - values)}, "
                    f"extra {dict(values - s.values)}"
                )
            if charger.protocol != "1.6":
                stored_events = TransactionEvent.objects.filter(session=row).count()
                events += stored_events
                if stored_events != s.events:
                    problems.append(
                        f"{charger.identity} tx {s.transaction_id}: {stored_events} events stored, {s.events} sent"
                    )
            if cdrs:
                cdr = ChargeDetailRecord.objects.filter(session=row).first()
                if cdr is None or cdr.energy_wh != s.energy_wh:
                    problems.append(
                        f"{charger.identity} tx {s.transaction_id}: CDR {cdr and cdr.energy_wh} for {s.energy_wh} Wh"
                    )
                else:
                    cdr_count += 1
        orphans = MeterValue.objects.filter(station__identity=charger.identity, session__isnull=True).count()
        if orphans:
            problems.append(f"{charger.identity}: {orphans} meter values stored without their session")
    anomalies = Counter(
        SessionAnomaly.objects.filter(station__identity__in=[c.identity for c in chargers]).values_list(
            "kind", flat=True
        )
    )
    return DrillReport(
        chargers=len(chargers),
        sessions=sessions,
        meter_values=meter_values,
        transaction_events=events,
        calls=sum(c.stats.calls for c in chargers),
        attempts=sum(c.stats.attempts for c in chargers),
        connections=sum(c.stats.connections for c in chargers),
        call_errors=sum(len(c.stats.call_errors) for c in chargers),
        cdrs=cdr_count,
        anomalies=dict(anomalies),
        problems=problems,
    )


def wait_for_cdrs(session_count: int, *, timeout_s: float, quiet_s: float = 3.0) -> int:
    """The number of CDRs once there are `session_count`, or once none came for `quiet_s` (the jobs
    queued so far are done), or at the timeout."""
    deadline = time.monotonic() + timeout_s
    last, last_change = -1, time.monotonic()
    while (count := ChargeDetailRecord.objects.count()) < session_count:
        now = time.monotonic()
        if count != last:
            last, last_change = count, now
        if now > deadline or now - last_change > quiet_s:
            break
        time.sleep(0.25)
    return count


def skip_without_postgres_and_redis() -> None:
    """The drills are about the production stack: PostgreSQL (several processes write at once) and Redis."""
    from django.db import connection

    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        pytest.skip("the fault drills need DATABASE_URL (PostgreSQL) and REDIS_URL")
