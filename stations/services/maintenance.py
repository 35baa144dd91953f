"""Housekeeping: bounded retention of the OCPP message log."""

from datetime import datetime

from stations.models import OcppMessage

PURGE_BATCH = 5_000


def message_log_purge(*, before: datetime, batch_size: int = PURGE_BATCH) -> int:
    """Delete log rows created before `before`, a batch at a time so no long lock is held."""
    total = 0
    while True:
        ids = list(
            OcppMessage.objects.filter(created_at__lt=before).values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return total
        total += OcppMessage.objects.filter(pk__in=ids).delete()[0]
