"""Firmware campaigns (stations.services.firmware_campaigns), run by Celery.

Celery's autodiscovery imports each app's `tasks` module only: stations/tasks.py imports this module so that
workers register the task.
"""

import logging

from celery import shared_task

from stations.services.firmware_campaigns import firmware_campaign_run as run_campaign

logger = logging.getLogger(__name__)

# Commands an earlier run sent end within their timeout (commands_expire closes the lost ones): come back
# after this long, this many times at most.
IN_FLIGHT_RETRY_S = 60
MAX_RETRIES = 30


@shared_task(bind=True, acks_late=True, max_retries=MAX_RETRIES)
def firmware_campaign_run(self, job_id: int) -> dict | None:
    """Send a campaign's firmware to its pending stations and record each outcome. Idempotent: a rerun
    finishes what is left and changes nothing twice."""
    progress = run_campaign(job_id=job_id)
    if progress is None:
        logger.info("firmware campaign %s no longer exists", job_id)
        return None
    if progress.in_flight:
        raise self.retry(countdown=IN_FLIGHT_RETRY_S)
    return {
        "job": progress.job_id,
        "status": progress.status,
        "done": progress.done,
        "failed": progress.failed,
    }
