"""Incident services: opened and resolved from 1.6 and 2.0.1 style reports, offline detection, operator
actions and the alert emails."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, transaction

from accounts.services import membership_set
from cpms.errors import Conflict, PermissionDenied, ValidationFailed
from stations.models import Incident, StationEvent
from stations.services.incidents import (
    incident_acknowledge,
    incident_recipients,
    incident_resolve,
    incidents_detect_offline,
    incidents_notify_pending,
)
from stations.services.ocpp import (
    connector_status_update,
    station_connected,
    station_disconnected,
    station_event_record,
)
from stations.services.site_hosts import site_host_grant
from stations.types import ConnectorStatusReport
from tests.factories import ChargingStationFactory, UserFactory
from tests.support import row

T0 = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def status(
    station,
    status_: str,
    *,
    evse=1,
    connector=1,
    error="",
    occurred=0,
    received=2,
    info="",
    vendor="",
    vendor_code="",
):
    connector_status_update(
        station_id=station.pk,
        report=ConnectorStatusReport(
            evse_id=evse,
            connector_id=connector if evse is not None else None,
            status=status_,
            error_code=error,
            info=info,
            vendor_id=vendor,
            vendor_error_code=vendor_code,
            occurred_at=at(occurred),
            received_at=at(received),
        ),
    )


def fields(incident: Incident, *names: str) -> tuple:
    return tuple(getattr(incident, name) for name in names)


PLACE = ("kind", "evse_id", "connector_id", "code", "detail", "occurred_at", "detected_at")


# --- faults -------------------------------------------------------------------------------------------


def test_faulted_connector_opens_one_fault_and_recovery_resolves_it(world):
    station = world.station_a1
    status(station, "Faulted", error="GroundFailure", info="RCD tripped", vendor="acme", vendor_code="E42")
    status(station, "Faulted", error="GroundFailure", occurred=30, received=31)  # the same fault again
    incident = Incident.objects.get()
    assert fields(incident, *PLACE) == (
        "fault",
        1,
        1,
        "GroundFailure",
        "RCD tripped; vendor acme E42",
        at(0),
        at(2),
    )
    assert (incident.organisation_id, incident.site_id, incident.station_id) == (
        world.org_a.pk,
        world.site_a1.pk,
        station.pk,
    )
    assert incident.resolved_at is None
    status(station, "Available", occurred=60, received=61)
    incident.refresh_from_db()
    assert fields(incident, "resolved_at", "resolved_remotely", "resolved_by") == (at(60), True, None)
    # A new fault after the recovery is a new incident.
    status(station, "Faulted", occurred=90, received=90)
    assert Incident.objects.count() == 2
    assert Incident.objects.get(resolved_at__isnull=True).code == "Faulted"


def test_error_code_without_faulted_status_is_a_fault_1_6(world):
    # 1.6: a connector may stay Available but report an error code (a warning such as HighTemperature).
    status(world.station_a1, "Available", error="HighTemperature")
    assert fields(Incident.objects.get(), "code", "evse_id") == ("HighTemperature", 1)
    # Still the error code: not a recovery.
    status(world.station_a1, "Charging", error="HighTemperature", occurred=10, received=11)
    assert Incident.objects.get().resolved_at is None
    status(world.station_a1, "Charging", error="NoError", occurred=20, received=21)
    assert Incident.objects.get().resolved_at == at(20)


def test_station_level_fault_is_evse_0_and_other_places_are_separate(world):
    status(world.station_a1, "Faulted", evse=None, error="PowerMeterFailure")
    status(world.station_a1, "Faulted", evse=2, connector=1)
    places = sorted(Incident.objects.values_list("evse_id", "connector_id", "code"))
    assert places == [(0, 0, "PowerMeterFailure"), (2, 1, "Faulted")]
    # The station recovering leaves EVSE 2 faulted.
    status(world.station_a1, "Available", evse=None, occurred=5, received=6)
    assert sorted(Incident.objects.filter(resolved_at__isnull=True).values_list("evse_id", flat=True)) == [2]


def test_late_old_report_does_not_resolve_a_newer_fault(world):
    status(world.station_a1, "Faulted", occurred=100, received=100)
    # Queued while offline, delivered now: an Available from before the fault began.
    status(world.station_a1, "Available", occurred=50, received=120)
    assert Incident.objects.get().resolved_at is None


def test_charger_clock_ahead_is_clamped_to_receipt(world):
    status(world.station_a1, "Faulted", occurred=3600, received=10)
    incident = Incident.objects.get()
    assert (incident.occurred_at, incident.detected_at) == (at(10), at(10))


def test_one_open_incident_per_place_is_enforced_by_the_database(world):
    status(world.station_a1, "Faulted")
    incident = Incident.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        Incident.objects.create(
            organisation=world.org_a,
            station=world.station_a1,
            kind="fault",
            evse_id=1,
            connector_id=1,
            occurred_at=at(0),
            detected_at=at(0),
        )
    assert list(Incident.objects.values_list("pk", flat=True)) == [incident.pk]


# --- 2.0.1 NotifyEvent ------------------------------------------------------------------------------------


def notify(station, *items, received=5):
    station_event_record(
        station_id=station.pk,
        kind="notify_event",
        detail={"generatedAt": at(0).isoformat(), "seqNo": 0, "eventData": list(items)},
        occurred_at=at(0),
        received_at=at(received),
    )


def item(
    variable="Problem", value="true", *, trigger="Delta", component="Connector", evse=None, ts=1, **extra
):
    data = {
        "eventId": 1,
        "timestamp": at(ts).isoformat().replace("+00:00", "Z"),
        "trigger": trigger,
        "actualValue": value,
        "eventNotificationType": "HardWiredMonitor",
        "component": {"name": component, **({"evse": evse} if evse else {})},
        "variable": {"name": variable},
    }
    return {**data, **extra}


def test_problem_event_opens_and_clearing_resolves(world):
    notify(world.station_a1, item(evse={"id": 1, "connectorId": 1}, techInfo="pin overheated"))
    notify(world.station_a1, item(evse={"id": 1, "connectorId": 1}, ts=2))  # repeated: still one
    incident = Incident.objects.get()
    assert fields(incident, *PLACE) == (
        "event",
        1,
        1,
        "Connector.Problem",
        "Connector.Problem; pin overheated",
        at(1),
        at(5),
    )
    # Another component clearing at that place does not resolve it.
    notify(world.station_a1, item(value="false", component="EVSE", evse={"id": 1, "connectorId": 1}, ts=3))
    incident.refresh_from_db()
    assert incident.resolved_at is None
    notify(world.station_a1, item(value="false", evse={"id": 1, "connectorId": 1}, ts=40), received=41)
    incident.refresh_from_db()
    assert fields(incident, "resolved_at", "resolved_remotely") == (at(40), True)


def test_tech_code_alert_opens_and_cleared_flag_resolves(world):
    notify(
        world.station_a1,
        item("Temperature", "95", trigger="Alerting", component="ChargingStation", techCode="T-HOT"),
    )
    incident = Incident.objects.get()
    assert fields(incident, "evse_id", "connector_id", "code", "detail") == (
        0,
        0,
        "T-HOT",
        "ChargingStation.Temperature; techCode T-HOT",
    )
    notify(
        world.station_a1,
        item("Temperature", "60", trigger="Alerting", component="ChargingStation", cleared=True, ts=4),
    )
    incident.refresh_from_db()
    assert incident.resolved_at == at(4)


@pytest.mark.parametrize(
    "data",
    [
        item(trigger="Periodic"),  # a snapshot, not an alert
        item(value="false"),
        item("Temperature", "95", trigger="Delta", techCode="T-HOT"),  # techCode only counts when Alerting
        item("Available", "true"),
    ],
    ids=["periodic", "problem-false", "techcode-delta", "other-variable"],
)
def test_events_that_are_not_problems_open_nothing(world, data):
    notify(world.station_a1, data)
    assert Incident.objects.count() == 0
    assert StationEvent.objects.filter(kind="notify_event").count() == 1


# --- offline ----------------------------------------------------------------------------------------------


def test_offline_detection_exact_times_and_reconnect_resolves(world, settings):
    settings.INCIDENT_OFFLINE_AFTER_S = 300
    station = world.station_a1
    station_connected(station_id=station.pk, connection_id="c1", protocol="ocpp1.6", at=at(0))
    station.__class__.objects.filter(pk=station.pk).update(last_seen_at=at(100))
    station_disconnected(station_id=station.pk, connection_id="c1", at=at(130))
    # Not yet: 299 s after the disconnect.
    assert incidents_detect_offline(now=at(429)) == 0
    assert incidents_detect_offline(now=at(430)) == 1
    assert incidents_detect_offline(now=at(500)) == 0  # already open
    incident = Incident.objects.get()
    assert fields(incident, "kind", "evse_id", "connector_id", "code", "occurred_at", "detected_at") == (
        "offline",
        0,
        0,
        "Offline",
        at(130),
        at(430),
    )
    station_connected(station_id=station.pk, connection_id="c2", protocol="ocpp1.6", at=at(900))
    incident.refresh_from_db()
    assert fields(incident, "resolved_at", "resolved_remotely", "resolved_by") == (at(900), True, None)


def test_station_marked_silent_uses_last_seen(world, settings):
    """A station marked offline by the silence check has no disconnect event of its current connection."""
    settings.INCIDENT_OFFLINE_AFTER_S = 60
    station = world.station_a1
    StationEvent.objects.create(
        station=station, kind="disconnected", detail={}, occurred_at=at(-1000), received_at=at(-1000)
    )
    station.__class__.objects.filter(pk=station.pk).update(is_connected=False, last_seen_at=at(0))
    assert incidents_detect_offline(now=at(60)) == 1
    assert Incident.objects.get().occurred_at == at(0)


def test_offline_skips_connected_never_seen_and_unaccepted_stations(world, settings):
    settings.INCIDENT_OFFLINE_AFTER_S = 60
    connected = world.station_a1
    connected.__class__.objects.filter(pk=connected.pk).update(is_connected=True, last_seen_at=at(0))
    # station_a2 was never seen (last_seen_at None).
    pending = ChargingStationFactory(site=world.site_a1, registration_status="Pending", last_seen_at=at(0))
    rejected = ChargingStationFactory(site=world.site_a1, registration_status="Rejected", last_seen_at=at(0))
    silent = ChargingStationFactory(site=world.site_b1, last_seen_at=at(0))
    assert incidents_detect_offline(now=at(3600)) == 1
    assert list(Incident.objects.values_list("station_id", flat=True)) == [silent.pk]
    assert not Incident.objects.filter(station__in=[pending, rejected, world.station_a2]).exists()


# --- operator actions -------------------------------------------------------------------------------------


@pytest.fixture
def fault(world):
    status(world.station_a1, "Faulted", error="GroundFailure")
    return Incident.objects.get()


def test_acknowledge_then_resolve_with_a_site_visit(world, fault):
    acknowledged = incident_acknowledge(actor=world.operator_a, incident=fault)
    assert acknowledged.acknowledged_by == world.operator_a
    assert acknowledged.acknowledged_at is not None
    with pytest.raises(Conflict, match="already acknowledged"):
        incident_acknowledge(actor=world.operator_a, incident=fault)
    resolved = incident_resolve(
        actor=world.host_a1, incident=fault, resolved_remotely=False, note=" Replaced RCD "
    )
    assert fields(resolved, "resolved_by", "resolved_remotely", "resolution_note") == (
        world.host_a1,
        False,
        "Replaced RCD",
    )
    with pytest.raises(Conflict, match="already resolved"):
        incident_resolve(actor=world.operator_a, incident=fault, resolved_remotely=True, note="")
    with pytest.raises(Conflict, match="already resolved"):
        incident_acknowledge(actor=world.operator_a, incident=fault)


def test_finance_may_not_act_and_nothing_changes(world, fault):
    before = row(fault)
    with pytest.raises(PermissionDenied):
        incident_acknowledge(actor=world.finance_a, incident=fault)
    with pytest.raises(PermissionDenied):
        incident_resolve(actor=world.operator_b, incident=fault, resolved_remotely=True, note="")
    assert row(fault) == before


def test_resolve_validates_its_input(world, fault):
    with pytest.raises(ValidationFailed):
        incident_resolve(actor=world.operator_a, incident=fault, resolved_remotely=True, note="x" * 501)
    with pytest.raises(ValidationFailed):
        incident_resolve(actor=world.operator_a, incident=fault, resolved_remotely="yes", note="")
    fault.refresh_from_db()
    assert fault.resolved_at is None


# --- alert emails -----------------------------------------------------------------------------------------


@pytest.fixture
def people(world):
    """Beyond the world's users: staff, support, a site host of A2, a member without email, an inactive one."""
    staff = UserFactory(username="staff_a")
    membership_set(user=staff, organisation=world.org_a, role="operator_staff")
    support = UserFactory(username="support_a")
    membership_set(user=support, organisation=world.org_a, role="support")
    host_a2 = UserFactory(username="host_a2")
    site_host_grant(user=host_a2, site=world.site_a2)
    no_email = UserFactory(username="noemail", email="")
    membership_set(user=no_email, organisation=world.org_a, role="operator_admin")
    inactive = UserFactory(username="gone", is_active=False)
    membership_set(user=inactive, organisation=world.org_a, role="operator_admin")
    return staff, support, host_a2


