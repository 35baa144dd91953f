"""Energy jobs: rebalance a site (session start/stop, external signals, periodically) and the fail-safe
default profiles of a station that booted."""

import logging
from typing import TypedDict

from celery import shared_task
from django.db import InterfaceError, OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from energy.services.profiles import site_rebalance as rebalance
from energy.services.profiles import sites_to_rebalance, station_default_profiles_send
from stations.models import ChargingStation

logger = logging.getLogger(__name__)


# A database restart or a Redis outage (docs/reliability.md cases 31 and 32) fails a job that would succeed a
# moment later; a session's start or stop and a boot queue one job each, and the periodic sweep covers only
# sites with EVSEs in use, so such a job is retried, ten times, each after a random delay of up to 2, 4, 8,
# 16, 32, then 60 s (Celery's backoff with jitter: at most ~6 minutes in all).
# Safe because a rebalance is idempotent (an unchanged picture sends nothing) and a station's default
# profiles replace themselves (same profile id). Any other exception is a bug and is not retried.
class _Retry(TypedDict):
    autoretry_for: tuple[type[BaseException], ...]
    retry_backoff: int
    retry_backoff_max: int
    retry_jitter: bool
    max_retries: int


RETRY: _Retry = {
    "autoretry_for": (OperationalError, InterfaceError, RedisConnectionError, RedisTimeoutError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 10,
}


@shared_task(**RETRY)
def site_rebalance(site_id: int) -> int:
    """Returns how many profiles the chargers accepted. Idempotent: an unchanged picture sends nothing."""
    return rebalance(site_id=site_id).accepted


@shared_task(**RETRY)
def station_site_rebalance(station_id: int) -> int:
    """One station's site (kept for jobs queued before batching; the handlers queue stations_site_rebalance)."""
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


@shared_task(**RETRY)
def station_default_profiles(station_id: int) -> int:
    """One station's fail-safe TxDefaultProfiles (kept for jobs queued before batching)."""
    return station_default_profiles_send(station_id=station_id)


def _each(station_ids: list[int], work) -> int:
    """`work(station_id)` for each station, in order: a retryable failure (the database or Redis away) retries
    the whole batch, which is safe (both jobs are idempotent); any other failure is logged and skips only that
    station."""
    done = 0
    for station_id in station_ids:
        try:
            done += work(station_id)
        except RETRY["autoretry_for"]:
            raise
        except Exception:
            logger.exception("station %s: energy job failed", station_id)
    return done


@shared_task(**RETRY)
def stations_site_rebalance(station_ids: list[int]) -> int:
    """Queued by the OCPP handlers (batched per web process, cpms/ocpp/task_queue.py) when sessions start or stop
    at these stations: each of their sites is rebalanced once, however many of its stations are in the batch."""
    site_ids = sorted(
        set(
            ChargingStation.objects.filter(pk__in=station_ids, site__isnull=False).values_list(
                "site_id", flat=True
            )
        )
    )
    return _each(site_ids, lambda site_id: rebalance(site_id=site_id).accepted)


@shared_task(**RETRY)
def stations_default_profiles(station_ids: list[int]) -> int:
    """Queued (batched per web process) when stations boot: the fail-safe TxDefaultProfiles of each."""
    return _each(station_ids, lambda station_id: station_default_profiles_send(station_id=station_id))
