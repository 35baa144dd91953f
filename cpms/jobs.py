"""Leases of persisted Celery jobs (export jobs, bulk command jobs, firmware campaigns): how a sweep tells a
job whose worker was killed from one that is still running, and brings it back. docs/operations.md#job-recovery

A job row has `status` (queued, running, done, failed), `created_at`, `started_at`, `heartbeat_at`,
`attempts` (which attempt this is, from 1) and `error`.

- A run claims the job with a conditional update (queued -> running, `started_at` = `heartbeat_at` = now;
  `started_at` is the run's claim) and keeps a `Heartbeat` thread beside its work, which sets `heartbeat_at`
  every JOB_LEASE_S / 4 for as long as the run's process lives (a slow query or a charger that takes its
  time does not stop it; a SIGKILL does). The run clears `heartbeat_at` when it ends.
- A running job is alive while its last sign of life (`heartbeat_at`, else `started_at`) is younger than
  JOB_LEASE_S. A redelivered task that finds it alive does nothing; one that finds it lost takes it over.
- The sweep (`jobs_recover`, Celery beat every JOB_SWEEP_S) queues every lost job again as its next attempt,
  or fails it with a clear error once JOB_MAX_ATTEMPTS attempts were lost, and sends the message again for
  queued jobs that nobody claimed within the lease (a message lost with its broker or never sent).
"""

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import F, Model, Q, QuerySet
from django.utils import timezone

logger = logging.getLogger(__name__)

QUEUED, RUNNING, FAILED = "queued", "running", "failed"
# Jobs looked at per sweep and per kind (the next sweep takes the rest).
SWEEP_BATCH = 100


def lease() -> timedelta:
    return timedelta(seconds=settings.JOB_LEASE_S)


def lost_q(*, now: datetime) -> Q:
    """Running jobs whose last sign of life is older than the lease: the process that ran them is gone."""
    cut = now - lease()
    return Q(status=RUNNING) & (
        Q(heartbeat_at__lt=cut)
        | Q(heartbeat_at__isnull=True, started_at__lt=cut)
        | Q(heartbeat_at__isnull=True, started_at__isnull=True)
    )


def unclaimed_q(*, now: datetime) -> Q:
    """Queued jobs that no run claimed within the lease since they were (re)queued: their message may be
    lost (or still waits behind others: sending it again is harmless, a second run finds the job taken)."""
    cut = now - lease()
    return Q(status=QUEUED) & (Q(heartbeat_at__lt=cut) | Q(heartbeat_at__isnull=True, created_at__lt=cut))


def lost_message(*, attempts: int, heartbeat_at: datetime | None) -> str:
    seen = f" (last heartbeat {heartbeat_at:%Y-%m-%d %H:%M:%S} UTC)" if heartbeat_at else ""
    return (
        f"The worker running this job stopped during each of its {attempts} attempt(s){seen}; "
        "it was not started again. Start a new one."
    )


