"""The OCPP 1.6J side of a simulated charger, on the `ocpp` package's client-side ChargePoint (with the
transport of client.py).

This module sends the charger's own messages and answers the Core and Remote Trigger calls of the CSMS
(Reset, Remote Start/Stop, Change/GetConfiguration, TriggerMessage, UnlockConnector, ChangeAvailability,
ClearCache, DataTransfer); csms_commands_v16.py answers the rest (firmware, diagnostics and logs, local
list, reservations, smart charging, the security whitepaper's calls). Together they answer every action
of `cpms.ocpp_wire.actions.V16`.
"""

import math
from dataclasses import dataclass
from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import ClientConnection

from cpms.simulator import smart_charging
from cpms.simulator.charger import Endpoint, SimulatedCharger
from cpms.simulator.client import (
    DATA_TRANSFER_VENDOR,
    FIRMWARE_VERSION,
    MODEL,
    VENDOR,
    RecordingClient,
    Setting,
    readings,
)
from cpms.simulator.csms_commands_v16 import CommandStateV16, CsmsCommandsV16
from cpms.simulator.meter import Sample, ocpp_timestamp, utc_now
from cpms.simulator.protocol import BootResult, StartResult

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
    values = []
    for reading in readings(sample):
        value = {"value": str(reading.value), "context": sample.context, "measurand": reading.measurand}
        if reading.phase is not None:
            value["phase"] = reading.phase
        values.append({**value, "location": reading.location, "unit": reading.unit})
    return values


def meter_value(sample: Sample) -> dict:
    return {"timestamp": ocpp_timestamp(sample.timestamp), "sampledValue": sampled_values(sample)}


def default_configuration(charger: SimulatedCharger) -> dict[str, Setting]:
    """The Core profile keys (OCPP 1.6 9.1) a charger typically reports, plus a few of the others."""
    measurands = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,SoC"
    return {
        "AuthorizeRemoteTxRequests": Setting("false", kind="bool"),
        "ClockAlignedDataInterval": Setting("0", kind="int"),
        "ConnectionTimeOut": Setting("60", kind="int"),
        "GetConfigurationMaxKeys": Setting("50", readonly=True, kind="int"),
        "HeartbeatInterval": Setting(str(int(charger.heartbeat_interval_s)), kind="int"),
        "LocalAuthorizeOffline": Setting("true", kind="bool"),
        "LocalPreAuthorize": Setting("false", kind="bool"),
        "MeterValuesSampledData": Setting(measurands),
        # An integer on the wire; a sub-second simulator interval shows as 1.
        "MeterValueSampleInterval": Setting(str(max(1, math.ceil(charger.meter_interval_s))), kind="int"),
        "NumberOfConnectors": Setting(str(len(charger.connectors)), readonly=True, kind="int"),
        "ResetRetries": Setting("3", kind="int"),
        "StopTransactionOnEVSideDisconnect": Setting("true", kind="bool"),
        "StopTransactionOnInvalidId": Setting("true", kind="bool"),
        "StopTxnSampledData": Setting("Energy.Active.Import.Register,SoC"),
        "SupportedFeatureProfiles": Setting(
            "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger",
            readonly=True,
        ),
        "TransactionMessageAttempts": Setting("3", kind="int"),
        "TransactionMessageRetryInterval": Setting("60", kind="int"),
        "UnlockConnectorOnEVSideDisconnect": Setting("true", kind="bool"),
        "WebSocketPingInterval": Setting("20", kind="int"),
        "LocalAuthListEnabled": Setting("true", kind="bool"),
        "LocalAuthListMaxLength": Setting("100", readonly=True, kind="int"),
        "SendLocalListMaxLength": Setting("100", readonly=True, kind="int"),
        "ReserveConnectorZeroSupported": Setting("false", readonly=True, kind="bool"),
        "ChargeProfileMaxStackLevel": Setting("10", readonly=True, kind="int"),
        "ChargingScheduleAllowedChargingRateUnit": Setting("Current,Power", readonly=True),
        "ChargingScheduleMaxPeriods": Setting(str(smart_charging.MAX_PERIODS), readonly=True, kind="int"),
        "MaxChargingProfilesInstalled": Setting("20", readonly=True, kind="int"),
        "SupportedFileTransferProtocols": Setting("HTTP,HTTPS", readonly=True),
        # Security whitepaper A05: raised by ChangeConfiguration (never lowered); the charger then reconnects.
        "SecurityProfile": Setting(str(charger.endpoint.security_profile), kind="int"),
    }


SECURITY_PROFILE = "SecurityProfile"
# The charger's own certificate, as 1.6 CertificateSigned installs it (no certificate type on the wire).
CERTIFICATE_TYPE = "ChargePointCertificate"


@dataclass(kw_only=True)
class V16State(CommandStateV16):
    """What a 1.6 charger keeps across connections: its configuration, and what csms_commands_v16.py
    keeps (local list, certificates, firmware and log jobs)."""

    configuration: dict[str, Setting]


