# ruff: noqa: F811 - `roaming` is a fixture imported from tests/ocpi/conftest.py
"""The roaming pages of the portal (issue 17, operator UI): the organisation's party and partners with their
roles, status, delivery and what we publish; the partner's tariff; the buttons, which call the services the
API calls; and who gets in (operator admins; another organisation's partner is a 404, other roles 403)."""

import re
from datetime import UTC, datetime

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditRecord
from billing.services.tariffs import tariff_assign, tariff_create
from cpms.ocpi.enums import OutboxStatus, PartnerStatus
from cpms.ocpi.models import OcpiOutboxItem, OcpiPartner
from cpms.ocpi.services import locations, tariffs
from tests.factories import IdTokenFactory

# The OCPI tests' `roaming` fixture (parties and registered partners), taken as an argument by the tests below.
from tests.ocpi.conftest import roaming  # noqa: F401

pytestmark = pytest.mark.django_db


def item(partner, key: str, status: str = OutboxStatus.PENDING, **extra) -> OcpiOutboxItem:
    return OcpiOutboxItem.objects.create(
        partner=partner,
        module="locations",
        object_key=key,
        method="PUT",
        path=f"/NL/AAA/{key}",
        body={"id": key},
        status=status,
        next_attempt_at=timezone.now(),
        **extra,
    )


def logged_in(user) -> Client:
    http = Client()
    http.force_login(user)
    return http


def cell(html: str, partner: OcpiPartner, role: str) -> str:
    """The text of the partner row's cell `data-role=role`, tags stripped and spaces collapsed."""
    row = re.search(rf'<tr data-partner="{partner.pk}">(.*?)</tr>', html, re.S)
    assert row, f"no row for partner {partner.pk}"
    found = re.search(rf'data-role="{role}">(.*?)</td>', row.group(1), re.S)
    assert found, role
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())


def partners_state() -> list:
    return list(OcpiPartner.objects.order_by("pk").values()) + list(
        OcpiOutboxItem.objects.order_by("pk").values()
    )


@pytest.fixture
def delivery(roaming):
    """partner_a: two pushes waiting, one refused, one delivered; a last success and a last error."""
    item(roaming.partner_a, "1")
    item(roaming.partner_a, "2")
    item(roaming.partner_a, "3", status=OutboxStatus.REFUSED, attempts=5, last_error="2001 bad EVSE")
    item(roaming.partner_a, "4", status=OutboxStatus.DELIVERED, delivered_at=timezone.now())
    OcpiPartner.objects.filter(pk=roaming.partner_a.pk).update(
        last_success_at=datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
        last_error_at=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
        last_error="Partner unavailable: connection refused",
    )


def test_the_operator_sees_its_party_and_partners_with_their_delivery(world, roaming, delivery, settings):
    settings.TIME_ZONE = "UTC"
    OcpiPartner.objects.filter(pk=roaming.partner_a2.pk).update(publish_all_sites=False)
    roaming.partner_a2.published_sites.set([world.site_a2])
    response = logged_in(world.operator_a).get(reverse("portal:roaming"))
    assert response.status_code == 200
    html = response.content.decode()
    assert '<span data-role="party">NL*AAA</span>' in html
    a, a2 = roaming.partner_a, roaming.partner_a2
    assert cell(html, a, "backlog") == "2"
    assert cell(html, a, "refused") == "1"
    assert cell(html, a, "last-success") == "01 Dec 2026, 09:30 UTC"
    assert cell(html, a, "last-error") == "01 Dec 2026, 10:00 UTC Partner unavailable: connection refused"
    assert cell(html, a, "publishes") == "All sites"
    assert cell(html, a2, "publishes") == "A2"
    assert cell(html, a2, "backlog") == "0"
    assert "DE*EMS EMSP" in html and "FR*OTH EMSP" in html
    assert 'data-status="REGISTERED"' in html
    # Organisation B's partner is not on A's page.
    assert f'data-partner="{roaming.partner_b.pk}"' not in html
    # The buttons: sync and suspend for each registered partner, retry only where something was refused.
    assert html.count('data-action="sync"') == 2
    assert html.count('data-action="suspend"') == 2
    assert html.count('data-action="retry-refused"') == 1
    assert html.count("csrfmiddlewaretoken") >= 5


