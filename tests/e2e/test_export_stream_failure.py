"""docs/reliability.md case 45: a streamed finance export that fails after its first bytes must END in a way
the client sees, against a real server process (Daphne), not leave a chunked response open forever."""

import http.client
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from accounts.services import api_token_get_or_create, membership_set
from tests.e2e.conftest import _process_env, _stop, _wait_until_listening, free_port
from tests.e2e.export_fault_server import FAULT_MESSAGE
from tests.factories import ChargingSessionFactory, ChargingStationFactory, SiteFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

# Well above the time the server needs for the whole (tiny) export: a client still waiting then hangs.
CLIENT_TIMEOUT_S = 10.0


@pytest.fixture
def faulty_server(request, transactional_db, tmp_path):
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.e2e.export_fault_server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=settings.BASE_DIR,
            env=_process_env(request),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_listening(process, port, log_path)
        yield port, log_path
    finally:
        _stop(process)


def test_rel_45_a_stream_failing_mid_way_ends_visibly_for_the_client(faulty_server):
    port, log_path = faulty_server
    site = SiteFactory(time_zone="UTC")
    station = ChargingStationFactory(identity="E2E-EXP-1", site=site)
    start = datetime(2025, 3, 3, 10, tzinfo=UTC)
    for n in range(6):
        ChargingSessionFactory(
            station=station,
            transaction_id=str(n + 1),
            started_at=start + timedelta(hours=n),
            stopped_at=start + timedelta(hours=n, minutes=30),
            status="completed",
            energy_wh=1000,
        )
    finance = UserFactory(username="e2e_finance")
    membership_set(user=finance, organisation=site.organisation, role="finance")
    token = api_token_get_or_create(user=finance).key

    client = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT_S)
    client.request(
        "GET",
        "/api/v1/exports/sessions.csv?from=2025-03-01&to=2025-04-01",
        headers={"Authorization": f"Token {token}"},
    )
    response = client.getresponse()
    assert (response.status, response.getheader("Transfer-Encoding")) == (200, "chunked")
    # The body stops without the chunked terminator: the client gets an error, not a hang (before the
    # fix: TimeoutError after CLIENT_TIMEOUT_S) and not a short file that looks complete.
    with pytest.raises(http.client.IncompleteRead) as failure:
        response.read()
    lines = failure.value.partial.decode().split("\r\n")
    assert lines[0].startswith("session_id,transaction_id,")
    assert [line.split(",")[1] for line in lines[1:3]] == ["1", "2"]
    # ... and its last line says so, for whoever opens the partial file.
    assert lines[3:] == [
        "#EXPORT FAILED: this file is incomplete (2 records written); see the server log",
        "",
    ]
    client.close()
    log = log_path.read_text(errors="replace")
    assert "sessions export failed after 2 records" in log and FAULT_MESSAGE in log
