"""The OCPP 1.6J side of a simulated charger, on the `ocpp` package's client-side ChargePoint.

Outgoing calls go through `_call`, which records CALLERRORs and invalid answers in the charger's result
and raises CallFailed. CSMS-initiated calls are answered by the @on handlers below with valid results;
anything they cause (a session, a reboot, status updates) is started from an @after hook or with
`charger.spawn`, so that the CALLRESULT goes out before the calls it leads to.
"""

import logging
import math
import uuid
from dataclasses import dataclass, field

from ocpp.exceptions import OCPPError, UnknownCallErrorCodeError
from ocpp.messages import MessageType, unpack
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import ClientConnection

from stations.ocpp.simulator.charger import BootResult, CallFailed, SimulatedCharger
from stations.ocpp.simulator.meter import PHASES, Sample, ocpp_timestamp, utc_now

# The `ocpp` package logs every frame at INFO; the management command turns this up with -v 2.
wire_logger = logging.getLogger("stations.ocpp.simulator.wire")
wire_logger.setLevel(logging.WARNING)

VENDOR = "CPMS"
MODEL = "Simulator"
FIRMWARE_VERSION = "sim-1.0"
# DataTransfer with this vendorId is echoed back (Accepted); any other vendor is UnknownVendorId.
DATA_TRANSFER_VENDOR = "CPMS-SIM"

TRIGGERABLE = frozenset(
    {
        "BootNotification",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StatusNotification",
    }
)


def sampled_values(sample: Sample) -> list[dict]:
    """A Sample as 1.6 SampledValue elements (values are strings on the wire)."""
    context = sample.context
    values = [
        {
            "value": str(sample.energy_wh),
            "context": context,
            "measurand": "Energy.Active.Import.Register",
            "location": "Outlet",
            "unit": "Wh",
        }
    ]
    if sample.power_w is not None:
        values.append(
            {
                "value": str(sample.power_w),
                "context": context,
                "measurand": "Power.Active.Import",
                "location": "Outlet",
                "unit": "W",
            }
        )
    if sample.current_a is not None:
        values.extend(
            {
                "value": f"{amps:.1f}",
                "context": context,
                "measurand": "Current.Import",
                "phase": phase,
                "location": "Outlet",
                "unit": "A",
            }
            for phase, amps in zip(PHASES, sample.current_a, strict=True)
        )
    if sample.voltage_v is not None:
        values.extend(
            {
                "value": f"{volts:.1f}",
                "context": context,
                "measurand": "Voltage",
                "phase": f"{phase}-N",
                "location": "Outlet",
                "unit": "V",
            }
            for phase, volts in zip(PHASES, sample.voltage_v, strict=True)
        )
    if sample.soc_percent is not None:
        values.append(
            {
                "value": str(sample.soc_percent),
                "context": context,
                "measurand": "SoC",
                "location": "EV",
                "unit": "Percent",
            }
        )
    return values


def meter_value(sample: Sample) -> dict:
    return {"timestamp": ocpp_timestamp(sample.timestamp), "sampledValue": sampled_values(sample)}


@dataclass
class ConfigKey:
    value: str
    readonly: bool = False
    # "int", "bool" or "str": how ChangeConfiguration validates a new value.
    kind: str = "str"


