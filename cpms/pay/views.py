"""The drivers' public pages (cpms/pay/__init__.py). Each view parses the request, calls one service or
selector of billing/services/payments.py, and renders. Rate-limited per client address
(PAYMENT_PUBLIC_RATE_PER_MIN); the pages of a payment answer only to its secret, and a wrong secret gets the
same 404 as a payment that does not exist."""

import contextlib
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from functools import wraps

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import formats, timezone, translation
from django.utils.dates import WEEKDAYS_ABBR
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from accounts.backends import client_ip
from billing.enums import PaymentStatus
from billing.models import Payment, TariffVersion
from billing.money import minor_unit
from billing.providers import IntentState, ProviderError, WebhookRefused, provider_for
from billing.services import payments
from billing.services.cdrs import session_cost_so_far
from billing.services.receipts import payment_receipt
from cpms.errors import Conflict, ValidationFailed
from cpms.throttling import rate_exceeded
from sessions.enums import SessionStatus
from sessions.models import ChargingSession
from stations.enums import ConnectorStatus
from stations.models import Evse
from stations.selectors import site_language

FREE_STATUSES = frozenset({ConnectorStatus.AVAILABLE, ConnectorStatus.PREPARING, ConnectorStatus.OCCUPIED})
# Django's own catalog translates the abbreviations (de "Mo", fr "lun.", nl "ma").
DAY_NAMES = {
    "MONDAY": WEEKDAYS_ABBR[0], "TUESDAY": WEEKDAYS_ABBR[1], "WEDNESDAY": WEEKDAYS_ABBR[2],
    "THURSDAY": WEEKDAYS_ABBR[3], "FRIDAY": WEEKDAYS_ABBR[4], "SATURDAY": WEEKDAYS_ABBR[5],
    "SUNDAY": WEEKDAYS_ABBR[6],
}  # fmt: skip
# An OCPI restriction as the driver reads it: its key -> (the phrase, the unit's divisor).
RESTRICTION_PHRASES = {
    "min_kwh": (gettext_lazy("from %(value)s kWh"), 1),
    "max_kwh": (gettext_lazy("up to %(value)s kWh"), 1),
    "min_power": (gettext_lazy("from %(value)s kW"), 1),
    "max_power": (gettext_lazy("up to %(value)s kW"), 1),
    "min_duration": (gettext_lazy("after %(value)s min"), 60),
    "max_duration": (gettext_lazy("for the first %(value)s min"), 60),
}
LIVE_STATUSES = (PaymentStatus.AUTHORISED, PaymentStatus.STARTING, PaymentStatus.CHARGING)


def public_page(view: Callable) -> Callable:
    """Rate limit per client address; the page in the language of the site's country; never cached (a
    payment's pages carry its secret)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        wait = rate_exceeded(
            f"pay:{client_ip(request) or 'unknown'}", limit=settings.PAYMENT_PUBLIC_RATE_PER_MIN, window_s=60
        )
        if wait is not None:
            response = HttpResponse(
                gettext("Too many requests; try again in a minute."), status=429, content_type="text/plain"
            )
            response["Retry-After"] = str(int(wait))
            return response
        response = view(request, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        # The secret in a payment page's URL never leaves for another origin (the provider's script); same-origin
        # rather than no-referrer, which makes browsers send `Origin: null` on our own forms (CSRF refuses it).
        response["Referrer-Policy"] = "same-origin"
        return response

    return wrapper


def _failure_text(failure: str) -> str:
    """A payment's stored failure in the active language. The reasons billing/services/payments.py stores are
    written in the language active where they arise (a worker's is the default's, English), so one that is a
    message of the catalog is translated here; a provider's own text (e.g. the card's decline) is shown as
    given. `gettext("")` would be the catalog's header, hence the guard."""
    return gettext(failure) if failure else ""


def _money(amount: Decimal | None, currency: str, *, places: int | None = None) -> str:
    if amount is None:
        return ""
    decimals = minor_unit(currency) if places is None else places
    return f"{formats.number_format(amount, decimals, use_l10n=True)} {currency}"


