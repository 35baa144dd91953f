"""Local authorisation lists: the SendLocalList / GetLocalListVersion builders (valid against the official
schemas), what a station should hold, the Full / Differential decision and its versions, the answer hooks
(Accepted applies entries and version together; anything else makes the next sync Full) and message size
limits. A fake charger answers through the real hooks."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from cpms.errors import Conflict, PermissionDenied
from cpms.ocpp.mappers import format_datetime
from cpms.ocpp_wire import auth, schemas
from cpms.ocpp_wire.auth import LocalListItem
from cpms.ocpp_wire.calls import Call
from sessions.models import IdToken, LocalListEntry, LocalListState
from sessions.services.local_lists import (
    CONCURRENT_UPDATE,
    LIST_LIMIT_KEYS,
    local_list_answered,
    local_list_entries_forget,
    local_list_sync,
)
from sessions.services.tokens import LOCAL_LIST_STALE, id_token_delete, id_token_update
from stations.models import ChargingStation, Command, DeviceVariable
from stations.services.commands import command_send
from tests.commands import TIMEOUT
from tests.factories import IdTokenFactory

EXPIRY = datetime(2030, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
V2 = ("2.0.1", "2.1")


def valid(version: str, call: Call) -> Call:
    schemas.validate(version, schemas.request_schema(version, call.action), call.payload)
    return call


def item(version, value, status=None, *, expiry=None, group=None, type="ISO14443") -> dict:
    """One localAuthorizationList entry as each version spells it (no status: a removal)."""
    if version == "1.6":
        entry: dict = {"idTag": value}
        if status:
            info = {"status": status}
            if expiry:
                info["expiryDate"] = format_datetime(expiry)
            if group:
                info["parentIdTag"] = group
            entry["idTagInfo"] = info
        return entry
    entry = {"idToken": {"idToken": value, "type": type}}
    if status:
        info = {"status": status}
        if expiry:
            info["cacheExpiryDateTime"] = format_datetime(expiry)
        if group:
            info["groupIdToken"] = {"idToken": group, "type": "Central"}
        entry["idTokenInfo"] = info
    return entry


def list_call(version, number, update_type, entries) -> Call:
    key = "listVersion" if version == "1.6" else "versionNumber"
    payload = {key: number, "updateType": update_type}
    if entries:
        payload["localAuthorizationList"] = entries
    return Call("SendLocalList", payload)


# --- builders ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.6", *V2])
def test_send_local_list(version):
    items = [
        LocalListItem("TAG1", "ISO14443", "Accepted", EXPIRY, "FLEET", "Central"),
        LocalListItem("TAG2", "KeyCode", "Blocked"),
        LocalListItem("GONE", "ISO14443"),
    ]
    call = auth.send_local_list(version, version_number=4, update_type="Differential", items=items)
    assert valid(version, call) == list_call(
        version,
        4,
        "Differential",
        [
            item(version, "TAG1", "Accepted", expiry=EXPIRY, group="FLEET"),
            item(version, "TAG2", "Blocked", type="KeyCode"),
            item(version, "GONE"),
        ],
    )


@pytest.mark.parametrize("version", ["1.6", *V2])
def test_an_empty_full_list_is_sent_without_the_array(version):
    call = auth.send_local_list(version, version_number=2, update_type="Full", items=[])
    assert valid(version, call) == list_call(version, 2, "Full", [])


@pytest.mark.parametrize("version", ["1.6", *V2])
def test_get_local_list_version(version):
    assert valid(version, auth.get_local_list_version(version)) == Call("GetLocalListVersion", {})


# --- syncing ---------------------------------------------------------------------------------------------


@pytest.fixture(params=["ocpp1.6", "ocpp2.0.1"])
def station(request, world):
    ChargingStation.objects.filter(pk=world.station_a1.pk).update(protocol=request.param, is_connected=True)
    return ChargingStation.objects.get(pk=world.station_a1.pk)


def version_of(station) -> str:
    return station.protocol.removeprefix("ocpp")


@pytest.fixture
def tokens(world):
    """In A1's list: ALPHA (an expiry with microseconds), BRAVO (in group FLEET), ECHO (blocked), FOXTROT,
    GOLF. Not in it: CHARLIE (restricted to site A2), DELTA (not listed), FLEET (the group, not listed), and
    org B's ALPHA."""
    fleet = IdTokenFactory(organisation=world.org_a, value="FLEET", type="Central")
    made = {
        "ALPHA": IdTokenFactory(
            organisation=world.org_a, value="ALPHA", in_local_list=True, expires_at=EXPIRY
        ),
        "BRAVO": IdTokenFactory(organisation=world.org_a, value="BRAVO", in_local_list=True, group=fleet),
        "CHARLIE": IdTokenFactory(organisation=world.org_a, value="CHARLIE", in_local_list=True),
        "DELTA": IdTokenFactory(organisation=world.org_a, value="DELTA"),
        "ECHO": IdTokenFactory(organisation=world.org_a, value="ECHO", in_local_list=True, status="Blocked"),
        "FOXTROT": IdTokenFactory(organisation=world.org_a, value="FOXTROT", in_local_list=True),
        "GOLF": IdTokenFactory(organisation=world.org_a, value="GOLF", in_local_list=True),
    }
    made["CHARLIE"].allowed_sites.set([world.site_a2])
    IdTokenFactory(organisation=world.org_b, value="ALPHA", in_local_list=True)
    return made


