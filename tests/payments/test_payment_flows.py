"""Every path of an ad-hoc payment against a real Stripe-compatible server (localstripe): the money at the
provider and the payment's state at the end of each (issue 18, acceptance 2; docs/reliability.md case 49).
The charger is the `fake_charger` command transport (tests/commands.py); the browser and a real charger are
in test_payment_browser.py."""

import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import stripe
from django.utils import timezone

from billing.enums import PaymentStatus, RefundStatus
from billing.models import CdrCredit, Payment, PaymentEvent, PaymentRefund, TariffAssignment
from billing.services import payments
from billing.services.cdrs import session_bill
from billing.tasks import payments_sweep
from cpms.errors import Conflict, PermissionDenied, ValidationFailed
from sessions.enums import IdTokenStatus
from sessions.models import MeterValue
from tests.commands import TIMEOUT
from tests.factories import ChargingSessionFactory
from tests.payments.conftest import assign_adhoc_tariff
from tests.payments.localstripe import DECLINED, WEBHOOK_SECRET


def begin(pay_world, card=None, email="driver@example.com"):
    token = pay_world.server.card_token(card) if card else pay_world.server.card_token()
    return payments.payment_begin(evse=pay_world.evse, card_token=token, email=email, language="de")


def charge_session(payment, *, wh: int, minutes: int = 30):
    """The session the charger opened with the payment's token, ended with `wh` delivered, and its CDR."""
    started = timezone.now() - timedelta(minutes=minutes + 1)
    session = ChargingSessionFactory(
        station=payment.station,
        evse=payment.evse,
        id_token=payment.id_token,
        id_tag=payment.id_token.value,
        started_at=started,
        stopped_at=started + timedelta(minutes=minutes),
        meter_start_wh=1000,
        meter_stop_wh=1000 + wh,
        meter_last_wh=1000 + wh,
        meter_last_at=started + timedelta(minutes=minutes),
        energy_wh=wh,
        status="completed",
    )
    MeterValue.objects.bulk_create(
        MeterValue(
            station=payment.station,
            session=session,
            timestamp=at,
            value=Decimal(value),
            unit="Wh",
            received_at=at,
        )
        for at, value in ((started, 1000), (started + timedelta(minutes=minutes), 1000 + wh))
    )
    assert session_bill(session_id=session.pk).outcome == "billed"
    return session


def started(pay_world, fake_charger, **kwargs):
    begun = begin(pay_world, **kwargs)
    assert begun.payment.status == PaymentStatus.AUTHORISED
    assert payments.payment_start_charging(payment_id=begun.payment.pk) == "accepted"
    return begun


def test_the_whole_way_hold_start_capture_exactly_the_cdr_and_release_the_rest(pay_world, fake_charger):
    begun = started(pay_world, fake_charger)
    payment = Payment.objects.get(pk=begun.payment.pk)
    assert payment.status == PaymentStatus.STARTING
    assert payment.hold_amount == Decimal("50.00")
    assert payment.card_hint == "Visa ...4242"  # from the browser's token; no card number is kept
    (identity, action, request) = fake_charger.received[0]
    assert (identity, action) == ("A1-CP1", "RemoteStartTransaction")
    assert request == {"idTag": payment.id_token.value, "connectorId": 1}
    assert pay_world.server.money(payment.provider_ref) == {
        "held": 5000, "captured": 0, "released": 0, "refunded": 0, "status": "requires_capture",
    }  # fmt: skip

    session = charge_session(payment, wh=10_000)
    # billing.tasks.session_bill settles at once; here the sweep does (the same service).
    assert payments_sweep()["settled"] == 1
    payment.refresh_from_db()
    assert session.cdr.total == Decimal("4.76")
    assert (payment.status, payment.session_id, payment.captured_amount, payment.unpaid_amount) == (
        PaymentStatus.CAPTURED, session.pk, Decimal("4.76"), Decimal("0"),
    )  # fmt: skip
    assert pay_world.server.money(payment.provider_ref) == {
        "held": 5000, "captured": 476, "released": 4524, "refunded": 0, "status": "succeeded",
    }  # fmt: skip
    # One-off: the token started its session and starts no other.
    assert payment.id_token.__class__.objects.get(pk=payment.id_token_id).status == IdTokenStatus.BLOCKED
    # Settled twice (the job and the sweep, a redelivery): nothing moves twice.
    assert payments.payment_settle(payment_id=payment.pk) == "not_due"
    assert payments_sweep()["settled"] == 0
    assert pay_world.server.money(payment.provider_ref)["captured"] == 476


