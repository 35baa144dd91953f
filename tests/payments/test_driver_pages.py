"""The drivers' public pages through Django's test client: what is shown before paying, bad input, the secret
that binds a payment's pages to it, and the rate limit (issue 18; docs/reliability.md cases 48 and 49). The
real browser walk is tests/e2e/test_payment_browser.py."""

from decimal import Decimal

import pytest
from django.urls import reverse

from billing.enums import PaymentStatus
from billing.models import Payment
from billing.services import payments
from tests.factories import ChargingSessionFactory
from tests.payments.localstripe import DECLINED
from tests.payments.test_payment_flows import begin, charge_session, started


def evse_url(pay_world) -> str:
    return reverse("pay:evse", args=[pay_world.evse.public_code])


def test_the_evse_page_shows_availability_the_full_price_with_vat_and_the_hold(pay_world, client):
    pay_world.station.site.country = "DE"
    pay_world.station.site.save(update_fields=["country"])
    response = client.get(evse_url(pay_world))
    assert response.status_code == 200
    text = response.content.decode()
    # In the site's language (German; tests/payments/test_driver_languages.py has the others).
    assert 'data-testid="evse-state">Verfügbar<' in text
    # 1.00 session fee and 0.30/kWh excl. VAT, shown with 19 % VAT in the site's (German) number format.
    assert '<th scope="row">Startgebühr</th><td>1,19 EUR</td>' in text
    assert '<th scope="row">Energie</th><td>0,357 EUR pro kWh</td>' in text
    assert 'data-testid="hold">50,00 EUR<' in text
    assert f'<script src="{pay_world.server.url}/js.stripe.com/v3/">' in text
    assert response["Cache-Control"] == "no-store"


def test_idle_fees_and_time_windows_are_shown_before_paying(pay_world, client):
    from billing.models import TariffAssignment
    from tests.payments.conftest import assign_adhoc_tariff

    TariffAssignment.objects.filter(id_token_group=pay_world.settings.adhoc_group).delete()
    elements = [
        {
            "price_components": [{"type": "ENERGY", "price": "0.40", "step_size": 1}],
            "restrictions": {"start_time": "08:00", "end_time": "20:00", "day_of_week": ["MONDAY", "FRIDAY"]},
        },
        {"price_components": [{"type": "ENERGY", "price": "0.30", "step_size": 1}]},
        {"price_components": [{"type": "PARKING_TIME", "price": "6.00", "step_size": 60}]},
    ]
    assign_adhoc_tariff(pay_world.organisation, pay_world.settings, elements, tax="0.20", name="Peak")
    version = pay_world.settings.adhoc_group.__class__  # noqa: F841
    from billing.models import TariffVersion

    TariffVersion.objects.filter(tariff__name="Peak").update(parking_grace_s=1800)
    text = client.get(evse_url(pay_world)).content.decode()
    assert 'Energy<br><span class="when">Mon, Fri; 08:00-20:00</span></th><td>0.48 EUR per kWh</td>' in text
    assert '<th scope="row">Energy</th><td>0.36 EUR per kWh</td>' in text
    assert "Idle fee after 30 min without charging</th><td>7.20 EUR per hour</td>" in text


def test_an_unknown_code_is_a_404_page_and_a_charger_without_card_payment_says_so(pay_world, client):
    assert client.get(reverse("pay:evse", args=["nosuchcode"])).status_code == 404
    pay_world.settings.enabled = False
    pay_world.settings.save(update_fields=["enabled"])
    response = client.get(evse_url(pay_world))
    assert response.status_code == 200
    assert (
        'data-testid="not-offered">Card payment is not offered at this charger.<' in response.content.decode()
    )
    assert client.post(evse_url(pay_world), {"card_token": "tok_x"}).status_code == 200
    assert not Payment.objects.exists()


def test_a_busy_or_offline_charger_takes_no_payment(pay_world, client):
    ChargingSessionFactory(station=pay_world.station, evse=pay_world.evse, status="active")
    response = client.get(evse_url(pay_world))
    assert 'data-testid="evse-state">In use<' in response.content.decode()
    assert 'id="pay-form"' not in response.content.decode()
    response = client.post(evse_url(pay_world), {"card_token": pay_world.server.card_token()})
    assert response.status_code == 400
    assert "not available right now" in response.content.decode()
    assert not Payment.objects.exists()