def test_the_partners_tariff_is_the_one_assigned_to_its_drivers_group(world, roaming):
    group = IdTokenFactory(organisation=world.org_a, value=f"OCPI-{roaming.partner_a.pk}")
    OcpiPartner.objects.filter(pk=roaming.partner_a.pk).update(id_token_group=group)
    tariff_assign(tariff=tariff_create(organisation=world.org_a, name="Roaming DE"), id_token_group=group)
    # A tariff narrowed to one site for the group is not "the partner's tariff".
    tariff_assign(
        tariff=tariff_create(organisation=world.org_a, name="Roaming DE at A1"),
        id_token_group=group,
        site=world.site_a1,
    )
    html = logged_in(world.operator_a).get(reverse("portal:roaming")).content.decode()
    assert cell(html, roaming.partner_a, "tariff") == "Roaming DE"
    assert cell(html, roaming.partner_a2, "tariff") == "Site prices"
    page = logged_in(world.operator_a).get(reverse("portal:roaming-partner", args=[roaming.partner_a.pk]))
    assert '<dd data-role="tariff">Roaming DE</dd>' in page.content.decode()


def test_an_organisation_without_a_party_is_told_how_to_create_one(world):
    html = logged_in(world.operator_a).get(reverse("portal:roaming")).content.decode()
    assert "No roaming party yet." in html


