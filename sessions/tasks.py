"""Periodic session jobs (scheduled by celery beat, see CELERY_BEAT_SCHEDULE in cpms/settings.py)."""

import logging

from celery import shared_task

from sessions.services.reservations import reservations_expire as expire_reservations

logger = logging.getLogger(__name__)


@shared_task
def reservations_expire() -> int:
    """Requested and accepted reservations past their time -> expired. Idempotent: a second delivery finds
    nothing left to expire."""
    expired = expire_reservations()
    if expired:
        logger.info("expired %d reservation(s)", expired)
    return expired
