"""The charger side of bench/scale.py: N chargers per client process, OCPP 1.6J or 2.0.1 (asyncio + websockets,
frames built by hand), and the bare websockets server of --ceiling. Run by scale.py as subprocesses, never alone.

Latencies and acknowledgements are keyed by "<label> <version>", e.g. "Heartbeat 1.6" or
"TransactionEvent.Updated 2.0.1", so the parent can print them per action and per version.
"""

import asyncio
import base64
import collections
import datetime as dt
import json
import random
import sys
import time
import uuid
from pathlib import Path

from harness import (
    HOST,
    ID_TAG,
    PASSWORD,
    identity,
    raise_fd_limit,
)

RESPONSE_TIMEOUT_S = 30.0


# A charger that cannot get in retries with a growing pause, like a real one, up to this many attempts.
CONNECT_ATTEMPTS = 12


# Rows per acknowledged MeterValues (1.6) or TransactionEvent Updated (2.0.1): one per sampled value
# (sessions.MeterValue). A 2.0.1 Started carries one (the Transaction.Begin register reading).
SAMPLED_VALUES = 5
STARTED_SAMPLED_VALUES = 1


# What a simulated charger answers to the CSMS calls the --commands load sends (the same in both versions:
# ClearCacheResponse and TriggerMessageResponse are {"status": ...} in 1.6 and 2.0.1). Any other CSMS call
# gets a CALLERROR NotImplemented and is counted.
COMMAND_ANSWERS = {"ClearCache": {"status": "Accepted"}, "TriggerMessage": {"status": "Accepted"}}


# --storm: a charger whose connection is not closed by the kill within this bound gives up rejoining.
REJOIN_WAIT_S = 120.0


V16 = "1.6"
V201 = "2.0.1"


