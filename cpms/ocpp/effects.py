"""What follows a charger's report, for every OCPP version: the one map from outcomes to effects.

A handler maps the frame, calls one service (one transaction, committed when it returns), passes the outcomes
the service reports (sessions.types, stations.types) to `apply`, and maps the answer. `effects_for` is the
whole map: "what happens when a session ends?" is its SessionEnded case. Every effect runs after the commit
(the charger is never answered before its data is committed) in one of two phases:

- BEFORE_ANSWER: awaited, in order, before the charger is answered; the answer may carry what it read (2.0.1
  totalCost). A few ms, once per session. A failure is logged and the charger is answered all the same.
- OFF_REPLY_PATH: started once the BEFORE_ANSWER effects are done, and never awaited. Celery jobs are
  published from a worker thread (`task_queue`: a broker that is down can block for seconds, docs/reliability.md
  case 32); a job lost that way is caught by the periodic job that owns the same work (the billing sweep, the
  periodic rebalance, the waitlist advance, the incident alert sweep). Live events and the waitlist check run
  as tasks of the connection's event loop.

Not here: what a service does inside its own transaction (a reservation used by a start, an incident resolved
by a status or a reconnect, firmware and upload status moved by a notification). Incidents that a 2.0.1
NotifyEvent opens have no IncidentOpened outcome yet: their alert goes out with the minute's sweep.
"""

import asyncio
import enum
import logging
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from django.conf import settings

from billing.services.cdrs import session_final_cost
from billing.services.tariffs import session_pricing_snapshot
from billing.tasks import session_bill
from cpms.flushing import PeriodicFlush
from cpms.ocpp import task_queue
from cpms.ocpp.chargepoint import StationContext, run_db
from cpms.ocpp.mappers import format_datetime
from cpms.portal.live import connection_event, live_publish, status_event
from energy.tasks import stations_default_profiles, stations_site_rebalance
from sessions.selectors import waitlist_sites_for_stations
from sessions.tasks import waitlist_advance_site
from sessions.types import SessionEnded, SessionOpened, SessionOutcome
from stations.enums import ConnectorStatus
from stations.tasks import incidents_notify_pending
from stations.types import (
    ConnectorStatusReport,
    IncidentOpened,
    StationBooted,
    StationConnected,
    StationDisconnected,
    StationOutcome,
    StatusReported,
)

logger = logging.getLogger(__name__)

Outcome = SessionOutcome | StationOutcome


class Phase(enum.Enum):
    BEFORE_ANSWER = "before the answer"
    OFF_REPLY_PATH = "after commit, off the reply path"


# --- the effects -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TariffSnapshot:
    """The tariff in force is copied onto the session that opened. If that fails the start is still
    answered: billing takes the snapshot itself later."""

    session_id: int
    phase: ClassVar[Phase] = Phase.BEFORE_ANSWER


@dataclass(frozen=True, slots=True)
class FinalCost:
    """The final cost of an ended session for the answer (2.0.1 I03/E06 TransactionEventResponse.totalCost),
    computed by the engine the billing job uses; None (no totalCost) when it is not priced by us, held for
    review, or the computation failed."""

    session_id: int
    phase: ClassVar[Phase] = Phase.BEFORE_ANSWER


@dataclass(frozen=True, slots=True)
class BillingJob:
    """The CDR of the ended session (billing.tasks.session_bill; the sweep sessions_bill_pending catches a
    lost one)."""

    session_id: int
    phase: ClassVar[Phase] = Phase.OFF_REPLY_PATH


@dataclass(frozen=True, slots=True)
class Rebalance:
    """A session that starts or stops changes its site's picture (energy.tasks.stations_site_rebalance)."""

    station_id: int
    phase: ClassVar[Phase] = Phase.OFF_REPLY_PATH


@dataclass(frozen=True, slots=True)
class DefaultProfiles:
    """A station that boots gets its fail-safe default charging profiles."""

    station_id: int
    phase: ClassVar[Phase] = Phase.OFF_REPLY_PATH


