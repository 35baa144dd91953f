"""The launcher's restart policy (cpms/launcher.py): backoff while a child keeps dying quickly, reset after a
stable run, giving up past the limit. The real launcher with its real children: tests/e2e/test_launcher.py."""

import sys

from cpms import launcher


def test_rel_47_supervisor_backs_off_a_crash_looping_child_and_gives_up():
    child = launcher.Child("flaky", [sys.executable, "-c", "raise SystemExit(3)"])
    supervisor = launcher.Supervisor([child], restart_limit=3, max_delay_s=4.0)
    now = 1000.0
    child.start()
    child.started_at = now  # the supervisor's clock in this test
    delays = []
    gave_up = None
    while gave_up is None:
        child.process.wait(timeout=30)
        now += 1.0  # each run lasted a second: a quick death
        gave_up = supervisor.check(now)
        if gave_up is None:
            delays.append(child.restart_at - now)
            now = child.restart_at
            assert supervisor.check(now) is None  # restarts it
            child.started_at = now

    # 1 s, 2 s, 4 s (the cap), then the fourth quick death in a row is one too many.
    assert (delays, gave_up) == ([1.0, 2.0, 4.0], "flaky")
    assert (child.restarts, child.crashes, child.exit_codes) == (3, 4, [3, 3, 3, 3])


def test_rel_47_supervisor_resets_the_backoff_after_a_stable_run():
    child = launcher.Child("steady", [sys.executable, "-c", "raise SystemExit(0)"])
    supervisor = launcher.Supervisor([child], restart_limit=1, max_delay_s=30.0)
    child.start()
    child.quick_deaths = 1  # it had died quickly before this run
    child.process.wait(timeout=30)

    assert supervisor.check(child.started_at + 61.0) is None

    assert (child.quick_deaths, child.restart_at - child.started_at) == (0, 62.0)