def now_text() -> str:
    moment = dt.datetime.now(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def is_v201(n: int, fraction: float) -> bool:
    """Which chargers speak 2.0.1: a fixed spread over the identities (the same in every run and process),
    so the parent knows each charger's version without asking."""
    return (n * 0.6180339887498949) % 1.0 < fraction


# ---------------------------------------------------------------- client process


class Charger:
    """One OCPP 1.6J charger. A reader task matches answers to calls, so Heartbeat and MeterValues overlap,
    and answers the CSMS's calls (COMMAND_ANSWERS)."""

    version = V16
    subprotocol = "ocpp1.6"

    def __init__(self, url: str, number: int, run: "ClientRun"):
        self.number = number
        self.identity = identity(number)
        self.url = f"{url}/{self.identity}"
        self.run = run
        self.ws = None
        self.next_id = 0
        self.pending: dict[str, asyncio.Future] = {}
        self.transaction_id: str | int | None = None
        self.register_wh = 1_000_000

    def key(self, label: str) -> str:
        return f"{label} {self.version}"

    async def reader(self) -> None:
        import orjson

        try:
            async for text in self.ws:
                frame = orjson.loads(text)
                if frame[0] == 2:
                    await self.answer_csms(frame)
                    continue
                future = self.pending.pop(frame[1], None)
                if future is not None and not future.done():
                    future.set_result(frame)
        except Exception as exc:  # closed or garbled: the pending calls fail below with the reason
            reason = exc
        else:
            reason = ConnectionError("connection closed")
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"connection closed: {reason}"))

    async def answer_csms(self, frame: list) -> None:
        import orjson

        unique_id, action, payload = frame[1], frame[2], frame[3]
        answer = COMMAND_ANSWERS.get(action)
        self.run.csms_calls[self.key(action)] += 1
        if answer is None:
            await self.ws.send(orjson.dumps([4, unique_id, "NotImplemented", "bench charger", {}]).decode())
            return
        await self.ws.send(orjson.dumps([3, unique_id, answer]).decode())
        if action == "TriggerMessage" and payload.get("requestedMessage") == "Heartbeat":
            # The charger then sends what it was asked for (1.6 TriggerMessage, 2.0.1 F06): not from the
            # reader itself, which must stay free to read the answer.
            asyncio.get_running_loop().create_task(self.triggered_heartbeat())

    async def triggered_heartbeat(self) -> None:
        try:
            await self.call("Heartbeat", {}, label="Heartbeat.triggered")
        except Exception as exc:  # counted, the run goes on
            self.run.error(f"{self.identity}: triggered Heartbeat: {type(exc).__name__}: {exc}")

    async def call(self, action: str, payload: dict, *, label: str | None = None) -> dict:
        import orjson

        key = self.key(label or action)
        self.next_id += 1
        unique_id = str(self.next_id)
        future = asyncio.get_running_loop().create_future()
        self.pending[unique_id] = future
        started = time.perf_counter()
        async with asyncio.timeout(RESPONSE_TIMEOUT_S):  # the send too: a server that stops reading
            await self.ws.send(orjson.dumps([2, unique_id, action, payload]).decode())
            frame = await future
        self.run.latency(key, time.perf_counter() - started, started)
        if frame[0] == 4:
            self.run.callerror(key, f"{self.identity}: {key}: CALLERROR {frame[2]} {frame[3]} {frame[4]}")
            raise RuntimeError(f"{key}: CALLERROR {frame[2]} {frame[3]}")
        return frame[2]

    async def connect(self, stamps: list[float]) -> None:
        from websockets.asyncio.client import connect

        auth = base64.b64encode(f"{self.identity}:{PASSWORD}".encode()).decode()
        for attempt in range(CONNECT_ATTEMPTS):
            started = time.perf_counter()
            try:
                self.ws = await connect(
                    self.url,
                    subprotocols=[self.subprotocol],
                    additional_headers={"Authorization": f"Basic {auth}"},
                    open_timeout=30,
                    compression=None,
                    proxy=None,
                    ping_interval=None,
                    max_queue=16,
                )
                self.run.latency(self.key("connect"), time.perf_counter() - started, started)
                stamps.append(time.time())
                return
            except Exception as exc:  # refused, timed out, reset: counted, retried like a charger would
                self.run.failure(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(min(30.0, 1.0 * 2**attempt) * random.uniform(0.5, 1.0))
        raise RuntimeError("gave up connecting")

    # --- what differs between versions ----------------------------------------------------------------

    def boot_payload(self) -> dict:
        return {"chargePointVendor": "CPMS", "chargePointModel": "Scale"}

    def status_payload(self, charging: bool) -> dict:
        return {"connectorId": 1, "errorCode": "NoError", "status": "Charging" if charging else "Available"}

    async def start_transaction(self) -> None:
        start = await self.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": ID_TAG, "meterStart": self.register_wh, "timestamp": now_text()},
        )
        if start.get("idTagInfo", {}).get("status") != "Accepted":
            raise RuntimeError(f"StartTransaction {start.get('idTagInfo')}")
        self.transaction_id = start["transactionId"]
        self.run.acked[self.key("StartTransaction")] += 1

    def readings(self) -> list[tuple[str, str | None, float, str]]:
        self.register_wh += 92
        return [
            ("Energy.Active.Import.Register", None, self.register_wh, "Wh"),
            ("Power.Active.Import", None, 11040, "W"),
            *(("Current.Import", phase, 16.0, "A") for phase in ("L1", "L2", "L3")),
        ][:SAMPLED_VALUES]

    def meter_message(self) -> tuple[str, str, dict]:
        """(action, label, payload) of the next periodic meter reading."""
        sampled = []
        for measurand, phase, value, unit in self.readings():
            item = {"value": str(value), "unit": unit, "context": "Sample.Periodic", "measurand": measurand}
            sampled.append({**item, "phase": phase} if phase else item)
        payload = {
            "connectorId": 1,
            "transactionId": self.transaction_id,
            "meterValue": [{"timestamp": now_text(), "sampledValue": sampled}],
        }
        return "MeterValues", "MeterValues", payload

    # --- the same in both versions ---------------------------------------------------------------------

    async def boot(self) -> None:
        boot = await self.call("BootNotification", self.boot_payload())
        if boot.get("status") != "Accepted":
            raise RuntimeError(f"BootNotification {boot.get('status')}")

    async def admit(self, delay: float, charging: bool) -> bool:
        """Connect, boot, report the connector and, if `charging`, start a transaction. True once booted: a
        charger whose status or transaction failed (counted) still takes part, with Heartbeats only."""
        await asyncio.sleep(delay)
        self.run.first_connect = self.run.first_connect or time.time()
        try:
            await self.connect(self.run.connected_at)
            asyncio.get_running_loop().create_task(self.reader())
            await self.boot()
        except Exception as exc:  # reported; this charger sits the steady window out
            self.run.error(f"{self.identity}: admission: {type(exc).__name__}: {exc}")
            return False
        self.run.booted += 1
        self.run.booted_numbers.append(self.number)
        self.run.last_boot = time.time()
        try:
            await self.call("StatusNotification", self.status_payload(False))
            if charging:
                await self.start_transaction()
                await self.call("StatusNotification", self.status_payload(True))
        except Exception as exc:
            self.run.error(f"{self.identity}: after boot: {type(exc).__name__}: {exc}")
        return True

    async def rejoin(self) -> bool:
        """--storm: once this charger's connection is gone (its server killed), connect again and boot, as a
        real charger does after a CSMS restart; counted in `run.rebooted`."""
        try:
            async with asyncio.timeout(REJOIN_WAIT_S):
                await self.ws.wait_closed()
        except TimeoutError:
            self.run.error(f"{self.identity}: rejoin: the connection was not closed by the kill")
            return False
        self.pending.clear()
        try:
            await self.connect(self.run.reconnected_at)
            asyncio.get_running_loop().create_task(self.reader())
            await self.boot()
            self.run.rebooted += 1
            self.run.last_reboot = time.time()
            return True
        except Exception as exc:
            self.run.error(f"{self.identity}: rejoin: {type(exc).__name__}: {exc}")
            return False

    async def send(self, message: tuple[str, str, dict]) -> bool:
        """One charger-initiated message; True once acknowledged (a failure is counted, never raised)."""
        action, label, payload = message
        try:
            await self.call(action, payload, label=label)
        except Exception as exc:  # a CALLERROR, a timeout or a closed connection: counted, go on
            self.run.error(f"{self.identity}: {label}: {type(exc).__name__}: {exc}")
            return False
        self.run.acked[self.key(label)] += 1
        return True

    async def every(self, message, period: float, start: float, until: float) -> None:
        """Open loop: the n-th send is due at start + phase + n * period, whatever the answers took."""
        due = start + random.uniform(0, period)
        while due < until:
            wait = due - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            due += period
            if not await self.send(message()) and self.ws.close_code is not None:
                return

    def heartbeat_message(self) -> tuple[str, str, dict]:
        return "Heartbeat", "Heartbeat", {}

    async def steady(self, start: float, until: float, heartbeat_s: float, meter_s: float) -> None:
        loops = [self.every(self.heartbeat_message, heartbeat_s, start, until)]
        if self.transaction_id is not None:
            loops.append(self.every(self.meter_message, meter_s, start, until))
        await asyncio.gather(*loops)

    async def warm(self) -> None:
        """scale.py --warm-up: each kind of steady message once; the charger then stays, idle."""
        await self.send(self.heartbeat_message())
        if self.transaction_id is not None:
            await self.send(self.meter_message())