def test_recipients_are_the_organisation_operators_and_the_site_hosts_of_the_site(world, people, fault):
    # Not finance_a (finance), not operator_b (another organisation), not host_a2 (another site), not the
    # superuser (no membership), not the member without email or the inactive one.
    assert incident_recipients(incident=fault) == [
        "host_a1@example.com",
        "operator_a@example.com",
        "staff_a@example.com",
        "support_a@example.com",
    ]
    status(world.station_a2, "Faulted")
    on_a2 = Incident.objects.get(station=world.station_a2)
    assert incident_recipients(incident=on_a2) == [
        "host_a2@example.com",
        "operator_a@example.com",
        "staff_a@example.com",
        "support_a@example.com",
    ]
    status(world.station_b1, "Faulted")
    assert incident_recipients(incident=Incident.objects.get(station=world.station_b1)) == [
        "operator_b@example.com"
    ]


def test_one_email_per_incident_and_a_rerun_sends_nothing(world, fault, mailoutbox, settings):
    settings.CPMS_PUBLIC_URL = "https://cpms.example.com"
    now = at(10)
    assert incidents_notify_pending(now=now) == 1
    assert incidents_notify_pending(now=at(20)) == 0
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.subject == "[CPMS] Fault GroundFailure on A1-CP1 (A1) connector 1/1"
    assert mail.to == ["host_a1@example.com", "operator_a@example.com"]
    # Times in the site's zone (Europe/Berlin: UTC+1 in November).
    assert "Occurred:  24 Nov 2026, 14:00:00 CET" in mail.body
    assert "Detected:  24 Nov 2026, 14:00:02 CET" in mail.body
    assert f"https://cpms.example.com/portal/incidents/{fault.pk}/" in mail.body
    fault.refresh_from_db()
    assert fault.notified_at == now


