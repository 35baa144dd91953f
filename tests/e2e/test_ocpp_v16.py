"""OCPP 1.6J end to end: a real server process, the built-in simulator as the charger, the test database.

The simulator reports every value it sent (transaction id, meter start/stop, each sampled value as on the
wire), so the assertions compare the database with exactly what went over the socket.
"""

import asyncio
import base64
import datetime as dt
import json
import urllib.error
import urllib.request
from collections import Counter
from decimal import Decimal

import pytest
from rest_framework.authtoken.models import Token
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from accounts.enums import Role
from accounts.services import membership_set
from sessions.enums import IdTokenStatus, SessionStatus
from sessions.models import ChargingSession, MeterValue
from stations.enums import OcppVersion
from stations.models import ChargingStation, Connector, StatusChange
from stations.ocpp.simulator import FleetConfig, run_fleet
from tests.factories import (
    DEFAULT_STATION_PASSWORD,
    ChargingStationFactory,
    IdTokenFactory,
    UserFactory,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

METER_SAMPLES = 4
API_SESSION_FIELDS = (
    "id",
    "station",
    "evse_id",
    "connector_id",
    "transaction_id",
    "id_tag",
    "id_token",
    "meter_start_wh",
    "meter_stop_wh",
    "energy_wh",
    "status",
    "stop_reason",
)


def _parse_ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _api_get(server, path: str, *, token: str) -> tuple[int, dict | None]:
    request = urllib.request.Request(  # noqa: S310 - a loopback http:// URL we built
        f"{server.http_url}{path}",
        headers={"Authorization": f"Token {token}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


def test_e2e_v16_full_session(cpms_server):
    station = ChargingStationFactory(identity="E2E-V16-001")
    id_token = IdTokenFactory(
        organisation=station.organisation, value="E2E-TAG-0001", status=IdTokenStatus.ACCEPTED
    )
    operator = UserFactory(username="e2e_operator")
    membership_set(user=operator, organisation=station.organisation, role=Role.OPERATOR_ADMIN)
    api_token = Token.objects.create(user=operator).key

    summary = asyncio.run(
        run_fleet(
            FleetConfig(
                url=cpms_server.ws_url,
                identities=(station.identity,),
                password=DEFAULT_STATION_PASSWORD,
                sessions=True,
                session_count=1,
                meter_samples=METER_SAMPLES,
                meter_interval_s=0.2,
                # 0.2 s real = 2 min of charging per sample: ~370 Wh at 11 kW, so the register visibly rises.
                speedup=600,
                id_tag=id_token.value,
                seed=7,
                response_timeout_s=15,
            )
        )
    )

    assert summary.ok, summary.format()
    [charger] = summary.chargers
    assert charger.call_errors == []
    assert charger.errors == []
    [record] = charger.sessions
    assert record.status == "completed"
    # Transaction.Begin, then the periodic samples, each as one MeterValues; Transaction.End with the stop.
    assert [mv["sampledValue"][0]["context"] for mv in record.meter_values] == [
        "Transaction.Begin",
        *["Sample.Periodic"] * METER_SAMPLES,
    ]
    assert [mv["sampledValue"][0]["context"] for mv in record.transaction_data] == ["Transaction.End"]
    assert record.energy_wh > 0

    station.refresh_from_db()
    assert station.protocol == OcppVersion.V16
    assert (station.vendor, station.model, station.firmware_version) == ("CPMS", "Simulator", "sim-1.0")
    assert station.last_boot_at is not None

    # The session, exactly as reported on the wire.
    assert ChargingSession.objects.filter(station=station).count() == 1
    session = ChargingSession.objects.select_related("evse", "connector", "id_token").get(station=station)
    assert session.status == SessionStatus.COMPLETED
    assert session.transaction_id == record.transaction_id
    assert session.meter_start_wh == record.meter_start_wh
    assert session.meter_stop_wh == record.meter_stop_wh
    assert session.energy_wh == record.energy_wh == record.meter_stop_wh - record.meter_start_wh
    assert session.started_at == _parse_ts(record.started_at)
    assert session.stopped_at == _parse_ts(record.stopped_at)
    assert session.stop_reason == "Local"
    assert session.id_tag == id_token.value
    assert session.id_token == id_token
    assert (session.evse.evse_id, session.connector.connector_id) == (1, 1)
    assert session.flags == []

    # Every sampled value sent (MeterValues and StopTransaction.transactionData) is one row of this session.
    sent = Counter(
        (
            _parse_ts(mv["timestamp"]),
            sv["measurand"],
            sv.get("phase", ""),
            sv.get("location", ""),
            sv["unit"],
            sv["context"],
            Decimal(sv["value"]),
        )
        for mv in [*record.meter_values, *record.transaction_data]
        for sv in mv["sampledValue"]
    )
    rows = MeterValue.objects.filter(station=station)
    stored = Counter(
        (row.timestamp, row.measurand, row.phase, row.location, row.unit, row.context, row.value)
        for row in rows
    )
    assert stored == sent
    # All on this session and on EVSE 1, including the Transaction.End values of StopTransaction (which
    # names no connector: the session does).
    assert {(row.context, row.session_id, row.evse_id) for row in rows} == {
        ("Transaction.Begin", session.pk, 1),
        ("Sample.Periodic", session.pk, 1),
        ("Transaction.End", session.pk, 1),
    }
    measurands = {(key[1], key[2], key[4]) for key in sent}
    assert measurands == {
        ("Energy.Active.Import.Register", "", "Wh"),
        ("Power.Active.Import", "", "W"),
        ("Current.Import", "L1", "A"),
        ("Current.Import", "L2", "A"),
        ("Current.Import", "L3", "A"),
        ("Voltage", "L1-N", "V"),
        ("Voltage", "L2-N", "V"),
        ("Voltage", "L3-N", "V"),
        ("SoC", "", "Percent"),
    }

    # Status history of the connector that charged (1.6 connector 1 = EVSE 1, connector 1), and the other.
    def history(evse_id: int) -> list[str]:
        changes = StatusChange.objects.filter(station=station, evse_id=evse_id, connector_id=1)
        return list(changes.order_by("received_at", "id").values_list("status", flat=True))

    assert history(1) == ["Available", "Preparing", "Charging", "Finishing", "Available"]
    assert history(2) == ["Available"]
    connectors = Connector.objects.filter(evse__station=station).order_by("evse__evse_id")
    assert [(c.evse.evse_id, c.connector_id, c.status) for c in connectors] == [
        (1, 1, "Available"),
        (2, 1, "Available"),
    ]

    # The same session through the REST API, for an operator of the station's organisation.
    status, body = _api_get(cpms_server, f"/api/v1/sessions/?station={station.identity}", token=api_token)
    assert status == 200, f"GET /api/v1/sessions/ answered {status}"
    assert body["count"] == 1
    [item] = body["results"]
    assert {key: item[key] for key in API_SESSION_FIELDS} == {
        "id": session.pk,
        "station": station.identity,
        "evse_id": 1,
        "connector_id": 1,
        "transaction_id": record.transaction_id,
        "id_tag": id_token.value,
        "id_token": id_token.pk,
        "meter_start_wh": record.meter_start_wh,
        "meter_stop_wh": record.meter_stop_wh,
        "energy_wh": record.energy_wh,
        "status": SessionStatus.COMPLETED,
        "stop_reason": "Local",
    }
    assert _parse_ts(item["started_at"]) == _parse_ts(record.started_at)
    assert _parse_ts(item["stopped_at"]) == _parse_ts(record.stopped_at)


async def _handshake(server, identity: str, *, password: str | None, subprotocols: list[str]) -> str | None:
    """The negotiated subprotocol; raises InvalidStatus when the server refuses the handshake."""
    headers = {}
    if password is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{identity}:{password}".encode()).decode()
    async with connect(
        f"{server.ws_url}/{identity}",
        subprotocols=subprotocols,
        additional_headers=headers,
        open_timeout=10,
        proxy=None,
        compression=None,
    ) as connection:
        return connection.subprotocol


def _refusal_status(server, identity: str, *, password: str | None, subprotocols: list[str]) -> int:
    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(_handshake(server, identity, password=password, subprotocols=subprotocols))
    return refused.value.response.status_code


def test_e2e_handshake_refusals(cpms_server):
    station = ChargingStationFactory(identity="E2E-AUTH-001")
    assert not ChargingStation.objects.filter(identity="E2E-NOBODY").exists()

    unknown = _refusal_status(
        cpms_server, "E2E-NOBODY", password=DEFAULT_STATION_PASSWORD, subprotocols=["ocpp1.6"]
    )
    assert unknown == 404
    wrong_password = _refusal_status(
        cpms_server, station.identity, password="not-the-password", subprotocols=["ocpp1.6"]
    )
    assert wrong_password == 401
    no_credentials = _refusal_status(cpms_server, station.identity, password=None, subprotocols=["ocpp1.6"])
    assert no_credentials == 401
    # No subprotocol we support: refused (CONTRACT.md names no status for it, only a refusal).
    unsupported = _refusal_status(
        cpms_server, station.identity, password=DEFAULT_STATION_PASSWORD, subprotocols=["ocpp0.1"]
    )
    assert 400 <= unsupported < 500

    # The server picks the first subprotocol of the charger's list that it supports.
    negotiated = asyncio.run(
        _handshake(
            cpms_server,
            station.identity,
            password=DEFAULT_STATION_PASSWORD,
            subprotocols=["ocpp0.1", "ocpp1.6"],
        )
    )
    assert negotiated == "ocpp1.6"