class ChargerV201(Charger):
    """One OCPP 2.0.1 charger: the same life as the 1.6 one in 2.0.1 messages (B01 BootNotification, G01
    StatusNotification, E01 TransactionEvent Started with the token, EVSE and Transaction.Begin reading, then
    Updated with MeterValuePeriodic sampled values, G02 Heartbeat)."""

    version = V201
    subprotocol = "ocpp2.0.1"

    def __init__(self, url: str, number: int, run: "ClientRun"):
        super().__init__(url, number, run)
        self.seq_no = 0

    def boot_payload(self) -> dict:
        return {"chargingStation": {"vendorName": "CPMS", "model": "Scale"}, "reason": "PowerUp"}

    def status_payload(self, charging: bool) -> dict:
        return {
            "timestamp": now_text(),
            "connectorStatus": "Occupied" if charging else "Available",
            "evseId": 1,
            "connectorId": 1,
        }

    def transaction_event(self, event_type: str, trigger: str, sampled: list[dict], **fields) -> dict:
        payload = {
            "eventType": event_type,
            "timestamp": now_text(),
            "triggerReason": trigger,
            "seqNo": self.seq_no,
            "transactionInfo": {"transactionId": self.transaction_id, "chargingState": "Charging"},
            "meterValue": [{"timestamp": now_text(), "sampledValue": sampled}],
            **fields,
        }
        self.seq_no += 1
        return payload

    async def start_transaction(self) -> None:
        self.transaction_id = uuid.uuid4().hex[:20]
        begin = {
            "value": self.register_wh,
            "context": "Transaction.Begin",
            "measurand": "Energy.Active.Import.Register",
            "unitOfMeasure": {"unit": "Wh"},
        }
        try:
            started = await self.call(
                "TransactionEvent",
                self.transaction_event(
                    "Started",
                    "Authorized",
                    [begin][:STARTED_SAMPLED_VALUES],
                    idToken={"idToken": ID_TAG, "type": "ISO14443"},
                    evse={"id": 1, "connectorId": 1},
                ),
                label="TransactionEvent.Started",
            )
            if started.get("idTokenInfo", {}).get("status") != "Accepted":
                raise RuntimeError(f"TransactionEvent Started {started.get('idTokenInfo')}")
        except Exception:
            self.transaction_id = (
                None  # no Updated events for a transaction the charger does not know started
            )
            raise
        self.run.acked[self.key("TransactionEvent.Started")] += 1

    def meter_message(self) -> tuple[str, str, dict]:
        sampled = []
        for measurand, phase, value, unit in self.readings():
            item = {
                "value": value,
                "context": "Sample.Periodic",
                "measurand": measurand,
                "unitOfMeasure": {"unit": unit},
            }
            sampled.append({**item, "phase": phase} if phase else item)
        payload = self.transaction_event("Updated", "MeterValuePeriodic", sampled)
        return "TransactionEvent", "TransactionEvent.Updated", payload


