"""Fault drills, docs/reliability.md cases 36 and 47 (issue 15, item 3): a whole Celery worker (its main
process and its pool children) is killed with SIGKILL in the middle of a job, a new worker is started, and the
job finishes exactly once: the export with the exact rows in exactly one file and no partial file left, the
billing with one CDR per ended session.

Real processes: prefork workers (`celery -A cpms worker`, one child) and, for the export, a beat scheduler
that outlives the worker (as in production). The jobs are held mid-run by the drill hook
(billing/drill_hook.py, CPMS_DRILL_PAUSE), set for the first worker only. The lease and sweep intervals are
shortened through their settings so that a drill takes seconds, not minutes.
"""

import io
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings

from accounts.services import membership_set
from billing.enums import ExportStatus
from billing.models import ChargeDetailRecord, ExportJob
from billing.services.exports.csv import ExportReader, export_write
from billing.services.exports.filters import ExportFilters
from billing.services.exports.jobs import export_job_create
from billing.services.exports.scope import ExportScope
from billing.tasks import session_bill
from billing.tasks_exports import export_job_run
from sessions.models import ChargingSession
from tests.e2e.conftest import LiveWorker, _process_env
from tests.factories import (
    ChargingSessionFactory,
    ChargingStationFactory,
    ConnectorFactory,
    EvseFactory,
    SiteFactory,
    UserFactory,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

WAIT_S = 40.0  # for a job to reach the pause, and for the recovery after the kill
EXPORT_SESSIONS = 4500  # three chunks of the reader (CHUNK_ROWS = 2000): the pause after the first
BILLED_SESSIONS = 5
# The lease and sweep of this drill (production: JOB_LEASE_S 120, JOB_SWEEP_S 60; docs/operations.md).
DRILL_ENV = {"JOB_LEASE_S": "3", "JOB_SWEEP_S": "1"}


class Processes:
    """Workers and beat of one drill, each in its own process group (start_new_session), stopped at the end."""

    def __init__(self, request, tmp_path: Path, env: dict[str, str]):
        self.request = request
        self.tmp_path = tmp_path
        self.env = {**_process_env(request), **env}
        self.queue = self.env["CELERY_QUEUE"]
        self.started: list[LiveWorker] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> LiveWorker:
        log_path = self.tmp_path / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "cpms", *argv, "--loglevel", "INFO"],
                cwd=settings.BASE_DIR,
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        live = LiveWorker(process=process, log_path=log_path)
        self.started.append(live)
        return live

    def worker(self, name: str, env: dict[str, str] | None = None) -> LiveWorker:
        # prefork with one child: a whole-worker kill takes a main process and its pool child.
        return self.start(name, ["worker", "--pool", "prefork", "--concurrency", "1"], env)

    def beat(self) -> LiveWorker:
        schedule = self.tmp_path / "beat-schedule"
        return self.start("beat", ["beat", "-S", "celery.beat:PersistentScheduler", "-s", str(schedule)])

    def stop_all(self) -> None:
        for live in self.started:  # the drill is over: nothing of theirs is needed any more
            if live.process.poll() is None:
                os.killpg(live.process.pid, signal.SIGKILL)
                live.process.wait(timeout=10)
        report = getattr(self.request.node, "report_call", None)
        if report is not None and report.failed:
            for live in self.started:
                print(f"--- {live.log_path.name}, last lines ---\n{live.log_tail()}")


@pytest.fixture
def processes(request, transactional_db, tmp_path):
    procs = Processes(request, tmp_path, {**DRILL_ENV, "CPMS_MEDIA_ROOT": str(tmp_path / "media")})
    yield procs
    procs.stop_all()


def kill_whole_worker(worker: LiveWorker) -> None:
    """SIGKILL to the worker's process group: its main process and every pool child, with no warning."""
    children = pool_children(worker)
    assert children, worker.log_tail()
    os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and not zombie(pid) for pid in children):
        assert time.monotonic() < deadline, f"pool children {children} survived the kill"
        time.sleep(0.05)


