"""Billing jobs: a session's CDR when it ends, the periodic sweep, running costs to 2.0.1 chargers, the
recovery sweep of export jobs."""

import logging

from celery import shared_task

from billing.services import payments
from billing.services.cdrs import session_bill as bill
from billing.services.cdrs import sessions_to_bill
from billing.services.running_costs import running_costs_send as send_running_costs

logger = logging.getLogger(__name__)


@shared_task
def session_bill(session_id: int) -> str:
    """Queued when a session ends. Idempotent: delivered twice, the second finds the CDR. A session paid ad
    hoc is then captured at once (the payment sweep catches it otherwise)."""
    outcome = bill(session_id=session_id).outcome
    if outcome in {"billed", "exists"}:
        try:
            payments.payment_settle_for_session(session_id=session_id)
        except Exception:
            logger.exception("payment of session %s: settle failed; the sweep retries", session_id)
    return outcome


@shared_task
def payment_start(payment_id: int) -> str:
    """Queued when a hold is placed: the start command for the paid session (billing/services/payments.py)."""
    return payments.payment_start_charging(payment_id=payment_id)


@shared_task
def payments_sweep() -> dict:
    """Every PAYMENT_SWEEP_S: bind, release, settle, retry (billing/services/payments.py)."""
    return payments.payments_sweep()


@shared_task
def payment_receipt_email(payment_id: int) -> str:
    """Queued when a payment with an email is settled: the receipt, with its PDF, once."""
    from billing.services.receipts import payment_receipt_email as send

    return send(payment_id=payment_id)


@shared_task
def sessions_bill_pending() -> int:
    """Every minute: bill completed sessions that still have no CDR (a lost or never-queued job)."""
    billed = 0
    for session_id in sessions_to_bill():
        try:
            if bill(session_id=session_id).outcome == "billed":
                billed += 1
        except Exception:
            # One session that cannot be billed must not stop the others; it is retried next sweep.
            logger.exception("billing session %s failed", session_id)
    if billed:
        logger.info("billed %d session(s) found by the sweep", billed)
    return billed


@shared_task
def export_jobs_recover() -> dict:
    """Every JOB_SWEEP_S: export jobs whose worker died are queued again or failed (cpms/jobs.py)."""
    from billing.services.exports.jobs import export_jobs_recover as recover

    result = recover()
    return {"requeued": result.requeued, "resent": result.resent, "failed": result.failed}


@shared_task
def running_costs_send() -> int:
    """Every minute: CostUpdated to 2.0.1 chargers that show costs (billing/services/running_costs.py)."""
    return send_running_costs()


# Registered with the worker through this module (cpms/celery.py discovers `<app>.tasks`).
from billing.tasks_exports import export_job_run  # noqa: E402, F401

KPI_BATCH = 100


@shared_task
def kpis_compute_recent() -> int:
    """Every KPI_COMPUTE_S: today and yesterday (local to each site) of every station, in batches of
    KPI_BATCH stations. Idempotent: unchanged days are not written (billing/services/kpis.py)."""
    from billing.services.kpis import kpi_days_compute_recent, kpi_days_recent_targets

    station_ids = kpi_days_recent_targets()
    written = 0
    for offset in range(0, len(station_ids), KPI_BATCH):
        batch = station_ids[offset : offset + KPI_BATCH]
        try:
            written += kpi_days_compute_recent(station_ids=batch)
        except Exception:
            # One batch that fails must not stop the others; it is recomputed at the next run.
            logger.exception("KPI batch starting at station %s failed", batch[0])
    return written