class ClientRun:
    def __init__(self):
        self.first_connect = 0.0
        self.last_boot = 0.0
        self.booted = 0
        self.booted_numbers: list[int] = []
        self.rebooted = 0
        self.last_reboot = 0.0
        self.connected_at: list[float] = []  # wall clock of each admitted connection
        self.reconnected_at: list[float] = []  # the same after the --storm kill
        self.failures = 0
        self.failure_samples: list[str] = []
        self.errors = 0
        self.error_samples: list[str] = []
        self.callerrors: collections.Counter[str] = collections.Counter()
        self.callerror_samples: list[str] = []
        self.csms_calls: collections.Counter[str] = collections.Counter()
        self.acked: collections.Counter[str] = collections.Counter()
        # "<label> <version>" -> list of (perf_counter at send, seconds); the steady window is cut out later.
        self.latencies: dict[str, list[tuple[float, float]]] = {}

    def latency(self, key: str, seconds: float, started: float) -> None:
        self.latencies.setdefault(key, []).append((started, seconds))

    def failure(self, text: str) -> None:
        self.failures += 1
        if len(self.failure_samples) < 5:
            self.failure_samples.append(text)

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(text)

    def callerror(self, key: str, text: str) -> None:
        self.callerrors[key] += 1
        if len(self.callerror_samples) < 5:
            self.callerror_samples.append(text[:300])


async def storm_progress(run: ClientRun) -> None:
    while True:
        await asyncio.sleep(1.0)
        print(f"REJOINING {run.rebooted} {run.failures}", flush=True)


ADMISSION_LABELS = {
    "connect",
    "BootNotification",
    "StatusNotification",
    "StartTransaction",
    "TransactionEvent.Started",
}


async def close_all(chargers: list[Charger]) -> None:
    try:
        async with asyncio.timeout(30):
            await asyncio.gather(
                *(c.ws.close() for c in chargers if c.ws is not None), return_exceptions=True
            )
    except TimeoutError:
        pass  # the parent stops this process anyway