def test_offline_subject_and_a_failed_send_is_retried(world, mailoutbox, monkeypatch, settings):
    settings.INCIDENT_OFFLINE_AFTER_S = 60
    world.station_b1.__class__.objects.filter(pk=world.station_b1.pk).update(last_seen_at=at(0))
    incidents_detect_offline(now=at(120))

    from stations.services import incidents

    real_send_mail = incidents.send_mail

    def broken(**kwargs):
        raise OSError("SMTP down")

    monkeypatch.setattr(incidents, "send_mail", broken)
    assert incidents_notify_pending(now=at(130)) == 0
    assert Incident.objects.get().notified_at is None
    monkeypatch.setattr(incidents, "send_mail", real_send_mail)
    assert incidents_notify_pending(now=at(190)) == 1
    assert [(m.subject, m.to) for m in mailoutbox] == [
        ("[CPMS] Offline on B1-CP1 (B1)", ["operator_b@example.com"])
    ]


# --- API ------------------------------------------------------------------------------------------------


def test_api_list_is_scoped_and_filtered(world, api, fault):
    status(world.station_b1, "Faulted", error="OverCurrentFailure")
    status(world.station_a2, "Faulted", occurred=5, received=7)
    on_a2 = Incident.objects.get(station=world.station_a2)
    body = api(world.operator_a).get("/api/v1/incidents/").json()
    assert [item["id"] for item in body["results"]] == [on_a2.pk, fault.pk]
    assert body["results"][1] == {
        "id": fault.pk,
        "organisation": world.org_a.pk,
        "site": world.site_a1.pk,
        "station": "A1-CP1",
        "evse_id": 1,
        "connector_id": 1,
        "kind": "fault",
        "code": "GroundFailure",
        "detail": "",
        "status": "open",
        "occurred_at": "2026-11-24T13:00:00Z",
        "detected_at": "2026-11-24T13:00:02Z",
        "acknowledged_at": None,
        "acknowledged_by": None,
        "resolved_at": None,
        "resolved_by": None,
        "resolved_remotely": None,
        "resolution_note": "",
        "notified_at": None,
        "time_to_detect_s": 2.0,
        "time_to_repair_s": None,
    }
    host = api(world.host_a1).get("/api/v1/incidents/").json()
    assert [item["id"] for item in host["results"]] == [fault.pk]
    site_filtered = api(world.operator_a).get(f"/api/v1/incidents/?site={world.site_a2.pk}").json()
    assert [item["id"] for item in site_filtered["results"]] == [on_a2.pk]
    station_filtered = api(world.operator_a).get("/api/v1/incidents/?station=A1-CP1&status=open&kind=fault")
    assert [item["id"] for item in station_filtered.json()["results"]] == [fault.pk]
    assert api(world.operator_a).get("/api/v1/incidents/?status=resolved").json()["results"] == []
    assert api(world.operator_a).get("/api/v1/incidents/?status=bogus").status_code == 400


