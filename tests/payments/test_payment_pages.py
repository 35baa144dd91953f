"""The portal's payment pages (issue 18, acceptance 3: a refund from the portal is a credit on the CDR and a
refund at the provider of the same amount), their scope, the unpaid filter, the session's payment block, the
nav item, and the PaymentSettings admin whose secrets are write-only."""

import re
from decimal import Decimal

import pytest
from django.test import Client

from billing.enums import PaymentStatus
from billing.models import CdrCredit, Payment, PaymentRefund, PaymentSettings
from billing.providers.keys import secret_decrypt
from billing.tasks import payments_sweep
from tests.payments.localstripe import SECRET_KEY, WEBHOOK_SECRET
from tests.payments.test_payment_flows import charge_session, started


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def captured(pay_world, fake_charger) -> Payment:
    begun = started(pay_world, fake_charger)
    charge_session(begun.payment, wh=10_000)  # 4.76 EUR
    payments_sweep()
    payment = Payment.objects.get(pk=begun.payment.pk)
    assert payment.status == PaymentStatus.CAPTURED
    return payment


def listed(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'data-payment="(\d+)"', html)]


def role(html: str, name: str) -> str:
    match = re.search(rf'data-role="{name}"[^>]*>([^<]*)<', html)
    assert match, name
    return match.group(1)


def test_the_list_and_the_page_show_the_payment_to_its_operator(world, pay_world, captured):
    client = client_for(world.operator_a)
    page = client.get("/portal/payments/")
    assert page.status_code == 200
    html = page.content.decode()
    assert listed(html) == [captured.pk]
    assert 'href="/portal/payments/"' in html  # the nav item
    assert f'href="/portal/sessions/{captured.session_id}/"' in html
    detail = client.get(f"/portal/payments/{captured.pk}/")
    assert detail.status_code == 200
    html = detail.content.decode()
    assert (role(html, "hold"), role(html, "captured"), role(html, "refunded"), role(html, "unpaid")) == (
        "50.00 EUR", "4.76 EUR", "0.00 EUR", "0.00 EUR",
    )  # fmt: skip
    events = re.findall(r'data-event="([a-z_:.]+)"', html)
    assert (events[0], events[-1]) == ("created", "captured")
    assert 'data-role="refund-form"' in html
    assert captured.access_key_hash not in html


def test_another_organisation_sees_nothing_and_gets_404(world, pay_world, captured):
    client = client_for(world.operator_b)
    assert listed(client.get("/portal/payments/").content.decode()) == []
    assert client.get(f"/portal/payments/{captured.pk}/").status_code == 404
    response = client.post(f"/portal/payments/{captured.pk}/", {"amount": "1.00", "reason": "x"})
    assert response.status_code == 404
    assert not CdrCredit.objects.exists()


def test_a_site_host_sees_the_payment_without_a_refund_form_and_cannot_refund(world, pay_world, captured):
    client = client_for(world.host_a1)
    html = client.get(f"/portal/payments/{captured.pk}/").content.decode()
    assert 'data-role="refund-form"' not in html
    response = client.post(f"/portal/payments/{captured.pk}/", {"amount": "1.00", "reason": "x"})
    assert response.status_code == 403
    assert not CdrCredit.objects.exists()
    assert not PaymentRefund.objects.exists()
    assert pay_world.server.money(captured.provider_ref)["refunded"] == 0


def test_a_refund_from_the_portal_is_a_credit_and_a_provider_refund_of_the_same_amount(
    world, pay_world, captured
):
    client = client_for(world.finance_a)
    response = client.post(
        f"/portal/payments/{captured.pk}/", {"amount": "2.38", "reason": "Slow charging"}, follow=True
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Refund of 2.38 EUR: Refunded." in html
    credit = CdrCredit.objects.get()
    refund = PaymentRefund.objects.get()
    assert (credit.total, refund.amount, refund.credit_id) == (Decimal("-2.38"), Decimal("2.38"), credit.pk)
    assert pay_world.server.money(captured.provider_ref)["refunded"] == 238
    assert role(html, "refunded") == "2.38 EUR"
    assert f'data-refund="{refund.pk}"' in html


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"amount": "9.00", "reason": "Too much"}, 400, "amount: at most 4.76 EUR can be refunded"),
        ({"amount": "abc", "reason": "Text"}, 400, "Enter an amount such as 2.50."),
        ({"amount": "1.00", "reason": ""}, 400, "This field is required."),
    ],
)
def test_a_bad_refund_shows_why_and_changes_nothing(world, pay_world, captured, form, status, message):
    response = client_for(world.finance_a).post(f"/portal/payments/{captured.pk}/", form)
    assert response.status_code == status
    assert message in response.content.decode()
    assert not CdrCredit.objects.exists()
    assert pay_world.server.money(captured.provider_ref)["refunded"] == 0


