"""Periodic station jobs (scheduled by celery beat, see CELERY_BEAT_SCHEDULE in cpms/settings.py)."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from stations.services.commands import commands_expire as expire_commands
from stations.services.jobs import command_job_run as run_job
from stations.services.maintenance import message_log_purge as purge
from stations.services.ocpp import stations_mark_silent_offline as mark_offline

logger = logging.getLogger(__name__)


@shared_task
def message_log_purge() -> int:
    """Delete OCPP log rows older than OCPP_MESSAGE_LOG_DAYS, in batches (idempotent)."""
    deleted = purge(before=timezone.now() - timedelta(days=settings.OCPP_MESSAGE_LOG_DAYS))
    logger.info("purged %d OCPP message log rows", deleted)
    return deleted


@shared_task
def stations_mark_silent_offline() -> int:
    return mark_offline()


@shared_task
def commands_expire() -> int:
    """Fail commands nobody will finish (outbox past its time, issuer or holding process gone)."""
    return expire_commands()


@shared_task(acks_late=True)
def command_job_run(job_id: int) -> dict:
    """Run a bulk command job (configuration template, read configuration, fleet command); a rerun
    continues where a killed worker stopped (a redelivery, or the recovery sweep: cpms/jobs.py)."""
    job = run_job(job_id=job_id)
    return {"job": job.pk, "status": job.status, "done": job.done_count, "failed": job.failed_count}


@shared_task
def command_jobs_recover() -> dict:
    """Every JOB_SWEEP_S: bulk command jobs and firmware campaigns whose worker died are queued again or
    failed (cpms/jobs.py)."""
    from stations.services.jobs import command_jobs_recover as recover

    result = recover()
    return {"requeued": result.requeued, "resent": result.resent, "failed": result.failed}


# Celery autodiscovers `tasks` modules only.
from stations.tasks_certificates import certificates_renew  # noqa: E402, F401
from stations.tasks_firmware import firmware_campaign_run  # noqa: E402, F401


@shared_task
def incidents_detect_offline() -> int:
    """Open offline incidents for stations silent longer than INCIDENT_OFFLINE_AFTER_S (idempotent: a station
    with an open offline incident is skipped)."""
    from stations.services.incidents import incidents_detect_offline as detect

    return detect(now=timezone.now())


@shared_task
def incidents_notify_pending() -> int:
    """Send the alert emails of new incidents (idempotent: each incident is claimed before its email)."""
    from stations.services.incidents import incidents_notify_pending as notify

    return notify(now=timezone.now())
