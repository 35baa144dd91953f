"""OCPI 2.2.1 Locations as Sender (cpms/ocpi/services/locations.py): the objects against the spec's field
names and types (8.3), pagination, scoping to the partner, the status mapping, the push sweep and sync now."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from billing.services.tariffs import (
    TariffVersionInput,
    tariff_assign,
    tariff_create,
    tariff_resolve,
    tariff_version_create,
)
from cpms.ocpi.models import OcpiLocation, OcpiOutboxItem, OcpiPartner
from cpms.ocpi.services import locations
from stations.enums import ConnectorStatus, ConnectorType, RegistrationStatus, StationEventKind
from stations.models import ChargingStation, Connector, Evse, Site, StationEvent, StatusChange
from tests.factories import (
    ChargingStationFactory,
    ConnectorFactory,
    EvseFactory,
    IdTokenFactory,
    SiteFactory,
)
from tests.ocpi_parties.checks import object_problems

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _body(response):
    return orjson.loads(response.content)


def _place(site: Site, *, country: str = "DE", lat: str = "52.520008", lon: str = "13.404954") -> Site:
    Site.objects.filter(pk=site.pk).update(
        country=country,
        latitude=Decimal(lat),
        longitude=Decimal(lon),
        address="Alexanderplatz 1",
        city="Berlin",
        postal_code="10178",
        created_at=T0,
        updated_at=T0,
    )
    site.refresh_from_db()
    return site


def _times(station: ChargingStation, *, updated: datetime = T0, connected: datetime | None = T0) -> None:
    ChargingStation.objects.filter(pk=station.pk).update(
        updated_at=updated, created_at=T0, connected_at=connected, is_connected=connected is not None
    )
    # The EVSEs' and connectors' definitions date from the start too.
    Evse.objects.filter(station=station).update(updated_at=T0)
    Connector.objects.filter(evse__station=station).update(updated_at=T0)


@pytest.fixture
def located(world, roaming):
    """Site A1 placed, its station online with EVSE 1 (Type 2 socket 11 kW Available, CCS2 50 kW Charging)
    and EVSE 2 (Schuko, no power known, Faulted); site A2 placed with one Available Type 2 EVSE."""
    site = _place(world.site_a1)
    station = world.station_a1
    evse1 = EvseFactory(station=station, evse_id=1)
    ConnectorFactory(
        evse=evse1,
        connector_id=1,
        connector_type=ConnectorType.TYPE2,
        max_power_w=11000,
        status=ConnectorStatus.AVAILABLE,
        status_changed_at=T0 + timedelta(minutes=5),
    )
    ConnectorFactory(
        evse=evse1,
        connector_id=2,
        connector_type=ConnectorType.CCS2,
        max_power_w=50000,
        status=ConnectorStatus.CHARGING,
        status_changed_at=T0 + timedelta(minutes=7),
    )
    evse2 = EvseFactory(station=station, evse_id=2)
    ConnectorFactory(
        evse=evse2,
        connector_id=1,
        connector_type=ConnectorType.SCHUKO,
        status=ConnectorStatus.FAULTED,
        status_changed_at=T0 + timedelta(minutes=1),
    )
    _times(station)
    site_a2 = _place(world.site_a2, country="US", lat="40.712776", lon="-74.005974")
    evse_a2 = EvseFactory(station=world.station_a2, evse_id=1)
    ConnectorFactory(
        evse=evse_a2, connector_id=1, connector_type=ConnectorType.TYPE2, status=ConnectorStatus.AVAILABLE
    )
    _times(world.station_a2)
    _place(world.site_b1, country="GB")
    ConnectorFactory(
        evse=EvseFactory(station=world.station_b1, evse_id=1), connector_type=ConnectorType.TYPE2
    )
    _times(world.station_b1)
    station.refresh_from_db()
    return {"site": site, "station": station, "evse1": evse1, "evse2": evse2, "site_a2": site_a2}


def test_a_location_has_the_shape_of_the_spec(roaming, located):
    site, station, evse1, evse2 = located["site"], located["station"], located["evse1"], located["evse2"]
    response = roaming.caller_a.get(f"/ocpi/2.2.1/locations/{site.pk}")
    assert response.status_code == 200
    body = _body(response)
    assert body["status_code"] == 1000
    capabilities = ["RFID_READER", "REMOTE_START_STOP_CAPABLE", "RESERVABLE", "UNLOCK_CAPABLE"]
    assert body["data"] == {
        "country_code": "NL",
        "party_id": "AAA",
        "id": str(site.pk),
        "publish": True,
        "name": "A1",
        "address": "Alexanderplatz 1",
        "city": "Berlin",
        "postal_code": "10178",
        "country": "DEU",
        "coordinates": {"latitude": "52.520008", "longitude": "13.404954"},
        "evses": [
            {
                "uid": str(evse1.pk),
                "evse_id": f"NL*AAA*E{station.pk}*1",
                # One connector charging: the EVSE is in use.
                "status": "CHARGING",
                "capabilities": capabilities,
                "connectors": [
                    {
                        "id": "1",
                        "standard": "IEC_62196_T2",
                        "format": "SOCKET",
                        "power_type": "AC_3_PHASE",
                        "max_voltage": 230,
                        "max_amperage": 16,  # 11 kW / (3 x 230 V)
                        "max_electric_power": 11000,
                        "last_updated": "2026-03-01T08:00:00Z",
                    },
                    {
                        "id": "2",
                        "standard": "IEC_62196_T2_COMBO",
                        "format": "CABLE",
                        "power_type": "DC",
                        "max_voltage": 500,
                        "max_amperage": 100,  # 50 kW / 500 V
                        "max_electric_power": 50000,
                        "last_updated": "2026-03-01T08:00:00Z",
                    },
                ],
                "physical_reference": evse1.public_code,
                "last_updated": "2026-03-01T08:07:00Z",
            },
            {
                "uid": str(evse2.pk),
                "evse_id": f"NL*AAA*E{station.pk}*2",
                "status": "OUTOFORDER",
                "capabilities": capabilities,
                "connectors": [
                    {
                        "id": "1",
                        "standard": "DOMESTIC_F",
                        "format": "SOCKET",
                        "power_type": "AC_1_PHASE",
                        "max_voltage": 230,
                        "max_amperage": 16,
                        "last_updated": "2026-03-01T08:00:00Z",
                    }
                ],
                "physical_reference": evse2.public_code,
                "last_updated": "2026-03-01T08:01:00Z",
            },
        ],
        "operator": {"name": "Org A"},
        "owner": {"name": "Org A"},
        "time_zone": "Europe/Berlin",
        "opening_times": {"twentyfourseven": True},
        "last_updated": "2026-03-01T08:07:00Z",
    }
    assert response["OCPI-from-party-id"] == "AAA"
    # And against the test eMSP's checks, written from the specification's tables (not from this code).
    assert object_problems("Location", body["data"]) == []


def test_location_options_come_from_its_ocpi_settings(roaming, located):
    site = located["site"]
    hours = {
        "twentyfourseven": False,
        "regular_hours": [{"weekday": 1, "period_begin": "08:00", "period_end": "18:00"}],
    }
    OcpiLocation.objects.create(
        site=site, parking_type="ON_STREET", facilities=["CAFE", "WIFI"], opening_times=hours
    )
    OcpiPartner.objects.filter(pk=roaming.partner_a.pk).update(allow_charging_profiles=True)
    data = _body(roaming.caller_a.get(f"/ocpi/2.2.1/locations/{site.pk}"))["data"]
    assert data["parking_type"] == "ON_STREET"
    assert data["facilities"] == ["CAFE", "WIFI"]
    assert data["opening_times"] == hours
    assert data["evses"][0]["capabilities"][0] == "CHARGING_PROFILE_CAPABLE"
    assert object_problems("Location", data) == []
    # The OcpiLocation row was just saved: it is the latest change.
    assert data["last_updated"] > "2026-03-01T08:07:00Z"


def test_evse_and_connector_are_served_alone_and_unknown_ones_are_2003(roaming, located):
    site, evse1 = located["site"], located["evse1"]
    evse = _body(roaming.caller_a.get(f"/ocpi/2.2.1/locations/{site.pk}/{evse1.pk}"))["data"]
    assert evse["uid"] == str(evse1.pk)
    assert evse["status"] == "CHARGING"
    connector = _body(roaming.caller_a.get(f"/ocpi/2.2.1/locations/{site.pk}/{evse1.pk}/2"))["data"]
    assert connector["standard"] == "IEC_62196_T2_COMBO"
    for path in (
        "/ocpi/2.2.1/locations/999999",
        "/ocpi/2.2.1/locations/abc",
        f"/ocpi/2.2.1/locations/{site.pk}/999999",
        f"/ocpi/2.2.1/locations/{site.pk}/{evse1.pk}/9",
        # An EVSE of another site of the same organisation is not an EVSE of this one.
        f"/ocpi/2.2.1/locations/{located['site_a2'].pk}/{evse1.pk}",
    ):
        response = roaming.caller_a.get(path)
        assert response.status_code == 404, path
        assert _body(response)["status_code"] == 2003
        assert "data" not in _body(response)


@pytest.mark.parametrize(
    ("connected", "station_status", "statuses", "expected"),
    [
        (True, "Unknown", ["Available"], "AVAILABLE"),
        (True, "Unknown", ["Preparing"], "CHARGING"),
        (True, "Unknown", ["Charging"], "CHARGING"),
        (True, "Unknown", ["SuspendedEV"], "CHARGING"),
        (True, "Unknown", ["SuspendedEVSE"], "CHARGING"),
        (True, "Unknown", ["Finishing"], "CHARGING"),
        (True, "Unknown", ["Occupied"], "CHARGING"),
        (True, "Unknown", ["Reserved"], "RESERVED"),
        (True, "Unknown", ["Unavailable"], "INOPERATIVE"),
        (True, "Unknown", ["Faulted"], "OUTOFORDER"),
        (True, "Unknown", ["Unknown"], "UNKNOWN"),
        (True, "Unknown", ["Available", "Faulted"], "AVAILABLE"),
        (True, "Unknown", ["Occupied", "Unavailable"], "CHARGING"),
        (True, "Unknown", ["Reserved", "Available"], "RESERVED"),
        (True, "Faulted", ["Available"], "OUTOFORDER"),
        (True, "Unavailable", ["Available"], "INOPERATIVE"),
        (False, "Unknown", ["Available"], "UNKNOWN"),
    ],
)
def test_status_is_mapped_from_ocpp(connected, station_status, statuses, expected):
    assert (
        locations.evse_status(connected=connected, station_status=station_status, connector_statuses=statuses)
        == expected
    )


def test_an_offline_station_s_evses_are_unknown_since_it_was_last_seen(roaming, located):
    site, station = located["site"], located["station"]
    ChargingStation.objects.filter(pk=station.pk).update(
        is_connected=False, last_seen_at=T0 + timedelta(minutes=30)
    )
    data = _body(roaming.caller_a.get(f"/ocpi/2.2.1/locations/{site.pk}"))["data"]
    assert [evse["status"] for evse in data["evses"]] == ["UNKNOWN", "UNKNOWN"]
    assert [evse["last_updated"] for evse in data["evses"]] == ["2026-03-01T08:30:00Z"] * 2
    assert data["last_updated"] == "2026-03-01T08:30:00Z"


def test_connector_kinds_and_unknown_type(world, roaming, located):
    evse = EvseFactory(station=located["station"], evse_id=3, max_power_w=7400)
    for number, kind in enumerate(
        [
            ConnectorType.TYPE2_CABLE,
            ConnectorType.CCS1,
            ConnectorType.CHADEMO,
            ConnectorType.TYPE1,
            "Unknown",
        ],
        start=1,
    ):
        ConnectorFactory(evse=evse, connector_id=number, connector_type=kind)
    data = _body(roaming.caller_a.get(f"/ocpi/2.2.1/locations/{located['site'].pk}/{evse.pk}"))["data"]
    got = [
        (
            c["standard"],
            c["format"],
            c["power_type"],
            c["max_voltage"],
            c["max_amperage"],
            c["max_electric_power"],
        )
        for c in data["connectors"]
    ]
    # The EVSE's 7.4 kW applies to connectors without their own power.
    assert got == [
        ("IEC_62196_T2", "CABLE", "AC_3_PHASE", 230, 11, 7400),
        ("IEC_62196_T1_COMBO", "CABLE", "DC", 500, 15, 7400),
        ("CHADEMO", "CABLE", "DC", 500, 15, 7400),
        ("IEC_62196_T1", "CABLE", "AC_1_PHASE", 230, 32, 7400),
        ("IEC_62196_T2", "SOCKET", "AC_3_PHASE", 230, 11, 7400),
    ]


def test_country_codes_are_converted_to_alpha3():
    assert len(locations.COUNTRY_ALPHA3) == 249
    assert locations.country_alpha3("de") == "DEU"
    assert locations.country_alpha3("GB") == "GBR"
    assert locations.country_alpha3("NL") == "NLD"
    assert locations.country_alpha3("XX") is None


# --- list, pagination, scoping ---------------------------------------------------------------------------
def test_the_list_is_paginated_with_link_and_counts(world, roaming, located):
    extra = [_place(SiteFactory(organisation=world.org_a, name=f"Extra {n}")) for n in range(3)]
    first = roaming.caller_a.get("/ocpi/2.2.1/locations?limit=2")
    assert first.status_code == 200
    ids_first = [item["id"] for item in _body(first)["data"]]
    assert ids_first == [str(located["site"].pk), str(located["site_a2"].pk)]
    assert first["X-Total-Count"] == "5"
    assert first["X-Limit"] == "2"
    assert first["Link"] == '<http://testserver/ocpi/2.2.1/locations?limit=2&offset=2>; rel="next"'
    last = roaming.caller_a.get("/ocpi/2.2.1/locations?limit=2&offset=4")
    assert [item["id"] for item in _body(last)["data"]] == [str(extra[2].pk)]
    assert last["X-Total-Count"] == "5"
    assert "Link" not in last


def test_the_list_filters_on_last_updated(world, roaming, located):
    # Site A2's station changed at 09:00; everything else at the latest 08:07.
    ChargingStation.objects.filter(pk=world.station_a2.pk).update(updated_at=T0 + timedelta(hours=1))
    after = _body(roaming.caller_a.get("/ocpi/2.2.1/locations?date_from=2026-03-01T08:30:00Z"))["data"]
    assert [item["id"] for item in after] == [str(located["site_a2"].pk)]
    assert after[0]["last_updated"] == "2026-03-01T09:00:00Z"
    before = roaming.caller_a.get("/ocpi/2.2.1/locations?date_to=2026-03-01T09:00:00Z")
    assert [item["id"] for item in _body(before)["data"]] == [str(located["site"].pk)]
    assert before["X-Total-Count"] == "1"
    # date_from is inclusive (transport and format: pagination).
    exact = _body(roaming.caller_a.get("/ocpi/2.2.1/locations?date_from=2026-03-01T09:00:00Z"))["data"]
    assert [item["id"] for item in exact] == [str(located["site_a2"].pk)]
    bad = roaming.caller_a.get("/ocpi/2.2.1/locations?date_from=yesterday")
    assert bad.status_code == 400
    assert _body(bad)["status_code"] == 2001


def test_a_partner_sees_only_its_organisation_s_published_sites(world, roaming, located):
    site_a1, site_a2 = located["site"], located["site_a2"]
    a = _body(roaming.caller_a.get("/ocpi/2.2.1/locations"))["data"]
    assert [item["id"] for item in a] == [str(site_a1.pk), str(site_a2.pk)]
    b = _body(roaming.caller_b.get("/ocpi/2.2.1/locations"))["data"]
    assert [item["id"] for item in b] == [str(world.site_b1.pk)]
    assert b[0]["party_id"] == "BBB"
    response = roaming.caller_b.get(f"/ocpi/2.2.1/locations/{site_a1.pk}")
    assert response.status_code == 404
    assert _body(response)["status_code"] == 2003
    evse = located["evse1"]
    assert roaming.caller_b.get(f"/ocpi/2.2.1/locations/{site_a1.pk}/{evse.pk}").status_code == 404


def test_an_unpublished_site_is_invisible(roaming, located):
    site_a1 = located["site"]
    OcpiLocation.objects.create(site=site_a1, publish=False)
    a = roaming.caller_a.get("/ocpi/2.2.1/locations")
    assert [item["id"] for item in _body(a)["data"]] == [str(located["site_a2"].pk)]
    assert a["X-Total-Count"] == "1"
    response = roaming.caller_a.get(f"/ocpi/2.2.1/locations/{site_a1.pk}")
    assert response.status_code == 404
    assert _body(response)["status_code"] == 2003


def test_a_site_without_coordinates_or_country_is_not_a_location(world, roaming, located):
    Site.objects.filter(pk=located["site_a2"].pk).update(latitude=None)
    Site.objects.filter(pk=located["site"].pk).update(country="")
    assert _body(roaming.caller_a.get("/ocpi/2.2.1/locations"))["data"] == []


def test_a_partner_with_listed_sites_sees_those_only(roaming, located):
    partner = roaming.partner_a
    partner.publish_all_sites = False
    partner.save()
    partner.published_sites.set([located["site_a2"]])
    a = _body(roaming.caller_a.get("/ocpi/2.2.1/locations"))["data"]
    assert [item["id"] for item in a] == [str(located["site_a2"].pk)]
    assert roaming.caller_a.get(f"/ocpi/2.2.1/locations/{located['site'].pk}").status_code == 404
    # The other partner of organisation A still sees both.
    a2 = _body(roaming.caller_a2.get("/ocpi/2.2.1/locations"))["data"]
    assert len(a2) == 2


def test_stations_not_accepted_and_evses_without_connectors_are_left_out(roaming, located, world):
    pending = ChargingStationFactory(site=located["site"], registration_status=RegistrationStatus.PENDING)
    ConnectorFactory(evse=EvseFactory(station=pending, evse_id=1))
    EvseFactory(station=located["station"], evse_id=9)  # no connector
    data = _body(roaming.caller_a.get(f"/ocpi/2.2.1/locations/{located['site'].pk}"))["data"]
    assert [evse["uid"] for evse in data["evses"]] == [str(located["evse1"].pk), str(located["evse2"].pk)]


def test_the_list_takes_the_same_queries_whatever_its_size(
    world, roaming, located, django_assert_max_num_queries
):
    for n in range(15):
        site = _place(SiteFactory(organisation=world.org_a, name=f"Big {n}"))
        for _ in range(2):
            station = ChargingStationFactory(site=site)
            for e in range(1, 4):
                evse = EvseFactory(station=station, evse_id=e)
                ConnectorFactory(evse=evse, connector_id=1, connector_type=ConnectorType.TYPE2)
                ConnectorFactory(evse=evse, connector_id=2, connector_type=ConnectorType.CCS2)
    # auth (1) + count + page + sites + stations + evses + connectors + tariff assignments + versions.
    with django_assert_max_num_queries(10):
        response = roaming.caller_a.get("/ocpi/2.2.1/locations?limit=100")
    data = _body(response)["data"]
    assert len(data) == 17
    assert sum(len(item["evses"]) for item in data) == 3 + 15 * 6


# --- tariff ids -----------------------------------------------------------------------------------------
def _tariff(org, name: str):
    tariff = tariff_create(organisation=org, name=name)
    tariff_version_create(
        tariff=tariff,
        data=TariffVersionInput(
            valid_from=T0 - timedelta(days=1),
            currency="EUR",
            tax_rate=Decimal("0.19"),
            elements=[{"price_components": [{"type": "ENERGY", "price": "0.30", "step_size": 1}]}],
        ),
    )
    return tariff


def test_connector_tariff_ids_follow_billing_s_resolution_for_the_partner_s_group(world, roaming, located):
    site, station = located["site"], located["station"]
    general = _tariff(world.org_a, "General")
    roaming_a = _tariff(world.org_a, "Roaming A")
    other_group = _tariff(world.org_a, "Fleet")
    group = IdTokenFactory(organisation=world.org_a, value=f"OCPI-{roaming.partner_a.pk}")
    fleet = IdTokenFactory(organisation=world.org_a, value="FLEET")
    OcpiPartner.objects.filter(pk=roaming.partner_a.pk).update(id_token_group=group)
    tariff_assign(tariff=general)
    tariff_assign(tariff=roaming_a, id_token_group=group, site=site)
    tariff_assign(tariff=other_group, id_token_group=fleet)

    def ids_seen(caller):
        data = _body(caller.get(f"/ocpi/2.2.1/locations/{site.pk}"))["data"]
        return {c.get("tariff_ids", [None])[0] for e in data["evses"] for c in e["connectors"]}

    assert ids_seen(roaming.caller_a) == {str(roaming_a.pk)}
    assert ids_seen(roaming.caller_a2) == {str(general.pk)}
    driver = IdTokenFactory(organisation=world.org_a, group=group)
    resolved = tariff_resolve(
        organisation_id=world.org_a.pk, site_id=site.pk, station_id=station.pk, token=driver, at=T0
    )
    assert resolved is not None and resolved.version.tariff_id == roaming_a.pk
    a2 = _body(roaming.caller_a.get(f"/ocpi/2.2.1/locations/{located['site_a2'].pk}"))["data"]
    assert a2["evses"][0]["connectors"][0]["tariff_ids"] == [str(general.pk)]


# --- pushes -----------------------------------------------------------------------------------------------
NOW = T0 + timedelta(hours=2)


def _cursor(partner, at: datetime) -> None:
    OcpiPartner.objects.filter(pk=partner.pk).update(pushed_until={"locations": at.isoformat(), "other": "x"})


def _items(partner):
    return list(
        OcpiOutboxItem.objects.filter(partner=partner, module="locations")
        .order_by("id")
        .values("method", "path", "object_key", "body", "to_country_code", "to_party_id")
    )


def test_the_sweep_patches_the_status_of_evses_that_changed_and_nothing_twice(world, roaming, located):
    site, evse1, station = located["site"], located["evse1"], located["station"]
    for partner in (roaming.partner_a, roaming.partner_a2, roaming.partner_b):
        _cursor(partner, NOW - timedelta(minutes=1))
    # The Type 2 connector of EVSE 1 stopped charging 30 s ago; the CCS one was never charging.
    Connector.objects.filter(evse=evse1, connector_id=2).update(status=ConnectorStatus.AVAILABLE)
    StatusChange.objects.create(
        station=station,
        evse_id=1,
        connector_id=2,
        status=ConnectorStatus.AVAILABLE,
        occurred_at=NOW - timedelta(seconds=30),
        received_at=NOW - timedelta(seconds=30),
    )
    # Too recent for this sweep (within PUSH_LAG): the next one takes it.
    StatusChange.objects.create(
        station=world.station_a2,
        evse_id=1,
        connector_id=1,
        status="Charging",
        occurred_at=NOW,
        received_at=NOW,
    )
    queued = locations.locations_push_changes(now=NOW)
    assert queued == 2  # partner_a and partner_a2; partner_b is of organisation B
    expected = {
        "method": "PATCH",
        "path": f"/NL/AAA/{site.pk}/{evse1.pk}",
        "object_key": f"location:{site.pk}",
        "body": {"status": "AVAILABLE", "last_updated": "2026-03-01T08:07:00Z"},
    }
    assert _items(roaming.partner_a) == [{**expected, "to_country_code": "DE", "to_party_id": "EMS"}]
    assert _items(roaming.partner_a2) == [{**expected, "to_country_code": "FR", "to_party_id": "OTH"}]
    assert _items(roaming.partner_b) == []
    roaming.partner_a.refresh_from_db()
    cursor = (NOW - locations.PUSH_LAG).isoformat()
    mark = Connector.objects.order_by("-pk").values_list("pk", flat=True).first()
    assert roaming.partner_a.pushed_until == {
        "locations": cursor,
        "other": "x",
        "locations_connector_pk": mark,
        "locations_tariff_scopes": {},
    }
    # Nothing new: nothing queued.
    assert locations.locations_push_changes(now=NOW) == 0
    assert len(_items(roaming.partner_a)) == 1
    # The row within the lag is taken by the next sweep, once.
    assert locations.locations_push_changes(now=NOW + timedelta(seconds=10)) == 2
    assert [item["path"] for item in _items(roaming.partner_a)][1:] == [
        f"/NL/AAA/{located['site_a2'].pk}/{located['site_a2'].stations.get().evses.get().pk}"
    ]
    assert locations.locations_push_changes(now=NOW + timedelta(seconds=20)) == 0


def test_a_station_going_offline_patches_its_evses_unknown(world, roaming, located):
    site, station = located["site"], located["station"]
    _cursor(roaming.partner_a, NOW - timedelta(minutes=1))
    ChargingStation.objects.filter(pk=station.pk).update(
        is_connected=False, last_seen_at=NOW - timedelta(seconds=40)
    )
    StationEvent.objects.create(
        station=station,
        kind=StationEventKind.DISCONNECTED,
        occurred_at=NOW - timedelta(seconds=40),
        received_at=NOW - timedelta(seconds=40),
    )
    assert locations.locations_push_changes(now=NOW) == 2  # partner_a2 has no cursor: it starts now
    items = _items(roaming.partner_a)
    assert [(i["method"], i["path"], i["body"]["status"]) for i in items] == [
        ("PATCH", f"/NL/AAA/{site.pk}/{located['evse1'].pk}", "UNKNOWN"),
        ("PATCH", f"/NL/AAA/{site.pk}/{located['evse2'].pk}", "UNKNOWN"),
    ]
    assert items[0]["body"]["last_updated"] == "2026-03-01T09:59:20Z"
    assert _items(roaming.partner_a2) == []


def test_a_new_evse_reported_by_its_charger_puts_its_location(world, roaming, located):
    site = located["site"]
    OcpiPartner.objects.exclude(pk=roaming.partner_a.pk).delete()
    _cursor(roaming.partner_a, NOW - timedelta(minutes=1))
    assert locations.locations_push_changes(now=NOW - timedelta(seconds=30)) == 0  # sets the connector mark
    # The charger reports EVSE 3 for the first time: its rows are created with the status.
    evse3 = EvseFactory(station=located["station"], evse_id=3)
    ConnectorFactory(evse=evse3, connector_id=1, status=ConnectorStatus.AVAILABLE)
    StatusChange.objects.create(
        station=located["station"], evse_id=3, connector_id=1, status="Available",
        occurred_at=NOW - timedelta(seconds=20), received_at=NOW - timedelta(seconds=20),
    )  # fmt: skip
    assert locations.locations_push_changes(now=NOW) == 1
    items = _items(roaming.partner_a)
    assert [(i["method"], i["path"]) for i in items] == [("PUT", f"/NL/AAA/{site.pk}")]
    assert [evse["uid"] for evse in items[0]["body"]["evses"]][-1] == str(evse3.pk)
    assert locations.locations_push_changes(now=NOW + timedelta(seconds=10)) == 0


def test_a_tariff_assignment_change_puts_the_locations_whose_tariff_ids_change(world, roaming, located):
    site, site_a2 = located["site"], located["site_a2"]
    OcpiPartner.objects.exclude(pk=roaming.partner_a.pk).delete()
    _cursor(roaming.partner_a, NOW - timedelta(minutes=1))
    general = _tariff(world.org_a, "General")
    tariff_assign(tariff=general, site=site_a2)
    assert locations.locations_push_changes(now=NOW - timedelta(seconds=40)) == 0  # remembers the scopes
    # A tariff for site A1: A1's connectors now name it; A2's are unchanged.
    local = _tariff(world.org_a, "A1 only")
    tariff_assign(tariff=local, site=site)
    assert locations.locations_push_changes(now=NOW - timedelta(seconds=20)) == 1
    put = _items(roaming.partner_a)[-1]
    assert (put["method"], put["path"]) == ("PUT", f"/NL/AAA/{site.pk}")
    assert {c["tariff_ids"][0] for e in put["body"]["evses"] for c in e["connectors"]} == {str(local.pk)}
    assert locations.locations_push_changes(now=NOW) == 0
    # An organisation-wide tariff may change every site's connectors.
    tariff_assign(tariff=general)
    assert locations.locations_push_changes(now=NOW + timedelta(seconds=20)) == 2
    assert [i["path"] for i in _items(roaming.partner_a)[-2:]] == [
        f"/NL/AAA/{site.pk}",
        f"/NL/AAA/{site_a2.pk}",
    ]


def test_a_changed_site_is_put_whole_and_its_status_not_patched_twice(world, roaming, located):
    site = located["site"]
    _cursor(roaming.partner_a, NOW - timedelta(minutes=1))
    OcpiPartner.objects.filter(pk=roaming.partner_a2.pk).update(pushed_until={"locations": NOW.isoformat()})
    OcpiLocation.objects.create(site=site, parking_type="ON_STREET")
    OcpiLocation.objects.filter(site=site).update(updated_at=NOW - timedelta(seconds=30))
    StatusChange.objects.create(
        station=located["station"], evse_id=1, connector_id=1, status="Available",
        occurred_at=NOW - timedelta(seconds=30), received_at=NOW - timedelta(seconds=30),
    )  # fmt: skip
    new_site = _place(SiteFactory(organisation=world.org_a, name="New"))
    Site.objects.filter(pk=new_site.pk).update(created_at=NOW - timedelta(seconds=10))
    assert locations.locations_push_changes(now=NOW) == 2
    items = _items(roaming.partner_a)
    assert [(i["method"], i["path"], i["object_key"]) for i in items] == [
        ("PUT", f"/NL/AAA/{site.pk}", f"location:{site.pk}"),
        ("PUT", f"/NL/AAA/{new_site.pk}", f"location:{new_site.pk}"),
    ]
    assert items[0]["body"]["parking_type"] == "ON_STREET"
    assert items[0]["body"]["id"] == str(site.pk)
    assert len(items[0]["body"]["evses"]) == 2
    assert items[1]["body"]["evses"] == []
    # partner_a2's cursor is ahead of the window: nothing, and its cursor is not moved back.
    assert _items(roaming.partner_a2) == []
    roaming.partner_a2.refresh_from_db()
    assert roaming.partner_a2.pushed_until == {"locations": NOW.isoformat()}


@pytest.mark.parametrize("change", ["site", "evse", "connector"])
def test_an_edited_site_evse_or_connector_puts_its_location_but_a_status_alone_does_not(
    world, roaming, located, change
):
    """Edits of the site (address, name...), an EVSE or a connector definition change the Location; a status
    change is a PATCH of its EVSE only."""
    site = located["site"]
    _cursor(roaming.partner_a, NOW - timedelta(minutes=1))
    OcpiPartner.objects.filter(pk=roaming.partner_a2.pk).update(pushed_until={"locations": NOW.isoformat()})
    Connector.objects.filter(evse=located["evse1"], connector_id=1).update(
        status="Charging", status_changed_at=NOW - timedelta(seconds=30)
    )
    assert locations.locations_push_changes(now=NOW) == 0  # no StatusChange row: not a reported status
    edited_at = NOW + timedelta(seconds=5)
    if change == "site":
        Site.objects.filter(pk=site.pk).update(city="Potsdam", updated_at=edited_at)
    elif change == "evse":
        Evse.objects.filter(pk=located["evse2"].pk).update(max_power_w=7400, updated_at=edited_at)
    else:
        Connector.objects.filter(evse=located["evse2"]).update(max_power_w=3700, updated_at=edited_at)
    # One PUT for each partner of organisation A.
    assert locations.locations_push_changes(now=NOW + timedelta(seconds=10)) == 2
    [put] = _items(roaming.partner_a)
    assert [i["path"] for i in _items(roaming.partner_a2)] == [f"/NL/AAA/{site.pk}"]
    assert (put["method"], put["path"]) == ("PUT", f"/NL/AAA/{site.pk}")
    assert put["body"]["last_updated"] == edited_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if change == "site":
        assert put["body"]["city"] == "Potsdam"
    assert locations.locations_push_changes(now=NOW + timedelta(seconds=20)) == 0


def test_the_sweep_skips_unpublished_sites_and_partners_not_registered(world, roaming, located):
    site = located["site"]
    _cursor(roaming.partner_a, NOW - timedelta(minutes=1))
    _cursor(roaming.partner_a2, NOW - timedelta(minutes=1))
    OcpiLocation.objects.create(site=site, publish=False)
    OcpiPartner.objects.filter(pk=roaming.partner_a2.pk).update(status="SUSPENDED")
    StatusChange.objects.create(
        station=located["station"], evse_id=1, connector_id=1, status="Available",
        occurred_at=NOW - timedelta(seconds=30), received_at=NOW - timedelta(seconds=30),
    )  # fmt: skip
    assert locations.locations_push_changes(now=NOW) == 0
    assert OcpiOutboxItem.objects.count() == 0


def test_sync_now_puts_every_published_location(world, roaming, located):
    OcpiLocation.objects.create(site=located["site_a2"], publish=False)
    assert locations.locations_push_all(roaming.partner_a) == 1
    items = _items(roaming.partner_a)
    assert [(i["method"], i["path"]) for i in items] == [("PUT", f"/NL/AAA/{located['site'].pk}")]
    assert (
        items[0]["body"] == _body(roaming.caller_a.get(f"/ocpi/2.2.1/locations/{located['site'].pk}"))["data"]
    )
    assert locations.locations_push_all(roaming.partner_b) == 1
    assert [i["path"] for i in _items(roaming.partner_b)] == [f"/NL/BBB/{world.site_b1.pk}"]


def test_a_hub_gets_pushes_addressed_to_itself(world, roaming, located):
    OcpiPartner.objects.filter(pk=roaming.partner_a.pk).update(
        roles=[{"role": "HUB", "country_code": "NL", "party_id": "HUB", "business_details": {"name": "Hub"}}]
    )
    roaming.partner_a.refresh_from_db()
    locations.locations_push_all(roaming.partner_a)
    assert {(i["to_country_code"], i["to_party_id"]) for i in _items(roaming.partner_a)} == {("NL", "HUB")}


def test_a_site_withdrawn_from_publication_has_its_evses_removed(world, roaming, located):
    site = located["site"]
    _cursor(roaming.partner_a, NOW - timedelta(minutes=1))
    OcpiLocation.objects.create(site=site, publish=False)
    OcpiLocation.objects.filter(site=site).update(updated_at=NOW - timedelta(seconds=30))
    # A site created unpublished within the window was never sent: nothing to withdraw.
    fresh = _place(SiteFactory(organisation=world.org_a, name="Fresh"))
    Site.objects.filter(pk=fresh.pk).update(created_at=NOW - timedelta(seconds=50))
    ConnectorFactory(evse=EvseFactory(station=ChargingStationFactory(site=fresh), evse_id=1))
    OcpiLocation.objects.create(site=fresh, publish=False)
    OcpiLocation.objects.filter(site=fresh).update(updated_at=NOW - timedelta(seconds=30))
    assert locations.locations_push_changes(now=NOW) == 2
    items = _items(roaming.partner_a)
    assert items == [
        {
            "method": "PATCH",
            "path": f"/NL/AAA/{site.pk}/{evse.pk}",
            "object_key": f"location:{site.pk}",
            "body": {"status": "REMOVED", "last_updated": "2026-03-01T09:59:30Z"},
            "to_country_code": "DE",
            "to_party_id": "EMS",
        }
        for evse in (located["evse1"], located["evse2"])
    ]
    assert _items(roaming.partner_b) == []
    assert locations.locations_push_changes(now=NOW) == 0


def test_the_sweep_takes_the_same_queries_whatever_the_number_of_evses(
    world, roaming, located, django_assert_max_num_queries
):
    OcpiPartner.objects.exclude(pk=roaming.partner_a.pk).delete()
    _cursor(roaming.partner_a, NOW - timedelta(minutes=1))
    stations = [ChargingStationFactory(site=located["site"]) for _ in range(10)]
    for station in stations:
        for number in range(1, 6):
            ConnectorFactory(evse=EvseFactory(station=station, evse_id=number))
            StatusChange.objects.create(
                station=station, evse_id=number, connector_id=1, status="Available",
                occurred_at=NOW - timedelta(seconds=30), received_at=NOW - timedelta(seconds=30),
            )  # fmt: skip
    ChargingStation.objects.filter(pk__in=[s.pk for s in stations]).update(updated_at=T0, created_at=T0)
    # newest connector + partners + savepoint + lock + changed sites + changed EVSEs + connectors + withdrawn + tariff index (2)
    # + cursor + release, and one insert per outbox item (outbox_enqueue).
    with django_assert_max_num_queries(12 + 50):
        assert locations.locations_push_changes(now=NOW) == 50
    # Nothing changed: the same reads (tariff scopes included), no item, the cursor moved.
    with django_assert_max_num_queries(10):
        assert locations.locations_push_changes(now=NOW + timedelta(seconds=10)) == 0