def _unit_price(price: Decimal, tax_rate: Decimal, currency: str) -> str:
    """A unit price with VAT, with as many decimals as it needs (at least the currency's, at most 4)."""
    gross = price * (1 + tax_rate)
    places = minor_unit(currency)
    while places < 4 and gross != round(gross, places):
        places += 1
    return _money(round(gross, places), currency, places=places)


def _restriction_text(restrictions: dict) -> str:
    parts = []
    days = restrictions.get("day_of_week") or []
    if days:
        parts.append(", ".join(str(DAY_NAMES.get(day, day)) for day in days))
    if restrictions.get("start_time") or restrictions.get("end_time"):
        parts.append(f"{restrictions.get('start_time', '00:00')}-{restrictions.get('end_time', '24:00')}")
    if restrictions.get("start_date") or restrictions.get("end_date"):
        parts.append(f"{restrictions.get('start_date', '')}-{restrictions.get('end_date', '')}")
    for key, (phrase, divisor) in RESTRICTION_PHRASES.items():
        value = restrictions.get(key)
        if value is not None:
            # Plain digits without trailing zeros (normalize() alone would give 6E+2 for 600).
            shown = Decimal(f"{(Decimal(str(value)) / divisor).normalize():f}")
            parts.append(str(phrase) % {"value": formats.number_format(shown, use_l10n=True)})
    return "; ".join(parts)


def price_rows(version: TariffVersion) -> list[dict[str, str]]:
    """The tariff as the driver reads it before paying: each price with VAT, and when it applies."""
    currency, tax_rate = version.currency, version.tax_rate
    rows: list[dict[str, str]] = []
    for element in version.elements:
        when = _restriction_text(element.get("restrictions") or {})
        for component in element.get("price_components", []):
            price = Decimal(str(component["price"]))
            kind = component["type"]
            unit_price = _unit_price(price, tax_rate, currency)
            if kind == "ENERGY":
                label, value = gettext("Energy"), gettext("%(price)s per kWh") % {"price": unit_price}
            elif kind == "TIME":
                label = gettext("Charging time")
                value = gettext("%(price)s per hour") % {"price": unit_price}
            elif kind == "PARKING_TIME":
                grace = version.parking_grace_s // 60
                label = (
                    gettext("Idle fee after %(minutes)s min without charging") % {"minutes": grace}
                    if grace
                    else gettext("Idle fee (not charging)")
                )
                value = gettext("%(price)s per hour") % {"price": unit_price}
            else:
                label, value = gettext("Session fee"), unit_price
            rows.append({"label": label, "value": value, "when": when})
    if version.parking_cap is not None:
        rows.append(
            {
                "label": gettext("Idle fee at most"),
                "value": _unit_price(version.parking_cap, tax_rate, currency),
                "when": "",
            }
        )
    if version.min_price is not None:
        rows.append(
            {
                "label": gettext("Minimum price"),
                "value": _unit_price(version.min_price, tax_rate, currency),
                "when": "",
            }
        )
    if version.max_price is not None:
        rows.append(
            {
                "label": gettext("Maximum price"),
                "value": _unit_price(version.max_price, tax_rate, currency),
                "when": "",
            }
        )
    return rows


def _evse_state(evse: Evse) -> tuple[bool, str]:
    """(free for a new session, what the driver is told)."""
    station = evse.station
    if not station.is_connected:
        return False, gettext("Offline")
    if ChargingSession.objects.filter(evse=evse, status=SessionStatus.ACTIVE).exists():
        return False, gettext("In use")
    statuses = [connector.status for connector in evse.connectors.all()]
    if any(status in FREE_STATUSES for status in statuses):
        return True, gettext("Available")
    if any(status == ConnectorStatus.FAULTED for status in statuses):
        return False, gettext("Out of order")
    return False, gettext("Unavailable") if statuses else gettext("Unknown")