async def client_main(args) -> None:
    raise_fd_limit()
    run = ClientRun()
    ports = [int(p) for p in args.ports.split(",")]
    loop = asyncio.get_running_loop()
    rng = random.Random(args.first)
    chargers = []
    admissions = []
    for n in range(args.first, args.first + args.count):
        kind = ChargerV201 if is_v201(n, args.v201) else Charger
        charger = kind(f"ws://{HOST}:{ports[n % len(ports)]}/ocpp", n, run)
        charging = args.warm_up_client or rng.random() < args.charging
        delay = args.ramp_s * (n - 1) / max(1, args.total)
        chargers.append(charger)
        admissions.append(loop.create_task(charger.admit(delay, charging)))

    async def progress() -> None:
        while True:
            await asyncio.sleep(2.0)
            print(f"PROGRESS {run.booted} {run.failures}", flush=True)

    reporter = loop.create_task(progress())
    admitted = await asyncio.gather(*admissions)
    reporter.cancel()
    if args.warm_up_client:
        await asyncio.gather(*(c.warm() for c, ok in zip(chargers, admitted, strict=True) if ok))
        print(f"WARM {run.booted} {run.errors} {run.callerrors.total()}", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)  # END, or the parent is gone
        await close_all(chargers)
        print("DONE", flush=True)
        return
    # The chargers the --commands load may address (the parent reads it after ADMITTED).
    Path(args.result_file).with_suffix(".booted.json").write_text(json.dumps(run.booted_numbers))
    print(f"ADMITTED {run.booted} {run.first_connect} {run.last_boot} {run.failures}", flush=True)

    # The parent answers with the wall-clock start and end of the steady window, and the end of the traffic
    # (later when remote commands follow the window: the chargers keep sending while they are answered).
    line = await loop.run_in_executor(None, sys.stdin.readline)
    start, window_end, until = (float(x) for x in line.split()[1:4])
    perf_offset = time.perf_counter() - time.time()
    await asyncio.gather(
        *(
            c.steady(start, until, args.heartbeat_s, args.meter_s)
            for c, ok in zip(chargers, admitted, strict=True)
            if ok
        )
    )
    window = (start + perf_offset, window_end + perf_offset)

    def label(key: str) -> str:
        return key.rsplit(" ", 1)[0]

    result = {
        "booted": run.booted,
        "failures": run.failures,
        "failure_samples": run.failure_samples,
        "errors": run.errors,
        "error_samples": run.error_samples,
        "callerrors": dict(run.callerrors),
        "callerror_samples": run.callerror_samples,
        "csms_calls": dict(run.csms_calls),
        "acked": dict(run.acked),
        "connected_at": run.connected_at,
        "admission": {k: [s for _, s in v] for k, v in run.latencies.items() if label(k) in ADMISSION_LABELS},
        "steady": {
            k: [s for t, s in v if window[0] <= t < window[1]]
            for k, v in run.latencies.items()
            if label(k) not in ADMISSION_LABELS and not label(k).endswith(".triggered")
        },
        # The messages remote commands asked for (TriggerMessage), whenever they came.
        "triggered": {
            k: [s for _, s in v] for k, v in run.latencies.items() if label(k).endswith(".triggered")
        },
    }
    # The chargers stay connected (and answer commands) until the parent says STORM or END: only then are the
    # commands they answered all counted.
    print("STEADY_DONE", flush=True)
    word = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
    result["csms_calls"] = dict(run.csms_calls)
    result["triggered"] = {
        k: [s for _, s in v] for k, v in run.latencies.items() if label(k).endswith(".triggered")
    }
    Path(args.result_file).write_text(json.dumps(result))
    if word == "STORM":
        # The parent kills and restarts the servers once every client watches its connections.
        rejoins = [loop.create_task(c.rejoin()) for c, ok in zip(chargers, admitted, strict=True) if ok]
        errors_before, run.error_samples = run.errors, []
        print("STORM_READY", flush=True)
        reporter = loop.create_task(storm_progress(run))
        await asyncio.gather(*rejoins)
        reporter.cancel()
        storm = {
            "reconnected_at": run.reconnected_at,
            "errors": run.errors - errors_before,
            "error_samples": run.error_samples,
        }
        Path(args.result_file).with_suffix(".storm.json").write_text(json.dumps(storm))
        print(f"REJOINED {run.rebooted} {run.last_reboot} {run.failures}", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)  # END
    await close_all(chargers)
    print("DONE", flush=True)


# ---------------------------------------------------------------- the raw ceiling (--ceiling)


async def ceiling_server(port: int) -> None:
    """A bare websockets server that answers every call with a canned CALLRESULT: what the transport alone costs.
    It speaks both versions' shapes where the generator checks them (Boot, the 1.6 StartTransaction, the
    2.0.1 TransactionEvent with a token)."""
    import itertools

    import orjson
    from websockets.asyncio.server import serve

    transaction_ids = itertools.count(1)

    async def answer(ws) -> None:
        async for text in ws:
            frame = orjson.loads(text)
            if frame[0] != 2:
                continue  # a charger's answer to a call (none are sent here)
            action, payload = frame[2], frame[3]
            if action == "BootNotification":
                result = {"status": "Accepted", "currentTime": now_text(), "interval": 300}
            elif action == "StartTransaction":
                result = {"transactionId": next(transaction_ids), "idTagInfo": {"status": "Accepted"}}
            elif action == "TransactionEvent" and "idToken" in payload:
                result = {"idTokenInfo": {"status": "Accepted"}}
            elif action == "Heartbeat":
                result = {"currentTime": now_text()}
            else:
                result = {}
            await ws.send(orjson.dumps([3, frame[1], result]).decode())

    async with serve(
        answer,
        HOST,
        port,
        subprotocols=["ocpp1.6", "ocpp2.0.1"],
        compression=None,
        ping_interval=None,
        backlog=4096,
    ):
        await asyncio.Future()
