"""Energy jobs: rebalance a site (session start/stop, external signals, periodically) and the fail-safe
default profiles of a station that booted."""

import logging

from celery import shared_task

from energy.services.profiles import site_rebalance as rebalance
from energy.services.profiles import sites_to_rebalance, station_default_profiles_send
from stations.models import ChargingStation

logger = logging.getLogger(__name__)


@shared_task
def site_rebalance(site_id: int) -> int:
    """Returns how many profiles the chargers accepted. Idempotent: an unchanged picture sends nothing."""
    return rebalance(site_id=site_id).accepted


@shared_task
def station_site_rebalance(station_id: int) -> int:
    """Queued by the OCPP handlers when a session starts or stops at the station."""
    site_id = ChargingStation.objects.filter(pk=station_id).values_list("site_id", flat=True).first()
    return rebalance(site_id=site_id).accepted if site_id else 0


@shared_task
def sites_rebalance() -> int:
    """Every ENERGY_REBALANCE_S: every site with managed EVSEs in use (meter values change the picture)."""
    accepted = 0
    for site_id in sites_to_rebalance():
        try:
            accepted += rebalance(site_id=site_id).accepted
        except Exception:
            # One site that fails must not stop the others; it is retried next round.
            logger.exception("rebalancing site %s failed", site_id)
    return accepted


@shared_task
def station_default_profiles(station_id: int) -> int:
    """Queued when a station boots: its fail-safe TxDefaultProfiles."""
    return station_default_profiles_send(station_id=station_id)