def sync(world, station, *, full=False, actor=None):
    return local_list_sync(actor=actor or world.operator_a, station=station, full=full)


def sent(fake_charger) -> list:
    return [Call(action, payload) for _, action, payload in fake_charger.received]


def held(station) -> dict:
    return {
        entry.id_token.value: (entry.status, entry.expires_at, entry.group_value)
        for entry in LocalListEntry.objects.filter(station=station).select_related("id_token")
    }


def state_of(station) -> tuple:
    state = LocalListState.objects.get(station=station)
    return state.version, state.reported_version, state.last_error


FULL_ENTRIES = {
    "ALPHA": ("Accepted", EXPIRY.replace(microsecond=123000), ""),
    "BRAVO": ("Accepted", None, "FLEET"),
    "ECHO": ("Blocked", None, ""),
    "FOXTROT": ("Accepted", None, ""),
    "GOLF": ("Accepted", None, ""),
}


def full_list(version: str) -> list:
    return [
        item(version, "ALPHA", "Accepted", expiry=EXPIRY),
        item(version, "BRAVO", "Accepted", group="FLEET"),
        item(version, "ECHO", "Blocked"),
        item(version, "FOXTROT", "Accepted"),
        item(version, "GOLF", "Accepted"),
    ]


def test_the_first_sync_is_full(world, station, tokens, fake_charger):
    version = version_of(station)
    result = sync(world, station)
    assert sent(fake_charger) == [list_call(version, 1, "Full", full_list(version))]
    assert (result.update.update_type, result.update.version, len(result.commands)) == ("Full", 1, 1)
    assert held(station) == FULL_ENTRIES
    assert state_of(station) == (1, 1, "")
    assert LocalListState.objects.get(station=station).synced_at == Command.objects.get().finished_at


def test_a_list_in_step_sends_nothing(world, station, tokens, fake_charger):
    sync(world, station)
    result = sync(world, station)
    assert (result.update, result.commands, len(fake_charger.received)) == (None, (), 1)
    assert state_of(station) == (1, 1, "")


def test_changes_go_as_a_differential_update(world, station, tokens, fake_charger):
    version = version_of(station)
    sync(world, station)
    IdToken.objects.filter(pk=tokens["ALPHA"].pk).update(status="Blocked")
    IdToken.objects.filter(pk=tokens["DELTA"].pk).update(in_local_list=True)
    IdToken.objects.filter(pk=tokens["ECHO"].pk).update(in_local_list=False)
    result = sync(world, station)
    assert sent(fake_charger)[1:] == [
        list_call(
            version,
            2,
            "Differential",
            [
                item(version, "ALPHA", "Blocked", expiry=EXPIRY),
                item(version, "DELTA", "Accepted"),
                item(version, "ECHO"),
            ],
        )
    ]
    assert result.update.update_type == "Differential"
    expected = {
        **FULL_ENTRIES,
        "ALPHA": ("Blocked", EXPIRY.replace(microsecond=123000), ""),
        "DELTA": ("Accepted", None, ""),
    }
    del expected["ECHO"]
    assert held(station) == expected
    assert state_of(station) == (2, 2, "")


def test_a_restriction_removes_the_token_from_other_stations(world, station, tokens, fake_charger):
    version = version_of(station)
    sync(world, station)
    tokens["GOLF"].allowed_stations.set([world.station_a2])
    sync(world, station)
    assert sent(fake_charger)[1:] == [list_call(version, 2, "Differential", [item(version, "GOLF")])]
    assert "GOLF" not in held(station)


def test_more_changes_than_entries_go_as_a_full_update(world, station, tokens, fake_charger):
    version = version_of(station)
    sync(world, station)
    IdToken.objects.filter(value__in=["ALPHA", "BRAVO", "ECHO"]).update(in_local_list=False)
    result = sync(world, station)
    expected = [item(version, "FOXTROT", "Accepted"), item(version, "GOLF", "Accepted")]
    assert sent(fake_charger)[1:] == [list_call(version, 2, "Full", expected)]
    assert result.update.update_type == "Full"
    assert set(held(station)) == {"FOXTROT", "GOLF"}


