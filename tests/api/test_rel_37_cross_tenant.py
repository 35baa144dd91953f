"""docs/reliability.md case 37: every endpoint x {operator of org A, operator of org B, site host of A1,
finance of A}.

Another tenant's objects are 404 on retrieve and update and absent from lists; a visible object the role may
not change is 403; a refused write changes nothing; role/tenant fields in a PATCH change nothing.
"""

from urllib.parse import quote

import pytest

from energy.models import EvseElectrical, GridNode
from sessions.models import IdToken
from stations.models import ChargingStation, Site
from tests.api.test_billing_api import billing_make
from tests.api.test_energy_api import energy_make
from tests.support import row

ORG_A = {
    "site_a1",
    "site_a2",
    "station_a1",
    "station_a2",
    "token_a",
    "token_a_group",
    "session_a1",
    "session_a2",
}
ORG_B = {"site_b1", "station_b1", "token_b", "session_b1"}
VISIBLE = {
    "operator_a": ORG_A,
    "operator_b": ORG_B,
    "host_a1": {"site_a1", "station_a1", "session_a1"},
    "finance_a": ORG_A,
    "superuser": ORG_A | ORG_B,
}
MANAGEABLE = {
    "operator_a": ORG_A,
    "operator_b": ORG_B,
    "host_a1": set(),
    "finance_a": set(),
    "superuser": ORG_A | ORG_B,
}
ACTORS = ["operator_a", "operator_b", "host_a1", "finance_a"]
ALL_OBJECTS = sorted(ORG_A | ORG_B)
LISTS = {
    "site": "/api/v1/sites/",
    "station": "/api/v1/stations/",
    "token": "/api/v1/id-tokens/",
    "session": "/api/v1/sessions/",
}
# What a station or a session recorded, listed under it; and the lists of such records across stations.
RECORDS_UNDER = {
    "station": ["variables", "security-events", "events", "status-history"],
    "session": ["meter-values", "events"],
}
RECORD_LISTS = ["/api/v1/security-events/", "/api/v1/session-anomalies/"]
# A harmless change per kind; sessions have no PATCH at all.
PATCHES = {
    "site": {"name": "Renamed"},
    "station": {"name": "Renamed"},
    "token": {"status": "Blocked"},
}


def kind(name: str) -> str:
    return name.split("_")[0]


def detail_url(obj) -> str:
    if isinstance(obj, Site):
        return f"/api/v1/sites/{obj.pk}/"
    if isinstance(obj, ChargingStation):
        return f"/api/v1/stations/{quote(obj.identity, safe='')}/"
    if isinstance(obj, IdToken):
        return f"/api/v1/id-tokens/{obj.pk}/"
    return f"/api/v1/sessions/{obj.pk}/"


def list_key(obj) -> object:
    return obj.identity if isinstance(obj, ChargingStation) else obj.pk


def list_keys(item: dict, kind_: str) -> object:
    return item["identity"] if kind_ == "station" else item["id"]


@pytest.mark.parametrize("actor", [*ACTORS, "superuser"])
@pytest.mark.parametrize("kind_", sorted(LISTS))
def test_rel_37_lists_hold_exactly_the_visible_objects(world, tenants, api, actor, kind_):
    objects = tenants.objects(world)
    response = api(getattr(world, actor)).get(LISTS[kind_])
    assert response.status_code == 200
    expected = {list_key(objects[name]) for name in VISIBLE[actor] if kind(name) == kind_}
    got = [list_keys(item, kind_) for item in response.json()["results"]]
    assert sorted(got, key=str) == sorted(expected, key=str)
    assert response.json()["count"] == len(expected)


