"""API test fixtures: a token-authenticated client per user, the per-tenant objects of tests/tenants.py, and
what each tenant's stations reported."""

from dataclasses import dataclass

import pytest

from sessions.models import MeterValue, SessionAnomaly, TransactionEvent
from stations.models import DeviceVariable, SecurityEvent, StationEvent, StatusChange
from tests.support import at
from tests.tenants import Tenants, tenants_make


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    # The standing users get real passwords; PBKDF2 would cost ~0.5 s each, every test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def tenants(world) -> Tenants:
    return tenants_make(world)


@dataclass
class Records:
    by_station: dict  # station identity -> {model: row}
    unknown_identity_event: SecurityEvent


@pytest.fixture
def records(world, tenants) -> Records:
    """One row of everything a station reports, per standing station (and per its session), each naming its
    station so that a foreign row in a list shows; plus a refused handshake of an unknown identity."""
    sessions = {"A1-CP1": tenants.session_a1, "A2-CP1": tenants.session_a2, "B1-CP1": tenants.session_b1}
    by_station = {}
    for hour, station in enumerate((world.station_a1, world.station_a2, world.station_b1), start=1):
        session = sessions[station.identity]
        security_event = SecurityEvent.objects.create(
            station=station, identity=station.identity, kind="auth_failed", detail=f"{station.identity} pw"
        )
        # created_at is auto_now_add: pin it so that the order across stations is known.
        SecurityEvent.objects.filter(pk=security_event.pk).update(created_at=at(hour))
        by_station[station.identity] = {
            DeviceVariable: DeviceVariable.objects.create(
                station=station,
                component="SecurityCtrlr",
                variable="Identity",
                value=station.identity,
                updated_at=at(hour),
            ),
            SecurityEvent: security_event,
            StationEvent: StationEvent.objects.create(
                station=station,
                kind="boot",
                detail={"identity": station.identity},
                occurred_at=at(hour),
                received_at=at(hour),
            ),
            StatusChange: StatusChange.objects.create(
                station=station,
                status="Available",
                info=station.identity,
                occurred_at=at(hour),
                received_at=at(hour),
            ),
            MeterValue: MeterValue.objects.create(
                station=station, session=session, timestamp=at(hour), value=hour, received_at=at(hour)
            ),
            TransactionEvent: TransactionEvent.objects.create(
                station=station,
                session=session,
                transaction_id=session.transaction_id,
                seq_no=0,
                event_type="Started",
                trigger_reason="Authorized",
                timestamp=at(hour),
                received_at=at(hour),
                payload={},
            ),
            SessionAnomaly: SessionAnomaly.objects.create(
                station=station, session=session, kind="duplicate_stop", transaction_id=session.transaction_id
            ),
        }
    unknown = SecurityEvent.objects.create(station=None, identity="INTRUDER", kind="unknown_identity")
    return Records(by_station=by_station, unknown_identity_event=unknown)