def test_full_on_request(world, station, tokens, fake_charger):
    version = version_of(station)
    sync(world, station)
    sync(world, station, full=True)
    assert sent(fake_charger)[1:] == [list_call(version, 2, "Full", full_list(version))]
    assert state_of(station) == (2, 2, "")


def test_an_empty_list(world, station, fake_charger):
    version = version_of(station)
    result = sync(world, station)
    assert sent(fake_charger) == [list_call(version, 1, "Full", [])]
    assert (result.update.items, held(station), state_of(station)) == ((), {}, (1, 1, ""))


@pytest.mark.parametrize("answer", ["VersionMismatch", "Failed"])
def test_a_refused_update_changes_nothing_but_the_next_is_full(world, station, tokens, fake_charger, answer):
    version = version_of(station)
    sync(world, station)
    IdToken.objects.filter(pk=tokens["ALPHA"].pk).update(status="Blocked")
    fake_charger.answers["SendLocalList"] = {"status": answer}
    sync(world, station)
    assert held(station) == FULL_ENTRIES
    assert state_of(station) == (
        1,
        1,
        f"SendLocalList version 2 answered {answer}: the next sync sends the full list.",
    )
    fake_charger.answers["SendLocalList"] = {"status": "Accepted"}
    sync(world, station)
    blocked = full_list(version)
    blocked[0] = item(version, "ALPHA", "Blocked", expiry=EXPIRY)
    assert sent(fake_charger)[2:] == [list_call(version, 2, "Full", blocked)]
    assert state_of(station) == (2, 2, "")


def test_an_update_without_answer_makes_the_next_full(world, station, tokens, fake_charger):
    sync(world, station)
    IdToken.objects.filter(pk=tokens["ALPHA"].pk).update(status="Blocked")
    fake_charger.answers["SendLocalList"] = TIMEOUT
    result = sync(world, station)
    assert result.commands[0].status == "timed_out"
    assert state_of(station) == (
        1,
        1,
        "SendLocalList timed_out (Timeout): the next sync sends the full list.",
    )
    fake_charger.answers["SendLocalList"] = {"status": "Accepted"}
    assert sync(world, station).update.update_type == "Full"


class Answers(dict):
    """SendLocalList answered from a queue, one per message."""

    def __init__(self, *statuses):
        super().__init__()
        self.queue = list(statuses)

    def get(self, action, default=None):
        return {"status": self.queue.pop(0)} if action == "SendLocalList" else default


@pytest.fixture
def limit(station):
    component, variable = LIST_LIMIT_KEYS[version_of(station)]
    return DeviceVariable.objects.create(
        station=station, component=component, variable=variable, value="2", updated_at=timezone.now()
    )


def test_a_list_longer_than_a_message_is_split(world, station, tokens, limit, fake_charger):
    version = version_of(station)
    entries = full_list(version)
    result = sync(world, station)
    assert sent(fake_charger) == [
        list_call(version, 1, "Full", entries[:2]),
        list_call(version, 2, "Differential", entries[2:4]),
        list_call(version, 3, "Differential", entries[4:]),
    ]
    assert len(result.commands) == 3
    assert held(station) == FULL_ENTRIES
    assert state_of(station) == (3, 3, "")


def test_a_split_update_stops_at_the_first_refused_message(world, station, tokens, limit, fake_charger):
    fake_charger.answers = Answers("Accepted", "Failed", "Accepted")
    result = sync(world, station)
    assert len(result.commands) == 2
    assert set(held(station)) == {"ALPHA", "BRAVO"}
    assert state_of(station) == (
        1,
        1,
        "SendLocalList version 2 answered Failed: the next sync sends the full list.",
    )


@pytest.mark.parametrize("reported", [3, 0])
def test_get_local_list_version_answer(world, station, tokens, fake_charger, reported):
    sync(world, station)
    sync(world, station, full=True)
    sync(world, station, full=True)
    key = "listVersion" if station.protocol == "ocpp1.6" else "versionNumber"
    fake_charger.answers["GetLocalListVersion"] = {key: reported}
    action, payload = auth.get_local_list_version(version_of(station))
    command_send(station=station, call=Call(action, payload), requested_by=world.operator_a)
    if reported == 3:
        assert state_of(station) == (3, 3, "")
        assert sync(world, station).update is None
    else:
        assert state_of(station) == (
            3,
            0,
            "The station reports list version 0, ours is 3: the next sync sends the full list.",
        )
        assert sync(world, station).update.update_type == "Full"