@pytest.mark.parametrize("actor", ACTORS)
def test_rel_37_organisation_list_holds_only_own_organisations(world, api, actor):
    response = api(getattr(world, actor)).get("/api/v1/organisations/")
    expected = [world.org_b.pk] if actor == "operator_b" else [world.org_a.pk]
    assert [o["id"] for o in response.json()["results"]] == expected


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("name", ALL_OBJECTS)
def test_rel_37_retrieve(world, tenants, api, actor, name):
    obj = tenants.objects(world)[name]
    response = api(getattr(world, actor)).get(detail_url(obj))
    if name in VISIBLE[actor]:
        assert response.status_code == 200
    else:
        assert response.status_code == 404
        assert set(response.json()) == {"detail"}
        assert response.json()["detail"].endswith("not found.")


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("name", [n for n in ALL_OBJECTS if kind(n) in PATCHES])
def test_rel_37_patch(world, tenants, api, actor, name):
    obj = tenants.objects(world)[name]
    before = row(obj)
    response = api(getattr(world, actor)).patch(detail_url(obj), PATCHES[kind(name)], format="json")
    if name in MANAGEABLE[actor]:
        assert response.status_code == 200
        assert row(obj) != before
        return
    expected = 403 if name in VISIBLE[actor] else 404
    assert response.status_code == expected
    assert row(obj) == before


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("name", sorted(n for n in ORG_A | ORG_B if kind(n) == "session"))
def test_rel_37_sessions_cannot_be_patched(world, tenants, api, actor, name):
    obj = tenants.objects(world)[name]
    before = row(obj)
    response = api(getattr(world, actor)).patch(detail_url(obj), {"energy_wh": 1}, format="json")
    assert response.status_code == 405
    assert row(obj) == before


def test_rel_37_patch_of_a_foreign_object_is_404_even_with_a_bad_body(world, tenants, api):
    """Scope first: a 400 would tell operator B that the object exists."""
    client = api(world.operator_b)
    assert (
        client.patch(
            f"/api/v1/sites/{world.site_a1.pk}/", {"time_zone": "Nowhere"}, format="json"
        ).status_code
        == 404
    )
    assert client.patch("/api/v1/stations/A1-CP1/", {"security_profile": 9}, format="json").status_code == 404
    assert (
        client.patch(f"/api/v1/id-tokens/{tenants.token_a.pk}/", {"status": "X"}, format="json").status_code
        == 404
    )


def test_rel_37_not_found_looks_the_same_for_foreign_and_missing_objects(world, api):
    client = api(world.operator_b)
    foreign = client.get("/api/v1/stations/A1-CP1/")
    missing = client.get("/api/v1/stations/NO-SUCH-CP/")
    assert (foreign.status_code, missing.status_code) == (404, 404)
    assert foreign.json() == {"detail": "Station 'A1-CP1' not found."}
    assert missing.json() == {"detail": "Station 'NO-SUCH-CP' not found."}


@pytest.mark.parametrize(
    ("url", "body", "expected"),
    [
        ("site", {"organisation": "org_b"}, "A site cannot move to another organisation."),
        ("station", {"organisation": "org_b"}, "A station cannot move to another organisation."),
        ("station", {"site": "site_b1"}, "Site {site_b1} not found."),
        ("token", {"organisation": "org_b"}, "An id token cannot move to another organisation."),
        ("token", {"group": "token_b"}, "Group id token {token_b} not found in this organisation."),
    ],
)
def test_rel_37_tenant_fields_in_a_patch_change_nothing(world, tenants, api, url, body, expected):
    ids = {"org_b": world.org_b.pk, "site_b1": world.site_b1.pk, "token_b": tenants.token_b.pk}
    obj = {"site": world.site_a1, "station": world.station_a1, "token": tenants.token_a}[url]
    before = row(obj)
    response = api(world.operator_a).patch(
        detail_url(obj), {key: ids[value] for key, value in body.items()}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"detail": expected.format(**ids)}
    assert row(obj) == before


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/api/v1/sites/", {"name": "Planted", "organisation": "org_a"}),
        ("/api/v1/stations/", {"identity": "PLANTED", "site": "site_a1", "password": "s3cret-pass"}),
        ("/api/v1/stations/", {"identity": "PLANTED", "organisation": "org_a", "password": "s3cret-pass"}),
        ("/api/v1/id-tokens/", {"value": "PLANTED", "organisation": "org_a"}),
    ],
)
def test_rel_37_operator_b_cannot_create_in_organisation_a(world, api, url, body):
    ids = {"org_a": world.org_a.pk, "site_a1": world.site_a1.pk}
    body = {key: ids.get(value, value) for key, value in body.items()}
    counts = (Site.objects.count(), ChargingStation.objects.count(), IdToken.objects.count())
    response = api(world.operator_b).post(url, body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] in {
        f"Organisation {world.org_a.pk} not found.",
        f"Site {world.site_a1.pk} not found.",
    }
    assert (Site.objects.count(), ChargingStation.objects.count(), IdToken.objects.count()) == counts


