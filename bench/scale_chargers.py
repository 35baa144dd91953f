"""The charger side of bench/scale.py: N OCPP 1.6J chargers per client process (asyncio + websockets, frames
built by hand), and the bare websockets server of --ceiling. Run by scale.py as subprocesses, never alone."""

import asyncio
import base64
import datetime as dt
import json
import random
import sys
import time
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
CONNECT_ATTEMPTS = 8


# Rows per acknowledged MeterValues: one per sampled value (sessions.MeterValue).
SAMPLED_VALUES = 5


def now_text() -> str:
    moment = dt.datetime.now(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# ---------------------------------------------------------------- client process


class Charger:
    """One OCPP 1.6J charger. A reader task matches answers to calls, so Heartbeat and MeterValues overlap."""

    def __init__(self, url: str, ident: str, run: "ClientRun"):
        self.url = f"{url}/{ident}"
        self.identity = ident
        self.run = run
        self.ws = None
        self.next_id = 0
        self.pending: dict[str, asyncio.Future] = {}
        self.transaction_id = None
        self.register_wh = 1_000_000

    async def reader(self) -> None:
        import orjson

        try:
            async for text in self.ws:
                frame = orjson.loads(text)
                if frame[0] == 2:  # a CSMS call: not simulated
                    await self.ws.send(orjson.dumps([4, frame[1], "NotImplemented", "bench", {}]).decode())
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

    async def call(self, action: str, payload: dict) -> dict:
        import orjson

        self.next_id += 1
        unique_id = str(self.next_id)
        future = asyncio.get_running_loop().create_future()
        self.pending[unique_id] = future
        started = time.perf_counter()
        await self.ws.send(orjson.dumps([2, unique_id, action, payload]).decode())
        async with asyncio.timeout(RESPONSE_TIMEOUT_S):
            frame = await future
        self.run.latency(action, time.perf_counter() - started, started)
        if frame[0] == 4:
            raise RuntimeError(f"{action}: CALLERROR {frame[2]} {frame[3]}")
        return frame[2]

    async def connect(self) -> None:
        from websockets.asyncio.client import connect

        auth = base64.b64encode(f"{self.identity}:{PASSWORD}".encode()).decode()
        for attempt in range(CONNECT_ATTEMPTS):
            started = time.perf_counter()
            try:
                self.ws = await connect(
                    self.url,
                    subprotocols=["ocpp1.6"],
                    additional_headers={"Authorization": f"Basic {auth}"},
                    open_timeout=30,
                    compression=None,
                    proxy=None,
                    ping_interval=None,
                    max_queue=16,
                )
                self.run.latency("connect", time.perf_counter() - started, started)
                return
            except Exception as exc:  # refused, timed out, reset: counted, retried like a charger would
                self.run.failure(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(min(30.0, 1.0 * 2**attempt) * random.uniform(0.5, 1.0))
        raise RuntimeError("gave up connecting")

    async def admit(self, delay: float, charging: bool) -> bool:
        await asyncio.sleep(delay)
        self.run.first_connect = self.run.first_connect or time.time()
        try:
            await self.connect()
            asyncio.get_running_loop().create_task(self.reader())
            boot = await self.call(
                "BootNotification", {"chargePointVendor": "CPMS", "chargePointModel": "Scale"}
            )
            if boot.get("status") != "Accepted":
                raise RuntimeError(f"BootNotification {boot.get('status')}")
            self.run.booted += 1
            self.run.last_boot = time.time()
            await self.call(
                "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
            )
            if charging:
                start = await self.call(
                    "StartTransaction",
                    {
                        "connectorId": 1,
                        "idTag": ID_TAG,
                        "meterStart": self.register_wh,
                        "timestamp": now_text(),
                    },
                )
                self.transaction_id = start["transactionId"]
                self.run.acked["StartTransaction"] += 1
                await self.call(
                    "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}
                )
            return True
        except Exception as exc:  # reported; this charger sits the steady window out
            self.run.error(f"{self.identity}: admission: {type(exc).__name__}: {exc}")
            return False

    async def rejoin(self) -> bool:
        """--storm: once this charger's connection is gone (its server killed), connect again and boot, as a
        real charger does after a CSMS restart; counted in `run.rebooted`."""
        await self.ws.wait_closed()
        self.pending.clear()
        try:
            await self.connect()
            asyncio.get_running_loop().create_task(self.reader())
            boot = await self.call(
                "BootNotification", {"chargePointVendor": "CPMS", "chargePointModel": "Scale"}
            )
            if boot.get("status") != "Accepted":
                raise RuntimeError(f"BootNotification {boot.get('status')}")
            self.run.rebooted += 1
            self.run.last_reboot = time.time()
            return True
        except Exception as exc:
            self.run.error(f"{self.identity}: rejoin: {type(exc).__name__}: {exc}")
            return False

    def meter_values(self) -> dict:
        self.register_wh += 92
        readings = [
            ("Energy.Active.Import.Register", None, self.register_wh, "Wh"),
            ("Power.Active.Import", None, 11040, "W"),
            *(("Current.Import", phase, 16.0, "A") for phase in ("L1", "L2", "L3")),
        ]
        sampled = []
        for measurand, phase, value, unit in readings[:SAMPLED_VALUES]:
            item = {"value": str(value), "unit": unit, "context": "Sample.Periodic", "measurand": measurand}
            sampled.append({**item, "phase": phase} if phase else item)
        return {
            "connectorId": 1,
            "transactionId": self.transaction_id,
            "meterValue": [{"timestamp": now_text(), "sampledValue": sampled}],
        }

    async def every(self, action: str, period: float, payload, start: float, until: float) -> None:
        """Open loop: the n-th send is due at start + phase + n * period, whatever the answers took."""
        due = start + random.uniform(0, period)
        while True:
            wait = due - time.time()
            if due >= until:
                return
            if wait > 0:
                await asyncio.sleep(wait)
            due += period
            try:
                await self.call(action, payload())
            except Exception as exc:  # a CALLERROR, a timeout or a closed connection: counted, go on
                self.run.error(f"{self.identity}: {action}: {type(exc).__name__}: {exc}")
                if self.ws.close_code is not None:
                    return
                continue
            self.run.acked[action] += 1

    async def steady(self, start: float, until: float, heartbeat_s: float, meter_s: float) -> None:
        loops = [self.every("Heartbeat", heartbeat_s, dict, start, until)]
        if self.transaction_id is not None:
            loops.append(self.every("MeterValues", meter_s, self.meter_values, start, until))
        await asyncio.gather(*loops)


class ClientRun:
    def __init__(self):
        self.first_connect = 0.0
        self.last_boot = 0.0
        self.booted = 0
        self.rebooted = 0
        self.last_reboot = 0.0
        self.failures = 0
        self.failure_samples: list[str] = []
        self.errors = 0
        self.error_samples: list[str] = []
        self.acked = {"StartTransaction": 0, "MeterValues": 0, "Heartbeat": 0}
        # action -> list of (perf_counter at send, seconds); the steady window is cut out afterwards.
        self.latencies: dict[str, list[tuple[float, float]]] = {}
        self.window: tuple[float, float] | None = None

    def latency(self, action: str, seconds: float, started: float) -> None:
        self.latencies.setdefault(action, []).append((started, seconds))

    def failure(self, text: str) -> None:
        self.failures += 1
        if len(self.failure_samples) < 5:
            self.failure_samples.append(text)

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(text)


async def storm_progress(run: ClientRun) -> None:
    while True:
        await asyncio.sleep(1.0)
        print(f"REJOINING {run.rebooted} {run.failures}", flush=True)


async def client_main(args) -> None:
    raise_fd_limit()
    run = ClientRun()
    ports = [int(p) for p in args.ports.split(",")]
    loop = asyncio.get_running_loop()
    rng = random.Random(args.first)
    chargers = []
    admissions = []
    for n in range(args.first, args.first + args.count):
        charger = Charger(f"ws://{HOST}:{ports[n % len(ports)]}/ocpp", identity(n), run)
        charging = rng.random() < args.charging
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
    print(f"ADMITTED {run.booted} {run.first_connect} {run.last_boot} {run.failures}", flush=True)

    # The parent answers with the wall-clock start and end of the steady window.
    line = await loop.run_in_executor(None, sys.stdin.readline)
    start, until = (float(x) for x in line.split()[1:3])
    perf_offset = time.perf_counter() - time.time()
    await asyncio.gather(
        *(
            c.steady(start, until, args.heartbeat_s, args.meter_s)
            for c, ok in zip(chargers, admitted, strict=True)
            if ok
        )
    )
    window = (start + perf_offset, until + perf_offset)
    result = {
        "booted": run.booted,
        "failures": run.failures,
        "failure_samples": run.failure_samples,
        "errors": run.errors,
        "error_samples": run.error_samples,
        "acked": run.acked,
        "admission": {
            a: [s for _, s in v] for a, v in run.latencies.items() if a not in {"Heartbeat", "MeterValues"}
        },
        "steady": {
            a: [s for t, s in v if window[0] <= t < window[1]]
            for a, v in run.latencies.items()
            if a in {"Heartbeat", "MeterValues"}
        },
    }
    Path(args.result_file).write_text(json.dumps(result))
    if args.storm:
        # The parent kills and restarts the servers once every client watches its connections.
        rejoins = [loop.create_task(c.rejoin()) for c, ok in zip(chargers, admitted, strict=True) if ok]
        print("STORM_READY", flush=True)
        reporter = loop.create_task(storm_progress(run))
        await asyncio.gather(*rejoins)
        reporter.cancel()
        print(f"REJOINED {run.rebooted} {run.last_reboot} {run.failures}", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)  # END
    for charger in chargers:
        if charger.ws is not None:
            await charger.ws.close()
    print("DONE", flush=True)


# ---------------------------------------------------------------- the raw ceiling (--ceiling)


async def ceiling_server(port: int) -> None:
    """A bare websockets server that answers every call with a canned CALLRESULT: what the transport alone costs."""
    import itertools

    import orjson
    from websockets.asyncio.server import serve

    transaction_ids = itertools.count(1)

    async def answer(ws) -> None:
        async for text in ws:
            frame = orjson.loads(text)
            action = frame[2]
            if action == "BootNotification":
                payload = {"status": "Accepted", "currentTime": now_text(), "interval": 300}
            elif action == "StartTransaction":
                payload = {"transactionId": next(transaction_ids), "idTagInfo": {"status": "Accepted"}}
            elif action == "Heartbeat":
                payload = {"currentTime": now_text()}
            else:
                payload = {}
            await ws.send(orjson.dumps([3, frame[1], payload]).decode())

    async with serve(
        answer, HOST, port, subprotocols=["ocpp1.6"], compression=None, ping_interval=None, backlog=4096
    ):
        await asyncio.Future()


# ---------------------------------------------------------------- parent process