def default_configuration(charger: SimulatedCharger) -> dict[str, ConfigKey]:
    """The Core profile keys (OCPP 1.6 9.1) a charger typically reports, plus a few of the others."""
    measurands = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,SoC"
    return {
        "AuthorizeRemoteTxRequests": ConfigKey("false", kind="bool"),
        "ClockAlignedDataInterval": ConfigKey("0", kind="int"),
        "ConnectionTimeOut": ConfigKey("60", kind="int"),
        "GetConfigurationMaxKeys": ConfigKey("50", readonly=True, kind="int"),
        "HeartbeatInterval": ConfigKey(str(int(charger.heartbeat_interval_s)), kind="int"),
        "LocalAuthorizeOffline": ConfigKey("true", kind="bool"),
        "LocalPreAuthorize": ConfigKey("false", kind="bool"),
        "MeterValuesSampledData": ConfigKey(measurands),
        # An integer on the wire; a sub-second simulator interval shows as 1.
        "MeterValueSampleInterval": ConfigKey(str(max(1, math.ceil(charger.meter_interval_s))), kind="int"),
        "NumberOfConnectors": ConfigKey(str(len(charger.connectors)), readonly=True, kind="int"),
        "ResetRetries": ConfigKey("3", kind="int"),
        "StopTransactionOnEVSideDisconnect": ConfigKey("true", kind="bool"),
        "StopTransactionOnInvalidId": ConfigKey("true", kind="bool"),
        "StopTxnSampledData": ConfigKey("Energy.Active.Import.Register,SoC"),
        "SupportedFeatureProfiles": ConfigKey(
            "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger",
            readonly=True,
        ),
        "TransactionMessageAttempts": ConfigKey("3", kind="int"),
        "TransactionMessageRetryInterval": ConfigKey("60", kind="int"),
        "UnlockConnectorOnEVSideDisconnect": ConfigKey("true", kind="bool"),
        "WebSocketPingInterval": ConfigKey("20", kind="int"),
        "LocalAuthListEnabled": ConfigKey("true", kind="bool"),
        "LocalAuthListMaxLength": ConfigKey("100", readonly=True, kind="int"),
        "SendLocalListMaxLength": ConfigKey("100", readonly=True, kind="int"),
    }


@dataclass
class V16State:
    """What a 1.6 charger keeps across connections (its configuration, local list, reservations)."""

    configuration: dict[str, ConfigKey]
    local_list_version: int = 0
    # reservation id -> connector id
    reservations: dict[int, int] = field(default_factory=dict)
    charging_profiles: set[int] = field(default_factory=set)


