"""Stripe, through the official `stripe` package: a PaymentIntent with manual capture is the hold.

The card never reaches our server: the driver's browser sends it to Stripe with Stripe.js (`createToken` on
a card Element) and posts us only the token. `hold_create` attaches the token to a new Customer (which also
gives Stripe the driver's email for its own receipts) and confirms a PaymentIntent for the hold on that
card, `capture_method=manual`: the money is reserved, not taken. `capture` takes part of it (Stripe releases
the rest at once), `release` cancels the intent, `refund` gives captured money back.

Also runs against a Stripe-compatible server (`api_base`, `js_url`: localstripe in the tests). Such a server
may report a partial capture as a full capture plus a refund of the remainder and may omit
`amount_received`; `_captured_minor` reads either form.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import stripe
from django.conf import settings as django_settings

from billing.models import PaymentSettings
from billing.providers import (
    BrowserConfig,
    IntentState,
    PaymentDeclined,
    ProviderError,
    ProviderEvent,
    ProviderIntent,
    ProviderRefund,
    ProviderUnavailable,
    WebhookRefused,
)
from billing.providers.keys import secret_decrypt

P = ParamSpec("P")
R = TypeVar("R")

STRIPE_JS_URL = "https://js.stripe.com/v3/"
# The metadata key of our refunds: a retry after a lost answer looks for it before refunding again.
REFUND_KEY = "cpms_refund"

_STATES = {
    "requires_payment_method": IntentState.FAILED,
    "requires_confirmation": IntentState.PROCESSING,
    "requires_action": IntentState.NEEDS_ACTION,
    "processing": IntentState.PROCESSING,
    "requires_capture": IntentState.AUTHORISED,
    "succeeded": IntentState.CAPTURED,
    "canceled": IntentState.CANCELED,
}


def _translated(method: Callable[P, R]) -> Callable[P, R]:
    """Stripe's exceptions as the provider interface's: a decline, the provider unreachable, or a refusal."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except stripe.StripeError as error:
            message = error.user_message or str(error) or type(error).__name__
            if isinstance(error, stripe.CardError):
                raise PaymentDeclined(message) from error
            if isinstance(error, (stripe.APIConnectionError, stripe.RateLimitError)) or (
                error.http_status is not None and error.http_status >= 500
            ):
                raise ProviderUnavailable(message) from error
            raise ProviderError(message) from error

    return wrapper


