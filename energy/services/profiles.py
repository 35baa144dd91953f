"""Turning the balancer's decisions into charging profiles on the chargers, and the fail-safe defaults.

`site_rebalance` (the Celery job, on session start/stop, on external signals and periodically):
1. builds the algorithm's input from the database (`energy.selectors.site_balancing_input`) and runs the pure
   `energy.balancing.balance`;
2. stores each EVSE's allocation (EvseAllocation);
   Idle managed EVSEs keep their safe share (below) free (ENERGY_RESERVE_IDLE_SHARES): a car that plugs
   in draws its fail-safe default before the next rebalance reaches it, and that must fit beside the
   running sessions' limits;
3. sends a TxProfile to each charging session whose limit changed *meaningfully*: any decrease, an increase
   of ENERGY_MIN_CHANGE_A or more, or between paused and not. Decreases always go, and go first: the new, lower limits are
   acknowledged before any increase is sent, so the sum never exceeds a fuse in between; if a charger does
   not accept its decrease, no increase is sent this round. An increase waits
   until ENERGY_MIN_SEND_INTERVAL_S has passed since the EVSE's last profile (rate limit per charger).
4. records every profile sent (ChargingProfileRecord) with the command and the charger's answer.

`station_default_profiles_send` (queued when a station boots): a TxDefaultProfile on every managed EVSE of the
station with its *safe share*: for every node on the EVSE's path, the node's lowest limit (its own and every
scheduled one) divided by the number of managed EVSEs under it; the smallest of those, down to 0.1 A and at
most the EVSE's max. If every EVSE drew its safe share at once no node would be exceeded, so a charger that
loses its connection keeps the site safe (a share below the car's minimum simply does not charge).
"""

import asyncio
import logging
from dataclasses import dataclass, replace
from decimal import ROUND_FLOOR, Decimal

from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils import timezone

from accounts.models import User
from cpms.ocpp_wire.calls import Call
from cpms.ocpp_wire.smart_charging import (
    default_profile_id,
    get_composite_schedule,
    set_charging_profile,
    tx_profile_id,
)
from energy.balancing import balance
from energy.enums import ProfileKind
from energy.models import ChargingProfileRecord, EvseAllocation, EvseElectrical, GridNode, NodeLimitSchedule
from energy.selectors import kw_limit_as_a, site_balancing_input
from energy.types import EvseInput, Node
from sessions.enums import SessionStatus
from sessions.models import ChargingSession
from stations.enums import CommandSource, CommandStatus
from stations.models import ChargingStation
from stations.services.commands import command_send, command_send_async

logger = logging.getLogger(__name__)

IN_FLIGHT = 20
TENTH = Decimal("0.1")


def _version(station: ChargingStation) -> str:
    return station.protocol.removeprefix("ocpp") or "1.6"