def test_a_declined_card_starts_nothing_and_holds_nothing(pay_world, fake_charger):
    begun = begin(pay_world, card=DECLINED)
    payment = begun.payment
    assert payment.status == PaymentStatus.DECLINED
    assert "declined" in payment.failure.lower()
    assert fake_charger.received == []
    assert payment.id_token.__class__.objects.get(pk=payment.id_token_id).status == IdTokenStatus.BLOCKED
    assert pay_world.server.intents() == []
    assert payments.payment_start_charging(payment_id=payment.pk) == "not_authorised"
    assert fake_charger.received == []


@pytest.mark.parametrize(
    "answer", [{"status": "Rejected"}, TIMEOUT], ids=["charger refuses", "charger does not answer"]
)
def test_a_charger_that_does_not_start_releases_the_hold(pay_world, fake_charger, answer):
    fake_charger.answers["RemoteStartTransaction"] = answer
    begun = begin(pay_world)
    assert payments.payment_start_charging(payment_id=begun.payment.pk) == "refused"
    payment = Payment.objects.get(pk=begun.payment.pk)
    assert payment.status == PaymentStatus.RELEASED
    assert payment.captured_amount == 0
    assert "Ladestation" in payment.failure  # in the language the driver paid in (German)
    assert pay_world.server.money(payment.provider_ref)["status"] == "canceled"
    assert payment.id_token.__class__.objects.get(pk=payment.id_token_id).status == IdTokenStatus.BLOCKED
    # The start job delivered again sends nothing.
    assert payments.payment_start_charging(payment_id=payment.pk) == "not_authorised"
    assert len(fake_charger.received) == 1


def test_no_cable_within_the_timeout_releases_the_hold(pay_world, fake_charger):
    begun = started(pay_world, fake_charger)
    assert payments_sweep()["released"] == 0  # still within start_timeout_s
    Payment.objects.filter(pk=begun.payment.pk).update(authorised_at=timezone.now() - timedelta(seconds=121))
    assert payments_sweep()["released"] == 1
    payment = Payment.objects.get(pk=begun.payment.pk)
    assert payment.status == PaymentStatus.RELEASED
    assert payment.failure == "No charging session started in time."
    assert pay_world.server.money(payment.provider_ref)["status"] == "canceled"
    assert payments_sweep()["released"] == 0


def test_a_session_that_costs_nothing_releases_the_whole_hold(pay_world, fake_charger):
    TariffAssignment.objects.filter(id_token_group=pay_world.settings.adhoc_group).delete()
    energy_only = [{"price_components": [{"type": "ENERGY", "price": "0.30", "step_size": 1}]}]
    assign_adhoc_tariff(pay_world.organisation, pay_world.settings, energy_only, name="Energy only")
    begun = started(pay_world, fake_charger)
    charge_session(begun.payment, wh=0)
    payments_sweep()
    payment = Payment.objects.get(pk=begun.payment.pk)
    assert (payment.status, payment.captured_amount) == (PaymentStatus.RELEASED, Decimal(0))
    assert pay_world.server.money(payment.provider_ref)["status"] == "canceled"


def test_a_failed_capture_is_unpaid_retried_and_never_captured_twice(pay_world, fake_charger, settings):
    settings.PAYMENT_PROVIDER_TIMEOUT_S = 1.0
    begun = started(pay_world, fake_charger)
    charge_session(begun.payment, wh=10_000)
    payments.payments_bind_sessions()
    with pay_world.server.frozen():
        assert payments.payment_settle(payment_id=begun.payment.pk) == "failed"
    payment = Payment.objects.get(pk=begun.payment.pk)
    assert (payment.status, payment.capture_attempts, payment.captured_amount) == (PaymentStatus.UNPAID, 1, 0)
    assert payment.next_attempt_at > timezone.now()
    assert payment in Payment.objects.filter(status=PaymentStatus.UNPAID)  # what the operator's list shows
    assert payments_sweep()["settled"] == 0  # not before its next attempt
    # The provider may have captured when it woke up (the request was sent): the retry reads its state first.
    Payment.objects.filter(pk=payment.pk).update(next_attempt_at=timezone.now())
    time.sleep(0.2)
    assert payments_sweep()["settled"] == 1
    payment.refresh_from_db()
    assert (payment.status, payment.captured_amount) == (PaymentStatus.CAPTURED, Decimal("4.76"))
    money = pay_world.server.money(payment.provider_ref)
    assert (money["captured"], money["released"]) == (476, 4524)


