"""The OCPP 2.0.1 charger simulator against a stand-in CSMS built on the `ocpp` package's server-side
ChargePoint (the 1.6 stand-in of test_simulator.py, taught 2.0.1).

The stand-in validates every frame against the OCPP 2.0.1 schemas (requests from the simulator and its
answers to CSMS calls), so these tests also show that the simulator speaks valid OCPP. No database.
"""

import asyncio
import contextlib
import io
import itertools
import re

import pytest
from django.core.management import call_command
from ocpp import exceptions as ocpp_errors
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action

from cpms.simulator import FleetConfig, run_fleet
from tests.stations.test_simulator import PASSWORD, StandInChargePoint, StandInCsms, _fleet, _now

SUBPROTOCOLS = ["ocpp2.0.1", "ocpp1.6"]
PERIODIC = ("Sample.Periodic", "MeterValuePeriodic")


class StandInChargePointV201(ChargePoint):
    """Answers everything a 2.0.1 charger sends; records (action, payload) in `csms.frames`."""

    def __init__(self, identity, connection, csms: "StandInCsmsV201"):
        super().__init__(identity, connection, response_timeout=10)
        self.csms = csms

    # Versions differ in their handlers, not in how a frame is recorded.
    _record = StandInChargePoint._record

    @on(Action.boot_notification)
    def on_boot_notification(self, **payload):
        self._record("BootNotification", **payload)
        self.csms.booted(self)
        return call_result.BootNotification(current_time=_now(), interval=300, status=self.csms.boot_status)

    @on(Action.heartbeat)
    def on_heartbeat(self):
        self._record("Heartbeat")
        return call_result.Heartbeat(current_time=_now())

    @on(Action.status_notification)
    def on_status_notification(self, **payload):
        self._record("StatusNotification", **payload)
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, **payload):
        self._record("Authorize", **payload)
        return call_result.Authorize(id_token_info={"status": "Accepted"})

    @on(Action.transaction_event)
    def on_transaction_event(self, **payload):
        self._record("TransactionEvent", **payload)
        if payload["event_type"] == "Updated" and self.csms.meter_values_error:
            raise ocpp_errors.NotImplementedError(description="Updated refused by the stand-in")
        if "id_token" not in payload:
            return call_result.TransactionEvent()
        return call_result.TransactionEvent(id_token_info={"status": self.csms.start_status})

    @on(Action.meter_values)
    def on_meter_values(self, **payload):
        self._record("MeterValues", **payload)
        return call_result.MeterValues()

    @on(Action.notify_report)
    def on_notify_report(self, **payload):
        self._record("NotifyReport", **payload)
        return call_result.NotifyReport()

    @on(Action.firmware_status_notification)
    def on_firmware_status_notification(self, **payload):
        self._record("FirmwareStatusNotification", **payload)
        return call_result.FirmwareStatusNotification()


class StandInCsmsV201(StandInCsms):
    """The 1.6 stand-in CSMS, offering ocpp2.0.1 first and ocpp1.6 second (a mixed fleet)."""

    async def _process_request(self, connection, request):
        # The base class serves ocpp1.6 only; negotiation happens after this hook, with this list.
        connection.protocol.available_subprotocols = SUBPROTOCOLS
        return await super()._process_request(connection, request)

    async def _handle(self, connection):
        identity = connection.request.path.rsplit("/", 1)[-1]
        kind = StandInChargePointV201 if connection.subprotocol == "ocpp2.0.1" else StandInChargePoint
        # The charger hanging up ends this handler.
        with contextlib.suppress(Exception):
            await kind(identity, connection, self).start()

    def booted(self, charge_point: StandInChargePointV201) -> None:
        if self.script is not None and not self.script_started:
            self.script_started = True
            self.tasks.append(asyncio.ensure_future(self.script(charge_point)))

    def payloads(self, action: str) -> list[dict]:
        return [payload for _, name, payload in self.frames if name == action]


def _v201(csms: StandInCsms, **overrides) -> FleetConfig:
    return _fleet(csms, protocol="2.0.1", **overrides)