def _amps(value: float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(TENTH, rounding=ROUND_FLOOR)


@dataclass(frozen=True, slots=True)
class _Send:
    station: ChargingStation
    evse_pk: int | None
    evse_number: int
    kind: str
    limit_a: Decimal
    transaction_id: str
    call: Call


async def _deliver(send: _Send, gate: asyncio.Semaphore) -> tuple[_Send, int, str]:
    async with gate:
        command = await command_send_async(
            station=send.station,
            call=send.call,
            requested_by=None,
            source=CommandSource.SYSTEM,
            timeout_s=settings.ENERGY_PROFILE_TIMEOUT_S,
        )
    if command.status == CommandStatus.ANSWERED:
        status = str((command.response or {}).get("status", ""))
    else:
        status = command.error_code or command.status
    return send, command.pk, status


def _record(send: _Send, command_id: int, status: str) -> None:
    ChargingProfileRecord.objects.create(
        station=send.station,
        evse_id=send.evse_number,
        kind=send.kind,
        profile_id=(tx_profile_id if send.kind == ProfileKind.TRANSACTION else default_profile_id)(
            send.evse_number
        ),
        stack_level=1 if send.kind == ProfileKind.TRANSACTION else 0,
        limit_a=send.limit_a,
        transaction_id=send.transaction_id,
        profile=send.call.payload,
        command_id=command_id,
        status=status,
    )


def _deliver_all(waves: list[list[_Send]]) -> list[tuple[_Send, str]]:
    """Send each wave concurrently, a wave only after the previous one was answered; record every profile
    with its command and the charger's answer."""

    async def run() -> list[tuple[_Send, int, str]]:
        gate = asyncio.Semaphore(IN_FLIGHT)
        outcomes: list[tuple[_Send, int, str]] = []
        for wave in waves:
            if wave:
                outcomes += await asyncio.gather(*(_deliver(send, gate) for send in wave))
        return outcomes

    # async_to_sync: the command service's database calls run on this thread (a task, a test).
    outcomes = async_to_sync(run)()
    for send, command_id, status in outcomes:
        _record(send, command_id, status)
    return [(send, status) for send, _command_id, status in outcomes]


# --- the fail-safe default ----------------------------------------------------------------------------


def safe_shares(*, site_id: int) -> dict[int, Decimal]:
    """EVSE pk -> its safe share of the site (module docstring)."""
    nodes = {node.pk: node for node in GridNode.objects.filter(site_id=site_id)}
    lowest: dict[int, Decimal | None] = {}
    for node in nodes.values():
        limits = [limit for limit in (node.limit_a, _kw_to_a(node)) if limit is not None]
        lowest[node.pk] = min(limits) if limits else None
    for schedule in NodeLimitSchedule.objects.filter(node__site_id=site_id):
        current = lowest.get(schedule.node_id)
        lowest[schedule.node_id] = schedule.limit_a if current is None else min(current, schedule.limit_a)
    electricals = list(EvseElectrical.objects.filter(node__site_id=site_id))
    under: dict[int, int] = dict.fromkeys(nodes, 0)
    paths: dict[int, list[int]] = {}
    for electrical in electricals:
        path: list[int] = []
        node_id: int | None = electrical.node_id
        while node_id is not None and node_id not in path:
            path.append(node_id)
            node_id = nodes[node_id].parent_id
        paths[electrical.evse_id] = path
        for node_id in path:
            under[node_id] += 1
    shares = {}
    for electrical in electricals:
        share = electrical.max_current_a
        for node_id in paths[electrical.evse_id]:
            limit = lowest[node_id]
            if limit is not None:
                share = min(share, limit / under[node_id])
        shares[electrical.evse_id] = _amps(share)
    return shares


def _kw_to_a(node: GridNode) -> Decimal | None:
    return None if node.limit_kw is None else kw_limit_as_a(limit_kw=node.limit_kw, voltage_v=node.voltage_v)


def station_default_profiles_send(*, station_id: int) -> int:
    """A TxDefaultProfile with its safe share on each managed EVSE of the station; returns how many the
    charger accepted. Nothing to do for a station without managed EVSEs or without a site."""
    station = ChargingStation.objects.get(pk=station_id)
    if station.site_id is None or not station.is_connected:
        return 0
    shares = safe_shares(site_id=station.site_id)
    managed = (
        EvseElectrical.objects.filter(evse__station=station).select_related("evse").order_by("evse__evse_id")
    )
    sends = [
        _Send(
            station=station,
            evse_pk=electrical.evse_id,
            evse_number=electrical.evse.evse_id,
            kind=ProfileKind.DEFAULT,
            limit_a=shares[electrical.evse_id],
            transaction_id="",
            call=set_charging_profile(
                _version(station),
                evse_number=electrical.evse.evse_id,
                limit_a=shares[electrical.evse_id],
                purpose="TxDefaultProfile",
            ),
        )
        for electrical in managed
    ]
    if not sends:
        return 0
    return sum(status == "Accepted" for _send, status in _deliver_all([sends]))


# --- rebalancing ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RebalanceResult:
    evses: int
    paused: int
    sent: int
    accepted: int


def _meaningful(new: Decimal, sent: Decimal | None) -> bool:
    """Worth sending: a first profile, any decrease (the plan may rely on it), pausing or resuming, or an
    increase of ENERGY_MIN_CHANGE_A or more."""
    if sent is None or new < sent:
        return True
    if (new == 0) != (sent == 0):
        return True
    return new - sent >= Decimal(str(settings.ENERGY_MIN_CHANGE_A))


def _reserve_idle_shares(nodes: list[Node], evses: list[EvseInput], shares: dict[int, Decimal]) -> list[Node]:
    """The nodes with each idle managed EVSE's safe share held back, on its phases, at its node and every
    ancestor: a car that plugs in there starts at its TxDefaultProfile before the next rebalance gives it a
    TxProfile, and that draw must already fit beside the running sessions' limits."""
    by_id = {node.id: node for node in nodes}
    extra: dict[int, list[float]] = {node.id: [0.0, 0.0, 0.0] for node in nodes}
    for evse in evses:
        share = float(shares.get(evse.id, 0))
        if evse.active or share <= 0:
            continue
        node_id: int | None = evse.node_id
        seen: set[int] = set()
        while node_id is not None and node_id in by_id and node_id not in seen:
            seen.add(node_id)
            for phase in evse.phases:
                extra[node_id][phase] += share
            node_id = by_id[node_id].parent_id
    reserved = []
    for node in nodes:
        l1, l2, l3 = (base + add for base, add in zip(node.base_load_a, extra[node.id], strict=True))
        reserved.append(replace(node, base_load_a=(l1, l2, l3)))
    return reserved


def site_rebalance(*, site_id: int) -> RebalanceResult:
    """Run the balancer for the site and send what changed (module docstring)."""
    now = timezone.now()
    nodes, evses = site_balancing_input(site_id=site_id, at=now)
    if not evses:
        return RebalanceResult(0, 0, 0, 0)
    if settings.ENERGY_RESERVE_IDLE_SHARES:
        nodes = _reserve_idle_shares(nodes, evses, safe_shares(site_id=site_id))
    result = balance(nodes, evses)
    previous = {
        allocation.evse_id: allocation
        for allocation in EvseAllocation.objects.filter(evse_id__in=[e.id for e in evses])
    }
    EvseAllocation.objects.bulk_create(
        [
            EvseAllocation(
                evse_id=allocation.evse_id,
                limit_a=_amps(allocation.limit_a),
                paused=allocation.paused,
                phases_used="".join(str(phase + 1) for phase in allocation.phases_used),
                computed_at=now,
                sent_limit_a=previous[allocation.evse_id].sent_limit_a
                if allocation.evse_id in previous
                else None,
                sent_at=previous[allocation.evse_id].sent_at if allocation.evse_id in previous else None,
            )
            for allocation in result.allocations
        ],
        update_conflicts=True,
        unique_fields=["evse"],
        update_fields=["limit_a", "paused", "phases_used", "computed_at"],
    )
    sessions = {
        session.evse_id: session
        for session in ChargingSession.objects.filter(
            evse_id__in=[a.evse_id for a in result.allocations], status=SessionStatus.ACTIVE
        ).select_related("station", "evse")
    }
    decreases: list[_Send] = []
    increases: list[_Send] = []
    min_interval = settings.ENERGY_MIN_SEND_INTERVAL_S
    for allocation in result.allocations:
        session = sessions.get(allocation.evse_id)
        if session is None or session.evse is None or not session.station.is_connected:
            continue
        new = _amps(allocation.limit_a)
        before = previous.get(allocation.evse_id)
        if before is not None and before.sent_transaction_id != session.transaction_id:
            before = None  # what was sent belonged to an earlier session on this EVSE
        sent = before.sent_limit_a if before else None
        if not _meaningful(new, sent):
            continue
        decrease = sent is not None and new < sent
        if (
            not decrease
            and before is not None
            and before.sent_at is not None
            and (now - before.sent_at).total_seconds() < min_interval
        ):
            continue  # an increase can wait for the rate limit; a decrease never does
        send = _Send(
            station=session.station,
            evse_pk=allocation.evse_id,
            evse_number=session.evse.evse_id,
            kind=ProfileKind.TRANSACTION,
            limit_a=new,
            transaction_id=session.transaction_id,
            call=set_charging_profile(
                _version(session.station),
                evse_number=session.evse.evse_id,
                limit_a=new,
                purpose="TxProfile",
                transaction_id=session.transaction_id,
            ),
        )
        (decreases if decrease else increases).append(send)
    outcomes = _deliver_all([decreases])
    if all(status == "Accepted" for _send, status in outcomes):
        outcomes += _deliver_all([increases])
    elif increases:
        # A charger did not take its lower limit: raising others now could exceed a fuse. The next
        # rebalance tries again.
        logger.warning(
            "site %s: %d decrease(s) not accepted; %d increase(s) held back",
            site_id,
            sum(status != "Accepted" for _send, status in outcomes),
            len(increases),
        )
    accepted = 0
    for send, status in outcomes:
        if status == "Accepted":
            accepted += 1
            if send.evse_pk is not None:  # always: a TxProfile is for an allocated EVSE
                EvseAllocation.objects.filter(evse_id=send.evse_pk).update(
                    sent_limit_a=send.limit_a, sent_transaction_id=send.transaction_id, sent_at=timezone.now()
                )
    return RebalanceResult(
        evses=len(result.allocations),
        paused=sum(allocation.paused for allocation in result.allocations),
        sent=len(outcomes),
        accepted=accepted,
    )


def sites_to_rebalance() -> list[int]:
    """Sites with managed EVSEs and at least one active session on them (the periodic job's list)."""
    return list(
        EvseElectrical.objects.filter(evse__sessions__status=SessionStatus.ACTIVE)
        .values_list("node__site_id", flat=True)
        .distinct()
        .order_by("node__site_id")
    )


# --- what the charger reports --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProfileCheck:
    """What the platform expects an EVSE to be limited to now (the TxProfile its session was last given, else
    its fail-safe default), what the charger reports (the first period of its composite schedule), and
    whether they agree within 0.05 A. `reported_a` None: the charger gave no schedule (`detail` says why)."""

    evse_id: int
    expected_a: Decimal | None
    reported_a: Decimal | None
    matches: bool
    command_id: int
    detail: str


def _expected_limit(station: ChargingStation, evse_number: int) -> Decimal | None:
    session = (
        ChargingSession.objects.filter(
            station=station, evse__evse_id=evse_number, status=SessionStatus.ACTIVE
        )
        .order_by("-started_at")
        .first()
    )
    if session is not None and session.evse_id is not None:
        allocation = EvseAllocation.objects.filter(evse_id=session.evse_id).first()
        if allocation is not None and allocation.sent_transaction_id == session.transaction_id:
            return allocation.sent_limit_a
    default = (
        ChargingProfileRecord.objects.filter(
            station=station, evse_id=evse_number, kind=ProfileKind.DEFAULT, status="Accepted"
        )
        .order_by("-created_at", "-id")
        .first()
    )
    return default.limit_a if default is not None else None


def evse_profile_check(
    *, station: ChargingStation, evse_number: int, user: User | None = None
) -> ProfileCheck:
    """Ask the charger for its composite schedule of the EVSE (GetCompositeSchedule, 60 s, in A) and compare
    its limit now with what the platform sent."""
    expected = _expected_limit(station, evse_number)
    command = command_send(
        station=station,
        call=get_composite_schedule(_version(station), evse_number=evse_number, duration_s=60),
        requested_by=user,
        source=CommandSource.API,
        timeout_s=settings.ENERGY_PROFILE_TIMEOUT_S,
    )
    reported, detail = None, ""
    response = command.response or {}
    if command.status != CommandStatus.ANSWERED:
        detail = f"{command.status}: {command.error_code or ''} {command.error_description or ''}".strip()
    elif response.get("status") != "Accepted":
        detail = f"the charger answered {response.get('status')!r}"
    else:
        schedule = response.get("chargingSchedule") or response.get("schedule") or {}
        periods = schedule.get("chargingSchedulePeriod") or []
        if periods:
            reported = Decimal(str(periods[0]["limit"]))
        else:
            detail = "the schedule has no period"
    matches = expected is not None and reported is not None and abs(expected - reported) < Decimal("0.05")
    return ProfileCheck(
        evse_id=evse_number,
        expected_a=expected,
        reported_a=reported,
        matches=matches,
        command_id=command.pk,
        detail=detail,
    )
