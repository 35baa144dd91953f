"""The simulated chargers of the benchmarks' client processes: just enough OCPP 1.6J / 2.0.1 with frames built by
hand (orjson), so that the client is not the bottleneck (ocpp_ingest.py, command_rtt.py)."""

import array
import asyncio
import base64
import datetime as dt
import itertools
import time
import uuid
from dataclasses import dataclass, field

from harness import ID_TAG, PASSWORD

RESPONSE_TIMEOUT_S = 30.0


SAMPLED_VALUES_PER_MESSAGE = 5


def _now_text() -> str:
    moment = dt.datetime.now(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class ClientStats:
    connected: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    messages: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies: array.array = field(default_factory=lambda: array.array("d"))

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(text)


class BenchCharger:
    """One charger speaking just enough OCPP 1.6J, with frames built by hand (orjson)."""

    subprotocol = "ocpp1.6"
    loop_action = "MeterValues"

    def __init__(self, url: str, ident: str, stats: ClientStats):
        self.url = f"{url}/{ident}"
        self.identity = ident
        self.stats = stats
        self.ws = None
        self.ids = itertools.count(1)
        self.transaction_id: int | str | None = None
        self.register_wh = 1_000_000

    async def call(self, action: str, payload: dict):
        import orjson

        unique_id = str(next(self.ids))
        await self.ws.send(orjson.dumps([2, unique_id, action, payload]).decode())
        async with asyncio.timeout(RESPONSE_TIMEOUT_S):
            while True:
                frame = orjson.loads(await self.ws.recv())
                if frame[0] == 2:  # a CSMS call: not simulated here
                    await self.ws.send(
                        orjson.dumps([4, frame[1], "NotImplemented", "bench client", {}]).decode()
                    )
                    continue
                if frame[1] != unique_id:
                    continue
                if frame[0] == 4:
                    raise RuntimeError(f"{action}: CALLERROR {frame[2]} {frame[3]}")
                return frame[2]

    async def open(self, slots: asyncio.Semaphore) -> None:
        from websockets.asyncio.client import connect

        auth = base64.b64encode(f"{self.identity}:{PASSWORD}".encode()).decode()
        last_error = None
        for attempt in range(3):
            try:
                async with slots:
                    self.ws = await connect(
                        self.url,
                        subprotocols=[self.subprotocol],
                        additional_headers={"Authorization": f"Basic {auth}"},
                        open_timeout=30,
                        compression=None,
                        proxy=None,
                        ping_interval=None,
                        max_queue=4,
                    )
                break
            except Exception as exc:  # refused, timed out, reset: retried, then reported
                last_error = exc
                await asyncio.sleep(0.5 * (attempt + 1))
        else:
            raise RuntimeError(f"connect: {type(last_error).__name__}: {last_error}")
        boot = await self.call("BootNotification", self.boot_payload())
        if boot.get("status") != "Accepted":
            raise RuntimeError(f"BootNotification {boot.get('status')}")
        await self.start_transaction()

    def boot_payload(self) -> dict:
        return {"chargePointVendor": "CPMS", "chargePointModel": "Bench"}

    async def start_transaction(self) -> None:
        await self.call(
            "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Preparing"}
        )
        start = await self.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": ID_TAG, "meterStart": self.register_wh, "timestamp": _now_text()},
        )
        self.transaction_id = start["transactionId"]
        await self.call(
            "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}
        )

    def readings(self) -> list[tuple[str, str | None, int | float, str]]:
        """(measurand, phase, value, unit): SAMPLED_VALUES_PER_MESSAGE of them."""
        return [
            ("Energy.Active.Import.Register", None, self.register_wh, "Wh"),
            ("Power.Active.Import", None, 11040, "W"),
            *(("Current.Import", phase, 16.0, "A") for phase in ("L1", "L2", "L3")),
        ]

    def sampled_value(
        self,
        measurand: str,
        phase: str | None,
        value: int | float,
        unit: str,
        context: str = "Sample.Periodic",
    ) -> dict:
        sampled = {**self.value_and_unit(value, unit), "context": context, "measurand": measurand}
        return {**sampled, "phase": phase} if phase else sampled

    def value_and_unit(self, value: int | float, unit: str) -> dict:
        return {"value": str(value), "unit": unit}

    def meter_value(self) -> dict:
        return {"timestamp": _now_text(), "sampledValue": [self.sampled_value(*r) for r in self.readings()]}

    def loop_payload(self) -> dict:
        self.register_wh += 10
        return {"connectorId": 1, "transactionId": self.transaction_id, "meterValue": [self.meter_value()]}

    async def closed_loop(self, until: float) -> None:
        stats = self.stats
        clock = time.perf_counter
        while clock() < until:
            payload = self.loop_payload()
            started = clock()
            try:
                await self.call(self.loop_action, payload)
            except Exception as exc:  # a CALLERROR, a timeout or a closed connection ends this charger
                stats.error(f"{self.identity}: {type(exc).__name__}: {exc}")
                return
            stats.latencies.append(clock() - started)
            stats.messages += 1

    async def stop_transaction(self) -> None:
        await self.call(
            "StopTransaction",
            {
                "transactionId": self.transaction_id,
                "meterStop": self.register_wh,
                "timestamp": _now_text(),
                "reason": "Local",
            },
        )

    async def close(self) -> None:
        if self.ws is None:
            return
        try:
            if self.transaction_id is not None:
                await self.stop_transaction()
        except Exception as exc:  # the figures are already taken; note it and close anyway
            self.stats.error(f"{self.identity}: stop: {exc}")
        finally:
            await self.ws.close()