@dataclass(frozen=True, slots=True)
class IncidentAlert:
    """The alert of a new incident goes out now rather than at the next minute's sweep."""

    phase: ClassVar[Phase] = Phase.OFF_REPLY_PATH


@dataclass(frozen=True, slots=True)
class WaitlistCheck:
    """A connector that reports Available may be the one the next driver in the site's queue waits for: if
    someone waits there (one indexed query), the site's advance is queued."""

    station_id: int
    phase: ClassVar[Phase] = Phase.OFF_REPLY_PATH


@dataclass(frozen=True, slots=True)
class LiveStatus:
    """The reported status, to the portal's live view (cpms.portal.live)."""

    report: ConnectorStatusReport
    phase: ClassVar[Phase] = Phase.OFF_REPLY_PATH


@dataclass(frozen=True, slots=True)
class LiveConnection:
    """The station connected or disconnected, to the portal's live view."""

    connected: bool
    at: datetime
    phase: ClassVar[Phase] = Phase.OFF_REPLY_PATH


Effect = (
    TariffSnapshot
    | FinalCost
    | BillingJob
    | Rebalance
    | DefaultProfiles
    | IncidentAlert
    | WaitlistCheck
    | LiveStatus
    | LiveConnection
)

# Versions whose answer to a session's end carries its final cost (1.6 StopTransaction.conf has no field for
# it; 2.1 answers with the 2.0.1 handlers).
TOTAL_COST_IN_ANSWER = frozenset({"2.0.1", "2.1"})


# --- the map -----------------------------------------------------------------------------------------------
def effects_for(outcome: Outcome, *, version: str) -> tuple[Effect, ...]:
    """The effects of one outcome, in the order they start."""
    answer_cost = version in TOTAL_COST_IN_ANSWER
    match outcome:
        case SessionOpened(session_id=session_id, station_id=station_id):
            return (TariffSnapshot(session_id), Rebalance(station_id))
        case SessionEnded(session_id=session_id, station_id=station_id, repeated=False):
            final = (FinalCost(session_id),) if answer_cost else ()
            return (BillingJob(session_id), Rebalance(station_id), *final)
        case SessionEnded(session_id=session_id, repeated=True):
            # Reported again (a redelivered or late end): nothing runs twice, the answer is the same.
            return (FinalCost(session_id),) if answer_cost else ()
        case StationBooted(station_id=station_id):
            return (DefaultProfiles(station_id),)
        case StatusReported(station_id=station_id, report=report):
            if report.status == ConnectorStatus.AVAILABLE:
                return (LiveStatus(report), WaitlistCheck(station_id))
            return (LiveStatus(report),)
        case IncidentOpened():
            return (IncidentAlert(),)
        case StationConnected(at=at):
            return (LiveConnection(connected=True, at=at),)
        case StationDisconnected(at=at):
            return (LiveConnection(connected=False, at=at),)
    raise TypeError(f"no effects defined for {outcome!r}")


def effects_of(outcomes: Iterable[Outcome], *, version: str) -> list[Effect]:
    """The effects of a report's outcomes, each once (a 2.0.1 event that opens and ends a session rebalances
    its site once)."""
    effects: list[Effect] = []
    for outcome in outcomes:
        effects += [effect for effect in effects_for(outcome, version=version) if effect not in effects]
    return effects


# --- running them ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Applied:
    """What the BEFORE_ANSWER effects read for the answer."""

    total_cost: float | None = None


NOTHING = Applied()


async def apply(outcomes: Iterable[Outcome], *, station: StationContext, version: str) -> Applied:
    """Run the effects of `outcomes` (reported by a service whose transaction has committed) for `station`'s
    connection speaking `version`: the BEFORE_ANSWER ones awaited, then the OFF_REPLY_PATH ones started."""
    if not outcomes:
        return NOTHING  # most reports (meter values) have none
    effects = effects_of(outcomes, version=version)
    total_cost = None
    for effect in effects:
        if effect.phase is Phase.BEFORE_ANSWER:
            value = await run_before_answer(effect, station)
            if isinstance(effect, FinalCost):
                total_cost = value
    for effect in effects:
        if effect.phase is Phase.OFF_REPLY_PATH:
            start_off_reply_path(effect, station)
    return Applied(total_cost=total_cost)


