"""The driver's receipt of an ad-hoc payment: one `Receipt` (billing.types) drawn from the CDR and the payment,
shown as a page, a PDF (billing/pdf.py) and, when the driver gave an email, a mail with the PDF attached.

A receipt exists once the payment is settled with money taken (captured or shortfall): before that there is
no final amount to show.
"""

from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMessage

from billing.enums import PaymentStatus
from billing.models import CdrLine, ChargeDetailRecord, Payment
from billing.money import round_money
from billing.services import payments
from billing.types import Receipt, ReceiptLine
from stations.selectors import evse_label

RECEIPT_STATUSES = frozenset({PaymentStatus.CAPTURED, PaymentStatus.SHORTFALL})

_DIMENSION_NAMES = {
    "ENERGY": "Energy",
    "TIME": "Charging time",
    "PARKING_TIME": "Idle time",
    "FLAT": "Session fee",
    "PARKING_CAP_ADJUSTMENT": "Idle fee cap",
    "MIN_PRICE_ADJUSTMENT": "Minimum price",
    "MAX_PRICE_ADJUSTMENT": "Maximum price",
}


def _line_label(line: CdrLine, currency: str) -> str:
    name = _DIMENSION_NAMES.get(line.dimension, line.dimension.title())
    if line.dimension in {"ENERGY", "TIME", "PARKING_TIME"}:
        places = 3 if line.unit == "kWh" else 2
        quantity = line.quantity.quantize(Decimal(1).scaleb(-places))
        unit_price = line.unit_price.normalize()
        exponent = unit_price.as_tuple().exponent
        if isinstance(exponent, int) and -exponent < 2:
            unit_price = unit_price.quantize(Decimal("0.01"))
        return f"{name} {quantity:f} {line.unit} x {unit_price:f} {currency}/{line.unit}"
    return name


def _kwh(wh: int | None) -> Decimal | None:
    return None if wh is None else (Decimal(wh) / 1000).quantize(Decimal("0.001"))


def payment_receipt(*, payment: Payment) -> Receipt | None:
    """The receipt of a settled payment, or None when there is none (not settled, or nothing was taken)."""
    if payment.status not in RECEIPT_STATUSES or payment.session_id is None:
        return None
    cdr = ChargeDetailRecord.objects.filter(session_id=payment.session_id).first()
    if cdr is None:
        return None
    session = payment.session
    organisation = payment.organisation
    row = payments.payment_settings_get(organisation=organisation)
    site = payment.station.site
    zone = ZoneInfo(cdr.time_zone)

    def money(amount: Decimal) -> Decimal:
        # Stored with 4 decimals; shown with the currency's own (2.00, not 2.0000).
        return round_money(amount, cdr.currency)

    address = (
        ", ".join(part for part in (site.address, f"{site.postal_code} {site.city}".strip()) if part)
        if site
        else ""
    )
    return Receipt(
        number=f"R-{organisation.slug}-{payment.pk}",
        operator_name=row.operator_legal_name or organisation.name,
        operator_address=row.operator_address,
        operator_vat_id=row.operator_vat_id,
        site_name=site.name if site else "",
        site_address=address,
        evse_label=evse_label(payment.evse),
        time_zone=cdr.time_zone,
        started_at_local=cdr.started_at.astimezone(zone),
        stopped_at_local=cdr.stopped_at.astimezone(zone),
        meter_start_kwh=_kwh(session.meter_start_wh if session else None),
        meter_stop_kwh=_kwh(session.meter_stop_wh if session else None),
        energy_kwh=(Decimal(cdr.energy_wh) / 1000).quantize(Decimal("0.001")),
        currency=cdr.currency,
        lines=tuple(
            ReceiptLine(label=_line_label(line, cdr.currency), amount=money(line.amount))
            for line in cdr.lines.all()
        ),
        subtotal=money(cdr.subtotal),
        tax_rate=cdr.tax_rate,
        tax=money(cdr.tax),
        total=money(cdr.total),
        captured=money(payment.captured_amount),
        refunded=money(payment.refunded_amount),
        card_hint=payment.card_hint,
        tariff_label=cdr.tariff_label,
    )


def payment_receipt_email(*, payment_id: int) -> str:
    """Mail the receipt with its PDF to the address the driver gave, once."""
    from billing.pdf import receipt_pdf

    payment = Payment.objects.select_related("organisation", "station__site", "evse", "session").get(
        pk=payment_id
    )
    receipt = payment_receipt(payment=payment)
    if receipt is None or not payment.email:
        return "no_receipt"
    if not payments.payment_receipt_sent(payment_id=payment.pk):
        return "already_sent"
    body = (
        f"Thank you for charging with {receipt.operator_name}.\n\n"
        f"{receipt.evse_label} at {receipt.site_name}\n"
        f"{receipt.started_at_local:%Y-%m-%d %H:%M} - {receipt.stopped_at_local:%H:%M} ({receipt.time_zone})\n"
        f"Energy: {receipt.energy_kwh} kWh\n"
        f"Total: {receipt.total} {receipt.currency} (VAT {receipt.tax} {receipt.currency} included)\n"
        f"Paid by card: {receipt.captured} {receipt.currency}\n\n"
        "Your receipt is attached.\n"
    )
    message = EmailMessage(
        subject=f"Your charging receipt {receipt.number}",
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[payment.email],
    )
    message.attach(f"{receipt.number}.pdf", receipt_pdf(receipt), "application/pdf")
    message.send()
    return "sent"
