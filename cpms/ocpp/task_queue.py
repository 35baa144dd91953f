"""Queueing Celery jobs from the OCPP handlers without delaying the answer to the charger.

Publishing to a broker can block for seconds when it is down (docs/reliability.md case 32), so a handler never
waits for it: `submit` hands the publish to a worker thread and returns at once. A job lost that way is caught
by the periodic job that owns the same work (the billing sweep, the periodic rebalance).
"""

import asyncio
import logging

logger = logging.getLogger(__name__)


def publish(task, *args) -> None:
    """Publish `task` with `args` (blocking; runs in a worker thread). The seam tests replace."""
    task.delay(*args)


def _publish_logged(task, args: tuple) -> None:
    try:
        publish(task, *args)
    except Exception:
        logger.exception("queueing %s%r failed; its periodic job will catch up", task.name, args)


def submit(task, *args) -> None:
    """Queue `task(*args)` from a handler. Submitted to the thread pool now, so it runs even if the
    connection's loop moves on or closes."""
    asyncio.get_running_loop().run_in_executor(None, _publish_logged, task, args)