def test_a_total_above_the_hold_captures_the_hold_and_records_the_rest_unpaid(pay_world, fake_charger):
    pay_world.settings.hold_amount = Decimal("5.00")
    pay_world.settings.save(update_fields=["hold_amount"])
    begun = started(pay_world, fake_charger)
    session = charge_session(begun.payment, wh=40_000)  # (12.00 + 1.00) * 1.19 = 15.47
    payments_sweep()
    payment = Payment.objects.get(pk=begun.payment.pk)
    assert session.cdr.total == Decimal("15.47")
    assert (payment.status, payment.captured_amount, payment.unpaid_amount) == (
        PaymentStatus.SHORTFALL, Decimal("5.00"), Decimal("10.47"),
    )  # fmt: skip
    assert pay_world.server.money(payment.provider_ref)["captured"] == 500


# --- webhooks ------------------------------------------------------------------------------------------------


def signed(event: dict, *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> tuple[bytes, str]:
    payload = json.dumps(event).encode()
    timestamp = int(time.time()) if at is None else at
    signature = stripe.WebhookSignature._compute_signature(f"{timestamp}.{payload.decode()}", secret)
    return payload, f"t={timestamp},v1={signature}"


def event(event_id: str, kind: str, intent_ref: str) -> dict:
    return {
        "id": event_id,
        "object": "event",
        "type": kind,
        "created": int(time.time()),
        "data": {"object": {"id": intent_ref, "object": "payment_intent"}},
    }


def deliver(pay_world, body: dict, **kwargs) -> str:
    payload, signature = signed(body, **kwargs)
    return payments.payment_webhook(
        organisation_id=pay_world.organisation.pk, payload=payload, signature=signature
    )


def test_webhooks_twice_and_out_of_order_change_nothing_twice(pay_world, fake_charger, queued_tasks):
    begun = started(pay_world, fake_charger)
    ref = begun.payment.provider_ref
    charge_session(begun.payment, wh=10_000)
    payments_sweep()
    captured = Payment.objects.get(pk=begun.payment.pk)
    assert captured.status == PaymentStatus.CAPTURED
    # The hold's own event arrives after the capture's, and each twice.
    succeeded = event("evt_succeeded", "payment_intent.succeeded", ref)
    capturable = event("evt_capturable", "payment_intent.amount_capturable_updated", ref)
    assert [deliver(pay_world, e) for e in (succeeded, capturable, capturable, succeeded)] == [
        "applied", "applied", "duplicate", "duplicate",
    ]  # fmt: skip
    after = Payment.objects.get(pk=captured.pk)
    assert (after.status, after.captured_amount, after.updated_at) == (
        PaymentStatus.CAPTURED, captured.captured_amount, captured.updated_at,
    )  # fmt: skip
    assert PaymentEvent.objects.filter(provider_event_id__startswith="stripe:evt_").count() == 2
    assert len(fake_charger.received) == 1  # no second start
    assert pay_world.server.money(ref)["captured"] == 476


def test_a_webhook_of_the_hold_starts_the_charger_once(
    pay_world, fake_charger, monkeypatch, django_capture_on_commit_callbacks
):
    started_jobs = []
    monkeypatch.setattr("billing.tasks.payment_start.delay", started_jobs.append)
    with django_capture_on_commit_callbacks(execute=True):
        begun = begin(pay_world)
    assert started_jobs == [begun.payment.pk]  # the hold was authorised synchronously
    # As if the provider had answered "processing" and told us later, by webhook, that the hold is placed.
    Payment.objects.filter(pk=begun.payment.pk).update(status=PaymentStatus.PENDING, authorised_at=None)
    capturable = event("evt_hold", "payment_intent.amount_capturable_updated", begun.payment.provider_ref)
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(pay_world, capturable) == "applied"
        assert deliver(pay_world, capturable) == "duplicate"
    assert started_jobs == [begun.payment.pk, begun.payment.pk]
    assert Payment.objects.get(pk=begun.payment.pk).status == PaymentStatus.AUTHORISED


@pytest.mark.parametrize(
    "tamper",
    ["forged", "stale", "unsigned"],
)
def test_a_forged_or_replayed_webhook_is_refused_and_recorded_nowhere(pay_world, fake_charger, tamper):
    begun = begin(pay_world)
    body = event("evt_x", "payment_intent.canceled", begun.payment.provider_ref)
    if tamper == "forged":
        payload, signature = signed(body, secret="whsec_someone_else")
    elif tamper == "stale":
        payload, signature = signed(body, at=int(time.time()) - 3600)
    else:
        payload, signature = json.dumps(body).encode(), ""
    with pytest.raises(payments.WebhookRefused):
        payments.payment_webhook(
            organisation_id=pay_world.organisation.pk, payload=payload, signature=signature
        )
    assert not PaymentEvent.objects.filter(provider_event_id__isnull=False).exists()
    assert Payment.objects.get(pk=begun.payment.pk).status == PaymentStatus.AUTHORISED


def test_the_webhook_endpoint_answers_400_to_a_forgery_and_200_to_a_duplicate(
    pay_world, fake_charger, client
):
    begun = begin(pay_world)
    url = f"/pay/webhooks/{pay_world.organisation.pk}/stripe/"
    payload, signature = signed(
        event("evt_ok", "payment_intent.amount_capturable_updated", begun.payment.provider_ref)
    )
    bad = client.post(url, payload, content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=00")
    assert bad.status_code == 400
    first = client.post(url, payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)
    again = client.post(url, payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)
    assert (first.status_code, first.content, again.status_code, again.content) == (
        200,
        b"applied",
        200,
        b"duplicate",
    )
    other_org = client.post(
        f"/pay/webhooks/{pay_world.organisation.pk + 1000}/stripe/", payload, content_type="application/json",
        HTTP_STRIPE_SIGNATURE=signature,
    )  # fmt: skip
    assert other_org.status_code == 400


# --- refunds ---------------------------------------------------------------------------------------------------


@pytest.fixture
def captured_payment(pay_world, fake_charger):
    begun = started(pay_world, fake_charger)
    charge_session(begun.payment, wh=10_000)
    payments_sweep()
    payment = Payment.objects.get(pk=begun.payment.pk)
    assert payment.status == PaymentStatus.CAPTURED
    return payment


def test_a_refund_is_a_credit_on_the_cdr_and_a_refund_at_the_provider_of_the_same_amount(
    world, pay_world, captured_payment
):
    refund = payments.payment_refund(
        payment=captured_payment, user=world.finance_a, amount=Decimal("2.38"), reason="Slow charging"
    )
    assert refund.status == RefundStatus.SUCCEEDED
    credit = CdrCredit.objects.get(pk=refund.credit_id)
    assert (credit.cdr.session_id, credit.total, refund.amount) == (
        captured_payment.session_id, Decimal("-2.38"), Decimal("2.38"),
    )  # fmt: skip
    assert pay_world.server.money(captured_payment.provider_ref)["refunded"] == 238
    captured_payment.refresh_from_db()
    assert captured_payment.refunded_amount == Decimal("2.38")
    # The rest, then nothing more.
    rest = payments.payment_refund(
        payment=captured_payment, user=world.operator_a, amount=None, reason="Goodwill"
    )
    assert rest.amount == Decimal("2.38")
    assert pay_world.server.money(captured_payment.provider_ref)["refunded"] == 476
    with pytest.raises(Conflict):
        payments.payment_refund(payment=captured_payment, user=world.operator_a, amount=None, reason="Again")


def test_a_refund_above_what_was_captured_is_refused_and_changes_nothing(world, pay_world, captured_payment):
    with pytest.raises(ValidationFailed, match=r"at most 4\.76 EUR"):
        payments.payment_refund(
            payment=captured_payment, user=world.finance_a, amount=Decimal("5.00"), reason="x"
        )
    with pytest.raises(ValidationFailed, match="reason"):
        payments.payment_refund(
            payment=captured_payment, user=world.finance_a, amount=Decimal("1.00"), reason=" "
        )
    assert not CdrCredit.objects.exists()
    assert pay_world.server.money(captured_payment.provider_ref)["refunded"] == 0


@pytest.mark.parametrize("who", ["operator_b", "host_a1"])
def test_a_refund_by_someone_without_billing_rights_on_the_organisation_is_denied(
    world, pay_world, captured_payment, who
):
    with pytest.raises(PermissionDenied):
        payments.payment_refund(payment=captured_payment, user=getattr(world, who), amount=None, reason="x")
    assert not CdrCredit.objects.exists()
    assert not PaymentRefund.objects.exists()
    assert pay_world.server.money(captured_payment.provider_ref)["refunded"] == 0


def test_a_refund_whose_answer_was_lost_is_found_not_repeated(world, pay_world, captured_payment, settings):
    settings.PAYMENT_PROVIDER_TIMEOUT_S = 1.0
    with pay_world.server.frozen():
        refund = payments.payment_refund(
            payment=captured_payment, user=world.finance_a, amount=Decimal("1.19"), reason="Lost answer"
        )
    assert refund.status == RefundStatus.PENDING
    time.sleep(0.3)  # the provider served the request when it resumed
    assert payments_sweep()["refunds"] == 1
    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert pay_world.server.money(captured_payment.provider_ref)["refunded"] == 119


# --- input -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("card_token", ["", "tok with spaces", "x" * 300])
def test_a_malformed_card_token_is_a_clear_error_and_creates_nothing(pay_world, card_token):
    with pytest.raises(ValidationFailed, match="card_token"):
        payments.payment_begin(evse=pay_world.evse, card_token=card_token)
    assert not Payment.objects.exists()


def test_payments_not_enabled_offer_nothing(pay_world):
    pay_world.settings.enabled = False
    pay_world.settings.save(update_fields=["enabled"])
    offer = payments.adhoc_offer(evse=pay_world.evse)
    assert (offer.available, offer.reason) == (False, "Card payment is not offered at this charger.")
    with pytest.raises(ValidationFailed, match="not offered"):
        payments.payment_begin(evse=pay_world.evse, card_token=pay_world.server.card_token())
    assert pay_world.server.intents() == []


# --- 3-D Secure, a worker killed mid-capture, the receipt mail ---------------------------------------------


THREE_D_SECURE = "4000002500003155"


def test_a_card_that_needs_3d_secure_waits_for_the_driver_then_starts(pay_world, fake_charger):
    begun = begin(pay_world, card=THREE_D_SECURE)
    assert begun.payment.status == PaymentStatus.PENDING
    assert begun.client_secret.startswith(begun.payment.provider_ref)
    assert payments.payment_confirm(payment=begun.payment).status == PaymentStatus.PENDING  # not yet done
    # What Stripe.js's confirmCardPayment does in the browser when the driver completes the bank's check.
    pay_world.server.authenticate(begun.payment.provider_ref, begun.client_secret, success=True)
    assert payments.payment_confirm(payment=begun.payment).status == PaymentStatus.AUTHORISED
    assert payments.payment_start_charging(payment_id=begun.payment.pk) == "accepted"


def test_an_abandoned_3d_secure_check_is_cancelled_by_the_sweep(pay_world, fake_charger):
    begun = begin(pay_world, card=THREE_D_SECURE)
    assert payments_sweep()["released"] == 0
    Payment.objects.filter(pk=begun.payment.pk).update(created_at=timezone.now() - timedelta(hours=1))
    assert payments_sweep()["released"] == 1
    payment = Payment.objects.get(pk=begun.payment.pk)
    assert payment.status == PaymentStatus.RELEASED
    assert pay_world.server.intent(payment.provider_ref)["status"] == "canceled"
    assert fake_charger.received == []


def test_a_worker_killed_after_the_capture_leaves_it_to_the_sweep_which_does_not_capture_again(
    pay_world, fake_charger
):
    begun = started(pay_world, fake_charger)
    charge_session(begun.payment, wh=10_000)
    payments.payments_bind_sessions()
    # The worker claimed the payment and the provider captured; the worker died before recording it.
    payments.payment_provider(begun.payment).capture(
        ref=begun.payment.provider_ref, amount_minor=476, idempotency_key=f"cpms-capture-{begun.payment.pk}"
    )
    Payment.objects.filter(pk=begun.payment.pk).update(status=PaymentStatus.SETTLING)
    assert payments_sweep()["settled"] == 0  # another worker may still be at it
    Payment.objects.filter(pk=begun.payment.pk).update(updated_at=timezone.now() - timedelta(minutes=6))
    assert payments_sweep()["settled"] == 1
    payment = Payment.objects.get(pk=begun.payment.pk)
    assert (payment.status, payment.captured_amount) == (PaymentStatus.CAPTURED, Decimal("4.76"))
    money = pay_world.server.money(payment.provider_ref)
    assert (money["captured"], money["released"]) == (476, 4524)


def test_the_receipt_is_mailed_once_with_its_pdf(pay_world, fake_charger, mailoutbox):
    from billing.services.receipts import payment_receipt_email

    begun = started(pay_world, fake_charger)
    charge_session(begun.payment, wh=10_000)
    payments_sweep()
    assert payment_receipt_email(payment_id=begun.payment.pk) == "sent"
    assert payment_receipt_email(payment_id=begun.payment.pk) == "already_sent"
    [mail] = mailoutbox
    assert mail.to == ["driver@example.com"]
    # In the language the driver paid in (German: begin() passes "de").
    assert "Gesamt: 4,76 EUR (inkl. 0,76 EUR MwSt.)" in mail.body
    [(name, content, mimetype)] = mail.attachments
    assert (name, mimetype, content[:5]) == (f"R-org-a-{begun.payment.pk}.pdf", "application/pdf", b"%PDF-")


def test_no_receipt_mail_without_an_address_or_before_the_capture(pay_world, fake_charger, mailoutbox):
    from billing.services.receipts import payment_receipt_email

    begun = started(pay_world, fake_charger, email="")
    assert payment_receipt_email(payment_id=begun.payment.pk) == "no_receipt"
    charge_session(begun.payment, wh=10_000)
    payments_sweep()
    assert payment_receipt_email(payment_id=begun.payment.pk) == "no_receipt"
    assert mailoutbox == []


def active_session(payment, *, wh: int, minutes: int = 30):
    """The running session of the payment's token, its register at `wh` after `minutes`, priced at its start."""
    from billing.services.tariffs import session_pricing_snapshot

    started = timezone.now() - timedelta(minutes=minutes)
    session = ChargingSessionFactory(
        station=payment.station,
        evse=payment.evse,
        id_token=payment.id_token,
        id_tag=payment.id_token.value,
        transaction_id="4242",
        started_at=started,
        meter_start_wh=1000,
        meter_last_wh=1000 + wh,
        meter_last_at=timezone.now(),
        status="active",
    )
    session_pricing_snapshot(session_id=session.pk)
    return session


def test_a_session_is_stopped_once_when_its_cost_reaches_the_hold(pay_world, fake_charger):
    pay_world.settings.hold_amount = Decimal("5.00")
    pay_world.settings.save(update_fields=["hold_amount"])
    begun = started(pay_world, fake_charger)
    session = active_session(begun.payment, wh=12_000)  # (1.00 + 3.60) * 1.19 = 5.47 >= 0.95 * 5.00
    fake_charger.received.clear()
    assert payments_sweep()["stopped"] == 1
    assert fake_charger.received == [
        ("A1-CP1", "RemoteStopTransaction", {"transactionId": int(session.transaction_id)})
    ]
    assert payments_sweep()["stopped"] == 0  # once
    assert len(fake_charger.received) == 1


def test_a_session_below_the_hold_runs_on(pay_world, fake_charger):
    pay_world.settings.hold_amount = Decimal("5.00")
    pay_world.settings.save(update_fields=["hold_amount"])
    begun = started(pay_world, fake_charger)
    active_session(begun.payment, wh=9_000)  # (1.00 + 2.70) * 1.19 = 4.40 < 0.95 * 5.00
    fake_charger.received.clear()
    assert payments_sweep()["stopped"] == 0
    assert Payment.objects.get(pk=begun.payment.pk).status == PaymentStatus.CHARGING
    assert fake_charger.received == []
