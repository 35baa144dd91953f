"""Waitlists: joining (rights, token rules, one open entry per token and site), queue order, and the advance
job: offers of free connectors with and without OCPP reservations (a fake charger answering through the real
hooks), expiry to the next in line, fulfilment by a session, idempotency, the emails, leaving, the tasks."""

from datetime import UTC, datetime, timedelta

import pytest

from cpms.errors import Conflict, PermissionDenied, ValidationFailed
from cpms.ocpp.mappers import format_datetime
from sessions import tasks
from sessions.models import Reservation, SiteAccessGroup, WaitlistEntry
from sessions.selectors import waitlist_positions
from sessions.services.waitlists import (
    AdvanceResult,
    station_supports_reservations,
    waitlist_advance,
    waitlist_join,
    waitlist_leave,
)
from stations.models import ChargingStation, DeviceVariable, SiteAccessMode
from tests.commands import CallError
from tests.factories import (
    ChargingSessionFactory,
    ChargingStationFactory,
    ConnectorFactory,
    EvseFactory,
    IdTokenFactory,
)

# 13:00 in Berlin (site A1's zone); an offer made then holds until 13:10 CET with the default 600 s.
NOW = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)
HOLD = timedelta(seconds=600)


@pytest.fixture(autouse=True)
def _hold(settings):
    settings.WAITLIST_HOLD_S = 600


def connect(station, protocol: str = "ocpp1.6") -> ChargingStation:
    ChargingStation.objects.filter(pk=station.pk).update(protocol=protocol, is_connected=True)
    return ChargingStation.objects.get(pk=station.pk)


def add_connector(station, evse_id: int, connector_id: int = 1, status: str = "Available"):
    evse = station.evses.filter(evse_id=evse_id).first() or EvseFactory(station=station, evse_id=evse_id)
    return ConnectorFactory(evse=evse, connector_id=connector_id, status=status, connector_type="cType2")


def support_reservations(station) -> None:
    if station.protocol == "ocpp1.6":
        fields = {"component": "OCPP16", "variable": "SupportedFeatureProfiles", "value": "Core,Reservation"}
    else:
        fields = {"component": "ReservationCtrlr", "variable": "Enabled", "value": "true"}
    DeviceVariable.objects.create(station=station, updated_at=NOW, **fields)


@pytest.fixture
def station(world):
    station = connect(world.station_a1)
    add_connector(station, 1)
    return station


@pytest.fixture
def drivers(world):
    return [
        IdTokenFactory(organisation=world.org_a, value=f"DRIVER{n}", owner_email=f"owner{n}@example.com")
        for n in (1, 2, 3)
    ]


def join(world, token, *, at=NOW, email="", actor=None, site=None) -> WaitlistEntry:
    return waitlist_join(
        actor=actor or world.operator_a,
        site=site or world.site_a1,
        id_token=token,
        contact_email=email,
        now=at,
    )


def advance(world, at=NOW) -> AdvanceResult:
    return waitlist_advance(site_id=world.site_a1.pk, now=at)


def state(entry: WaitlistEntry) -> tuple:
    entry.refresh_from_db()
    return (entry.status, entry.offered_connector_id, entry.offer_expires_at)


def offer_body(connector_place: str, until: str, hold_line: str) -> str:
    return (
        f"A charger is free for you at A1: connector {connector_place} until {until}.\n\n"
        f"{hold_line}\n"
        "If you have not started charging by then, it goes to the next driver in line.\n"
    )


NOT_HELD = "Start charging with your card before then: the charger itself does not hold it for you."
HELD = "The charger holds it for your card until then."


# --- joining -----------------------------------------------------------------------------------------------


def test_join_by_value_id_or_token(world, drivers):
    by_value = join(world, "DRIVER1", email="a@example.com")
    by_id = join(world, drivers[1].pk, at=NOW + timedelta(seconds=1))
    by_token = join(world, drivers[2], at=NOW + timedelta(seconds=2), actor=world.host_a1)
    assert [
        (e.id_token_id, e.contact_email, e.status, e.joined_at, e.created_by_id)
        for e in (by_value, by_id, by_token)
    ] == [
        (drivers[0].pk, "a@example.com", "waiting", NOW, world.operator_a.pk),
        (drivers[1].pk, "owner2@example.com", "waiting", NOW + timedelta(seconds=1), world.operator_a.pk),
        (drivers[2].pk, "owner3@example.com", "waiting", NOW + timedelta(seconds=2), world.host_a1.pk),
    ]


