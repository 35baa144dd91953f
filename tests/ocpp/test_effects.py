"""The one map of what follows a charger's report (cpms.ocpp.effects): for each outcome the exact effects and
their phase, the order `apply` runs them in, and the handlers of every version reaching the same effects
through it. The effects themselves (jobs queued, snapshot taken, live events, ...) are proved end to end in
test_billing_hooks, test_energy_hooks, test_waitlist_hooks, test_incident_hooks and tests/portal."""

import ast
import asyncio
import inspect
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from billing.models import SessionPricing
from cpms.ocpp import common, effects
from cpms.ocpp.chargepoint import StationContext
from cpms.ocpp.effects import (
    Applied,
    BillingJob,
    DefaultProfiles,
    FinalCost,
    IncidentAlert,
    LiveConnection,
    LiveStatus,
    Phase,
    Rebalance,
    TariffSnapshot,
    WaitlistCheck,
)
from cpms.ocpp.v16 import handlers as v16_handlers
from cpms.ocpp.v201 import handlers as v201_handlers
from sessions.models import ChargingSession
from sessions.types import SessionEnded, SessionOpened
from stations.types import (
    ConnectorStatusReport,
    IncidentOpened,
    StationBooted,
    StationConnected,
    StationDisconnected,
    StatusReported,
)
from tests.factories import ChargingStationFactory, IdTokenFactory
from tests.ocpp.dialects import DIALECTS
from tests.ocpp.harness import Harness, inline_db  # noqa: F401

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
VERSIONS = ["1.6", "2.0.1", "2.1"]


def report(status: str) -> ConnectorStatusReport:
    return ConnectorStatusReport(
        evse_id=1,
        connector_id=2,
        status=status,
        error_code="",
        info="",
        vendor_id="",
        vendor_error_code="",
        occurred_at=AT,
        received_at=AT,
    )


def session_end_effects(version: str) -> tuple:
    after_commit = (BillingJob(7), Rebalance(3))
    return after_commit + ((FinalCost(7),) if version != "1.6" else ())


# (outcome, version) -> the exact effects, in order.
MAP = [
    *[(SessionOpened(session_id=7, station_id=3), v, (TariffSnapshot(7), Rebalance(3))) for v in VERSIONS],
    *[(SessionEnded(session_id=7, station_id=3), v, session_end_effects(v)) for v in VERSIONS],
    (SessionEnded(session_id=7, station_id=3, repeated=True), "1.6", ()),
    (SessionEnded(session_id=7, station_id=3, repeated=True), "2.0.1", (FinalCost(7),)),
    (SessionEnded(session_id=7, station_id=3, repeated=True), "2.1", (FinalCost(7),)),
    *[(StationBooted(station_id=3), v, (DefaultProfiles(3),)) for v in VERSIONS],
    *[
        (
            StatusReported(station_id=3, report=report("Available")),
            v,
            (LiveStatus(report("Available")), WaitlistCheck(3)),
        )
        for v in VERSIONS
    ],
    *[
        (StatusReported(station_id=3, report=report(status)), v, (LiveStatus(report(status)),))
        for v in VERSIONS
        for status in ("Charging", "Occupied", "Faulted", "Unavailable", "Preparing")
    ],
    *[(IncidentOpened(station_id=3, incident_id=9), v, (IncidentAlert(),)) for v in VERSIONS],
    *[(StationConnected(station_id=3, at=AT), v, (LiveConnection(connected=True, at=AT),)) for v in VERSIONS],
    *[
        (StationDisconnected(station_id=3, at=AT), v, (LiveConnection(connected=False, at=AT),))
        for v in VERSIONS
    ],
]


@pytest.mark.parametrize(("outcome", "version", "expected"), MAP, ids=lambda v: type(v).__name__)
def test_each_outcome_has_exactly_its_effects(outcome, version, expected):
    assert effects.effects_for(outcome, version=version) == expected


def test_the_map_covers_every_outcome_type():
    mapped = {type(outcome) for outcome, _, _ in MAP}
    assert mapped == set(effects.Outcome.__args__)
    with pytest.raises(TypeError):
        effects.effects_for(object(), version="1.6")


def test_phases_are_explicit():
    phases = {effect_type.__name__: effect_type.phase for effect_type in effects.Effect.__args__}
    assert phases == {
        "TariffSnapshot": Phase.BEFORE_ANSWER,
        "FinalCost": Phase.BEFORE_ANSWER,
        "BillingJob": Phase.OFF_REPLY_PATH,
        "Rebalance": Phase.OFF_REPLY_PATH,
        "DefaultProfiles": Phase.OFF_REPLY_PATH,
        "IncidentAlert": Phase.OFF_REPLY_PATH,
        "WaitlistCheck": Phase.OFF_REPLY_PATH,
        "LiveStatus": Phase.OFF_REPLY_PATH,
        "LiveConnection": Phase.OFF_REPLY_PATH,
    }


