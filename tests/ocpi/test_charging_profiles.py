"""OCPI charging profiles, Receiver (cpms/ocpi/services/charging_profiles.py): the immediate
ChargingProfileResponse, the OCPP call (1.6 and 2.0.1, answered by the fake charger of tests/commands.py),
the balancer's limit winning on a load-managed EVSE, and the result queued to the response_url."""

from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from django.utils import timezone

from cpms.ocpi.models import OcpiCommand, OcpiOutboxItem, OcpiPartner
from cpms.ocpi.services import charging_profiles
from energy.models import EvseAllocation, EvseElectrical, GridNode
from sessions.enums import SessionStatus
from tests.commands import TIMEOUT
from tests.ocpi import test_commands
from tests.ocpi.test_commands import roaming_session

pytestmark = pytest.mark.django_db

# A connected station of site A1 with EVSE 1 / connector 1, in 1.6 and in 2.0.1.
place = test_commands.place

URL = "/ocpi/2.2.1/chargingprofiles"
RESULT_URL = "http://emsp.invalid/ocpi/2.2.1/chargingprofiles-result/p-1"


def _body(response):
    return orjson.loads(response.content)


@pytest.fixture
def allowed(roaming):
    OcpiPartner.objects.filter(pk=roaming.partner_a.pk).update(allow_charging_profiles=True)
    roaming.partner_a.refresh_from_db()
    return roaming


def profile(limit: float = 16, unit: str = "A", **fields) -> dict:
    return {
        "charging_profile": {
            "charging_rate_unit": unit,
            "charging_profile_period": [
                {"start_period": 0, "limit": limit},
                {"start_period": 1800, "limit": 8},
            ],
            **fields,
        },
        "response_url": RESULT_URL,
    }


def put(caller, session_id, body):
    return caller.request("PUT", f"{URL}/{session_id}", body)


def execute_last() -> OcpiCommand:
    ocpi_command = OcpiCommand.objects.order_by("-pk").first()
    charging_profiles.charging_profile_execute(ocpi_command_id=ocpi_command.pk)
    ocpi_command.refresh_from_db()
    return ocpi_command


def result_body(ocpi_command: OcpiCommand) -> dict:
    item = OcpiOutboxItem.objects.get(object_key=f"chargingprofile:{ocpi_command.pk}")
    assert (item.method, item.url, item.module) == ("POST", RESULT_URL, "chargingprofiles")
    assert (item.to_country_code, item.to_party_id) == ("DE", "EMS")  # the session's driver's party
    return item.body


def sent_profile(fake_charger, place) -> dict:
    [(_, action, request)] = fake_charger.received
    assert action == "SetChargingProfile"
    if place.v16:
        assert request["connectorId"] == 1
        return request["csChargingProfiles"]
    assert request["evseId"] == 1
    return request["chargingProfile"]


def periods(fake_charger, place) -> list[dict]:
    sent = sent_profile(fake_charger, place)
    schedule = sent["chargingSchedule"] if place.v16 else sent["chargingSchedule"][0]
    return schedule["chargingSchedulePeriod"]


def test_refused_when_the_operator_does_not_allow_profiles(roaming, place, fake_charger):
    session = roaming_session(roaming, place)
    response = put(roaming.caller_a, session.pk, profile())
    assert response.status_code == 200
    assert _body(response)["data"]["result"] == "NOT_SUPPORTED"
    assert OcpiCommand.objects.count() == 0


def test_set_profile_on_an_evse_without_load_management(allowed, place, fake_charger):
    session = roaming_session(allowed, place)

    response = put(allowed.caller_a, session.pk, profile())

    assert _body(response)["data"] == {"result": "ACCEPTED", "timeout": charging_profiles.command_timeout_s()}
    ocpi_command = execute_last()
    sent = sent_profile(fake_charger, place)
    assert sent["chargingProfilePurpose"] == "TxProfile"
    assert sent["stackLevel"] == 1
    assert sent["transactionId"] == (4711 if place.v16 else "4711")
    assert sent["chargingProfileId" if place.v16 else "id"] == 9_100_001  # the balancer's TxProfile id
    assert periods(fake_charger, place) == [
        {"startPeriod": 0, "limit": 16.0},
        {"startPeriod": 1800, "limit": 8.0},
    ]
    assert result_body(ocpi_command) == {"result": "ACCEPTED"}