class StripeProvider:
    def __init__(
        self, *, secret_key: str, publishable_key: str, webhook_secret: str, api_base: str, js_url: str
    ):
        if not secret_key:
            raise ProviderError("No Stripe secret key is set for this organisation.")
        base_addresses: Any = {"api": api_base.rstrip("/")} if api_base else None
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses=base_addresses,
            # Our own retries (billing/services/payments.py) read the provider's state first.
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=django_settings.PAYMENT_PROVIDER_TIMEOUT_S),
        )
        self._publishable_key = publishable_key
        self._webhook_secret = webhook_secret
        self._js_url = js_url or STRIPE_JS_URL

    @classmethod
    def from_settings(cls, settings: PaymentSettings) -> "StripeProvider":
        return cls(
            secret_key=secret_decrypt(settings.secret_key_encrypted),
            publishable_key=settings.publishable_key,
            webhook_secret=secret_decrypt(settings.webhook_secret_encrypted),
            api_base=settings.api_base,
            js_url=settings.js_url,
        )

    @_translated
    def hold_create(
        self,
        *,
        card_token: str,
        amount_minor: int,
        currency: str,
        email: str,
        description: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> ProviderIntent:
        customer_params: Any = {"source": card_token, "metadata": metadata}
        if email:
            customer_params["email"] = email
        customer = self._client.v1.customers.create(
            params=customer_params, options={"idempotency_key": f"{idempotency_key}-customer"}
        )
        source = customer.default_source
        intent_params: Any = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "capture_method": "manual",
            "customer": customer.id,
            "payment_method": source if isinstance(source, str) else getattr(source, "id", ""),
            "confirm": True,
            # In metadata rather than `description`, which Stripe-compatible test servers refuse.
            "metadata": {**metadata, "description": description},
        }
        intent = self._client.v1.payment_intents.create(
            params=intent_params, options={"idempotency_key": idempotency_key}
        )
        return dataclasses.replace(self._intent(intent), card_hint=self._token_card_hint(card_token))

    @_translated
    def intent_get(self, *, ref: str) -> ProviderIntent:
        return self._intent(self._client.v1.payment_intents.retrieve(ref))

    @_translated
    def capture(self, *, ref: str, amount_minor: int, idempotency_key: str) -> ProviderIntent:
        intent = self._client.v1.payment_intents.capture(
            ref, params={"amount_to_capture": amount_minor}, options={"idempotency_key": idempotency_key}
        )
        return self._intent(intent)

    @_translated
    def release(self, *, ref: str, idempotency_key: str) -> ProviderIntent:
        intent = self._client.v1.payment_intents.cancel(ref, options={"idempotency_key": idempotency_key})
        return self._intent(intent)

    @_translated
    def refund(self, *, ref: str, amount_minor: int, refund_key: str, idempotency_key: str) -> ProviderRefund:
        refund = self._client.v1.refunds.create(
            params={"payment_intent": ref, "amount": amount_minor, "metadata": {REFUND_KEY: refund_key}},
            options={"idempotency_key": idempotency_key},
        )
        return _refund(refund)

    @_translated
    def refund_find(self, *, ref: str, refund_key: str) -> ProviderRefund | None:
        refunds = self._client.v1.refunds.list(params={"payment_intent": ref, "limit": 100})
        for refund in refunds.data:
            if (refund.to_dict().get("metadata") or {}).get(REFUND_KEY) == refund_key:
                return _refund(refund)
        return None

    def webhook_verify(self, *, payload: bytes, signature: str) -> ProviderEvent:
        if not self._webhook_secret:
            raise WebhookRefused("no webhook secret is set")
        try:
            stripe.WebhookSignature.verify_header(
                payload.decode("utf-8"),
                signature,
                self._webhook_secret,
                django_settings.PAYMENT_WEBHOOK_TOLERANCE_S,
            )
        except (stripe.SignatureVerificationError, UnicodeDecodeError) as error:
            raise WebhookRefused(str(error)) from error
        event = stripe.Webhook.construct_event_without_verification(payload.decode("utf-8")).to_dict()
        obj = event.get("data", {}).get("object", {}) or {}
        intent_ref = (
            obj.get("id", "") if obj.get("object") == "payment_intent" else obj.get("payment_intent") or ""
        )
        return ProviderEvent(
            id=str(event.get("id", "")),
            type=str(event.get("type", "")),
            intent_ref=str(intent_ref),
            created=int(event.get("created") or 0),
            data=obj,
        )

    def browser_config(self) -> BrowserConfig:
        return BrowserConfig(script_url=self._js_url, publishable_key=self._publishable_key)

    def _intent(self, intent: Any) -> ProviderIntent:
        data = intent.to_dict()
        state = _STATES.get(data.get("status", ""), IntentState.PROCESSING)
        error = (data.get("last_payment_error") or {}).get("message", "")
        if state == IntentState.FAILED and not error:
            error = "The card could not be charged."
        return ProviderIntent(
            ref=data["id"],
            state=state,
            amount_minor=int(data.get("amount") or 0),
            captured_minor=self._captured_minor(data) if state == IntentState.CAPTURED else 0,
            currency=str(data.get("currency", "")).upper(),
            client_secret=data.get("client_secret") or "" if state == IntentState.NEEDS_ACTION else "",
            card_hint=self._card_hint(data),
            error=error,
        )

    def _captured_minor(self, data: dict) -> int:
        if data.get("amount_received") is not None:
            return int(data["amount_received"])
        charge = data.get("latest_charge")
        if isinstance(charge, str):
            charge = self._client.v1.charges.retrieve(charge).to_dict()
        if not isinstance(charge, dict):
            return 0
        if charge.get("amount_captured") is not None:
            return int(charge["amount_captured"])
        # A server without amount_captured: captured = charged - what was refunded at capture (the remainder
        # released), i.e. all refunds that are not ours.
        released = sum(
            int(refund.get("amount") or 0)
            for refund in (charge.get("refunds") or {}).get("data", [])
            if not (refund.get("metadata") or {}).get(REFUND_KEY)
        )
        return int(charge.get("amount") or 0) - released

    def _token_card_hint(self, card_token: str) -> str:
        """ "Visa ...4242" from the token the browser made: the receipt's card line (no card number is kept)."""
        try:
            card = self._client.v1.tokens.retrieve(card_token).to_dict().get("card") or {}
        except stripe.StripeError:
            return ""
        return f"{str(card.get('brand') or 'Card').title()} ...{card['last4']}" if card.get("last4") else ""

    @staticmethod
    def _card_hint(data: dict) -> str:
        charge = data.get("latest_charge")
        details = (charge or {}).get("payment_method_details") if isinstance(charge, dict) else None
        card = (details or {}).get("card") or {}
        if card.get("last4"):
            return f"{str(card.get('brand', 'card')).title()} ...{card['last4']}"
        return ""


def _refund(refund: Any) -> ProviderRefund:
    data = refund.to_dict()
    return ProviderRefund(
        ref=data["id"], amount_minor=int(data.get("amount") or 0), succeeded=data.get("status") == "succeeded"
    )