@pytest.mark.parametrize(
    ("actor", "site"), [("finance_a", "site_a1"), ("operator_b", "site_a1"), ("host_a1", "site_a2")]
)
def test_join_needs_the_command_right_on_the_site(world, drivers, actor, site):
    target = getattr(world, site)
    with pytest.raises(PermissionDenied) as error:
        join(world, drivers[0], actor=getattr(world, actor), site=target)
    assert error.value.message == f"You may not manage the waitlist of site {target.name!r}."
    assert WaitlistEntry.objects.count() == 0


def test_join_refuses_tokens_that_may_not_charge(world, drivers):
    IdTokenFactory(organisation=world.org_b, value="FOREIGN", owner_email="f@example.com")
    IdTokenFactory(organisation=world.org_a, value="BLOCKED", status="Blocked", owner_email="b@example.com")
    IdTokenFactory(
        organisation=world.org_a, value="OLD", expires_at=NOW - timedelta(days=1), owner_email="o@example.com"
    )
    IdTokenFactory(organisation=world.org_a, value="NOMAIL")
    cases = {
        "FOREIGN": "Id token 'FOREIGN' not found in the site's organisation.",
        "BLOCKED": "Id token 'BLOCKED' may not charge (Blocked).",
        "OLD": "Id token 'OLD' may not charge (Expired).",
        "NOMAIL": "A contact email is needed: the token has no owner email.",
    }
    for value, message in cases.items():
        with pytest.raises(ValidationFailed) as error:
            join(world, value)
        assert error.value.message == message
    with pytest.raises(ValidationFailed) as error:
        join(world, drivers[0], email="not-an-address")
    assert error.value.message == "'not-an-address' is not a valid email address."
    assert WaitlistEntry.objects.count() == 0


def test_join_follows_the_sites_access_rule_and_the_tokens_own_places(world, drivers):
    """A restricted site admits only its groups' tokens; a token restricted to other sites is refused too."""
    fleet = IdTokenFactory(organisation=world.org_a, value="FLEET")
    member = IdTokenFactory(
        organisation=world.org_a, value="MEMBER", group=fleet, owner_email="m@example.com"
    )
    elsewhere = IdTokenFactory(organisation=world.org_a, value="ELSEWHERE", owner_email="e@example.com")
    elsewhere.allowed_sites.set([world.site_a2])
    with pytest.raises(ValidationFailed) as error:
        join(world, elsewhere)
    assert error.value.message == "Id token 'ELSEWHERE' may not charge at site 'A1' (NotAtThisLocation)."

    world.site_a1.access_mode = SiteAccessMode.RESTRICTED
    world.site_a1.save()
    SiteAccessGroup.objects.create(site=world.site_a1, group=fleet)
    with pytest.raises(ValidationFailed) as error:
        join(world, drivers[0])
    assert error.value.message == "Id token 'DRIVER1' may not charge at site 'A1' (NotAtThisLocation)."
    assert WaitlistEntry.objects.count() == 0
    assert join(world, member).id_token == member


def test_one_open_entry_per_token_and_site(world, drivers):
    first = join(world, drivers[0])
    with pytest.raises(Conflict) as error:
        join(world, drivers[0], at=NOW + timedelta(minutes=1))
    assert error.value.message == (
        "Id token 'DRIVER1' is already in the waitlist of site 'A1': remove that entry first."
    )
    # Another site is another queue; after leaving, the token may join again.
    join(world, drivers[0], site=world.site_a2)
    waitlist_leave(actor=world.operator_a, entry=first, now=NOW + timedelta(minutes=2))
    again = join(world, drivers[0], at=NOW + timedelta(minutes=3))
    assert sorted(WaitlistEntry.objects.values_list("site_id", "status")) == sorted(
        [(world.site_a1.pk, "cancelled"), (world.site_a2.pk, "waiting"), (world.site_a1.pk, "waiting")]
    )
    assert again.pk != first.pk


def test_queue_order_is_joined_at_then_id(world, drivers):
    late = join(world, drivers[0], at=NOW + timedelta(minutes=5))
    early = join(world, drivers[1], at=NOW)
    tie = join(world, drivers[2], at=NOW)
    assert waitlist_positions(site_id=world.site_a1.pk) == {early.pk: 1, tie.pk: 2, late.pk: 3}


