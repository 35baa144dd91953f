"""cpms/gc_tuning.py: when the process freezes its heap. A fake loop (its clock and timers) and a recording gc;
one test on the real gc."""

import asyncio
import gc
import logging

import pytest

from cpms import gc_tuning
from cpms.gc_tuning import GcFreezer


class FakeLoop:
    def __init__(self):
        self.now = 0.0
        self.timers: list[Timer] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay, callback, *args):
        timer = Timer(self.now + delay, callback, args)
        self.timers.append(timer)
        return timer

    def pending(self) -> list["Timer"]:
        return [t for t in self.timers if not t.cancelled and not t.fired]

    def advance(self, seconds: float) -> None:
        """Move the clock, firing the timers that fall due, in order."""
        end = self.now + seconds
        while due := sorted((t for t in self.pending() if t.when <= end), key=lambda t: t.when):
            timer = due[0]
            self.now = timer.when
            timer.fired = True
            timer.callback(*timer.args)
        self.now = end


class Timer:
    def __init__(self, when, callback, args):
        self.when, self.callback, self.args = when, callback, args
        self.cancelled = self.fired = False

    def cancel(self):
        self.cancelled = True


class RecordingGc:
    def __init__(self, loop):
        self.loop = loop
        self.calls: list[str] = []
        self.frozen = 0
        self.frozen_at: list[float] = []

    def unfreeze(self):
        self.calls.append("unfreeze")
        self.frozen = 0

    def collect(self):
        self.calls.append("collect")
        return 7

    def freeze(self):
        self.calls.append("freeze")
        self.frozen_at.append(self.loop.now)
        self.frozen += 1000

    def get_freeze_count(self):
        return self.frozen


class Clock:
    def __init__(self, loop):
        self.loop = loop

    def __call__(self):
        return self.loop.now


@pytest.fixture
def loop():
    return FakeLoop()


@pytest.fixture
def recording_gc(loop):
    return RecordingGc(loop)


def freezer(loop, recording_gc, **options):
    options = {"quiet_s": 3.0, "min_connections": 5, "max_wait_s": 60.0, "reclaim_s": 3600.0, **options}
    return GcFreezer(loop=loop, gc_module=recording_gc, clock=Clock(loop), **options)


def admit(f: GcFreezer, loop: FakeLoop, count: int, every_s: float = 0.01) -> None:
    for _ in range(count):
        f.connection_opened()
        loop.advance(every_s)


def test_a_burst_is_frozen_once_when_admissions_have_been_quiet(loop, recording_gc, caplog):
    f = freezer(loop, recording_gc)
    f.freeze_now("at start")
    recording_gc.calls.clear()
    admit(f, loop, 50)  # a storm: 50 admissions in 0.5 s
    assert len(loop.pending()) == 1  # one timer for the storm, not one per connection
    loop.advance(2.0)
    assert recording_gc.calls == []  # 2 s since the last admission: not quiet yet
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cpms.gc_tuning"):
        loop.advance(1.5)
    assert recording_gc.calls == ["collect", "freeze"]  # no unfreeze within reclaim_s of the start's
    # Armed at the fifth admission (t=0.04); fired 3 s later, re-armed once, frozen 3 s after the last (t=0.49).
    assert [t.when for t in loop.timers if t.fired] == [pytest.approx(3.04), pytest.approx(3.49)]
    assert f.freezes == 2 and f.opened_since_freeze == 0
    [record] = caplog.records
    assert record.getMessage().startswith(
        "gc.freeze() after a burst of admissions (50 connections admitted since the last): 2000 objects frozen, "
        "7 collected"
    )
    loop.advance(60)
    assert recording_gc.calls == ["collect", "freeze"]  # nothing admitted since: no more


def test_fewer_admissions_than_the_minimum_never_arm_the_timer(loop, recording_gc):
    f = freezer(loop, recording_gc)
    admit(f, loop, 4, every_s=1.0)
    loop.advance(600)
    assert loop.pending() == [] and recording_gc.calls == []
    admit(f, loop, 1)  # the fifth since the last freeze
    loop.advance(3.0)
    assert recording_gc.calls == ["unfreeze", "collect", "freeze"]


