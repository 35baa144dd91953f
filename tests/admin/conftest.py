"""Admin test fixtures: staff logins for the standing users, and a row in every scoped table per tenant."""

from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from billing.models import (
    CdrCredit,
    CdrLine,
    ChargeDetailRecord,
    ExportJob,
    SessionPricing,
    SiteEnergyPrice,
    Tariff,
    TariffAssignment,
    TariffVersion,
)
from billing.services.cdrs import cdr_credit_create
from billing.services.energy_prices import EnergyPriceInput, site_energy_price_create
from billing.services.tariffs import TariffVersionInput, tariff_assign, tariff_create, tariff_version_create
from energy.enums import ProfileKind, SignalKind
from energy.models import (
    ChargingProfileRecord,
    EvseAllocation,
    EvseElectrical,
    GridNode,
    GridSignal,
    NodeLimitSchedule,
)
from energy.services.topology import (
    ScheduleRow,
    evse_electrical_set,
    grid_node_create,
    grid_signal_record,
    node_schedule_set,
)
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
from tests.factories import ChargingSessionFactory, ConnectorFactory, EvseFactory
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
    export_jobs: dict  # username -> ExportJob


def billing_rows(station, tariff: Tariff, version: TariffVersion) -> dict:
    """A row of each billing table for `station`: the tariff assigned at the station, its site's energy price,
    and a billed session with its snapshot, CDR (3.00 + 0.57 tax), line and a credit."""
    session = ChargingSessionFactory(
        station=station,
        transaction_id=f"{station.identity}-billed",
        started_at=at(5),
        stopped_at=at(6),
        meter_start_wh=0,
        meter_stop_wh=10000,
        energy_wh=10000,
        status="completed",
    )
    cdr = ChargeDetailRecord.objects.create(
        session=session,
        organisation_id=station.organisation_id,
        site_id=station.site_id,
        station=station,
        station_identity=station.identity,
        evse_number=None,
        connector_number=None,
        id_tag="",
        time_zone=station.site.time_zone,
        tariff_version=version,
        tariff_label=f"{tariff.name} v{version.version}",
        started_at=at(5),
        stopped_at=at(6),
        energy_wh=10000,
        charging_s=Decimal(3600),
        parking_s=Decimal(0),
        currency="EUR",
        tax_rate=Decimal("0.19"),
        flat_amount=Decimal(0),
        energy_amount=Decimal("3.00"),
        time_amount=Decimal(0),
        parking_amount=Decimal(0),
        adjustment_amount=Decimal(0),
        subtotal=Decimal("3.00"),
        tax=Decimal("0.57"),
        total=Decimal("3.57"),
        energy_cost=None,
    )
    return {
        Tariff: tariff,
        TariffVersion: version,
        TariffAssignment: tariff_assign(tariff=tariff, station=station),
        SiteEnergyPrice: site_energy_price_create(
            site=station.site,
            data=EnergyPriceInput(
                valid_from=datetime(2025, 1, 1, tzinfo=UTC),
                currency="EUR",
                price_per_kwh=Decimal("0.2"),
                time_of_use=[],
            ),
        ),
        SessionPricing: SessionPricing.objects.create(
            session=session, tariff_version=version, assignment_scope="", tariff=None, snapshotted_at=at(5)
        ),
        ChargeDetailRecord: cdr,
        CdrLine: CdrLine.objects.create(
            cdr=cdr,
            position=1,
            dimension="ENERGY",
            element_index=0,
            quantity=Decimal(10),
            used_quantity=Decimal(10),
            unit="kWh",
            unit_price=Decimal("0.30"),
            amount=Decimal("3.00"),
        ),
        CdrCredit: cdr_credit_create(cdr=cdr, user=None, reason="Fixture", subtotal=Decimal("1.00")),
    }


def energy_rows(station, evse) -> dict:
    """A row of each energy table for `station` (alone on its site): the site's grid connection with a schedule
    row and a meter reading, `evse` wired to it with an allocation, and a profile sent to it."""
    node = grid_node_create(site=station.site, name=f"Grid {station.identity}", limit_a=Decimal(63))
    schedule = node_schedule_set(
        node=node, rows=[ScheduleRow(start_time=time(17), end_time=time(20), limit_a=Decimal(40))]
    )
    return {
        GridNode: node,
        NodeLimitSchedule: schedule[0],
        GridSignal: grid_signal_record(
            node=node,
            kind=SignalKind.METER_READING,
            l1_a=Decimal(10),
            l2_a=Decimal(10),
            l3_a=Decimal(10),
            measured_at=at(6),
            source=station.identity,
        ),
        EvseElectrical: evse_electrical_set(evse=evse, node_id=node.pk),
        EvseAllocation: EvseAllocation.objects.create(
            evse=evse, limit_a=Decimal(16), phases_used="123", computed_at=at(6)
        ),
        ChargingProfileRecord: ChargingProfileRecord.objects.create(
            station=station,
            evse_id=evse.evse_id,
            kind=ProfileKind.DEFAULT,
            profile_id=9_000_000 + evse.evse_id,
            limit_a=Decimal(16),
            profile={},
            status="Accepted",
        ),
    }


@pytest.fixture
def logs(world, tenants) -> Logs:
    """One row per log table for each standing station, plus a security event for an unknown identity."""
    sessions = {"A1-CP1": tenants.session_a1, "A2-CP1": tenants.session_a2, "B1-CP1": tenants.session_b1}
    tokens = {world.org_a.pk: tenants.token_a, world.org_b.pk: tenants.token_b}
    per_org = {}
    tariffs = {}
    for org in (world.org_a, world.org_b):
        tariff = tariff_create(organisation=org, name=f"Tariff {org.slug}")
        tariffs[org.pk] = (
            tariff,
            tariff_version_create(
                tariff=tariff,
                data=TariffVersionInput(
                    valid_from=datetime(2025, 1, 1, tzinfo=UTC),
                    currency="EUR",
                    tax_rate=Decimal("0.19"),
                    elements=[{"price_components": [{"type": "ENERGY", "price": "0.30"}]}],
                ),
            ),
        )
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
            **billing_rows(station, *tariffs[station.organisation_id]),
            **energy_rows(
                station,
                tenants.evse_a1 if station == world.station_a1 else EvseFactory(station=station, evse_id=2),
            ),
        }
    # tenants_make gives only station A1 an EVSE; the EVSE and connector tables need an org B row too.
    ConnectorFactory(evse=EvseFactory(station=world.station_b1))
    unknown = SecurityEvent.objects.create(station=None, identity="INTRUDER", kind="unknown_identity")
    export_jobs = {
        user.username: ExportJob.objects.create(requested_by=user, kind="cdrs", organisation_ids=[org.pk])
        for user, org in (
            (world.operator_a, world.org_a),
            (world.finance_a, world.org_a),
            (world.operator_b, world.org_b),
        )
    }
    return Logs(by_station=by_station, unknown_identity_event=unknown, export_jobs=export_jobs)
