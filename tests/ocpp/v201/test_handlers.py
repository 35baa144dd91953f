"""OCPP 2.0.1 handlers: exact frames in and out, and what was stored."""

from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from django.utils import timezone

from cpms.ocpp.mappers import format_datetime
from cpms.ocpp.v201.handlers import V201ChargePoint
from sessions.models import ChargingSession, MeterValue, TransactionEvent
from stations.models import Connector, DeviceVariable, SecurityEvent, StationEvent, StatusChange
from tests.factories import ChargingStationFactory, IdTokenFactory
from tests.ocpp.harness import Harness, inline_db  # noqa: F401

pytestmark = pytest.mark.usefixtures("inline_db")

BASE = timezone.now().replace(microsecond=0) - timedelta(minutes=3)


@pytest.fixture(autouse=True)
def _recent_base():
    """Timestamps near "now" at each test's start (a slow run must not turn them into offline starts)."""
    global BASE
    BASE = timezone.now().replace(microsecond=0) - timedelta(minutes=3)


def ts(seconds: int = 0) -> str:
    return format_datetime(BASE + timedelta(seconds=seconds))


@pytest.fixture
def station():
    station = ChargingStationFactory(identity="CP-201")
    IdTokenFactory(organisation=station.organisation, value="GOOD", type="ISO14443")
    return station


@pytest.fixture
def cp(station):
    return Harness(V201ChargePoint, station)


def event(event_type: str, seq: int, at: str, *, tx="TX-9", wh=None, **extra) -> dict:
    payload = {
        "eventType": event_type,
        "timestamp": at,
        "triggerReason": extra.pop("trigger", "MeterValuePeriodic"),
        "seqNo": seq,
        "transactionInfo": {"transactionId": tx, **extra.pop("info", {})},
        "evse": {"id": 1, "connectorId": 1},
        **extra,
    }
    if wh is not None:
        payload["meterValue"] = [{"timestamp": at, "sampledValue": [{"value": wh}]}]
    return payload


def test_boot_notification(cp, station):
    answer = cp.call(
        "BootNotification",
        {
            "chargingStation": {
                "vendorName": "Acme",
                "model": "Twin",
                "serialNumber": "S-9",
                "firmwareVersion": "2.0",
                "modem": {"iccid": "8949", "imsi": "262"},
            },
            "reason": "PowerUp",
        },
    )
    assert answer[0:2] == [3, "m1"]
    assert (answer[2]["status"], answer[2]["interval"]) == ("Accepted", 300)
    station.refresh_from_db()
    assert (station.vendor, station.model, station.serial_number, station.iccid, station.imsi) == (
        "Acme",
        "Twin",
        "S-9",
        "8949",
        "262",
    )


def test_rel_16_pending_then_only_boot(station):
    station.registration_status = "Pending"
    station.save()
    cp = Harness(V201ChargePoint, station)
    assert cp.call("Heartbeat", {}) == [
        4,
        "m1",
        "SecurityError",
        "Station is Pending: BootNotification first",
        {},
    ]
    boot = cp.call(
        "BootNotification", {"chargingStation": {"vendorName": "A", "model": "M"}, "reason": "PowerUp"}, "b"
    )
    assert boot[2]["status"] == "Pending"


def test_rel_16_accepted_station_reconnecting_without_boot_is_served(station):
    # After a CSMS restart the connection is new, but the registration status is in the database.
    cp = Harness(V201ChargePoint, station)
    assert cp.call("Heartbeat", {})[0] == 3


def test_status_notification(cp, station):
    answer = cp.call(
        "StatusNotification",
        {"timestamp": ts(), "connectorStatus": "Occupied", "evseId": 2, "connectorId": 1},
    )
    assert answer == [3, "m1", {}]
    connector = Connector.objects.get(evse__station=station, evse__evse_id=2, connector_id=1)
    assert connector.status == "Occupied"
    assert StatusChange.objects.get(station=station).status == "Occupied"