def test_full_session_flow_v201():
    with StandInCsmsV201(identities={"SIM-T-1"}) as csms:
        summary = asyncio.run(run_fleet(_v201(csms, sessions=True)))

    assert summary.ok, summary.format()
    assert csms.actions("SIM-T-1") == [
        "BootNotification",
        "StatusNotification",
        "StatusNotification",
        "Authorize",
        "StatusNotification",
        *["TransactionEvent"] * 5,
        "StatusNotification",
    ]
    [boot] = csms.payloads("BootNotification")
    assert boot == {
        "charging_station": {
            "vendor_name": "CPMS",
            "model": "Simulator",
            "serial_number": "SIM-T-1",
            "firmware_version": "sim-1.0",
        },
        "reason": "PowerUp",
    }
    # No station-wide status in 2.0.1; one Occupied for the whole session (1.6 Preparing..Finishing).
    statuses = [
        (p["evse_id"], p["connector_id"], p["connector_status"]) for p in csms.payloads("StatusNotification")
    ]
    assert statuses == [(1, 1, "Available"), (2, 1, "Available"), (1, 1, "Occupied"), (1, 1, "Available")]
    assert csms.payloads("Authorize") == [{"id_token": {"id_token": "SIM-TAG-0001", "type": "ISO14443"}}]

    [charger] = summary.chargers
    [record] = charger.sessions
    events = csms.payloads("TransactionEvent")
    assert [(e["event_type"], e["seq_no"], e["trigger_reason"]) for e in events] == [
        ("Started", 0, "Authorized"),
        ("Updated", 1, "MeterValuePeriodic"),
        ("Updated", 2, "MeterValuePeriodic"),
        ("Updated", 3, "MeterValuePeriodic"),
        ("Ended", 4, "StopAuthorized"),
    ]
    assert {e["transaction_info"]["transaction_id"] for e in events} == {record.transaction_id}
    assert len(record.transaction_id) == 20
    started, *updated, ended = events
    assert started["evse"] == {"id": 1, "connector_id": 1}
    assert started["id_token"] == {"id_token": "SIM-TAG-0001", "type": "ISO14443"}
    assert started["timestamp"] == record.started_at
    assert {e["transaction_info"].get("charging_state") for e in updated} == {"Charging"}
    assert ended["transaction_info"]["stopped_reason"] == "Local"
    assert ended["timestamp"] == record.stopped_at

    def sampled(event: dict) -> list[tuple]:
        [meter_value] = event["meter_value"]
        return [
            (v["measurand"], v.get("phase"), v["unit_of_measure"]["unit"], v["context"], v["value"])
            for v in meter_value["sampled_value"]
        ]

    assert sampled(started) == [
        ("Energy.Active.Import.Register", None, "Wh", "Transaction.Begin", record.meter_start_wh),
        ("SoC", None, "Percent", "Transaction.Begin", sampled(started)[1][4]),
    ]
    assert sampled(ended)[0] == (
        "Energy.Active.Import.Register",
        None,
        "Wh",
        "Transaction.End",
        record.meter_stop_wh,
    )
    periodic = sampled(updated[0])
    assert [row[:4] for row in periodic] == [
        ("Energy.Active.Import.Register", None, "Wh", "Sample.Periodic"),
        ("Power.Active.Import", None, "W", "Sample.Periodic"),
        ("Current.Import", "L1", "A", "Sample.Periodic"),
        ("Current.Import", "L2", "A", "Sample.Periodic"),
        ("Current.Import", "L3", "A", "Sample.Periodic"),
        ("Voltage", "L1-N", "V", "Sample.Periodic"),
        ("Voltage", "L2-N", "V", "Sample.Periodic"),
        ("Voltage", "L3-N", "V", "Sample.Periodic"),
        ("SoC", None, "Percent", "Sample.Periodic"),
    ]
    # Numbers on the wire, not strings (2.0.1 SampledValue.value is a decimal).
    assert all(isinstance(row[4], int | float) and not isinstance(row[4], bool) for row in periodic)
    registers = [sampled(event)[0][4] for event in events]
    assert registers[0] == record.meter_start_wh
    assert all(later > earlier for earlier, later in itertools.pairwise(registers[:-1]))
    assert registers[-1] == record.meter_stop_wh
    # The summary keeps exactly what went on the wire (camelCase): Started and Updated, then Ended.
    assert [mv["sampledValue"][0]["context"] for mv in record.meter_values] == [
        "Transaction.Begin",
        *["Sample.Periodic"] * 3,
    ]
    assert [mv["sampledValue"][0]["value"] for mv in record.transaction_data] == [record.meter_stop_wh]
    assert record.meter_values[1]["sampledValue"][0]["unitOfMeasure"] == {"unit": "Wh"}
    assert charger.protocol == "2.0.1"
    assert charger.messages_sent == len(csms.frames)


