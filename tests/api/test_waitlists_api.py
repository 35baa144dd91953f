"""Site waitlists over the API: list a site's queue (positions, filters), join by token id or value, read and
leave an entry; the scope and permission matrix (another organisation: 404; site host: own sites; finance:
reads, may not join or leave -> 403; anonymous -> 401), with nothing changed after a refusal."""

from datetime import UTC, datetime, timedelta

import pytest
from rest_framework.test import APIClient

from sessions.models import WaitlistEntry
from tests.factories import IdTokenFactory
from tests.support import iso, row

T0 = datetime(2026, 1, 10, 10, 0, tzinfo=UTC)


def waitlist_url(site) -> str:
    return f"/api/v1/sites/{site.pk}/waitlist/"


def entry_url(entry) -> str:
    return f"/api/v1/waitlist-entries/{entry.pk}/"


@pytest.fixture
def tokens(world):
    return {
        value: IdTokenFactory(
            organisation=world.org_a, value=value, owner_email=f"{value.lower()}@example.com"
        )
        for value in ("DRIVER1", "DRIVER2", "DRIVER3")
    }


@pytest.fixture
def entries(world, tokens):
    b_token = IdTokenFactory(organisation=world.org_b, value="BDRIVER")

    def entry(site, token, minutes, **fields):
        return WaitlistEntry.objects.create(
            site=site,
            id_token=token,
            contact_email=f"{token.value.lower()}@example.com",
            joined_at=T0 + timedelta(minutes=minutes),
            **fields,
        )

    return {
        "second": entry(world.site_a1, tokens["DRIVER2"], 10),
        "first": entry(world.site_a1, tokens["DRIVER1"], 5),
        "gone": entry(world.site_a1, tokens["DRIVER3"], 0, status="cancelled", closed_at=T0),
        "a2": entry(world.site_a2, tokens["DRIVER1"], 0),
        "b1": entry(world.site_b1, b_token, 0),
    }


def expected(entry, position) -> dict:
    entry.refresh_from_db()
    return {
        "id": entry.pk,
        "site": entry.site_id,
        "id_token": entry.id_token_id,
        "id_tag": entry.id_token.value,
        "contact_email": entry.contact_email,
        "status": entry.status,
        "position": position,
        "joined_at": iso(entry.joined_at),
        "offered_at": None,
        "offer_expires_at": None,
        "offered_station": None,
        "offered_evse_id": None,
        "offered_connector_id": None,
        "reservation": None,
        "reservation_status": None,
        "notified_at": None,
        "closed_at": iso(entry.closed_at),
    }


def test_list_in_queue_order_with_positions(world, entries, api):
    response = api(world.operator_a).get(waitlist_url(world.site_a1))
    assert response.status_code == 200
    assert response.json()["results"] == [
        expected(entries["gone"], None),
        expected(entries["first"], 1),
        expected(entries["second"], 2),
    ]
    open_only = api(world.host_a1).get(waitlist_url(world.site_a1), {"open": "true"})
    assert [e["id"] for e in open_only.json()["results"]] == [entries["first"].pk, entries["second"].pk]
    cancelled = api(world.finance_a).get(waitlist_url(world.site_a1), {"status": "cancelled"})
    assert [e["id"] for e in cancelled.json()["results"]] == [entries["gone"].pk]
    bad = api(world.operator_a).get(waitlist_url(world.site_a1), {"status": "sleeping"})
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("actor", "site"), [("operator_b", "site_a1"), ("host_a1", "site_a2"), ("operator_a", "site_b1")]
)
def test_another_scope_is_a_404(world, entries, api, actor, site):
    client = api(getattr(world, actor))
    assert client.get(waitlist_url(getattr(world, site))).status_code == 404
    response = client.post(waitlist_url(getattr(world, site)), {"id_token": "DRIVER3"}, format="json")
    assert response.status_code == 404
    assert WaitlistEntry.objects.count() == 5


def test_join_by_value_and_by_id(world, tokens, api):
    client = api(world.host_a1)
    by_value = client.post(
        waitlist_url(world.site_a1), {"id_token": "DRIVER1", "contact_email": "d1@example.com"}, format="json"
    )
    assert by_value.status_code == 201
    first = WaitlistEntry.objects.get(id_token=tokens["DRIVER1"])
    assert by_value.json() == {**expected(first, 1), "contact_email": "d1@example.com"}
    by_id = client.post(waitlist_url(world.site_a1), {"id_token": tokens["DRIVER2"].pk}, format="json")
    assert by_id.status_code == 201
    second = WaitlistEntry.objects.get(id_token=tokens["DRIVER2"])
    assert by_id.json() == expected(second, 2)
    assert second.contact_email == "driver2@example.com"
    assert (first.created_by_id, second.created_by_id) == (world.host_a1.pk, world.host_a1.pk)