def _managed(place, *, limit_a: str | None = "10"):
    node = GridNode.objects.create(site=place.site, name="main", limit_a=Decimal("32"))
    EvseElectrical.objects.create(evse=place.evse, node=node, phase_rotation="123")
    if limit_a is not None:
        EvseAllocation.objects.create(
            evse=place.evse,
            limit_a=Decimal(limit_a),
            phases_used="123",
            computed_at=timezone.now(),
            sent_limit_a=Decimal(limit_a),
        )


def test_on_a_load_managed_evse_the_balancers_limit_caps_every_period(allowed, place, fake_charger):
    _managed(place, limit_a="10")
    session = roaming_session(allowed, place)
    put(allowed.caller_a, session.pk, profile(limit=16))
    execute_last()
    assert periods(fake_charger, place) == [
        {"startPeriod": 0, "limit": 10.0},
        {"startPeriod": 1800, "limit": 8.0},
    ]


def test_on_a_load_managed_evse_watts_are_capped_at_the_balancers_power(allowed, place, fake_charger):
    _managed(place, limit_a="10")
    session = roaming_session(allowed, place)
    put(allowed.caller_a, session.pk, profile(limit=11000, unit="W"))
    execute_last()
    # 10 A x 230 V x 3 phases = 6,900 W.
    assert periods(fake_charger, place) == [
        {"startPeriod": 0, "limit": 6900.0},
        {"startPeriod": 1800, "limit": 8.0},
    ]


def test_a_paused_evse_stays_paused(allowed, place, fake_charger):
    _managed(place, limit_a="0")
    EvseAllocation.objects.filter(evse=place.evse).update(paused=True)
    session = roaming_session(allowed, place)
    put(allowed.caller_a, session.pk, profile(limit=16))
    execute_last()
    assert [p["limit"] for p in periods(fake_charger, place)] == [0.0, 0.0]


def test_another_partners_session_is_unknown(allowed, place, fake_charger):
    theirs = roaming_session(allowed, place, partner=allowed.partner_a2, uid="OTHER-1", party=("FR", "OTH"))
    for session_id in (theirs.pk, 999999, "abc"):
        assert _body(put(allowed.caller_a, session_id, profile()))["data"]["result"] == "UNKNOWN_SESSION"
    assert OcpiCommand.objects.count() == 0


def test_an_ended_session_is_rejected(allowed, place):
    session = roaming_session(allowed, place)
    session.status = SessionStatus.COMPLETED
    session.save(update_fields=["status"])
    assert _body(put(allowed.caller_a, session.pk, profile()))["data"]["result"] == "REJECTED"


def test_too_often_and_the_same_request_again(allowed, place, fake_charger):
    session = roaming_session(allowed, place)
    assert _body(put(allowed.caller_a, session.pk, profile()))["data"]["result"] == "ACCEPTED"
    assert _body(put(allowed.caller_a, session.pk, profile()))["data"]["result"] == "ACCEPTED"  # a repeat
    assert _body(put(allowed.caller_a, session.pk, profile(limit=12)))["data"]["result"] == "TOO_OFTEN"
    assert OcpiCommand.objects.count() == 1
    ocpi_command = execute_last()
    assert charging_profiles.charging_profile_execute(ocpi_command_id=ocpi_command.pk) is None
    assert len(fake_charger.received) == 1


def test_a_charger_that_does_not_answer_gives_unknown(allowed, place, fake_charger):
    fake_charger.answers["SetChargingProfile"] = TIMEOUT
    session = roaming_session(allowed, place)
    put(allowed.caller_a, session.pk, profile())
    assert result_body(execute_last()) == {"result": "UNKNOWN"}


def test_get_reads_the_composite_schedule(allowed, place, fake_charger):
    schedule = {
        "chargingRateUnit": "A",
        "duration": 900,
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}],
    }
    if place.v16:
        answer = {
            "status": "Accepted",
            "connectorId": 1,
            "scheduleStart": "2026-12-07T10:00:00Z",
            "chargingSchedule": schedule,
        }
    else:
        answer = {
            "status": "Accepted",
            "schedule": {**schedule, "evseId": 1, "scheduleStart": "2026-12-07T10:00:00Z"},
        }
    fake_charger.answers["GetCompositeSchedule"] = answer
    session = roaming_session(allowed, place)

    response = allowed.caller_a.get(f"{URL}/{session.pk}?duration=900&response_url={RESULT_URL}")

    assert _body(response)["data"]["result"] == "ACCEPTED"
    ocpi_command = execute_last()
    [(_, action, request)] = fake_charger.received
    assert (action, request["duration"], request["connectorId" if place.v16 else "evseId"]) == (
        "GetCompositeSchedule",
        900,
        1,
    )
    assert result_body(ocpi_command) == {
        "result": "ACCEPTED",
        "profile": {
            "start_date_time": "2026-12-07T10:00:00Z",
            "charging_profile": {
                "charging_rate_unit": "A",
                "duration": 900,
                "charging_profile_period": [{"start_period": 0, "limit": 10.0}],
            },
        },
    }