def pool_children(worker: LiveWorker) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == worker.process.pid:  # ppid
                found.append(int(entry.name))
    return found


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_for_log(worker: LiveWorker, pattern: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not re.search(pattern, worker.log_path.read_text(errors="replace")):
        assert worker.process.poll() is None, worker.log_tail()
        assert time.monotonic() < deadline, f"no {pattern!r} in the worker log:\n{worker.log_tail()}"
        time.sleep(0.1)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- export ----------------------------------------------------------------------------------------------


def export_world():
    site = SiteFactory(time_zone="Europe/Berlin")
    station = ChargingStationFactory(identity="KILL-EXPORT-1", site=site)
    connector = ConnectorFactory(evse=EvseFactory(station=station, evse_id=1), connector_id=1)
    start = utc(2025, 3, 3, 8)
    ChargingSession.objects.bulk_create(
        ChargingSessionFactory.build(
            station=station,
            evse=connector.evse,
            connector=connector,
            transaction_id=str(500000 + n),
            id_tag=f"TAG-{n % 7}",
            started_at=start + timedelta(minutes=5 * n),
            start_received_at=start + timedelta(minutes=5 * n),
            stopped_at=start + timedelta(minutes=5 * n + 3),
            meter_start_wh=1000,
            meter_stop_wh=1000 + n,
            energy_wh=n,
            status="completed",
        )
        for n in range(EXPORT_SESSIONS)
    )
    finance = UserFactory(username="finance_kill")
    membership_set(user=finance, organisation=site.organisation, role="finance")
    return finance


def expected_csv(job: ExportJob) -> bytes:
    """The file the job must produce, made here from the same reader the job uses."""
    filters = ExportFilters.from_json(job.filters)
    scope = ExportScope(organisation_ids=tuple(job.organisation_ids), site_ids=filters.site_ids)
    out = io.BytesIO()
    export_write(reader=ExportReader(kind=job.kind, filters=filters, scope=scope), out=out)
    return out.getvalue()


def test_rel_36_47_export_job_finishes_once_after_a_whole_worker_kill(processes, tmp_path):
    finance = export_world()
    exports_dir = tmp_path / "media" / "exports"
    processes.beat()
    first = processes.worker("worker-1", {"CPMS_DRILL_PAUSE": "export:60"})
    with mock.patch.object(
        export_job_run, "delay", lambda pk: export_job_run.apply_async(args=[pk], queue=processes.queue)
    ):
        job = export_job_create(
            user=finance,
            kind="sessions",
            filters=ExportFilters(period_from=date(2025, 3, 1), period_to=date(2025, 4, 1)),
        )

    wait_for_log(first, rf"drill pause at export job {job.pk}\b")
    job.refresh_from_db()
    [partial] = exports_dir.glob(f".job-{job.pk}-*.part")  # half written: the first chunk of three
    assert (job.status, job.attempts, partial.stat().st_size > 0) == (ExportStatus.RUNNING, 1, True)
    kill_whole_worker(first)
    killed_at = time.monotonic()
    processes.worker("worker-2")

    deadline = killed_at + WAIT_S
    while job.status in (ExportStatus.QUEUED, ExportStatus.RUNNING) and time.monotonic() < deadline:
        time.sleep(0.2)
        job.refresh_from_db()
    print(f"export: kill -> {job.status} in {time.monotonic() - killed_at:.1f} s (lease 3 s, sweep 1 s)")
    assert (job.status, job.error, job.attempts) == (ExportStatus.DONE, "", 2)
    assert (job.rows_done, job.rows_total, job.file_name) == (
        EXPORT_SESSIONS,
        EXPORT_SESSIONS,
        f"exports/job-{job.pk}.csv",
    )
    assert sorted(p.name for p in exports_dir.iterdir()) == [f"job-{job.pk}.csv"]
    content = (exports_dir / f"job-{job.pk}.csv").read_bytes()
    assert content == expected_csv(job)
    assert content.count(b"\r\n") == EXPORT_SESSIONS + 1  # the header and one row per session
    assert ExportJob.objects.count() == 1


# --- billing ---------------------------------------------------------------------------------------------


def ended_sessions() -> list[ChargingSession]:
    site = SiteFactory(time_zone="Europe/Berlin")
    station = ChargingStationFactory(identity="KILL-BILL-1", site=site)
    connector = ConnectorFactory(evse=EvseFactory(station=station, evse_id=1), connector_id=1)
    now = datetime.now(UTC).replace(microsecond=0)
    return [
        ChargingSessionFactory(
            station=station,
            evse=connector.evse,
            connector=connector,
            transaction_id=str(700000 + n),
            started_at=now - timedelta(hours=2, minutes=n),
            stopped_at=now - timedelta(hours=1, minutes=n),
            meter_start_wh=1000,
            meter_stop_wh=1000 + 1000 * (n + 1),
            energy_wh=1000 * (n + 1),
            status="completed",
        )
        for n in range(BILLED_SESSIONS)
    ]


def test_rel_36_47_billing_bills_each_ended_session_once_after_a_whole_worker_kill(processes):
    """No beat here: the job killed mid-billing comes back through the broker's redelivery (acks_late; with
    Redis a visibility timeout of seconds for the drill, the embedded broker puts a dead consumer's messages
    back), not through the billing sweep."""
    sessions = ended_sessions()
    env = {"CELERY_VISIBILITY_TIMEOUT_S": "5"}
    first = processes.worker("worker-1", {"CPMS_DRILL_PAUSE": "billing:60", **env})
    for session in sessions:  # as the OCPP layer queues them when each session ends
        session_bill.apply_async(args=[session.pk], queue=processes.queue)

    wait_for_log(first, rf"drill pause at billing session {sessions[0].pk}\b")
    kill_whole_worker(first)
    assert ChargeDetailRecord.objects.count() == 0  # the insert was not committed
    killed_at = time.monotonic()
    processes.worker("worker-2", env)

    deadline = killed_at + WAIT_S
    while ChargeDetailRecord.objects.count() < BILLED_SESSIONS and time.monotonic() < deadline:
        time.sleep(0.2)
    print(f"billing: kill -> all CDRs in {time.monotonic() - killed_at:.1f} s (visibility timeout 5 s)")
    time.sleep(1)  # a second delivery, were there one, would land now
    billed = sorted(ChargeDetailRecord.objects.values_list("session_id", "energy_wh", "total"))
    assert billed == [(s.pk, 1000 * (n + 1), Decimal("0.00")) for n, s in enumerate(sessions)]
