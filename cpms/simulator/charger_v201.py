"""The OCPP 2.0.1 side of a simulated charger, on the `ocpp` package's client-side ChargePoint (with the
transport of client.py).

The flow in charger.py speaks in 1.6 terms (connector n, StartTransaction, MeterValues, StopTransaction);
this client maps them: simulator connector n is EVSE n with connector 1, a session is one transaction of
TransactionEvents (Started, Updated per meter sample, Ended; seqNo 0, 1, 2, ...), and the 1.6 connector
statuses during a session are one 2.0.1 Occupied.

This module sends the station's own messages and answers Reset, Request Start/Stop, GetTransactionStatus,
TriggerMessage, UnlockConnector, ChangeAvailability, ClearCache and DataTransfer. The device model and
its calls (variables, reports, monitoring) are in device_model_v201.py, the other CSMS calls (firmware,
logs, certificates, reservations, local list, smart charging, display messages, ...) in
csms_commands_v201.py. Together they answer every action of `cpms.ocpp_wire.actions.V201`.
"""

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action
from websockets.asyncio.client import ClientConnection

from cpms.simulator import smart_charging
from cpms.simulator.certificates import SIGN_TRIGGERS
from cpms.simulator.charger import SimulatedCharger
from cpms.simulator.client import (
    DATA_TRANSFER_VENDOR,
    FIRMWARE_VERSION,
    MODEL,
    VENDOR,
    RecordingClient,
    readings,
)
from cpms.simulator.csms_commands_v201 import CommandStateV201, CsmsCommandsV201
from cpms.simulator.device_model_v201 import (
    HEARTBEAT_INTERVAL,
    DeviceModelState,
    DeviceModelV201,
    default_variables,
)
from cpms.simulator.meter import Sample, ocpp_timestamp, utc_now
from cpms.simulator.protocol import BootResult, StartResult

ID_TOKEN_TYPE = "ISO14443"
# The 1.6 statuses the flow sets, as 2.0.1 ConnectorStatus. Charging, SuspendedEV(SE) and Finishing are
# not here: they happen inside Occupied, and 2.0.1 reports them as TransactionEvent chargingState.
CONNECTOR_STATUS = {
    "Available": "Available",
    "Preparing": "Occupied",
    "Reserved": "Reserved",
    "Unavailable": "Unavailable",
    "Faulted": "Faulted",
}
# The flow's stop reasons (1.6 Reason) -> (triggerReason, stoppedReason) of TransactionEvent Ended.
STOP_REASONS = {
    "Local": ("StopAuthorized", "Local"),
    "EVDisconnected": ("EVCommunicationLost", "EVDisconnected"),
    "Remote": ("RemoteStop", "Remote"),
    "DeAuthorized": ("Deauthorized", "DeAuthorized"),
    "ImmediateReset": ("ResetCommand", "ImmediateReset"),
    "Reboot": ("ResetCommand", "Reboot"),
    "UnlockCommand": ("UnlockCommand", "Other"),
}
TRIGGERABLE = frozenset(
    {
        "BootNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "LogStatusNotification",
        "MeterValues",
        "PublishFirmwareStatusNotification",
        "SignChargingStationCertificate",
        "SignV2GCertificate",
        "StatusNotification",
        "TransactionEvent",
    }
)
# How often a Reset OnIdle looks whether the sessions have ended (the task ends with the connection).
IDLE_POLL_S = 0.1


def sampled_value(context: str, reading) -> dict:
    """One 2.0.1 SampledValue: the value is a number, the unit an object."""
    value = {"value": reading.value, "context": context, "measurand": reading.measurand}
    if reading.phase is not None:
        value["phase"] = reading.phase
    return {**value, "location": reading.location, "unitOfMeasure": {"unit": reading.unit}}


def meter_value(sample: Sample) -> dict:
    return {
        "timestamp": ocpp_timestamp(sample.timestamp),
        "sampledValue": [sampled_value(sample.context, reading) for reading in readings(sample)],
    }


@dataclass(kw_only=True)
class V201State(DeviceModelState, CommandStateV201):
    """What a 2.0.1 station keeps across connections: its device model and monitors, and what
    csms_commands_v201.py keeps (local list, certificates, jobs, display messages, ...)."""

    # BootNotification.reason of the next boot: RemoteReset after a CSMS Reset.
    boot_reason: str = "PowerUp"


