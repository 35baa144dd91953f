"""Charging profiles on the wire (both versions), the fail-safe defaults at boot, and what a rebalance sends."""

from datetime import time, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from cpms.ocpp_wire.actions import request_validate
from cpms.ocpp_wire.smart_charging import set_charging_profile
from energy.models import (
    ChargingProfileRecord,
    EvseAllocation,
    EvseElectrical,
    GridNode,
    NodeLimitSchedule,
)
from energy.services.profiles import safe_shares, site_rebalance, station_default_profiles_send
from sessions.models import ChargingSession
from tests.factories import ChargingSessionFactory, ChargingStationFactory, EvseFactory

# --- wire format -----------------------------------------------------------------------------------------


def test_profiles_in_1_6():
    assert set_charging_profile(
        "1.6", evse_number=2, limit_a=Decimal("10.66"), purpose="TxProfile", transaction_id="42"
    ).payload == {
        "connectorId": 2,
        "csChargingProfiles": {
            "chargingProfileId": 9_100_002,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.7}],
            },
            "transactionId": 42,
        },
    }


def test_profiles_in_2_0_1():
    assert set_charging_profile(
        "2.0.1", evse_number=1, limit_a=Decimal(16), purpose="TxDefaultProfile"
    ).payload == {
        "evseId": 1,
        "chargingProfile": {
            "id": 9_000_001,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": [
                {
                    "id": 9_000_001,
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
                }
            ],
        },
    }


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"])
@pytest.mark.parametrize("purpose", ["TxDefaultProfile", "TxProfile"])
def test_every_profile_is_schema_valid(protocol, purpose):
    call = set_charging_profile(
        protocol.removeprefix("ocpp"),
        evse_number=3,
        limit_a=Decimal("0"),
        purpose=purpose,
        transaction_id="77" if purpose == "TxProfile" else None,
    )
    assert call.action == "SetChargingProfile"
    request_validate(protocol=protocol, action=call.action, payload=call.payload)


def test_a_tx_profile_needs_its_transaction():
    with pytest.raises(ValueError, match="transaction id"):
        set_charging_profile("1.6", evse_number=1, limit_a=Decimal(6), purpose="TxProfile")


# --- topology fixture ----------------------------------------------------------------------------------


@pytest.fixture
def depot(world):
    """Grid connection 63 A (50 A at the evening peak) -> panel 40 A -> circuit 32 A with EVSEs 1-3 of CP-A;
    and a 16 A circuit right under the grid connection with EVSE 1 of CP-B (a 2.0.1 charger)."""
    site = world.site_a1
    root = GridNode.objects.create(site=site, name="grid", kind="grid_connection", limit_a=63)
    NodeLimitSchedule.objects.create(node=root, start_time=time(17), end_time=time(21), limit_a=50)
    panel = GridNode.objects.create(site=site, parent=root, name="panel", kind="panel", limit_a=40)
    circuit = GridNode.objects.create(site=site, parent=panel, name="c1", limit_a=32)
    small = GridNode.objects.create(site=site, parent=root, name="c2", limit_a=16)
    cp_a = ChargingStationFactory(identity="CP-A", site=site, protocol="ocpp1.6", is_connected=True)
    cp_b = ChargingStationFactory(identity="CP-B", site=site, protocol="ocpp2.0.1", is_connected=True)
    evses = {}
    for number in (1, 2, 3):
        evses[f"A{number}"] = EvseFactory(station=cp_a, evse_id=number)
        EvseElectrical.objects.create(
            evse=evses[f"A{number}"], node=circuit, min_current_a=6, max_current_a=32
        )
    evses["B1"] = EvseFactory(station=cp_b, evse_id=1)
    EvseElectrical.objects.create(
        evse=evses["B1"], node=small, min_current_a=6, max_current_a=32, phase_rotation="1"
    )
    return {"site": site, "cp_a": cp_a, "cp_b": cp_b, "evses": evses}


def test_safe_shares_never_exceed_any_node_if_all_draw_them(depot):
    # A1-A3: grid 50/4 = 12.5, panel 40/3 = 13.33, circuit 32/3 = 10.66 -> 10.6. B1: grid 12.5, c2 16 -> 12.5.
    evses = depot["evses"]
    assert safe_shares(site_id=depot["site"].pk) == {
        evses["A1"].pk: Decimal("10.6"),
        evses["A2"].pk: Decimal("10.6"),
        evses["A3"].pk: Decimal("10.6"),
        evses["B1"].pk: Decimal("12.5"),
    }


