"""The simulator's side of the security-profile upgrade (issue 16; 1.6 security whitepaper A05, 2.0.1 A05/B09),
against a frame-level CSMS: what it refuses, and where it connects next. The upgrade through a real server and
nginx is tests/e2e/test_profile_upgrade.py."""

import asyncio

from cpms.simulator import SimulatedCharger
from cpms.simulator.charger import Endpoint
from tests.stations.test_simulator_commands import EXAMPLES, IDENTITY, WAIT_S, FrameCsms, _run


async def _until(predicate) -> None:
    async with asyncio.timeout(WAIT_S):
        while not predicate():
            await asyncio.sleep(0.01)


def _change(value: str) -> dict:
    return {"key": "SecurityProfile", "value": value}


def test_v16_takes_only_a_higher_profile_and_3_only_with_a_certificate_then_reconnects_over_tls():
    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        base = charger.config.url
        same = await csms.call("ChangeConfiguration", _change("1"))
        without_certificate = await csms.call("ChangeConfiguration", _change("3"))
        beyond = await csms.call("ChangeConfiguration", _change("4"))
        before = charger.endpoint
        to_2 = await csms.call("ChangeConfiguration", _change("2"))
        await _until(lambda: charger.endpoint.security_profile == 2)
        return base, (same, without_certificate, beyond, to_2), before, charger.endpoint

    base, answers, before, after = _run(scenario, "1.6")

    assert answers == ({"status": "Rejected"},) * 3 + ({"status": "Accepted"},)
    assert before == Endpoint(url=base, security_profile=1)
    # No TLS URL given: the configured one over wss:// (the reconnection to it fails here: no TLS server).
    assert after == Endpoint(url="wss://" + base.removeprefix("ws://"), security_profile=2)


def test_v201_reconnects_with_the_first_priority_slot_after_a_reset():
    async def scenario(csms: FrameCsms, charger: SimulatedCharger):
        other = charger.config.url.rstrip("/") + "/other/"
        example = EXAMPLES["2.0.1"]["SetNetworkProfile"]
        lower = {**example, "connectionData": {**example["connectionData"], "securityProfile": 0}}
        slot_1 = {
            "configurationSlot": 1,
            "connectionData": {**example["connectionData"], "ocppCsmsUrl": other, "securityProfile": 1},
        }
        answers = [
            await csms.call("SetNetworkProfile", lower),
            await csms.call("SetNetworkProfile", slot_1),
            await csms.call(
                "SetVariables",
                {
                    "setVariableData": [
                        {
                            "attributeValue": "1,0",
                            "component": {"name": "OCPPCommCtrlr"},
                            "variable": {"name": "NetworkConfigurationPriority"},
                        }
                    ]
                },
            ),
            await csms.call("Reset", {"type": "Immediate"}),
        ]
        await csms.wait_for("BootNotification", count=2)
        return other, answers, charger.endpoint, charger.url

    other, answers, endpoint, url = _run(scenario, "2.0.1", max_reboots=2)

    assert answers == [
        {"status": "Rejected"},
        {"status": "Accepted"},
        {
            "setVariableResult": [
                {
                    "attributeStatus": "Accepted",
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "NetworkConfigurationPriority"},
                }
            ]
        },
        {"status": "Accepted"},
    ]
    assert endpoint == Endpoint(url=other, security_profile=1)
    assert url == other + IDENTITY
