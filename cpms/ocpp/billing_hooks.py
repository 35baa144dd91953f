"""Billing at the two ends of a session, called by the transaction handlers of both versions.

- Opened: the tariff in force is snapshotted onto the session before the charger is answered (a few ms, once
  per session). If that fails the start is still answered: billing takes the snapshot itself later.
- Ended: the billing job is queued *after* the answer and off the reply path, since publishing to a broker
  that is down can block for seconds (RELIABILITY D32). A job lost that way is caught by the sweep
  (billing.tasks.sessions_bill_pending, every minute). The 2.0.1 answer to an Ended event carries the
  session's final cost, computed on the spot by the engine the job uses (`session_total_cost`).
"""

import logging

from billing.services.cdrs import session_final_cost
from billing.services.tariffs import session_pricing_snapshot
from billing.tasks import session_bill
from cpms.ocpp import task_queue
from cpms.ocpp.chargepoint import run_db

logger = logging.getLogger(__name__)


async def session_opened(session_id: int) -> None:
    try:
        await run_db(session_pricing_snapshot, session_id=session_id)
    except Exception:
        logger.exception("tariff snapshot of session %s failed; billing will take it", session_id)


def session_ended(session_id: int) -> None:
    task_queue.submit(session_bill, session_id)


async def session_total_cost(session_id: int) -> float | None:
    """The final cost of a completed session as its CDR has or will have it (None: not priced by us, held
    for review, or the computation failed: the charger's answer must go out regardless)."""
    try:
        total = await run_db(session_final_cost, session_id=session_id)
    except Exception:
        logger.exception("final cost of session %s failed; answered without totalCost", session_id)
        return None
    # A JSON number (the schema's "number"); the Decimal is rounded to the currency's minor unit, and a
    # float of it prints back as the same decimal (shortest repr).
    return None if total is None else float(total)
