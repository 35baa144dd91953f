"""`POST /api/v1/stations/<identity>/ocpp/<Action>/` (docs/contract.md#any-ocpp-call-to-a-station) and the
command history. The charger is the fake one of tests/commands.py; the real consumer path is in
tests/ocpp/test_command_routing.py and across processes in tests/e2e/test_commands_two_processes.py."""

import pytest

from stations.models import ChargingStation, Command
from tests.commands import TIMEOUT, CallError


def url(identity: str, action: str) -> str:
    return f"/api/v1/stations/{identity}/ocpp/{action}/"


@pytest.fixture
def online(world):
    ChargingStation.objects.filter(
        pk__in=[world.station_a1.pk, world.station_a2.pk, world.station_b1.pk]
    ).update(is_connected=True, protocol="ocpp1.6")
    ChargingStation.objects.filter(pk=world.station_a2.pk).update(protocol="ocpp2.0.1")
    return world


def test_answered_call_returns_action_request_response_and_the_record(api, online, fake_charger):
    fake_charger.answers["Reset"] = {"status": "Scheduled"}
    response = api(online.operator_a).post(
        url("A2-CP1", "Reset"), {"type": "OnIdle", "evseId": 1}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["action"], body["request"], body["response"]) == (
        "Reset",
        {"type": "OnIdle", "evseId": 1},
        {"status": "Scheduled"},
    )
    command = Command.objects.get()
    assert body["command"]["id"] == command.pk
    assert (command.status, command.requested_by, command.source) == ("answered", online.operator_a, "api")
    assert body["command"]["requested_by"] == "operator_a"
    assert fake_charger.received == [("A2-CP1", "Reset", {"type": "OnIdle", "evseId": 1})]


def test_payload_is_validated_for_the_stations_own_version(api, online, fake_charger):
    # "Soft" is a 1.6 Reset type; station A2 speaks 2.0.1.
    response = api(online.operator_a).post(url("A2-CP1", "Reset"), {"type": "Soft"}, format="json")
    assert response.status_code == 400
    assert "type" in response.json()["detail"]
    assert response.json()["detail"].startswith("Reset (ocpp2.0.1):")
    ok = api(online.operator_a).post(url("A1-CP1", "Reset"), {"type": "Soft"}, format="json")
    assert ok.status_code == 200
    assert [c.action for c in Command.objects.all()] == ["Reset"]


@pytest.mark.parametrize(
    "action, body, fragment",
    [
        (
            "BootNotification",
            {"chargePointVendor": "x", "chargePointModel": "y"},
            "not a CSMS-initiated action",
        ),
        ("Nonsense", {}, "not a CSMS-initiated action"),
        ("Reset", {}, "type"),
        ("Reset", ["Soft"], "JSON object"),
        ("ChangeConfiguration", {"key": "k", "value": "v", "extra": 1}, "extra"),
    ],
)
def test_invalid_calls_are_400_with_the_reason_and_not_recorded(
    api, online, fake_charger, action, body, fragment
):
    response = api(online.operator_a).post(url("A1-CP1", action), body, format="json")
    assert response.status_code == 400
    assert fragment in response.json()["detail"]
    assert not Command.objects.exists()
    assert fake_charger.received == []


def test_offline_station_is_409_and_recorded(api, online, fake_charger):
    ChargingStation.objects.filter(pk=online.station_a1.pk).update(is_connected=False)
    response = api(online.operator_a).post(url("A1-CP1", "ClearCache"), {}, format="json")
    assert response.status_code == 409
    assert response.json()["command"]["error_code"] == "NotConnected"
    command = Command.objects.get()
    assert (command.status, command.requested_by) == ("failed", online.operator_a)
    assert fake_charger.received == []


def test_outbox_queue_answers_202_for_an_offline_station(api, online, fake_charger):
    ChargingStation.objects.filter(pk=online.station_a1.pk).update(is_connected=False)
    response = api(online.operator_a).post(url("A1-CP1", "ClearCache") + "?queue=3600", {}, format="json")
    assert response.status_code == 202
    command = Command.objects.get()
    assert (command.status, command.queued_until is not None) == ("pending", True)


