"""OCPP 1.6J and 2.0.1 side by side: a real server process, a mixed fleet from the built-in simulator.

Each version's session must be stored exactly as sent, and both must look the same through the REST API:
an integrator reading /api/v1/sessions/ cannot tell which version a charger speaks.
"""

import pytest

from sessions.enums import IdTokenStatus, SessionStatus
from sessions.models import TransactionEvent
from stations.enums import OcppVersion
from stations.models import ChargingStation
from tests.e2e.helpers import api_get, assert_session_stored, operator_token, simulate, status_history
from tests.factories import ChargingStationFactory, IdTokenFactory, SiteFactory

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

METER_SAMPLES = 3
IDENTITIES = ("E2E-MIX-001", "E2E-MIX-002", "E2E-MIX-003", "E2E-MIX-004")
# What each version reports for a session on EVSE 1 (2.0.1: one Occupied for 1.6's Preparing..Finishing).
HISTORY = {
    "1.6": ["Available", "Preparing", "Charging", "Finishing", "Available"],
    "2.0.1": ["Available", "Occupied", "Available"],
}
WIRE_PROTOCOL = {"1.6": OcppVersion.V16, "2.0.1": OcppVersion.V201}


def test_e2e_mixed_fleet_sessions_look_the_same(cpms_server):
    site = SiteFactory()
    for identity in IDENTITIES:
        ChargingStationFactory(identity=identity, site=site)
    id_token = IdTokenFactory(
        organisation=site.organisation, value="E2E-MIX-TAG", status=IdTokenStatus.ACCEPTED
    )
    api_token = operator_token(site.organisation, "e2e_mixed_operator")

    summary = simulate(
        cpms_server, IDENTITIES, id_tag=id_token.value, meter_samples=METER_SAMPLES, seed=21, protocol="mixed"
    )

    assert summary.ok, summary.format()
    assert summary.protocols == {"1.6": 2, "2.0.1": 2}
    assert [(c.call_errors, c.errors) for c in summary.chargers] == [([], [])] * 4
    records = {}
    for charger in summary.chargers:
        station = ChargingStation.objects.get(identity=charger.identity)
        assert station.protocol == WIRE_PROTOCOL[charger.protocol]
        [record] = charger.sessions
        session = assert_session_stored(station, record)
        assert session.stop_reason == "Local"
        assert session.id_token_id == id_token.pk
        assert status_history(station, 1) == HISTORY[charger.protocol]
        assert status_history(station, 2) == ["Available"]
        records[charger.identity] = record
        if charger.protocol == "2.0.1":
            events = TransactionEvent.objects.filter(session=session).order_by("seq_no")
            assert [(e.seq_no, e.event_type) for e in events] == [
                (0, "Started"),
                *[(n, "Updated") for n in range(1, METER_SAMPLES + 1)],
                (METER_SAMPLES + 1, "Ended"),
            ]

    status, body = api_get(cpms_server, "/api/v1/sessions/", token=api_token)
    assert status == 200, f"GET /api/v1/sessions/ answered {status}"
    assert body["count"] == len(IDENTITIES)
    items = {item["station"]: item for item in body["results"]}
    assert set(items) == set(IDENTITIES)
    # One shape for both versions: the same keys with the same JSON types.
    shapes = {identity: {key: type(value) for key, value in item.items()} for identity, item in items.items()}
    for identity, shape in shapes.items():
        assert shape == shapes[IDENTITIES[0]], identity
    for identity, item in items.items():
        record = records[identity]
        assert isinstance(item["transaction_id"], str)
        assert {key: item[key] for key in ("evse_id", "connector_id", "transaction_id")} == {
            "evse_id": 1,
            "connector_id": 1,
            "transaction_id": record.transaction_id,
        }
        assert (item["meter_start_wh"], item["meter_stop_wh"], item["energy_wh"]) == (
            record.meter_start_wh,
            record.meter_stop_wh,
            record.energy_wh,
        )
        assert (item["status"], item["stop_reason"], item["id_tag"]) == (
            SessionStatus.COMPLETED,
            "Local",
            id_token.value,
        )
