"""Admin test fixtures: staff logins for the standing users, and a row in every scoped table per tenant."""

from dataclasses import dataclass

import pytest
from django.test import Client
from django.utils import timezone

from sessions.models import (
    LocalListEntry,
    LocalListState,
    MeterValue,
    Reservation,
    SessionAnomaly,
    TransactionEvent,
)
from stations.models import (
    Command,
    CommandJob,
    CommandJobTarget,
    ConfigurationTemplate,
    DeviceVariable,
    DiagnosticsUpload,
    FirmwareFile,
    FirmwareUpdate,
    OcppMessage,
    SecurityEvent,
    StationEvent,
    StatusChange,
)
from tests.factories import ConnectorFactory, EvseFactory
from tests.support import at
from tests.tenants import Tenants, tenants_make


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    # The standing users get real passwords; PBKDF2 would cost ~0.5 s each, every test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def tenants(world) -> Tenants:
    return tenants_make(world)


@pytest.fixture
def admin_client_for(world):
    """admin_client_for(user) -> a logged-in client; the user is made staff (their role does the rest)."""

    def client_for(user) -> Client:
        if not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        client = Client()
        client.force_login(user)
        return client

    return client_for


@dataclass
class Logs:
    by_station: dict  # station identity -> {model: row}
    unknown_identity_event: SecurityEvent


@pytest.fixture
def logs(world, tenants) -> Logs:
    """One row per log table for each standing station, plus a security event for an unknown identity."""
    sessions = {"A1-CP1": tenants.session_a1, "A2-CP1": tenants.session_a2, "B1-CP1": tenants.session_b1}
    tokens = {world.org_a.pk: tenants.token_a, world.org_b.pk: tenants.token_b}
    per_org = {}
    for org in (world.org_a, world.org_b):
        ConfigurationTemplate.objects.create(organisation=org, name=f"T-{org.slug}", protocol="ocpp1.6")
        firmware = FirmwareFile.objects.create(
            organisation=org, name="fw", version="1", sha256="0" * 64, download_token=f"dl-{org.slug}"
        )
        per_org[org.pk] = (CommandJob.objects.create(organisation=org, kind="command"), firmware)
    by_station = {}
    for station in (world.station_a1, world.station_a2, world.station_b1):
        session = sessions[station.identity]
        job, firmware = per_org[station.organisation_id]
        token = tokens[station.organisation_id]
        by_station[station.identity] = {
            Command: Command.objects.create(
                station=station, action="ClearCache", request={}, timeout_s=30, created_at=at(6)
            ),
            CommandJobTarget: CommandJobTarget.objects.create(job=job, station=station),
            FirmwareUpdate: FirmwareUpdate.objects.create(station=station, firmware=firmware),
            DiagnosticsUpload: DiagnosticsUpload.objects.create(
                station=station, kind="log", upload_token=f"up-{station.identity}"
            ),
            Reservation: Reservation.objects.create(
                station=station, id_token=token, expires_at=timezone.now()
            ),
            LocalListEntry: LocalListEntry.objects.create(station=station, id_token=token, status="Accepted"),
            LocalListState: LocalListState.objects.create(station=station, version=1),
            StatusChange: StatusChange.objects.create(
                station=station, status="Available", occurred_at=at(6), received_at=at(6)
            ),
            OcppMessage: OcppMessage.objects.create(
                station=station,
                identity=station.identity,
                direction="in",
                message_type=2,
                unique_id=f"msg-{station.identity}",
                action="Heartbeat",
                payload="{}",
                created_at=at(6),
            ),
            StationEvent: StationEvent.objects.create(
                station=station, kind="boot", detail={}, occurred_at=at(6), received_at=at(6)
            ),
            SecurityEvent: SecurityEvent.objects.create(
                station=station, identity=station.identity, kind="auth_failed", detail="wrong password"
            ),
            DeviceVariable: DeviceVariable.objects.create(
                station=station,
                component="OCPPCommCtrlr",
                variable="HeartbeatInterval",
                value="300",
                updated_at=at(6),
            ),
            MeterValue: MeterValue.objects.create(
                station=station,
                session=session,
                timestamp=at(8, 30),
                value="1500.000000",
                received_at=at(8, 30),
            ),
            SessionAnomaly: SessionAnomaly.objects.create(
                station=station, session=session, kind="duplicate_stop", transaction_id=session.transaction_id
            ),
            TransactionEvent: TransactionEvent.objects.create(
                station=station,
                session=session,
                transaction_id=session.transaction_id,
                seq_no=0,
                event_type="Started",
                trigger_reason="Authorized",
                timestamp=at(8),
                received_at=at(8),
                payload={},
            ),
        }
    # tenants_make gives only station A1 an EVSE; the EVSE and connector tables need an org B row too.
    ConnectorFactory(evse=EvseFactory(station=world.station_b1))
    unknown = SecurityEvent.objects.create(station=None, identity="INTRUDER", kind="unknown_identity")
    return Logs(by_station=by_station, unknown_identity_event=unknown)
