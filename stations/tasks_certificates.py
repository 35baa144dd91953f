"""The certificate expiry job (stations.services.certificates.certificates_renew_due), run by Celery beat.

Celery's autodiscovery imports each app's `tasks` module only: stations/tasks.py imports this module so that
workers register the task.
"""

from celery import shared_task

from stations.services.certificates import certificates_renew_due


@shared_task(acks_late=True)
def certificates_renew() -> dict:
    """Ask the stations whose certificate expires soon for a new one. Idempotent: a certificate is asked
    for at most once a day, however often this runs."""
    run = certificates_renew_due()
    return {"requested": len(run.requested), "skipped": len(run.skipped)}