@pytest.mark.parametrize(
    ("body", "status", "answer"),
    [
        (
            {"id_token": "DRIVER1"},
            409,
            {
                "detail": "Id token 'DRIVER1' is already in the waitlist of site 'A1': remove that entry first."
            },
        ),
        (
            {"id_token": "BDRIVER"},
            400,
            {"detail": "Id token 'BDRIVER' not found in the site's organisation."},
        ),
        ({"id_token": 10**9}, 400, {"detail": "Id token 1000000000 not found in the site's organisation."}),
        ({"id_token": True}, 400, {"id_token": ["An id token id (integer) or value (non-empty string)."]}),
        ({"id_token": ""}, 400, {"id_token": ["An id token id (integer) or value (non-empty string)."]}),
        ({}, 400, {"id_token": ["This field is required."]}),
        (
            {"id_token": "DRIVER3", "contact_email": "x"},
            400,
            {"contact_email": ["Enter a valid email address."]},
        ),
        (
            {"id_token": "DRIVER3", "site": 3},
            400,
            {"site": ["Unknown or read-only field; it cannot be set."]},
        ),
    ],
    ids=["duplicate", "foreign", "unknown-id", "bool", "empty", "missing", "email", "unknown-field"],
)
def test_refused_joins_say_why_and_change_nothing(world, entries, api, body, status, answer):
    response = api(world.operator_a).post(waitlist_url(world.site_a1), body, format="json")
    assert (response.status_code, response.json()) == (status, answer)
    assert WaitlistEntry.objects.count() == 5


def test_finance_reads_but_may_not_join_or_leave(world, entries, api):
    client = api(world.finance_a)
    assert client.get(entry_url(entries["first"])).status_code == 200
    joined = client.post(waitlist_url(world.site_a1), {"id_token": "DRIVER3"}, format="json")
    assert (joined.status_code, joined.json()) == (
        403,
        {"detail": "You may not manage the waitlist of site 'A1'."},
    )
    before = row(entries["first"])
    left = client.delete(entry_url(entries["first"]))
    assert (left.status_code, left.json()) == (
        403,
        {"detail": f"You may not command waitlist entry {entries['first'].pk}."},
    )
    assert row(entries["first"]) == before
    assert WaitlistEntry.objects.count() == 5


def test_retrieve(world, entries, api):
    response = api(world.host_a1).get(entry_url(entries["second"]))
    assert (response.status_code, response.json()) == (200, expected(entries["second"], 2))


@pytest.mark.parametrize(
    ("actor", "entry"), [("operator_b", "first"), ("host_a1", "a2"), ("operator_a", "b1")]
)
def test_another_scopes_entry_is_a_404(world, entries, api, actor, entry):
    client = api(getattr(world, actor))
    target = entries[entry]
    before = row(target)
    assert client.get(entry_url(target)).status_code == 404
    response = client.delete(entry_url(target))
    assert (response.status_code, response.json()) == (
        404,
        {"detail": f"Waitlist entry {target.pk} not found."},
    )
    assert row(target) == before


def test_leave(world, entries, api):
    response = api(world.operator_a).delete(entry_url(entries["first"]))
    assert response.status_code == 200
    body = response.json()
    entry = WaitlistEntry.objects.get(pk=entries["first"].pk)
    assert body == {**expected(entry, None), "status": "cancelled"}
    assert entry.closed_at is not None
    # The one behind moves up.
    assert api(world.operator_a).get(entry_url(entries["second"])).json()["position"] == 1
    again = api(world.operator_a).delete(entry_url(entries["first"]))
    assert (again.status_code, again.json()) == (
        409,
        {"detail": f"Waitlist entry {entry.pk} is cancelled: it is no longer in the queue."},
    )


def test_anonymous_is_refused(world, entries):
    client = APIClient()
    assert client.get(waitlist_url(world.site_a1)).status_code == 401
    assert client.post(waitlist_url(world.site_a1), {"id_token": "DRIVER3"}, format="json").status_code == 401
    assert client.delete(entry_url(entries["first"])).status_code == 401
    assert WaitlistEntry.objects.filter(status="waiting").count() == 4