def test_a_session_opened_and_ended_by_one_event_rebalances_once():
    outcomes = (SessionOpened(session_id=7, station_id=3), SessionEnded(session_id=7, station_id=3))
    assert effects.effects_of(outcomes, version="2.0.1") == [
        TariffSnapshot(7),
        Rebalance(3),
        BillingJob(7),
        FinalCost(7),
    ]


@pytest.fixture
def performed(monkeypatch) -> list[tuple[str, object]]:
    """Fakes for running the effects: ("await", effect) for BEFORE_ANSWER, ("start", effect) for the others,
    in the order `apply` ran them. FinalCost reads 4.2."""
    done: list[tuple[str, object]] = []

    async def run_before_answer(effect, station):
        await asyncio.sleep(0)
        done.append(("await", effect))
        return 4.2 if isinstance(effect, FinalCost) else None

    def start_off_reply_path(effect, station):
        done.append(("start", effect))

    monkeypatch.setattr(effects, "run_before_answer", run_before_answer)
    monkeypatch.setattr(effects, "start_off_reply_path", start_off_reply_path)
    return done


STATION = StationContext(station_id=3, identity="CP", organisation_id=1, registration_status="Accepted")


def test_apply_awaits_what_comes_before_the_answer_then_starts_the_rest(performed):
    outcomes = (SessionOpened(session_id=7, station_id=3), SessionEnded(session_id=7, station_id=3))
    applied = asyncio.run(effects.apply(outcomes, station=STATION, version="2.0.1"))
    assert applied == Applied(total_cost=4.2)
    assert performed == [
        ("await", TariffSnapshot(7)),
        ("await", FinalCost(7)),
        ("start", Rebalance(3)),
        ("start", BillingJob(7)),
    ]


def test_apply_without_outcomes_does_nothing(performed):
    assert asyncio.run(effects.apply((), station=STATION, version="1.6")) == Applied(total_cost=None)
    assert performed == []


@pytest.mark.usefixtures("inline_db")
@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_every_version_starts_and_ends_a_session_with_the_same_effects(dialect, performed):
    """1.6 Start/StopTransaction and 2.0.1/2.1 TransactionEvent Started/Ended, through the real handlers and
    services: the same effects after the commit; 2.0.1 and 2.1 also read the final cost for their answer.
    A repeated stop starts nothing again."""
    dialect = dialect()
    station = ChargingStationFactory(identity="CP-FX")
    IdTokenFactory(organisation=station.organisation, value="GOOD")
    cp = Harness(dialect.cp_class, station)
    t0 = timezone.now().replace(microsecond=0) - timedelta(minutes=10)

    dialect.started("TX", cp.call(*dialect.start("TX", "GOOD", 1_000, t0), "s"))
    session = ChargingSession.objects.get(station=station)
    assert performed == [("await", TariffSnapshot(session.pk)), ("start", Rebalance(station.pk))]

    performed.clear()
    stop = dialect.stop("TX", 5_000, t0 + timedelta(minutes=5))
    answer = cp.call(*stop, "e1")
    final = [("await", FinalCost(session.pk))] if dialect.name != "1.6" else []
    assert performed == [*final, ("start", BillingJob(session.pk)), ("start", Rebalance(station.pk))]
    # The cost the effect read is the answer's totalCost (2.0.1 I03); 1.6 has no field for it.
    assert answer[2].get("totalCost") == (4.2 if dialect.name != "1.6" else None)

    performed.clear()
    cp.call(*stop, "e2")
    assert performed == final


@pytest.mark.usefixtures("inline_db")
@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_a_failed_tariff_snapshot_still_answers_the_start(dialect, monkeypatch, queued_tasks):
    def broken(**kwargs):
        raise RuntimeError("tariff tables unavailable")

    monkeypatch.setattr(effects, "session_pricing_snapshot", broken)
    dialect = dialect()
    station = ChargingStationFactory(identity="CP-FX2")
    IdTokenFactory(organisation=station.organisation, value="GOOD")
    cp = Harness(dialect.cp_class, station)
    answer = cp.call(*dialect.start("TX", "GOOD", 1_000, timezone.now() - timedelta(minutes=1)), "s")
    assert answer[0] == 3
    assert dialect.start_token_status(answer) == "Accepted"
    assert ChargingSession.objects.filter(station=station).count() == 1
    assert not SessionPricing.objects.exists()
    # What comes after the answer still starts.
    assert [name for name, _ in queued_tasks] == ["energy.tasks.stations_site_rebalance"]


def _imported_modules(module) -> set[str]:
    tree = ast.parse(inspect.getsource(module))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("module", [v16_handlers, v201_handlers, common], ids=lambda m: m.__name__)
def test_handlers_hold_no_effects_of_their_own(module):
    """Issue 14: the handlers map, call one service, pass its outcomes to cpms.ocpp.effects and map the
    answer; no job, billing, energy or live-status code of their own."""
    forbidden = [
        name
        for name in _imported_modules(module)
        if name.startswith(("billing", "energy", "cpms.portal", "cpms.ocpp.task_queue"))
        or name.endswith((".tasks", "_hooks"))
        or name == "cpms.ocpp.task_queue"
    ]
    assert forbidden == []
