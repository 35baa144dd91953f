"""What the end-to-end tests share: the REST API over HTTP, and the simulator's report in database terms."""

import asyncio
import datetime as dt
import json
import urllib.error
import urllib.request
from collections import Counter
from decimal import Decimal

from rest_framework.authtoken.models import Token

from accounts.enums import Role
from accounts.services import membership_set
from cpms.simulator import FleetConfig, FleetSummary, SessionRecord, run_fleet
from sessions.enums import SessionStatus
from sessions.models import ChargingSession, MeterValue
from stations.models import StatusChange
from tests.factories import DEFAULT_STATION_PASSWORD, UserFactory


def simulate(
    server, identities: tuple[str, ...], *, id_tag: str, meter_samples: int, seed: int, protocol: str = "1.6"
) -> FleetSummary:
    """The simulator against `server`: one session per charger (stations with the factory password)."""
    config = FleetConfig(
        url=server.ws_url,
        identities=identities,
        protocol=protocol,
        password=DEFAULT_STATION_PASSWORD,
        sessions=True,
        session_count=1,
        meter_samples=meter_samples,
        meter_interval_s=0.2,
        # 0.2 s real = 2 min of charging per sample: ~370 Wh at 11 kW, so the register visibly rises.
        speedup=600,
        id_tag=id_tag,
        seed=seed,
        response_timeout_s=15,
    )
    return asyncio.run(run_fleet(config))


def parse_ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def operator_token(organisation, username: str) -> str:
    """An API token of an operator admin of `organisation`."""
    operator = UserFactory(username=username)
    membership_set(user=operator, organisation=organisation, role=Role.OPERATOR_ADMIN)
    return Token.objects.create(user=operator).key


def api_get(server, path: str, *, token: str) -> tuple[int, dict | None]:
    request = urllib.request.Request(  # noqa: S310 - a loopback http:// URL we built
        f"{server.http_url}{path}",
        headers={"Authorization": f"Token {token}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def api_post(server, path: str, body: dict, *, token: str, timeout_s: float = 60) -> tuple[int, dict | None]:
    request = urllib.request.Request(  # noqa: S310 - a loopback http:// URL we built
        f"{server.http_url}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Token {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def sent_meter_rows(record: SessionRecord) -> Counter:
    """Every sampled value the simulator sent in a session, as (timestamp, measurand, phase, location, unit,
    context, value). 1.6 values are strings with a `unit`; 2.0.1 values are numbers with `unitOfMeasure`."""
    return Counter(
        (
            parse_ts(mv["timestamp"]),
            sv["measurand"],
            sv.get("phase", ""),
            sv.get("location", ""),
            sv["unit"] if "unit" in sv else sv["unitOfMeasure"]["unit"],
            sv["context"],
            Decimal(str(sv["value"])),
        )
        for mv in [*record.meter_values, *record.transaction_data]
        for sv in mv["sampledValue"]
    )


def stored_meter_rows(station) -> Counter:
    return Counter(
        (row.timestamp, row.measurand, row.phase, row.location, row.unit, row.context, row.value)
        for row in MeterValue.objects.filter(station=station)
    )


def status_history(station, evse_id: int) -> list[str]:
    """The statuses of connector 1 of an EVSE, in the order they were received."""
    changes = StatusChange.objects.filter(station=station, evse_id=evse_id, connector_id=1)
    return list(changes.order_by("received_at", "id").values_list("status", flat=True))


def assert_session_stored(station, record: SessionRecord) -> ChargingSession:
    """The station's only session is `record`, completed, exactly as the simulator reported it, with
    every sampled value it sent stored once, on the session. (Which EVSE the rows name: see the tests.)"""
    assert record.status == "completed", record.failure
    assert record.energy_wh > 0
    [session] = ChargingSession.objects.filter(station=station).select_related("evse", "connector")
    assert session.status == SessionStatus.COMPLETED
    assert session.transaction_id == record.transaction_id
    assert (session.meter_start_wh, session.meter_stop_wh) == (record.meter_start_wh, record.meter_stop_wh)
    assert session.energy_wh == record.energy_wh
    assert session.started_at == parse_ts(record.started_at)
    assert session.stopped_at == parse_ts(record.stopped_at)
    assert session.id_tag == record.id_tag
    assert (session.evse.evse_id, session.connector.connector_id) == (record.connector_id, 1)
    assert session.flags == []
    assert stored_meter_rows(station) == sent_meter_rows(record)
    assert set(MeterValue.objects.filter(station=station).values_list("session_id", flat=True)) == {
        session.pk
    }
    return session