@public_page
@require_http_methods(["GET", "POST"])
def evse_page(request: HttpRequest, code: str) -> HttpResponse:
    evse = (
        Evse.objects.select_related("station__site", "station__organisation").filter(public_code=code).first()
        if len(code) <= 32
        else None
    )
    if evse is None:
        return render(request, "pay/not_found.html", status=404)
    site = evse.station.site
    language = site_language(site)
    with translation.override(language):
        offer = payments.adhoc_offer(evse=evse)
        free, state_text = _evse_state(evse)
        error = ""
        if request.method == "POST" and offer.available:
            try:
                begun = payments.payment_begin(
                    evse=evse,
                    card_token=request.POST.get("card_token", ""),
                    email=request.POST.get("email", ""),
                    language=language,
                    connector_available=free,
                )
            except ValidationFailed as failure:
                error = str(failure)
            else:
                if begun.payment.status in (PaymentStatus.DECLINED, PaymentStatus.ERROR):
                    error = _failure_text(begun.payment.failure) or gettext("The payment was declined.")
                else:
                    return HttpResponseRedirect(reverse("pay:live", args=[begun.access_key]))
        version = (
            TariffVersion.objects.filter(pk=offer.tariff_version_id).first()
            if offer.available and offer.tariff_version_id is not None
            else None
        )
        browser = (
            provider_for(offer.settings).browser_config() if offer.available and offer.settings else None
        )
        context = {
            "evse": evse,
            "station": evse.station,
            "site": site,
            "offer": offer,
            "free": free,
            "state_text": state_text,
            "prices": price_rows(version) if version else [],
            "tax_percent": (version.tax_rate * 100).normalize() if version else None,
            "hold": _money(offer.hold_amount, offer.currency) if offer.available else "",
            "browser": browser,
            "error": error,
            "language": language,
        }
        return render(request, "pay/evse.html", context, status=400 if error else 200)


def _payment_or_404(key: str) -> Payment:
    payment = payments.payment_by_access_key(access_key=key)
    if payment is None:
        raise Http404("No such payment")
    return payment


def _live_context(payment: Payment) -> dict:
    session = payments.payment_session(payment=payment)
    energy_kwh = duration = cost = None
    if session is not None:
        if session.meter_start_wh is not None and session.meter_last_wh is not None:
            energy_kwh = (Decimal(session.meter_last_wh - session.meter_start_wh) / 1000).quantize(
                Decimal("0.001")
            )
        end = session.stopped_at or timezone.now()
        duration = timedelta(seconds=int((end - session.started_at).total_seconds()))
        priced = session_cost_so_far(session=session)
        cost = priced.total if priced is not None else None
        if payment.status in (PaymentStatus.CAPTURED, PaymentStatus.SHORTFALL):
            cost = payment.captured_amount + payment.unpaid_amount
    charging = session is not None and session.status == SessionStatus.ACTIVE
    ended = session is not None and session.status == SessionStatus.COMPLETED
    status_text = payment.get_status_display()
    if payment.status in LIVE_STATUSES and charging:
        status_text = gettext("Charging")
    elif payment.status in (*LIVE_STATUSES, PaymentStatus.SETTLING) and ended:
        status_text = gettext("Charging ended")
    return {
        "payment": payment,
        "status_text": status_text,
        "failure_text": _failure_text(payment.failure),
        "session": session,
        "charging": charging,
        "ended": ended,
        "energy_kwh": energy_kwh,
        "energy_text": f"{formats.number_format(energy_kwh, 3, use_l10n=True)} kWh"
        if energy_kwh is not None
        else "",
        "duration": str(duration) if duration is not None else "",
        "cost_text": _money(cost, payment.currency),
        "hold_text": _money(payment.hold_amount, payment.currency),
        "captured_text": _money(payment.captured_amount, payment.currency),
        "live": payment.status in LIVE_STATUSES
        or payment.status in (PaymentStatus.SETTLING, PaymentStatus.UNPAID),
    }


def _live_page_context(payment: Payment, key: str) -> dict:
    """The live page's context: its figures (_live_context), where it is, and what it links to."""
    context = _live_context(payment)
    context.update(
        {
            "key": key,
            "evse": payment.evse,
            "site": payment.station.site,
            "station": payment.station,
            "receipt_ready": payment.status in (PaymentStatus.CAPTURED, PaymentStatus.SHORTFALL),
            "needs_action": None,
        }
    )
    return context