def test_a_refund_when_nothing_is_left_is_409(world, pay_world, captured):
    client = client_for(world.operator_a)
    assert client.post(f"/portal/payments/{captured.pk}/", {"reason": "All"}).status_code == 302
    again = client.post(f"/portal/payments/{captured.pk}/", {"reason": "Again"})
    assert again.status_code == 409
    assert "Nothing is left to refund on this payment." in again.content.decode()
    assert CdrCredit.objects.count() == 1


def test_the_unpaid_filter(world, pay_world, captured):
    client = client_for(world.operator_a)
    assert listed(client.get("/portal/payments/?status=unpaid").content.decode()) == []
    Payment.objects.filter(pk=captured.pk).update(status=PaymentStatus.SHORTFALL, unpaid_amount="10.47")
    html = client.get("/portal/payments/?status=unpaid").content.decode()
    assert listed(html) == [captured.pk]
    assert role(html, "unpaid") == "10.47 EUR"
    Payment.objects.filter(pk=captured.pk).update(status=PaymentStatus.UNPAID)
    assert listed(client.get("/portal/payments/?status=unpaid").content.decode()) == [captured.pk]
    assert listed(client.get("/portal/payments/?status=captured").content.decode()) == []


def test_the_session_page_shows_its_payment(world, pay_world, captured):
    html = client_for(world.operator_a).get(f"/portal/sessions/{captured.session_id}/").content.decode()
    assert (role(html, "payment-hold"), role(html, "payment-captured"), role(html, "payment-refunded")) == (
        "50.00 EUR", "4.76 EUR", "0.00 EUR",
    )  # fmt: skip
    assert f'href="/portal/payments/{captured.pk}/"' in html


# --- the admin ------------------------------------------------------------------------------------------------


def test_the_settings_admin_never_shows_a_secret_and_keeps_it_when_left_blank(world, pay_world):
    client = client_for(world.superuser)
    row = PaymentSettings.objects.get(organisation=world.org_a)
    url = f"/admin/billing/paymentsettings/{row.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert SECRET_KEY not in html and WEBHOOK_SECRET not in html
    assert row.secret_key_encrypted not in html
    form = {
        "enabled": "on",
        "publishable_key": row.publishable_key,
        "secret_key": "",
        "webhook_secret": "",
        "api_base": row.api_base,
        "js_url": row.js_url,
        "hold_amount": "40.00",
        "start_timeout_s": "200",
        "operator_legal_name": "Org A Charging GmbH",
        "operator_address": "Hauptstr. 1",
        "operator_vat_id": "DE123456789",
    }
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    row.refresh_from_db()
    assert (row.hold_amount, row.start_timeout_s) == (Decimal("40.00"), 200)
    assert (secret_decrypt(row.secret_key_encrypted), secret_decrypt(row.webhook_secret_encrypted)) == (
        SECRET_KEY, WEBHOOK_SECRET,
    )  # fmt: skip
    client.post(url, {**form, "secret_key": "sk_test_new"})
    row.refresh_from_db()
    assert secret_decrypt(row.secret_key_encrypted) == "sk_test_new"


def test_the_payment_admin_is_read_only(world, pay_world, captured):
    client = client_for(world.superuser)
    assert client.get("/admin/billing/payment/").status_code == 200
    assert client.get(f"/admin/billing/payment/{captured.pk}/change/").status_code == 200
    assert client.get("/admin/billing/payment/add/").status_code == 403
    assert client.get(f"/admin/billing/payment/{captured.pk}/delete/").status_code == 403


def test_times_are_shown_in_the_site_time_zone(world, pay_world, captured):
    from zoneinfo import ZoneInfo

    berlin = captured.created_at.astimezone(ZoneInfo("Europe/Berlin"))  # site A1's zone
    shown = f"{berlin:%d %b} {berlin.year:04d}, {berlin:%H:%M} {berlin.tzname()}"
    client = client_for(world.operator_a)
    assert shown in client.get(f"/portal/payments/{captured.pk}/").content.decode()
    assert shown in client.get("/portal/payments/").content.decode()
