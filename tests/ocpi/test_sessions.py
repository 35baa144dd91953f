"""OCPI Sessions, Sender (cpms/ocpi/services/sessions.py): the push sweep (PUT, then PATCHes of what changed,
nothing on a re-run), authorisation references, the GET list scoped to the caller and paginated, and
charging preferences. Shapes are checked field by field against OCPI 2.2.1 mod_sessions 4.1."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from django.test import Client
from django.utils import timezone

from billing.services.cdrs import session_bill
from billing.services.tariffs import (
    TariffVersionInput,
    session_pricing_snapshot,
    tariff_assign,
    tariff_create,
    tariff_version_create,
)
from billing.types import SessionUsage, UsagePeriod
from cpms.ocpi.enums import Role
from cpms.ocpi.models import OcpiAuthorization, OcpiOutboxItem, OcpiSession, OcpiToken
from cpms.ocpi.services.sessions import charging_periods, periods_appended, sessions_push_changes
from sessions.models import ChargingSession, MeterValue
from sessions.services.readings import samples_record
from sessions.types import Sample
from stations.enums import ConnectorType
from tests.factories import ChargingSessionFactory, ConnectorFactory, EvseFactory, IdTokenFactory
from tests.ocpi.conftest import OcpiCaller, partner_registered
from tests.ocpi_parties.checks import object_problems

pytestmark = pytest.mark.django_db


def _body(response):
    return orjson.loads(response.content)


def fmt(moment) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def roaming_token(partner, *, uid: str, country_code: str = "DE", party_id: str = "EMS") -> OcpiToken:
    """A token `partner` pushed (an IdToken of its organisation mirrored by an OcpiToken)."""
    id_token = IdTokenFactory(organisation=partner.party.organisation, value=uid)
    return OcpiToken.objects.create(
        partner=partner,
        id_token=id_token,
        country_code=country_code,
        party_id=party_id,
        uid=uid,
        type="RFID",
        contract_id=f"{country_code}-{party_id}-C{uid}",
        data={},
        last_updated=timezone.now(),
    )


def energy_tariff(org):
    """FLAT 1.00 + 0.30 per kWh, 19 % VAT, on the whole organisation."""
    tariff = tariff_create(organisation=org, name="roaming")
    tariff_version_create(
        tariff=tariff,
        data=TariffVersionInput(
            valid_from=timezone.now() - timedelta(days=30),
            currency="EUR",
            tax_rate=Decimal("0.19"),
            elements=[
                {"price_components": [{"type": "FLAT", "price": "1.00", "step_size": 1}]},
                {"price_components": [{"type": "ENERGY", "price": "0.30", "step_size": 1}]},
            ],
        ),
    )
    tariff_assign(tariff=tariff)
    return tariff


def active_session(station, token: OcpiToken, *, started_at, meter_start_wh: int = 1_000) -> ChargingSession:
    """An active session of `token` on EVSE 1 / connector 1 of `station`, with its start reading and its
    tariff snapshot, as the start path leaves it."""
    evse = station.evses.filter(evse_id=1).first() or EvseFactory(station=station, evse_id=1)
    connector = evse.connectors.first() or ConnectorFactory(
        evse=evse, connector_id=1, connector_type=ConnectorType.CCS2
    )
    session = ChargingSessionFactory(
        station=station,
        evse=evse,
        connector=connector,
        id_token=token.id_token,
        id_tag=token.uid,
        started_at=started_at,
        start_received_at=started_at,
        meter_start_wh=meter_start_wh,
        meter_last_wh=meter_start_wh,
        meter_last_at=started_at,
    )
    MeterValue.objects.create(
        station=station,
        session=session,
        timestamp=started_at,
        value=Decimal(meter_start_wh),
        unit="Wh",
        received_at=started_at,
    )
    session_pricing_snapshot(session_id=session.pk)
    return session


def reading(session: ChargingSession, *, at, wh: int) -> None:
    """A meter value through the readings service (which moves meter_last_* and updated_at)."""
    session = ChargingSession.objects.get(pk=session.pk)
    samples_record(session, session.station_id, 1, [Sample(timestamp=at, value=Decimal(wh), unit="Wh")], at)


def stop(session: ChargingSession, *, at, wh: int) -> None:
    session = ChargingSession.objects.get(pk=session.pk)
    session.status = "completed"
    session.stopped_at = at
    session.stop_received_at = at
    session.meter_stop_wh = wh
    session.energy_wh = wh - session.meter_start_wh
    session.save()


def pushes(partner) -> list[OcpiOutboxItem]:
    return list(OcpiOutboxItem.objects.filter(partner=partner).order_by("id"))


def quarter_hour(hours_ago: int):
    """A start on the charging periods' grid (quarter hours), so that the periods are predictable."""
    now = timezone.now().replace(second=0, microsecond=0)
    return now - timedelta(minutes=now.minute % 15, hours=hours_ago)


