"""docs/reliability.md case 45: sessions whose times are absurd (legacy rows from before the timestamp window:
a charger clock at 9999-12-31, or year 1) render on every portal page and in the CSV export; an instant that
cannot be shown in the site's zone (past year 9999 there) is shown in UTC on pages and left out of the local
column of the CSV (its UTC column still has it)."""

import io
import re
from datetime import UTC, date, datetime

import pytest
from django.test import Client

from billing.services.exports.csv import ExportReader, export_write
from billing.services.exports.filters import ExportFilters
from billing.services.exports.scope import export_scope_access
from sessions.models import MeterValue
from tests.factories import ChargingSessionFactory, ConnectorFactory, EvseFactory

END_OF_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
YEAR_ONE = datetime(1, 1, 1, tzinfo=UTC)


@pytest.fixture
def absurd(world):
    """A1-CP1 (Berlin): a session stopped "at" 9999-12-31T23:59:59Z by the next start, and that start, still
    active, with a meter value at the same instant. A2-CP1 (New York): a session started in year 1."""
    port = ConnectorFactory(evse=EvseFactory(station=world.station_a1, evse_id=1), connector_id=1)
    closed = ChargingSessionFactory(
        station=world.station_a1,
        evse=port.evse,
        connector=port,
        transaction_id="71",
        started_at=datetime(2025, 3, 3, 10, tzinfo=UTC),
        stopped_at=END_OF_TIME,
        status="completed",
        meter_start_wh=0,
        meter_stop_wh=1500,
        energy_wh=1500,
        flags=["stopped_by_new_session"],
        held_for_review=True,
    )
    future = ChargingSessionFactory(
        station=world.station_a1,
        evse=port.evse,
        connector=port,
        transaction_id="72",
        started_at=END_OF_TIME,
        meter_start_wh=1500,
    )
    MeterValue.objects.create(
        station=world.station_a1, session=future, timestamp=END_OF_TIME, value=1500, received_at=END_OF_TIME
    )
    MeterValue.objects.create(
        station=world.station_a1,
        session=closed,
        timestamp=datetime(2025, 3, 3, 10, 30, tzinfo=UTC),
        value=700,
        received_at=datetime(2025, 3, 3, 10, 30, tzinfo=UTC),
    )
    MeterValue.objects.create(
        station=world.station_a1, session=closed, timestamp=END_OF_TIME, value=1500, received_at=END_OF_TIME
    )
    ancient = ChargingSessionFactory(
        station=world.station_a2,
        transaction_id="73",
        started_at=YEAR_ONE,
        stopped_at=datetime(2025, 3, 4, 12, tzinfo=UTC),
        status="completed",
    )
    return closed, future, ancient


def get(user, url: str):
    client = Client()
    client.force_login(user)
    return client.get(url)


def text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_rel_45_portal_pages_render_sessions_with_absurd_times(world, absurd):
    closed, future, ancient = absurd
    for url in (
        "/portal/",
        f"/portal/sites/{world.site_a1.pk}/",
        "/portal/stations/",
        "/portal/stations/A1-CP1/",
        "/portal/stations/A2-CP1/",
        "/portal/sessions/",
        f"/portal/sessions/{closed.pk}/",
        f"/portal/sessions/{future.pk}/",
        f"/portal/sessions/{ancient.pk}/",
        "/portal/revenue/",
        "/portal/kpis/",
    ):
        assert get(world.operator_a, url).status_code == 200, url
    listing = text(get(world.operator_a, "/portal/sessions/").content.decode())
    # 9999-12-31T23:59:59Z is in year 10000 in Berlin, and year 1 at midnight UTC is year 0 in New York.
    assert listing.count("31 Dec 9999, 23:59 UTC") == 2
    assert "01 Jan 0001, 00:00 UTC" in listing
    detail = text(get(world.operator_a, f"/portal/sessions/{closed.pk}/").content.decode())
    assert "03 Mar 2025, 11:00 CET" in detail and "31 Dec 9999, 23:59 UTC" in detail


def test_rel_45_the_sessions_export_keeps_absurd_times_in_its_utc_columns(world, absurd):
    closed, _future, _ancient = absurd
    filters = ExportFilters(period_from=date(2025, 3, 1), period_to=date(2025, 4, 1))
    reader = ExportReader(
        kind="sessions", filters=filters, scope=export_scope_access(user=world.finance_a, filters=filters)
    )
    out = io.BytesIO()
    export_write(reader=reader, out=out)
    rows = [line.split(",") for line in out.getvalue().decode().split("\r\n")[1:-1]]
    # The year-1 session started outside March; the future one in year 9999.
    assert [row[0] for row in rows] == [str(closed.pk)]
    assert rows[0][9:17] == [
        "held",
        "stopped_by_new_session",
        "Europe/Berlin",
        "2025-03-03 11:00:00",
        "",
        "2025-03-03T10:00:00Z",
        "9999-12-31T23:59:59Z",
        "1.500",
    ]
