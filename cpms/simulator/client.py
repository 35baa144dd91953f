"""What the protocol clients (charger_v16.py, charger_v201.py) share: the transport on top of the `ocpp`
package's ChargePoint, the charger's identity on the wire, and typed settings (1.6 configuration keys,
2.0.1 device-model variables).

Outgoing calls go through `_call`, which records CALLERRORs and invalid answers in the charger's result
and raises CallFailed. CSMS-initiated calls are answered by each version's @on handlers with valid
results; anything they cause (a session, a reboot, status updates) is started from an @after hook or with
`charger.spawn`, so that the CALLRESULT goes out before the calls it leads to.
"""

import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ocpp.exceptions import OCPPError, UnknownCallErrorCodeError
from ocpp.messages import MessageType, unpack
from websockets.asyncio.client import ClientConnection

from cpms.simulator.charger import SimulatedCharger
from cpms.simulator.meter import PHASES, Sample
from cpms.simulator.protocol import CallFailed

# The `ocpp` package logs every frame at INFO; the management command turns this up with -v 2.
wire_logger = logging.getLogger("cpms.simulator.wire")
wire_logger.setLevel(logging.WARNING)

VENDOR = "CPMS"
MODEL = "Simulator"
FIRMWARE_VERSION = "sim-1.0"
# DataTransfer with this vendorId is echoed back (Accepted); any other vendor is UnknownVendorId.
DATA_TRANSFER_VENDOR = "CPMS-SIM"


@dataclass(frozen=True)
class Reading:
    """One measurand of a Sample, before a version puts it on the wire (1.6 as text, 2.0.1 as a number)."""

    measurand: str
    value: int | float
    unit: str
    location: str
    phase: str | None = None


def readings(sample: Sample) -> list[Reading]:
    """The measurands of `sample`, in the order chargers usually send them. Currents and voltages are
    already rounded to 0.1 in the Sample, so str() of them has one decimal."""
    values = [Reading("Energy.Active.Import.Register", sample.energy_wh, "Wh", "Outlet")]
    if sample.power_w is not None:
        values.append(Reading("Power.Active.Import", sample.power_w, "W", "Outlet"))
    if sample.current_a is not None:
        values.extend(
            Reading("Current.Import", amps, "A", "Outlet", phase)
            for phase, amps in zip(PHASES, sample.current_a, strict=True)
        )
    if sample.voltage_v is not None:
        values.extend(
            Reading("Voltage", volts, "V", "Outlet", f"{phase}-N")
            for phase, volts in zip(PHASES, sample.voltage_v, strict=True)
        )
    if sample.soc_percent is not None:
        values.append(Reading("SoC", sample.soc_percent, "Percent", "EV"))
    return values


@dataclass
class Setting:
    """A 1.6 configuration key or a 2.0.1 variable (its Actual attribute)."""

    value: str
    readonly: bool = False
    # "int", "bool" or "str": how a new value is validated.
    kind: str = "str"

    def accepts(self, value: str) -> bool:
        if self.kind == "int":
            return value.isdigit()
        if self.kind == "bool":
            return value.lower() in {"true", "false"}
        return True

    def set(self, value: str) -> None:
        self.value = value.lower() if self.kind == "bool" else value


if TYPE_CHECKING:  # the ChargePoint a version's client mixes this into, for the checker only
    from ocpp.charge_point import ChargePoint as _ChargePoint
else:
    _ChargePoint = object


class RecordingClient(_ChargePoint):
    """Mixed in before a version's `ocpp` ChargePoint: counts frames, picks CALLERRORs up for the call
    waiting for them, and turns every failed call into CallFailed (recorded in the charger's result)."""

    def __init__(self, charger: SimulatedCharger, connection: ClientConnection):
        super().__init__(
            charger.config.identity,
            connection,
            response_timeout=charger.config.response_timeout_s,
            logger=wire_logger,
        )
        self.charger = charger
        self.result = charger.result
        # CALLERRORs received, by message id, until the call waiting for them picks them up.
        self._call_errors: dict[str, object] = {}

    async def serve(self) -> None:
        await self.start()

    async def _send(self, message: str) -> None:
        self.result.messages_sent += 1
        await super()._send(message)

    async def route_message(self, raw_msg):
        self.result.messages_received += 1
        try:
            msg = unpack(raw_msg)
        except OCPPError:
            msg = None  # the base class logs it
        if msg is not None:
            if msg.message_type_id == MessageType.CallError:
                self._call_errors[msg.unique_id] = msg
            elif msg.message_type_id == MessageType.Call:
                self.result.calls_received[msg.action] += 1
        await super().route_message(raw_msg)

    async def _call(self, payload):
        action = type(payload).__name__
        unique_id = str(uuid.uuid4())
        try:
            return await self.call(payload, suppress=False, unique_id=unique_id)
        except TimeoutError as exc:
            text = f"{action}: no answer within {self._response_timeout:g} s"
            self.result.errors.append(text)
            raise CallFailed(text) from exc
        except (OCPPError, UnknownCallErrorCodeError, TypeError) as exc:
            error = self._call_errors.pop(unique_id, None)
            if error is not None:
                text = f"{action}: {error.error_code} {error.error_description}".rstrip()
                self.result.call_errors.append(text)
            else:
                text = f"{action}: invalid answer ({type(exc).__name__}: {exc})"
                self.result.errors.append(text)
            raise CallFailed(text) from exc

    async def _triggered_boot(self) -> None:
        self.charger.boot_answered(await self.boot())
