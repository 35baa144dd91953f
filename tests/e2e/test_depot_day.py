"""Issue 6, acceptance 2: a compressed day at a depot. Eight simulated chargers (six 1.6, two 2.0.1) behind one
64 A grid connection see staggered arrivals and departures against a real server and a real Celery worker,
which rebalance the site at every session start and stop. From the stored meter values: the site's current
per phase stayed within the limit at every recorded instant, and the energy delivered is a stated fraction
of what the same EVs would have taken unconstrained over the same session windows.
"""

import asyncio
import random
import time
from decimal import Decimal

import pytest

from cpms.simulator.charger import SimulatedCharger
from cpms.simulator.config import ChargerConfig
from cpms.simulator.meter import EnergyMeter, EvSession
from energy.enums import ProfileKind
from energy.models import ChargingProfileRecord
from energy.services.topology import evse_electrical_set, grid_node_create
from sessions.enums import IdTokenStatus, SessionStatus
from sessions.models import ChargingSession, MeterValue
from tests.factories import (
    DEFAULT_STATION_PASSWORD,
    ChargingStationFactory,
    ConnectorFactory,
    EvseFactory,
    IdTokenFactory,
    SiteFactory,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

SITE_LIMIT_A = Decimal(64)
METER_INTERVAL_S = 0.5
# 0.5 s real = 12 min simulated: the 30 s "day" below is a 12-hour depot shift.
SPEEDUP = 1440
SEED = 6
# (identity, OCPP version, arrival, departure) in real seconds after every charger has its fail-safe default.
DAY = (
    ("DEPOT-01", "1.6", 0.0, 14.0),
    ("DEPOT-02", "1.6", 1.5, 20.0),
    ("DEPOT-03", "2.0.1", 3.0, 10.0),
    ("DEPOT-04", "1.6", 5.0, 24.0),
    ("DEPOT-05", "1.6", 8.0, 28.0),
    ("DEPOT-06", "2.0.1", 11.0, 22.0),
    ("DEPOT-07", "1.6", 13.0, 30.0),
    ("DEPOT-08", "1.6", 16.0, 26.0),
)
ID_TAG = "DEPOT-TAG"
# Every reading is the charger's limit x uniform(0.97, 1.0) rounded to 0.1 A (cpms/simulator/meter.py),
# so one EVSE may read up to 0.05 A above its limit: at most 8 x 0.05 A over the site.
ROUNDING_TOLERANCE_A = Decimal("0.05") * len(DAY)
# The simulated cars draw at most this (cpms/simulator/meter.py: 16 A on-board chargers here).
EV_MAX_A = 16
# Delivered / unconstrained optimum must reach this. Unconstrained, the day's peak demand is 6 x 16 A = 96 A
# on a 64 A connection, and the balancer keeps each idle charger's fail-safe share (8 A) free for a car that
# plugs in; measured 0.729 on SQLite (printed by the test).
MIN_ENERGY_FRACTION = 0.65
SETUP_TIMEOUT_S = 30.0


@pytest.fixture(autouse=True)
def _depot_settings(monkeypatch):
    # Read by the server and worker processes (tests/e2e/conftest.py passes the environment on). The
    # 30 s default between two profiles of an EVSE is 12 simulated hours here: scaled like the day.
    monkeypatch.setenv("ENERGY_MIN_SEND_INTERVAL_S", "0.5")


def _depot():
    site = SiteFactory()
    grid = grid_node_create(site=site, name="Grid connection", limit_a=SITE_LIMIT_A)
    circuit = grid_node_create(site=site, name="Depot circuit", parent_id=grid.pk, limit_a=SITE_LIMIT_A)
    for identity, _version, _arrival, _departure in DAY:
        station = ChargingStationFactory(identity=identity, site=site)
        evse = EvseFactory(station=station, evse_id=1)
        ConnectorFactory(evse=evse, connector_id=1)
        evse_electrical_set(
            evse=evse, node_id=circuit.pk, min_current_a=Decimal(6), max_current_a=Decimal(32)
        )
    IdTokenFactory(organisation=site.organisation, value=ID_TAG, status=IdTokenStatus.ACCEPTED)


def _defaults_accepted() -> int:
    return ChargingProfileRecord.objects.filter(kind=ProfileKind.DEFAULT, status="Accepted").count()


async def _replay_day(url: str) -> list[SimulatedCharger]:
    chargers = [
        SimulatedCharger(
            ChargerConfig(
                url=url,
                identity=identity,
                protocol=version,
                password=DEFAULT_STATION_PASSWORD,
                connectors=1,
                # More than any visit lasts: each session ends at its departure below.
                meter_samples=1000,
                meter_interval_s=METER_INTERVAL_S,
                speedup=SPEEDUP,
                # The day's sessions are driven below; this keeps the chargers connected meanwhile.
                duration_s=600,
                id_tag=ID_TAG,
                seed=SEED,
                response_timeout_s=15,
            )
        )
        for identity, version, _arrival, _departure in DAY
    ]
    runs = [asyncio.create_task(charger.run()) for charger in chargers]
    try:
        # A session draws its fail-safe default until its TxProfile comes: the day starts once every charger
        # has it.
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        while await asyncio.to_thread(_defaults_accepted) < len(DAY):
            assert time.monotonic() < deadline, [c.result.failure for c in chargers]
            await asyncio.sleep(0.1)

        async def visit(charger: SimulatedCharger, arrival: float, departure: float) -> None:
            await asyncio.sleep(arrival)
            connector = charger.connectors[1]
            task = charger.spawn(charger.run_session(connector, id_tag=ID_TAG, remote=False), session=True)
            await asyncio.sleep(departure - arrival)
            connector.session.request_stop("EVDisconnected")
            await task

        await asyncio.gather(
            *(
                visit(charger, arrival, departure)
                for charger, (_identity, _version, arrival, departure) in zip(chargers, DAY, strict=True)
            )
        )
    finally:
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
    return chargers


def _unconstrained_wh(charger: SimulatedCharger, samples: int) -> float:
    """What the session's EV would have taken over the same samples without any profile: the simulator's
    own model (charger.run_session) replayed with the same random draws and no limit."""
    config = charger.config
    ev = EvSession(random.Random(f"{config.seed}:{config.identity}:1"), EnergyMeter(random.Random(0)))
    start = ev.meter.register_wh + ev.meter._fraction_wh
    for _ in range(samples):
        ev.advance(METER_INTERVAL_S * SPEEDUP)
    return ev.meter.register_wh + ev.meter._fraction_wh - start


def _site_current_peaks(sessions: list[ChargingSession]) -> tuple[list[Decimal], int, list]:
    """The site's highest total current per phase over every recorded instant (each EVSE counts its latest
    reading at or before the instant, 0 outside its session), how many instants there were, and the instants
    above the limit (with each station's L1 then) to explain a failure."""
    readings = {}  # session pk -> [(timestamp, phase, amps)] in time order
    for session in sessions:
        rows = MeterValue.objects.filter(session=session, measurand="Current.Import").order_by("timestamp")
        readings[session.pk] = [(row.timestamp, row.phase, row.value) for row in rows]
    instants = sorted({ts for rows in readings.values() for ts, _phase, _amps in rows})
    peaks = [Decimal(0)] * 3
    over = []
    for instant in instants:
        totals = [Decimal(0)] * 3
        by_station = {}
        for session in sessions:
            if not session.started_at <= instant <= session.stopped_at:
                continue
            latest = {}
            for ts, phase, amps in readings[session.pk]:
                if ts > instant:
                    break
                latest[phase] = amps
            for index, phase in enumerate(("L1", "L2", "L3")):
                totals[index] += latest.get(phase, Decimal(0))
            by_station[session.station.identity] = str(latest.get("L1", Decimal(0)))
        peaks = [max(peak, total) for peak, total in zip(peaks, totals, strict=True)]
        if max(totals) > SITE_LIMIT_A + ROUNDING_TOLERANCE_A:
            over.append((instant.time().isoformat(), [str(t) for t in totals], by_station))
    return peaks, len(instants), over


def test_depot_day_holds_the_site_limit(cpms_server, celery_worker_process, capsys):
    _depot()
    started = time.monotonic()

    chargers = asyncio.run(_replay_day(cpms_server.ws_url))
    day_s = time.monotonic() - started

    records = {charger.config.identity: charger.result.sessions for charger in chargers}
    assert all(len(sessions) == 1 for sessions in records.values()), records
    assert [s[0].status for s in records.values()] == ["completed"] * len(DAY), [
        s[0].failure for s in records.values()
    ]
    sessions = list(
        ChargingSession.objects.filter(station__identity__in=records).order_by("station__identity")
    )
    assert [(s.station.identity, s.status) for s in sessions] == [
        (identity, SessionStatus.COMPLETED) for identity, *_ in DAY
    ]
    # The balancer did limit the sessions: every charger got TxProfiles on top of its default.
    assert set(
        ChargingProfileRecord.objects.filter(kind=ProfileKind.TRANSACTION, status="Accepted").values_list(
            "station__identity", flat=True
        )
    ) == set(records)

    peaks, instants, over = _site_current_peaks(sessions)
    delivered_wh = sum(s.energy_wh for s in sessions)
    optimum_wh = 0.0
    for charger in chargers:
        [record] = charger.result.sessions
        periodic = [
            mv
            for mv in record.meter_values
            if any(sv.get("context") == "Sample.Periodic" for sv in mv["sampledValue"])
        ]
        optimum_wh += _unconstrained_wh(charger, len(periodic))
    fraction = delivered_wh / optimum_wh
    with capsys.disabled():
        print(
            f"\ndepot day: {day_s:.1f} s real, {instants} instants, peak site current per phase "
            f"{[str(p) for p in peaks]} A (limit {SITE_LIMIT_A} A + {ROUNDING_TOLERANCE_A} A rounding); "
            f"delivered {delivered_wh} Wh of an unconstrained {optimum_wh:.0f} Wh = {fraction:.3f}"
        )

    assert instants > 100
    assert over == [], "\n".join(map(str, over))
    # Not a vacuous limit: at some instant more cars were charging than the site could feed at their own
    # maximum (EV_MAX_A each), so the balancer had to hold them back.
    overlap = max(
        sum(1 for other in sessions if other.started_at <= session.started_at < other.stopped_at)
        for session in sessions
    )
    assert overlap * EV_MAX_A > SITE_LIMIT_A, overlap
    assert fraction >= MIN_ENERGY_FRACTION, fraction
