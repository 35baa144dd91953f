"""Billing at the two ends of a session, called by the transaction handlers of both versions.

- Opened: the tariff in force is snapshotted onto the session before the charger is answered (a few ms, once
  per session). If that fails the start is still answered: billing takes the snapshot itself later.
- Ended: the billing job is queued *after* the answer and off the reply path, since publishing to a broker
  that is down can block for seconds (RELIABILITY D32). A job lost that way is caught by the sweep
  (billing.tasks.sessions_bill_pending, every minute).
"""

import asyncio
import logging

from billing.services.tariffs import session_pricing_snapshot
from billing.tasks import session_bill
from stations.ocpp.chargepoint import run_db

logger = logging.getLogger(__name__)


async def session_opened(session_id: int) -> None:
    try:
        await run_db(session_pricing_snapshot, session_id=session_id)
    except Exception:
        logger.exception("tariff snapshot of session %s failed; billing will take it", session_id)


def queue_bill(session_id: int) -> None:
    """Publish the billing job (blocking; runs in a thread). The seam tests replace."""
    session_bill.delay(session_id)


def _queue(session_id: int) -> None:
    try:
        queue_bill(session_id)
    except Exception:
        logger.exception("queueing the billing job of session %s failed; the sweep will bill it", session_id)


def session_ended(session_id: int) -> None:
    """Queue the billing job in a worker thread without waiting for it. Submitted now, so it runs even if
    the connection's loop moves on or closes."""
    asyncio.get_running_loop().run_in_executor(None, _queue, session_id)
