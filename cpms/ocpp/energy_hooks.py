"""Energy management at the edges: a session that starts or stops changes the site's picture (rebalance), and
a station that boots gets its fail-safe default profiles. Both are Celery jobs queued off the reply path."""

from cpms.ocpp import task_queue
from energy.tasks import station_default_profiles, station_site_rebalance


def session_changed(station_id: int) -> None:
    task_queue.submit(station_site_rebalance, station_id)


def station_booted(station_id: int) -> None:
    task_queue.submit(station_default_profiles, station_id)