def test_authorize_unknown_is_unknown_and_group_reported(cp, station):
    fleet = IdTokenFactory(organisation=station.organisation, value="FLEET-1", type="Central")
    IdTokenFactory(organisation=station.organisation, value="MEMBER-1", group=fleet)
    assert cp.call("Authorize", {"idToken": {"idToken": "WHO", "type": "ISO14443"}}) == [
        3,
        "m1",
        {"idTokenInfo": {"status": "Unknown"}},
    ]
    assert cp.call("Authorize", {"idToken": {"idToken": "MEMBER-1", "type": "ISO14443"}}, "m2") == [
        3,
        "m2",
        {"idTokenInfo": {"status": "Accepted", "groupIdToken": {"idToken": "FLEET-1", "type": "Central"}}},
    ]


def test_transaction_event_lifecycle_exact_answers(cp, station):
    started = event(
        "Started",
        0,
        ts(0),
        wh=1000,
        trigger="Authorized",
        idToken={"idToken": "GOOD", "type": "ISO14443"},
        info={"chargingState": "Charging", "remoteStartId": 7},
    )
    assert cp.call("TransactionEvent", started, "e0") == [3, "e0", {"idTokenInfo": {"status": "Accepted"}}]
    assert cp.call(
        "TransactionEvent", event("Updated", 1, ts(60), wh=2500, info={"chargingState": "SuspendedEV"}), "e1"
    ) == [3, "e1", {}]
    session = ChargingSession.objects.get()
    assert (session.transaction_id, session.status, session.charging_state, session.remote_start_id) == (
        "TX-9",
        "active",
        "SuspendedEV",
        7,
    )
    ended = event("Ended", 2, ts(120), wh=4000, trigger="StopAuthorized", info={"stoppedReason": "Local"})
    assert cp.call("TransactionEvent", ended, "e2") == [3, "e2", {}]
    session.refresh_from_db()
    assert (
        session.status,
        session.meter_start_wh,
        session.meter_stop_wh,
        session.energy_wh,
        session.stop_reason,
    ) == (
        "completed",
        1000,
        4000,
        3000,
        "Local",
    )
    assert list(TransactionEvent.objects.values_list("seq_no", "event_type")) == [
        (0, "Started"),
        (1, "Updated"),
        (2, "Ended"),
    ]


def test_rel_22_same_seq_no_twice_stored_once(cp):
    cp.call("TransactionEvent", event("Started", 0, ts(0), wh=100), "a")
    update = event("Updated", 1, ts(30), wh=200)
    assert cp.call("TransactionEvent", update, "b") == [3, "b", {}]
    assert cp.call("TransactionEvent", update, "c") == [3, "c", {}]  # redelivered with a new message id
    assert TransactionEvent.objects.count() == 2
    assert MeterValue.objects.count() == 2


def test_rel_22_seq_no_restarts_per_transaction(cp):
    cp.call("TransactionEvent", event("Started", 0, ts(0), tx="A", wh=100), "a")
    cp.call("TransactionEvent", event("Ended", 1, ts(30), tx="A", wh=200), "b")
    cp.call("TransactionEvent", event("Started", 0, ts(60), tx="B", wh=200), "c")
    assert ChargingSession.objects.count() == 2
    assert TransactionEvent.objects.filter(seq_no=0).count() == 2


def test_rel_22_transaction_ids_unique_per_station_not_globally(cp, station):
    other = Harness(V201ChargePoint, ChargingStationFactory(identity="OTHER-201", site=station.site))
    cp.call("TransactionEvent", event("Started", 0, ts(0), tx="SAME", wh=1), "a")
    other.call("TransactionEvent", event("Started", 0, ts(0), tx="SAME", wh=1), "a")
    assert ChargingSession.objects.filter(transaction_id="SAME").count() == 2


