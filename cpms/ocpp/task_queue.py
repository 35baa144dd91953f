"""Queueing Celery jobs from the OCPP handlers without delaying the answer to the charger.

Publishing to a broker can block for seconds when it is down (docs/reliability.md case 32), so a handler never
waits for it: `submit` hands the publish to a worker thread and returns at once. A job lost that way is caught
by the periodic job that owns the same work (the billing sweep, the periodic rebalance).

`submit_batched` gathers the items of one job kind for OCPP_TASK_BATCH_S and queues one job with them all
(each item once): what follows boots and session starts in a storm is a few jobs, not one per charger
(issue 13).
"""

import asyncio
import logging

from django.conf import settings

from cpms.flushing import PeriodicFlush

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


# Per job kind, the items gathered in this process (insertion order, each once; queued by _flusher, below).
_batches: dict = {}


def submit_batched(task, item) -> None:
    """Queue `task([item, ...])` with the other items submitted within OCPP_TASK_BATCH_S (at once when 0)."""
    if settings.OCPP_TASK_BATCH_S <= 0:
        submit(task, [item])
        return
    _batches.setdefault(task, {})[item] = None
    _flusher.wake()


async def _submit_batches() -> None:
    global _batches
    batches, _batches = _batches, {}
    for task, items in batches.items():
        submit(task, list(items))


_flusher = PeriodicFlush(
    _submit_batches, pending=lambda: bool(_batches), interval_s=lambda: settings.OCPP_TASK_BATCH_S
)