@public_page
def live_page(request: HttpRequest, key: str) -> HttpResponse:
    payment = _payment_or_404(key)
    with translation.override(payment.language or settings.LANGUAGE_CODE):
        context = _live_page_context(payment, key)
        if payment.status == PaymentStatus.PENDING and payment.provider_ref:
            try:
                provider = payments.payment_provider(payment)
                intent = provider.intent_get(ref=payment.provider_ref)
            except ProviderError:
                intent = None
            if intent is not None and intent.state == IntentState.NEEDS_ACTION:
                context["needs_action"] = {
                    "client_secret": intent.client_secret,
                    "browser": provider.browser_config(),
                }
        return render(request, "pay/live.html", context)


@public_page
def live_status(request: HttpRequest, key: str) -> JsonResponse:
    """The live page's figures as JSON, for its small script (the page refreshes itself without it too)."""
    payment = _payment_or_404(key)
    with translation.override(payment.language or settings.LANGUAGE_CODE):
        context = _live_context(payment)
        return JsonResponse(
            {
                "status": payment.status,
                "status_text": context["status_text"],
                "charging": context["charging"],
                "ended": context["ended"],
                "energy": context["energy_text"],
                "duration": context["duration"],
                "cost": context["cost_text"],
            }
        )


@public_page
@require_POST
def confirm_view(request: HttpRequest, key: str) -> HttpResponse:
    payment = _payment_or_404(key)
    # On a provider error the page shows the state it finds; the sweep and webhooks go on.
    with contextlib.suppress(ProviderError):
        payments.payment_confirm(payment=payment)
    return HttpResponseRedirect(reverse("pay:live", args=[key]))


@public_page
@require_POST
def stop_view(request: HttpRequest, key: str) -> HttpResponse:
    payment = _payment_or_404(key)
    # The refusal's message is read in the payment's language too.
    with translation.override(payment.language or settings.LANGUAGE_CODE):
        try:
            payments.payment_stop(payment=payment)
        except Conflict as error:
            context = _live_page_context(payment, key)
            context["error"] = str(error)
            return render(request, "pay/live.html", context, status=409)
    return HttpResponseRedirect(reverse("pay:live", args=[key]))


@public_page
def receipt_page(request: HttpRequest, key: str) -> HttpResponse:
    payment = _payment_or_404(key)
    # The receipt's line labels are written in the active language: build it inside the payment's.
    with translation.override(payment.language or settings.LANGUAGE_CODE):
        receipt = payment_receipt(payment=payment)
        if receipt is None:
            return HttpResponseRedirect(reverse("pay:live", args=[key]))
        money = {
            name: _money(getattr(receipt, name), receipt.currency)
            for name in ("subtotal", "tax", "total", "captured", "refunded")
        }
        lines = [
            {"label": line.label, "amount": _money(line.amount, receipt.currency)} for line in receipt.lines
        ]
        return render(
            request,
            "pay/receipt.html",
            {
                "key": key,
                "receipt": receipt,
                "money": money,
                "lines": lines,
                "tax_percent": (receipt.tax_rate * 100).normalize(),
                "payment": payment,
            },
        )


@public_page
def receipt_pdf_view(request: HttpRequest, key: str) -> HttpResponse:
    from billing.pdf import receipt_pdf

    payment = _payment_or_404(key)
    with translation.override(payment.language or settings.LANGUAGE_CODE):
        receipt = payment_receipt(payment=payment)
        if receipt is None:
            raise Http404("No receipt yet")
        response = HttpResponse(receipt_pdf(receipt), content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{receipt.number}.pdf"'
    return response


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest, organisation_id: int) -> HttpResponse:
    """Stripe's webhook endpoint of one organisation (its signing secret in PaymentSettings). 400 for a
    forged, stale or replayed-beyond-tolerance delivery; 200 for a duplicate (Stripe stops resending)."""
    if len(request.body) > 256 * 1024:
        return HttpResponse("payload too large", status=413, content_type="text/plain")
    try:
        outcome = payments.payment_webhook(
            organisation_id=organisation_id,
            payload=request.body,
            signature=request.headers.get("Stripe-Signature", ""),
        )
    except WebhookRefused as error:
        return HttpResponse(f"refused: {error}", status=400, content_type="text/plain")
    except ProviderError as error:
        # The provider's state could not be read back: a 5xx makes the provider deliver the event again.
        return HttpResponse(f"retry later: {error}", status=503, content_type="text/plain")
    return HttpResponse(outcome, status=200, content_type="text/plain")