def test_rel_37_filters_cannot_reach_into_another_tenant(world, tenants, api):
    client = api(world.operator_b)
    assert client.get(f"/api/v1/sites/?organisation={world.org_a.pk}").json()["count"] == 0
    assert client.get(f"/api/v1/stations/?site={world.site_a1.pk}").json()["count"] == 0
    assert client.get(f"/api/v1/stations/?organisation={world.org_a.pk}").json()["count"] == 0
    assert client.get(f"/api/v1/id-tokens/?organisation={world.org_a.pk}").json()["count"] == 0
    assert client.get("/api/v1/sessions/?station=A1-CP1").json()["count"] == 0
    assert client.get(f"/api/v1/sessions/?site={world.site_a1.pk}").json()["count"] == 0


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize(
    ("name", "path"),
    [
        (name, path)
        for name in ALL_OBJECTS
        if kind(name) in RECORDS_UNDER
        for path in RECORDS_UNDER[kind(name)]
    ],
)
def test_rel_37_records_under_an_object(world, tenants, records, api, actor, name, path):
    """The `records` fixture gives every station and session one row of each: a visible owner lists exactly
    that one, a foreign owner is 404 as on retrieve."""
    obj = tenants.objects(world)[name]
    response = api(getattr(world, actor)).get(f"{detail_url(obj)}{path}/")
    if name in VISIBLE[actor]:
        assert response.status_code == 200
        assert response.json()["count"] == 1
    else:
        assert response.status_code == 404
        assert response.json()["detail"].endswith("not found.")


@pytest.mark.parametrize("actor", [*ACTORS, "superuser"])
@pytest.mark.parametrize("url", RECORD_LISTS)
def test_rel_37_record_lists_hold_only_visible_stations(world, tenants, records, api, actor, url):
    objects = tenants.objects(world)
    expected = [objects[name].identity for name in VISIBLE[actor] if kind(name) == "station"]
    if actor == "superuser" and url == "/api/v1/security-events/":
        expected.append(None)  # the refused handshake of an unknown identity: superusers only
    response = api(getattr(world, actor)).get(url)
    assert response.status_code == 200
    assert sorted(item["station"] or "" for item in response.json()["results"]) == sorted(
        identity or "" for identity in expected
    )
    assert response.json()["count"] == len(expected)


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/stations/A1-CP1/variables/?evse_id=x",
        "/api/v1/stations/A1-CP1/security-events/?kind=x",
        "/api/v1/stations/A1-CP1/events/?kind=x",
        "/api/v1/stations/A1-CP1/status-history/?evse_id=x",
    ],
)
def test_rel_37_records_of_a_foreign_station_are_404_even_with_a_bad_filter(world, records, api, url):
    """Scope first: a 400 would tell operator B that the object exists."""
    response = api(world.operator_b).get(url)
    assert response.status_code == 404
    assert response.json() == {"detail": "Station 'A1-CP1' not found."}
    assert api(world.operator_a).get(url).status_code == 400


def test_rel_37_record_filters_cannot_reach_into_another_tenant(world, records, api):
    client = api(world.operator_b)
    assert client.get("/api/v1/security-events/?station=A1-CP1").json()["count"] == 0
    assert client.get("/api/v1/security-events/?station=INTRUDER").json()["count"] == 0
    assert client.get("/api/v1/session-anomalies/?station=A1-CP1").json()["count"] == 0


# --- billing: tariffs, assignments, CDRs, energy prices, session costs -----------------------------------
# Tariffs and assignments are organisation-wide, except that a site host sees those at their sites; CDRs
# follow their site. tests/api/test_billing_api.py: the objects (tariff A at site A1, tariff A2 at station A2,
# tariff B at station B1, a CDR per site) and every refused write.

