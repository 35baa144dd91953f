"""The kill-point test hook of the fault drills (cpms/ocpp/drill_hook.py): off unless configured, and
exact about which CALL it fires on."""

import signal

import pytest

from cpms.ocpp import drill_hook


def test_the_hook_is_off_without_its_environment_variable():
    # The test run sets no CPMS_DRILL_KILL_AT: every point costs one falsy check.
    assert drill_hook.ARMED == ()


def test_specs_are_parsed_in_order():
    assert drill_hook.parse("received:StartTransaction:2, answered:TransactionEvent:20") == (
        drill_hook.KillSpec(index=0, point="received", action="StartTransaction", n=2),
        drill_hook.KillSpec(index=1, point="answered", action="TransactionEvent", n=20),
    )


def test_an_unknown_point_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown point 'after'"):
        drill_hook.parse("after:StopTransaction:1")


def test_fires_on_the_nth_call_of_its_action_at_its_point_once_across_processes(monkeypatch, tmp_path):
    killed: list[tuple[int, int]] = []
    monkeypatch.setattr(drill_hook.os, "kill", lambda pid, sig: killed.append((pid, sig)))
    monkeypatch.setattr(drill_hook, "ARMED", drill_hook.parse("committed:MeterValues:2"))
    monkeypatch.setattr(drill_hook, "_seen", drill_hook.Counter())
    monkeypatch.setattr(drill_hook, "_ONCE", str(tmp_path / "fired"))

    drill_hook.reached("committed", "MeterValues")
    drill_hook.reached("received", "MeterValues")
    drill_hook.reached("committed", "StopTransaction")
    assert killed == []
    drill_hook.reached("committed", "MeterValues")
    assert killed == [(drill_hook.os.getpid(), signal.SIGKILL)]
    assert (tmp_path / "fired.0").exists()

    # A restarted process (its count from zero) finds the spec fired already.
    monkeypatch.setattr(drill_hook, "_seen", drill_hook.Counter())
    drill_hook.reached("committed", "MeterValues")
    drill_hook.reached("committed", "MeterValues")
    assert len(killed) == 1