def test_rel_23_updated_after_ended_accepted_energy_from_registers(cp):
    cp.call("TransactionEvent", event("Started", 0, ts(0), wh=1000), "a")
    cp.call("TransactionEvent", event("Ended", 2, ts(120), wh=5000), "b")
    late = event("Updated", 1, ts(60), wh=3000)
    assert cp.call("TransactionEvent", late, "c") == [3, "c", {}]
    session = ChargingSession.objects.get()
    assert (session.status, session.energy_wh, session.meter_last_wh) == ("completed", 4000, 5000)
    assert session.flags == []
    assert TransactionEvent.objects.count() == 3


def test_rel_23_ended_before_started_offline_batch(cp):
    assert cp.call("TransactionEvent", event("Ended", 1, ts(120), wh=5000, offline=True), "b")[0] == 3
    assert cp.call("TransactionEvent", event("Started", 0, ts(0), wh=1000, offline=True), "a")[0] == 3
    session = ChargingSession.objects.get()
    assert session.started_at == BASE and session.offline is True
    assert session.status == "completed"
    assert session.meter_start_wh == 1000


def test_rel_24_offline_flag_kept(cp):
    hours_ago = format_datetime(timezone.now() - timedelta(hours=5))
    answer = cp.call(
        "TransactionEvent",
        event("Started", 0, hours_ago, wh=10, offline=True, idToken={"idToken": "ANON", "type": "ISO14443"}),
    )
    assert answer == [3, "m1", {"idTokenInfo": {"status": "Unknown"}}]
    session = ChargingSession.objects.get()
    assert session.offline is True
    assert set(session.flags) == {"offline_start", "unknown_token"}
    assert TransactionEvent.objects.get().offline is True


def test_rel_26_future_timestamp_flagged_and_both_times_kept(cp):
    future = format_datetime(timezone.now() + timedelta(minutes=20))
    cp.call("TransactionEvent", event("Started", 0, future, wh=1))
    session = ChargingSession.objects.get()
    assert session.flags == ["clock_skew"]
    assert session.started_at > session.start_received_at


def test_sampled_value_multiplier_and_signed_data(cp):
    signed = {
        "signedMeterData": "T0NNRnw=",
        "signingMethod": "ECDSA",
        "encodingMethod": "OCMF",
        "publicKey": "AAA=",
    }
    payload = event("Started", 0, ts(0))
    payload["meterValue"] = [
        {
            "timestamp": ts(0),
            "sampledValue": [
                {
                    "value": 12.5,
                    "unitOfMeasure": {"unit": "kWh", "multiplier": 0},
                    "signedMeterValue": signed,
                },
                {
                    "value": 7,
                    "measurand": "Power.Active.Import",
                    "unitOfMeasure": {"unit": "W", "multiplier": 3},
                },
            ],
        }
    ]
    cp.call("TransactionEvent", payload)
    energy, power = MeterValue.objects.order_by("id")
    assert (energy.value, energy.unit) == (Decimal("12.5"), "kWh")
    assert orjson.loads(energy.signed_data) == signed
    assert (power.value, power.unit) == (Decimal("7000"), "W")
    assert ChargingSession.objects.get().meter_start_wh == 12500


def test_meter_values_outside_transaction(cp, station):
    answer = cp.call(
        "MeterValues",
        {
            "evseId": 0,
            "meterValue": [{"timestamp": ts(), "sampledValue": [{"value": 230.5, "measurand": "Voltage"}]}],
        },
    )
    assert answer == [3, "m1", {}]
    row = MeterValue.objects.get()
    assert (row.session_id, row.evse_id, row.measurand, row.value) == (
        None,
        None,
        "Voltage",
        Decimal("230.5"),
    )