def test_a_booted_station_gets_its_fail_safe_defaults(depot, fake_charger):
    assert station_default_profiles_send(station_id=depot["cp_a"].pk) == 3
    assert [
        (
            identity,
            action,
            request["connectorId"],
            request["csChargingProfiles"]["chargingProfilePurpose"],
            request["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"],
        )
        for identity, action, request in fake_charger.received
    ] == [
        ("CP-A", "SetChargingProfile", 1, "TxDefaultProfile", 10.6),
        ("CP-A", "SetChargingProfile", 2, "TxDefaultProfile", 10.6),
        ("CP-A", "SetChargingProfile", 3, "TxDefaultProfile", 10.6),
    ]
    records = ChargingProfileRecord.objects.filter(station=depot["cp_a"]).order_by("evse_id")
    assert [(r.evse_id, r.kind, r.limit_a, r.status, r.command_id is not None) for r in records] == [
        (1, "default", Decimal("10.6"), "Accepted", True),
        (2, "default", Decimal("10.6"), "Accepted", True),
        (3, "default", Decimal("10.6"), "Accepted", True),
    ]


def test_a_station_without_managed_evses_gets_nothing(world, fake_charger):
    station = ChargingStationFactory(identity="CP-FREE", site=world.site_a1, is_connected=True)
    assert station_default_profiles_send(station_id=station.pk) == 0
    assert fake_charger.received == []


# --- rebalancing ---------------------------------------------------------------------------------------


def _start(evse, transaction_id: str, minutes_ago: int) -> ChargingSession:
    return ChargingSessionFactory(
        station=evse.station,
        evse=evse,
        transaction_id=transaction_id,
        started_at=timezone.now() - timedelta(minutes=minutes_ago),
        status="active",
    )


def _sent(fake_charger) -> list[tuple[str, int, float]]:
    out = []
    for identity, _action, request in fake_charger.received:
        if "csChargingProfiles" in request:
            profile = request["csChargingProfiles"]
            limit = profile["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
            out.append((identity, request["connectorId"], limit))
        else:
            limit = request["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"]
            out.append((identity, request["evseId"], limit))
    return out


def test_a_rebalance_sends_only_what_changed_and_decreases_first(depot, fake_charger, settings):
    settings.ENERGY_MIN_SEND_INTERVAL_S = 0
    evses = depot["evses"]
    _start(evses["A1"], "101", 30)
    _start(evses["A2"], "102", 20)

    first = site_rebalance(site_id=depot["site"].pk)
    # Two on the 32 A circuit, whose idle A3 keeps its 10.6 A safe share free: (32 - 10.6) / 2 = 10.7 each.
    assert (first.sent, first.accepted, first.paused) == (2, 2, 0)
    assert _sent(fake_charger) == [("CP-A", 1, 10.7), ("CP-A", 2, 10.7)]

    fake_charger.received.clear()
    assert site_rebalance(site_id=depot["site"].pk).sent == 0  # nothing changed: nothing sent

    _start(evses["A3"], "103", 1)
    _start(evses["B1"], "B-1", 1)
    third = site_rebalance(site_id=depot["site"].pk)
    # Now 3 on the circuit and nothing idle: 32/3 = 10.66 -> 10.6 each; B1 alone on its 16 A circuit: 16.
    # The two decreases (10.7 -> 10.6: any decrease is sent) go and are answered before the new sessions'.
    assert _sent(fake_charger) == [
        ("CP-A", 1, 10.6),
        ("CP-A", 2, 10.6),
        ("CP-A", 3, 10.6),
        ("CP-B", 1, 16.0),
    ]
    assert (third.sent, third.accepted) == (4, 4)
    allocation = EvseAllocation.objects.get(evse=evses["A1"])
    assert (allocation.limit_a, allocation.sent_limit_a) == (Decimal("10.6"), Decimal("10.6"))
    tx = ChargingProfileRecord.objects.filter(kind="transaction").order_by("id").last()
    assert (tx.station_id, tx.transaction_id, tx.limit_a, tx.status) == (
        depot["cp_b"].pk,
        "B-1",
        Decimal(16),
        "Accepted",
    )


def test_a_refused_decrease_holds_back_the_increases(depot, fake_charger, settings):
    from tests.commands import CallError

    settings.ENERGY_MIN_SEND_INTERVAL_S = 0
    evses = depot["evses"]
    _start(evses["A1"], "101", 30)
    site_rebalance(site_id=depot["site"].pk)  # A1 alone, A2 and A3 idle with 10.6 A each: 32 - 21.2 = 10.8
    fake_charger.received.clear()
    fake_charger.answers["SetChargingProfile"] = CallError("InternalError")
    _start(evses["A2"], "102", 1)
    result = site_rebalance(site_id=depot["site"].pk)
    # A1 must come down to (32 - 10.6) / 2 = 10.7 before A2 may get as much: the charger refused, so A2
    # gets nothing yet.
    assert _sent(fake_charger) == [("CP-A", 1, 10.7)]
    assert (result.sent, result.accepted) == (1, 0)
    assert EvseAllocation.objects.get(evse=evses["A1"]).sent_limit_a == Decimal("10.8")


def test_increases_wait_for_the_rate_limit_but_decreases_do_not(depot, fake_charger, settings):
    settings.ENERGY_MIN_SEND_INTERVAL_S = 3600
    settings.ENERGY_RESERVE_IDLE_SHARES = False
    evses = depot["evses"]
    a1 = _start(evses["A1"], "101", 30)
    a2 = _start(evses["A2"], "102", 20)
    site_rebalance(site_id=depot["site"].pk)  # 16 + 16 (no headroom kept for idle EVSEs in this test)
    fake_charger.received.clear()
    a2.status = "completed"
    a2.save()
    site_rebalance(site_id=depot["site"].pk)  # A1 could have 32 A, but it got a profile moments ago
    assert _sent(fake_charger) == []
    _start(evses["A2"], "104", 0)
    _start(evses["A3"], "105", 0)
    site_rebalance(site_id=depot["site"].pk)
    # A1 comes down from 16 to 10.6 at once (decreases first); the new sessions have had no profile yet, so
    # theirs go too, even on A2 whose earlier session had one moments ago.
    assert _sent(fake_charger) == [("CP-A", 1, 10.6), ("CP-A", 2, 10.6), ("CP-A", 3, 10.6)]
    assert EvseAllocation.objects.get(evse=a1.evse).sent_limit_a == Decimal("10.6")


# --- comparing with what the charger reports --------------------------------------------------------------


def _schedule_1_6(limit: float) -> dict:
    return {
        "status": "Accepted",
        "connectorId": 1,
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
        },
    }


