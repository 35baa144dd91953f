"""Export jobs: an export of any period length written to a file by a Celery worker (billing/tasks_exports.py),
with progress, a lease kept by a heartbeat and recovery of the jobs whose worker died (cpms/jobs.py), then
downloaded by who asked for it."""

import logging
import os
import tempfile
from datetime import datetime
from pathlib import Path
from time import monotonic as time_monotonic
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.enums import Capability
from accounts.models import User
from accounts.selectors import organisation_ids_with
from billing import drill_hook
from billing.enums import ExportKind, ExportStatus
from billing.models import ExportJob
from billing.services.exports.csv import ExportReader, export_write
from billing.services.exports.filters import ExportFilters, export_filters_validate
from billing.services.exports.scope import ExportScope, export_audit, export_scope_access
from cpms.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationFailed
from cpms.jobs import Heartbeat, Recovered, job_claim, jobs_recover

logger = logging.getLogger(__name__)

# A running job writes its progress this often (one conditional UPDATE), in records or seconds.
PROGRESS_EVERY = 5000
PROGRESS_EVERY_S = 5.0
EXPORTS_DIR = "exports"


def export_job_path(*, job_id: int) -> Path:
    """Where a job's file lives: named by the job id only, never by user input."""
    return Path(settings.MEDIA_ROOT) / EXPORTS_DIR / f"job-{job_id}.csv"


def export_job_list(*, user: User) -> QuerySet[ExportJob]:
    """The user's own export jobs, newest first."""
    return ExportJob.objects.filter(requested_by=user).order_by("-created_at", "-id")


def export_job_access(*, user: User, pk: int) -> ExportJob:
    """The job `pk` if the user asked for it (superusers: any); NotFound otherwise."""
    jobs = ExportJob.objects.all() if user.is_superuser else ExportJob.objects.filter(requested_by=user)
    job = jobs.filter(pk=pk).first()
    if job is None:
        raise NotFound(f"Export {pk} not found.")
    return job


def export_job_download_access(*, user: User, pk: int) -> tuple[ExportJob, Path]:
    """The job and its file, for a download: the job is done, its file exists, and the user may still
    export every organisation it read (a finance role withdrawn since takes the file away too)."""
    job = export_job_access(user=user, pk=pk)
    if not user.is_superuser:
        allowed = set(organisation_ids_with(user=user, capability=Capability.EXPORT))
        if not set(job.organisation_ids) <= allowed:
            raise PermissionDenied(f"You may no longer export the organisations of export {pk}.")
    if job.status != ExportStatus.DONE:
        raise Conflict(f"Export {pk} is {job.status}; its file can be downloaded once it is done.")
    path = export_job_path(job_id=job.pk)
    if not path.is_file():
        raise NotFound(f"The file of export {pk} is missing.")
    return job, path


def export_job_create(*, user: User, kind: str, filters: ExportFilters) -> ExportJob:
    """Check the filters and the user's scope now, store the job with the organisations it may read, and
    queue `export_job_run` once the job is committed."""
    from billing.tasks_exports import export_job_run as export_job_run_task  # tasks import services

    if kind not in ExportKind.values:
        raise ValidationFailed(f"Unknown export kind {kind!r}; one of {', '.join(ExportKind.values)}.")
    export_filters_validate(filters=filters, streaming=False)
    scope = export_scope_access(user=user, filters=filters)
    with transaction.atomic():
        job = ExportJob.objects.create(
            requested_by=user,
            kind=kind,
            filters=filters.as_json(),
            organisation_ids=list(scope.organisation_ids),
        )
        export_audit(kind=kind, filters=filters, scope=scope, job=job)
        transaction.on_commit(lambda: export_job_run_task.delay(job.pk))
    return job


class _Superseded(Exception):
    """Another run took the job over (a redelivered task): this one stops without touching it."""


def _job_update(*, job_id: int, claim: datetime, **values: Any) -> None:
    """A conditional update that only the run holding the claim (status running, its started_at) can make."""
    updated = ExportJob.objects.filter(pk=job_id, status=ExportStatus.RUNNING, started_at=claim).update(
        **values
    )
    if updated != 1:
        raise _Superseded


def _job_partials_remove(job: ExportJob) -> None:
    """Temporary files of runs of `job` that died (a killed worker leaves its half-written file)."""
    folder = export_job_path(job_id=job.pk).parent
    for leftover in folder.glob(f".job-{job.pk}-*.part"):
        leftover.unlink(missing_ok=True)