def test_admissions_that_never_pause_are_frozen_after_max_wait(loop, recording_gc):
    f = freezer(loop, recording_gc, max_wait_s=20.0)
    admit(f, loop, 5, every_s=1.0)  # armed at t=4
    admit(f, loop, 21, every_s=1.0)  # one a second: never 3 s quiet
    assert recording_gc.calls == ["unfreeze", "collect", "freeze"]
    assert recording_gc.frozen_at == [pytest.approx(24.0)]  # armed at 4, + max_wait 20
    # Re-armed for the rest of the quiet time when it fires early (every ~2 s here), not per connection.
    assert len(loop.timers) == 10


def test_frozen_objects_are_collected_again_at_most_every_reclaim_s(loop, recording_gc):
    f = freezer(loop, recording_gc, reclaim_s=100.0)
    f.freeze_now("at start")
    for _ in range(4):
        admit(f, loop, 5)
        loop.advance(40)
    assert recording_gc.frozen_at == [0.0, *map(pytest.approx, (3.04, 43.09, 83.14, 123.19))]
    assert recording_gc.calls == [
        *["unfreeze", "collect", "freeze"],  # the start
        *["collect", "freeze"] * 3,
        *["unfreeze", "collect", "freeze"],  # t~123: the reclaim is 100 s old
    ]


def test_disabled_it_does_nothing(loop, recording_gc):
    f = freezer(loop, recording_gc, enabled=False)
    assert f.freeze_now("at start") == 0
    admit(f, loop, 500)
    loop.advance(600)
    assert recording_gc.calls == [] and loop.timers == []


def test_freeze_now_cancels_a_pending_burst_timer(loop, recording_gc):
    f = freezer(loop, recording_gc)
    admit(f, loop, 5)
    [timer] = loop.pending()
    f.freeze_now("at start")
    assert timer.cancelled and f.opened_since_freeze == 0
    loop.advance(600)
    assert recording_gc.calls == ["unfreeze", "collect", "freeze"]


def test_settings_drive_the_policy(settings):
    settings.OCPP_GC_FREEZE = False
    settings.OCPP_GC_FREEZE_QUIET_S = 2.0
    settings.OCPP_GC_FREEZE_MIN_CONNECTIONS = 50
    settings.OCPP_GC_FREEZE_MAX_WAIT_S = 30.0
    settings.OCPP_GC_RECLAIM_S = 900.0
    f = GcFreezer.from_settings()
    assert (f.enabled, f.quiet_s, f.min_connections, f.max_wait_s, f.reclaim_s) == (
        False,
        2.0,
        50,
        30.0,
        900.0,
    )


def test_without_settings_the_defaults_apply(settings):
    for name in ("OCPP_GC_FREEZE", "OCPP_GC_FREEZE_QUIET_S", "OCPP_GC_FREEZE_MIN_CONNECTIONS"):
        if hasattr(settings, name):
            delattr(settings, name)
    f = GcFreezer.from_settings()
    assert (f.enabled, f.quiet_s, f.min_connections) == (True, 3.0, 100)


def test_the_module_level_freezer_is_one_per_process(monkeypatch):
    monkeypatch.setattr(gc_tuning, "_freezer", None)
    assert gc_tuning.freezer() is gc_tuning.freezer()


def test_the_real_gc_freezes_the_heap():
    f = GcFreezer(min_connections=1)
    try:
        frozen = f.freeze_now("in a test")
        assert frozen == gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


def test_a_new_event_loop_drops_the_old_loops_timer():
    """Tests (and a restarted loop) run several event loops in one process: the timer armed in a loop that
    ended must not be used, nor fire into it."""
    freezer = GcFreezer(min_connections=1, quiet_s=60.0)

    async def admit():
        freezer.connection_opened()
        return freezer.timer

    first_timer = asyncio.run(admit())
    second_timer = asyncio.run(admit())  # the first loop is closed by now
    assert first_timer is not None and first_timer.cancelled()
    assert second_timer is not None and second_timer is not first_timer