class BenchChargerV201(BenchCharger):
    """The same charger in OCPP 2.0.1: one transaction of TransactionEvents (Started, Updated..., Ended)."""

    subprotocol = "ocpp2.0.1"
    loop_action = "TransactionEvent"

    def __init__(self, url: str, ident: str, stats: ClientStats):
        super().__init__(url, ident, stats)
        self.seq_no = 0

    def boot_payload(self) -> dict:
        return {"chargingStation": {"vendorName": "CPMS", "model": "Bench"}, "reason": "PowerUp"}

    def transaction_event(self, event_type: str, trigger_reason: str, **fields) -> dict:
        payload = {
            "eventType": event_type,
            "timestamp": _now_text(),
            "triggerReason": trigger_reason,
            "seqNo": self.seq_no,
            "transactionInfo": {"transactionId": self.transaction_id, **fields.pop("info", {})},
            **fields,
        }
        self.seq_no += 1
        return payload

    async def start_transaction(self) -> None:
        await self.call(
            "StatusNotification",
            {"timestamp": _now_text(), "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
        )
        # Unique across runs: the bench database keeps the sessions of earlier runs.
        self.transaction_id = uuid.uuid4().hex[:20]
        register = self.sampled_value(
            "Energy.Active.Import.Register", None, self.register_wh, "Wh", context="Transaction.Begin"
        )
        begin = {"timestamp": _now_text(), "sampledValue": [register]}
        await self.call(
            "TransactionEvent",
            self.transaction_event(
                "Started",
                "Authorized",
                evse={"id": 1, "connectorId": 1},
                idToken={"idToken": ID_TAG, "type": "ISO14443"},
                meterValue=[begin],
            ),
        )

    def value_and_unit(self, value: int | float, unit: str) -> dict:
        return {"value": value, "unitOfMeasure": {"unit": unit}}

    def loop_payload(self) -> dict:
        self.register_wh += 10
        return self.transaction_event(
            "Updated",
            "MeterValuePeriodic",
            info={"chargingState": "Charging"},
            meterValue=[self.meter_value()],
        )

    async def stop_transaction(self) -> None:
        await self.call(
            "TransactionEvent",
            self.transaction_event("Ended", "StopAuthorized", info={"stoppedReason": "Local"}),
        )


class BenchChargerStatus(BenchCharger):
    """OCPP 1.6 with StatusNotification in the loop (Charging <-> SuspendedEV, every few a Faulted and back): the
    status path, with its history row, the incident check and the portal's live-status publish."""

    loop_action = "StatusNotification"

    def __init__(self, url: str, ident: str, stats: ClientStats):
        super().__init__(url, ident, stats)
        self.statuses = itertools.cycle(
            ["SuspendedEV", "Charging", "SuspendedEV", "Charging", "Faulted", "Charging"]
        )

    def loop_payload(self) -> dict:
        status = next(self.statuses)
        error = "GroundFailure" if status == "Faulted" else "NoError"
        return {"connectorId": 1, "errorCode": error, "status": status, "timestamp": _now_text()}


CHARGERS = {"1.6": BenchCharger, "2.0.1": BenchChargerV201, "1.6-status": BenchChargerStatus}