# --- offers --------------------------------------------------------------------------------------------------


def test_an_offer_without_reservation_support(world, station, drivers, fake_charger, mailoutbox):
    first = join(world, drivers[0])
    second = join(world, drivers[1], at=NOW + timedelta(seconds=1))
    connector = station.evses.get().connectors.get()
    assert advance(world) == AdvanceResult(offered=1, notified=1)
    assert state(first) == ("offered", connector.pk, NOW + HOLD)
    assert (first.offered_at, first.offered_station_id, first.offered_evse_id, first.notified_at) == (
        NOW,
        station.pk,
        connector.evse_id,
        NOW,
    )
    assert first.reservation_id is None
    assert state(second) == ("waiting", None, None)
    assert fake_charger.received == []
    assert [(m.subject, m.to, m.body) for m in mailoutbox] == [
        (
            "A charger is free for you at A1",
            ["owner1@example.com"],
            offer_body("1 of A1-CP1", "13:10 CET", NOT_HELD),
        )
    ]


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
def test_an_offer_reserved_on_the_charger(world, drivers, fake_charger, mailoutbox, protocol):
    station = connect(world.station_a1, protocol)
    add_connector(station, 1)
    support_reservations(station)
    entry = join(world, drivers[0])
    assert advance(world) == AdvanceResult(offered=1, reserved=1, notified=1)
    entry.refresh_from_db()
    reservation = Reservation.objects.get()
    assert (entry.status, entry.reservation_id) == ("offered", reservation.pk)
    assert (
        reservation.status,
        reservation.expires_at,
        reservation.created_by_id,
        reservation.connector_id,
    ) == (
        "accepted",
        NOW + HOLD,
        None,
        entry.offered_connector_id,
    )
    if protocol == "ocpp1.6":
        payload = {
            "connectorId": 1,
            "expiryDate": format_datetime(NOW + HOLD),
            "idTag": "DRIVER1",
            "reservationId": reservation.pk,
        }
    else:
        payload = {
            "id": reservation.pk,
            "expiryDateTime": format_datetime(NOW + HOLD),
            "idToken": {"idToken": "DRIVER1", "type": "ISO14443"},
            "evseId": 1,
            "connectorType": "cType2",
        }
    assert fake_charger.received == [("A1-CP1", "ReserveNow", payload)]
    assert reservation.command.source == "system"
    assert [m.body for m in mailoutbox] == [offer_body("1 of A1-CP1", "13:10 CET", HELD)]


@pytest.mark.parametrize(
    "answer", [{"status": "Occupied"}, CallError("NotSupported")], ids=["refused", "error"]
)
def test_a_refused_reservation_leaves_the_offer_standing(
    world, station, drivers, fake_charger, mailoutbox, answer
):
    support_reservations(station)
    fake_charger.answers["ReserveNow"] = answer
    entry = join(world, drivers[0])
    assert advance(world) == AdvanceResult(offered=1, reserved=0, notified=1)
    entry.refresh_from_db()
    assert (entry.status, entry.reservation.status) == ("offered", "rejected")
    assert [m.body for m in mailoutbox] == [offer_body("1 of A1-CP1", "13:10 CET", NOT_HELD)]


def test_supported_feature_profiles_are_read_as_a_list(world):
    station = connect(world.station_a1)
    assert station_supports_reservations(station) is False
    DeviceVariable.objects.create(
        station=station,
        component="OCPP16",
        variable="SupportedFeatureProfiles",
        value="Core, FirmwareManagement, Reservation ",
        updated_at=NOW,
    )
    assert station_supports_reservations(station) is True
    DeviceVariable.objects.filter(station=station).update(value="Core,ReservationLike")
    assert station_supports_reservations(station) is False


def test_two_free_connectors_go_to_the_first_two_in_line(world, station, drivers, fake_charger, mailoutbox):
    second_connector = add_connector(station, 2)
    entries = [join(world, token, at=NOW + timedelta(seconds=n)) for n, token in enumerate(drivers)]
    first_connector = station.evses.get(evse_id=1).connectors.get()
    assert advance(world) == AdvanceResult(offered=2, notified=2)
    assert [state(e)[:2] for e in entries] == [
        ("offered", first_connector.pk),
        ("offered", second_connector.pk),
        ("waiting", None),
    ]
    assert [(m.to, m.body.splitlines()[0]) for m in mailoutbox] == [
        (["owner1@example.com"], "A charger is free for you at A1: connector 1 of A1-CP1 until 13:10 CET."),
        (["owner2@example.com"], "A charger is free for you at A1: connector 2 of A1-CP1 until 13:10 CET."),
    ]


