"""Job recovery (cpms/jobs.py, docs/reliability.md cases 36 and 47): leases, the recovery sweep, takeover by a
redelivered task, bounded attempts, for export jobs and for bulk command jobs / firmware campaigns. The drills
with real workers killed mid-job are in tests/e2e/test_worker_kill.py."""

import time
from datetime import UTC, date, datetime, timedelta
from unittest import mock

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.services import api_token_get_or_create
from billing.enums import ExportStatus
from billing.models import ExportJob
from billing.services.exports.filters import ExportFilters
from billing.services.exports.jobs import export_job_path, export_jobs_recover
from billing.tasks_exports import export_job_run
from cpms.jobs import Heartbeat
from stations.models import CommandJob, CommandJobTarget
from stations.services.jobs import command_jobs_recover
from stations.tasks import command_job_run
from stations.tasks_firmware import firmware_campaign_run

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=120)


@pytest.fixture(autouse=True)
def _job_settings(settings, tmp_path):
    settings.JOB_LEASE_S = 120.0
    settings.JOB_MAX_ATTEMPTS = 3
    settings.MEDIA_ROOT = tmp_path / "media"


def at(moment: datetime):
    return mock.patch("django.utils.timezone.now", return_value=moment)


def export_job(world, **values) -> ExportJob:
    filters = ExportFilters(period_from=date(2025, 3, 1), period_to=date(2025, 4, 1))
    with at(NOW - timedelta(hours=1)):
        job = ExportJob.objects.create(
            requested_by=world.finance_a,
            kind="cdrs",
            filters=filters.as_json(),
            organisation_ids=[world.org_a.pk],
        )
    ExportJob.objects.filter(pk=job.pk).update(**values)
    job.refresh_from_db()
    return job


def partial_file(job: ExportJob) -> object:
    path = export_job_path(job_id=job.pk)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.parent / f".job-{job.pk}-dead.part"
    partial.write_text("half a file")
    return partial


def state(job) -> tuple:
    job.refresh_from_db()
    return (job.status, job.attempts, job.heartbeat_at, job.error)


# --- export jobs -----------------------------------------------------------------------------------------


def test_rel_47_the_sweep_queues_a_lost_export_job_again_as_its_next_attempt(
    world, django_capture_on_commit_callbacks
):
    seen = NOW - LEASE - timedelta(seconds=1)
    job = export_job(
        world, status="running", started_at=seen, heartbeat_at=seen, rows_done=2000, rows_total=4500
    )
    partial = partial_file(job)
    with (
        mock.patch.object(export_job_run, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
        at(NOW),
    ):
        result = export_jobs_recover()
    delay.assert_called_once_with(job.pk)
    assert (result.requeued, result.resent, result.failed) == ([job.pk], [], [])
    assert state(job) == ("queued", 2, NOW, "")
    assert (job.rows_done, job.rows_total) == (0, None)

    # The API and the portal say so while it waits.
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_get_or_create(user=world.finance_a).key}")
    detail = client.get(f"/api/v1/exports/{job.pk}/").json()
    assert {k: detail[k] for k in ("status", "attempts", "rows_done", "progress", "heartbeat_at")} == {
        "status": "queued",
        "attempts": 2,
        "rows_done": 0,
        "progress": 0.0,
        "heartbeat_at": "2026-05-04T12:00:00Z",
    }
    client.force_login(world.finance_a)
    row = client.get(reverse("portal:export-job-row", args=[job.pk])).content.decode()
    assert '<span class="muted" data-attempts="2">attempt 2 (a worker was lost)</span>' in row

    # The task it queued: the rerun writes the whole file and removes the dead run's half.
    assert export_job_run(job.pk) == {"job": job.pk, "status": "done", "rows": 0}
    assert (state(job), job.file_name) == (("done", 2, None, ""), f"exports/job-{job.pk}.csv")
    assert not partial.exists()
    assert [p.name for p in partial.parent.iterdir()] == [f"job-{job.pk}.csv"]