def test_tokens_too_long_for_the_version_are_left_out(world, station, fake_charger):
    IdTokenFactory(organisation=world.org_a, value="X" * 25, in_local_list=True)
    sync(world, station)
    expected = {} if station.protocol == "ocpp1.6" else {"X" * 25: ("Accepted", None, "")}
    assert held(station) == expected


def test_a_renamed_token_makes_the_next_sync_full(world, station, tokens, fake_charger):
    sync(world, station)
    id_token_update(actor=world.operator_a, id_token=tokens["GOLF"], data={"value": "HOTEL"})
    assert state_of(station) == (1, 1, LOCAL_LIST_STALE)
    result = sync(world, station)
    assert result.update.update_type == "Full"
    assert set(held(station)) == {"ALPHA", "BRAVO", "ECHO", "FOXTROT", "HOTEL"}


def test_a_deleted_token_makes_the_next_sync_full(world, station, tokens, fake_charger):
    sync(world, station)
    id_token_delete(actor=world.operator_a, id_token=tokens["GOLF"])
    assert state_of(station)[2] == LOCAL_LIST_STALE
    assert sync(world, station).update.update_type == "Full"


def test_finance_cannot_sync(world, station, tokens, fake_charger):
    with pytest.raises(PermissionDenied) as error:
        sync(world, station, actor=world.finance_a)
    assert error.value.message == "You may not command station 'A1-CP1'."
    assert (fake_charger.received, LocalListState.objects.count()) == ([], 0)


def test_a_station_not_connected_is_a_conflict(world, station, tokens, fake_charger):
    ChargingStation.objects.filter(pk=station.pk).update(is_connected=False)
    station.refresh_from_db()
    with pytest.raises(Conflict):
        sync(world, station)
    assert (fake_charger.received, LocalListState.objects.count()) == ([], 0)


# --- the hook, directly ------------------------------------------------------------------------------------


def test_a_differential_on_top_of_another_version_is_applied_but_flagged(world, tokens):
    station = world.station_a1
    LocalListState.objects.create(station=station, version=4)
    local_list_answered(
        station_id=station.pk,
        version=7,
        update_type="Differential",
        items=[LocalListItem("ALPHA", "ISO14443", "Accepted")],
        status="Accepted",
    )
    assert state_of(station) == (7, 7, CONCURRENT_UPDATE)
    assert held(station) == {"ALPHA": ("Accepted", None, "")}


def test_a_hand_made_list_keeps_only_our_tokens_and_our_statuses(world, tokens):
    station = world.station_a1
    local_list_answered(
        station_id=station.pk,
        version=1,
        update_type="Full",
        items=[
            LocalListItem("ALPHA", "ISO14443", "NoCredit"),
            LocalListItem("NOT-OURS", "ISO14443", "Accepted"),
            LocalListItem("BRAVO", "ISO14443", "Accepted"),
            LocalListItem("BRAVO", "ISO14443", "Blocked"),
        ],
        status="Accepted",
    )
    assert held(station) == {"ALPHA": ("Invalid", None, ""), "BRAVO": ("Blocked", None, "")}


def test_the_list_of_another_organisation_is_never_sent(world, tokens, fake_charger):
    ChargingStation.objects.filter(pk=world.station_b1.pk).update(protocol="ocpp1.6", is_connected=True)
    station = ChargingStation.objects.get(pk=world.station_b1.pk)
    local_list_sync(actor=world.operator_b, station=station)
    assert sent(fake_charger) == [list_call("1.6", 1, "Full", [item("1.6", "ALPHA", "Accepted")])]
    assert held(station) == {"ALPHA": ("Accepted", None, "")}
    assert LocalListEntry.objects.get(station=station).id_token.organisation_id == world.org_b.pk


def test_expiry_is_kept_at_the_precision_sent(world, station, tokens, fake_charger):
    # ALPHA expires at .123456: sent (and held) as .123; the next sync must not see a change.
    sync(world, station)
    assert LocalListEntry.objects.get(station=station, id_token=tokens["ALPHA"]).expires_at == EXPIRY.replace(
        microsecond=123000
    )
    assert sync(world, station).update is None
    assert timezone.now() < EXPIRY - timedelta(days=1)


def test_only_superusers_forget_entries_and_the_next_sync_is_full(world, tokens):
    station = world.station_a1
    LocalListState.objects.create(station=station, version=3)
    entry = LocalListEntry.objects.create(station=station, id_token=tokens["ALPHA"], status="Accepted")
    with pytest.raises(PermissionDenied):
        local_list_entries_forget(actor=world.operator_a, entries=[entry])
    assert (LocalListEntry.objects.count(), state_of(station)) == (1, (3, None, ""))
    assert local_list_entries_forget(actor=world.superuser, entries=[entry]) == 1
    assert (LocalListEntry.objects.count(), state_of(station)) == (0, (3, None, LOCAL_LIST_STALE))
