"""Roaming in a real browser (headless Chromium driven by Playwright) against a real server process: an
operator opens Roaming from the navigation, sees a partner with its backlog and refused pushes, presses "Sync
now", and the page shows the pushes it queued (the backlog grows by the published location). Another
organisation's operator does not see that partner and gets 404 on its page.
Screenshots go to test-artifacts/portal/ (tests/e2e/browser.py)."""

from decimal import Decimal

import pytest
from django.utils import timezone

from cpms.ocpi.enums import OutboxStatus
from cpms.ocpi.models import OcpiOutboxItem, OcpiPartner, OcpiParty
from tests.e2e.browser import chromium, log_in, screenshot
from tests.e2e.test_portal_browser import PASSWORD, WAIT_MS, off_loop, with_password
from tests.factories import ConnectorFactory, EvseFactory
from tests.ocpi.conftest import partner_registered

pytestmark = pytest.mark.e2e


def queued(partner: OcpiPartner, key: str, status: str) -> None:
    OcpiOutboxItem.objects.create(
        partner=partner,
        module="locations",
        object_key=key,
        method="PUT",
        path=f"/NL/AAA/{key}",
        body={"id": key},
        status=status,
        next_attempt_at=timezone.now(),
    )


def outbox_of(partner_pk: int) -> list[tuple[str, str, str]]:
    return list(
        OcpiOutboxItem.objects.filter(partner_id=partner_pk)
        .order_by("pk")
        .values_list("module", "method", "status")
    )


def test_an_operator_sees_a_partners_backlog_and_syncs_it(cpms_server, world):
    # Site A1 is published (a Location needs coordinates and a country) with one EVSE; A2 is not.
    site = world.site_a1
    site.latitude, site.longitude, site.country = Decimal("52.09"), Decimal("5.12"), "NL"
    site.save(update_fields=["latitude", "longitude", "country"])
    ConnectorFactory(evse=EvseFactory(station=world.station_a1, evse_id=1), connector_id=1)
    party_a = OcpiParty.objects.create(
        organisation=world.org_a, country_code="NL", party_id="AAA", name="Org A"
    )
    party_b = OcpiParty.objects.create(
        organisation=world.org_b, country_code="NL", party_id="BBB", name="Org B"
    )
    partner, _ = partner_registered(party_a, name="Emsp Roaming")
    other, _ = partner_registered(party_b, name="Emsp of B")
    for key, status in (
        ("1", OutboxStatus.PENDING),
        ("2", OutboxStatus.PENDING),
        ("3", OutboxStatus.REFUSED),
    ):
        queued(partner, key, status)
    with_password(world.operator_a, world.operator_b)

    with chromium() as browser:
        page = log_in(browser, cpms_server.http_url, "operator_a", PASSWORD)
        page.get_by_role("link", name="Roaming").click()
        page.wait_for_url("**/portal/roaming/")
        row = page.locator(f'tr[data-partner="{partner.pk}"]')
        assert page.locator('[data-role="party"]').inner_text() == "NL*AAA"
        assert row.locator('[data-role="backlog"]').inner_text() == "2"
        assert row.locator('[data-role="refused"]').inner_text() == "1"
        assert row.locator('[data-status="REGISTERED"]').inner_text() == "Registered"
        assert row.locator('[data-role="publishes"]').inner_text() == "All sites"
        assert "DE*EMS EMSP" in row.inner_text()
        assert page.locator(f'tr[data-partner="{other.pk}"]').count() == 0
        screenshot(page, "roaming-1-partners")

        row.get_by_role("button", name="Sync now").click()
        page.wait_for_selector(
            "text=Sync queued for Emsp Roaming: 1 location(s), 0 tariff(s).", timeout=WAIT_MS
        )
        row = page.locator(f'tr[data-partner="{partner.pk}"]')
        assert row.locator('[data-role="backlog"]').inner_text() == "3"
        screenshot(page, "roaming-2-synced")
        # Queued in the outbox, after what was waiting (delivery is the worker's job; none runs here).
        assert off_loop(outbox_of, partner.pk) == [
            ("locations", "PUT", "PENDING"),
            ("locations", "PUT", "PENDING"),
            ("locations", "PUT", "REFUSED"),
            ("locations", "PUT", "PENDING"),
        ]

        page.get_by_role("link", name="Emsp Roaming").click()
        page.wait_for_url(f"**/portal/roaming/partners/{partner.pk}/")
        assert page.locator('.stat [data-role="backlog"]').inner_text() == "3"
        assert page.locator("tr[data-item]").count() == 4
        screenshot(page, "roaming-3-partner")

        stranger = log_in(browser, cpms_server.http_url, "operator_b", PASSWORD)
        stranger.goto("/portal/roaming/")
        assert stranger.locator(f'tr[data-partner="{partner.pk}"]').count() == 0
        assert stranger.locator(f'tr[data-partner="{other.pk}"]').count() == 1
        response = stranger.goto(f"/portal/roaming/partners/{partner.pk}/")
        assert response.status == 404