def test_rel_47_an_export_job_that_is_alive_is_left_to_its_run(world, django_capture_on_commit_callbacks):
    seen = NOW - LEASE + timedelta(seconds=1)  # its heartbeat is still within the lease
    job = export_job(world, status="running", started_at=NOW - timedelta(hours=1), heartbeat_at=seen)
    with (
        mock.patch.object(export_job_run, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
        at(NOW),
    ):
        result = export_jobs_recover()
        assert export_job_run(job.pk) == {"job": job.pk, "status": "running", "rows": 0}  # a duplicate
    assert (delay.call_count, bool(result)) == (0, False)
    assert state(job) == ("running", 1, seen, "")
    assert not export_job_path(job_id=job.pk).parent.exists()


def test_rel_47_a_running_job_without_heartbeat_is_judged_by_its_start(
    world, django_capture_on_commit_callbacks
):
    job = export_job(world, status="running", started_at=NOW - LEASE + timedelta(seconds=1))
    with mock.patch.object(export_job_run, "delay") as delay, at(NOW):
        assert not export_jobs_recover()
    with (
        mock.patch.object(export_job_run, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
        at(NOW + timedelta(seconds=2)),
    ):
        assert export_jobs_recover().requeued == [job.pk]
    assert state(job)[:2] == ("queued", 2)
    assert delay.call_count == 1


def test_rel_47_an_export_job_lost_at_its_last_attempt_fails_with_a_clear_error(world):
    seen = NOW - LEASE - timedelta(seconds=1)
    job = export_job(world, status="running", started_at=seen, heartbeat_at=seen, attempts=3)
    partial = partial_file(job)
    with mock.patch.object(export_job_run, "delay") as delay, at(NOW):
        result = export_jobs_recover()
    assert (delay.call_count, result.failed, result.requeued) == (0, [job.pk], [])
    assert state(job) == (
        "failed",
        3,
        None,
        "The worker running this job stopped during each of its 3 attempt(s) (last heartbeat 2026-05-04 "
        "11:57:59 UTC); it was not started again. Start a new one.",
    )
    assert (job.finished_at, partial.exists()) == (NOW, False)
    assert export_job_run(job.pk)["status"] == "failed"  # failed is final


def test_rel_47_a_queued_export_job_nobody_took_has_its_task_sent_again_once_per_lease(world):
    job = export_job(world)  # created an hour ago; its message was lost (or the broker was away)
    with mock.patch.object(export_job_run, "delay") as delay, at(NOW):
        assert export_jobs_recover().resent == [job.pk]
        assert not export_jobs_recover()  # the next sweep a minute later: within the new lease
    delay.assert_called_once_with(job.pk)
    assert state(job) == ("queued", 1, NOW, "")
    with mock.patch.object(export_job_run, "delay") as delay, at(NOW + LEASE + timedelta(seconds=1)):
        assert export_jobs_recover().resent == [job.pk]
    assert state(job)[:2] == ("queued", 1)  # not an attempt: nothing ran


def test_rel_47_a_queued_job_is_resent_even_when_the_broker_fails_once(world):
    job = export_job(world)
    with mock.patch.object(export_job_run, "delay", side_effect=OSError("broker away")), at(NOW):
        assert export_jobs_recover().resent == [job.pk]  # logged; the lease says when to try again
    with mock.patch.object(export_job_run, "delay") as delay, at(NOW + LEASE + timedelta(seconds=1)):
        export_jobs_recover()
    delay.assert_called_once_with(job.pk)


def test_rel_36_a_redelivered_task_takes_over_a_lost_export_job_as_its_next_attempt(world):
    seen = NOW - LEASE - timedelta(seconds=1)
    job = export_job(world, status="running", started_at=seen, heartbeat_at=seen, rows_done=7)
    partial = partial_file(job)
    assert export_job_run(job.pk) == {"job": job.pk, "status": "done", "rows": 0}
    assert state(job) == ("done", 2, None, "")
    assert [p.name for p in partial.parent.iterdir()] == [f"job-{job.pk}.csv"]


def test_rel_36_a_redelivered_task_fails_a_job_lost_at_its_last_attempt(world):
    seen = NOW - LEASE - timedelta(seconds=1)
    job = export_job(world, status="running", started_at=seen, heartbeat_at=seen, attempts=3)
    partial = partial_file(job)
    with at(NOW):
        assert export_job_run(job.pk) == {"job": job.pk, "status": "failed", "rows": 0}
    assert state(job)[:3] == ("failed", 3, None)
    assert job.error.startswith("The worker running this job stopped during each of its 3 attempt(s)")
    assert (partial.exists(), export_job_path(job_id=job.pk).exists()) == (False, False)


# --- command jobs and firmware campaigns ---------------------------------------------------------------


def command_job(world, kind: str, **values) -> CommandJob:
    with at(NOW - timedelta(hours=1)):
        job = CommandJob.objects.create(organisation=world.org_a, kind=kind, action="Reset", total=2)
    CommandJobTarget.objects.create(job=job, station=world.station_a1, status="ok", detail="Reset: Accepted")
    CommandJobTarget.objects.create(job=job, station=world.station_a2)
    CommandJob.objects.filter(pk=job.pk).update(done_count=1, **values)
    job.refresh_from_db()
    return job


@pytest.mark.parametrize(
    ("kind", "task"), [("command", command_job_run), ("firmware", firmware_campaign_run)]
)
def test_rel_47_the_sweep_queues_a_lost_command_job_again_with_its_task(
    world, kind, task, django_capture_on_commit_callbacks
):
    seen = NOW - LEASE - timedelta(seconds=1)
    job = command_job(world, kind, status="running", started_at=seen, heartbeat_at=seen)
    with (
        mock.patch.object(task, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
        at(NOW),
    ):
        assert command_jobs_recover().requeued == [job.pk]
    delay.assert_called_once_with(job.pk)
    assert state(job) == ("queued", 2, NOW, "")
    assert (job.done_count, job.failed_count) == (1, 0)  # what was done stays done


def test_rel_47_a_command_job_lost_at_its_last_attempt_fails_its_pending_stations(world):
    seen = NOW - LEASE - timedelta(seconds=1)
    job = command_job(world, "command", status="running", started_at=seen, heartbeat_at=seen, attempts=3)
    with mock.patch.object(command_job_run, "delay") as delay, at(NOW):
        assert command_jobs_recover().failed == [job.pk]
    assert delay.call_count == 0
    assert state(job)[:3] == ("failed", 3, None)
    assert job.error.startswith("The worker running this job stopped during each of its 3 attempt(s)")
    assert (job.done_count, job.failed_count, job.finished_at) == (1, 1, NOW)
    assert sorted(job.targets.values_list("station__identity", "status", "detail")) == [
        ("A1-CP1", "ok", "Reset: Accepted"),
        ("A2-CP1", "failed", "Not sent: the job was stopped."),
    ]


def test_rel_47_a_campaign_waiting_for_its_retry_is_not_resent_within_the_lease(world):
    # firmware_campaign_run puts a campaign with commands in flight back to queued, heartbeat_at = then,
    # and comes back after IN_FLIGHT_RETRY_S (60 s < the lease).
    job = command_job(world, "firmware", status="queued", heartbeat_at=NOW - timedelta(seconds=60))
    with mock.patch.object(firmware_campaign_run, "delay") as delay, at(NOW):
        assert not command_jobs_recover()
    assert delay.call_count == 0
    assert state(job)[:2] == ("queued", 1)


# --- the heartbeat ---------------------------------------------------------------------------------------


def test_rel_47_the_heartbeat_keeps_the_lease_of_its_run_and_stops_with_it(world, transactional_db):
    claim = datetime(2026, 1, 1, tzinfo=UTC)
    job = export_job(world, status="running", started_at=claim, heartbeat_at=claim)
    mine = ExportJob.objects.filter(pk=job.pk, status=ExportStatus.RUNNING, started_at=claim)
    with Heartbeat(mine, interval_s=0.05) as heartbeat:
        deadline = time.monotonic() + 10
        while ExportJob.objects.get(pk=job.pk).heartbeat_at == claim and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ExportJob.objects.get(pk=job.pk).heartbeat_at > claim
        ExportJob.objects.filter(pk=job.pk).update(started_at=NOW, heartbeat_at=None)  # taken over
        heartbeat._thread.join(timeout=10)
        assert not heartbeat._thread.is_alive()  # it stopped by itself
    assert ExportJob.objects.get(pk=job.pk).heartbeat_at is None  # and wrote nothing on the new run


def test_rel_47_a_bulk_command_rerun_takes_the_outcome_of_what_the_lost_run_sent(world, fake_charger):
    """The lost run sent Reset to both stations: A1-CP1's answer was recorded but not its target (the worker
    died in between); A2-CP1's command was sent and never answered. The rerun sends nothing: A1-CP1 takes its
    answer, A2-CP1's command times out as it would have in the lost run."""
    from stations.enums import CommandStatus
    from stations.models import ChargingStation, Command
    from stations.services.jobs import command_job_run as run

    ChargingStation.objects.filter(pk__in=[world.station_a1.pk, world.station_a2.pk]).update(
        is_connected=True, protocol="ocpp1.6"
    )
    long_ago = NOW - timedelta(hours=1)
    job = command_job(world, "command", status="running", started_at=long_ago, heartbeat_at=long_ago)
    CommandJob.objects.filter(pk=job.pk).update(
        done_count=0, request={"calls": {"ocpp1.6": [["Reset", {"type": "Soft"}]]}}
    )
    CommandJobTarget.objects.filter(job=job).update(status="pending", detail="", finished_at=None)
    common = {"action": "Reset", "request": {"type": "Soft"}, "job": job, "source": "job", "timeout_s": 30}
    Command.objects.create(
        station=world.station_a1,
        status=CommandStatus.ANSWERED,
        response={"status": "Accepted"},
        created_at=long_ago,
        sent_at=long_ago,
        finished_at=long_ago,
        **common,
    )
    Command.objects.create(
        station=world.station_a2, status=CommandStatus.SENT, created_at=long_ago, sent_at=long_ago, **common
    )

    done = run(job_id=job.pk)

    assert (done.status, done.attempts, done.done_count, done.failed_count) == ("done", 2, 1, 1)
    assert fake_charger.received == []  # nothing sent twice
    assert sorted(job.targets.values_list("station__identity", "status", "detail")) == [
        ("A1-CP1", "ok", "Reset: Accepted"),
        ("A2-CP1", "failed", "Reset: No outcome was recorded by the server process holding the connection."),
    ]
    assert Command.objects.filter(job=job).count() == 2
