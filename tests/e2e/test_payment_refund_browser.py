"""Issue 18, acceptance 3, in a real browser: a finance user refunds part of an ad-hoc payment from the portal;
the CDR gets a credit and the provider (localstripe, a real process) a refund, of equal amounts. The same
page denies another organisation's operator."""

from decimal import Decimal

import pytest

from accounts.services import membership_set
from billing.enums import PaymentStatus, RefundStatus
from billing.models import CdrCredit, Payment, PaymentRefund
from billing.services import payments
from tests.e2e.browser import chromium, log_in, screenshot
from tests.e2e.test_portal_browser import PASSWORD, with_password
from tests.factories import (
    ChargingStationFactory,
    ConnectorFactory,
    EvseFactory,
    OrganisationFactory,
    UserFactory,
)
from tests.payments.conftest import assign_adhoc_tariff, enable_payments, localstripe, localstripe_server  # noqa: F401 (fixtures)
from tests.payments.test_payment_flows import charge_session

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def captured_payment(localstripe) -> Payment:  # noqa: F811
    """A 10 kWh ad-hoc session paid at localstripe and captured (4.76 EUR), made through the services."""
    station = ChargingStationFactory(identity="PAY-REFUND-01", protocol="ocpp1.6")
    evse = EvseFactory(station=station, evse_id=1)
    ConnectorFactory(evse=evse, connector_id=1, status="Available")
    station.is_connected = True
    station.save(update_fields=["is_connected"])
    settings_row = enable_payments(station.organisation, localstripe)
    assign_adhoc_tariff(station.organisation, settings_row)
    begun = payments.payment_begin(evse=evse, card_token=localstripe.card_token())
    Payment.objects.filter(pk=begun.payment.pk).update(status=PaymentStatus.STARTING)
    charge_session(Payment.objects.get(pk=begun.payment.pk), wh=10_000)
    payments.payments_sweep()
    payment = Payment.objects.get(pk=begun.payment.pk)
    assert (payment.status, payment.captured_amount) == (PaymentStatus.CAPTURED, Decimal("4.76"))
    return payment


def test_a_refund_from_the_portal_is_a_credit_and_a_provider_refund_of_the_same_amount(
    cpms_server,
    localstripe,  # noqa: F811
):
    payment = captured_payment(localstripe)
    finance = UserFactory(username="pay_finance")
    membership_set(user=finance, organisation=payment.organisation, role="finance")
    stranger = UserFactory(username="pay_stranger")
    membership_set(user=stranger, organisation=OrganisationFactory(slug="other-op"), role="operator_admin")
    with_password(finance, stranger)

    with chromium() as browser:
        page = log_in(browser, cpms_server.http_url, "pay_finance", PASSWORD)
        page.goto(f"/portal/payments/{payment.pk}/")
        assert page.locator("[data-role=captured]").inner_text() == "4.76 EUR"
        page.get_by_label("Amount").fill("2.38")
        page.get_by_label("Reason").fill("Charger was slow")
        screenshot(page, "pay-6-refund")
        page.get_by_role("button", name="Refund").click()
        page.wait_for_load_state()
        assert page.locator("[data-role=refunded]").inner_text() == "2.38 EUR"

        other = log_in(browser, cpms_server.http_url, "pay_stranger", PASSWORD)
        response = other.goto(f"/portal/payments/{payment.pk}/")
        assert response.status == 404

    refund = PaymentRefund.objects.get(payment=payment)
    credit = CdrCredit.objects.get(pk=refund.credit_id)
    assert (refund.status, refund.amount, credit.total, credit.cdr.session_id) == (
        RefundStatus.SUCCEEDED,
        Decimal("2.38"),
        Decimal("-2.38"),
        payment.session_id,
    )
    assert localstripe.money(payment.provider_ref)["refunded"] == 238
    payment.refresh_from_db()
    assert payment.refunded_amount == Decimal("2.38")