class ChargerV201(DeviceModelV201, CsmsCommandsV201, RecordingClient, ChargePoint):
    def __init__(self, charger: SimulatedCharger, connection: ClientConnection):
        super().__init__(charger, connection)
        state = charger.protocol_state.get("2.0.1")
        if state is None:
            state = charger.protocol_state["2.0.1"] = V201State(variables=default_variables(charger))
        self.state: V201State = state
        # The last seqNo sent, per running transaction.
        self._seq_nos: dict[str, int] = {}
        # What an @on handler decided, by call id, for its @after hook (RequestStartTransaction: the
        # connector claimed; GetLog: the file name; GetReport: the report; ...).
        self._pending: dict[str, Any] = {}

    # --- charger -> CSMS --------------------------------------------------------------------------

    async def boot(self) -> BootResult:
        result = await self._call(
            call.BootNotification(
                charging_station={
                    "vendorName": VENDOR,
                    "model": MODEL,
                    "serialNumber": self.charger.config.identity[-25:],
                    "firmwareVersion": FIRMWARE_VERSION,
                },
                reason=self.state.boot_reason,
            )
        )
        boot = BootResult(status=str(result.status), interval_s=int(result.interval))
        if boot.status == "Accepted":
            self.state.variables[HEARTBEAT_INTERVAL].value = str(boot.interval_s)
            self.state.boot_reason = "PowerUp"
        return boot

    async def heartbeat(self) -> None:
        await self._call(call.Heartbeat())

    async def status_notification(
        self, *, connector_id: int, status: str, error_code: str = "NoError"
    ) -> None:
        # 2.0.1 has no station-wide status (1.6 connector 0): availability is in the device model.
        wire_status = CONNECTOR_STATUS.get(status)
        if connector_id != 0 and wire_status is not None:
            await self._send_status(connector_id, wire_status)

    async def _send_status(self, evse_id: int, connector_status: str) -> None:
        await self._call(
            call.StatusNotification(
                timestamp=ocpp_timestamp(utc_now()),
                connector_status=connector_status,
                evse_id=evse_id,
                connector_id=1,
            )
        )

    async def authorize(self, *, id_tag: str) -> str:
        result = await self._call(call.Authorize(id_token=_id_token(id_tag)))
        return result.id_token_info["status"]

    async def start_transaction(
        self, *, connector_id: int, id_tag: str, meter_start_wh: int, timestamp: str, begin: Sample
    ) -> StartResult:
        # The meter start is the Transaction.Begin reading of the Started event (2.0.1 has no meterStart).
        session = self.charger.connectors[connector_id].session
        assert session is not None  # run_session sets it before the transaction starts
        record = session.record
        transaction_id = uuid.uuid4().hex[:20]
        info: dict[str, Any] = {"chargingState": "EVConnected"}
        if record.remote_start_id is not None:
            info["remoteStartId"] = record.remote_start_id
        reservation = {} if record.reservation_id is None else {"reservation_id": record.reservation_id}
        result, sent = await self._transaction_event(
            "Started",
            transaction_id,
            "RemoteStart" if record.remote else "Authorized",
            [begin],
            timestamp=timestamp,
            info=info,
            evse={"id": connector_id, "connectorId": 1},
            id_token=_id_token(id_tag),
            **reservation,
        )
        status = (result.id_token_info or {}).get("status", "Accepted")
        return StartResult(transaction_id, status, meter_values=sent)

    async def meter_values(
        self, *, connector_id: int, transaction_id: str | None, samples: list[Sample]
    ) -> list[dict]:
        """Periodic readings of a transaction go in TransactionEvent Updated; triggered or idle ones in
        MeterValues (F06.FR.06: TriggerMessage(MeterValues) asks for a MeterValuesRequest)."""
        if transaction_id is not None and all(s.context != "Trigger" for s in samples):
            _, sent = await self._transaction_event(
                "Updated", transaction_id, "MeterValuePeriodic", samples, info={"chargingState": "Charging"}
            )
            return sent
        values = [meter_value(sample) for sample in samples]
        await self._call(call.MeterValues(evse_id=connector_id, meter_value=values))
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
        trigger_reason, stopped_reason = STOP_REASONS.get(reason, ("AbnormalCondition", "Other"))
        # The driver presenting the card again is what StopAuthorized means: the event carries the token.
        token = {"id_token": _id_token(id_tag)} if trigger_reason == "StopAuthorized" else {}
        try:
            _, sent = await self._transaction_event(
                "Ended",
                transaction_id,
                trigger_reason,
                samples,
                timestamp=timestamp,
                info={"stoppedReason": stopped_reason},
                **token,
            )
        finally:
            self._seq_nos.pop(transaction_id, None)
        return sent

    async def _transaction_event(
        self,
        event_type: str,
        transaction_id: str,
        trigger_reason: str,
        samples: list[Sample],
        *,
        timestamp: str | None = None,
        info: dict | None = None,
        **fields,
    ):
        """Send one TransactionEvent; (its response, the meterValue elements as sent)."""
        seq_no = self._seq_nos.get(transaction_id, -1) + 1
        self._seq_nos[transaction_id] = seq_no
        values = [meter_value(sample) for sample in samples]
        result = await self._call(
            call.TransactionEvent(
                event_type=event_type,
                timestamp=timestamp or ocpp_timestamp(utc_now()),
                trigger_reason=trigger_reason,
                seq_no=seq_no,
                transaction_info={"transactionId": transaction_id, **(info or {})},
                meter_value=values or None,
                **fields,
            )
        )
        return result, values

    async def _triggered(self, requested_message: str, evse_id: int | None) -> None:
        connectors = [c for c in self.charger.connectors.values() if evse_id in (None, c.connector_id)]
        if requested_message == "BootNotification":
            await self._triggered_boot()
        elif requested_message == "Heartbeat":
            await self.heartbeat()
        elif requested_message == "StatusNotification":
            for connector in connectors:
                await self._send_status(
                    connector.connector_id, CONNECTOR_STATUS.get(connector.status, "Occupied")
                )
        elif requested_message == "MeterValues":
            await self.charger.send_meter_values(evse_id)
        elif requested_message == "TransactionEvent":
            for connector in connectors:
                session = connector.session
                if session is not None and session.record.transaction_id in self._seq_nos:
                    transaction_id = session.record.transaction_id
                    await self._transaction_event(
                        "Updated", transaction_id, "Trigger", [session.ev.sample("Trigger")]
                    )
        elif requested_message == "FirmwareStatusNotification":
            # L01: the update's last status (with its requestId) while it runs, else Idle without one.
            status, request_id = self.state.firmware.current
            await self._call(call.FirmwareStatusNotification(status=status, request_id=request_id))
        elif requested_message == "LogStatusNotification":
            status, request_id = self.state.log.current
            await self._call(call.LogStatusNotification(status=status, request_id=request_id))
        elif requested_message == "PublishFirmwareStatusNotification":
            status, request_id = self.state.publish.current
            await self._call(call.PublishFirmwareStatusNotification(status=status, request_id=request_id))
        elif requested_message in SIGN_TRIGGERS:
            # A02/A03: a new key and its CSR; the current certificate stays in use until CertificateSigned.
            certificate_type = SIGN_TRIGGERS[requested_message]
            csr = self.state.certificates.csr_new(
                certificate_type,
                identity=self.charger.config.identity,
                organization=self.charger.config.organization,
            )
            await self._call(call.SignCertificate(csr=csr, certificate_type=certificate_type))

    async def _reset_when_idle(self) -> None:
        """Reset OnIdle (B12.FR.06): once no transaction runs. Ends with the connection at the latest."""
        while self._busy():
            await asyncio.sleep(IDLE_POLL_S)
        self.charger.request_reboot("Immediate")

    # --- CSMS -> charger --------------------------------------------------------------------------

    def _busy(self) -> bool:
        return any(c.session is not None or c.claimed for c in self.charger.connectors.values())

    @on(Action.reset)
    def on_reset(self, type: str, evse_id: int | None = None, **kwargs):
        if evse_id is not None:
            return call_result.Reset(status="Rejected")  # resetting a single EVSE is not simulated
        return call_result.Reset(status="Scheduled" if type == "OnIdle" and self._busy() else "Accepted")

    @after(Action.reset)
    def after_reset(self, type: str, evse_id: int | None = None, **kwargs):
        if evse_id is not None:
            return
        self.state.boot_reason = "RemoteReset"
        if type == "OnIdle" and self._busy():
            self.charger.spawn(self._reset_when_idle())
        else:
            self.charger.request_reboot("Immediate")

    @on(Action.request_start_transaction)
    def on_request_start_transaction(
        self,
        id_token: dict,
        remote_start_id: int,
        call_unique_id: str,
        evse_id: int | None = None,
        charging_profile: dict | None = None,
        **kwargs,
    ):
        if charging_profile is not None and charging_profile["charging_profile_purpose"] != "TxProfile":
            # F01: the profile sent with a remote start is the transaction's (TxProfile).
            return call_result.RequestStartTransaction(status="Rejected")
        connector = self.charger.remote_start_claim(evse_id, id_token["id_token"])
        if connector is None:
            return call_result.RequestStartTransaction(status="Rejected")
        self._pending[call_unique_id] = connector
        return call_result.RequestStartTransaction(status="Accepted")

    @after(Action.request_start_transaction)
    def after_request_start_transaction(
        self,
        id_token: dict,
        remote_start_id: int,
        call_unique_id: str,
        charging_profile: dict | None = None,
        **kwargs,
    ):
        connector = self._pending.pop(call_unique_id, None)
        if connector is not None:
            if charging_profile is not None:
                profile = smart_charging.from_v201(connector.connector_id, charging_profile)
                self.charger.charging_profiles.install(profile)
            self.charger.remote_start_begin(connector, id_token["id_token"], remote_start_id)

    @on(Action.request_stop_transaction)
    def on_request_stop_transaction(self, transaction_id: str, **kwargs):
        accepted = self.charger.remote_stop(transaction_id)
        return call_result.RequestStopTransaction(status="Accepted" if accepted else "Rejected")

    @on(Action.get_transaction_status)
    def on_get_transaction_status(self, transaction_id: str | None = None, **kwargs):
        if transaction_id is None:
            return call_result.GetTransactionStatus(messages_in_queue=False)
        ongoing = self.charger.session_by_transaction(transaction_id) is not None
        return call_result.GetTransactionStatus(messages_in_queue=False, ongoing_indicator=ongoing)

    def _trigger_status(self, requested_message: str, evse: dict | None) -> str:
        if requested_message not in TRIGGERABLE:
            return "NotImplemented"
        if evse is not None and evse["id"] not in self.charger.connectors:
            return "Rejected"
        if requested_message == "BootNotification" and self.result.boot_status == "Accepted":
            return "Rejected"  # F06.FR.17: no BootNotification once accepted
        return "Accepted"

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, evse: dict | None = None, **kwargs):
        return call_result.TriggerMessage(status=self._trigger_status(requested_message, evse))

    @after(Action.trigger_message)
    def after_trigger_message(self, requested_message: str, evse: dict | None = None, **kwargs):
        if self._trigger_status(requested_message, evse) == "Accepted":
            self.charger.spawn(self._triggered(requested_message, evse["id"] if evse else None))

    @on(Action.unlock_connector)
    def on_unlock_connector(self, evse_id: int, connector_id: int, **kwargs):
        connector = self.charger.connectors.get(evse_id)
        if connector is None or connector_id != 1:
            return call_result.UnlockConnector(status="UnknownConnector")
        if connector.session is not None:
            # F05.FR.02: a connector with an authorized transaction is not unlocked.
            return call_result.UnlockConnector(status="OngoingAuthorizedTransaction")
        return call_result.UnlockConnector(status="Unlocked")

    @on(Action.change_availability)
    def on_change_availability(self, operational_status: str, evse: dict | None = None, **kwargs):
        if evse is not None and evse.get("connector_id", 1) != 1:
            return call_result.ChangeAvailability(status="Rejected")
        status = self.charger.change_availability(
            evse["id"] if evse else 0, operative=(operational_status == "Operative")
        )
        return call_result.ChangeAvailability(status=status or "Rejected")

    @after(Action.change_availability)
    def after_change_availability(self, operational_status: str, evse: dict | None = None, **kwargs):
        if evse is None:
            self.charger.spawn(self.charger.availability_notify(0))
        elif evse["id"] in self.charger.connectors and evse.get("connector_id", 1) == 1:
            self.charger.spawn(self.charger.availability_notify(evse["id"]))

    @on(Action.clear_cache)
    def on_clear_cache(self, **kwargs):
        return call_result.ClearCache(status="Accepted")

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, message_id: str | None = None, data=None, **kwargs):
        if vendor_id != DATA_TRANSFER_VENDOR:
            return call_result.DataTransfer(status="UnknownVendorId")
        return call_result.DataTransfer(status="Accepted", data=data)


def _id_token(id_tag: str) -> dict:
    return {"idToken": id_tag, "type": ID_TOKEN_TYPE}
