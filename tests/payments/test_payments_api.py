"""The operator's side of ad-hoc payments over the API (issue 18): payments listed and shown in scope, the
unpaid list, refunds as CDR credits through the provider, the session's payment, the payment settings with
write-only secrets. Against the real localstripe process (tests/payments/conftest.py)."""

from decimal import Decimal

import pytest

from billing.enums import PaymentStatus
from billing.models import CdrCredit, Payment, PaymentRefund, PaymentSettings
from billing.providers.keys import secret_decrypt
from billing.tasks import payments_sweep
from tests.payments.localstripe import PUBLISHABLE_KEY, SECRET_KEY
from tests.payments.test_payment_flows import charge_session, started


@pytest.fixture
def captured(pay_world, fake_charger) -> Payment:
    begun = started(pay_world, fake_charger)
    charge_session(begun.payment, wh=10_000)  # 4.76 EUR
    payments_sweep()
    payment = Payment.objects.get(pk=begun.payment.pk)
    assert payment.status == PaymentStatus.CAPTURED
    return payment


def test_the_list_and_the_detail_show_the_money_and_never_the_secret(world, pay_world, captured, api):
    body = api(world.operator_a).get("/api/v1/payments/").json()
    assert body["count"] == 1
    (row,) = body["results"]
    assert row == {
        "id": captured.pk,
        "organisation": world.org_a.pk,
        "station": "A1-CP1",
        "site": world.site_a1.pk,
        "evse_id": 1,
        "session": captured.session_id,
        "status": "captured",
        "currency": "EUR",
        "hold_amount": "50.0000",
        "captured_amount": "4.7600",
        "refunded_amount": "0.0000",
        "unpaid_amount": "0.0000",
        "card_hint": captured.card_hint,
        "failure": "",
        "capture_attempts": 0,
        "next_attempt_at": None,
        "created_at": row["created_at"],
        "authorised_at": row["authorised_at"],
        "settled_at": row["settled_at"],
        "refunds": [],
    }
    assert row["authorised_at"] is not None and row["settled_at"] is not None
    detail = api(world.operator_a).get(f"/api/v1/payments/{captured.pk}/")
    assert detail.status_code == 200
    assert detail.json() == row
    assert "access_key" not in detail.content.decode()
    assert captured.access_key_hash not in detail.content.decode()


@pytest.mark.parametrize(("who", "count"), [("finance_a", 1), ("host_a1", 1), ("operator_b", 0)])
def test_the_list_is_scoped(world, pay_world, captured, api, who, count):
    assert api(getattr(world, who)).get("/api/v1/payments/").json()["count"] == count


def test_a_site_host_sees_no_payment_at_another_site(world, pay_world, captured, api):
    Payment.objects.filter(pk=captured.pk).update(station=world.station_a2)
    assert api(world.host_a1).get("/api/v1/payments/").json()["count"] == 0
    assert api(world.host_a1).get(f"/api/v1/payments/{captured.pk}/").status_code == 404
    assert api(world.operator_a).get("/api/v1/payments/").json()["count"] == 1


def test_another_organisation_gets_404_on_the_detail(world, pay_world, captured, api):
    response = api(world.operator_b).get(f"/api/v1/payments/{captured.pk}/")
    assert (response.status_code, response.json()) == (404, {"detail": f"Payment {captured.pk} not found."})


def test_the_unpaid_filter_lists_unpaid_and_shortfall_only(world, pay_world, captured, api):
    client = api(world.operator_a)
    assert client.get("/api/v1/payments/?status=unpaid").json()["count"] == 0
    assert client.get("/api/v1/payments/?status=captured").json()["count"] == 1
    Payment.objects.filter(pk=captured.pk).update(status=PaymentStatus.SHORTFALL)
    assert [p["id"] for p in client.get("/api/v1/payments/?status=unpaid").json()["results"]] == [captured.pk]
    Payment.objects.filter(pk=captured.pk).update(status=PaymentStatus.UNPAID)
    assert client.get("/api/v1/payments/?status=unpaid").json()["count"] == 1
    assert client.get("/api/v1/payments/?status=captured").json()["count"] == 0
    assert client.get(f"/api/v1/payments/?site={world.site_a2.pk}").json()["count"] == 0
    assert client.get("/api/v1/payments/?station=A1-CP1").json()["count"] == 1
    bad = client.get("/api/v1/payments/?status=owed")
    assert bad.status_code == 400
    assert "status" in bad.json()["detail"]