def test_the_check_compares_the_sent_limit_with_the_charger_schedule(
    depot, fake_charger, settings, api, world
):
    settings.ENERGY_MIN_SEND_INTERVAL_S = 0
    _start(depot["evses"]["A1"], "101", 10)
    site_rebalance(site_id=depot["site"].pk)  # A1 beside two idle EVSEs' shares: 32 - 2 x 10.6 = 10.8
    fake_charger.answers["GetCompositeSchedule"] = _schedule_1_6(10.8)
    response = api(world.operator_a).post("/api/v1/stations/CP-A/evses/1/profile-check/")
    assert response.status_code == 200
    body = response.json()
    assert {key: body[key] for key in ("evse_id", "expected_a", "reported_a", "matches", "detail")} == {
        "evse_id": 1,
        "expected_a": "10.8",
        "reported_a": "10.8",
        "matches": True,
        "detail": "",
    }
    assert fake_charger.received[-1] == (
        "CP-A",
        "GetCompositeSchedule",
        {"connectorId": 1, "duration": 60, "chargingRateUnit": "A"},
    )
    fake_charger.answers["GetCompositeSchedule"] = _schedule_1_6(16.0)  # the charger ignored the profile
    body = api(world.operator_a).post("/api/v1/stations/CP-A/evses/1/profile-check/").json()
    assert (body["expected_a"], body["reported_a"], body["matches"]) == ("10.8", "16.0", False)


def test_without_a_session_the_check_expects_the_default(depot, fake_charger, api, world):
    station_default_profiles_send(station_id=depot["cp_b"].pk)
    fake_charger.answers["GetCompositeSchedule"] = {
        "status": "Accepted",
        "schedule": {
            "evseId": 1,
            "duration": 60,
            "scheduleStart": "2026-01-01T00:00:00Z",
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 12.5}],
        },
    }
    body = api(world.operator_a).post("/api/v1/stations/CP-B/evses/1/profile-check/").json()
    assert (body["expected_a"], body["reported_a"], body["matches"]) == ("12.5", "12.5", True)
    assert fake_charger.received[-1][2] == {"evseId": 1, "duration": 60, "chargingRateUnit": "A"}


@pytest.mark.parametrize(("who", "expected"), [("finance_a", 403), ("operator_b", 404), ("host_a2", 404)])
def test_the_check_is_a_command_and_scoped(depot, fake_charger, api, world, who, expected):
    from stations.services.site_hosts import site_host_grant
    from tests.factories import UserFactory

    if who == "host_a2":
        user = UserFactory(username="host_a2")
        site_host_grant(user=user, site=world.site_a2)
    else:
        user = getattr(world, who)
    response = api(user).post("/api/v1/stations/CP-A/evses/1/profile-check/")
    assert response.status_code == expected
    assert fake_charger.received == []


def test_idle_evses_keep_their_safe_share_free(depot, fake_charger, settings):
    settings.ENERGY_MIN_SEND_INTERVAL_S = 0
    _start(depot["evses"]["A1"], "101", 10)
    site_rebalance(site_id=depot["site"].pk)
    settings.ENERGY_RESERVE_IDLE_SHARES = False
    site_rebalance(site_id=depot["site"].pk)
    # With the headroom: 32 - 2 x 10.6 (A2, A3 idle) = 10.8. Without: the whole circuit, 32.
    assert _sent(fake_charger) == [("CP-A", 1, 10.8), ("CP-A", 1, 32.0)]
