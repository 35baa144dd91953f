"""OCPP 1.6J end to end: a real server process, the built-in simulator as the charger, the test database.

The simulator reports every value it sent (transaction id, meter start/stop, each sampled value as on the
wire), so the assertions compare the database with exactly what went over the socket.
"""

import asyncio
import base64

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from sessions.enums import IdTokenStatus, SessionStatus
from sessions.models import ChargingSession, MeterValue
from stations.enums import OcppVersion
from stations.models import ChargingStation, Connector
from tests.e2e.helpers import (
    api_get,
    operator_token,
    parse_ts,
    sent_meter_rows,
    simulate,
    status_history,
    stored_meter_rows,
)
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory, IdTokenFactory

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


def test_e2e_v16_full_session(cpms_server):
    station = ChargingStationFactory(identity="E2E-V16-001")
    id_token = IdTokenFactory(
        organisation=station.organisation, value="E2E-TAG-0001", status=IdTokenStatus.ACCEPTED
    )
    api_token = operator_token(station.organisation, "e2e_operator")

    summary = simulate(
        cpms_server, (station.identity,), id_tag=id_token.value, meter_samples=METER_SAMPLES, seed=7
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
    assert session.started_at == parse_ts(record.started_at)
    assert session.stopped_at == parse_ts(record.stopped_at)
    assert session.stop_reason == "Local"
    assert session.id_tag == id_token.value
    assert session.id_token == id_token
    assert (session.evse.evse_id, session.connector.connector_id) == (1, 1)
    assert session.flags == []

    # Every sampled value sent (MeterValues and StopTransaction.transactionData) is one row of this session.
    sent = sent_meter_rows(record)
    assert stored_meter_rows(station) == sent
    rows = MeterValue.objects.filter(station=station)
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
    assert status_history(station, 1) == ["Available", "Preparing", "Charging", "Finishing", "Available"]
    assert status_history(station, 2) == ["Available"]
    connectors = Connector.objects.filter(evse__station=station).order_by("evse__evse_id")
    assert [(c.evse.evse_id, c.connector_id, c.status) for c in connectors] == [
        (1, 1, "Available"),
        (2, 1, "Available"),
    ]

    # The same session through the REST API, for an operator of the station's organisation.
    status, body = api_get(cpms_server, f"/api/v1/sessions/?station={station.identity}", token=api_token)
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
    assert parse_ts(item["started_at"]) == parse_ts(record.started_at)
    assert parse_ts(item["stopped_at"]) == parse_ts(record.stopped_at)


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
    # No subprotocol we support: refused (docs/contract.md#subprotocols promises the refusal, not its status).
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