def test_delete_clears_the_tx_profile_without_load_management(allowed, place, fake_charger):
    session = roaming_session(allowed, place)
    response = allowed.caller_a.request("DELETE", f"{URL}/{session.pk}?response_url={RESULT_URL}")
    assert _body(response)["data"]["result"] == "ACCEPTED"
    ocpi_command = execute_last()
    key = "id" if place.v16 else "chargingProfileId"
    assert fake_charger.received == [("A1-CP1", "ClearChargingProfile", {key: 9_100_001})]
    assert result_body(ocpi_command) == {"result": "ACCEPTED"}


def test_delete_on_a_load_managed_evse_restores_the_balancers_limit(allowed, place, fake_charger):
    _managed(place, limit_a="10")
    session = roaming_session(allowed, place)
    allowed.caller_a.request("DELETE", f"{URL}/{session.pk}?response_url={RESULT_URL}")
    execute_last()
    assert periods(fake_charger, place) == [{"startPeriod": 0, "limit": 10.0}]


@pytest.mark.parametrize(
    ("method", "query", "body"),
    [
        ("PUT", "", None),
        ("PUT", "", {"response_url": RESULT_URL}),
        (
            "PUT",
            "",
            {
                "charging_profile": {"charging_rate_unit": "kW", "charging_profile_period": []},
                "response_url": RESULT_URL,
            },
        ),
        ("PUT", "", {**profile(), "response_url": "not a url"}),
        ("PUT", "", profile(limit=-1)),
        ("GET", f"?response_url={RESULT_URL}", None),
        ("GET", f"?duration=abc&response_url={RESULT_URL}", None),
        ("GET", "?duration=60", None),
        ("DELETE", "", None),
    ],
)
def test_malformed_requests_are_2001(allowed, place, method, query, body):
    session = roaming_session(allowed, place)
    response = allowed.caller_a.request(method, f"{URL}/{session.pk}{query}", body)
    assert response.status_code == 400
    assert _body(response)["status_code"] == 2001
    assert OcpiCommand.objects.count() == 0


def test_a_request_whose_worker_died_is_not_sent_again_and_ends_unknown(allowed, place, fake_charger):
    session = roaming_session(allowed, place)
    put(allowed.caller_a, session.pk, profile())
    ocpi_command = OcpiCommand.objects.get()
    OcpiCommand.objects.filter(pk=ocpi_command.pk).update(result="SENDING")
    assert charging_profiles.charging_profile_execute(ocpi_command_id=ocpi_command.pk) is None

    OcpiCommand.objects.filter(pk=ocpi_command.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    assert charging_profiles.charging_profile_execute(ocpi_command_id=ocpi_command.pk) == "UNKNOWN"

    assert fake_charger.received == []
    assert result_body(ocpi_command) == {"result": "UNKNOWN"}


def test_an_absolute_profile_in_watts_keeps_its_start_duration_and_minimum(allowed, place, fake_charger):
    session = roaming_session(allowed, place)
    body = profile(
        limit=7400,
        unit="W",
        start_date_time="2026-12-07T18:00:00+01:00",
        duration=3600,
        min_charging_rate=1380,
    )
    put(allowed.caller_a, session.pk, body)
    execute_last()
    sent = sent_profile(fake_charger, place)
    schedule = sent["chargingSchedule"] if place.v16 else sent["chargingSchedule"][0]
    assert sent["chargingProfileKind"] == "Absolute"
    assert {key: value for key, value in schedule.items() if key != "id"} == {
        "startSchedule": "2026-12-07T17:00:00Z",
        "duration": 3600,
        "chargingRateUnit": "W",
        "minChargingRate": 1380.0,
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400.0}, {"startPeriod": 1800, "limit": 8.0}],
    }