def test_both_versions_read_the_same_meter():
    """The meter and the EV are protocol-independent: one seed and identity, the same readings."""
    with StandInCsmsV201(identities={"SIM-T-1"}) as csms:
        v16 = asyncio.run(run_fleet(_fleet(csms, sessions=True, seed=5)))
        v201 = asyncio.run(run_fleet(_v201(csms, sessions=True, seed=5)))

    assert v16.ok and v201.ok

    def readings(summary) -> list[list[tuple[str, str]]]:
        [record] = summary.sessions
        return [
            [(v["measurand"], str(v["value"])) for v in mv["sampledValue"]]
            for mv in [*record.meter_values, *record.transaction_data]
        ]

    assert readings(v16) == readings(v201)
    assert v16.sessions[0].energy_wh == v201.sessions[0].energy_wh > 0


def test_a_refused_updated_event_fails_the_session():
    with StandInCsmsV201(identities={"SIM-T-1"}, meter_values_error=True) as csms:
        summary = asyncio.run(run_fleet(_v201(csms, sessions=True)))

    assert summary.sessions_failed == 1
    [charger] = summary.chargers
    assert charger.call_errors == ["TransactionEvent: NotImplemented Updated refused by the stand-in"]
    statuses = [(p["evse_id"], p["connector_status"]) for p in csms.payloads("StatusNotification")]
    assert statuses[-1] == (1, "Available")


def test_a_start_not_accepted_ends_the_transaction_deauthorized():
    with StandInCsmsV201(identities={"SIM-T-1"}, start_status="Invalid") as csms:
        summary = asyncio.run(run_fleet(_v201(csms, sessions=True)))

    assert summary.sessions_failed == 1
    events = csms.payloads("TransactionEvent")
    assert [(e["event_type"], e["seq_no"]) for e in events] == [("Started", 0), ("Ended", 1)]
    assert (events[1]["trigger_reason"], events[1]["transaction_info"]["stopped_reason"]) == (
        "Deauthorized",
        "DeAuthorized",
    )


