"""A minimal OCPP 1.6 charger for drills: sends exactly the frames the test asks for and reports each answer.

The simulator (`cpms.simulator`) plays whole sessions; a drill around an outage needs to know, for
one message sent at one moment, whether it was answered with a CALLRESULT (the CSMS promises the data is
committed), a CALLERROR, or nothing.
"""

import asyncio
import base64
import datetime as dt
import itertools
import json
import time
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect

CALL_RESULT = 3
CALL_ERROR = 4
NO_ANSWER = 0


def ocpp_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Answer:
    kind: int  # CALL_RESULT, CALL_ERROR or NO_ANSWER
    payload: dict | None
    error_code: str = ""
    answered_at: float = 0.0  # time.monotonic()
    unique_id: str = ""


class RawCharger:
    def __init__(self, url: str, identity: str, password: str):
        self.url = f"{url}/{identity}"
        self.identity = identity
        self.password = password
        self._ids = itertools.count(1)
        self._connection: ClientConnection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        token = base64.b64encode(f"{self.identity}:{self.password}".encode()).decode()
        self._connection = await connect(
            self.url,
            subprotocols=["ocpp1.6"],
            additional_headers={"Authorization": f"Basic {token}"},
            open_timeout=10,
            ping_interval=None,
        )

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def call(self, action: str, payload: dict, *, timeout_s: float = 15.0) -> Answer:
        """One CALL; the answer, or NO_ANSWER after `timeout_s` (the connection is then unusable for an
        exact drill, since a late answer would be read as the next one's: the caller stops using it)."""
        async with self._lock:
            unique_id = f"{self.identity}-{next(self._ids)}"
            await self._connection.send(json.dumps([2, unique_id, action, payload]))
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    raw = await asyncio.wait_for(self._connection.recv(), deadline - time.monotonic())
                except TimeoutError:
                    return Answer(NO_ANSWER, None, unique_id=unique_id)
                frame = json.loads(raw)
                if frame[0] == 2:  # a CSMS->charger call (none expected in these drills): refuse it
                    await self._connection.send(json.dumps([4, frame[1], "NotSupported", "", {}]))
                    continue
                if frame[1] != unique_id:
                    continue
                if frame[0] == CALL_RESULT:
                    return Answer(CALL_RESULT, frame[2], answered_at=time.monotonic(), unique_id=unique_id)
                return Answer(
                    CALL_ERROR, None, error_code=frame[2], answered_at=time.monotonic(), unique_id=unique_id
                )

    async def boot(self) -> Answer:
        return await self.call(
            "BootNotification", {"chargePointVendor": "Drill", "chargePointModel": "Raw-1"}
        )

    async def start_transaction(self, *, id_tag: str, meter_start_wh: int) -> int:
        answer = await self.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": id_tag, "meterStart": meter_start_wh, "timestamp": ocpp_now()},
        )
        assert answer.kind == CALL_RESULT, (self.identity, answer)
        return answer.payload["transactionId"]

    async def meter_values(self, *, transaction_id: int, register_wh: int, timeout_s: float = 15.0) -> Answer:
        sample = {
            "timestamp": ocpp_now(),
            "sampledValue": [
                {
                    "value": str(register_wh),
                    "context": "Sample.Periodic",
                    "measurand": "Energy.Active.Import.Register",
                    "location": "Outlet",
                    "unit": "Wh",
                }
            ],
        }
        return await self.call(
            "MeterValues",
            {"connectorId": 1, "transactionId": transaction_id, "meterValue": [sample]},
            timeout_s=timeout_s,
        )
