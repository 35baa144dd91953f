"""Running cost sent to 2.0.1 chargers during a session (CostUpdated, OCPP 2.0.1 I02).

A station gets it when its device model says it shows costs (TariffCostCtrlr.Enabled[Cost] = true, as read by
GetVariables or a report), is connected, and the session's cost changed since it was last sent, at most every
BILLING_COST_UPDATE_S seconds. 1.6 has no such message (the California Pricing extension is not supported).
"""

import asyncio
import logging
from datetime import timedelta
from decimal import Decimal

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from billing.models import SessionPricing
from billing.services.cdrs import session_cost_so_far
from cpms.ocpp_wire.costs import cost_updated
from sessions.enums import SessionStatus
from sessions.models import ChargingSession
from stations.enums import CommandSource, CommandStatus, OcppVersion
from stations.models import DeviceVariable
from stations.services.commands import command_send_async, station_version

logger = logging.getLogger(__name__)

IN_FLIGHT = 20
SEND_TIMEOUT_S = 10.0


def _shows_costs() -> Exists:
    return Exists(
        DeviceVariable.objects.filter(
            station_id=OuterRef("station_id"),
            component="TariffCostCtrlr",
            variable="Enabled",
            variable_instance="Cost",
            attribute_type="Actual",
            value__iexact="true",
        )
    )


def sessions_due_cost_update(*, limit: int = 500) -> list[ChargingSession]:
    """Active sessions on connected 2.0.1 stations that show costs, not updated for BILLING_COST_UPDATE_S."""
    due_before = timezone.now() - timedelta(seconds=settings.BILLING_COST_UPDATE_S)
    return list(
        ChargingSession.objects.filter(
            _shows_costs(),
            status=SessionStatus.ACTIVE,
            station__is_connected=True,
            station__protocol__in=[OcppVersion.V201, OcppVersion.V21],
            pricing__tariff__isnull=False,
        )
        .filter(Q(pricing__cost_sent_at__isnull=True) | Q(pricing__cost_sent_at__lt=due_before))
        .select_related("station", "pricing")
        .order_by("pk")[:limit]
    )


async def _send(session: ChargingSession, total: Decimal, gate: asyncio.Semaphore) -> bool:
    async with gate:
        command = await command_send_async(
            station=session.station,
            call=cost_updated(
                station_version(session.station), total_cost=total, transaction_id=session.transaction_id
            ),
            requested_by=None,
            source=CommandSource.SYSTEM,
            timeout_s=SEND_TIMEOUT_S,
        )
    return command.status == CommandStatus.ANSWERED


def running_costs_send() -> int:
    """One round: compute and send the running cost of every session due; returns how many were answered.
    Idempotent in effect: a cost that has not changed since it was last sent is not sent again."""
    if settings.BILLING_COST_UPDATE_S <= 0:
        return 0
    due = []
    for session in sessions_due_cost_update():
        cost = session_cost_so_far(session=session)
        if cost is None or cost.total == session.pricing.cost_sent_total:
            continue
        due.append((session, cost.total))
    if not due:
        return 0

    async def send_all() -> list[bool]:
        gate = asyncio.Semaphore(IN_FLIGHT)
        return await asyncio.gather(*(_send(session, total, gate) for session, total in due))

    # async_to_sync, not asyncio.run: the command service's database calls then run on this thread.
    answered = async_to_sync(send_all)()
    now = timezone.now()
    sent = 0
    for (session, total), ok in zip(due, answered, strict=True):
        if ok:
            SessionPricing.objects.filter(pk=session.pricing.pk).update(
                cost_sent_at=now, cost_sent_total=total
            )
            sent += 1
    return sent