@pytest.fixture
def start():
    return quarter_hour(2)


def test_a_roaming_session_is_put_whole_then_patched_with_what_changed(roaming, world, start):
    energy_tariff(world.org_a)
    token = roaming_token(roaming.partner_a, uid="UID-1")
    session = active_session(world.station_a1, token, started_at=start)
    reading(session, at=start + timedelta(minutes=30), wh=6_000)
    site, evse = world.site_a1, session.evse

    assert sessions_push_changes() == 1

    [put] = pushes(roaming.partner_a)
    session.refresh_from_db()
    # By hand: 5 kWh so far; cost FLAT 1.00 + 5 x 0.30 = 2.50 excl. VAT, 19 % = 0.475 -> 0.48, 2.98 incl.
    assert (put.module, put.method, put.path, put.object_key) == (
        "sessions",
        "PUT",
        f"/NL/AAA/{session.pk}",
        f"session:{session.pk}",
    )
    assert (put.to_country_code, put.to_party_id) == ("DE", "EMS")
    assert put.body == {
        "country_code": "NL",
        "party_id": "AAA",
        "id": str(session.pk),
        "start_date_time": fmt(start),
        "kwh": 5.0,
        "cdr_token": {
            "country_code": "DE",
            "party_id": "EMS",
            "uid": "UID-1",
            "type": "RFID",
            "contract_id": "DE-EMS-CUID-1",
        },
        "auth_method": "WHITELIST",
        "location_id": str(site.pk),
        "evse_uid": str(evse.pk),
        "connector_id": "1",
        "currency": "EUR",
        # Quarter-hour periods, the 5 kWh of the first half hour split evenly (constant power).
        "charging_periods": [
            {
                "start_date_time": fmt(start),
                "dimensions": [{"type": "ENERGY", "volume": 2.5}, {"type": "TIME", "volume": 0.25}],
            },
            {
                "start_date_time": fmt(start + timedelta(minutes=15)),
                "dimensions": [{"type": "ENERGY", "volume": 2.5}, {"type": "TIME", "volume": 0.25}],
            },
        ],
        "total_cost": {"excl_vat": 2.5, "incl_vat": 2.98},
        "status": "ACTIVE",
        "last_updated": fmt(session.updated_at),
    }
    # And as the spec-written eMSP of tests/ocpi_parties reads it.
    assert object_problems("Session", put.body) == []
    ocpi = OcpiSession.objects.get(session=session)
    assert (ocpi.partner_id, ocpi.token_id, ocpi.auth_method, ocpi.pushed) == (
        roaming.partner_a.pk,
        token.pk,
        "WHITELIST",
        put.body,
    )

    # Nothing changed: nothing queued.
    assert sessions_push_changes() == 0

    # Another reading: kWh, periods and cost change, nothing else.
    reading(session, at=start + timedelta(minutes=60), wh=11_000)
    assert sessions_push_changes() == 1
    patch = pushes(roaming.partner_a)[-1]
    session.refresh_from_db()
    # 10 kWh: 1.00 + 3.00 = 4.00 excl., 0.76 VAT, 4.76 incl.
    assert (patch.method, patch.path, patch.object_key) == (
        "PATCH",
        f"/NL/AAA/{session.pk}",
        f"session:{session.pk}",
    )
    assert patch.body == {
        "kwh": 10.0,
        # Only the new periods: the receiver appends them (mod_sessions 2.2.3).
        "charging_periods": [
            {
                "start_date_time": fmt(start + timedelta(minutes=30)),
                "dimensions": [{"type": "ENERGY", "volume": 2.5}, {"type": "TIME", "volume": 0.25}],
            },
            {
                "start_date_time": fmt(start + timedelta(minutes=45)),
                "dimensions": [{"type": "ENERGY", "volume": 2.5}, {"type": "TIME", "volume": 0.25}],
            },
        ],
        "total_cost": {"excl_vat": 4.0, "incl_vat": 4.76},
        "last_updated": fmt(session.updated_at),
    }

    # The stop: the end and the status; energy and cost are those already pushed.
    stop(session, at=start + timedelta(minutes=60), wh=11_000)
    assert sessions_push_changes() == 1
    session.refresh_from_db()
    assert pushes(roaming.partner_a)[-1].body == {
        "end_date_time": fmt(start + timedelta(minutes=60)),
        "status": "COMPLETED",
        "last_updated": fmt(session.updated_at),
    }

    # Billed: the CDR's total is the one pushed, so the session has nothing new to say.
    assert session_bill(session_id=session.pk).outcome == "billed"
    assert sessions_push_changes() == 0
    assert sessions_push_changes() == 0
    items = pushes(roaming.partner_a)
    assert [item.method for item in items] == ["PUT", "PATCH", "PATCH"]
    assert [object_problems("Session", item.body, partial=True) for item in items[1:]] == [[], []]
    assert not OcpiOutboxItem.objects.exclude(partner=roaming.partner_a).exists()