def test_timeout_is_504(api, online, fake_charger):
    fake_charger.answers["ClearCache"] = TIMEOUT
    response = api(online.operator_a).post(url("A1-CP1", "ClearCache") + "?timeout=5", {}, format="json")
    assert response.status_code == 504
    assert Command.objects.get().status == "timed_out"


def test_callerror_is_502_with_the_error(api, online, fake_charger):
    fake_charger.answers["ClearCache"] = CallError("NotSupported", "no cache")
    response = api(online.operator_a).post(url("A1-CP1", "ClearCache"), {}, format="json")
    assert response.status_code == 502
    assert response.json()["error"] == {"code": "NotSupported", "description": "no cache", "details": {}}
    assert Command.objects.get().error_code == "NotSupported"


@pytest.mark.parametrize("query", ["?timeout=0", "?timeout=301", "?queue=abc"])
def test_bad_options_are_400(api, online, fake_charger, query):
    response = api(online.operator_a).post(url("A1-CP1", "ClearCache") + query, {}, format="json")
    assert response.status_code == 400
    assert not Command.objects.exists()


@pytest.mark.parametrize(
    "user, identity, expected",
    [
        ("host_a1", "A2-CP1", 404),  # a site host cannot command another site's station
        ("operator_b", "A1-CP1", 404),  # nor another organisation's
        ("finance_a", "A1-CP1", 403),  # finance users see stations but cannot command at all
    ],
)
def test_denied_commands_send_and_record_nothing(api, online, fake_charger, user, identity, expected):
    response = api(getattr(online, user)).post(url(identity, "ClearCache"), {}, format="json")
    assert response.status_code == expected
    assert not Command.objects.exists()
    assert fake_charger.received == []


def test_site_host_commands_own_site(api, online, fake_charger):
    response = api(online.host_a1).post(url("A1-CP1", "ClearCache"), {}, format="json")
    assert response.status_code == 200


def test_history_is_scoped(api, online, fake_charger):
    for user, identity in [("operator_a", "A1-CP1"), ("operator_a", "A2-CP1"), ("operator_b", "B1-CP1")]:
        assert (
            api(getattr(online, user)).post(url(identity, "ClearCache"), {}, format="json").status_code == 200
        )
    a1, a2, b1 = (Command.objects.get(station__identity=i).pk for i in ("A1-CP1", "A2-CP1", "B1-CP1"))

    def ids(user, path):
        response = api(getattr(online, user)).get(path)
        assert response.status_code == 200
        return sorted(row["id"] for row in response.json()["results"])

    assert ids("operator_a", "/api/v1/commands/") == [a1, a2]
    assert ids("host_a1", "/api/v1/commands/") == [a1]
    assert ids("finance_a", "/api/v1/commands/") == [a1, a2]
    assert ids("operator_b", "/api/v1/commands/") == [b1]
    assert ids("operator_a", "/api/v1/stations/A1-CP1/commands/") == [a1]
    assert ids("operator_a", "/api/v1/commands/?status=answered&action=ClearCache") == [a1, a2]
    assert api(online.host_a1).get("/api/v1/stations/A2-CP1/commands/").status_code == 404
    assert api(online.operator_b).get(f"/api/v1/commands/{a1}/").status_code == 404
    detail = api(online.operator_a).get(f"/api/v1/commands/{a1}/").json()
    assert (detail["station"], detail["action"], detail["status"]) == ("A1-CP1", "ClearCache", "answered")
    assert api(online.operator_a).get("/api/v1/commands/?status=bogus").status_code == 400


def test_api_never_shows_a_password_sent_to_a_charger(api, online, fake_charger):
    body = {"key": "AuthorizationKey", "value": "0123456789abcdef0123456789abcdef01234567"}
    response = api(online.operator_a).post(url("A1-CP1", "ChangeConfiguration"), body, format="json")
    assert response.status_code == 200
    assert fake_charger.received == [("A1-CP1", "ChangeConfiguration", body)]
    masked = {"key": "AuthorizationKey", "value": "********"}
    assert (response.json()["request"], response.json()["command"]["request"]) == (masked, masked)
    listed = api(online.finance_a).get("/api/v1/commands/").json()["results"]
    assert [row["request"] for row in listed] == [masked]