def test_the_partner_page_shows_its_outbox(world, roaming, delivery):
    response = logged_in(world.operator_a).get(reverse("portal:roaming-partner", args=[roaming.partner_a.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert '<span class="value" data-role="backlog">2</span>' in html
    assert '<span class="value" data-role="refused">1</span>' in html
    assert '<span class="value" data-role="delivered">1</span>' in html
    assert html.count("<tr data-item=") == 4
    assert "2001 bad EVSE" in html
    assert "http://emsp.invalid/ocpi/2.2.1/locations" in html
    assert 'name="back" value="partner"' in html


def test_no_token_or_hash_on_the_pages(world, roaming, delivery):
    http = logged_in(world.operator_a)
    pages = [reverse("portal:roaming"), reverse("portal:roaming-partner", args=[roaming.partner_a.pk])]
    for url in pages:
        html = http.get(url).content.decode()
        for partner in OcpiPartner.objects.all():
            assert partner.incoming_token_hash not in html
            assert partner.outgoing_token_encrypted not in html
        for secret in ("out-emsp-a", roaming.caller_a.token, roaming.caller_a2.token):
            assert secret not in html


def test_sync_now_calls_the_modules_and_says_what_it_queued(world, roaming, monkeypatch):
    pushed = []
    monkeypatch.setattr(locations, "locations_push_all", lambda p: pushed.append(p.pk) or 3)
    monkeypatch.setattr(tariffs, "tariffs_push_all", lambda p: 1)
    url = reverse("portal:roaming-partner-action", args=[roaming.partner_a.pk, "sync"])
    response = logged_in(world.operator_a).post(url, follow=True)
    assert response.redirect_chain == [(reverse("portal:roaming"), 302)]
    assert [str(m) for m in response.context["messages"]] == [
        "Sync queued for emsp-a: 3 location(s), 1 tariff(s)."
    ]
    assert pushed == [roaming.partner_a.pk]


def test_retry_refused_and_back_to_the_partner_page(world, roaming, delivery):
    url = reverse("portal:roaming-partner-action", args=[roaming.partner_a.pk, "retry-refused"])
    response = logged_in(world.operator_a).post(url, {"back": "partner"}, follow=True)
    assert response.redirect_chain == [(reverse("portal:roaming-partner", args=[roaming.partner_a.pk]), 302)]
    assert [str(m) for m in response.context["messages"]] == ["1 refused push(es) to emsp-a queued again."]
    assert not OcpiOutboxItem.objects.filter(status=OutboxStatus.REFUSED).exists()


def test_suspend_and_resume(world, roaming):
    http = logged_in(world.operator_a)
    suspend = reverse("portal:roaming-partner-action", args=[roaming.partner_a.pk, "suspend"])
    resume = reverse("portal:roaming-partner-action", args=[roaming.partner_a.pk, "resume"])
    response = http.post(suspend, follow=True)
    assert [str(m) for m in response.context["messages"]] == ["emsp-a suspended."]
    roaming.partner_a.refresh_from_db()
    assert roaming.partner_a.status == PartnerStatus.SUSPENDED
    html = response.content.decode()
    assert cell(html, roaming.partner_a, "backlog") == "0"
    assert f'action="{resume}"' in html and f'action="{suspend}"' not in html
    response = http.post(suspend, follow=True)
    assert [str(m) for m in response.context["messages"]] == ["The partner is not registered."]
    http.post(resume)
    roaming.partner_a.refresh_from_db()
    assert roaming.partner_a.status == PartnerStatus.REGISTERED
    assert AuditRecord.objects.filter(action="roaming.partner_changed", actor=world.operator_a).count() == 2


def test_an_unknown_action_is_404(world, roaming):
    url = reverse("portal:roaming-partner-action", args=[roaming.partner_a.pk, "delete"])
    before = partners_state()
    assert logged_in(world.operator_a).post(url).status_code == 404
    assert partners_state() == before


@pytest.mark.parametrize(("who", "status"), [("operator_b", 200), ("finance_a", 403), ("host_a1", 403)])
def test_who_gets_the_roaming_page(world, roaming, who, status):
    response = logged_in(getattr(world, who)).get(reverse("portal:roaming"))
    assert response.status_code == status
    if status == 200:
        html = response.content.decode()
        assert f'data-partner="{roaming.partner_b.pk}"' in html
        assert f'data-partner="{roaming.partner_a.pk}"' not in html


@pytest.mark.parametrize("who", ["operator_b", "finance_a", "host_a1"])
def test_others_get_404_on_a_partner_and_change_nothing(world, roaming, delivery, who, monkeypatch):
    pushed = []
    monkeypatch.setattr(locations, "locations_push_all", lambda p: pushed.append(p.pk) or 1)
    http = logged_in(getattr(world, who))
    assert http.get(reverse("portal:roaming-partner", args=[roaming.partner_a.pk])).status_code == 404
    before = partners_state()
    for action in ("sync", "retry-refused", "suspend", "resume"):
        url = reverse("portal:roaming-partner-action", args=[roaming.partner_a.pk, action])
        assert http.post(url).status_code == 404, action
    assert partners_state() == before
    assert pushed == []


def test_the_buttons_need_the_csrf_token(world, roaming):
    http = Client(enforce_csrf_checks=True)
    http.force_login(world.operator_a)
    url = reverse("portal:roaming-partner-action", args=[roaming.partner_a.pk, "suspend"])
    assert http.post(url).status_code == 403
    roaming.partner_a.refresh_from_db()
    assert roaming.partner_a.status == PartnerStatus.REGISTERED


def test_anonymous_is_sent_to_log_in(client, roaming):
    url = reverse("portal:roaming-partner-action", args=[roaming.partner_a.pk, "suspend"])
    response = client.post(url)
    assert (response.status_code, response["Location"]) == (302, f"/portal/login/?next={url}")
    assert client.get(url).status_code == 405


def test_the_navigation_shows_roaming_to_managers_only(world):
    nav = '<a href="/portal/roaming/"'
    assert nav in logged_in(world.operator_a).get(reverse("portal:overview")).content.decode()
    assert nav not in logged_in(world.finance_a).get(reverse("portal:overview")).content.decode()
    assert nav not in logged_in(world.host_a1).get(reverse("portal:overview")).content.decode()