def test_a_session_without_a_roaming_token_is_not_pushed(roaming, world, start):
    local = IdTokenFactory(organisation=world.org_a, value="LOCAL-1")
    ChargingSessionFactory(station=world.station_a1, id_token=local, started_at=start)
    assert sessions_push_changes() == 0
    assert not OcpiSession.objects.exists()


def test_a_suspended_partner_gets_no_session_push_until_it_is_back(roaming, world, start):
    token = roaming_token(roaming.partner_a, uid="UID-1")
    active_session(world.station_a1, token, started_at=start)
    roaming.partner_a.status = "SUSPENDED"
    roaming.partner_a.save()
    assert sessions_push_changes() == 0
    roaming.partner_a.status = "REGISTERED"
    roaming.partner_a.save()
    assert sessions_push_changes() == 1


def test_the_oldest_unused_authorisation_of_the_token_at_that_site_names_the_session(roaming, world, start):
    token = roaming_token(roaming.partner_a, uid="UID-1")
    stale = OcpiAuthorization.objects.create(
        partner=roaming.partner_a, token=token, auth_method="AUTH_REQUEST", authorization_reference="STALE"
    )
    other_site = OcpiAuthorization.objects.create(
        partner=roaming.partner_a,
        token=token,
        auth_method="COMMAND",
        authorization_reference="OTHER-SITE",
        site=world.site_a2,
    )
    oldest = OcpiAuthorization.objects.create(
        partner=roaming.partner_a,
        token=token,
        auth_method="COMMAND",
        authorization_reference="REF-1",
        site=world.site_a1,
    )
    newer = OcpiAuthorization.objects.create(
        partner=roaming.partner_a, token=token, auth_method="AUTH_REQUEST", authorization_reference="REF-2"
    )
    later = OcpiAuthorization.objects.create(
        partner=roaming.partner_a, token=token, auth_method="AUTH_REQUEST", authorization_reference="AFTER"
    )
    # Never followed by a session: too old to be this one's.
    OcpiAuthorization.objects.filter(pk=stale.pk).update(created_at=start - timedelta(minutes=16))
    OcpiAuthorization.objects.filter(pk=other_site.pk).update(created_at=start - timedelta(minutes=3))
    OcpiAuthorization.objects.filter(pk=oldest.pk).update(created_at=start - timedelta(minutes=2))
    OcpiAuthorization.objects.filter(pk=newer.pk).update(created_at=start - timedelta(minutes=1))
    OcpiAuthorization.objects.filter(pk=later.pk).update(created_at=start + timedelta(minutes=1))
    first = active_session(world.station_a1, token, started_at=start)

    assert sessions_push_changes() == 1

    ocpi = OcpiSession.objects.get(session=first)
    assert (ocpi.auth_method, ocpi.authorization_reference) == ("COMMAND", "REF-1")
    [put] = pushes(roaming.partner_a)
    assert (put.body["auth_method"], put.body["authorization_reference"]) == ("COMMAND", "REF-1")
    used = dict(OcpiAuthorization.objects.values_list("authorization_reference", "used_at"))
    assert [ref for ref, used_at in sorted(used.items()) if used_at is not None] == ["REF-1"]

    # The next session of the token takes the next one (REF-2, before its start); then AFTER.
    second = active_session(world.station_a1, token, started_at=start + timedelta(minutes=2))
    third = active_session(world.station_a1, token, started_at=start + timedelta(minutes=3))
    assert sessions_push_changes() == 2
    assert [OcpiSession.objects.get(session=s).authorization_reference for s in (second, third)] == [
        "REF-2",
        "AFTER",
    ]
    assert OcpiAuthorization.objects.filter(used_at__isnull=True).count() == 2  # OTHER-SITE, STALE


