"""The simulated EV obeys the charger's current limit from its charging profiles."""

import random

from cpms.simulator.meter import EnergyMeter, EvSession


def ev(seed: int = 3) -> EvSession:
    rng = random.Random(seed)
    session = EvSession(rng, EnergyMeter(rng), max_current_a=32.0)
    session.soc = 20.0  # well below the taper
    session.max_current_a = 32.0
    return session


def test_the_ev_draws_at_most_the_profile_limit():
    free, limited = ev(), ev()
    start_wh = free.meter.register_wh
    assert limited.meter.register_wh == start_wh  # same seed: the same car and meter
    free_sample = free.advance(3600)
    limited_sample = limited.advance(3600, limit_a=10.0)
    assert max(free_sample.current_a) > 30.0
    assert max(limited_sample.current_a) <= 10.0
    # About a third of the energy for a third of the current (same voltages).
    assert (limited_sample.energy_wh - start_wh) < (free_sample.energy_wh - start_wh) / 3 + 10


def test_below_six_amps_the_ev_pauses():
    paused = ev()
    start_wh = paused.meter.register_wh
    sample = paused.advance(3600, limit_a=5.9)
    assert (sample.current_a, sample.energy_wh, sample.power_w) == ((0.0, 0.0, 0.0), start_wh, 0)
