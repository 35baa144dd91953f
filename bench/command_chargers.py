"""The charger client process of command_rtt.py: N simulated OCPP 1.6 chargers that boot and answer every CSMS
CALL with a valid CALLRESULT (CHARGER_ANSWERS), counting what they answered."""

import asyncio
import json
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field

from harness import identity, raise_fd_limit
from ingest_chargers import BenchCharger, ClientStats

# The server tells chargers this interval at boot: long enough that nobody expects a heartbeat in a run.
HEARTBEAT_INTERVAL_S = 3600
CLIENT_IDLE_TIMEOUT_S = 3600.0

CHARGER_ANSWERS: dict[str, dict] = {
    "ClearCache": {"status": "Accepted"},
    "GetConfiguration": {
        "configurationKey": [
            {"key": "HeartbeatInterval", "readonly": False, "value": str(HEARTBEAT_INTERVAL_S)},
            {"key": "MeterValueSampleInterval", "readonly": False, "value": "60"},
            {"key": "NumberOfConnectors", "readonly": True, "value": "1"},
        ],
        "unknownKey": [],
    },
    "ChangeConfiguration": {"status": "Accepted"},
    "Reset": {"status": "Accepted"},
    "TriggerMessage": {"status": "Accepted"},
    "ChangeAvailability": {"status": "Accepted"},
    "UnlockConnector": {"status": "Unlocked"},
    "DataTransfer": {"status": "Accepted"},
    "GetLocalListVersion": {"listVersion": 0},
}


@dataclass
class Tally:
    """What the chargers of one client process did with the CSMS's calls."""

    answered: Counter = field(default_factory=Counter)
    not_implemented: int = 0
    closed: int = 0
    samples: list[str] = field(default_factory=list)
    stopping: bool = False

    def note(self, text: str) -> None:
        if len(self.samples) < 10:
            self.samples.append(text)

    def snapshot(self) -> dict:
        return {
            "answered": sum(self.answered.values()),
            "by_action": dict(self.answered),
            "not_implemented": self.not_implemented,
            "closed": self.closed,
            "samples": self.samples,
        }


class CommandCharger(BenchCharger):
    """A booted OCPP 1.6 charger that answers every CSMS CALL it knows (CHARGER_ANSWERS)."""

    async def start_transaction(self) -> None:
        # open() calls this after BootNotification: no transaction here, only the connector's status.
        await self.call(
            "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
        )

    async def serve(self, tally: Tally) -> None:
        import orjson
        from websockets.exceptions import ConnectionClosed

        ws = self.ws
        try:
            async for raw in ws:
                frame = orjson.loads(raw)
                if frame[0] != 2:
                    continue  # the CSMS's answer to a Heartbeat we sent for a TriggerMessage
                unique_id, action, payload = frame[1], frame[2], frame[3]
                answer = CHARGER_ANSWERS.get(action)
                if answer is None:
                    await ws.send(
                        orjson.dumps(
                            [4, unique_id, "NotImplemented", f"bench charger: {action}", {}]
                        ).decode()
                    )
                    tally.not_implemented += 1
                    tally.note(f"{self.identity}: {action} not implemented")
                    continue
                await ws.send(orjson.dumps([3, unique_id, answer]).decode())
                tally.answered[action] += 1
                if action == "TriggerMessage" and payload.get("requestedMessage") == "Heartbeat":
                    # OCPP 1.6 TriggerMessage: the charger then sends the message it was asked for.
                    await ws.send(orjson.dumps([2, f"t{next(self.ids)}", "Heartbeat", {}]).decode())
        except ConnectionClosed as exc:
            if not tally.stopping:
                tally.closed += 1
                tally.note(f"{self.identity}: connection closed: {exc}")
            return
        if not tally.stopping:
            tally.closed += 1
            tally.note(f"{self.identity}: the server closed the connection")


def _stdin_lines(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue) -> None:
    # A daemon thread, not run_in_executor: a readline still blocked at exit must not hold the loop.
    for line in sys.stdin:
        loop.call_soon_threadsafe(lines.put_nowait, line.strip())
    loop.call_soon_threadsafe(lines.put_nowait, "")


async def client_main(args) -> None:
    stats = ClientStats()
    tally = Tally()
    chargers = [
        CommandCharger(args.url, identity(n), stats) for n in range(args.first, args.first + args.count)
    ]
    slots = asyncio.Semaphore(args.connect_concurrency)

    async def open_one(charger: CommandCharger) -> bool:
        try:
            await charger.open(slots)
        except Exception as exc:  # counted as a failed charger, the run goes on with the others
            stats.failed += 1
            if len(stats.failures) < 10:
                stats.failures.append(f"{charger.identity}: {exc}")
            if charger.ws is not None:
                await charger.ws.close()
                charger.ws = None
            return False
        stats.connected += 1
        return True

    async with asyncio.timeout(args.connect_timeout):
        opened = await asyncio.gather(*(open_one(c) for c in chargers))
    ready = [c for c, ok in zip(chargers, opened, strict=True) if ok]
    serving = [asyncio.create_task(c.serve(tally)) for c in ready]
    ready_line = {
        "connected": stats.connected,
        "failed": stats.failed,
        "failures": stats.failures,
        "identities": [c.identity for c in ready],
    }
    print("READY " + json.dumps(ready_line), flush=True)

    lines: asyncio.Queue[str] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    threading.Thread(target=_stdin_lines, args=(loop, lines), daemon=True).start()
    while True:
        try:
            word = await asyncio.wait_for(lines.get(), timeout=CLIENT_IDLE_TIMEOUT_S)
        except TimeoutError:
            break
        if word == "COUNT":
            print("COUNT " + json.dumps(tally.snapshot()), flush=True)
        else:
            break  # STOP, or the parent is gone (end of stdin)
    tally.stopping = True
    async with asyncio.timeout(30):
        await asyncio.gather(*(c.ws.close() for c in ready), return_exceptions=True)
    for task in serving:
        task.cancel()
    await asyncio.gather(*serving, return_exceptions=True)
    print("BYE " + json.dumps(tally.snapshot()), flush=True)


def run_client(args) -> None:
    raise_fd_limit()
    try:
        import uvloop  # optional: a faster client loop when installed

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(client_main(args))
