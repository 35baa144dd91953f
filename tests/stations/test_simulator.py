"""The charger simulator against a stand-in CSMS built on the `ocpp` package's server-side ChargePoint.

The stand-in validates every frame against the OCPP 1.6 schemas (requests from the simulator and its
answers to CSMS calls), so these tests also show that the simulator speaks valid OCPP. No database.
"""

import asyncio
import base64
import contextlib
import datetime as dt
import io
import itertools
import threading
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from ocpp import exceptions as ocpp_errors
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.server import serve

from cpms.simulator import FleetConfig, run_fleet

PASSWORD = "sim-test-password"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class StandInChargePoint(ChargePoint):
    """Answers everything a 1.6 charger sends; records (action, payload) in `csms.frames`."""

    def __init__(self, identity, connection, csms: "StandInCsms"):
        super().__init__(identity, connection, response_timeout=10)
        self.csms = csms

    def _record(self, action: str, **payload) -> None:
        self.csms.frames.append((self.id, action, payload))

    @on(Action.boot_notification)
    def on_boot_notification(self, **payload):
        self._record("BootNotification", **payload)
        if self.csms.script is not None and not self.csms.script_started:
            self.csms.script_started = True
            self.csms.tasks.append(asyncio.ensure_future(self.csms.script(self)))
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
    def on_authorize(self, id_tag):
        self._record("Authorize", id_tag=id_tag)
        return call_result.Authorize(id_tag_info={"status": "Accepted"})

    @on(Action.start_transaction)
    def on_start_transaction(self, **payload):
        self._record("StartTransaction", **payload)
        return call_result.StartTransaction(
            transaction_id=next(self.csms.transaction_ids), id_tag_info={"status": self.csms.start_status}
        )

    @on(Action.meter_values)
    def on_meter_values(self, **payload):
        self._record("MeterValues", **payload)
        if self.csms.meter_values_error:
            raise ocpp_errors.NotImplementedError(description="MeterValues refused by the stand-in")
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    def on_stop_transaction(self, **payload):
        self._record("StopTransaction", **payload)
        return call_result.StopTransaction(id_tag_info={"status": "Accepted"})