async def _wait_for(csms: StandInCsmsV201, event_type: str) -> dict:
    """The first TransactionEvent of `event_type`, waiting (bounded) for it."""
    for _ in range(100):
        events = [p for p in csms.payloads("TransactionEvent") if p["event_type"] == event_type]
        if events:
            return events[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no TransactionEvent {event_type}")


def _variable(component: str, variable: str, **extra) -> dict:
    return {"component": {"name": component}, "variable": {"name": variable}, **extra}


async def _exercise(charge_point: StandInChargePointV201) -> None:
    """CSMS-initiated calls; the stand-in validates each answer against the 2.0.1 schema."""
    csms = charge_point.csms
    results = csms.results
    calls = [
        (
            "GetVariables",
            call.GetVariables(
                get_variable_data=[
                    _variable("OCPPCommCtrlr", "HeartbeatInterval"),
                    _variable("OCPPCommCtrlr", "NoSuchVariable"),
                    _variable("NoSuchCtrlr", "HeartbeatInterval"),
                    _variable("ChargingStation", "Model", attributeType="Target"),
                ]
            ),
        ),
        (
            "SetVariables",
            call.SetVariables(
                set_variable_data=[
                    _variable("SampledDataCtrlr", "TxUpdatedInterval", attributeValue="60"),
                    _variable("ChargingStation", "Model", attributeValue="Other"),
                    _variable("OCPPCommCtrlr", "HeartbeatInterval", attributeValue="soon"),
                ]
            ),
        ),
        ("GetBaseReport", call.GetBaseReport(request_id=7, report_base="FullInventory")),
        ("TriggerMessage", call.TriggerMessage(requested_message="StatusNotification", evse={"id": 2})),
        ("TriggerBoot", call.TriggerMessage(requested_message="BootNotification")),
        ("TriggerUnknownEvse", call.TriggerMessage(requested_message="Heartbeat", evse={"id": 9})),
        ("TriggerFirmware", call.TriggerMessage(requested_message="FirmwareStatusNotification")),
        ("ClearCache", call.ClearCache()),
        ("DataTransfer", call.DataTransfer(vendor_id="CPMS-SIM", message_id="echo", data="ping")),
        ("DataTransferUnknownVendor", call.DataTransfer(vendor_id="com.example")),
        ("ChangeAvailability", call.ChangeAvailability(operational_status="Inoperative", evse={"id": 2})),
        ("UnlockConnector", call.UnlockConnector(evse_id=1, connector_id=1)),
        ("UnlockConnectorMissing", call.UnlockConnector(evse_id=9, connector_id=1)),
        (
            "RequestStartTransaction",
            call.RequestStartTransaction(
                id_token={"idToken": "REMOTE-1", "type": "ISO14443"}, remote_start_id=42, evse_id=1
            ),
        ),
        (
            "RequestStartBusy",
            call.RequestStartTransaction(
                id_token={"idToken": "REMOTE-2", "type": "ISO14443"}, remote_start_id=43, evse_id=1
            ),
        ),
    ]
    for name, payload in calls:
        results[name] = await charge_point.call(payload)
    transaction_id = (await _wait_for(csms, "Started"))["transaction_info"]["transaction_id"]
    results["UnlockDuringSession"] = await charge_point.call(call.UnlockConnector(evse_id=1, connector_id=1))
    results["GetTransactionStatus"] = await charge_point.call(
        call.GetTransactionStatus(transaction_id=transaction_id)
    )
    results["RequestStopTransaction"] = await charge_point.call(
        call.RequestStopTransaction(transaction_id=transaction_id)
    )
    results["RequestStopUnknown"] = await charge_point.call(
        call.RequestStopTransaction(transaction_id="nope")
    )
    await _wait_for(csms, "Ended")
    results["Reset"] = await charge_point.call(call.Reset(type="Immediate"))


def test_answers_csms_calls_and_reboots_on_reset_v201():
    with StandInCsmsV201(identities={"SIM-T-1"}, script=_exercise) as csms:
        summary = asyncio.run(run_fleet(_v201(csms, meter_samples=200, duration_s=4)))

    got = csms.results["GetVariables"].get_variable_result
    assert [(r["attribute_status"], r.get("attribute_value")) for r in got] == [
        ("Accepted", "300"),
        ("UnknownVariable", None),
        ("UnknownComponent", None),
        ("NotSupportedAttributeType", None),
    ]
    assert [r["attribute_status"] for r in csms.results["SetVariables"].set_variable_result] == [
        "Accepted",
        "Rejected",
        "Rejected",
    ]
    assert csms.results["DataTransfer"].data == "ping"
    assert csms.results["GetTransactionStatus"].ongoing_indicator is True
    statuses = {
        name: result.status
        for name, result in csms.results.items()
        if name not in {"GetVariables", "SetVariables", "GetTransactionStatus"}
    }
    assert statuses == {
        "GetBaseReport": "Accepted",
        "TriggerMessage": "Accepted",
        "TriggerBoot": "Rejected",
        "TriggerUnknownEvse": "Rejected",
        "TriggerFirmware": "Accepted",
        "ClearCache": "Accepted",
        "DataTransfer": "Accepted",
        "DataTransferUnknownVendor": "UnknownVendorId",
        "ChangeAvailability": "Accepted",
        "UnlockConnector": "Unlocked",
        "UnlockConnectorMissing": "UnknownConnector",
        "RequestStartTransaction": "Accepted",
        "RequestStartBusy": "Rejected",
        "UnlockDuringSession": "OngoingAuthorizedTransaction",
        "RequestStopTransaction": "Accepted",
        "RequestStopUnknown": "Rejected",
        "Reset": "Accepted",
    }
    # GetBaseReport: Accepted, then the report itself.
    [report] = csms.payloads("NotifyReport")
    assert (report["request_id"], report["seq_no"], report["tbc"]) == (7, 0, False)
    reported = {
        (item["component"]["name"], item["variable"]["name"]): item["variable_attribute"][0]
        for item in report["report_data"]
    }
    assert reported[("SampledDataCtrlr", "TxUpdatedInterval")] == {
        "type": "Actual",
        "value": "60",
        "mutability": "ReadWrite",
    }
    assert reported[("ChargingStation", "Model")]["mutability"] == "ReadOnly"
    assert csms.payloads("FirmwareStatusNotification") == [{"status": "Idle"}]

    assert summary.ok, summary.format()
    [charger] = summary.chargers
    [record] = charger.sessions
    assert (record.remote, record.id_tag, record.remote_start_id, record.stop_reason, record.status) == (
        True,
        "REMOTE-1",
        42,
        "Remote",
        "completed",
    )
    started = [p for p in csms.payloads("TransactionEvent") if p["event_type"] == "Started"]
    assert [(p["trigger_reason"], p["transaction_info"]["remote_start_id"]) for p in started] == [
        ("RemoteStart", 42)
    ]
    ended = [p for p in csms.payloads("TransactionEvent") if p["event_type"] == "Ended"]
    assert [(p["trigger_reason"], p["transaction_info"]["stopped_reason"]) for p in ended] == [
        ("RemoteStop", "Remote")
    ]
    # AuthorizeRemoteStart is false: a remote start goes straight to TransactionEvent Started.
    assert "Authorize" not in csms.actions("SIM-T-1")
    # Reset: the charger reconnected and booted again, saying why.
    assert charger.connections == 2
    assert [p["reason"] for p in csms.payloads("BootNotification")] == ["PowerUp", "RemoteReset"]
    evse_2 = [p["connector_status"] for p in csms.payloads("StatusNotification") if p["evse_id"] == 2]
    # Boot, triggered, then Inoperative; after the reboot the EVSE stays Unavailable.
    assert evse_2 == ["Available", "Available", "Unavailable", "Unavailable"]


async def _reset_on_idle(charge_point: StandInChargePointV201) -> None:
    await _wait_for(charge_point.csms, "Started")
    charge_point.csms.results["Reset"] = await charge_point.call(call.Reset(type="OnIdle"))


def test_reset_on_idle_waits_for_the_session():
    with StandInCsmsV201(identities={"SIM-T-1"}, script=_reset_on_idle) as csms:
        summary = asyncio.run(
            run_fleet(_v201(csms, sessions=True, meter_samples=10, meter_interval_s=0.1, duration_s=3))
        )

    assert csms.results["Reset"].status == "Scheduled"
    assert summary.ok, summary.format()
    [charger] = summary.chargers
    assert [s.stop_reason for s in charger.sessions] == ["Local"]
    assert charger.connections == 2
    # The reboot came after the transaction ended, not in the middle of it.
    order = [(action, payload.get("event_type")) for _, action, payload in csms.frames]
    assert order.index(("BootNotification", None), 1) > order.index(("TransactionEvent", "Ended"))


def test_simulate_command_runs_a_mixed_fleet():
    out = io.StringIO()
    with StandInCsmsV201(identities={"SIM-001", "SIM-002", "SIM-003", "SIM-004"}) as csms:
        call_command(
            "simulate",
            "--url",
            csms.url,
            "--stations",
            "4",
            "--protocol",
            "mixed",
            "--password",
            PASSWORD,
            "--sessions",
            "--meter-interval",
            "0.05",
            "--meter-samples",
            "1",
            stdout=out,
        )
        by_identity = {who: action for who, action, _ in csms.frames if action != "StatusNotification"}

    assert "OCPP 1.6 x2, 2.0.1 x2" in out.getvalue()
    assert "sessions completed:  4" in out.getvalue()
    # Alternating, 1.6 first: the last message of each charger is its stop.
    assert by_identity == {
        "SIM-001": "StopTransaction",
        "SIM-002": "TransactionEvent",
        "SIM-003": "StopTransaction",
        "SIM-004": "TransactionEvent",
    }


def test_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match=re.escape("supported: 1.6, 2.0.1, mixed")):
        asyncio.run(run_fleet(FleetConfig(url="ws://127.0.0.1:9/ocpp", protocol="2.1")))