def test_a_refund_by_finance_is_a_credit_and_a_provider_refund_of_the_same_amount(
    world, pay_world, captured, api
):
    response = api(world.finance_a).post(
        f"/api/v1/payments/{captured.pk}/refund/",
        {"amount": "2.38", "reason": "Slow charging"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    credit = CdrCredit.objects.get()
    assert body == {
        "id": PaymentRefund.objects.get().pk,
        "payment": captured.pk,
        "credit": credit.pk,
        "amount": "2.3800",
        "status": "succeeded",
        "error": "",
        "created_by": "finance_a",
        "created_at": body["created_at"],
    }
    assert (credit.total, credit.reason, credit.cdr.session_id) == (
        Decimal("-2.38"), "Refund: Slow charging", captured.session_id,
    )  # fmt: skip
    assert pay_world.server.money(captured.provider_ref)["refunded"] == 238
    detail = api(world.operator_a).get(f"/api/v1/payments/{captured.pk}/").json()
    assert (detail["refunded_amount"], [r["credit"] for r in detail["refunds"]]) == ("2.3800", [credit.pk])
    # The rest (no amount), then nothing is left: 409.
    rest = api(world.operator_a).post(
        f"/api/v1/payments/{captured.pk}/refund/", {"reason": "Goodwill"}, format="json"
    )
    assert (rest.status_code, rest.json()["amount"]) == (201, "2.3800")
    again = api(world.operator_a).post(
        f"/api/v1/payments/{captured.pk}/refund/", {"reason": "Again"}, format="json"
    )
    assert (again.status_code, again.json()) == (
        409,
        {"detail": "Nothing is left to refund on this payment."},
    )
    assert pay_world.server.money(captured.provider_ref)["refunded"] == 476


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"amount": "5.00", "reason": "Too much"}, {"detail": "amount: at most 4.76 EUR can be refunded"}),
        (
            {"amount": "1.001", "reason": "Sub-cent"},
            {"detail": "amount: a positive amount with at most 2 decimals"},
        ),
        (
            {"amount": "-1", "reason": "Negative"},
            {"detail": "amount: a positive amount with at most 2 decimals"},
        ),
        ({"amount": "abc", "reason": "Text"}, {"amount": ["A valid number is required."]}),
        ({"amount": "1.00"}, {"reason": ["This field is required."]}),
        ({"amount": "1.00", "reason": " "}, {"reason": ["This field may not be blank."]}),
        (
            {"amount": "1.00", "reason": "x", "credit": 1},
            {"credit": ["Unknown or read-only field; it cannot be set."]},
        ),
    ],
)
def test_a_bad_refund_is_400_with_the_reason_and_changes_nothing(
    world, pay_world, captured, api, body, message
):
    response = api(world.finance_a).post(f"/api/v1/payments/{captured.pk}/refund/", body, format="json")
    assert (response.status_code, response.json()) == (400, message)
    assert not CdrCredit.objects.exists()
    assert not PaymentRefund.objects.exists()
    assert pay_world.server.money(captured.provider_ref)["refunded"] == 0


@pytest.mark.parametrize(("who", "code"), [("operator_b", 404), ("host_a1", 403)])
def test_a_refund_by_someone_without_billing_rights_is_denied_and_changes_nothing(
    world, pay_world, captured, api, who, code
):
    response = api(getattr(world, who)).post(
        f"/api/v1/payments/{captured.pk}/refund/", {"amount": "1.00", "reason": "x"}, format="json"
    )
    assert response.status_code == code
    assert not CdrCredit.objects.exists()
    assert not PaymentRefund.objects.exists()
    captured.refresh_from_db()
    assert captured.refunded_amount == 0
    assert pay_world.server.money(captured.provider_ref)["refunded"] == 0


def test_a_payment_not_captured_cannot_be_refunded(world, pay_world, fake_charger, api):
    begun = started(pay_world, fake_charger)
    response = api(world.finance_a).post(
        f"/api/v1/payments/{begun.payment.pk}/refund/", {"reason": "x"}, format="json"
    )
    assert (response.status_code, response.json()) == (
        409,
        {"detail": "Only a captured payment can be refunded."},
    )