def test_a_session_started_at_plug_in_takes_the_authorisation_given_after_it(roaming, world, start):
    """OCPP 2.0.1 with TxStartPoint EVConnected: the transaction opens when the cable is plugged in, the
    eMSP's START_SESSION (or a real-time authorisation of the card) comes after."""
    token = roaming_token(roaming.partner_a, uid="UID-1")
    session = active_session(world.station_a1, token, started_at=start)
    command = OcpiAuthorization.objects.create(
        partner=roaming.partner_a, token=token, auth_method="COMMAND", authorization_reference="APP-1"
    )
    OcpiAuthorization.objects.filter(pk=command.pk).update(created_at=start + timedelta(minutes=1))

    assert sessions_push_changes() == 1

    [put] = pushes(roaming.partner_a)
    assert (put.body["auth_method"], put.body["authorization_reference"]) == ("COMMAND", "APP-1")
    assert session.pk == OcpiSession.objects.get(authorization_reference="APP-1").session_id


@pytest.fixture
def hub(roaming):
    partner, token = partner_registered(
        roaming.party_a, name="hub", country_code="NL", party_id="HUB", role=Role.HUB
    )
    return partner, OcpiCaller(token, Client())


def test_get_lists_the_callers_sessions_only(roaming, world, start):
    mine = active_session(world.station_a1, roaming_token(roaming.partner_a, uid="UID-1"), started_at=start)
    active_session(
        world.station_a2,
        roaming_token(roaming.partner_a2, uid="UID-2", country_code="FR", party_id="OTH"),
        started_at=start,
    )
    active_session(world.station_b1, roaming_token(roaming.partner_b, uid="UID-1"), started_at=start)
    assert sessions_push_changes() == 3

    response = roaming.caller_a.get("/ocpi/2.2.1/sessions")

    assert response.status_code == 200
    body = _body(response)
    assert [item["id"] for item in body["data"]] == [str(mine.pk)]
    assert body["data"][0] == OcpiSession.objects.get(session=mine).pushed
    assert response["X-Total-Count"] == "1"
    assert [
        item["cdr_token"]["uid"] for item in _body(roaming.caller_b.get("/ocpi/2.2.1/sessions"))["data"]
    ] == ["UID-1"]
    assert _body(roaming.caller_b.get("/ocpi/2.2.1/sessions"))["data"][0]["party_id"] == "BBB"


