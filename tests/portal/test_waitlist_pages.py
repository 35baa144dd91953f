"""Portal pages of site waitlists: the list of sites with queue lengths, one site's queue with places in line and
times in the site's zone, adding and removing drivers, and the denials (anonymous, another organisation, a
role without the command right; nothing changes after a denied POST)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from sessions.models import WaitlistEntry
from tests.factories import IdTokenFactory
from tests.support import row

pytestmark = pytest.mark.django_db

# 10:00 UTC: 11:00 CET in Berlin (site A1), 05:00 EST in New York (site A2).
T0 = datetime(2026, 1, 10, 10, 0, tzinfo=UTC)


def page(client, user, url, method="get", data=None):
    client.force_login(user)
    return getattr(client, method)(url, data or {})


def site_url(site) -> str:
    return reverse("portal:waitlist-site", args=[site.pk])


def join_url(site) -> str:
    return reverse("portal:waitlist-join", args=[site.pk])


def leave_url(entry) -> str:
    return reverse("portal:waitlist-leave", args=[entry.pk])


@pytest.fixture
def queue(world):
    """Site A1: DRIVER1 offered, DRIVER2 and DRIVER3 waiting, DRIVER4 cancelled; site A2: one waiting; B1: one."""
    tokens = {
        value: IdTokenFactory(
            organisation=world.org_a, value=value, owner_email=f"{value.lower()}@example.com"
        )
        for value in ("DRIVER1", "DRIVER2", "DRIVER3", "DRIVER4", "NEWCOMER")
    }
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
        "offered": entry(
            world.site_a1,
            tokens["DRIVER1"],
            0,
            status="offered",
            offered_at=T0 + timedelta(minutes=30),
            offer_expires_at=T0 + timedelta(minutes=40),
        ),
        "second": entry(world.site_a1, tokens["DRIVER3"], 20),
        "first": entry(world.site_a1, tokens["DRIVER2"], 10),
        "gone": entry(
            world.site_a1, tokens["DRIVER4"], 5, status="cancelled", closed_at=T0 + timedelta(minutes=6)
        ),
        "a2": entry(world.site_a2, tokens["DRIVER1"], 0),
        "b1": entry(world.site_b1, b_token, 0),
        "tokens": tokens,
    }


def test_anonymous_is_sent_to_the_login_page(client, world, queue):
    for url in (reverse("portal:waitlist-list"), site_url(world.site_a1)):
        response = client.get(url)
        assert (response.status_code, response["Location"]) == (302, f"/portal/login/?next={url}")
    before = WaitlistEntry.objects.count()
    for url, data in ((join_url(world.site_a1), {"id_token": "NEWCOMER"}), (leave_url(queue["first"]), {})):
        response = client.post(url, data)
        assert response.status_code == 302 and response["Location"].startswith("/portal/login/")
    assert WaitlistEntry.objects.count() == before
    assert row(queue["first"])["status"] == "waiting"


def test_list_shows_the_sites_in_scope_with_queue_lengths(client, world, queue):
    response = page(client, world.operator_a, reverse("portal:waitlist-list"))
    assert response.status_code == 200
    assert [(s.name, s.waiting, s.offered) for s in response.context["page"].object_list] == [
        ("A1", 2, 1),
        ("A2", 1, 0),
    ]
    body = response.content.decode()
    assert f'href="{site_url(world.site_a1)}"' in body and "B1" not in body

    host = page(client, world.host_a1, reverse("portal:waitlist-list"))
    assert [s.name for s in host.context["page"].object_list] == ["A1"]
    other = page(client, world.operator_b, reverse("portal:waitlist-list"))
    assert [(s.name, s.waiting) for s in other.context["page"].object_list] == [("B1", 1)]


def test_list_empty_state_and_a_user_without_any_role(client, world, django_user_model):
    response = page(client, world.operator_a, reverse("portal:waitlist-list"))
    assert [(s.name, s.waiting, s.offered) for s in response.context["page"].object_list] == [
        ("A1", 0, 0),
        ("A2", 0, 0),
    ]
    nobody = django_user_model.objects.create(username="nobody")
    denied = page(client, nobody, reverse("portal:waitlist-list"))
    assert denied.status_code == 403


def test_site_page_shows_the_queue_in_order_with_places_and_local_times(client, world, queue):
    response = page(client, world.operator_a, site_url(world.site_a1))
    assert response.status_code == 200
    assert [(entry.id_token.value, position) for entry, position in response.context["queue"]] == [
        ("DRIVER1", None),
        ("DRIVER2", 1),
        ("DRIVER3", 2),
    ]
    assert [entry.id_token.value for entry in response.context["closed"]] == ["DRIVER4"]
    assert (response.context["waiting"], response.context["offered"], response.context["can_command"]) == (
        2,
        1,
        True,
    )
    body = response.content.decode()
    assert "10 Jan 2026, 11:10 CET" in body  # DRIVER2 joined at 10:10 UTC
    assert "10 Jan 2026, 11:40 CET" in body  # DRIVER1's offer ends at 10:40 UTC
    assert "the offer still stands without an OCPP reservation" in body
    assert body.count('action="/portal/waitlists/entry/') == 3  # a remove button per open entry
    assert f'action="{join_url(world.site_a1)}"' in body


def test_site_page_empty_state(client, world):
    body = page(client, world.operator_a, site_url(world.site_a2)).content.decode()
    assert "Nobody is waiting at this site." in body
    assert "No closed entries yet." in body


def test_another_organisations_site_is_a_404(client, world, queue):
    assert page(client, world.operator_b, site_url(world.site_a1)).status_code == 404
    assert page(client, world.host_a1, site_url(world.site_a2)).status_code == 404
    assert page(client, world.operator_a, site_url(world.site_b1)).status_code == 404


def test_finance_sees_the_queue_without_forms(client, world, queue):
    response = page(client, world.finance_a, site_url(world.site_a1))
    assert response.status_code == 200
    assert response.context["can_command"] is False
    body = response.content.decode()
    assert "/leave/" not in body and join_url(world.site_a1) not in body


def test_add_a_driver(client, world, queue):
    response = page(
        client,
        world.host_a1,
        join_url(world.site_a1),
        "post",
        {"id_token": "NEWCOMER", "contact_email": "new@example.com"},
    )
    assert (response.status_code, response["Location"]) == (302, site_url(world.site_a1))
    entry = WaitlistEntry.objects.get(id_token__value="NEWCOMER")
    assert (entry.site_id, entry.status, entry.contact_email, entry.created_by_id) == (
        world.site_a1.pk,
        "waiting",
        "new@example.com",
        world.host_a1.pk,
    )
    followed = client.get(site_url(world.site_a1))
    assert [str(m) for m in followed.context["messages"]] == ["NEWCOMER joined the waitlist of A1."]
    assert [(e.id_token.value, p) for e, p in followed.context["queue"]][-1] == ("NEWCOMER", 3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"id_token": "DRIVER2"},
            "Not added: Id token 'DRIVER2' is already in the waitlist of site 'A1': remove that entry first.",
        ),
        ({"id_token": "BDRIVER"}, "Not added: Id token 'BDRIVER' not found in the site's organisation."),
        ({"id_token": ""}, "Not added: id_token: This field is required."),
        (
            {"id_token": "NEWCOMER", "contact_email": "nope"},
            "Not added: contact_email: Enter a valid email address.",
        ),
    ],
    ids=["duplicate", "foreign-token", "empty", "bad-email"],
)
def test_refused_additions_say_why_and_change_nothing(client, world, queue, data, message):
    before = WaitlistEntry.objects.count()
    response = page(client, world.operator_a, join_url(world.site_a1), "post", data)
    assert response.status_code == 302
    assert [str(m) for m in client.get(site_url(world.site_a1)).context["messages"]] == [message]
    assert WaitlistEntry.objects.count() == before


@pytest.mark.parametrize(
    ("actor", "site", "status"),
    [
        ("finance_a", "site_a1", 403),
        ("operator_b", "site_a1", 404),
        ("host_a1", "site_a2", 404),
    ],
)
def test_denied_additions_change_nothing(client, world, queue, actor, site, status):
    before = WaitlistEntry.objects.count()
    response = page(
        client, getattr(world, actor), join_url(getattr(world, site)), "post", {"id_token": "NEWCOMER"}
    )
    assert response.status_code == status
    assert WaitlistEntry.objects.count() == before


def test_remove_a_driver(client, world, queue):
    response = page(client, world.operator_a, leave_url(queue["first"]), "post")
    assert (response.status_code, response["Location"]) == (302, site_url(world.site_a1))
    assert row(queue["first"])["status"] == "cancelled"
    followed = client.get(site_url(world.site_a1))
    assert [str(m) for m in followed.context["messages"]] == ["DRIVER2 left the waitlist of A1."]
    assert [(e.id_token.value, p) for e, p in followed.context["queue"]] == [
        ("DRIVER1", None),
        ("DRIVER3", 1),
    ]
    again = page(client, world.operator_a, leave_url(queue["first"]), "post")
    assert again.status_code == 302
    assert [str(m) for m in client.get(site_url(world.site_a1)).context["messages"]] == [
        f"Waitlist entry {queue['first'].pk} is cancelled: it is no longer in the queue."
    ]


@pytest.mark.parametrize(
    ("actor", "entry", "status"),
    [
        ("finance_a", "first", 403),
        ("operator_b", "first", 404),
        ("host_a1", "a2", 404),
        ("operator_a", "b1", 404),
    ],
)
def test_denied_removals_change_nothing(client, world, queue, actor, entry, status):
    target = queue[entry]
    before = row(target)
    response = page(client, getattr(world, actor), leave_url(target), "post")
    assert response.status_code == status
    assert row(target) == before


def test_pages_refuse_get_on_post_urls(client, world, queue):
    assert page(client, world.operator_a, join_url(world.site_a1)).status_code == 405
    assert page(client, world.operator_a, leave_url(queue["first"])).status_code == 405
