"""Periodic session jobs (scheduled by celery beat, see CELERY_BEAT_SCHEDULE in cpms/settings.py)."""

import logging

from celery import shared_task

from sessions.selectors import waitlist_site_ids_open
from sessions.services.reservations import reservations_expire as expire_reservations
from sessions.services.waitlists import waitlist_advance

logger = logging.getLogger(__name__)


@shared_task
def reservations_expire() -> int:
    """Requested and accepted reservations past their time -> expired. Idempotent: a second delivery finds
    nothing left to expire."""
    expired = expire_reservations()
    if expired:
        logger.info("expired %d reservation(s)", expired)
    return expired


# --- waitlists ----------------------------------------------------------------------------------------


@shared_task
def waitlists_advance() -> int:
    """Every 30 s (beat): queue the advance of every site with open waitlist entries. Returns how many."""
    site_ids = waitlist_site_ids_open()
    for site_id in site_ids:
        waitlist_advance_site.delay(site_id)
    return len(site_ids)


@shared_task
def waitlist_advance_site(site_id: int) -> dict:
    """Move one site's waitlist on (fulfil, expire, offer free connectors, reserve them where the charger
    can, email). Idempotent: a second delivery offers and sends nothing twice. Tasks are an interface layer:
    the ReserveNow wire format comes from the OCPP layer."""
    result = waitlist_advance(site_id=site_id)
    if result.offered or result.expired or result.fulfilled:
        logger.info("waitlist of site %s: %s", site_id, result)
    return {
        "fulfilled": result.fulfilled,
        "expired": result.expired,
        "offered": result.offered,
        "reserved": result.reserved,
        "notified": result.notified,
    }