def test_advancing_twice_offers_and_sends_nothing_twice(world, station, drivers, fake_charger, mailoutbox):
    support_reservations(station)
    entries = [join(world, token, at=NOW + timedelta(seconds=n)) for n, token in enumerate(drivers[:2])]
    advance(world)
    assert advance(world, at=NOW + timedelta(seconds=30)) == AdvanceResult()
    assert [state(e)[0] for e in entries] == ["offered", "waiting"]
    assert (len(mailoutbox), len(fake_charger.received), Reservation.objects.count()) == (1, 1, 1)


def test_connectors_that_are_not_free_are_not_offered(world, station, drivers, fake_charger):
    token = drivers[2]
    # EVSE 1 connector 2 shares EVSE 1 with the free connector 1: one car at a time.
    add_connector(station, 1, connector_id=2)
    add_connector(station, 2, status="Charging")
    reserved = add_connector(station, 3)
    Reservation.objects.create(
        station=station, connector=reserved, evse=reserved.evse, id_token=token, expires_at=NOW + HOLD
    )
    offline = ChargingStationFactory(identity="A1-CP2", site=world.site_a1)
    add_connector(offline, 1)
    entries = [join(world, t, at=NOW + timedelta(seconds=n)) for n, t in enumerate(drivers[:2])]
    assert advance(world).offered == 1
    assert [state(e)[:2] for e in entries] == [
        ("offered", station.evses.get(evse_id=1).connectors.get(connector_id=1).pk),
        ("waiting", None),
    ]


def test_an_expired_offer_goes_to_the_next_in_line(world, station, drivers, fake_charger, mailoutbox):
    support_reservations(station)
    first = join(world, drivers[0])
    second = join(world, drivers[1], at=NOW + timedelta(seconds=1))
    advance(world)
    first_reservation = Reservation.objects.get()
    # Not yet: the offer holds until its end.
    assert advance(world, at=NOW + HOLD - timedelta(seconds=1)) == AdvanceResult()
    later = NOW + HOLD
    assert advance(world, at=later) == AdvanceResult(expired=1, offered=1, reserved=1, notified=1)
    first.refresh_from_db()
    assert (first.status, first.closed_at) == ("expired", later)
    assert state(second) == ("offered", first.offered_connector_id, later + HOLD)
    first_reservation.refresh_from_db()
    assert first_reservation.status == "expired"
    assert [(m.subject, m.to) for m in mailoutbox] == [
        ("A charger is free for you at A1", ["owner1@example.com"]),
        ("Your waitlist offer at A1 has expired", ["owner1@example.com"]),
        ("A charger is free for you at A1", ["owner2@example.com"]),
    ]
    assert mailoutbox[1].body == (
        "The charger held for you at A1 (connector 1 of A1-CP1) until 13:10 CET was not used, so it went to "
        "the next driver in line.\n\nJoin the waitlist again if you still need to charge.\n"
    )
    assert mailoutbox[2].body.splitlines()[0] == (
        "A charger is free for you at A1: connector 1 of A1-CP1 until 13:20 CET."
    )


def test_a_session_of_the_offered_token_fulfils_the_offer(world, station, drivers, fake_charger, mailoutbox):
    first = join(world, drivers[0])
    second = join(world, drivers[1], at=NOW + timedelta(seconds=1))
    advance(world)
    connector = station.evses.get().connectors.get()
    ChargingSessionFactory(
        station=station,
        evse=connector.evse,
        connector=connector,
        id_token=drivers[0],
        started_at=NOW + timedelta(minutes=2),
    )
    connector.status = "Charging"
    connector.save(update_fields=["status"])
    assert advance(world, at=NOW + timedelta(minutes=3)) == AdvanceResult(fulfilled=1)
    first.refresh_from_db()
    assert (first.status, first.closed_at) == ("fulfilled", NOW + timedelta(minutes=3))
    assert state(second) == ("waiting", None, None)
    # After the offer's end nothing expires: it was used.
    assert advance(world, at=NOW + HOLD + timedelta(minutes=1)) == AdvanceResult()
    assert len(mailoutbox) == 1


