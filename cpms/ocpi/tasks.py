"""Celery jobs of the OCPI layer: outbox delivery, and the push sweeps that queue what changed."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from cpms.ocpi import tasks_commands  # noqa: F401 - registers the commands' tasks with Celery
from cpms.ocpi.services import outbox

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def outbox_deliver(partner_id: int) -> None:
    """One delivery round for a partner; another is queued at once while due items remain."""
    result = outbox.outbox_deliver(partner_id=partner_id)
    if result.leased and result.delivered and result.remaining and not result.failed:
        outbox_deliver.delay(partner_id)


@shared_task(acks_late=True, ignore_result=True)
def outbox_deliver_due() -> None:
    """The sweep: every partner with due items gets a delivery round (kicks lost with a broker are caught
    here)."""
    for partner_id in outbox.partners_with_due_items():
        outbox_deliver.delay(partner_id)


@shared_task(acks_late=True, ignore_result=True)
def push_sweep() -> None:
    """Queues what changed since the last sweep for every partner: locations (EVSE status), tariffs,
    roaming sessions and their CDRs. Each module's function is idempotent and remembers how far it got."""
    from cpms.ocpi.services import cdrs, locations, sessions, tariffs

    # Tariffs first: a Location pushed in the same sweep may name a tariff the partner must already have.
    for sweep in (
        tariffs.tariffs_push_changes,
        locations.locations_push_changes,
        sessions.sessions_push_changes,
        cdrs.cdrs_push_pending,
    ):
        try:
            with outbox.kicks_deferred():
                sweep()
        except Exception:  # one module's failure must not stop the others' pushes
            logger.exception("OCPI push sweep %s failed", sweep.__qualname__)


@shared_task(acks_late=True, ignore_result=True)
def outbox_purge() -> None:
    outbox.outbox_purge_delivered(older_than=timedelta(days=settings.OCPI_OUTBOX_KEEP_DAYS))
