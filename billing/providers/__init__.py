"""Payment providers: the interface billing/services/payments.py speaks, and the adapters behind it.

Amounts cross this boundary in minor units (cents) as ints, the way every provider takes them. A provider
call either returns the provider's state of the payment (`ProviderIntent`) or raises:

- `PaymentDeclined`: the card (or its issuer) said no; a final answer, never retried;
- `ProviderUnavailable`: no answer, a timeout or a 5xx; the call may or may not have happened at the
  provider, so the caller reads the provider's state (`intent_get`) before it tries again;
- `ProviderError`: the provider refused the request (a 4xx other than a decline); retrying the same request
  does not help.

Every mutating call takes an `idempotency_key`: the provider applies a request with the same key once.
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from billing.models import PaymentSettings


class ProviderError(Exception):
    """The provider refused the request."""


class PaymentDeclined(ProviderError):
    """The card was declined."""


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or failed; the request's effect is unknown."""


class WebhookRefused(Exception):
    """A webhook whose signature is wrong, missing or too old."""


class IntentState:
    """Where a hold stands at the provider, whatever the provider calls it."""

    NEEDS_ACTION = "needs_action"  # the driver must authenticate (3-D Secure) in the browser
    AUTHORISED = "authorised"  # the hold is on the card, nothing captured
    CAPTURED = "captured"
    CANCELED = "canceled"  # released without a capture
    FAILED = "failed"  # declined or authentication failed
    PROCESSING = "processing"


@dataclass(frozen=True, slots=True)
class ProviderIntent:
    ref: str
    state: str  # IntentState
    amount_minor: int  # the hold
    captured_minor: int  # 0 until captured
    currency: str
    client_secret: str = ""  # for the browser, when state is NEEDS_ACTION
    card_hint: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class ProviderRefund:
    ref: str
    amount_minor: int
    succeeded: bool


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """A verified webhook: its id (for deduplication), type and the intent it is about, if any."""

    id: str
    type: str
    intent_ref: str
    created: int
    data: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BrowserConfig:
    """What the driver's page needs to collect the card at the provider (never at our server)."""

    script_url: str
    publishable_key: str


class PaymentProvider(Protocol):
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
    ) -> ProviderIntent: ...

    def intent_get(self, *, ref: str) -> ProviderIntent: ...

    def capture(self, *, ref: str, amount_minor: int, idempotency_key: str) -> ProviderIntent: ...

    def release(self, *, ref: str, idempotency_key: str) -> ProviderIntent: ...

    def refund(
        self, *, ref: str, amount_minor: int, refund_key: str, idempotency_key: str
    ) -> ProviderRefund: ...

    def refund_find(self, *, ref: str, refund_key: str) -> ProviderRefund | None: ...

    def webhook_verify(self, *, payload: bytes, signature: str) -> ProviderEvent: ...

    def browser_config(self) -> BrowserConfig: ...


def provider_for(settings: "PaymentSettings") -> PaymentProvider:
    """The adapter configured for an organisation (PaymentSettings.provider)."""
    from billing.providers.stripe import StripeProvider

    return StripeProvider.from_settings(settings)
