"""Remote commands with the platform scaled out: the simulated chargers hold their connections to server
process A, the API calls go to server process B, and the answers come back to the caller (through Redis
when REDIS_URL is set, as in CI; through the database poller otherwise)."""

import asyncio
import json
import threading
import time

import pytest

from cpms.simulator import FleetConfig, run_fleet
from stations.models import ChargingStation, Command, DeviceVariable
from tests.e2e.helpers import api_post, operator_token
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


class RunningFleet:
    """The simulator in a thread of its own, connected until stopped."""

    def __init__(self, config: FleetConfig):
        self.loop = asyncio.new_event_loop()
        self.task = None
        self.thread = threading.Thread(target=self._run, args=(config,), daemon=True)

    def _run(self, config: FleetConfig) -> None:
        asyncio.set_event_loop(self.loop)
        self.task = self.loop.create_task(run_fleet(config))
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            # The chargers' own tasks (keepalive, heartbeats) go with it, each given its cancellation.
            leftover = asyncio.all_tasks(self.loop)
            for task in leftover:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        finally:
            self.loop.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(timeout=15)


def wait_connected(identities: tuple[str, ...], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        connected = ChargingStation.objects.filter(identity__in=identities, is_connected=True).count()
        if connected == len(identities):
            return
        time.sleep(0.1)
    pytest.fail(f"stations {identities} did not connect")


def test_e2e_command_issued_on_one_process_reaches_the_charger_on_another(cpms_server, cpms_server_b):
    v16 = ChargingStationFactory(identity="E2E-CMD-16")
    v201 = ChargingStationFactory(identity="E2E-CMD-201", organisation=v16.organisation, site=v16.site)
    token = operator_token(v16.organisation, "cmd-operator")
    identities = (v16.identity, v201.identity)
    config = FleetConfig(
        url=cpms_server.ws_url,  # the chargers are on process A
        identities=identities,
        protocol="mixed",
        password=DEFAULT_STATION_PASSWORD,
        duration_s=120,
        response_timeout_s=15,
    )
    with RunningFleet(config):
        wait_connected(identities)
        # ... and the operator talks to process B.
        status_16, body_16 = api_post(
            cpms_server_b,
            f"/api/v1/stations/{v16.identity}/ocpp/GetConfiguration/?timeout=15",
            {"key": ["HeartbeatInterval"]},
            token=token,
        )
        status_201, body_201 = api_post(
            cpms_server_b,
            f"/api/v1/stations/{v201.identity}/ocpp/GetVariables/?timeout=15",
            {
                "getVariableData": [
                    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
                ]
            },
            token=token,
        )
        status_off, body_off = api_post(
            cpms_server_b, "/api/v1/stations/E2E-CMD-16/ocpp/Reset/", {"type": "Sideways"}, token=token
        )

    assert status_16 == 200, body_16
    assert body_16["action"] == "GetConfiguration"
    [key] = body_16["response"]["configurationKey"]
    assert key["key"] == "HeartbeatInterval"
    assert status_201 == 200, body_201
    [result] = body_201["response"]["getVariableResult"]
    assert (result["attributeStatus"], result["variable"]["name"]) == ("Accepted", "HeartbeatInterval")
    assert status_off == 400, body_off  # schema-checked by process B before anything is sent
    assert "type" in body_off["detail"]

    for body, identity in ((body_16, v16.identity), (body_201, v201.identity)):
        command = Command.objects.select_related("station", "requested_by").get(pk=body["command"]["id"])
        assert command.station.identity == identity
        assert (command.status, command.source, command.requested_by.username) == (
            "answered",
            "api",
            "cmd-operator",
        )
        assert command.response == body["response"]
        assert command.unique_id and command.error_code == ""
        assert command.created_at <= command.sent_at <= command.finished_at
    # The 1.6 answer went through the answer hook into the device model.
    stored = DeviceVariable.objects.get(station=v16, component="OCPP16", variable="HeartbeatInterval")
    assert stored.value == key["value"]
    assert Command.objects.count() == 2


def test_e2e_every_csms_action_is_answered_by_the_simulator_through_the_api(cpms_server, cpms_server_b):
    """Every CSMS-initiated action of both versions, sent through the API of process B to simulated chargers
    on process A: each is schema-checked on the way out, answered by the simulator, and its answer
    schema-checked on the way back (an invalid answer would be a 502)."""
    from tests.stations.test_simulator_commands import EXAMPLES, HTTP

    # Transfers (firmware, logs) go to a closed local port: the charger reports them failed, quickly.
    examples = json.loads(json.dumps(EXAMPLES).replace(HTTP, "http://127.0.0.1:9"))
    v16 = ChargingStationFactory(identity="E2E-ALL-16")
    v201 = ChargingStationFactory(identity="E2E-ALL-201", organisation=v16.organisation, site=v16.site)
    token = operator_token(v16.organisation, "all-actions")
    identities = (v16.identity, v201.identity)
    config = FleetConfig(
        url=cpms_server.ws_url,
        identities=identities,
        protocol="mixed",
        password=DEFAULT_STATION_PASSWORD,
        duration_s=300,
        response_timeout_s=15,
    )
    outcomes = {}
    with RunningFleet(config):
        wait_connected(identities)
        for identity, version in ((v16.identity, "1.6"), (v201.identity, "2.0.1")):
            # Reset last: the simulator reboots on it.
            for action in sorted(examples[version], key=lambda name: (name == "Reset", name)):
                started = time.monotonic()
                status, body = api_post(
                    cpms_server_b,
                    f"/api/v1/stations/{identity}/ocpp/{action}/?timeout=15",
                    examples[version][action],
                    token=token,
                )
                outcomes[(version, action)] = (status, body and body.get("detail"))
                outcomes[(version, action)] += (round(time.monotonic() - started, 2),)

    failures = {key: outcome for key, outcome in outcomes.items() if outcome[0] != 200}  # (status, detail, s)
    assert failures == {}
    assert len(outcomes) == 26 + 40
    assert Command.objects.filter(status="answered").count() == 66
