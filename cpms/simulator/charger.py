"""One simulated charger: connection, boot, heartbeats, charging sessions, reservations, CSMS-requested
reboots.

This module is protocol-independent. The frames themselves are built and parsed by a `ProtocolClient`
(protocol.py; one per OCPP version: charger_v16.py, charger_v201.py), chosen through `PROTOCOLS`. The
client also answers CSMS-initiated calls, calling back into the charger for anything that changes its
state (start/stop a session, reboot, availability, reservations: charger_requests.py). The connectors'
state is in connectors.py. The charging profiles of both
versions are kept here too (`charging_profiles`, smart_charging.py): a TxProfile ends with its session.

Every wait is bounded: by the response timeout, the meter interval, the deadline (`duration_s`) or the
reboot limit, so a charger always finishes.
"""

import asyncio
import base64
import contextlib
import enum
import logging
import random
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from cpms.simulator.charger_requests import CsmsRequestsMixin
from cpms.simulator.config import ChargerConfig, tls_context
from cpms.simulator.connectors import ActiveSession, ConnectorState
from cpms.simulator.meter import EnergyMeter, EvSession, ocpp_timestamp, parse_time, utc_now
from cpms.simulator.protocol import BootResult, CallFailed, ProtocolClient
from cpms.simulator.smart_charging import ProfileStore
from cpms.simulator.summary import ChargerResult, SessionRecord

logger = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_INTERVAL_S = 300
# A rebooting charger is back after this long (real chargers take tens of seconds; tests don't wait).
REBOOT_DELAY_S = 0.5


@dataclass(frozen=True)
class ProtocolSpec:
    version: str
    subprotocol: str
    factory: Callable[["SimulatedCharger", ClientConnection], ProtocolClient]


def _v16_client(charger: "SimulatedCharger", connection: ClientConnection) -> ProtocolClient:
    from cpms.simulator.charger_v16 import ChargerV16

    return ChargerV16(charger, connection)


def _v201_client(charger: "SimulatedCharger", connection: ClientConnection) -> ProtocolClient:
    from cpms.simulator.charger_v201 import ChargerV201

    return ChargerV201(charger, connection)


PROTOCOLS: dict[str, ProtocolSpec] = {
    "1.6": ProtocolSpec(version="1.6", subprotocol="ocpp1.6", factory=_v16_client),
    "2.0.1": ProtocolSpec(version="2.0.1", subprotocol="ocpp2.0.1", factory=_v201_client),
}


class _Outcome(enum.Enum):
    DONE = "done"
    FAILED = "failed"
    REBOOT = "reboot"


@dataclass(frozen=True)
class Endpoint:
    """Where and how the charger connects: the CSMS base URL (without the identity), its security profile
    (1: Basic over ws://, 2: Basic over wss://, 3: client certificate over wss://, no password) and, for 3,
    its certificate and key files. A security-profile upgrade replaces it (1.6 SecurityProfile; 2.0.1
    NetworkConfigurationPriority and Reset)."""

    url: str
    security_profile: int
    cert_file: str | None = None
    key_file: str | None = None


def configured_profile(config: ChargerConfig) -> int:
    if not config.url.startswith("wss://"):
        return 1
    return 3 if config.tls_cert_file else 2