BILLING_ORG_A = {"tariff_a", "tariff_a2", "assignment_a1", "assignment_a2", "cdr_a1", "cdr_a2"}
BILLING_ORG_B = {"tariff_b", "assignment_b1", "cdr_b1"}
BILLING_VISIBLE = {
    "operator_a": BILLING_ORG_A,
    "operator_b": BILLING_ORG_B,
    "host_a1": {"tariff_a", "assignment_a1", "cdr_a1"},
    "finance_a": BILLING_ORG_A,
    "superuser": BILLING_ORG_A | BILLING_ORG_B,
}
BILLING_URLS = {
    "tariff": "/api/v1/tariffs/",
    "assignment": "/api/v1/tariff-assignments/",
    "cdr": "/api/v1/cdrs/",
}
# What is listed under a billing object (each has one version; no CDR has a credit yet).
BILLING_UNDER = {"tariff": ("versions", 1), "cdr": ("credits", 0)}


@pytest.fixture
def billing(world, tenants):
    return billing_make(world, tenants)


@pytest.mark.parametrize("actor", [*ACTORS, "superuser"])
@pytest.mark.parametrize("kind_", sorted(BILLING_URLS))
def test_rel_37_billing_lists_hold_exactly_the_visible_objects(world, billing, api, actor, kind_):
    response = api(getattr(world, actor)).get(BILLING_URLS[kind_])
    assert response.status_code == 200
    expected = {getattr(billing, name).pk for name in BILLING_VISIBLE[actor] if kind(name) == kind_}
    assert sorted(item["id"] for item in response.json()["results"]) == sorted(expected)
    assert response.json()["count"] == len(expected)


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("name", sorted(BILLING_ORG_A | BILLING_ORG_B))
def test_rel_37_billing_retrieve(world, billing, api, actor, name):
    obj = getattr(billing, name)
    client = api(getattr(world, actor))
    urls = [f"{BILLING_URLS[kind(name)]}{obj.pk}/"]
    if kind(name) in BILLING_UNDER:
        urls.append(f"{urls[0]}{BILLING_UNDER[kind(name)][0]}/")
    for url in urls:
        response = client.get(url)
        if name in BILLING_VISIBLE[actor]:
            assert response.status_code == 200, url
        else:
            assert response.status_code == 404, url
            assert response.json()["detail"].endswith("not found."), url
    if name in BILLING_VISIBLE[actor] and kind(name) in BILLING_UNDER:
        assert client.get(urls[1]).json()["count"] == BILLING_UNDER[kind(name)][1]


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("name", [n for n in ALL_OBJECTS if kind(n) in {"site", "session"}])
def test_rel_37_energy_prices_and_session_costs_follow_their_owner(world, tenants, billing, api, actor, name):
    obj = tenants.objects(world)[name]
    path = "energy-prices" if kind(name) == "site" else "cost"
    response = api(getattr(world, actor)).get(f"{detail_url(obj)}{path}/")
    if name in VISIBLE[actor]:
        assert response.status_code == 200
    else:
        assert response.status_code == 404
        assert response.json()["detail"].endswith("not found.")


def test_rel_37_billing_filters_cannot_reach_into_another_tenant(world, billing, api):
    client = api(world.operator_b)
    assert client.get(f"/api/v1/tariffs/?organisation={world.org_a.pk}").json()["count"] == 0
    assert client.get(f"/api/v1/tariff-assignments/?organisation={world.org_a.pk}").json()["count"] == 0
    assert client.get(f"/api/v1/tariff-assignments/?tariff={billing.tariff_a.pk}").json()["count"] == 0
    assert client.get(f"/api/v1/cdrs/?organisation={world.org_a.pk}").json()["count"] == 0
    assert client.get(f"/api/v1/cdrs/?site={world.site_a1.pk}").json()["count"] == 0
    assert client.get("/api/v1/cdrs/?station=A1-CP1").json()["count"] == 0
    host = api(world.host_a1)
    assert host.get(f"/api/v1/cdrs/?site={world.site_a2.pk}").json()["count"] == 0
    assert host.get(f"/api/v1/tariff-assignments/?tariff={billing.tariff_a2.pk}").json()["count"] == 0


# --- energy: grid topology, external signals, EVSE wiring, charging profiles ----------------------------------
# A site's topology (its nodes, their schedules and signals) follows the site; an EVSE's wiring and the profiles
# sent follow the station. tests/api/test_energy_api.py: the objects (a grid connection per site, an EVSE per
# station) and every refused write.

