"""The portal in a real browser (headless Chromium driven by Playwright) against a real server process.

- An operator logs in, watches a station go from Available to Charging live (websocket, no reload) while the
  simulator runs a session, and stops it remotely from the page.
- A site host sees only their site, and gets 404 on another site's and another station's URL.
- A finance user downloads a CSV export.
Screenshots of each step are saved under test-artifacts/portal/ (tests/e2e/browser.py).
"""

import asyncio
import csv
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.utils import timezone
from django.utils.crypto import get_random_string

from billing.services.exports.columns import SESSION_HEADER
from cpms.simulator import FleetConfig, run_fleet
from sessions.enums import IdTokenStatus, SessionStatus
from sessions.models import ChargingSession
from tests.e2e.browser import artifacts_dir, chromium, log_in, screenshot
from tests.factories import (
    DEFAULT_STATION_PASSWORD,
    ChargingSessionFactory,
    ConnectorFactory,
    EvseFactory,
    IdTokenFactory,
)

pytestmark = pytest.mark.e2e

PASSWORD = "portal-e2e-password"
WAIT_MS = 30_000


def with_password(*users) -> None:
    """The server process checks passwords with the production hasher (the tests' own is MD5)."""
    for user in users:
        user.password = PBKDF2PasswordHasher().encode(PASSWORD, get_random_string(16))
        user.save(update_fields=["password"])


def start_simulator(server, identity: str, id_tag: str) -> tuple[threading.Thread, dict]:
    """A 1.6 charger with one long session (up to a minute of meter values), in a background thread."""
    config = FleetConfig(
        url=server.ws_url,
        identities=(identity,),
        protocol="1.6",
        password=DEFAULT_STATION_PASSWORD,
        sessions=True,
        session_count=1,
        meter_samples=120,
        meter_interval_s=0.5,
        speedup=60,
        id_tag=id_tag,
        seed=7,
        response_timeout_s=15,
    )
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(summary=asyncio.run(run_fleet(config))), daemon=True
    )
    thread.start()
    return thread, result


def off_loop(func, *args):
    """Run an ORM call in another thread: Playwright's sync API keeps an event loop in this one, and Django
    refuses database calls from a thread with an event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(func, *args).result()


def session_state(station) -> tuple[int, str, str] | None:
    session = ChargingSession.objects.filter(station=station).first()
    return None if session is None else (session.pk, session.status, session.stop_reason)


def live_statuses(page, identity: str, key: str) -> list[str]:
    return page.evaluate(
        "([identity, key]) => (window.cpmsLiveLog || []).filter(e => e.type === 'status' && e.identity === identity"
        " && (e.evse_id + '-' + e.connector_id) === key).map(e => e.status)",
        [identity, key],
    )


def test_operator_watches_a_session_start_live_and_stops_it(cpms_server, world):
    for evse_id in (1, 2):
        ConnectorFactory(
            evse=EvseFactory(station=world.station_a1, evse_id=evse_id), connector_id=1, status="Unknown"
        )
    token = IdTokenFactory(organisation=world.org_a, value="BROWSER-TAG", status=IdTokenStatus.ACCEPTED)
    with_password(world.operator_a)

    with chromium() as browser:
        page = log_in(browser, cpms_server.http_url, "operator_a", PASSWORD)
        page.goto("/portal/stations/A1-CP1/")
        page.wait_for_selector("#live-state:has-text('Live')", timeout=WAIT_MS)
        badge = page.locator('#evses [data-connector="1-1"] .badge')
        assert badge.inner_text() == "Unknown"
        screenshot(page, "operator-1-station-before")

        thread, result = start_simulator(cpms_server, "A1-CP1", token.value)
        page.wait_for_selector(
            '#evses [data-connector="1-1"] .badge[data-status="Charging"]', timeout=WAIT_MS
        )
        screenshot(page, "operator-2-charging-live")
        seen = live_statuses(page, "A1-CP1", "1-1")
        # Pushed, not reloaded: the log lives in the page's memory, so one page saw both events.
        assert "Available" in seen and "Charging" in seen, seen
        assert seen.index("Available") < seen.index("Charging"), seen

        stop = page.get_by_role("button", name="Stop charging")
        stop.wait_for(timeout=WAIT_MS)  # the EVSE table reloaded itself (htmx) when the session started
        session_id, status, _ = off_loop(session_state, world.station_a1)
        assert status == SessionStatus.ACTIVE
        stop.click()
        page.wait_for_selector("text=Stop charging: the charger answered Accepted.", timeout=WAIT_MS)
        screenshot(page, "operator-3-stopped")

        deadline = time.monotonic() + 30
        while (
            off_loop(session_state, world.station_a1)[1] != SessionStatus.COMPLETED
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert off_loop(session_state, world.station_a1) == (session_id, SessionStatus.COMPLETED, "Remote"), (
            cpms_server.log_tail()
        )
        thread.join(timeout=90)
        assert not thread.is_alive()
        summary = result["summary"]
        assert summary.ok, summary.format()


def test_site_host_sees_only_their_site_and_404_elsewhere(cpms_server, world):
    with_password(world.host_a1)
    with chromium() as browser:
        page = log_in(browser, cpms_server.http_url, "host_a1", PASSWORD)
        overview = page.locator("main").inner_text()
        assert "A1-CP1" in overview
        assert "A2-CP1" not in overview and "B1-CP1" not in overview
        screenshot(page, "site-host-1-overview")

        response = page.goto(f"/portal/sites/{world.site_a1.pk}/")
        assert response.status == 200
        for url in (
            f"/portal/sites/{world.site_a2.pk}/",
            f"/portal/sites/{world.site_b1.pk}/",
            "/portal/stations/A2-CP1/",
            "/portal/stations/B1-CP1/",
        ):
            response = page.goto(url)
            assert response.status == 404, url
            assert page.get_by_role("heading", name="Not found").is_visible()
        screenshot(page, "site-host-2-other-site-404")


def test_finance_user_downloads_a_csv_export(cpms_server, world):
    session = ChargingSessionFactory(
        station=world.station_a1,
        transaction_id="BROWSER-TX-1",
        status=SessionStatus.COMPLETED,
        stopped_at=timezone.now(),
        meter_stop_wh=13_500,
        energy_wh=12_500,
    )
    with_password(world.finance_a)
    with chromium() as browser:
        page = log_in(browser, cpms_server.http_url, "finance_a", PASSWORD)
        page.get_by_role("link", name="Exports").click()
        page.wait_for_url("**/portal/exports/")
        screenshot(page, "finance-1-exports")
        with page.expect_download(timeout=WAIT_MS) as download_info:
            page.locator('a[data-kind="sessions"]').click()
        download = download_info.value
        path = artifacts_dir() / "finance-sessions.csv"
        download.save_as(str(path))
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
        assert download.suggested_filename.endswith(".csv")
        assert rows[0] == list(SESSION_HEADER)
        assert len(rows) == 2, rows  # organisation A's one session, nothing of organisation B
        row = dict(zip(SESSION_HEADER, rows[1], strict=True))
        assert (
            row["session_id"],
            row["transaction_id"],
            row["station"],
            row["status"],
            row["energy_kwh"],
        ) == (
            str(session.pk),
            "BROWSER-TX-1",
            "A1-CP1",
            "completed",
            "12.500",
        )