def export_job_run(*, job_id: int) -> ExportJob | None:
    """Write the job's CSV to its file. Idempotent.

    Claims the job (cpms/jobs.py `job_claim`): a queued job, or a running one whose run was lost (no
    heartbeat for JOB_LEASE_S: its worker was killed), becomes running with a new `started_at`, which is
    this run's claim; a job that is running alive elsewhere (a duplicate delivery), done or failed is left
    as it is. While it runs a heartbeat thread keeps its lease. A run that loses its claim to a later one
    stops at its next progress update. Counts the rows first (rows_total), writes to a temporary file next
    to the final one (removing those of dead runs), updates rows_done every PROGRESS_EVERY records or
    PROGRESS_EVERY_S seconds, and renames the file into place at the end, so a rerun replaces the file
    instead of adding one. Ends `done` (rows_total = rows_done = records written) or `failed` with a
    message. Returns the job as it is afterwards (None if it no longer exists).
    """
    claim = job_claim(
        model=ExportJob,
        job_id=job_id,
        reset_fields={"rows_done": 0, "rows_total": None},
        on_failed=_job_partials_remove,
    )
    if claim is None:
        return ExportJob.objects.filter(pk=job_id).first()
    job = ExportJob.objects.get(pk=job_id)
    path = export_job_path(job_id=job_id)
    temporary: str | None = None
    mine = ExportJob.objects.filter(pk=job_id, status=ExportStatus.RUNNING, started_at=claim)
    try:
        with Heartbeat(mine):
            path.parent.mkdir(parents=True, exist_ok=True)
            _job_partials_remove(job)
            filters = ExportFilters.from_json(job.filters)
            scope = ExportScope(organisation_ids=tuple(job.organisation_ids), site_ids=filters.site_ids)
            reader = ExportReader(kind=job.kind, filters=filters, scope=scope)
            _job_update(job_id=job_id, claim=claim, rows_total=reader.count())
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".job-{job_id}-", suffix=".part")
            reported, reported_at = 0, time_monotonic()

            def progress(records: int) -> None:
                nonlocal reported, reported_at
                if drill_hook.ARMED and records:  # test hook (worker-kill drill): a half-written file
                    drill_hook.reached("export", f"job {job_id}")
                now = time_monotonic()
                if records - reported >= PROGRESS_EVERY or now - reported_at >= PROGRESS_EVERY_S:
                    _job_update(job_id=job_id, claim=claim, rows_done=records)
                    reported, reported_at = records, now

            with os.fdopen(handle, "wb") as out:
                records = export_write(reader=reader, out=out, on_chunk=progress)
                out.flush()
                os.fsync(out.fileno())
            _job_update(job_id=job_id, claim=claim, rows_done=records)  # still ours: the file may be placed
            os.replace(temporary, path)
            temporary = None
            _job_update(
                job_id=job_id,
                claim=claim,
                status=ExportStatus.DONE,
                rows_done=records,
                rows_total=records,
                file_name=f"{EXPORTS_DIR}/{path.name}",
                heartbeat_at=None,
                finished_at=timezone.now(),
            )
    except _Superseded:
        logger.info("export job %s: taken over by another run", job_id)
    except Exception as exc:
        logger.exception("export job %s failed", job_id)
        message = exc.message if isinstance(exc, DomainError) else "Internal error; see the worker log."
        mine.update(status=ExportStatus.FAILED, error=message, heartbeat_at=None, finished_at=timezone.now())
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
    return ExportJob.objects.filter(pk=job_id).first()


def export_jobs_recover() -> Recovered:
    """The sweep of export jobs (Celery beat every JOB_SWEEP_S; cpms/jobs.py): a job whose worker died
    is queued again as its next attempt (its progress reset; the rerun replaces its half-written file), or
    failed after JOB_MAX_ATTEMPTS lost attempts (its half-written files removed); a queued job nobody took
    within the lease has its task sent again."""
    from billing.tasks_exports import export_job_run as export_job_run_task  # tasks import services

    def enqueue(job: ExportJob) -> None:
        export_job_run_task.delay(job.pk)

    return jobs_recover(
        model=ExportJob,
        enqueue=enqueue,
        requeue_fields={"rows_done": 0, "rows_total": None},
        on_failed=_job_partials_remove,
    )