ENERGY_NODES = {"node_a1": "site_a1", "node_a2": "site_a2", "node_b1": "site_b1"}
NODE_UNDER = ["", "schedule/", "signals/"]


@pytest.fixture
def energy(world, tenants):
    return energy_make(world, tenants)


def evse_number(energy, station_name: str) -> int:
    return energy.evse_a1.evse_id if station_name == "station_a1" else 1


@pytest.mark.parametrize("actor", [*ACTORS, "superuser"])
@pytest.mark.parametrize("name", sorted(n for n in ALL_OBJECTS if kind(n) == "site"))
def test_rel_37_grid_node_lists_hold_exactly_the_sites_nodes(world, tenants, energy, api, actor, name):
    site = tenants.objects(world)[name]
    client = api(getattr(world, actor))
    for path in ("grid-nodes", "energy"):
        response = client.get(f"{detail_url(site)}{path}/")
        if name not in VISIBLE[actor]:
            assert response.status_code == 404, path
            assert response.json() == {"detail": f"Site {site.pk} not found."}
            continue
        assert response.status_code == 200, path
        expected = set(GridNode.objects.filter(site=site).values_list("pk", flat=True))
        assert expected  # the fixture gave every site a topology
        items = response.json()["results"] if path == "grid-nodes" else response.json()["nodes"]
        assert {item["id"] for item in items} == expected, path


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("name", sorted(ENERGY_NODES))
def test_rel_37_grid_node_retrieve(world, energy, api, actor, name):
    node = getattr(energy, name)
    client = api(getattr(world, actor))
    for under in NODE_UNDER:
        response = client.get(f"/api/v1/grid-nodes/{node.pk}/{under}")
        if ENERGY_NODES[name] in VISIBLE[actor]:
            assert response.status_code == 200, under
        else:
            assert response.status_code == 404, under
            assert response.json() == {"detail": f"Grid node {node.pk} not found."}, under


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("name", sorted(ENERGY_NODES))
def test_rel_37_grid_node_patch(world, energy, api, actor, name):
    node = getattr(energy, name)
    before = row(node)
    response = api(getattr(world, actor)).patch(
        f"/api/v1/grid-nodes/{node.pk}/", {"name": "Renamed"}, format="json"
    )
    site = ENERGY_NODES[name]
    if site in MANAGEABLE[actor]:
        assert response.status_code == 200
        assert row(node) != before
        return
    assert response.status_code == (403 if site in VISIBLE[actor] else 404)
    assert row(node) == before


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("name", sorted(n for n in ALL_OBJECTS if kind(n) == "station"))
def test_rel_37_evse_wiring_and_profiles_follow_their_station(world, tenants, energy, api, actor, name):
    station = tenants.objects(world)[name]
    client = api(getattr(world, actor))
    urls = [
        f"{detail_url(station)}evses/{evse_number(energy, name)}/electrical/",
        f"{detail_url(station)}charging-profiles/",
    ]
    for url in urls:
        response = client.get(url)
        if name in VISIBLE[actor]:
            assert response.status_code == 200, url
        else:
            assert response.status_code == 404, url
            assert response.json() == {"detail": f"Station {station.identity!r} not found."}, url
    if name in VISIBLE[actor]:
        assert client.get(urls[1]).json()["count"] == 1
    electrical = EvseElectrical.objects.get(evse__station=station)
    before = row(electrical)
    put = client.put(urls[0], {"node": electrical.node_id, "priority": 9}, format="json")
    expected = 200 if name in MANAGEABLE[actor] else 403 if name in VISIBLE[actor] else 404
    assert put.status_code == expected
    assert (row(electrical) != before) is (expected == 200)


def test_rel_37_energy_filters_cannot_reach_into_another_tenant(world, energy, api):
    client = api(world.operator_b)
    assert (
        client.get(f"/api/v1/grid-nodes/{energy.node_a1.pk}/signals/?kind=meter_reading").status_code == 404
    )
    assert client.get("/api/v1/stations/A1-CP1/charging-profiles/?evse_id=1").status_code == 404
    host = api(world.host_a1)
    assert host.get(f"/api/v1/grid-nodes/{energy.node_a2.pk}/signals/?kind=meter_reading").status_code == 404