class Heartbeat:
    """`with Heartbeat(queryset):` sets `heartbeat_at` on the one row of `queryset` (the job as this run
    claimed it, e.g. `filter(pk=..., status="running", started_at=claim)`) every `interval_s`, from a thread
    with its own database connection. Stops by itself once the update matches nothing (the job ended, or
    another run took it over); a failing update (database away) is logged and tried again."""

    def __init__(self, queryset: QuerySet, *, interval_s: float | None = None):
        self.queryset = queryset
        self.interval_s = interval_s if interval_s is not None else max(0.5, settings.JOB_LEASE_S / 4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-heartbeat", daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    if self.queryset.update(heartbeat_at=timezone.now()) != 1:
                        return
                except Exception:
                    logger.warning("job heartbeat failed; trying again", exc_info=True)
        finally:
            connections.close_all()  # this thread's connections (a pooled one goes back to the pool)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def _job_rows(model: type[Model]) -> QuerySet[Any]:
    """The rows of a job model: any model with the fields of the module docstring (typed by none)."""
    return model._default_manager.all()


def job_claim(
    *,
    model: type[Model],
    job_id: int,
    reset_fields: dict[str, Any] | None = None,
    on_failed: Callable[[Any], None] | None = None,
) -> datetime | None:
    """Claim job `job_id` for this run: a queued job becomes running, a lost running job is taken over as
    its next attempt (or failed once JOB_MAX_ATTEMPTS attempts were lost). Returns the claim (the new
    `started_at`, which the run's later conditional updates check) or None: the job is alive in another
    run (a duplicate delivery), finished, or claimed by someone else between our read and our write."""
    now = timezone.now()
    fields = {
        "status": RUNNING,
        "started_at": now,
        "heartbeat_at": now,
        "finished_at": None,
        "error": "",
        **(reset_fields or {}),
    }
    if _job_rows(model).filter(pk=job_id, status=QUEUED).update(**fields) == 1:
        return now
    job = _job_rows(model).filter(lost_q(now=now), pk=job_id).first()
    if job is None:
        return None
    same = _job_rows(model).filter(
        pk=job.pk, status=RUNNING, heartbeat_at=job.heartbeat_at, started_at=job.started_at
    )
    if job.attempts >= settings.JOB_MAX_ATTEMPTS:
        error = lost_message(attempts=job.attempts, heartbeat_at=job.heartbeat_at or job.started_at)
        if same.update(status=FAILED, error=error, heartbeat_at=None, finished_at=now) == 1 and on_failed:
            on_failed(job)
        return None
    if same.update(attempts=F("attempts") + 1, **fields) == 1:
        logger.warning(
            "job %s %s lost its worker; attempt %d takes over", model.__name__, job_id, job.attempts + 1
        )
        return now
    return None


@dataclass
class Recovered:
    requeued: list[int] = field(default_factory=list)  # lost running jobs, queued again as their next attempt
    resent: list[int] = field(default_factory=list)  # queued jobs whose message was sent again
    failed: list[int] = field(default_factory=list)  # lost for the last allowed attempt

    def __bool__(self) -> bool:
        return bool(self.requeued or self.resent or self.failed)


def jobs_recover(
    *,
    model: type[Model],
    enqueue: Callable[[Any], object],
    requeue_fields: dict[str, Any] | None = None,
    on_failed: Callable[[Any], None] | None = None,
    now: datetime | None = None,
) -> Recovered:
    """One sweep over the jobs of `model` (module docstring). Each change is a conditional update on the
    state that was read, so two sweeps at once, or a sweep and a run, never both act on a job.
    `enqueue(job)` sends its task (after the commit); `requeue_fields` are reset when a lost job is queued
    again; `on_failed(job)` cleans up after a job that is failed."""
    now = now or timezone.now()
    result = Recovered()
    for job in _job_rows(model).filter(lost_q(now=now)).order_by("pk")[:SWEEP_BATCH]:
        same = _job_rows(model).filter(pk=job.pk, status=RUNNING, heartbeat_at=job.heartbeat_at)
        same = same.filter(started_at=job.started_at)
        if job.attempts >= settings.JOB_MAX_ATTEMPTS:
            error = lost_message(attempts=job.attempts, heartbeat_at=job.heartbeat_at or job.started_at)
            if same.update(status=FAILED, error=error, heartbeat_at=None, finished_at=now) == 1:
                logger.error("job %s %s failed: %s", model.__name__, job.pk, error)
                if on_failed is not None:
                    on_failed(job)
                result.failed.append(job.pk)
            continue
        with transaction.atomic():
            requeued = same.update(
                status=QUEUED, heartbeat_at=now, attempts=F("attempts") + 1, **(requeue_fields or {})
            )
            if requeued == 1:
                transaction.on_commit(functools.partial(_enqueue, enqueue, job))
        if requeued == 1:
            logger.warning(
                "job %s %s lost its worker (attempt %d); queued again", model.__name__, job.pk, job.attempts
            )
            result.requeued.append(job.pk)
    for job in _job_rows(model).filter(unclaimed_q(now=now)).order_by("pk")[:SWEEP_BATCH]:
        same = _job_rows(model).filter(pk=job.pk, status=QUEUED, heartbeat_at=job.heartbeat_at)
        if same.update(heartbeat_at=now) == 1:
            _enqueue(enqueue, job)
            result.resent.append(job.pk)
    return result


def _enqueue(enqueue: Callable[[Any], object], job: Any) -> None:
    try:
        enqueue(job)
    except Exception:
        # The broker is away: the job stays queued and the sweep sends it again after the lease.
        logger.exception("queueing job %s failed; the sweep tries again", job.pk)
