"""Finance exports carry each session's ad-hoc card payment (issue 18): payment_status, payment_hold,
payment_captured, payment_refunded, payment_unpaid on the sessions rows and the CDR rows (empty on credit
rows and for sessions paid otherwise), read in the same query as the rest of the row."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.enums import PaymentStatus
from billing.models import Payment
from billing.services import payments
from billing.tasks import payments_sweep
from tests.billing.test_exports import export_text
from tests.factories import ChargingSessionFactory
from tests.payments.test_payment_flows import charge_session, started

PAYMENT_COLUMNS = ["payment_status", "payment_hold", "payment_captured", "payment_refunded", "payment_unpaid"]


def period() -> dict:
    today = timezone.now().date()
    return {"period_from": today - timedelta(days=2), "period_to": today + timedelta(days=2)}


def rows(kind: str, user) -> list[dict]:
    return list(csv.DictReader(io.StringIO(export_text(kind, user, **period()))))


def paid_and_refunded(world, pay_world, fake_charger) -> Payment:
    begun = started(pay_world, fake_charger)
    charge_session(begun.payment, wh=10_000)  # 4.76 EUR
    payments_sweep()
    payment = Payment.objects.get(pk=begun.payment.pk)
    payments.payment_refund(payment=payment, user=world.finance_a, amount=Decimal("1.19"), reason="Slow")
    payment.refresh_from_db()
    return payment


def test_the_exports_carry_the_payment_columns_with_exact_values(world, pay_world, fake_charger):
    payment = paid_and_refunded(world, pay_world, fake_charger)
    other = ChargingSessionFactory(station=world.station_a1, started_at=timezone.now() - timedelta(minutes=5))

    sessions = {int(r["session_id"]): r for r in rows("sessions", world.finance_a)}
    assert list(sessions[payment.session_id])[-5:] == PAYMENT_COLUMNS
    assert [sessions[payment.session_id][c] for c in PAYMENT_COLUMNS] == [
        "captured", "50.00", "4.76", "1.19", "0.00",
    ]  # fmt: skip
    assert [sessions[other.pk][c] for c in PAYMENT_COLUMNS] == ["", "", "", "", ""]

    cdrs = rows("cdrs", world.finance_a)
    by_type = {r["record_type"]: r for r in cdrs}
    assert [by_type["cdr"][c] for c in PAYMENT_COLUMNS] == ["captured", "50.00", "4.76", "1.19", "0.00"]
    # The refund is its own credit row: its money is in `total`, not counted again in the payment columns.
    assert (by_type["credit"]["total"], by_type["credit"]["credit_reason"]) == ("-1.19", "Refund: Slow")
    assert [by_type["credit"][c] for c in PAYMENT_COLUMNS] == ["", "", "", "", ""]


def test_a_shortfall_shows_what_is_left_unpaid(world, pay_world, fake_charger):
    pay_world.settings.hold_amount = Decimal("5.00")
    pay_world.settings.save(update_fields=["hold_amount"])
    begun = started(pay_world, fake_charger)
    charge_session(begun.payment, wh=40_000)  # 15.47 EUR
    payments_sweep()
    assert Payment.objects.get(pk=begun.payment.pk).status == PaymentStatus.SHORTFALL
    (row,) = rows("sessions", world.finance_a)
    assert [row[c] for c in PAYMENT_COLUMNS] == ["shortfall", "5.00", "5.00", "0.00", "10.47"]


def test_a_session_still_charging_shows_its_hold_before_it_has_a_cdr(world, pay_world, fake_charger):
    begun = started(pay_world, fake_charger)
    session = ChargingSessionFactory(
        station=pay_world.station,
        evse=pay_world.evse,
        id_token=begun.payment.id_token,
        started_at=timezone.now() - timedelta(minutes=3),
        stopped_at=None,
        status="active",
    )
    payments.payments_bind_sessions()
    (row,) = rows("sessions", world.finance_a)
    assert (row["session_id"], row["billing_status"], row["cdr_id"]) == (str(session.pk), "active", "")
    assert [row[c] for c in PAYMENT_COLUMNS] == ["charging", "50.00", "0.00", "0.00", "0.00"]


def test_the_payment_columns_cost_no_query_per_row(world, pay_world, fake_charger):
    paid_and_refunded(world, pay_world, fake_charger)
    with CaptureQueriesContext(connection) as one:
        rows("cdrs", world.finance_a)
        rows("sessions", world.finance_a)
    for _ in range(2):
        paid_and_refunded(world, pay_world, fake_charger)
    with CaptureQueriesContext(connection) as three:
        cdrs = rows("cdrs", world.finance_a)
        sessions = rows("sessions", world.finance_a)
    assert (len(cdrs), len(sessions)) == (6, 3)  # 3 CDRs and 3 refund credits
    assert len(three.captured_queries) == len(one.captured_queries)


def test_another_organisation_exports_none_of_the_payments(world, pay_world, fake_charger):
    paid_and_refunded(world, pay_world, fake_charger)
    assert rows("sessions", world.operator_b) == []
    assert rows("cdrs", world.operator_b) == []