class StandInCsms:
    """A CSMS on a loopback port, in a thread of its own so tests can run the simulator (or the
    management command, which runs its own event loop) in the main thread."""

    def __init__(
        self,
        *,
        identities: set[str],
        boot_status: str = "Accepted",
        start_status: str = "Accepted",
        meter_values_error: bool = False,
        script: Callable[[StandInChargePoint], Awaitable[None]] | None = None,
    ):
        self.identities = identities
        self.boot_status = boot_status
        self.start_status = start_status
        self.meter_values_error = meter_values_error
        self.script = script
        self.script_started = False
        self.frames: list[tuple[str, str, dict]] = []
        self.results: dict[str, object] = {}
        self.tasks: list[asyncio.Future] = []
        self.transaction_ids = itertools.count(5001)
        self.port: int | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def actions(self, identity: str) -> list[str]:
        return [action for who, action, _ in self.frames if who == identity]

    async def _process_request(self, connection, request):
        identity = request.path.rsplit("/", 1)[-1]
        if identity not in self.identities:
            return connection.respond(HTTPStatus.NOT_FOUND, "Unknown charger\n")
        expected = "Basic " + base64.b64encode(f"{identity}:{PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Bad credentials\n")
        return None

    async def _handle(self, connection):
        identity = connection.request.path.rsplit("/", 1)[-1]
        charge_point = StandInChargePoint(identity, connection, self)
        # The charger hanging up ends this handler.
        with contextlib.suppress(Exception):
            await charge_point.start()

    async def _main(self):
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(
            self._handle,
            "127.0.0.1",
            0,
            subprotocols=["ocpp1.6"],
            process_request=self._process_request,
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()
            for task in self.tasks:
                task.cancel()

    def __enter__(self) -> "StandInCsms":
        self._thread.start()
        assert self._ready.wait(timeout=10), "stand-in CSMS did not start"
        return self

    def __exit__(self, *exc_info):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


def _fleet(csms: StandInCsms, **overrides) -> FleetConfig:
    options = {
        "url": csms.url,
        "identities": ("SIM-T-1",),
        "password": PASSWORD,
        "meter_interval_s": 0.05,
        "meter_samples": 3,
        "speedup": 1200,
        "seed": 3,
        "response_timeout_s": 10,
    }
    options.update(overrides)
    return FleetConfig(**options)


def test_full_session_flow_v16():
    with StandInCsms(identities={"SIM-T-1"}) as csms:
        summary = asyncio.run(run_fleet(_fleet(csms, sessions=True)))

    assert summary.ok, summary.format()
    assert csms.actions("SIM-T-1") == [
        "BootNotification",
        "StatusNotification",
        "StatusNotification",
        "StatusNotification",
        "Authorize",
        "StatusNotification",
        "StartTransaction",
        "StatusNotification",
        "MeterValues",
        "MeterValues",
        "MeterValues",
        "MeterValues",
        "StopTransaction",
        "StatusNotification",
        "StatusNotification",
    ]
    statuses = [(p["connector_id"], p["status"]) for _, a, p in csms.frames if a == "StatusNotification"]
    assert statuses == [
        (0, "Available"),
        (1, "Available"),
        (2, "Available"),
        (1, "Preparing"),
        (1, "Charging"),
        (1, "Finishing"),
        (1, "Available"),
    ]
    [charger] = summary.chargers
    [record] = charger.sessions
    assert record.transaction_id == "5001"
    [start] = [p for _, a, p in csms.frames if a == "StartTransaction"]
    [stop] = [p for _, a, p in csms.frames if a == "StopTransaction"]
    assert start["meter_start"] == record.meter_start_wh
    assert start["id_tag"] == record.id_tag
    assert stop["meter_stop"] == record.meter_stop_wh
    assert stop["transaction_id"] == 5001
    assert stop["reason"] == "Local"
    [end] = stop["transaction_data"]
    assert [(v["measurand"], v["context"]) for v in end["sampled_value"]] == [
        ("Energy.Active.Import.Register", "Transaction.End"),
        ("SoC", "Transaction.End"),
    ]
    assert end["sampled_value"][0]["value"] == str(record.meter_stop_wh)

    meter_frames = [p for _, a, p in csms.frames if a == "MeterValues"]
    assert {p["transaction_id"] for p in meter_frames} == {5001}
    registers = [int(p["meter_value"][0]["sampled_value"][0]["value"]) for p in meter_frames]
    # Begin at meterStart, then rising every sample (0.05 s x 1200 = 1 min at up to 22 kW), ending at meterStop.
    assert registers[0] == record.meter_start_wh
    assert all(later > earlier for earlier, later in itertools.pairwise(registers))
    assert registers[-1] == record.meter_stop_wh
    periodic = meter_frames[1]["meter_value"][0]["sampled_value"]
    assert [(v["measurand"], v.get("phase"), v["unit"], v["context"]) for v in periodic] == [
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
    # The summary keeps exactly what went on the wire (camelCase, as sent).
    assert [mv["sampledValue"] for mv in record.meter_values][1][0]["value"] == periodic[0]["value"]
    assert charger.messages_sent == len(csms.frames)


def _readings(summary) -> list[list[tuple[str, str]]]:
    """Sampled values without timestamps."""
    [charger] = summary.chargers
    return [
        [(v["measurand"], v["value"]) for v in mv["sampledValue"]]
        for record in charger.sessions
        for mv in [*record.meter_values, *record.transaction_data]
    ]


def test_readings_are_reproducible_from_the_seed():
    with StandInCsms(identities={"SIM-T-1"}) as csms:
        first = asyncio.run(run_fleet(_fleet(csms, sessions=True, seed=11)))
        second = asyncio.run(run_fleet(_fleet(csms, sessions=True, seed=11)))
        other = asyncio.run(run_fleet(_fleet(csms, sessions=True, seed=12)))

    assert first.ok and second.ok and other.ok
    assert _readings(first) == _readings(second)
    assert _readings(first) != _readings(other)


def test_refused_handshakes_are_reported_with_their_status():
    with StandInCsms(identities={"SIM-T-1", "SIM-T-2"}) as csms:
        summary = asyncio.run(run_fleet(_fleet(csms, identities=("SIM-T-1", "SIM-T-404"), sessions=True)))
        wrong_password = asyncio.run(run_fleet(_fleet(csms, identities=("SIM-T-2",), password="nope-nope")))

    assert not summary.ok
    assert summary.connected == 1
    assert [(c.identity, c.refused_status) for c in summary.failed] == [("SIM-T-404", 404)]
    assert summary.sessions_completed == 1
    assert "SIM-T-404: refused at the handshake, HTTP 404" in summary.format()
    assert [c.refused_status for c in wrong_password.failed] == [401]


def test_call_errors_fail_the_session_and_are_counted():
    with StandInCsms(identities={"SIM-T-1"}, meter_values_error=True) as csms:
        summary = asyncio.run(run_fleet(_fleet(csms, sessions=True)))

    assert not summary.ok
    assert summary.sessions_failed == 1
    assert summary.call_errors == 1
    [charger] = summary.chargers
    assert charger.call_errors == ["MeterValues: NotImplemented MeterValues refused by the stand-in"]
    # After the failure the connector is offered again.
    statuses = [(p["connector_id"], p["status"]) for _, a, p in csms.frames if a == "StatusNotification"]
    assert statuses[-1] == (1, "Available")


def test_a_start_not_accepted_is_stopped_and_fails():
    with StandInCsms(identities={"SIM-T-1"}, start_status="Invalid") as csms:
        summary = asyncio.run(run_fleet(_fleet(csms, sessions=True)))

    assert summary.sessions_failed == 1
    [stop] = [p for _, a, p in csms.frames if a == "StopTransaction"]
    assert stop["reason"] == "DeAuthorized"
    assert "MeterValues" not in csms.actions("SIM-T-1")


def test_boot_not_accepted_is_a_failed_charger():
    with StandInCsms(identities={"SIM-T-1"}, boot_status="Rejected") as csms:
        summary = asyncio.run(run_fleet(_fleet(csms, sessions=True)))

    assert [c.boot_status for c in summary.failed] == ["Rejected"]
    assert csms.actions("SIM-T-1") == ["BootNotification"]


async def _exercise(charge_point: StandInChargePoint) -> None:
    """CSMS-initiated calls; the stand-in validates each answer against the 1.6 schema."""
    results = charge_point.csms.results
    calls = [
        ("GetConfiguration", call.GetConfiguration(key=["HeartbeatInterval", "NoSuchKey"])),
        ("ChangeConfiguration", call.ChangeConfiguration(key="MeterValueSampleInterval", value="60")),
        ("ChangeConfigurationReadonly", call.ChangeConfiguration(key="NumberOfConnectors", value="4")),
        ("ChangeConfigurationUnknown", call.ChangeConfiguration(key="NoSuchKey", value="1")),
        ("TriggerMessage", call.TriggerMessage(requested_message="StatusNotification", connector_id=2)),
        ("ClearCache", call.ClearCache()),
        ("DataTransfer", call.DataTransfer(vendor_id="CPMS-SIM", message_id="echo", data="ping")),
        ("DataTransferUnknownVendor", call.DataTransfer(vendor_id="com.example")),
        ("ChangeAvailability", call.ChangeAvailability(connector_id=2, type="Inoperative")),
        ("UnlockConnector", call.UnlockConnector(connector_id=1)),
        ("UnlockConnectorMissing", call.UnlockConnector(connector_id=9)),
        ("RemoteStartTransaction", call.RemoteStartTransaction(id_tag="REMOTE-1", connector_id=1)),
        ("RemoteStartBusy", call.RemoteStartTransaction(id_tag="REMOTE-2", connector_id=1)),
    ]
    for name, payload in calls:
        results[name] = await charge_point.call(payload)
    # Wait (bounded: a loaded CI machine can be slow) until the remote session has started, then stop it.
    for _ in range(300):
        starts = [p for _, a, p in charge_point.csms.frames if a == "StartTransaction"]
        if starts:
            break
        await asyncio.sleep(0.05)
    results["RemoteStopTransaction"] = await charge_point.call(
        call.RemoteStopTransaction(transaction_id=5001)
    )
    results["RemoteStopUnknown"] = await charge_point.call(call.RemoteStopTransaction(transaction_id=1))
    for _ in range(300):
        if any(a == "StopTransaction" for _, a, _ in charge_point.csms.frames):
            break
        await asyncio.sleep(0.05)
    results["Reset"] = await charge_point.call(call.Reset(type="Soft"))


def test_answers_csms_calls_and_reboots_on_reset():
    with StandInCsms(identities={"SIM-T-1"}, script=_exercise) as csms:
        # The fleet runs until duration_s: long enough for the whole script on a loaded machine.
        summary = asyncio.run(run_fleet(_fleet(csms, meter_samples=400, duration_s=12)))

    results = {name: getattr(result, "status", result) for name, result in csms.results.items()}
    assert results.pop("GetConfiguration").configuration_key == [
        {"key": "HeartbeatInterval", "readonly": False, "value": "300"}
    ]
    assert csms.results["DataTransfer"].data == "ping"
    assert results == {
        "ChangeConfiguration": "Accepted",
        "ChangeConfigurationReadonly": "Rejected",
        "ChangeConfigurationUnknown": "NotSupported",
        "TriggerMessage": "Accepted",
        "ClearCache": "Accepted",
        "DataTransfer": "Accepted",
        "DataTransferUnknownVendor": "UnknownVendorId",
        "ChangeAvailability": "Accepted",
        "UnlockConnector": "Unlocked",
        "UnlockConnectorMissing": "NotSupported",
        "RemoteStartTransaction": "Accepted",
        "RemoteStartBusy": "Rejected",
        "RemoteStopTransaction": "Accepted",
        "RemoteStopUnknown": "Rejected",
        "Reset": "Accepted",
    }
    assert summary.ok, summary.format()
    [charger] = summary.chargers
    [record] = charger.sessions
    assert (record.remote, record.id_tag, record.stop_reason, record.status) == (
        True,
        "REMOTE-1",
        "Remote",
        "completed",
    )
    # AuthorizeRemoteTxRequests is false: a remote start goes straight to StartTransaction.
    assert "Authorize" not in csms.actions("SIM-T-1")
    # Reset: the charger reconnected and booted again.
    assert charger.connections == 2
    assert csms.actions("SIM-T-1").count("BootNotification") == 2
    connector_2 = [
        p["status"] for _, a, p in csms.frames if a == "StatusNotification" and p["connector_id"] == 2
    ]
    # Boot, triggered, then Inoperative; after the reboot the connector stays Unavailable.
    assert connector_2 == ["Available", "Available", "Unavailable", "Unavailable"]


def test_simulate_command_prints_summary_and_fails_on_refusal():
    out = io.StringIO()
    with StandInCsms(identities={"SIM-001", "SIM-002"}) as csms:
        call_command(
            "simulate",
            "--url",
            csms.url,
            "--stations",
            "2",
            "--password",
            PASSWORD,
            "--sessions",
            "--meter-interval",
            "0.05",
            "--meter-samples",
            "1",
            stdout=out,
        )
        assert "chargers connected:  2" in out.getvalue()
        assert "sessions completed:  2" in out.getvalue()

        refused = io.StringIO()
        with pytest.raises(CommandError, match="1 charger"):
            call_command(
                "simulate",
                "--url",
                csms.url,
                "--identities",
                "SIM-001,NOPE-1",
                "--password",
                PASSWORD,
                stdout=refused,
            )
    assert "NOPE-1: refused at the handshake, HTTP 404" in refused.getvalue()