def test_api_detail_and_actions_with_denials(world, api, fault):
    url = f"/api/v1/incidents/{fault.pk}/"
    assert api(world.operator_b).get(url).status_code == 404
    before = row(fault)
    assert api(world.operator_b).post(url + "acknowledge/").status_code == 404
    assert api(world.finance_a).get(url).status_code == 200
    assert api(world.finance_a).post(url + "acknowledge/").status_code == 403
    denied = api(world.finance_a).post(url + "resolve/", {"resolved_remotely": True}, format="json")
    assert denied.status_code == 403
    assert row(fault) == before
    assert (
        api(world.operator_a).post(url + "resolve/", {"note": "no outcome"}, format="json").status_code == 400
    )
    assert (
        api(world.operator_a)
        .post(url + "resolve/", {"resolved_remotely": True, "x": 1}, format="json")
        .status_code
        == 400
    )
    assert row(fault) == before
    acked = api(world.host_a1).post(url + "acknowledge/")
    assert (acked.status_code, acked.json()["status"], acked.json()["acknowledged_by"]) == (
        200,
        "acknowledged",
        "host_a1",
    )
    resolved = api(world.operator_a).post(
        url + "resolve/", {"resolved_remotely": False, "note": "Visit"}, format="json"
    )
    assert resolved.status_code == 200
    assert {
        key: resolved.json()[key] for key in ("status", "resolved_by", "resolved_remotely", "resolution_note")
    } == {
        "status": "resolved",
        "resolved_by": "operator_a",
        "resolved_remotely": False,
        "resolution_note": "Visit",
    }
    again = api(world.operator_a).post(url + "resolve/", {"resolved_remotely": True}, format="json")
    assert (again.status_code, again.json()) == (409, {"detail": f"Incident {fault.pk} is already resolved."})


@pytest.mark.django_db(transaction=True)
def test_concurrent_problem_reports_open_one_incident():
    """Processes handling the same problem event at once (a redelivery racing the original; nothing else locks
    a row on this path): one incident, and no report fails (the losers of the unique constraint see "already
    open")."""
    import threading

    from django.db import connection

    station = ChargingStationFactory(identity="CP-RACE")
    barrier = threading.Barrier(4)
    errors = []

    def report():
        try:
            barrier.wait()
            notify(station, item(evse={"id": 1}))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=report) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Incident.objects.filter(station=station, resolved_at__isnull=True).count() == 1