async def run_before_answer(effect: Effect, station: StationContext) -> float | None:
    """Run a BEFORE_ANSWER effect; never raises (the charger must be answered regardless)."""
    match effect:
        case TariffSnapshot(session_id=session_id):
            try:
                await run_db(session_pricing_snapshot, session_id=session_id)
            except Exception:
                logger.exception("tariff snapshot of session %s failed; billing will take it", session_id)
            return None
        case FinalCost(session_id=session_id):
            try:
                total = await run_db(session_final_cost, session_id=session_id)
            except Exception:
                logger.exception("final cost of session %s failed; answered without totalCost", session_id)
                return None
            # A JSON number (the schema's "number"); the Decimal is rounded to the currency's minor unit, and
            # a float of it prints back as the same decimal (shortest repr).
            return None if total is None else float(total)
    raise TypeError(f"{effect!r} does not run before the answer")


def start_off_reply_path(effect: Effect, station: StationContext) -> None:
    """Start an OFF_REPLY_PATH effect and return at once."""
    match effect:
        case BillingJob(session_id=session_id):
            task_queue.submit(session_bill, session_id)
        case Rebalance(station_id=station_id):
            task_queue.submit_batched(stations_site_rebalance, station_id)
        case DefaultProfiles(station_id=station_id):
            task_queue.submit_batched(stations_default_profiles, station_id)
        case IncidentAlert():
            task_queue.submit(incidents_notify_pending)
        case WaitlistCheck(station_id=station_id):
            _waitlist_check_soon(station_id)
        case LiveStatus(report=report):
            event = status_event(
                identity=station.identity,
                evse_id=report.evse_id,
                connector_id=report.connector_id if report.evse_id is not None else None,
                status=report.status,
                at=format_datetime(report.occurred_at),
            )
            _in_background(_live_publish(station, event))
        case LiveConnection(connected=connected, at=at):
            event = connection_event(identity=station.identity, connected=connected, at=format_datetime(at))
            _in_background(_live_publish(station, event))
        case _:
            raise TypeError(f"{effect!r} does not run off the reply path")


# Running background tasks, referenced so they are not garbage-collected before they finish.
_pending: set[asyncio.Task[None]] = set()


def _in_background(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(work)
    _pending.add(task)
    task.add_done_callback(_pending.discard)


# Stations whose connector reported Available, gathered for OCPP_TASK_BATCH_S: a storm's statuses cost one
# query for all of them, not one each (issue 13).
_waitlist_stations: set[int] = set()


def _waitlist_check_soon(station_id: int) -> None:
    if settings.OCPP_TASK_BATCH_S <= 0:
        _in_background(_waitlist_check({station_id}))
        return
    _waitlist_stations.add(station_id)
    _waitlist_flusher.wake()


async def _waitlist_flush() -> None:
    global _waitlist_stations
    stations, _waitlist_stations = _waitlist_stations, set()
    await _waitlist_check(stations)


async def _waitlist_check(station_ids: set[int]) -> None:
    """Queue the waitlist advance of the sites among these stations' where someone waits. A failed look is
    caught by the periodic advance (sessions.tasks.waitlists_advance)."""
    try:
        sites = await run_db(waitlist_sites_for_stations, station_ids=sorted(station_ids))
    except Exception:
        logger.exception(
            "waitlist check of %d station(s) failed; the periodic advance catches up", len(station_ids)
        )
        return
    for site_id in sites:
        task_queue.submit(waitlist_advance_site, site_id)


_waitlist_flusher = PeriodicFlush(
    _waitlist_flush, pending=lambda: bool(_waitlist_stations), interval_s=lambda: settings.OCPP_TASK_BATCH_S
)


def _live_publish(station: StationContext, event: dict[str, Any]) -> Coroutine[Any, Any, None]:
    # The channel layer may be slow or down (case 32): live_publish bounds its wait and never raises.
    return live_publish(organisation_id=station.organisation_id, site_id=station.site_id, event=event)