def test_a_session_before_the_offer_does_not_fulfil_it(world, station, drivers, fake_charger):
    ChargingSessionFactory(station=station, id_token=drivers[0], started_at=NOW - timedelta(minutes=5))
    entry = join(world, drivers[0])
    advance(world)
    assert state(entry)[0] == "offered"


def test_a_waiting_driver_who_charged_anyway_is_not_offered_a_connector(
    world, station, drivers, fake_charger
):
    waiting = join(world, drivers[0])
    next_one = join(world, drivers[1], at=NOW + timedelta(seconds=1))
    ChargingSessionFactory(station=station, id_token=drivers[0], started_at=NOW + timedelta(seconds=5))
    assert advance(world, at=NOW + timedelta(seconds=10)) == AdvanceResult(fulfilled=1, offered=1, notified=1)
    assert (state(waiting)[0], state(next_one)[0]) == ("fulfilled", "offered")


def test_a_failed_offer_email_is_sent_by_the_next_run(
    world, station, drivers, fake_charger, mailoutbox, monkeypatch
):
    entry = join(world, drivers[0])

    def broken(*args, **kwargs):
        raise OSError("smtp down")

    monkeypatch.setattr("sessions.services.waitlists.send_mail", broken)
    assert advance(world) == AdvanceResult(offered=1, notified=0)
    entry.refresh_from_db()
    assert (entry.status, entry.notified_at) == ("offered", None)
    monkeypatch.undo()
    assert advance(world, at=NOW + timedelta(seconds=30)) == AdvanceResult(notified=1)
    entry.refresh_from_db()
    assert entry.notified_at == NOW + timedelta(seconds=30)
    assert [m.to for m in mailoutbox] == [["owner1@example.com"]]


def test_nobody_waiting_changes_nothing(world, station, fake_charger, mailoutbox):
    assert advance(world) == AdvanceResult()
    assert (fake_charger.received, len(mailoutbox)) == ([], 0)


# --- leaving -------------------------------------------------------------------------------------------------


def test_leaving_an_offer_cancels_its_reservation(world, station, drivers, fake_charger):
    support_reservations(station)
    entry = join(world, drivers[0])
    advance(world)
    entry.refresh_from_db()
    left = waitlist_leave(
        actor=world.host_a1, entry=entry, cancel_reservation=True, now=NOW + timedelta(minutes=1)
    )
    assert (left.status, left.closed_at, left.reservation.status) == (
        "cancelled",
        NOW + timedelta(minutes=1),
        "cancelled",
    )
    assert fake_charger.received[-1] == (
        "A1-CP1",
        "CancelReservation",
        {"reservationId": entry.reservation_id},
    )
    with pytest.raises(Conflict) as error:
        waitlist_leave(actor=world.operator_a, entry=entry)
    assert error.value.message == f"Waitlist entry {entry.pk} is cancelled: it is no longer in the queue."


@pytest.mark.parametrize("actor", ["finance_a", "operator_b"])
def test_leaving_needs_the_command_right(world, drivers, actor):
    entry = join(world, drivers[0])
    with pytest.raises(PermissionDenied):
        waitlist_leave(actor=getattr(world, actor), entry=entry)
    assert state(entry)[0] == "waiting"


# --- tasks ---------------------------------------------------------------------------------------------------


def test_the_periodic_task_queues_every_site_with_open_entries(world, drivers, monkeypatch):
    queued = []
    monkeypatch.setattr(tasks.waitlist_advance_site, "delay", lambda site_id: queued.append(site_id))
    join(world, drivers[0])
    join(world, drivers[1], site=world.site_a2)
    closed = join(world, drivers[2])
    waitlist_leave(actor=world.operator_a, entry=closed)
    assert tasks.waitlists_advance() == 2
    assert sorted(queued) == sorted([world.site_a1.pk, world.site_a2.pk])


def test_the_site_task_advances_with_the_ocpp_builder(world, station, drivers, fake_charger, mailoutbox):
    support_reservations(station)
    entry = waitlist_join(actor=world.operator_a, site=world.site_a1, id_token=drivers[0])
    assert tasks.waitlist_advance_site(world.site_a1.pk) == {
        "fulfilled": 0,
        "expired": 0,
        "offered": 1,
        "reserved": 1,
        "notified": 1,
    }
    assert state(entry)[0] == "offered"
    assert [action for _, action, _ in fake_charger.received] == ["ReserveNow"]
    assert tasks.waitlist_advance_site(world.site_a1.pk)["offered"] == 0