def test_a_malformed_token_and_a_declined_card_are_clear_errors_on_the_page(pay_world, client, fake_charger):
    response = client.post(evse_url(pay_world), {"card_token": "<script>", "email": ""})
    assert response.status_code == 400
    assert "card_token: missing or malformed" in response.content.decode()
    response = client.post(evse_url(pay_world), {"card_token": pay_world.server.card_token(DECLINED)})
    assert response.status_code == 400
    assert "Your card was declined." in response.content.decode()
    assert fake_charger.received == []
    response = client.post(
        evse_url(pay_world), {"card_token": pay_world.server.card_token(), "email": "not-mail"}
    )
    assert (response.status_code, "email: not an email address" in response.content.decode()) == (400, True)


def test_paying_redirects_to_a_live_page_that_only_its_secret_opens(pay_world, client, fake_charger):
    response = client.post(evse_url(pay_world), {"card_token": pay_world.server.card_token()})
    assert response.status_code == 302
    live = response["Location"]
    payment = Payment.objects.get()
    assert payment.status == PaymentStatus.AUTHORISED
    key = live.strip("/").split("/")[-1]
    assert payment.access_key_hash == payments.access_key_hash(key) and key not in payment.access_key_hash
    assert client.get(live).status_code == 200
    for wrong in (key[:-1] + ("A" if key[-1] != "A" else "B"), "x", "a" * 200):
        assert client.get(reverse("pay:live", args=[wrong])).status_code == 404
        assert client.post(reverse("pay:stop", args=[wrong])).status_code == 404
        assert client.get(reverse("pay:receipt-pdf", args=[wrong])).status_code == 404


def test_the_stop_button_stops_only_its_own_session(pay_world, client, fake_charger):
    mine = started(pay_world, fake_charger)
    theirs = started(pay_world, fake_charger)
    session = ChargingSessionFactory(
        station=pay_world.station, evse=pay_world.evse, id_token=mine.payment.id_token, transaction_id="777"
    )
    ChargingSessionFactory(
        station=pay_world.station, evse=pay_world.evse, id_token=theirs.payment.id_token, transaction_id="888"
    )
    fake_charger.received.clear()
    assert client.post(reverse("pay:stop", args=[mine.access_key])).status_code == 302
    assert fake_charger.received == [
        ("A1-CP1", "RemoteStopTransaction", {"transactionId": int(session.transaction_id)})
    ]


def test_the_receipt_waits_for_the_capture_then_shows_the_cdr(pay_world, client, fake_charger):
    begun = started(pay_world, fake_charger)
    receipt_url = reverse("pay:receipt", args=[begun.access_key])
    assert client.get(receipt_url)["Location"] == reverse("pay:live", args=[begun.access_key])
    charge_session(begun.payment, wh=10_000)
    payments.payments_sweep()
    text = client.get(receipt_url).content.decode()
    # In the language the driver paid in (German here: begin() passes "de").
    assert 'data-testid="receipt-total">4,76 EUR<' in text
    assert 'data-testid="receipt-tax">0,76 EUR<' in text
    assert '<th scope="row">Energie 10,000 kWh x 0,30 EUR/kWh</th><td>3,00 EUR</td>' in text
    pdf = client.get(reverse("pay:receipt-pdf", args=[begun.access_key]))
    assert (pdf.status_code, pdf["Content-Type"]) == (200, "application/pdf")
    assert Payment.objects.get(pk=begun.payment.pk).captured_amount == Decimal("4.76")


def test_the_public_pages_are_rate_limited_per_address(pay_world, client, settings):
    settings.PAYMENT_PUBLIC_RATE_PER_MIN = 3
    codes = [client.get(evse_url(pay_world), REMOTE_ADDR="203.0.113.9").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert client.get(evse_url(pay_world), REMOTE_ADDR="203.0.113.10").status_code == 200


@pytest.mark.parametrize("path", ["/portal/", "/api/v1/stations/", "/admin/"])
def test_a_driver_with_a_live_page_reaches_no_operator_interface(pay_world, client, fake_charger, path):
    begun = begin(pay_world)
    client.get(reverse("pay:live", args=[begun.access_key]))
    response = client.get(path)
    assert response.status_code in (302, 401, 403)