def test_notify_report_stores_device_model_and_upserts(cp, station):
    report = {
        "requestId": 1,
        "generatedAt": ts(),
        "seqNo": 0,
        "reportData": [
            {
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
                "variableAttribute": [
                    {"type": "Actual", "value": "300", "mutability": "ReadWrite", "persistent": True}
                ],
                "variableCharacteristics": {
                    "dataType": "integer",
                    "unit": "s",
                    "minLimit": 1,
                    "maxLimit": 86400,
                    "supportsMonitoring": False,
                },
            },
            {
                "component": {"name": "EVSE", "evse": {"id": 1}},
                "variable": {"name": "Power"},
                "variableAttribute": [{"type": "Actual", "value": "0"}, {"type": "MaxSet", "value": "22000"}],
                "variableCharacteristics": {"dataType": "decimal", "unit": "W", "supportsMonitoring": True},
            },
        ],
    }
    assert cp.call("NotifyReport", report) == [3, "m1", {}]
    rows = {
        (v.component, v.evse_id, v.variable, v.attribute_type): v.value
        for v in DeviceVariable.objects.filter(station=station)
    }
    assert rows == {
        ("OCPPCommCtrlr", 0, "HeartbeatInterval", "Actual"): "300",
        ("EVSE", 1, "Power", "Actual"): "0",
        ("EVSE", 1, "Power", "MaxSet"): "22000",
    }
    heartbeat = DeviceVariable.objects.get(variable="HeartbeatInterval")
    assert (heartbeat.mutability, heartbeat.persistent, heartbeat.unit, heartbeat.max_limit) == (
        "ReadWrite",
        True,
        "s",
        Decimal("86400"),
    )
    report["reportData"][0]["variableAttribute"][0]["value"] = "600"
    cp.call("NotifyReport", report, "m2")
    assert DeviceVariable.objects.filter(station=station).count() == 3
    assert DeviceVariable.objects.get(variable="HeartbeatInterval").value == "600"


def test_security_event_notification(cp, station):
    assert cp.call("SecurityEventNotification", {"type": "FirmwareUpdated", "timestamp": ts()}) == [
        3,
        "m1",
        {},
    ]
    assert SecurityEvent.objects.get(station=station).detail == f"FirmwareUpdated at {ts()} (critical): "


