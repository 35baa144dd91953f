"""What stations and sessions reported, read through the API: exact content, order, filters and query counts.
Scope across tenants is in test_rel_37_cross_tenant.py; here each list also holds rows of other stations and
sessions, which must not show."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sessions.models import MeterValue, SessionAnomaly, TransactionEvent
from stations.models import DeviceVariable, SecurityEvent, StationEvent, StatusChange
from tests.factories import ChargingSessionFactory, ChargingStationFactory
from tests.support import at, iso


def results(response) -> list:
    assert response.status_code == 200, response.content
    return response.json()["results"]


# --- device model -----------------------------------------------------------------------------------


def variable(station, component, name, **fields) -> DeviceVariable:
    return DeviceVariable.objects.create(
        station=station,
        component=component,
        variable=name,
        updated_at=fields.pop("updated_at", at(6)),
        **fields,
    )


@pytest.fixture
def device_model(world):
    # Created out of order: the API sorts by component, instance, EVSE, connector, variable, attribute.
    variable(
        world.station_a1,
        "OCPPCommCtrlr",
        "HeartbeatInterval",
        value="300",
        mutability="ReadWrite",
        persistent=True,
        constant=False,
        data_type="integer",
        unit="s",
        min_limit="1",
        max_limit="86400",
        supports_monitoring=False,
        updated_at=at(6, 30),
    )
    variable(world.station_a1, "EVSE", "Power", evse_id=1, attribute_type="MaxSet", value="22000")
    variable(world.station_a1, "EVSE", "Power", evse_id=1, value="7400.5", unit="W")
    variable(world.station_a1, "EVSE", "Power", evse_id=2, value="0")
    variable(
        world.station_a1,
        "Connector",
        "ConnectorType",
        evse_id=1,
        connector_id=1,
        value="cType2",
        data_type="OptionList",
        values_list="cType2,cCCS2",
    )
    variable(
        world.station_a1, "Controller", "Temperature", component_instance="Main", variable_instance="Ambient"
    )
    variable(world.station_a2, "OCPPCommCtrlr", "HeartbeatInterval", value="60")
    variable(world.station_b1, "EVSE", "Power", evse_id=1, value="11000")


def variable_key(item: dict) -> tuple:
    return (
        item["component"],
        item["component_instance"],
        item["evse_id"],
        item["connector_id"],
        item["variable"],
        item["variable_instance"],
        item["attribute_type"],
        item["value"],
    )


def test_variables_are_the_stations_device_model_in_order(world, device_model, api):
    body = results(api(world.operator_a).get("/api/v1/stations/A1-CP1/variables/"))
    assert [variable_key(item) for item in body] == [
        ("Connector", "", 1, 1, "ConnectorType", "", "Actual", "cType2"),
        ("Controller", "Main", 0, 0, "Temperature", "Ambient", "Actual", ""),
        ("EVSE", "", 1, 0, "Power", "", "Actual", "7400.5"),
        ("EVSE", "", 1, 0, "Power", "", "MaxSet", "22000"),
        ("EVSE", "", 2, 0, "Power", "", "Actual", "0"),
        ("OCPPCommCtrlr", "", 0, 0, "HeartbeatInterval", "", "Actual", "300"),
    ]
    assert body[-1] == {
        "component": "OCPPCommCtrlr",
        "component_instance": "",
        "evse_id": 0,
        "connector_id": 0,
        "variable": "HeartbeatInterval",
        "variable_instance": "",
        "attribute_type": "Actual",
        "value": "300",
        "mutability": "ReadWrite",
        "persistent": True,
        "constant": False,
        "data_type": "integer",
        "unit": "s",
        "min_limit": "1.000000",
        "max_limit": "86400.000000",
        "values_list": "",
        "supports_monitoring": False,
        "updated_at": "2025-03-01T06:30:00Z",
    }
    assert body[0]["values_list"] == "cType2,cCCS2"
    assert (body[1]["persistent"], body[1]["min_limit"], body[1]["supports_monitoring"]) == (None, None, None)


def test_variables_page_in_a_stable_order(world, device_model, api):
    response = api(world.finance_a).get("/api/v1/stations/A1-CP1/variables/?limit=2&offset=2")
    assert response.json()["count"] == 6
    assert [(v["evse_id"], v["attribute_type"]) for v in results(response)] == [(1, "Actual"), (1, "MaxSet")]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("component=EVSE", ["7400.5", "22000", "0"]),
        ("component=evse", []),
        ("variable=Power&evse_id=1", ["7400.5", "22000"]),
        ("evse_id=0", ["", "300"]),
        ("component=OCPPCommCtrlr&variable=HeartbeatInterval", ["300"]),
    ],
)
def test_variable_filters(world, device_model, api, query, expected):
    body = results(api(world.superuser).get(f"/api/v1/stations/A1-CP1/variables/?{query}"))
    assert [v["value"] for v in body] == expected


# --- security events --------------------------------------------------------------------------------


def security_event(station, created_at, *, identity=None, **fields) -> SecurityEvent:
    event = SecurityEvent.objects.create(
        station=station,
        identity=identity or station.identity,
        kind=fields.pop("kind", "auth_failed"),
        **fields,
    )
    # created_at is auto_now_add: pin it to test the order and the time filters.
    SecurityEvent.objects.filter(pk=event.pk).update(created_at=created_at)
    event.refresh_from_db()
    return event


def security_event_json(event: SecurityEvent) -> dict:
    return {
        "id": event.pk,
        "station": event.station.identity if event.station else None,
        "identity": event.identity,
        "kind": event.kind,
        "detail": event.detail,
        "remote_addr": event.remote_addr,
        "created_at": iso(event.created_at),
    }


@pytest.fixture
def security_log(world) -> dict:
    return {
        "a1_auth": security_event(
            world.station_a1, at(7), detail="wrong password", remote_addr="203.0.113.7"
        ),
        "a1_tamper": security_event(
            world.station_a1, at(9), kind="charger_reported", detail="TamperDetectionActivated"
        ),
        "a1_violation": security_event(
            world.station_a1, at(8), kind="protocol_violation", detail="bad frame"
        ),
        "a2_auth": security_event(world.station_a2, at(8)),
        "b1_auth": security_event(world.station_b1, at(8)),
        "intruder": security_event(
            None, at(7), identity="INTRUDER", kind="unknown_identity", remote_addr="198.51.100.9"
        ),
        # Refused before A1-CP1 was registered: no station, so organisation A does not see it.
        "a1_before_registration": security_event(None, at(6), identity="A1-CP1", kind="unknown_identity"),
    }


def test_station_security_events_newest_first(world, security_log, api):
    body = results(api(world.host_a1).get("/api/v1/stations/A1-CP1/security-events/"))
    assert body == [
        security_event_json(security_log[name]) for name in ("a1_tamper", "a1_violation", "a1_auth")
    ]
    assert body[-1] == {
        "id": security_log["a1_auth"].pk,
        "station": "A1-CP1",
        "identity": "A1-CP1",
        "kind": "auth_failed",
        "detail": "wrong password",
        "remote_addr": "203.0.113.7",
        "created_at": "2025-03-01T07:00:00Z",
    }


def test_security_events_of_unknown_identities_are_for_superusers_only(world, security_log, api):
    everything = results(api(world.superuser).get("/api/v1/security-events/"))
    # Same created_at: the later row (higher id) first.
    order = [
        "a1_tamper",
        "b1_auth",
        "a2_auth",
        "a1_violation",
        "intruder",
        "a1_auth",
        "a1_before_registration",
    ]
    assert everything == [security_event_json(security_log[name]) for name in order]
    organisation_a = results(api(world.finance_a).get("/api/v1/security-events/"))
    assert [e["id"] for e in organisation_a] == [
        security_log[name].pk for name in ("a1_tamper", "a2_auth", "a1_violation", "a1_auth")
    ]


@pytest.mark.parametrize(
    ("actor", "query", "expected"),
    [
        ("superuser", "station=A1-CP1", ["a1_tamper", "a1_violation", "a1_auth", "a1_before_registration"]),
        ("operator_a", "station=A1-CP1", ["a1_tamper", "a1_violation", "a1_auth"]),
        ("superuser", "station=INTRUDER", ["intruder"]),
        ("operator_a", "station=INTRUDER", []),
        ("superuser", "kind=unknown_identity", ["intruder", "a1_before_registration"]),
        # created_after inclusive, created_before exclusive.
        ("operator_a", "created_after=2025-03-01T08:00:00Z", ["a1_tamper", "a2_auth", "a1_violation"]),
        ("operator_a", "created_before=2025-03-01T08:00:00Z", ["a1_auth"]),
        ("operator_b", "created_after=2025-03-01T09:00:00%2B01:00", ["b1_auth"]),
        ("operator_a", "kind=protocol_violation&created_before=2025-03-01T09:00:00Z", ["a1_violation"]),
    ],
)
def test_security_event_filters(world, security_log, api, actor, query, expected):
    body = results(api(getattr(world, actor)).get(f"/api/v1/security-events/?{query}"))
    assert [e["id"] for e in body] == [security_log[name].pk for name in expected]


def test_station_security_event_filters(world, security_log, api):
    url = "/api/v1/stations/A1-CP1/security-events/?kind=auth_failed&created_after=2025-03-01T07:00:00Z"
    assert [e["id"] for e in results(api(world.operator_a).get(url))] == [security_log["a1_auth"].pk]


# --- station events and status history --------------------------------------------------------------


@pytest.fixture
def station_events(world) -> list:
    boot = StationEvent.objects.create(
        station=world.station_a1,
        kind="boot",
        detail={"reason": "PowerUp"},
        occurred_at=at(5, 59),
        received_at=at(6),
    )
    data = StationEvent.objects.create(
        station=world.station_a1,
        kind="data_transfer",
        detail={"vendor_id": "ACME", "message_id": "Hello", "data": "x"},
        occurred_at=at(8),
        received_at=at(8),
    )
    firmware = StationEvent.objects.create(
        station=world.station_a1,
        kind="firmware_status",
        detail={"status": "Installed"},
        occurred_at=at(6, 58),
        received_at=at(7),
    )
    StationEvent.objects.create(station=world.station_b1, kind="boot", occurred_at=at(9), received_at=at(9))
    StationEvent.objects.create(station=world.station_a2, kind="boot", occurred_at=at(9), received_at=at(9))
    return [data, firmware, boot]


def test_station_events_newest_first(world, station_events, api):
    body = results(api(world.operator_a).get("/api/v1/stations/A1-CP1/events/"))
    assert body == [
        {
            "kind": "data_transfer",
            "detail": {"vendor_id": "ACME", "message_id": "Hello", "data": "x"},
            "occurred_at": "2025-03-01T08:00:00Z",
            "received_at": "2025-03-01T08:00:00Z",
        },
        {
            "kind": "firmware_status",
            "detail": {"status": "Installed"},
            "occurred_at": "2025-03-01T06:58:00Z",
            "received_at": "2025-03-01T07:00:00Z",
        },
        {
            "kind": "boot",
            "detail": {"reason": "PowerUp"},
            "occurred_at": "2025-03-01T05:59:00Z",
            "received_at": "2025-03-01T06:00:00Z",
        },
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("kind=firmware_status", ["firmware_status"]),
        ("kind=log_status", []),
        ("received_after=2025-03-01T07:00:00Z", ["data_transfer", "firmware_status"]),
        ("received_before=2025-03-01T07:00:00Z", ["boot"]),
        ("kind=boot&received_after=2025-03-01T07:00:00Z", []),
    ],
)
def test_station_event_filters(world, station_events, api, query, expected):
    body = results(api(world.host_a1).get(f"/api/v1/stations/A1-CP1/events/?{query}"))
    assert [e["kind"] for e in body] == expected


@pytest.fixture
def status_history(world) -> None:
    def change(hour, **fields):
        StatusChange.objects.create(
            station=fields.pop("station", world.station_a1),
            occurred_at=fields.pop("occurred_at", at(hour)),
            received_at=at(hour),
            **fields,
        )

    change(5, status="Unavailable", info="offline")
    change(6, evse_id=1, connector_id=1, status="Available")
    change(7, evse_id=1, connector_id=1, status="Charging", occurred_at=at(6, 59))
    change(
        8,
        evse_id=2,
        connector_id=1,
        status="Faulted",
        error_code="GroundFailure",
        info="RCD tripped",
        vendor_id="com.acme",
        vendor_error_code="E42",
    )
    change(9, station=world.station_b1, evse_id=1, connector_id=1, status="Faulted")
    change(9, station=world.station_a2, evse_id=1, connector_id=1, status="Faulted")


def status_json(hour, evse_id, connector_id, status, *, occurred_at=None, **fields) -> dict:
    return {
        "evse_id": evse_id,
        "connector_id": connector_id,
        "status": status,
        "error_code": fields.get("error_code", ""),
        "info": fields.get("info", ""),
        "vendor_id": fields.get("vendor_id", ""),
        "vendor_error_code": fields.get("vendor_error_code", ""),
        "occurred_at": iso(occurred_at or at(hour)),
        "received_at": iso(at(hour)),
    }


def test_status_history_newest_first(world, status_history, api):
    body = results(api(world.finance_a).get("/api/v1/stations/A1-CP1/status-history/"))
    assert body == [
        status_json(
            8,
            2,
            1,
            "Faulted",
            error_code="GroundFailure",
            info="RCD tripped",
            vendor_id="com.acme",
            vendor_error_code="E42",
        ),
        status_json(7, 1, 1, "Charging", occurred_at=at(6, 59)),
        status_json(6, 1, 1, "Available"),
        status_json(5, None, None, "Unavailable", info="offline"),
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("evse_id=1", ["Charging", "Available"]),
        ("evse_id=2", ["Faulted"]),
        ("evse_id=3", []),
        ("received_after=2025-03-01T07:00:00Z", ["Faulted", "Charging"]),
        ("received_before=2025-03-01T06:00:00Z", ["Unavailable"]),
        ("evse_id=1&received_before=2025-03-01T07:00:00Z", ["Available"]),
    ],
)
def test_status_history_filters(world, status_history, api, query, expected):
    body = results(api(world.operator_a).get(f"/api/v1/stations/A1-CP1/status-history/?{query}"))
    assert [s["status"] for s in body] == expected


# --- bad filters ------------------------------------------------------------------------------------


INTEGER = "A valid integer is required."
DATETIME = "Datetime has wrong format."  # DRF goes on to list the accepted formats


@pytest.mark.parametrize(
    ("url", "field", "message"),
    [
        ("/api/v1/stations/A1-CP1/variables/?evse_id=x", "evse_id", INTEGER),
        (
            "/api/v1/stations/A1-CP1/variables/?evse_id=-1",
            "evse_id",
            "Ensure this value is greater than or equal to 0.",
        ),
        ("/api/v1/stations/A1-CP1/security-events/?kind=tamper", "kind", '"tamper" is not a valid choice.'),
        ("/api/v1/security-events/?kind=tamper", "kind", '"tamper" is not a valid choice.'),
        ("/api/v1/security-events/?created_after=yesterday", "created_after", DATETIME),
        ("/api/v1/security-events/?created_before=2025-13-01T00:00:00Z", "created_before", DATETIME),
        ("/api/v1/stations/A1-CP1/events/?kind=reboot", "kind", '"reboot" is not a valid choice.'),
        ("/api/v1/stations/A1-CP1/events/?received_after=today", "received_after", DATETIME),
        ("/api/v1/stations/A1-CP1/status-history/?evse_id=one", "evse_id", INTEGER),
        ("/api/v1/stations/A1-CP1/status-history/?received_before=9", "received_before", DATETIME),
        ("/api/v1/session-anomalies/?kind=odd", "kind", '"odd" is not a valid choice.'),
        ("/api/v1/session-anomalies/?reviewed=maybe", "reviewed", "Must be a valid boolean."),
    ],
)
def test_bad_filters_are_a_400(world, api, url, field, message):
    response = api(world.operator_a).get(url)
    assert response.status_code == 400
    assert list(response.json()) == [field]
    [got] = response.json()[field]
    assert got == message or (message == DATETIME and got.startswith(DATETIME))


# --- a session's meter values and transaction events ------------------------------------------------


@pytest.fixture
def meter_values(world, tenants) -> None:
    session = tenants.session_a1

    def sample(timestamp, **fields):
        MeterValue.objects.create(
            station=fields.pop("station", world.station_a1),
            session=fields.pop("session", session),
            timestamp=timestamp,
            received_at=at(9),
            **fields,
        )

    # Created out of order: the API sorts by timestamp, then by arrival.
    sample(at(8, 30), value="3000.5", unit="Wh", evse_id=1, context="Sample.Periodic")
    sample(at(8, 15), value="1500", unit="Wh", evse_id=1, context="Sample.Periodic")
    sample(
        at(8, 15),
        measurand="Power.Active.Import",
        phase="L1",
        location="Outlet",
        value="7400",
        unit="W",
        evse_id=1,
        context="Sample.Periodic",
    )
    sample(at(8, 45), value=None, signed_data="OCMF|{...}|{...}", evse_id=1, context="Transaction.End")
    # Samples of the same station outside the session, and of other sessions.
    sample(at(8, 20), session=None, value="9")
    sample(at(8, 20), session=tenants.session_a2, station=world.station_a2, value="9")
    sample(at(8, 20), session=tenants.session_b1, station=world.station_b1, value="9")


def meter_value_json(timestamp, value, **fields) -> dict:
    return {
        "timestamp": iso(timestamp),
        "measurand": fields.get("measurand", "Energy.Active.Import.Register"),
        "phase": fields.get("phase", ""),
        "location": fields.get("location", ""),
        "unit": fields.get("unit", "Wh"),
        "context": fields.get("context", "Sample.Periodic"),
        "value": value,
        "signed_data": fields.get("signed_data", ""),
        "evse_id": 1,
    }


def test_meter_values_in_sampling_order(world, tenants, meter_values, api):
    response = api(world.host_a1).get(f"/api/v1/sessions/{tenants.session_a1.pk}/meter-values/")
    assert response.json()["count"] == 4
    assert results(response) == [
        meter_value_json(at(8, 15), "1500.000000"),
        meter_value_json(
            at(8, 15), "7400.000000", measurand="Power.Active.Import", phase="L1", location="Outlet", unit="W"
        ),
        meter_value_json(at(8, 30), "3000.500000"),
        meter_value_json(at(8, 45), None, unit="", context="Transaction.End", signed_data="OCMF|{...}|{...}"),
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("measurand=Power.Active.Import", ["7400.000000"]),
        ("measurand=Energy.Active.Import.Register", ["1500.000000", "3000.500000", None]),
        ("measurand=Voltage", []),
    ],
)
def test_meter_value_filters(world, tenants, meter_values, api, query, expected):
    url = f"/api/v1/sessions/{tenants.session_a1.pk}/meter-values/?{query}"
    assert [m["value"] for m in results(api(world.finance_a).get(url))] == expected


def test_meter_values_count_only_the_sessions_rows(world, tenants, meter_values, api):
    """MeterValue is the biggest table: the page count must be bounded by the session (its index)."""
    with CaptureQueriesContext(connection) as captured:
        results(api(world.operator_a).get(f"/api/v1/sessions/{tenants.session_a1.pk}/meter-values/"))
    counts = [q["sql"] for q in captured if "COUNT(" in q["sql"].upper() and "metervalue" in q["sql"]]
    assert len(counts) == 1
    assert f'"session_id" = {tenants.session_a1.pk}' in counts[0], counts[0]


def transaction_event(session, seq_no, event_type, trigger_reason, minute, **fields) -> TransactionEvent:
    return TransactionEvent.objects.create(
        station=session.station,
        session=session,
        transaction_id=session.transaction_id,
        seq_no=seq_no,
        event_type=event_type,
        trigger_reason=trigger_reason,
        timestamp=at(8, minute),
        received_at=fields.pop("received_at", at(8, minute)),
        payload={"seqNo": seq_no},
        **fields,
    )


def test_session_events_in_seq_no_order(world, tenants, api):
    session = tenants.session_a1
    # Arrived out of order: seqNo 1 was queued offline and sent after the end.
    transaction_event(session, 2, "Ended", "EVDeparted", 59, charging_state="Idle")
    transaction_event(session, 0, "Started", "Authorized", 0, charging_state="EVConnected")
    transaction_event(
        session,
        1,
        "Updated",
        "ChargingStateChanged",
        5,
        offline=True,
        charging_state="Charging",
        received_at=at(9),
    )
    transaction_event(tenants.session_b1, 0, "Started", "Authorized", 0)
    response = api(world.operator_a).get(f"/api/v1/sessions/{session.pk}/events/")
    assert results(response) == [
        {
            "seq_no": 0,
            "event_type": "Started",
            "trigger_reason": "Authorized",
            "timestamp": "2025-03-01T08:00:00Z",
            "received_at": "2025-03-01T08:00:00Z",
            "offline": False,
            "charging_state": "EVConnected",
        },
        {
            "seq_no": 1,
            "event_type": "Updated",
            "trigger_reason": "ChargingStateChanged",
            "timestamp": "2025-03-01T08:05:00Z",
            "received_at": "2025-03-01T09:00:00Z",
            "offline": True,
            "charging_state": "Charging",
        },
        {
            "seq_no": 2,
            "event_type": "Ended",
            "trigger_reason": "EVDeparted",
            "timestamp": "2025-03-01T08:59:00Z",
            "received_at": "2025-03-01T08:59:00Z",
            "offline": False,
            "charging_state": "Idle",
        },
    ]
    # A 1.6 session has no TransactionEvents.
    response = api(world.operator_a).get(f"/api/v1/sessions/{tenants.session_a2.pk}/events/")
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}


def test_session_records_outside_the_scope_are_404(world, tenants, api):
    for suffix in ("meter-values", "events"):
        url = f"/api/v1/sessions/{tenants.session_a2.pk}/{suffix}/"
        for actor in (world.operator_b, world.host_a1):
            response = api(actor).get(url)
            assert response.status_code == 404
            assert response.json() == {"detail": f"Session {tenants.session_a2.pk} not found."}
        assert api(world.finance_a).get(url).status_code == 200


# --- session anomalies ------------------------------------------------------------------------------


@pytest.fixture
def anomalies(world, tenants) -> dict:
    def anomaly(station, created_at, **fields) -> SessionAnomaly:
        row = SessionAnomaly.objects.create(station=station, **fields)
        SessionAnomaly.objects.filter(pk=row.pk).update(created_at=created_at)
        row.refresh_from_db()
        return row

    return {
        "a1_duplicate": anomaly(
            world.station_a1,
            at(9),
            session=tenants.session_a1,
            kind="duplicate_stop",
            transaction_id="1001",
            detail={"meter_stop_wh": 8500, "reason": "Local"},
        ),
        "a2_unknown": anomaly(
            world.station_a2, at(10), kind="unknown_transaction", transaction_id="9999", reviewed=True
        ),
        "b1_foreign": anomaly(world.station_b1, at(11), kind="foreign_transaction", transaction_id="1001"),
    }


def test_session_anomalies_of_visible_stations_newest_first(world, tenants, anomalies, api):
    body = results(api(world.finance_a).get("/api/v1/session-anomalies/"))
    assert body == [
        {
            "id": anomalies["a2_unknown"].pk,
            "kind": "unknown_transaction",
            "station": "A2-CP1",
            "session": None,
            "transaction_id": "9999",
            "detail": {},
            "reviewed": True,
            "created_at": "2025-03-01T10:00:00Z",
        },
        {
            "id": anomalies["a1_duplicate"].pk,
            "kind": "duplicate_stop",
            "station": "A1-CP1",
            "session": tenants.session_a1.pk,
            "transaction_id": "1001",
            "detail": {"meter_stop_wh": 8500, "reason": "Local"},
            "reviewed": False,
            "created_at": "2025-03-01T09:00:00Z",
        },
    ]
    assert [a["id"] for a in results(api(world.host_a1).get("/api/v1/session-anomalies/"))] == [
        anomalies["a1_duplicate"].pk
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("kind=duplicate_stop", ["a1_duplicate"]),
        ("reviewed=true", ["a2_unknown"]),
        ("reviewed=false", ["b1_foreign", "a1_duplicate"]),
        ("station=B1-CP1", ["b1_foreign"]),
        ("station=b1-cp1", []),
        ("station=A1-CP1&kind=foreign_transaction", []),
    ],
)
def test_session_anomaly_filters(world, anomalies, api, query, expected):
    body = results(api(world.superuser).get(f"/api/v1/session-anomalies/?{query}"))
    assert [a["id"] for a in body] == [anomalies[name].pk for name in expected]


# --- read-only, and no N+1 --------------------------------------------------------------------------

RECORD_URLS = [
    "/api/v1/stations/A1-CP1/variables/",
    "/api/v1/stations/A1-CP1/security-events/",
    "/api/v1/stations/A1-CP1/events/",
    "/api/v1/stations/A1-CP1/status-history/",
    "/api/v1/security-events/",
    "/api/v1/session-anomalies/",
    "/api/v1/sessions/{session}/meter-values/",
    "/api/v1/sessions/{session}/events/",
]


@pytest.mark.parametrize("url", RECORD_URLS)
def test_records_are_read_only(world, tenants, records, api, url):
    client = api(world.operator_a)
    url = url.format(session=tenants.session_a1.pk)
    before = client.get(url).json()
    assert before["count"] >= 1
    assert client.post(url, {}, format="json").status_code == 405
    assert client.patch(url, {}, format="json").status_code == 405
    assert client.delete(url).status_code == 405
    assert client.get(url).json() == before


@pytest.mark.parametrize("url", ["/api/v1/security-events/", "/api/v1/session-anomalies/"])
def test_lists_across_stations_query_count_does_not_grow(world, api, url):
    client = api(world.operator_a)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            results(client.get(url))
        return len(captured)

    def add_station(n: int) -> None:
        station = ChargingStationFactory(identity=f"A2-MORE-{n}", site=world.site_a2)
        security_event(station, at(10, n))
        session = ChargingSessionFactory(station=station)
        SessionAnomaly.objects.create(station=station, session=session, kind="duplicate_stop")

    add_station(0)
    baseline = queries()
    for n in range(1, 6):
        add_station(n)
    assert queries() == baseline