def test_get_through_a_hub_lists_only_the_sessions_of_the_party_it_speaks_for(roaming, world, start, hub):
    partner, caller = hub
    ems = active_session(world.station_a1, roaming_token(partner, uid="UID-1"), started_at=start)
    oth = active_session(
        world.station_a2,
        roaming_token(partner, uid="UID-2", country_code="FR", party_id="OTH"),
        started_at=start,
    )
    assert sessions_push_changes() == 2
    # The PUT goes to the hub, addressed to the eMSP behind it.
    assert {(i.to_country_code, i.to_party_id) for i in pushes(partner)} == {("DE", "EMS"), ("FR", "OTH")}

    def ids(**headers):
        return [item["id"] for item in _body(caller.get("/ocpi/2.2.1/sessions", **headers))["data"]]

    assert ids(**{"OCPI-from-country-code": "DE", "OCPI-from-party-id": "EMS"}) == [str(ems.pk)]
    assert ids(**{"OCPI-from-country-code": "FR", "OCPI-from-party-id": "OTH"}) == [str(oth.pk)]
    assert ids() == []


def test_get_is_paginated_by_last_updated_with_date_filters(roaming, world, start):
    token = roaming_token(roaming.partner_a, uid="UID-1")
    sessions = [
        active_session(world.station_a1, token, started_at=start + timedelta(minutes=i)) for i in range(3)
    ]
    for i, session in enumerate(sessions):  # last_updated in the order of creation, a minute apart
        ChargingSession.objects.filter(pk=session.pk).update(updated_at=start + timedelta(minutes=10 + i))
    assert sessions_push_changes() == 3

    first = roaming.caller_a.get("/ocpi/2.2.1/sessions?limit=2")
    assert [item["id"] for item in _body(first)["data"]] == [str(sessions[0].pk), str(sessions[1].pk)]
    assert (first["X-Total-Count"], first["X-Limit"]) == ("3", "2")
    assert first["Link"] == '<http://testserver/ocpi/2.2.1/sessions?limit=2&offset=2>; rel="next"'
    last = roaming.caller_a.get("/ocpi/2.2.1/sessions?limit=2&offset=2")
    assert [item["id"] for item in _body(last)["data"]] == [str(sessions[2].pk)]
    assert "Link" not in last

    since = fmt(start + timedelta(minutes=11))
    until = fmt(start + timedelta(minutes=12))
    dated = _body(roaming.caller_a.get(f"/ocpi/2.2.1/sessions?date_from={since}&date_to={until}"))
    assert [item["id"] for item in dated["data"]] == [str(sessions[1].pk)]


def test_get_serves_a_session_changed_since_its_last_push_as_it_is_now(roaming, world, start):
    session = active_session(
        world.station_a1, roaming_token(roaming.partner_a, uid="UID-1"), started_at=start
    )
    assert sessions_push_changes() == 1
    reading(session, at=start + timedelta(minutes=30), wh=4_000)

    [item] = _body(roaming.caller_a.get("/ocpi/2.2.1/sessions"))["data"]

    assert item["kwh"] == 3.0


