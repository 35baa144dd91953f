"""Issue 15 acceptance 3 (docs/reliability.md case 47): `make run` serves simulated chargers through a worker
crash. The soak drill (bench/soak.py) in a bounded form: three chargers for 30 s, the Celery worker SIGKILLed
once. The drill works in its own temporary directory (SQLite, var dir, port): it needs no test database."""

import json
import subprocess
import sys

import pytest
from django.conf import settings

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

DRILL_TIMEOUT_S = 600


def test_rel_47_make_run_survives_a_killed_worker_under_charger_traffic(tmp_path):
    report_path = tmp_path / "soak.json"
    drill = subprocess.run(
        [
            sys.executable,
            "bench/soak.py",
            "--minutes",
            "0.5",
            "--chargers",
            "3",
            "--meter-interval",
            "2",
            "--meter-samples",
            "3",
            "--kill-worker-at",
            "0.3",
            "--kill-web-at",
            "0",
            "--workdir",
            str(tmp_path / "soak"),
            "--json",
            str(report_path),
        ],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=DRILL_TIMEOUT_S,
        check=False,
    )
    output = drill.stdout + drill.stderr
    report = json.loads(report_path.read_text())

    assert (report["verdict"], report["reasons"], drill.returncode) == ("PASS", [], 0), output
    # The one crash is the one the drill caused, and the launcher restarted that child.
    assert list(report["kills"]) == ["worker"]
    assert report["children"] == {
        "web": {"crashes": 0, "restarts": 0, "exits": []},
        "worker": {"crashes": 1, "restarts": 1, "exits": [-9]},
        "beat": {"crashes": 0, "restarts": 0, "exits": []},
    }
    assert (report["launcher_exit_code"], report["gave_up"]) == (0, False)
    # Every session stored once and billed once; nothing cut short (the web server was not killed).
    completed = report["sessions_completed"]
    assert completed >= 3
    assert (
        report["sessions_started"],
        report["sessions_stored"],
        report["sessions_in_database"],
        report["sessions_stored_twice"],
        report["sessions_interrupted"],
        report["completed_sessions_with_one_cdr"],
        report["cdrs"],
        report["problems"],
    ) == (completed, completed, completed, 0, 0, completed, completed, [])
    assert report["meter_values_stored"] == report["meter_values_sent"] > 0
    assert (report["call_errors"], report["task_errors"], report["quarantined"], report["error_lines"]) == (
        [],
        [],
        [],
        [],
    )