class ChargerV16(ChargePoint):
    def __init__(self, charger: SimulatedCharger, connection: ClientConnection):
        super().__init__(
            charger.config.identity,
            connection,
            response_timeout=charger.config.response_timeout_s,
            logger=wire_logger,
        )
        self.charger = charger
        self.result = charger.result
        state = charger.protocol_state.get("1.6")
        if state is None:
            state = charger.protocol_state["1.6"] = V16State(configuration=default_configuration(charger))
        self.state: V16State = state
        # CALLERRORs received, by message id, until the call waiting for them picks them up.
        self._call_errors: dict[str, object] = {}
        # RemoteStartTransaction: connector claimed in the handler, session begun in the @after hook.
        self._remote_starts: dict[str, object] = {}

    # --- transport ------------------------------------------------------------------------------

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

    # --- charger -> CSMS --------------------------------------------------------------------------

    async def boot(self) -> BootResult:
        identity = self.charger.config.identity
        result = await self._call(
            call.BootNotification(
                charge_point_vendor=VENDOR,
                charge_point_model=MODEL,
                charge_point_serial_number=identity[-25:],
                firmware_version=FIRMWARE_VERSION,
                meter_type="SIM-METER",
                meter_serial_number=f"M-{identity}"[-25:],
            )
        )
        boot = BootResult(status=str(result.status), interval_s=int(result.interval))
        if boot.status == "Accepted":
            self.state.configuration["HeartbeatInterval"].value = str(boot.interval_s)
        return boot

    async def heartbeat(self) -> None:
        await self._call(call.Heartbeat())

    async def status_notification(
        self, *, connector_id: int, status: str, error_code: str = "NoError"
    ) -> None:
        await self._call(
            call.StatusNotification(
                connector_id=connector_id,
                error_code=error_code,
                status=status,
                timestamp=ocpp_timestamp(utc_now()),
            )
        )

    async def authorize(self, *, id_tag: str) -> str:
        result = await self._call(call.Authorize(id_tag=id_tag))
        return result.id_tag_info["status"]

    async def start_transaction(
        self, *, connector_id: int, id_tag: str, meter_start_wh: int, timestamp: str
    ) -> tuple[str, str]:
        result = await self._call(
            call.StartTransaction(
                connector_id=connector_id, id_tag=id_tag, meter_start=meter_start_wh, timestamp=timestamp
            )
        )
        return str(result.transaction_id), result.id_tag_info["status"]

    async def meter_values(
        self, *, connector_id: int, transaction_id: str | None, samples: list[Sample]
    ) -> list[dict]:
        values = [meter_value(sample) for sample in samples]
        await self._call(
            call.MeterValues(
                connector_id=connector_id,
                meter_value=values,
                transaction_id=int(transaction_id) if transaction_id is not None else None,
            )
        )
        return values

    async def stop_transaction(
        self,
        *,
        transaction_id: str,
        id_tag: str,
        meter_stop_wh: int,
        timestamp: str,
        reason: str,
        samples: list[Sample],
    ) -> list[dict]:
        data = [meter_value(sample) for sample in samples]
        await self._call(
            call.StopTransaction(
                meter_stop=meter_stop_wh,
                timestamp=timestamp,
                transaction_id=int(transaction_id),
                reason=reason,
                id_tag=id_tag,
                transaction_data=data or None,
            )
        )
        return data

    # --- CSMS -> charger --------------------------------------------------------------------------

    @on(Action.reset)
    def on_reset(self, type: str, **kwargs):
        return call_result.Reset(status="Accepted")

    @after(Action.reset)
    def after_reset(self, type: str, **kwargs):
        self.charger.request_reboot(type)

    @on(Action.remote_start_transaction)
    def on_remote_start_transaction(
        self, id_tag: str, call_unique_id: str, connector_id: int | None = None, **kwargs
    ):
        connector = self.charger.remote_start_claim(connector_id)
        if connector is None:
            return call_result.RemoteStartTransaction(status="Rejected")
        self._remote_starts[call_unique_id] = connector
        return call_result.RemoteStartTransaction(status="Accepted")

    @after(Action.remote_start_transaction)
    def after_remote_start_transaction(self, id_tag: str, call_unique_id: str, **kwargs):
        connector = self._remote_starts.pop(call_unique_id, None)
        if connector is not None:
            self.charger.remote_start_begin(connector, id_tag)

    @on(Action.remote_stop_transaction)
    def on_remote_stop_transaction(self, transaction_id: int, **kwargs):
        accepted = self.charger.remote_stop(str(transaction_id))
        return call_result.RemoteStopTransaction(status="Accepted" if accepted else "Rejected")

    @on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str, **kwargs):
        entry = self.state.configuration.get(key)
        if entry is None:
            return call_result.ChangeConfiguration(status="NotSupported")
        if entry.readonly or not _value_fits(entry.kind, value):
            return call_result.ChangeConfiguration(status="Rejected")
        entry.value = value.lower() if entry.kind == "bool" else value
        if key == "HeartbeatInterval":
            self.charger.set_heartbeat_interval(int(value))
        elif key == "MeterValueSampleInterval" and int(value) > 0:
            self.charger.meter_interval_s = int(value)
        elif key == "AuthorizeRemoteTxRequests":
            self.charger.authorize_remote_starts = entry.value == "true"
        return call_result.ChangeConfiguration(status="Accepted")

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list | None = None, **kwargs):
        configuration = self.state.configuration
        wanted = key or list(configuration)
        known = [
            {"key": name, "readonly": configuration[name].readonly, "value": configuration[name].value}
            for name in wanted
            if name in configuration
        ]
        unknown = [name for name in wanted if name not in configuration]
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None, **kwargs):
        if requested_message not in TRIGGERABLE:
            return call_result.TriggerMessage(status="NotImplemented")
        if connector_id is not None and connector_id != 0 and connector_id not in self.charger.connectors:
            return call_result.TriggerMessage(status="Rejected")
        return call_result.TriggerMessage(status="Accepted")

    @after(Action.trigger_message)
    def after_trigger_message(self, requested_message: str, connector_id: int | None = None, **kwargs):
        if requested_message not in TRIGGERABLE:
            return
        if connector_id is not None and connector_id != 0 and connector_id not in self.charger.connectors:
            return
        if requested_message == "BootNotification":
            self.charger.spawn(self._triggered_boot())
        elif requested_message == "Heartbeat":
            self.charger.spawn(self.heartbeat())
        elif requested_message == "StatusNotification":
            self.charger.spawn(self.charger.send_status(connector_id))
        elif requested_message == "MeterValues":
            self.charger.spawn(self.charger.send_meter_values(connector_id))
        elif requested_message == "DiagnosticsStatusNotification":
            self.charger.spawn(self._call(call.DiagnosticsStatusNotification(status="Idle")))
        elif requested_message == "FirmwareStatusNotification":
            self.charger.spawn(self._call(call.FirmwareStatusNotification(status="Idle")))

    async def _triggered_boot(self) -> None:
        self.charger.boot_answered(await self.boot())

    @on(Action.unlock_connector)
    def on_unlock_connector(self, connector_id: int, **kwargs):
        unlocked = self.charger.unlock(connector_id)
        return call_result.UnlockConnector(status="Unlocked" if unlocked else "NotSupported")

    @on(Action.change_availability)
    def on_change_availability(self, connector_id: int, type: str, **kwargs):
        status = self.charger.change_availability(connector_id, operative=(type == "Operative"))
        return call_result.ChangeAvailability(status=status or "Rejected")

    @after(Action.change_availability)
    def after_change_availability(self, connector_id: int, type: str, **kwargs):
        if connector_id == 0 or connector_id in self.charger.connectors:
            self.charger.spawn(self.charger.availability_notify(connector_id))

    @on(Action.clear_cache)
    def on_clear_cache(self, **kwargs):
        return call_result.ClearCache(status="Accepted")

    @on(Action.data_transfer)
    def on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: str | None = None, **kwargs
    ):
        if vendor_id != DATA_TRANSFER_VENDOR:
            return call_result.DataTransfer(status="UnknownVendorId")
        return call_result.DataTransfer(status="Accepted", data=data)

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self, **kwargs):
        return call_result.GetLocalListVersion(list_version=self.state.local_list_version)

    @on(Action.send_local_list)
    def on_send_local_list(self, list_version: int, update_type: str, **kwargs):
        self.state.local_list_version = list_version
        return call_result.SendLocalList(status="Accepted")

    @on(Action.reserve_now)
    def on_reserve_now(self, connector_id: int, reservation_id: int, **kwargs):
        connector = self.charger.connectors.get(connector_id)
        if connector is None:
            return call_result.ReserveNow(status="Rejected")
        if not connector.operative:
            return call_result.ReserveNow(status="Unavailable")
        if not connector.free:
            return call_result.ReserveNow(status="Occupied")
        self.state.reservations[reservation_id] = connector_id
        return call_result.ReserveNow(status="Accepted")

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int, **kwargs):
        found = self.state.reservations.pop(reservation_id, None) is not None
        return call_result.CancelReservation(status="Accepted" if found else "Rejected")

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict, **kwargs):
        if connector_id != 0 and connector_id not in self.charger.connectors:
            return call_result.SetChargingProfile(status="Rejected")
        self.state.charging_profiles.add(cs_charging_profiles["charging_profile_id"])
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, id: int | None = None, **kwargs):
        if id is not None:
            found = id in self.state.charging_profiles
            self.state.charging_profiles.discard(id)
        else:
            found = bool(self.state.charging_profiles)
            self.state.charging_profiles.clear()
        return call_result.ClearChargingProfile(status="Accepted" if found else "Unknown")

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(self, connector_id: int, duration: int, **kwargs):
        return call_result.GetCompositeSchedule(status="Rejected")

    @on(Action.get_diagnostics)
    def on_get_diagnostics(self, location: str, **kwargs):
        return call_result.GetDiagnostics()  # no fileName: nothing to upload

    @on(Action.update_firmware)
    def on_update_firmware(self, location: str, retrieve_date: str, **kwargs):
        return call_result.UpdateFirmware()


def _value_fits(kind: str, value: str) -> bool:
    if kind == "int":
        return value.isdigit()
    if kind == "bool":
        return value.lower() in {"true", "false"}
    return True
