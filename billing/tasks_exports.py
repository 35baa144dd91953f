"""The Celery task of finance export jobs (billing/services/exports/jobs.py).

Celery's autodiscovery imports `<app>.tasks` modules only: a worker knows this task once `billing.tasks`
imports it (as stations/tasks.py does with stations.tasks_firmware).
"""

from celery import shared_task

from billing.services.exports.jobs import export_job_run as run_export


@shared_task
def export_job_run(job_id: int) -> dict:
    """Write an export job's CSV file. Idempotent: a done job, or one running alive in another worker (a
    duplicate delivery), is left alone; one whose worker died (no heartbeat for JOB_LEASE_S: the task was
    redelivered, or the recovery sweep queued it again) is run again from the start into the same file."""
    job = run_export(job_id=job_id)
    if job is None:
        return {"job": job_id, "status": "missing"}
    return {"job": job.pk, "status": job.status, "rows": job.rows_done}