def test_the_session_shows_its_payment(world, pay_world, captured, api):
    client = api(world.operator_a)
    body = client.get(f"/api/v1/sessions/{captured.session_id}/").json()
    assert body["payment"] == {
        "id": captured.pk,
        "status": "captured",
        "currency": "EUR",
        "hold_amount": "50.0000",
        "captured_amount": "4.7600",
        "refunded_amount": "0.0000",
        "unpaid_amount": "0.0000",
    }
    listed = {s["id"]: s["payment"] for s in client.get("/api/v1/sessions/").json()["results"]}
    assert listed[captured.session_id]["id"] == captured.pk


# --- payment settings --------------------------------------------------------------------------------------


def settings_url(world) -> str:
    return f"/api/v1/organisations/{world.org_a.pk}/payment-settings/"


def test_the_settings_show_no_secret(world, pay_world, api):
    response = api(world.operator_a).get(settings_url(world))
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "organisation": world.org_a.pk,
        "enabled": True,
        "provider": "stripe",
        "publishable_key": PUBLISHABLE_KEY,
        "secret_key_set": True,
        "webhook_secret_set": True,
        "api_base": pay_world.server.url,
        "js_url": f"{pay_world.server.url}/js.stripe.com/v3/",
        "hold_amount": "50.0000",
        "start_timeout_s": 120,
        "operator_legal_name": "Org A Charging GmbH",
        "operator_address": "Hauptstr. 1\n10115 Berlin",
        "operator_vat_id": "DE123456789",
        "adhoc_group_id": pay_world.settings.adhoc_group_id,
        "webhook_url": f"http://testserver/pay/webhooks/{world.org_a.pk}/stripe/",
        "updated_at": body["updated_at"],
    }
    text = response.content.decode()
    assert SECRET_KEY not in text and "whsec_" not in text
    assert pay_world.settings.secret_key_encrypted not in text


def test_the_settings_are_set_and_a_missing_secret_keeps_the_stored_one(world, pay_world, api):
    body = {
        "enabled": True,
        "publishable_key": "pk_test_new",
        "api_base": pay_world.server.url,
        "hold_amount": "30.00",
        "start_timeout_s": 300,
        "operator_legal_name": "Org A New GmbH",
    }
    response = api(world.operator_a).put(settings_url(world), body, format="json")
    assert response.status_code == 200, response.content
    out = response.json()
    assert (out["hold_amount"], out["start_timeout_s"], out["secret_key_set"], out["js_url"]) == (
        "30.0000", 300, True, "",
    )  # fmt: skip
    assert "secret_key" not in out and "webhook_secret" not in out
    row = PaymentSettings.objects.get(organisation=world.org_a)
    assert (row.publishable_key, row.hold_amount, secret_decrypt(row.secret_key_encrypted)) == (
        "pk_test_new", Decimal("30.00"), SECRET_KEY,
    )  # fmt: skip
    replaced = api(world.operator_a).put(
        settings_url(world), {**body, "secret_key": "sk_test_2"}, format="json"
    )
    assert replaced.status_code == 200
    row.refresh_from_db()
    assert secret_decrypt(row.secret_key_encrypted) == "sk_test_2"
    assert "sk_test_2" not in replaced.content.decode()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hold_amount": "0"}, "hold_amount: a positive amount with at most 2 decimals"),
        ({"start_timeout_s": 5}, "start_timeout_s: between 30 and 3600 seconds"),
        ({"publishable_key": ""}, "publishable_key: required to enable payments"),
    ],
)
def test_bad_settings_are_400_and_change_nothing(world, pay_world, api, change, message):
    body = {"enabled": True, "publishable_key": "pk_x", "hold_amount": "20", "start_timeout_s": 60, **change}
    response = api(world.operator_a).put(settings_url(world), body, format="json")
    assert (response.status_code, response.json()) == (400, {"detail": message})
    row = PaymentSettings.objects.get(organisation=world.org_a)
    assert (row.publishable_key, row.hold_amount) == (PUBLISHABLE_KEY, Decimal("50.00"))


@pytest.mark.parametrize(("who", "code"), [("finance_a", 403), ("host_a1", 403), ("operator_b", 404)])
def test_the_settings_are_refused_to_anyone_but_an_operator_admin(world, pay_world, api, who, code):
    client = api(getattr(world, who))
    assert client.get(settings_url(world)).status_code == code
    response = client.put(
        settings_url(world),
        {"enabled": False, "hold_amount": "1", "start_timeout_s": 60, "secret_key": "sk_evil"},
        format="json",
    )
    assert response.status_code == code
    row = PaymentSettings.objects.get(organisation=world.org_a)
    assert (row.enabled, secret_decrypt(row.secret_key_encrypted)) == (True, SECRET_KEY)
