"""Setting sessions aside for review from outside the OCPP path (billing could not price one, ...)."""

from typing import Any

from django.db import transaction

from sessions.enums import AnomalyKind, SessionFlag
from sessions.models import ChargingSession, SessionAnomaly


@transaction.atomic
def session_hold(*, session_id: int, flag: SessionFlag, kind: AnomalyKind, detail: dict[str, Any]) -> bool:
    """Flag the session with `flag` (a HOLD_FLAGS member), hold it from billing and record an anomaly with
    `detail`. Idempotent: a session already carrying the flag is left as it is (returns False)."""
    session = ChargingSession.objects.select_for_update().get(pk=session_id)
    if flag in session.flags:
        return False
    session.flags = [*session.flags, str(flag)]
    session.held_for_review = True
    session.save(update_fields=["flags", "held_for_review", "updated_at"])
    SessionAnomaly.objects.create(
        station_id=session.station_id,
        session=session,
        kind=kind,
        transaction_id=session.transaction_id,
        detail=detail,
    )
    return True
