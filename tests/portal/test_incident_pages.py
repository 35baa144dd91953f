"""Portal incident pages: the list (open counts, filters, times in each site's zone, empty state), an
incident's page (timeline, time to detect and repair, buttons only for who may act), acknowledge and resolve,
and the denials."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from accounts.services import membership_set
from stations.models import Incident
from tests.factories import UserFactory
from tests.support import row


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make(station, *, kind="fault", code="GroundFailure", evse=1, connector=1, occurred, detected, **extra):
    return Incident.objects.create(
        organisation_id=station.organisation_id,
        site_id=station.site_id,
        station=station,
        kind=kind,
        code=code,
        evse_id=evse,
        connector_id=connector,
        occurred_at=occurred,
        detected_at=detected,
        **extra,
    )


@pytest.fixture
def incidents(world):
    """A1: an open fault and a resolved offline; A2: an acknowledged event; B1: an open fault."""
    return {
        "a1_fault": make(
            world.station_a1, occurred=utc(2026, 11, 24, 13, 0), detected=utc(2026, 11, 24, 13, 0, 5)
        ),
        "a1_offline": make(
            world.station_a1,
            kind="offline",
            code="Offline",
            evse=0,
            connector=0,
            occurred=utc(2026, 11, 20, 8, 0),
            detected=utc(2026, 11, 20, 8, 5),
            resolved_at=utc(2026, 11, 20, 10, 10),
            resolved_remotely=True,
        ),
        "a2_event": make(
            world.station_a2,
            kind="event",
            code="EVSE.Problem",
            connector=0,
            occurred=utc(2026, 11, 23, 12, 0),
            detected=utc(2026, 11, 23, 12, 0),
            acknowledged_at=utc(2026, 11, 23, 12, 30),
            acknowledged_by=world.operator_a,
        ),
        "b1_fault": make(
            world.station_b1, occurred=utc(2026, 11, 24, 9, 0), detected=utc(2026, 11, 24, 9, 0)
        ),
    }


def listed(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr data-incident="(\d+)"', html)]


def count(html: str, name: str) -> int:
    match = re.search(rf'data-count="{name}"><span class="value">(\d+)</span>', html)
    assert match, name
    return int(match.group(1))


def cells(html: str, pk: int) -> list[str]:
    match = re.search(rf'<tr data-incident="{pk}"[^>]*>(.*?)</tr>', html, re.S)
    assert match
    found = re.findall(r"<td[^>]*>(.*?)</td>", match.group(1), re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in found]


# --- denials ----------------------------------------------------------------------------------------------


def test_anonymous_users_go_to_the_login_page(world, incidents):
    pk = incidents["a1_fault"].pk
    for url in ("/portal/incidents/", f"/portal/incidents/{pk}/"):
        response = Client().get(url)
        assert (response.status_code, response["Location"]) == (302, f"/portal/login/?next={url}")
    before = row(incidents["a1_fault"])
    response = Client().post(f"/portal/incidents/{pk}/acknowledge/")
    assert response.status_code == 302
    assert response["Location"].startswith("/portal/login/")
    assert row(incidents["a1_fault"]) == before


def test_another_organisation_gets_404_and_changes_nothing(world, incidents):
    client = client_for(world.operator_b)
    fault = incidents["a1_fault"]
    before = row(fault)
    assert client.get(f"/portal/incidents/{fault.pk}/").status_code == 404
    assert client.post(f"/portal/incidents/{fault.pk}/acknowledge/").status_code == 404
    response = client.post(f"/portal/incidents/{fault.pk}/resolve/", {"outcome": "remote", "note": "x"})
    assert response.status_code == 404
    assert row(fault) == before
    html = client.get("/portal/incidents/").content.decode()
    assert listed(html) == [incidents["b1_fault"].pk]
    assert "A1-CP1" not in html


def test_finance_sees_but_may_not_act_403(world, incidents):
    client = client_for(world.finance_a)
    fault = incidents["a1_fault"]
    html = client.get(f"/portal/incidents/{fault.pk}/").content.decode()
    assert "Acknowledge</button>" not in html
    assert "Resolve</button>" not in html
    before = row(fault)
    assert client.post(f"/portal/incidents/{fault.pk}/acknowledge/").status_code == 403
    assert client.post(f"/portal/incidents/{fault.pk}/resolve/", {"outcome": "remote"}).status_code == 403
    assert row(fault) == before


def test_site_host_sees_only_their_site(world, incidents):
    client = client_for(world.host_a1)
    html = client.get("/portal/incidents/").content.decode()
    assert listed(html) == [incidents["a1_fault"].pk, incidents["a1_offline"].pk]
    assert client.get(f"/portal/incidents/{incidents['a2_event'].pk}/").status_code == 404
    # On their own site a site host may act (COMMAND).
    assert (
        "Acknowledge</button>"
        in client.get(f"/portal/incidents/{incidents['a1_fault'].pk}/").content.decode()
    )


def test_posts_only(world, incidents):
    client = client_for(world.operator_a)
    assert client.get(f"/portal/incidents/{incidents['a1_fault'].pk}/acknowledge/").status_code == 405


# --- the list ---------------------------------------------------------------------------------------------


def test_list_counts_order_and_local_times(world, incidents):
    html = client_for(world.operator_a).get("/portal/incidents/").content.decode()
    assert listed(html) == [incidents["a1_fault"].pk, incidents["a2_event"].pk, incidents["a1_offline"].pk]
    assert (count(html, "open"), count(html, "acknowledged")) == (1, 1)
    assert (count(html, "fault"), count(html, "offline"), count(html, "event")) == (1, 0, 1)
    # A1 is in Europe/Berlin, A2 in America/New_York.
    assert cells(html, incidents["a1_fault"].pk) == [
        "24 Nov 2026, 14:00 CET",
        "open",
        "Fault reported",
        "GroundFailure",
        "A1-CP1 A1",
        "connector 1/1",
        "24 Nov 2026, 14:00 CET",
        "—",
    ]
    assert cells(html, incidents["a2_event"].pk)[:2] == ["23 Nov 2026, 07:00 EST", "acknowledged"]
    assert cells(html, incidents["a1_offline"].pk)[5:] == [
        "Whole station",
        "20 Nov 2026, 09:00 CET",
        "20 Nov 2026, 11:10 CET",
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=open", ["a1_fault"]),
        ("status=acknowledged", ["a2_event"]),
        ("status=resolved", ["a1_offline"]),
        ("kind=offline", ["a1_offline"]),
        ("kind=event", ["a2_event"]),
    ],
)
def test_list_filters(world, incidents, query, expected):
    html = client_for(world.operator_a).get(f"/portal/incidents/?{query}").content.decode()
    assert listed(html) == [incidents[name].pk for name in expected]


def test_site_filter_and_a_bad_filter(world, incidents):
    client = client_for(world.operator_a)
    html = client.get(f"/portal/incidents/?site={world.site_a2.pk}").content.decode()
    assert listed(html) == [incidents["a2_event"].pk]
    # Another tenant's site filters to nothing; a malformed value says so.
    assert listed(client.get(f"/portal/incidents/?site={world.site_b1.pk}").content.decode()) == []
    html = client.get("/portal/incidents/?status=broken").content.decode()
    assert listed(html) == []
    assert "Invalid filter" in html


def test_empty_state_and_pagination(world):
    client = client_for(world.operator_a)
    html = client.get("/portal/incidents/").content.decode()
    assert "No incidents yet." in html
    assert "No incidents match these filters." in client.get("/portal/incidents/?kind=fault").content.decode()
    start = utc(2026, 11, 1)
    for n in range(30):
        make(
            world.station_a1,
            evse=n + 1,
            occurred=start + timedelta(minutes=n),
            detected=start + timedelta(minutes=n),
        )
    first = listed(client.get("/portal/incidents/").content.decode())
    second = client.get("/portal/incidents/?page=2").content.decode()
    assert (len(first), len(listed(second))) == (25, 5)
    assert "Page 2 of 2" in second


# --- the incident's page and actions ----------------------------------------------------------------------


def test_detail_shows_timeline_and_times_to_detect_and_repair(world, incidents):
    offline = incidents["a1_offline"]
    html = client_for(world.operator_a).get(f"/portal/incidents/{offline.pk}/").content.decode()
    assert 'data-role="occurred">20 Nov 2026, 09:00 CET<' in html
    assert 'data-role="detected">20 Nov 2026, 09:05 CET<' in html
    assert 'data-role="ttd">5 min 00 s<' in html
    assert 'data-role="ttr">2 h 05 min<' in html
    assert "(reported by the station)" in html
    assert 'data-role="how">Resolved remotely<' in html
    assert 'href="/portal/stations/A1-CP1/"' in html
    # Resolved: nothing left to do.
    assert "Resolve</button>" not in html


def test_acknowledge_then_resolve_with_a_site_visit(world, incidents):
    client = client_for(world.operator_a)
    fault = incidents["a1_fault"]
    response = client.post(f"/portal/incidents/{fault.pk}/acknowledge/")
    assert (response.status_code, response["Location"]) == (302, f"/portal/incidents/{fault.pk}/")
    fault.refresh_from_db()
    assert fault.acknowledged_by == world.operator_a
    # The resolve form must say how.
    client.post(f"/portal/incidents/{fault.pk}/resolve/", {"note": "?"})
    fault.refresh_from_db()
    assert fault.resolved_at is None
    response = client.post(
        f"/portal/incidents/{fault.pk}/resolve/", {"outcome": "site_visit", "note": "Replaced the RCD"}
    )
    assert response.status_code == 302
    fault.refresh_from_db()
    assert (fault.resolved_by, fault.resolved_remotely, fault.resolution_note) == (
        world.operator_a,
        False,
        "Replaced the RCD",
    )
    html = client.get(f"/portal/incidents/{fault.pk}/").content.decode()
    assert "Incident resolved." in html
    assert 'data-role="how">Needed a site visit<' in html
    # Resolving again is refused with a message, and changes nothing.
    before = row(fault)
    client.post(f"/portal/incidents/{fault.pk}/resolve/", {"outcome": "remote"})
    assert row(fault) == before
    assert (
        f"Incident {fault.pk} is already resolved."
        in client.get(f"/portal/incidents/{fault.pk}/").content.decode()
    )


def test_support_role_may_act(world, incidents):
    support = UserFactory(username="support_a")
    membership_set(user=support, organisation=world.org_a, role="support")
    fault = incidents["a1_fault"]
    client_for(support).post(f"/portal/incidents/{fault.pk}/resolve/", {"outcome": "remote"})
    fault.refresh_from_db()
    assert (fault.resolved_by, fault.resolved_remotely) == (support, True)