@pytest.mark.parametrize(
    ("action", "payload", "answer", "kind"),
    [
        (
            "NotifyEvent",
            {
                "generatedAt": "T",
                "seqNo": 0,
                "eventData": [
                    {
                        "eventId": 1,
                        "timestamp": "T",
                        "trigger": "Alerting",
                        "actualValue": "1",
                        "eventNotificationType": "HardWiredNotification",
                        "component": {"name": "EVSE"},
                        "variable": {"name": "Problem"},
                    }
                ],
            },
            {},
            "notify_event",
        ),
        ("NotifyMonitoringReport", {"requestId": 1, "seqNo": 0, "generatedAt": "T"}, {}, "monitoring_report"),
        ("LogStatusNotification", {"status": "Uploaded", "requestId": 4}, {}, "log_status"),
        ("FirmwareStatusNotification", {"status": "Installed", "requestId": 5}, {}, "firmware_status"),
        (
            "PublishFirmwareStatusNotification",
            {"status": "Published", "location": ["http://x/fw"], "requestId": 1},
            {},
            "publish_firmware_status",
        ),
        (
            "DataTransfer",
            {"vendorId": "com.acme", "messageId": "m", "data": {"a": [1, 2]}},
            {"status": "UnknownVendorId"},
            "data_transfer",
        ),
        (
            "ReservationStatusUpdate",
            {"reservationId": 3, "reservationUpdateStatus": "Expired"},
            {},
            "reservation_status",
        ),
        (
            "NotifyChargingLimit",
            {"chargingLimit": {"chargingLimitSource": "EMS", "isGridCritical": True}, "evseId": 1},
            {},
            "charging_limit",
        ),
        ("ClearedChargingLimit", {"chargingLimitSource": "EMS", "evseId": 1}, {}, "charging_limit"),
        (
            "ReportChargingProfiles",
            {
                "requestId": 1,
                "chargingLimitSource": "CSO",
                "evseId": 1,
                "chargingProfile": [
                    {
                        "id": 1,
                        "stackLevel": 0,
                        "chargingProfilePurpose": "TxDefaultProfile",
                        "chargingProfileKind": "Absolute",
                        "chargingSchedule": [
                            {
                                "id": 1,
                                "chargingRateUnit": "A",
                                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}],
                            }
                        ],
                    }
                ],
            },
            {},
            "charging_profiles_report",
        ),
        (
            "NotifyEVChargingNeeds",
            {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "AC_three_phase"}},
            {"status": "Rejected"},
            "ev_charging_needs",
        ),
        (
            "NotifyEVChargingSchedule",
            {
                "timeBase": "T",
                "evseId": 1,
                "chargingSchedule": {
                    "id": 1,
                    "chargingRateUnit": "W",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7000}],
                },
            },
            {"status": "Accepted"},
            "ev_charging_schedule",
        ),
        ("NotifyDisplayMessages", {"requestId": 2}, {}, "display_messages"),
        (
            "NotifyCustomerInformation",
            {"data": "none", "seqNo": 0, "generatedAt": "T", "requestId": 3},
            {},
            "customer_information",
        ),
        (
            "SignCertificate",
            {"csr": "-----BEGIN CERTIFICATE REQUEST-----", "certificateType": "ChargingStationCertificate"},
            {"status": "Rejected"},
            "certificate_request",
        ),
    ],
)
def test_recorded_messages(cp, station, action, payload, answer, kind):
    payload = orjson.loads(orjson.dumps(payload).replace(b'"T"', f'"{ts()}"'.encode()))
    assert cp.call(action, payload) == [3, "m1", answer]
    assert StationEvent.objects.filter(station=station, kind=kind).count() == 1


def test_firmware_and_log_status_mirrored_on_station(cp, station):
    cp.call("FirmwareStatusNotification", {"status": "Downloading"})
    cp.call("LogStatusNotification", {"status": "Uploading"}, "m2")
    station.refresh_from_db()
    assert (station.firmware_status, station.diagnostics_status) == ("Downloading", "Uploading")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "RpcFrameworkError"),
        ('[2, 5, "Heartbeat", {}]', "RpcFrameworkError"),
        ('[6, "x", "Heartbeat", {}]', "MessageTypeNotSupported"),
        ('[2, "x", "Heartbeat", []]', "FormatViolation"),
        ('[2, "x", "BootNotification", {"reason": "PowerUp"}]', "OccurrenceConstraintViolation"),
        (
            '[2, "x", "BootNotification", {"reason": 5, "chargingStation": {"model": "m", "vendorName": "v"}}]',
            "TypeConstraintViolation",
        ),
        (
            '[2, "x", "BootNotification", {"reason": "Bored", "chargingStation": {"model": "m", "vendorName": "v"}}]',
            "PropertyConstraintViolation",
        ),
        ('[2, "x", "Heartbeat", {"bogus": 1}]', "FormatViolation"),
        ('[2, "x", "RequestStartTransaction", {}]', "NotSupported"),
        ('[2, "x", "StartTransaction", {}]', "NotImplemented"),
    ],
)
def test_rel_10_error_codes_v201(cp, frame, code):
    answer = cp.feed(frame)
    assert answer[0] == 4 and answer[2] == code


def test_events_without_evse_store_values_on_the_sessions_evse(cp):
    cp.call("TransactionEvent", event("Started", 0, ts(0), wh=100), "a")
    updated = event("Updated", 1, ts(30), wh=200)
    del updated["evse"]  # only the first event of a transaction has to name the EVSE
    assert cp.call("TransactionEvent", updated, "b") == [3, "b", {}]
    assert list(MeterValue.objects.order_by("timestamp").values_list("evse_id", flat=True)) == [1, 1]