def test_charging_preferences_are_answered_without_smart_charging(roaming, world, start):
    session = active_session(
        world.station_a1, roaming_token(roaming.partner_a, uid="UID-1"), started_at=start
    )
    assert sessions_push_changes() == 1
    url = f"/ocpi/2.2.1/sessions/{session.pk}/charging_preferences"
    preferences = {"profile_type": "CHEAP", "departure_time": "2026-12-08T07:00:00Z", "energy_need": 30}

    response = roaming.caller_a.request("PUT", url, preferences)
    assert (response.status_code, _body(response)["data"]) == (200, "NO_SMART_CHARGING")

    other = roaming.caller_a2.request("PUT", url, preferences)
    assert (other.status_code, _body(other)["status_code"]) == (404, 2000)
    bad = roaming.caller_a.request("PUT", url, {"profile_type": "FASTEST"})
    assert (bad.status_code, _body(bad)["status_code"]) == (400, 2001)

    stop(session, at=start + timedelta(minutes=5), wh=1_000)
    ended = roaming.caller_a.request("PUT", url, preferences)
    assert _body(ended)["data"] == "NOT_POSSIBLE"


def test_a_sweep_with_nothing_due_is_one_query(roaming, world, start, django_assert_num_queries):
    energy_tariff(world.org_a)
    token = roaming_token(roaming.partner_a, uid="UID-1")
    for minutes in range(3):
        session = active_session(world.station_a1, token, started_at=start + timedelta(minutes=minutes))
        reading(session, at=start + timedelta(minutes=30), wh=6_000)
    assert sessions_push_changes() == 3

    with django_assert_num_queries(1):
        assert sessions_push_changes() == 0


def test_a_sweep_takes_a_bounded_batch_least_recently_changed_first(roaming, world, start):
    token = roaming_token(roaming.partner_a, uid="UID-1")
    sessions = [
        active_session(world.station_a1, token, started_at=start + timedelta(minutes=i)) for i in range(3)
    ]
    for i, session in enumerate(sessions):
        ChargingSession.objects.filter(pk=session.pk).update(updated_at=start + timedelta(minutes=10 - i))

    assert sessions_push_changes(limit=2) == 2
    assert [item.object_key for item in pushes(roaming.partner_a)] == [
        f"session:{sessions[2].pk}",
        f"session:{sessions[1].pk}",
    ]
    assert sessions_push_changes(limit=2) == 1
    assert pushes(roaming.partner_a)[-1].object_key == f"session:{sessions[0].pk}"


def test_charging_periods_are_cut_on_quarter_hours_and_where_charging_stops():
    t = datetime(2026, 3, 10, 10, 7, tzinfo=UTC)
    usage = SessionUsage(
        started_at=t,
        stopped_at=t + timedelta(minutes=45),
        periods=(
            UsagePeriod(start=t, end=t + timedelta(minutes=30), energy_wh=1_001, charging=True),
            UsagePeriod(
                start=t + timedelta(minutes=30), end=t + timedelta(minutes=45), energy_wh=0, charging=False
            ),
        ),
    )

    def period(hh_mm: str, kwh: float, kind: str, hours: float) -> dict:
        return {
            "start_date_time": f"2026-03-10T{hh_mm}:00Z",
            "dimensions": [{"type": "ENERGY", "volume": kwh}, {"type": kind, "volume": hours}],
        }

    # By hand, constant power over 10:07-10:37: Wh delivered by 10:15 = floor(1001 x 8/30) = 266, by 10:30
    # floor(1001 x 23/30) = 767; hours to 4 decimals (8 min = 0.1333 h, 7 min = 0.1167 h).
    every = [
        period("10:07", 0.266, "TIME", 0.1333),
        period("10:15", 0.501, "TIME", 0.25),
        period("10:30", 0.234, "TIME", 0.1167),
        period("10:37", 0.0, "PARKING_TIME", 0.1333),
        period("10:45", 0.0, "PARKING_TIME", 0.1167),
    ]
    assert charging_periods(usage) == every
    # In progress with its last reading at 10:52: the slot 10:45-11:00 is not over, its period may still grow.
    assert charging_periods(usage, final_until=t + timedelta(minutes=45)) == every[:4]
    assert periods_appended(every[:2], every) == every[2:]
    assert periods_appended([], every[:1]) == every[:1]
