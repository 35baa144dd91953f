"""Portal pages of ad-hoc card payments (issue 18, the operator's side): the list with its filters (the
"Unpaid" filter is what is owed: failed captures and sessions above the hold) and a payment's page with its
trail, its refunds and the refund form.

Access is `payment_list` / `payment_access` (scoped by station, like sessions); a refund needs the billing
capability on the organisation (operator admins, finance), checked again by `payment_refund`.
"""

from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render

from accounts.enums import Capability
from billing.selectors import (
    PAYMENT_STATUS_FILTER_CHOICES,
    payment_access,
    payment_event_list,
    payment_list,
)
from billing.services.payments import payment_refund
from billing.services.tariffs import station_time_zone
from cpms.errors import DomainError
from cpms.portal.base import PortalRequest, page_of, portal_view
from cpms.portal.finance import money
from stations.scope import user_can


class PaymentFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *PAYMENT_STATUS_FILTER_CHOICES])
    station = forms.CharField(required=False, max_length=48)
    created_after = forms.DateField(required=False, label="Created on or after")
    created_before = forms.DateField(required=False, label="Created before")


class RefundForm(forms.Form):
    amount = forms.CharField(
        required=False,
        max_length=20,
        help_text="Tax included. Empty: all that is left to refund.",
    )
    reason = forms.CharField(max_length=500, help_text="Kept with the credit on the CDR.")

    def clean_amount(self) -> Decimal | None:
        text = self.cleaned_data["amount"].strip()
        if not text:
            return None
        try:
            # As written ("1.50" stays 1.50): the service refuses more decimals than the currency has.
            value = Decimal(text)
        except InvalidOperation:
            raise forms.ValidationError("Enter an amount such as 2.50.") from None
        if not value.is_finite():
            raise forms.ValidationError("Enter an amount such as 2.50.")
        return value


def _midnight_utc(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time.min, tzinfo=UTC)


def _amounts(payment) -> dict[str, str]:
    return {
        name: money(getattr(payment, f"{name}_amount"), payment.currency)
        for name in ("hold", "captured", "refunded", "unpaid")
    }


@portal_view
def payment_list_page(request: PortalRequest):
    form = PaymentFilterForm(request.GET or None)
    filters: dict = {}
    if form.is_valid():
        data = form.cleaned_data
        filters = {
            "status": data["status"] or None,
            "station": data["station"] or None,
            "created_after": _midnight_utc(data["created_after"]),
            "created_before": _midnight_utc(data["created_before"]),
        }
    page = page_of(request, payment_list(user=request.user, filters=filters))
    return render(
        request,
        "billing/payment_list.html",
        {
            "form": form,
            "page": page,
            "rows": [
                {"payment": p, "amounts": _amounts(p), "zone": station_time_zone(p.station)}
                for p in page.object_list
            ],
        },
    )


@portal_view
def payment_detail_page(request: PortalRequest, pk: int):
    user = request.user
    payment = payment_access(user=user, pk=pk)
    can_refund = user_can(
        user=user,
        capability=Capability.BILLING,
        organisation_id=payment.organisation_id,
        site_id=payment.station.site_id,
    )
    form = RefundForm()
    status = 200
    if request.method == "POST":
        payment = payment_access(user=user, pk=pk, capability=Capability.BILLING)
        form = RefundForm(request.POST)
        status = 400
        if form.is_valid():
            try:
                refund = payment_refund(
                    payment=payment,
                    user=user,
                    amount=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"],
                )
            except DomainError as exc:
                if exc.status_code not in (400, 409):
                    raise
                form.add_error(None, exc.message)
                status = exc.status_code
            else:
                text = f"Refund of {money(refund.amount, payment.currency)}: {refund.get_status_display()}."
                if refund.error:
                    text += f" {refund.error}"
                messages.success(request, text)
                return redirect("portal:payment-detail", pk=payment.pk)
    return render(
        request,
        "billing/payment_detail.html",
        {
            "payment": payment,
            "zone": station_time_zone(payment.station),
            "amounts": _amounts(payment),
            "events": [
                {"event": e, "amount": money(e.amount, payment.currency) if e.amount is not None else ""}
                for e in payment_event_list(payment=payment)
            ],
            "refunds": [
                {"refund": r, "amount": money(r.amount, payment.currency)} for r in payment.refunds.all()
            ],
            "can_refund": can_refund,
            "form": form,
        },
        status=status,
    )
