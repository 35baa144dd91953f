"""The driver's receipt of an ad-hoc payment: one `Receipt` (billing.types) drawn from the CDR and the payment,
shown as a page, a PDF (billing/pdf.py) and, when the driver gave an email, a mail with the PDF attached.

A receipt exists once the payment is settled with money taken (captured or shortfall): before that there is
no final amount to show.
"""

from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMessage
from django.utils import formats, translation
from django.utils.translation import gettext, gettext_lazy

from billing.enums import PaymentStatus
from billing.models import CdrLine, ChargeDetailRecord, Payment
from billing.money import round_money
from billing.services import payments
from billing.types import Receipt, ReceiptLine
from stations.selectors import evse_label

RECEIPT_STATUSES = frozenset({PaymentStatus.CAPTURED, PaymentStatus.SHORTFALL})

_DIMENSION_NAMES = {
    "ENERGY": gettext_lazy("Energy"),
    "TIME": gettext_lazy("Charging time"),
    "PARKING_TIME": gettext_lazy("Idle time"),
    "FLAT": gettext_lazy("Session fee"),
    "PARKING_CAP_ADJUSTMENT": gettext_lazy("Idle fee cap"),
    "MIN_PRICE_ADJUSTMENT": gettext_lazy("Minimum price"),
    "MAX_PRICE_ADJUSTMENT": gettext_lazy("Maximum price"),
}


def _number(value: Decimal) -> str:
    """`value` with its digits as given, in the active language's format (de "10,000", en "10.000")."""
    return formats.number_format(value, use_l10n=True)


def _line_label(line: CdrLine, currency: str) -> str:
    """E.g. "Energy 10.000 kWh x 0.30 EUR/kWh", in the active language (de "Energie 10,000 kWh x 0,30 EUR/kWh")."""
    name = str(_DIMENSION_NAMES.get(line.dimension, line.dimension.title()))
    if line.dimension in {"ENERGY", "TIME", "PARKING_TIME"}:
        places = 3 if line.unit == "kWh" else 2
        quantity = line.quantity.quantize(Decimal(1).scaleb(-places))
        unit_price = line.unit_price.normalize()
        exponent = unit_price.as_tuple().exponent
        if isinstance(exponent, int) and -exponent < 2:
            unit_price = unit_price.quantize(Decimal("0.01"))
        return f"{name} {_number(quantity)} {line.unit} x {_number(unit_price)} {currency}/{line.unit}"
    return name


def _kwh(wh: int | None) -> Decimal | None:
    return None if wh is None else (Decimal(wh) / 1000).quantize(Decimal("0.001"))


def payment_receipt(*, payment: Payment) -> Receipt | None:
    """The receipt of a settled payment, or None when there is none (not settled, or nothing was taken).
    Its line labels are in the active language: the caller activates the payment's (`payment.language`)."""
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
    # The mail and its PDF in the language the driver paid in (a worker has no request to take it from).
    with translation.override(payment.language or settings.LANGUAGE_CODE):
        receipt = payment_receipt(payment=payment)
        if receipt is None or not payment.email:
            return "no_receipt"
        if not payments.payment_receipt_sent(payment_id=payment.pk):
            return "already_sent"
        money = {
            name: f"{_number(getattr(receipt, name))} {receipt.currency}"
            for name in ("total", "tax", "captured")
        }
        body = "".join(
            (
                gettext("Thank you for charging with %(operator)s.") % {"operator": receipt.operator_name},
                "\n\n",
                gettext("%(evse)s at %(site)s") % {"evse": receipt.evse_label, "site": receipt.site_name},
                "\n",
                f"{receipt.started_at_local:%Y-%m-%d %H:%M} - {receipt.stopped_at_local:%H:%M}"
                f" ({receipt.time_zone})\n",
                gettext("Energy: %(energy)s kWh") % {"energy": _number(receipt.energy_kwh)},
                "\n",
                gettext("Total: %(total)s (VAT %(tax)s included)")
                % {"total": money["total"], "tax": money["tax"]},
                "\n",
                gettext("Paid by card: %(amount)s") % {"amount": money["captured"]},
                "\n\n",
                gettext("Your receipt is attached."),
                "\n",
            )
        )
        message = EmailMessage(
            subject=gettext("Your charging receipt %(number)s") % {"number": receipt.number},
            body=body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[payment.email],
        )
        message.attach(f"{receipt.number}.pdf", receipt_pdf(receipt), "application/pdf")
    message.send()
    return "sent"
