"""OCPP 1.6J handlers: feed exact frames, assert the exact answer and what was stored."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from cpms.ocpp.v16.handlers import V16ChargePoint
from sessions.models import ChargingSession, MeterValue, SessionAnomaly
from stations.models import ChargingStation, Connector, Incident, SecurityEvent, StationEvent, StatusChange
from tests.factories import ChargingStationFactory, IdTokenFactory
from tests.ocpp.harness import Harness, inline_db  # noqa: F401

pytestmark = pytest.mark.usefixtures("inline_db")

# Timestamps near "now": a start hours in the past is an offline start, one in the future clock skew.
BASE = timezone.now().replace(microsecond=0) - timedelta(minutes=2)


@pytest.fixture(autouse=True)
def _recent_base():
    """Timestamps near "now" at each test's start (a slow run must not turn them into offline starts)."""
    global BASE
    BASE = timezone.now().replace(microsecond=0) - timedelta(minutes=2)


def ts(minutes: float = 0) -> str:
    return (BASE + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def station():
    station = ChargingStationFactory(identity="CP-16")
    IdTokenFactory(organisation=station.organisation, value="GOOD")
    IdTokenFactory(organisation=station.organisation, value="BLOCKED", status="Blocked")
    IdTokenFactory(
        organisation=station.organisation, value="OLD", expires_at=timezone.now() - timedelta(days=1)
    )
    return station


@pytest.fixture
def cp(station):
    return Harness(V16ChargePoint, station)


def start(cp, *, id_tag="GOOD", meter_start=1000, timestamp=None, connector=1, unique_id="s1"):
    timestamp = timestamp or ts(0)
    return cp.call(
        "StartTransaction",
        {"connectorId": connector, "idTag": id_tag, "meterStart": meter_start, "timestamp": timestamp},
        unique_id,
    )


def test_boot_notification_accepted_updates_station(cp, station):
    answer = cp.call(
        "BootNotification",
        {
            "chargePointVendor": "Acme",
            "chargePointModel": "Volt 22",
            "chargePointSerialNumber": "SN-1",
            "firmwareVersion": "1.2.3",
            "iccid": "8949",
            "meterType": "EM",
        },
    )
    assert answer[0:2] == [3, "m1"]
    assert answer[2]["status"] == "Accepted"
    assert answer[2]["interval"] == 300
    assert answer[2]["currentTime"].endswith("Z")
    station.refresh_from_db()
    assert (station.vendor, station.model, station.serial_number, station.firmware_version) == (
        "Acme",
        "Volt 22",
        "SN-1",
        "1.2.3",
    )
    assert station.last_boot_at is not None
    assert StationEvent.objects.filter(station=station, kind="boot").count() == 1


def test_boot_notification_pending_station_told_to_retry(station):
    station.registration_status = "Pending"
    station.save()
    cp = Harness(V16ChargePoint, station)
    answer = cp.call("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "M"})
    assert answer[2]["status"] == "Pending"
    assert answer[2]["interval"] == 60


def test_rel_16_pending_station_gets_security_error_for_anything_but_boot(station):
    station.registration_status = "Pending"
    station.save()
    cp = Harness(V16ChargePoint, station)
    answer = cp.call("Heartbeat", {})
    assert answer == [4, "m1", "SecurityError", "Station is Pending: BootNotification first", {}]
    assert start(cp)[2] == "SecurityError"
    assert ChargingSession.objects.count() == 0


def test_heartbeat_answers_current_time_and_marks_seen(cp, station):
    answer = cp.call("Heartbeat", {})
    assert answer[0:2] == [3, "m1"]
    current = datetime.fromisoformat(answer[2]["currentTime"])
    assert abs((current - timezone.now()).total_seconds()) < 5
    station.refresh_from_db()
    assert station.last_seen_at is not None


def test_status_notification_updates_connector_and_history(cp, station):
    answer = cp.call(
        "StatusNotification",
        {"connectorId": 2, "errorCode": "NoError", "status": "Charging", "timestamp": ts(0)},
    )
    assert answer == [3, "m1", {}]
    connector = Connector.objects.get(evse__station=station, evse__evse_id=2)
    assert (connector.connector_id, connector.status, connector.error_code) == (1, "Charging", "")
    cp.call(
        "StatusNotification",
        {
            "connectorId": 2,
            "errorCode": "GroundFailure",
            "status": "Faulted",
            "info": "RCD tripped",
            "vendorErrorCode": "E42",
            "timestamp": ts(0.25),
        },
        "m2",
    )
    connector.refresh_from_db()
    assert (connector.status, connector.error_code) == ("Faulted", "GroundFailure")
    history = list(
        StatusChange.objects.filter(station=station)
        .order_by("occurred_at")
        .values_list("evse_id", "status", "error_code", "info", "vendor_error_code")
    )
    assert history == [(2, "Charging", "", "", ""), (2, "Faulted", "GroundFailure", "RCD tripped", "E42")]


def test_status_notification_late_does_not_overwrite_newer_status(cp, station):
    cp.call(
        "StatusNotification",
        {"connectorId": 1, "errorCode": "NoError", "status": "Charging", "timestamp": ts(0.25)},
    )
    cp.call(
        "StatusNotification",
        {"connectorId": 1, "errorCode": "NoError", "status": "Preparing", "timestamp": ts(0)},
        "m2",
    )
    assert Connector.objects.get(evse__station=station).status == "Charging"
    assert StatusChange.objects.filter(station=station).count() == 2


def test_status_notification_connector_zero_is_the_station(cp, station):
    cp.call("StatusNotification", {"connectorId": 0, "errorCode": "NoError", "status": "Unavailable"})
    station.refresh_from_db()
    assert station.status == "Unavailable"
    change = StatusChange.objects.get(station=station)
    assert (change.evse_id, change.connector_id, change.status) == (None, None, "Unavailable")


@pytest.mark.parametrize(
    ("id_tag", "expected"),
    [("GOOD", "Accepted"), ("BLOCKED", "Blocked"), ("OLD", "Expired"), ("NOBODY", "Invalid")],
)
def test_authorize(cp, id_tag, expected):
    answer = cp.call("Authorize", {"idTag": id_tag})
    assert answer[2]["idTagInfo"]["status"] == expected


def test_authorize_returns_expiry_and_parent(cp, station):
    group = IdTokenFactory(organisation=station.organisation, value="FLEET")
    IdTokenFactory(
        organisation=station.organisation,
        value="MEMBER",
        group=group,
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
    )
    answer = cp.call("Authorize", {"idTag": "MEMBER"})
    assert answer[2] == {
        "idTagInfo": {"status": "Accepted", "expiryDate": "2030-01-01T00:00:00.000Z", "parentIdTag": "FLEET"}
    }


def test_authorize_blocked_group_blocks_member(cp, station):
    group = IdTokenFactory(organisation=station.organisation, value="FLEET", status="Blocked")
    IdTokenFactory(organisation=station.organisation, value="MEMBER", group=group)
    assert cp.call("Authorize", {"idTag": "MEMBER"})[2]["idTagInfo"]["status"] == "Blocked"


def test_authorize_token_of_other_organisation_is_invalid(cp):
    IdTokenFactory(value="FOREIGN")  # another organisation's card
    assert cp.call("Authorize", {"idTag": "FOREIGN"})[2]["idTagInfo"]["status"] == "Invalid"


def test_full_transaction(cp, station):
    answer = start(cp)
    session = ChargingSession.objects.get()
    assert answer == [
        3,
        "s1",
        {"transactionId": int(session.transaction_id), "idTagInfo": {"status": "Accepted"}},
    ]
    assert session.transaction_id == str(session.pk)
    assert (session.status, session.meter_start_wh, session.id_tag, session.id_token.value) == (
        "active",
        1000,
        "GOOD",
        "GOOD",
    )
    tx = int(session.transaction_id)
    answer = cp.call(
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": tx,
            "meterValue": [
                {
                    "timestamp": ts(0.05),
                    "sampledValue": [
                        {
                            "value": "1500",
                            "measurand": "Energy.Active.Import.Register",
                            "unit": "Wh",
                            "context": "Sample.Periodic",
                        },
                        {"value": "7.2", "measurand": "Power.Active.Import", "unit": "kW"},
                        {"value": "16.1", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
                        {"value": "55", "measurand": "SoC", "unit": "Percent", "location": "EV"},
                    ],
                }
            ],
        },
        "mv1",
    )
    assert answer == [3, "mv1", {}]
    rows = list(
        MeterValue.objects.filter(session=session)
        .order_by("id")
        .values_list("measurand", "phase", "unit", "value", "location", "context")
    )
    assert rows == [
        ("Energy.Active.Import.Register", "", "Wh", Decimal("1500"), "", "Sample.Periodic"),
        ("Power.Active.Import", "", "kW", Decimal("7.2"), "", "Sample.Periodic"),
        ("Current.Import", "L1", "A", Decimal("16.1"), "", "Sample.Periodic"),
        ("SoC", "", "Percent", Decimal("55"), "EV", "Sample.Periodic"),
    ]
    session.refresh_from_db()
    assert session.meter_last_wh == 1500

    answer = cp.call(
        "StopTransaction",
        {
            "transactionId": tx,
            "meterStop": 12000,
            "timestamp": ts(3),
            "reason": "EVDisconnected",
            "idTag": "GOOD",
            "transactionData": [
                {
                    "timestamp": ts(3),
                    "sampledValue": [{"value": "12.0", "unit": "kWh", "context": "Transaction.End"}],
                }
            ],
        },
        "st1",
    )
    assert answer == [3, "st1", {"idTagInfo": {"status": "Accepted"}}]
    session.refresh_from_db()
    assert (session.status, session.meter_stop_wh, session.energy_wh, session.stop_reason) == (
        "completed",
        12000,
        11000,
        "EVDisconnected",
    )
    assert session.stopped_at == BASE + timedelta(minutes=3)
    assert session.flags == [] and not session.held_for_review
    end = MeterValue.objects.filter(session=session, context="Transaction.End").get()
    assert (end.value, end.evse_id) == (Decimal("12.0"), 1)


def test_stop_without_id_tag_answers_empty(cp):
    tx = start(cp)[2]["transactionId"]
    assert cp.call("StopTransaction", {"transactionId": tx, "meterStop": 2000, "timestamp": ts(0.5)}) == [
        3,
        "m1",
        {},
    ]


def test_rel_19_start_resent_after_reconnect_gets_same_transaction_id(cp, station):
    first = start(cp, unique_id="a")[2]["transactionId"]
    # Same content, new message id (a new connection would not know our earlier answer).
    other_connection = Harness(V16ChargePoint, station)
    second = start(other_connection, unique_id="b")[2]["transactionId"]
    assert first == second
    assert ChargingSession.objects.count() == 1


def test_rel_20_duplicate_stop_answered_without_second_stop(cp):
    tx = start(cp)[2]["transactionId"]
    stop = {"transactionId": tx, "meterStop": 5000, "timestamp": ts(1.5)}
    assert cp.call("StopTransaction", stop, "x1") == [3, "x1", {}]
    session = ChargingSession.objects.get()
    updated_at = session.updated_at
    again = {**stop, "meterStop": 9999}
    assert cp.call("StopTransaction", again, "x2") == [3, "x2", {}]
    session.refresh_from_db()
    assert (session.meter_stop_wh, session.energy_wh, session.updated_at) == (5000, 4000, updated_at)
    anomaly = SessionAnomaly.objects.get()
    assert (anomaly.kind, anomaly.session_id, anomaly.detail["meter_stop_wh"]) == (
        "duplicate_stop",
        session.pk,
        9999,
    )


@pytest.mark.parametrize("transaction_id", [0, -1, 987654])
def test_rel_21_stop_for_unknown_transaction_set_aside(cp, station, transaction_id):
    answer = cp.call(
        "StopTransaction",
        {"transactionId": transaction_id, "meterStop": 100, "timestamp": ts(0), "idTag": "GOOD"},
    )
    assert answer == [3, "m1", {"idTagInfo": {"status": "Accepted"}}]
    anomaly = SessionAnomaly.objects.get()
    assert (anomaly.kind, anomaly.transaction_id, anomaly.station_id) == (
        "unknown_transaction",
        str(transaction_id),
        station.pk,
    )
    assert ChargingSession.objects.count() == 0


def test_rel_25_meter_stop_below_start_flags_and_holds(cp):
    tx = start(cp, meter_start=5000)[2]["transactionId"]
    answer = cp.call("StopTransaction", {"transactionId": tx, "meterStop": 4000, "timestamp": ts(1.5)})
    assert answer == [3, "m1", {}]
    session = ChargingSession.objects.get()
    assert session.status == "completed"
    assert session.energy_wh is None
    assert "meter_backwards" in session.flags and session.held_for_review


def test_rel_25_negative_meter_start_accepted_and_held(cp):
    answer = start(cp, meter_start=-5)
    assert answer[2]["idTagInfo"] == {"status": "Accepted"}
    session = ChargingSession.objects.get()
    assert session.flags == ["negative_meter"] and session.held_for_review


def test_rel_25_register_going_backwards_during_session(cp):
    tx = start(cp, meter_start=1000)[2]["transactionId"]

    def meter(ts, wh, uid):
        return cp.call(
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": tx,
                "meterValue": [{"timestamp": ts, "sampledValue": [{"value": str(wh)}]}],
            },
            uid,
        )

    assert meter(ts(0.05), 3000, "a") == [3, "a", {}]
    assert meter(ts(0.1), 2000, "b") == [3, "b", {}]
    session = ChargingSession.objects.get()
    assert "meter_backwards" in session.flags and session.held_for_review


def test_rel_23_late_meter_values_do_not_move_total_back(cp):
    tx = start(cp, meter_start=1000)[2]["transactionId"]
    payload = lambda ts, wh: {  # noqa: E731
        "connectorId": 1,
        "transactionId": tx,
        "meterValue": [{"timestamp": ts, "sampledValue": [{"value": str(wh)}]}],
    }
    cp.call("MeterValues", payload(ts(0.25), 5000), "a")
    cp.call("MeterValues", payload(ts(0.1), 2000), "b")  # an offline batch arriving late
    session = ChargingSession.objects.get()
    assert session.meter_last_wh == 5000
    assert session.flags == []
    assert MeterValue.objects.filter(session=session).count() == 2


def test_rel_24_offline_start_with_unknown_tag(cp):
    hours_ago = (timezone.now() - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    answer = start(cp, id_tag="STRANGER", timestamp=hours_ago)
    session = ChargingSession.objects.get()
    assert answer[2] == {"transactionId": int(session.transaction_id), "idTagInfo": {"status": "Invalid"}}
    assert set(session.flags) == {"unknown_token", "offline_start"}
    assert session.id_token is None and session.id_tag == "STRANGER"


def test_rel_26_clock_skew_flagged(cp):
    future = (timezone.now() + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    start(cp, timestamp=future)
    session = ChargingSession.objects.get()
    assert "clock_skew" in session.flags
    assert session.start_received_at < session.started_at


def test_rel_27_transaction_ids_unique_and_never_reused(cp, station):
    first = start(cp, unique_id="a")[2]["transactionId"]
    ChargingSession.objects.all().delete()
    second = start(cp, meter_start=2000, unique_id="b")[2]["transactionId"]
    assert second > first


def test_rel_27_stop_naming_another_stations_transaction_rejected(cp, station):
    other = ChargingStationFactory(identity="OTHER", site=station.site)
    other_cp = Harness(V16ChargePoint, other)
    tx = start(other_cp)[2]["transactionId"]
    answer = cp.call("StopTransaction", {"transactionId": tx, "meterStop": 9000, "timestamp": ts(1.5)})
    assert answer == [3, "m1", {}]
    session = ChargingSession.objects.get()
    assert session.status == "active" and session.meter_stop_wh is None
    assert SessionAnomaly.objects.get().kind == "foreign_transaction"


def test_new_start_on_busy_connector_closes_stale_session_for_review(cp):
    start(cp, unique_id="a")
    start(cp, meter_start=5000, timestamp=ts(6), unique_id="b")
    old, new = ChargingSession.objects.order_by("pk")
    assert old.status == "completed" and old.held_for_review and "stopped_by_new_session" in old.flags
    assert new.status == "active"


def test_meter_values_without_transaction_are_kept(cp, station):
    answer = cp.call(
        "MeterValues",
        {
            "connectorId": 0,
            "meterValue": [
                {
                    "timestamp": ts(0),
                    "sampledValue": [
                        {"value": "230.1", "measurand": "Voltage", "unit": "V", "context": "Sample.Clock"}
                    ],
                }
            ],
        },
    )
    assert answer == [3, "m1", {}]
    row = MeterValue.objects.get()
    assert (row.session_id, row.evse_id, row.value, row.station_id) == (
        None,
        None,
        Decimal("230.1"),
        station.pk,
    )


def test_signed_meter_value_kept_byte_for_byte(cp):
    tx = start(cp)[2]["transactionId"]
    ocmf = 'OCMF|{"FV":"1.0","RD":[{"TM":"2026-11-23T10:00:00,000+0000 S","RV":1.5,"RU":"kWh"}]}|{"SD":"30450221"}'
    cp.call(
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": tx,
            "meterValue": [{"timestamp": ts(0), "sampledValue": [{"value": ocmf, "format": "SignedData"}]}],
        },
    )
    row = MeterValue.objects.get()
    assert row.signed_data == ocmf and row.value is None


def test_data_transfer_recorded_and_answered_unknown_vendor(cp, station):
    answer = cp.call("DataTransfer", {"vendorId": "com.acme", "messageId": "Hello", "data": '{"x":1}'})
    assert answer == [3, "m1", {"status": "UnknownVendorId"}]
    event = StationEvent.objects.get(station=station, kind="data_transfer")
    assert event.detail == {"vendorId": "com.acme", "messageId": "Hello", "data": '{"x":1}'}


def test_diagnostics_and_firmware_status_notifications(cp, station):
    assert cp.call("DiagnosticsStatusNotification", {"status": "Uploaded"}) == [3, "m1", {}]
    assert cp.call("FirmwareStatusNotification", {"status": "Installing"}, "m2") == [3, "m2", {}]
    station.refresh_from_db()
    assert (station.diagnostics_status, station.firmware_status) == ("Uploaded", "Installing")
    assert sorted(StationEvent.objects.filter(station=station).values_list("kind", flat=True)) == [
        "diagnostics_status",
        "firmware_status",
    ]


def test_security_event_notification_stored(cp, station):
    answer = cp.call(
        "SecurityEventNotification",
        {"type": "TamperDetectionActivated", "timestamp": ts(0), "techInfo": "lid open"},
    )
    assert answer == [3, "m1", {}]
    event = SecurityEvent.objects.get(station=station)
    assert event.kind == "charger_reported"
    assert event.detail == f"TamperDetectionActivated at {ts(0)} (critical): lid open"
    # A critical security event opens an incident, alerted like a fault.
    [incident] = Incident.objects.filter(station=station)
    assert (incident.kind, incident.code) == ("event", "TamperDetectionActivated")


def test_sign_certificate_refused_and_recorded(cp, station):
    answer = cp.call("SignCertificate", {"csr": "-----BEGIN CERTIFICATE REQUEST-----"})
    assert answer == [3, "m1", {"status": "Rejected"}]
    assert StationEvent.objects.filter(station=station, kind="certificate_request").count() == 1


def test_rel_18_hostile_strings_stored_safely(cp, station):
    hostile = "<script>\x00=HYPERLINK(1)"
    answer = cp.call("BootNotification", {"chargePointVendor": hostile[:20], "chargePointModel": "M"})
    assert answer[2]["status"] == "Accepted"
    station.refresh_from_db()
    assert station.vendor == "<script>\ufffd=HYPERLINK("


def test_connection_state_unchanged_by_messages(cp, station):
    # Messages never flip the connection flag: only the consumer's connect/disconnect does.
    cp.call("Heartbeat", {})
    assert ChargingStation.objects.get(pk=station.pk).is_connected is False