class ChargerV16(CsmsCommandsV16, RecordingClient, ChargePoint):
    def __init__(self, charger: SimulatedCharger, connection: ClientConnection):
        super().__init__(charger, connection)
        state = charger.protocol_state.get("1.6")
        if state is None:
            state = charger.protocol_state["1.6"] = V16State(configuration=default_configuration(charger))
        self.state: V16State = state
        # What an @on handler decided, by call id, for its @after hook (RemoteStartTransaction: the
        # connector claimed; GetDiagnostics: the file name; ...).
        self._pending: dict[str, Any] = {}

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
        self, *, connector_id: int, id_tag: str, meter_start_wh: int, timestamp: str, begin: Sample
    ) -> StartResult:
        # The Transaction.Begin reading is not part of StartTransaction: the flow sends it as MeterValues.
        session = self.charger.connectors[connector_id].session
        assert session is not None  # run_session sets it before the transaction starts
        record = session.record
        result = await self._call(
            call.StartTransaction(
                connector_id=connector_id,
                id_tag=id_tag,
                meter_start=meter_start_wh,
                timestamp=timestamp,
                reservation_id=record.reservation_id,
            )
        )
        return StartResult(str(result.transaction_id), result.id_tag_info["status"], meter_values=[])

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

    async def reservation_ended(self, reservation_id: int) -> None:
        """1.6 has no message for it: the connector's StatusNotification (Available) says it."""

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
        self,
        id_tag: str,
        call_unique_id: str,
        connector_id: int | None = None,
        charging_profile: dict | None = None,
        **kwargs,
    ):
        if charging_profile is not None and charging_profile["charging_profile_purpose"] != "TxProfile":
            # 5.11: the profile sent with a remote start is the transaction's (TxProfile).
            return call_result.RemoteStartTransaction(status="Rejected")
        connector = self.charger.remote_start_claim(connector_id, id_tag)
        if connector is None:
            return call_result.RemoteStartTransaction(status="Rejected")
        self._pending[call_unique_id] = connector
        return call_result.RemoteStartTransaction(status="Accepted")

    @after(Action.remote_start_transaction)
    def after_remote_start_transaction(
        self, id_tag: str, call_unique_id: str, charging_profile: dict | None = None, **kwargs
    ):
        connector = self._pending.pop(call_unique_id, None)
        if connector is not None:
            if charging_profile is not None:
                profile = smart_charging.from_v16(connector.connector_id, charging_profile)
                self.charger.charging_profiles.install(profile)
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
        if entry.readonly or not entry.accepts(value):
            return call_result.ChangeConfiguration(status="Rejected")
        if key == SECURITY_PROFILE and not self._profile_reachable(int(value)):
            return call_result.ChangeConfiguration(status="Rejected")
        entry.set(value)
        if key == "HeartbeatInterval":
            self.charger.set_heartbeat_interval(int(value))
        elif key == "MeterValueSampleInterval" and int(value) > 0:
            self.charger.meter_interval_s = int(value)
        elif key == "AuthorizeRemoteTxRequests":
            self.charger.authorize_remote_starts = entry.value == "true"
        return call_result.ChangeConfiguration(status="Accepted")

    @after(Action.change_configuration)
    def after_change_configuration(self, key: str, value: str, **kwargs):
        # A05.FR.04: after accepting a new SecurityProfile the charger reconnects at it (the answer is out).
        # Accepted: the key holds the value and it is above the profile the charger connects with.
        if (
            key == SECURITY_PROFILE
            and self.state.configuration[key].value == value
            and int(value) > self.charger.endpoint.security_profile
        ):
            self.charger.reconnect_at(self._endpoint_for(int(value)))

    def _profile_reachable(self, profile: int) -> bool:
        """A05.FR.02/03: only a higher profile (1-3), and 3 only with a signed certificate installed."""
        if not self.charger.endpoint.security_profile < profile <= 3:
            return False
        store = self.state.certificates
        return profile < 3 or bool(store.signed.get(CERTIFICATE_TYPE) and store.keys.get(CERTIFICATE_TYPE))

    def _endpoint_for(self, profile: int) -> Endpoint:
        current = self.charger.endpoint
        url = current.url if current.url.startswith("wss://") else self.charger.tls_url
        if profile < 3:
            return Endpoint(url=url, security_profile=profile)
        files = self.state.certificates.client_files(CERTIFICATE_TYPE, self.charger.certificate_dir())
        assert files is not None  # _profile_reachable checked there is one
        return Endpoint(url=url, security_profile=3, cert_file=str(files[0]), key_file=str(files[1]))

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
        self._send_triggered(requested_message, connector_id)

    def _send_triggered(self, requested_message: str, connector_id: int | None) -> None:
        """Start sending the message a TriggerMessage (or ExtendedTriggerMessage) asked for."""
        if requested_message == "BootNotification":
            self.charger.spawn(self._triggered_boot())
        elif requested_message == "Heartbeat":
            self.charger.spawn(self.heartbeat())
        elif requested_message == "StatusNotification":
            self.charger.spawn(self.charger.send_status(connector_id))
        elif requested_message == "MeterValues":
            self.charger.spawn(self.charger.send_meter_values(connector_id))
        elif requested_message == "DiagnosticsStatusNotification":
            # 4.4: Idle unless an upload is under way.
            status, _ = self.state.diagnostics.current
            self.charger.spawn(self._call(call.DiagnosticsStatusNotification(status=status)))
        elif requested_message == "FirmwareStatusNotification":
            status, _ = self.state.firmware.current
            self.charger.spawn(self._call(call.FirmwareStatusNotification(status=status)))

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
