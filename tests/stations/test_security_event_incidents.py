"""Charger-reported security events: stored with their severity (the version's security event list), the
critical ones open an incident that alerts like a fault, and a duplicate notification changes nothing."""

from datetime import UTC, datetime, timedelta

import pytest

from stations.enums import SecurityEventKind
from stations.models import Incident, SecurityEvent
from stations.services.incidents import incidents_notify_pending
from stations.services.security_events import security_event_is_critical, security_event_report
from stations.types import IncidentOpened

T0 = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)
WIRE_T0 = "2026-11-24T13:00:00Z"


def report(station, version, event_type, *, timestamp=WIRE_T0, tech_info="", received_s=2):
    return security_event_report(
        station_id=station.pk,
        version=version,
        event_type=event_type,
        timestamp=timestamp,
        occurred_at=datetime.fromisoformat(timestamp),
        tech_info=tech_info,
        received_at=T0 + timedelta(seconds=received_s),
    )


@pytest.mark.parametrize(
    ("version", "event_type", "critical"),
    [
        ("1.6", "FirmwareUpdated", True),
        ("1.6", "TamperDetectionActivated", True),
        ("1.6", "MemoryExhaustion", True),
        ("1.6", "FailedToAuthenticateAtCentralSystem", False),
        ("1.6", "InvalidCentralSystemCertificate", False),
        # Critical in 2.0.1's list, not in the 1.6 whitepaper's.
        ("1.6", "InvalidFirmwareSignature", False),
        ("2.0.1", "InvalidFirmwareSignature", True),
        ("2.0.1", "InvalidCsmsCertificate", True),
        ("2.0.1", "MaintenanceLoginFailed", True),
        ("2.0.1", "StartupOfTheDevice", True),
        ("2.0.1", "FailedToAuthenticateAtCsms", False),
        ("2.0.1", "ReconfigurationOfSecurityParameters", False),
        ("2.0.1", "AttemptedReplayAttacks", False),
        ("2.0.1", "AcmeDoorOpened", False),
    ],
)
def test_severity_follows_the_versions_list(version, event_type, critical):
    assert security_event_is_critical(event_type=event_type, version=version) is critical


@pytest.mark.parametrize(
    ("version", "event_type"), [("1.6", "TamperDetectionActivated"), ("2.0.1", "InvalidTLSVersion")]
)
def test_critical_event_is_stored_as_critical_and_opens_one_incident(world, version, event_type):
    station = world.station_a1
    outcomes = report(station, version, event_type, tech_info="lid opened")
    incident = Incident.objects.get()
    assert outcomes == (IncidentOpened(station_id=station.pk, incident_id=incident.pk),)
    assert (
        incident.kind,
        incident.evse_id,
        incident.connector_id,
        incident.code,
        incident.detail,
        incident.occurred_at,
        incident.detected_at,
        incident.organisation_id,
        incident.site_id,
        incident.resolved_at,
    ) == (
        "event",
        0,
        0,
        event_type,
        f"Security event {event_type}; lid opened",
        T0,
        T0 + timedelta(seconds=2),
        world.org_a.pk,
        world.site_a1.pk,
        None,
    )
    event = SecurityEvent.objects.get()
    assert (event.station_id, event.identity, event.kind, event.detail) == (
        station.pk,
        "A1-CP1",
        SecurityEventKind.CHARGER_REPORTED,
        f"{event_type} at {WIRE_T0} (critical): lid opened",
    )


@pytest.mark.parametrize(
    ("version", "event_type"),
    [("1.6", "InvalidFirmwareSignature"), ("2.0.1", "FailedToAuthenticateAtCsms")],
)
def test_non_critical_event_is_stored_and_opens_nothing(world, version, event_type):
    assert report(world.station_a1, version, event_type) == ()
    assert Incident.objects.count() == 0
    assert SecurityEvent.objects.get().detail == f"{event_type} at {WIRE_T0} (not critical): "


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_duplicate_notification_changes_nothing(world, version):
    station = world.station_a1
    report(station, version, "ResetOrReboot")
    incident = Incident.objects.get()
    # Resolved by an operator; the same notification delivered again must not reopen it.
    Incident.objects.filter(pk=incident.pk).update(resolved_at=T0 + timedelta(seconds=10))
    assert report(station, version, "ResetOrReboot", received_s=30) == ()
    assert Incident.objects.count() == 1
    assert SecurityEvent.objects.count() == 1
    # The same type at another time is another event, and opens a new incident.
    later = "2026-11-24T13:01:00Z"
    outcomes = report(station, version, "ResetOrReboot", timestamp=later, received_s=61)
    assert len(outcomes) == 1
    assert SecurityEvent.objects.count() == 2
    assert Incident.objects.filter(resolved_at__isnull=True).get().occurred_at == T0 + timedelta(minutes=1)


def test_second_critical_event_while_one_is_open_is_logged_but_opens_no_second_incident(world):
    station = world.station_a1
    report(station, "2.0.1", "TamperDetectionActivated")
    assert report(station, "2.0.1", "MemoryExhaustion", timestamp="2026-11-24T13:00:01Z") == ()
    assert Incident.objects.get().code == "TamperDetectionActivated"
    assert SecurityEvent.objects.count() == 2


def test_critical_event_alerts_like_a_fault(world, mailoutbox, settings):
    settings.CPMS_PUBLIC_URL = "https://cpms.example"
    report(world.station_a1, "2.0.1", "SecurityLogWasCleared", tech_info="by maintenance")
    assert incidents_notify_pending(now=T0 + timedelta(seconds=60)) == 1
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.subject == "[CPMS] Problem SecurityLogWasCleared on A1-CP1 (A1)"
    assert world.operator_a.email in mail.to
    assert world.operator_b.email not in mail.to
    assert "Detail:    Security event SecurityLogWasCleared; by maintenance" in mail.body


def test_charger_clock_ahead_is_taken_as_receipt_time(world):
    report(world.station_a1, "1.6", "SettingSystemTime", timestamp="2026-11-24T14:00:00Z", received_s=5)
    assert Incident.objects.get().occurred_at == T0 + timedelta(seconds=5)
