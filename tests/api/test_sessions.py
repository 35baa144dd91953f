import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import ChargingSessionFactory, ChargingStationFactory, ConnectorFactory, EvseFactory
from tests.support import at, iso


def session_json(session) -> dict:
    return {
        "id": session.pk,
        "station": session.station.identity,
        "site": session.station.site_id,
        "evse_id": session.evse.evse_id if session.evse else None,
        "connector_id": session.connector.connector_id if session.connector else None,
        "transaction_id": session.transaction_id,
        "id_tag": session.id_tag,
        "id_token": session.id_token_id,
        "started_at": iso(session.started_at),
        "stopped_at": iso(session.stopped_at),
        "meter_start_wh": session.meter_start_wh,
        "meter_stop_wh": session.meter_stop_wh,
        "energy_wh": session.energy_wh,
        "status": session.status,
        "stop_reason": session.stop_reason,
        "flags": session.flags,
        "held_for_review": session.held_for_review,
        "offline": session.offline,
        "cost": None,
        "payment": None,
    }


def test_retrieve_shows_ocpp_numbers_not_row_ids(world, tenants, api):
    session = tenants.session_a1
    response = api(world.operator_a).get(f"/api/v1/sessions/{session.pk}/")
    assert response.status_code == 200
    assert response.json() == {
        "id": session.pk,
        "station": "A1-CP1",
        "site": world.site_a1.pk,
        "evse_id": tenants.evse_a1.evse_id,
        "connector_id": tenants.connector_a1.connector_id,
        "transaction_id": "1001",
        "id_tag": "AAAA0001",
        "id_token": tenants.token_a.pk,
        "started_at": "2025-03-01T08:00:00Z",
        "stopped_at": "2025-03-01T09:00:00Z",
        "meter_start_wh": 1000,
        "meter_stop_wh": 8500,
        "energy_wh": 7500,
        "status": "completed",
        "stop_reason": "Local",
        "flags": ["clock_skew"],
        "held_for_review": False,
        "offline": False,
        "cost": None,
        "payment": None,
    }
    # The fixture made the OCPP numbers differ from the row ids, so the assertion above tells them apart.
    assert tenants.evse_a1.evse_id != tenants.evse_a1.pk
    assert tenants.connector_a1.connector_id != tenants.connector_a1.pk


def test_no_cost_until_billed(world, tenants, api):
    body = api(world.operator_a).get(f"/api/v1/sessions/{tenants.session_a1.pk}/").json()
    assert body["cost"] is None  # the figures once billed: tests/api/test_billing_api.py


def test_list_newest_first(world, tenants, api):
    response = api(world.operator_a).get("/api/v1/sessions/")
    assert response.status_code == 200
    assert response.json()["results"] == [session_json(tenants.session_a2), session_json(tenants.session_a1)]


def test_site_host_sees_the_sessions_of_their_site_only(world, tenants, api):
    response = api(world.host_a1).get("/api/v1/sessions/")
    assert [s["id"] for s in response.json()["results"]] == [tenants.session_a1.pk]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("station=A1-CP1", ["1001"]),
        ("station=a1-cp1", []),
        ("site={site_a2}", ["2001"]),
        ("status=completed", ["1001"]),
        ("status=active", ["3001", "2001"]),
        # started_after is inclusive, started_before exclusive: 10:00 belongs to the later window.
        ("started_after=2025-03-01T10:00:00Z", ["3001", "2001"]),
        ("started_before=2025-03-01T10:00:00Z", ["1001"]),
        ("started_after=2025-03-01T09:00:00Z&started_before=2025-03-01T11:00:00Z", ["2001"]),
        # 11:00+01:00 is 10:00Z: an offset that was ignored would drop 2001.
        ("started_after=2025-03-01T11:00:00%2B01:00", ["3001", "2001"]),
    ],
)
def test_filters(world, tenants, api, query, expected):
    query = query.format(site_a2=world.site_a2.pk)
    response = api(world.superuser).get(f"/api/v1/sessions/?{query}")
    assert response.status_code == 200
    assert [s["transaction_id"] for s in response.json()["results"]] == expected


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("started_after=yesterday", "started_after"),
        ("started_before=2025-13-01T00:00:00Z", "started_before"),
        ("status=running", "status"),
        ("site=A1", "site"),
    ],
)
def test_bad_filters_are_a_400(world, tenants, api, query, field):
    response = api(world.superuser).get(f"/api/v1/sessions/?{query}")
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_sessions_are_read_only(world, tenants, api):
    client = api(world.operator_a)
    url = f"/api/v1/sessions/{tenants.session_a1.pk}/"
    assert client.patch(url, {"energy_wh": 1}, format="json").status_code == 405
    assert client.delete(url).status_code == 405
    assert client.post("/api/v1/sessions/", {}, format="json").status_code == 405
    tenants.session_a1.refresh_from_db()
    assert tenants.session_a1.energy_wh == 7500


def test_list_query_count_does_not_grow_with_sessions(world, tenants, api):
    client = api(world.operator_a)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/api/v1/sessions/").status_code == 200
        return len(captured)

    baseline = queries()
    for n in range(6):
        station = ChargingStationFactory(identity=f"A2-MORE-{n}", site=world.site_a2)
        connector = ConnectorFactory(evse=EvseFactory(station=station))
        ChargingSessionFactory(
            station=station,
            evse=connector.evse,
            connector=connector,
            id_token=tenants.token_a,
            started_at=at(13, n),
        )
    assert queries() == baseline