class SimulatedCharger(CsmsRequestsMixin):
    def __init__(self, config: ChargerConfig, *, tls_url: str | None = None):
        """`tls_url`: where a 1.6 charger connects once its SecurityProfile is raised to 2 or 3 from a ws://
        url (1.6 carries no URL in the upgrade; default: the configured url with wss://)."""
        if config.protocol not in PROTOCOLS:
            raise ValueError(f"Unsupported protocol {config.protocol!r}; supported: {', '.join(PROTOCOLS)}")
        self.config = config
        self.spec = PROTOCOLS[config.protocol]
        self.result = ChargerResult(identity=config.identity, protocol=config.protocol)
        self._rng = random.Random(f"{config.seed}:{config.identity}")
        self.connectors = {
            n: ConnectorState(connector_id=n, meter=EnergyMeter(self._rng))
            for n in range(1, config.connectors + 1)
        }
        # The whole charger (1.6 connectorId 0).
        self.station_status = "Available"
        self.heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
        self.meter_interval_s: float = config.meter_interval_s
        self.authorize_remote_starts = False
        self.charging_profiles = ProfileStore()
        # Per protocol version, what its client keeps across connections (1.6: the configuration keys).
        self.protocol_state: dict[str, Any] = {}
        self.client: ProtocolClient | None = None
        self.endpoint = Endpoint(url=config.url, security_profile=configured_profile(config))
        self.tls_url = tls_url or (
            "wss://" + config.url.removeprefix("ws://") if config.url.startswith("ws://") else config.url
        )
        self._certificate_dir: Path | None = None
        self._deadline: float | None = None
        self._session_index = 0
        self._scripted_done = 0
        self._tasks: set[asyncio.Task] = set()
        self._session_tasks: set[asyncio.Task] = set()
        self._reboot = asyncio.Event()
        self._boot_accepted = asyncio.Event()
        self._heartbeat_changed = asyncio.Event()
        self._connector_freed = asyncio.Event()

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self, handshake_slots: asyncio.Semaphore | None = None) -> ChargerResult:
        loop = asyncio.get_running_loop()
        if self.config.duration_s is not None:
            self._deadline = loop.time() + self.config.duration_s
        reboots = 0
        while True:
            outcome = await self._connection_cycle(handshake_slots)
            if outcome is not _Outcome.REBOOT:
                break
            if reboots >= self.config.max_reboots or self._deadline_passed():
                self.result.errors.append(f"not rebooting again after {reboots} reboot(s)")
                break
            reboots += 1
            self._endpoint_after_reset()
            await asyncio.sleep(REBOOT_DELAY_S)
        return self.result

    @property
    def url(self) -> str:
        return f"{self.endpoint.url.rstrip('/')}/{quote(self.config.identity, safe='')}"

    # --- security profile (1.6 security whitepaper A05; 2.0.1 A05, B09) -------------------------------

    def certificate_dir(self) -> Path:
        """A private folder for the certificate and key the charger reconnects with (profile 3)."""
        if self._certificate_dir is None:
            self._certificate_dir = Path(tempfile.mkdtemp(prefix=f"cpms-sim-{self.config.identity}-"))
        return self._certificate_dir

    def reconnect_at(self, endpoint: Endpoint) -> None:
        """Close the connection and connect to `endpoint` (1.6 A05: right after accepting SecurityProfile)."""
        self.endpoint = endpoint
        self._reboot.set()

    def _endpoint_after_reset(self) -> None:
        # 2.0.1 B09/A05: after a reset the charger connects with the first slot of
        # NetworkConfigurationPriority; the protocol's state knows the slots (None: unchanged).
        state = self.protocol_state.get(self.config.protocol)
        choose = getattr(state, "endpoint_after_reset", None)
        if choose is not None:
            endpoint = choose(self)
            if endpoint is not None:
                self.endpoint = endpoint

    def _headers(self) -> dict[str, str]:
        # Profile 3 authenticates with the client certificate only (A00.FR.402): no password is sent.
        if self.config.password is None or self.endpoint.security_profile == 3:
            return {}
        credentials = f"{self.config.identity}:{self.config.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(credentials).decode("ascii")}

    async def _open(self, handshake_slots: asyncio.Semaphore | None) -> ClientConnection:
        async with handshake_slots or contextlib.nullcontext():
            return await connect(
                self.url,
                subprotocols=[Subprotocol(self.spec.subprotocol)],
                additional_headers=self._headers(),
                # wss://: the CSMS root to check the server, and the client certificate of profile 3.
                ssl=tls_context(
                    self.endpoint.url,
                    ca_file=self.config.tls_ca_file,
                    cert_file=self.endpoint.cert_file or self.config.tls_cert_file,
                    key_file=self.endpoint.key_file or self.config.tls_key_file,
                ),
                open_timeout=self.config.open_timeout_s,
                # Chargers rarely negotiate compression, and it costs the server memory per connection.
                compression=None,
                # Loopback and test servers only: never go through a proxy from the environment.
                proxy=None,
            )

    async def _connection_cycle(self, handshake_slots: asyncio.Semaphore | None) -> _Outcome:
        self._reboot.clear()
        self._boot_accepted.clear()
        try:
            connection = await self._open(handshake_slots)
        except InvalidStatus as exc:
            self.result.refused_status = exc.response.status_code
            self.result.failure = f"refused at the handshake, HTTP {exc.response.status_code}"
            return _Outcome.FAILED
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            self.result.failure = f"could not connect: {type(exc).__name__}: {exc}"
            return _Outcome.FAILED

        self.result.connected = True
        self.result.connections += 1
        try:
            if connection.subprotocol != self.spec.subprotocol:
                self.result.failure = (
                    f"server selected subprotocol {connection.subprotocol!r}, not {self.spec.subprotocol}"
                )
                return _Outcome.FAILED
            self.client = self.spec.factory(self, connection)
            reader = asyncio.create_task(self.client.serve())
            scenario = asyncio.create_task(self._scenario())
            try:
                await asyncio.wait({reader, scenario}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await cancel_and_wait({scenario, reader, *self._tasks})
                self._tasks.clear()
                self._session_tasks.clear()
            # Whichever finished by itself (the other one was cancelled above) tells what happened.
            if scenario.done() and not scenario.cancelled():
                error = scenario.exception()
                if error is None:
                    return scenario.result()
            else:
                error = reader.exception() if reader.done() and not reader.cancelled() else None
            if error is None or isinstance(error, ConnectionClosed):
                self.result.failure = f"connection closed by the CSMS ({_close_text(connection)})"
            elif isinstance(error, CallFailed):
                self.result.failure = str(error)
            else:
                self.result.failure = f"simulator error: {type(error).__name__}: {error}"
                logger.error("%s: simulator error", self.config.identity, exc_info=error)
            return _Outcome.FAILED
        finally:
            self._abandon_sessions("connection lost")
            await connection.close()
            self.client = None

    def _abandon_sessions(self, reason: str) -> None:
        for connector in self.connectors.values():
            connector.claimed = False
            if connector.session is not None:
                if connector.session.record.status == "running":
                    connector.session.record.fail(reason)
                connector.session = None

    def _deadline_passed(self) -> bool:
        return self._deadline is not None and asyncio.get_running_loop().time() >= self._deadline

    def _time_left(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    def spawn(self, coro: Coroutine[Any, Any, Any], *, session: bool = False) -> asyncio.Task:
        """Run `coro` in the background for as long as this connection lives.

        Handlers of CSMS calls use it: a charger must answer a call before it sends the calls the
        request causes (StartTransaction after RemoteStartTransaction.conf, ...)."""
        task = asyncio.create_task(self._guard(coro))
        # A task cancelled before it ever ran leaves `coro` unstarted: close it (no "never awaited").
        task.add_done_callback(lambda _: coro.close())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if session:
            self._session_tasks.add(task)
            task.add_done_callback(self._session_tasks.discard)
        return task

    async def _guard(self, coro: Coroutine[Any, Any, Any]) -> None:
        # A failed call is recorded by the client; a closed connection is reported by the connection cycle.
        with contextlib.suppress(CallFailed, ConnectionClosed):
            await coro

    # --- scenario -------------------------------------------------------------------------------

    async def _scenario(self) -> _Outcome:
        if not await self._boot():
            return _Outcome.DONE
        await self.connected_client.status_notification(connector_id=0, status=self.station_status)
        for connector in self.connectors.values():
            connector.status = connector.idle_status()
            await self.connected_client.status_notification(
                connector_id=connector.connector_id, status=connector.status
            )
        self.spawn(self._heartbeat_loop())
        for connector in self.connectors.values():
            if connector.reservation is not None:
                self.spawn(self._reservation_expiry(connector, connector.reservation))

        while self.config.sessions and self._scripted_done < self.config.session_count:
            if self._reboot.is_set():
                break
            if self._deadline_passed():
                self.result.sessions_skipped += self.config.session_count - self._scripted_done
                break
            free = await self._free_connector()
            if free is None:
                continue  # reboot or deadline: the checks above decide
            self._scripted_done += 1
            await self.run_session(free, id_tag=self.config.id_tag, remote=False)

        await self._linger()
        return _Outcome.REBOOT if self._reboot.is_set() else _Outcome.DONE

    async def _boot(self) -> bool:
        """BootNotification until Accepted. Pending/Rejected: retry after the interval the CSMS asked for
        (OCPP 1.6 4.2), but only while the deadline allows; without --duration one answer is final."""
        while True:
            try:
                boot = await self.connected_client.boot()
            except CallFailed as exc:
                self.result.failure = f"BootNotification failed: {exc}"
                return False
            if self.boot_answered(boot):
                return True
            retry_in = boot.interval_s if boot.interval_s > 0 else 10
            time_left = self._time_left()
            if time_left is None or time_left <= retry_in:
                self.result.failure = f"BootNotification answered {boot.status}"
                return False
            # The CSMS may accept us meanwhile with TriggerMessage(BootNotification).
            if await wait_event(self._boot_accepted, retry_in):
                return True

    def boot_answered(self, boot: BootResult) -> bool:
        """Record a BootNotification answer (also for triggered boots). True when Accepted."""
        self.result.boot_status = boot.status
        if boot.status != "Accepted":
            return False
        self.heartbeat_interval_s = boot.interval_s if boot.interval_s > 0 else DEFAULT_HEARTBEAT_INTERVAL_S
        self._heartbeat_changed.set()
        self._boot_accepted.set()
        return True

    async def _heartbeat_loop(self) -> None:
        while True:
            if await wait_event(self._heartbeat_changed, self.heartbeat_interval_s):
                self._heartbeat_changed.clear()
            else:
                with contextlib.suppress(CallFailed):
                    await self.connected_client.heartbeat()

    def set_heartbeat_interval(self, seconds: float) -> None:
        self.heartbeat_interval_s = seconds if seconds > 0 else DEFAULT_HEARTBEAT_INTERVAL_S
        self._heartbeat_changed.set()

    async def _free_connector(self) -> ConnectorState | None:
        """The first free connector; waits (bounded by the deadline) while all are busy."""
        while True:
            for connector in self.connectors.values():
                if connector.usable_by(self.config.id_tag):
                    return connector
            if self._reboot.is_set() or self._deadline_passed():
                return None
            self._connector_freed.clear()
            waiters = [
                asyncio.ensure_future(self._connector_freed.wait()),
                asyncio.ensure_future(self._reboot.wait()),
            ]
            try:
                await asyncio.wait(waiters, timeout=self._time_left(), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def _linger(self) -> None:
        """After the scripted part: with a deadline, stay connected until it (or a reboot) comes; without,
        let the sessions the CSMS started finish. Either way, end with no session running."""
        if self._deadline is not None:
            await wait_event(self._reboot, self._time_left())
            for connector in self.connectors.values():
                if connector.session is not None:
                    connector.session.request_stop("Reboot" if self._reboot.is_set() else "Local")
        while self._session_tasks:
            await asyncio.gather(*self._session_tasks, return_exceptions=True)

    # --- sessions -------------------------------------------------------------------------------

    async def run_session(
        self, connector: ConnectorState, *, id_tag: str, remote: bool, remote_start_id: int | None = None
    ) -> SessionRecord:
        record = SessionRecord(
            connector_id=connector.connector_id, id_tag=id_tag, remote=remote, remote_start_id=remote_start_id
        )
        self.result.sessions.append(record)
        self._session_index += 1
        ev_rng = random.Random(f"{self.config.seed}:{self.config.identity}:{self._session_index}")
        session = ActiveSession(record=record, ev=EvSession(ev_rng, connector.meter))
        reservation = connector.reservation
        if reservation is not None and reservation.id_tag == id_tag:
            # OCPP 1.6 5.13: the reservation ends when a transaction for its idTag starts on its connector.
            record.reservation_id = reservation.reservation_id
            connector.reservation = None
        connector.claimed = False
        connector.session = session
        client = self.connected_client
        try:
            await self._run_session(client, connector, session)
        except CallFailed as exc:
            record.fail(str(exc))
        except ConnectionClosed:
            record.fail("connection lost")
        except asyncio.CancelledError:
            record.fail("interrupted: the connection ended")
            connector.session = None
            self.charging_profiles.transaction_ended(connector.connector_id)
            raise
        connector.session = None
        self.charging_profiles.transaction_ended(connector.connector_id)
        self._connector_freed.set()
        if record.status == "failed" and connector.status != connector.idle_status():
            with contextlib.suppress(CallFailed, ConnectionClosed):
                await self._set_status(connector, connector.idle_status())
        return record

    async def _run_session(
        self, client: ProtocolClient, connector: ConnectorState, session: ActiveSession
    ) -> None:
        record = session.record
        cid = connector.connector_id
        if not record.remote or self.authorize_remote_starts:
            status = await client.authorize(id_tag=record.id_tag)
            if status != "Accepted":
                record.fail(f"Authorize answered {status}")
                return
        await self._set_status(connector, "Preparing")
        record.meter_start_wh = connector.meter.register_wh
        record.started_at = ocpp_timestamp(utc_now())
        begin = session.ev.register_sample("Transaction.Begin")
        start = await client.start_transaction(
            connector_id=cid,
            id_tag=record.id_tag,
            meter_start_wh=record.meter_start_wh,
            timestamp=record.started_at,
            begin=begin,
        )
        transaction_id = record.transaction_id = start.transaction_id
        record.meter_values.extend(start.meter_values)
        if start.id_token_status != "Accepted":
            # OCPP 1.6 5.x StopTransactionOnInvalidId: a transaction the CSMS did not accept is stopped at once.
            await self._stop(client, connector, session, reason="DeAuthorized")
            record.fail(f"StartTransaction answered idTagInfo {start.id_token_status}")
            return
        await self._set_status(connector, "Charging")
        if not start.meter_values:
            # 1.6: the Transaction.Begin reading follows StartTransaction in a MeterValues of its own.
            record.meter_values.extend(
                await client.meter_values(connector_id=cid, transaction_id=transaction_id, samples=[begin])
            )
        for _ in range(self.config.meter_samples):
            if not await self._wait_for_sample(session):
                break
            sample = session.ev.advance(
                self.meter_interval_s * self.config.speedup, limit_a=self._profile_limit_a(cid, record)
            )
            record.meter_values.extend(
                await client.meter_values(connector_id=cid, transaction_id=transaction_id, samples=[sample])
            )
        await self._stop(client, connector, session, reason=session.stop_reason)
        record.status = "completed"

    def _profile_limit_a(self, connector_id: int, record: SessionRecord) -> float | None:
        """The current limit per phase the charging profiles set now for the connector (None: none applies),
        which the EV then cannot exceed: a simulated charger obeys smart charging like a real one."""
        composite = self.charging_profiles.composite(
            evse_id=connector_id,
            duration_s=1,
            unit="A",
            transaction_start=parse_time(record.started_at),
        )
        if composite is None or not composite.periods:
            return None
        return composite.periods[0].limit

    async def _stop(
        self, client: ProtocolClient, connector: ConnectorState, session: ActiveSession, *, reason: str
    ) -> None:
        record = session.record
        record.meter_stop_wh = connector.meter.register_wh
        record.stopped_at = ocpp_timestamp(utc_now())
        record.stop_reason = reason
        assert record.transaction_id is not None  # the session started
        record.transaction_data = await client.stop_transaction(
            transaction_id=record.transaction_id,
            id_tag=record.id_tag,
            meter_stop_wh=record.meter_stop_wh,
            timestamp=record.stopped_at,
            reason=reason,
            samples=[session.ev.register_sample("Transaction.End")],
        )
        await self._set_status(connector, "Finishing")
        if connector.scheduled_operative is not None:
            connector.operative = connector.scheduled_operative
            connector.scheduled_operative = None
        await self._set_status(connector, connector.idle_status())

    async def _wait_for_sample(self, session: ActiveSession) -> bool:
        """Wait one meter interval. False when the session must stop first (stop request, deadline, reboot)."""
        timeout = self.meter_interval_s
        time_left = self._time_left()
        if time_left is not None and time_left < timeout:
            timeout = time_left
        if await wait_event(session.stop, timeout):
            return False
        return not self._deadline_passed() and not self._reboot.is_set()

    async def _set_status(self, connector: ConnectorState, status: str) -> None:
        connector.status = status
        await self.connected_client.status_notification(connector_id=connector.connector_id, status=status)


async def cancel_and_wait(tasks: set[asyncio.Task], *, attempts: int = 5, grace_s: float = 1.0) -> None:
    """Cancel `tasks` and wait for them to end. Cancels again when one is still running after a grace
    period: on Python 3.11, `asyncio.wait_for` (used by the `ocpp` package for every call) swallows a
    cancellation that arrives together with the answer. Gives up after `attempts` rounds."""
    pending = {task for task in tasks if not task.done()}
    for _ in range(attempts):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=grace_s)
    for task in pending:
        logger.warning("task %r still running after %d cancellations", task, attempts)


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until `event` is set (True) or `timeout` passes (False).

    Not `asyncio.wait_for(event.wait(), ...)`: on Python 3.11 it swallows a cancellation that arrives as
    the event is set, and the cancelled task then waits on forever."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


def _close_text(connection: ClientConnection) -> str:
    code = connection.close_code
    reason = connection.close_reason
    if code is None:
        return "no close frame"
    return f"close code {code}" + (f", reason {reason!r}" if reason else "")
