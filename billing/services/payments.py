"""Ad-hoc card payment of a charging session: hold, start, capture the CDR's total, release, refund.

The life of a Payment (billing.enums.PaymentStatus):

1. `payment_begin`: the driver's page posts a card token (the card itself went from the browser to the
   provider). A one-off id token of the organisation's ad-hoc group is made for this payment only, the
   Payment row is committed, then the provider places the hold. Declined: nothing starts. Authorised: the
   start job is queued (`payment_start_charging`). The provider may ask for 3-D Secure first: the page does
   it in the browser and calls `payment_confirm`.
2. `payment_start_charging` (Celery): RemoteStartTransaction / RequestStartTransaction with the one-off
   token, on the paid EVSE. Refused, failed or unanswered: the hold is released.
3. The session that starts with that token is bound to the payment by the sweep (`payments_sweep`); no work
   is added to the charger's message path. No session within `start_timeout_s` (no cable): released.
4. When the session's CDR exists (billing.tasks.session_bill, or the sweep), `payment_settle` captures the
   CDR's total, at most the hold (the provider releases the rest); more than the hold: the hold is captured
   and the rest recorded as unpaid (`shortfall`); nothing to pay: released. A failed capture is `unpaid` and
   retried with back-off, then left to the operator.
5. `payment_refund` (operator): a CdrCredit and a provider refund of the same total.

Money moves exactly once (docs/reliability.md case 49): each transition is claimed with a conditional
UPDATE before the provider is called, every provider call carries an idempotency key derived from the
payment, and after an unknown outcome the provider's state is read (`intent_get`, `refund_find`) before
anything is tried again. Webhooks only make us read the provider's state and apply it forwards
(`_reconcile`), so a webhook delivered twice or out of order changes nothing twice.
"""

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone, translation
from django.utils.translation import gettext

from accounts.enums import Capability
from accounts.models import Organisation, User
from billing.enums import PaymentStatus, RefundStatus
from billing.models import ChargeDetailRecord, Payment, PaymentEvent, PaymentRefund, PaymentSettings
from billing.money import minor_unit, round_money
from billing.providers import (
    IntentState,
    PaymentDeclined,
    PaymentProvider,
    ProviderError,
    ProviderIntent,
    ProviderUnavailable,
    WebhookRefused,
    provider_for,
)
from billing.providers.keys import secret_encrypt
from billing.services.cdrs import cdr_credit_create, cdr_credit_totals, session_cost_so_far
from billing.services.tariffs import tariff_resolve
from cpms.errors import Conflict, DomainError, PermissionDenied, ValidationFailed
from cpms.ocpp_wire import operations as builders
from sessions.enums import IdTokenStatus, IdTokenType, SessionStatus
from sessions.models import ChargingSession, IdToken
from sessions.services.site_access import id_token_admitted_at_site
from stations.enums import CommandSource, CommandStatus
from stations.models import ChargingStation, Evse
from stations.scope import user_can
from stations.services.commands import command_send, station_version

logger = logging.getLogger(__name__)

CARD_TOKEN_RE = re.compile(r"^[A-Za-z0-9_]{4,255}$")
# A payment stuck in `settling` this long lost its worker mid-capture: the sweep reads the provider's state.
SETTLING_STALE_S = 300
# A hold still waiting for the driver's bank (3-D Secure) after this long was abandoned: it is cancelled.
PENDING_EXPIRY_S = 1800


# --- Settings ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentSettingsInput:
    enabled: bool
    publishable_key: str = ""
    secret_key: str | None = None  # None: keep the stored one
    webhook_secret: str | None = None
    api_base: str = ""
    js_url: str = ""
    hold_amount: Decimal = Decimal(50)
    start_timeout_s: int = 180
    operator_legal_name: str = ""
    operator_address: str = ""
    operator_vat_id: str = ""


def payment_settings_get(*, organisation: Organisation) -> PaymentSettings:
    settings_row, _ = PaymentSettings.objects.get_or_create(organisation=organisation)
    return settings_row


def payment_settings_update(
    *, organisation: Organisation, user: User | None, data: PaymentSettingsInput
) -> PaymentSettings:
    """Set an organisation's ad-hoc payment (operator admins only). Enabling needs the provider's keys and
    creates the ad-hoc token group, to which a tariff can then be assigned like to any group."""
    if user is not None and not user_can(
        user=user, capability=Capability.MANAGE, organisation_id=organisation.pk
    ):
        raise PermissionDenied("Only an operator admin of the organisation may set its payments.")
    if data.hold_amount <= 0 or data.hold_amount != round_money(data.hold_amount, organisation.currency):
        raise ValidationFailed(
            f"hold_amount: a positive amount with at most {minor_unit(organisation.currency)} decimals"
        )
    if not 30 <= data.start_timeout_s <= 3600:
        raise ValidationFailed("start_timeout_s: between 30 and 3600 seconds")
    with transaction.atomic():
        row = payment_settings_get(organisation=organisation)
        row = PaymentSettings.objects.select_for_update().get(pk=row.pk)
        row.enabled = data.enabled
        row.publishable_key = data.publishable_key.strip()
        if data.secret_key is not None:
            row.secret_key_encrypted = secret_encrypt(data.secret_key.strip())
        if data.webhook_secret is not None:
            row.webhook_secret_encrypted = secret_encrypt(data.webhook_secret.strip())
        row.api_base = data.api_base.strip()
        row.js_url = data.js_url.strip()
        row.hold_amount = data.hold_amount
        row.start_timeout_s = data.start_timeout_s
        row.operator_legal_name = data.operator_legal_name.strip()
        row.operator_address = data.operator_address.strip()
        row.operator_vat_id = data.operator_vat_id.strip()
        if row.enabled:
            missing = [
                name
                for name, value in (
                    ("publishable_key", row.publishable_key),
                    ("secret_key", row.secret_key_encrypted),
                    ("webhook_secret", row.webhook_secret_encrypted),
                )
                if not value
            ]
            if missing:
                raise ValidationFailed(f"{', '.join(missing)}: required to enable payments")
            if row.adhoc_group_id is None:
                row.adhoc_group = IdToken.objects.create(
                    organisation=organisation,
                    value=f"ADHOC-GROUP-{secrets.token_hex(8).upper()}",
                    type=IdTokenType.CENTRAL,
                    owner_name="Ad-hoc card payments",
                )
        row.save()
    return row


# --- The offer: what the driver sees before paying -----------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AdhocOffer:
    evse: Evse
    available: bool
    reason: str  # why not, when not available
    settings: PaymentSettings | None
    tariff_version_id: int | None
    currency: str
    hold_amount: Decimal


def adhoc_offer(*, evse: Evse) -> AdhocOffer:
    """Whether a driver may pay to charge at `evse` now, and under which tariff: the one a session of the
    organisation's ad-hoc group would be priced with (billing/services/tariffs.py precedence)."""
    station = evse.station
    row = PaymentSettings.objects.filter(organisation_id=station.organisation_id).first()

    def refused(reason: str) -> AdhocOffer:
        return AdhocOffer(
            evse=evse,
            available=False,
            reason=reason,
            settings=row,
            tariff_version_id=None,
            currency=row.organisation.currency if row else "",
            hold_amount=row.hold_amount if row else Decimal(0),
        )

    if row is None or not row.enabled or row.adhoc_group_id is None:
        return refused(gettext("Card payment is not offered at this charger."))
    if not IdToken.objects.filter(pk=row.adhoc_group_id, status=IdTokenStatus.ACCEPTED).exists():
        return refused(gettext("Card payment is paused at this charger."))
    group = row.adhoc_group
    if group is None:
        return refused(gettext("Card payment is not offered at this charger."))
    if station.site is not None and not id_token_admitted_at_site(site=station.site, token=group):
        return refused(gettext("This charger is reserved for members."))
    resolved = tariff_resolve(
        organisation_id=station.organisation_id,
        site_id=station.site_id,
        station_id=station.pk,
        token=group,
        at=timezone.now(),
    )
    if resolved is None:
        return refused(gettext("No price is set for card payment at this charger."))
    if resolved.version.currency != row.organisation.currency:
        return refused(gettext("Card payment is not offered in this currency."))
    return AdhocOffer(
        evse=evse,
        available=True,
        reason="",
        settings=row,
        tariff_version_id=resolved.version.pk,
        currency=resolved.version.currency,
        hold_amount=row.hold_amount,
    )


# --- Begin: the hold --------------------------------------------------------------------------------


def access_key_hash(access_key: str) -> str:
    return hashlib.sha256(access_key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PaymentBegun:
    payment: Payment
    access_key: str  # the secret of the driver's pages; only its hash is stored
    client_secret: str  # for 3-D Secure in the browser, when payment.status is pending


def payment_begin(
    *, evse: Evse, card_token: str, email: str = "", language: str = "", connector_available: bool = True
) -> PaymentBegun:
    """Place the hold for a session at `evse` (module docstring, step 1). ValidationFailed when the EVSE
    does not offer card payment or the input is malformed; a declined card is not an error: the returned
    payment is `declined` with the provider's message in `failure`."""
    card_token = card_token.strip()
    if not CARD_TOKEN_RE.match(card_token):
        raise ValidationFailed(gettext("card_token: missing or malformed"))
    email = email.strip()
    if len(email) > 254 or (email and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", email)):
        raise ValidationFailed(gettext("email: not an email address"))
    if not connector_available:
        raise ValidationFailed(gettext("This charger is not available right now."))
    offer = adhoc_offer(evse=evse)
    if not offer.available or offer.settings is None:
        raise ValidationFailed(offer.reason)
    row = offer.settings
    station = evse.station
    access_key = secrets.token_urlsafe(24)
    with transaction.atomic():
        token = IdToken.objects.create(
            organisation_id=station.organisation_id,
            value=f"PAY-{secrets.token_hex(8).upper()}",  # 20 characters: the 1.6 idTag limit
            type=IdTokenType.CENTRAL,
            group_id=row.adhoc_group_id,
            owner_email=email,
            owner_name="Ad-hoc card payment",
        )
        token.allowed_stations.add(station)
        payment = Payment.objects.create(
            organisation_id=station.organisation_id,
            station=station,
            evse=evse,
            id_token=token,
            access_key_hash=access_key_hash(access_key),
            provider=row.provider,
            currency=offer.currency,
            hold_amount=offer.hold_amount,
            email=email,
            language=language[:8],
            tariff_version_id=offer.tariff_version_id,
        )
        _log(payment, "created", amount=payment.hold_amount)
    provider = provider_for(row)
    try:
        intent = provider.hold_create(
            card_token=card_token,
            amount_minor=_minor(payment.hold_amount, payment.currency),
            currency=payment.currency,
            email=email,
            description=f"Charging at {station.identity} EVSE {evse.evse_id}",
            metadata={"cpms_payment": str(payment.pk), "cpms_organisation": str(payment.organisation_id)},
            idempotency_key=f"cpms-hold-{payment.pk}",
        )
    except PaymentDeclined as error:
        _end_without_hold(payment, PaymentStatus.DECLINED, str(error))
        return PaymentBegun(_reloaded(payment), access_key, "")
    except ProviderError as error:
        # ProviderUnavailable included: the hold's fate is unknown, but no intent id came back to read it by;
        # Stripe drops an unconfirmed hold by itself after its authorisation window (docs/payments.md).
        logger.warning("payment %s: the hold could not be placed: %s", payment.pk, error)
        _end_without_hold(payment, PaymentStatus.ERROR, f"The payment could not be processed: {error}")
        return PaymentBegun(_reloaded(payment), access_key, "")
    Payment.objects.filter(pk=payment.pk).update(provider_ref=intent.ref, card_hint=intent.card_hint[:40])
    payment.provider_ref = intent.ref
    _reconcile(payment.pk, intent)
    payment = _reloaded(payment)
    return PaymentBegun(payment, access_key, intent.client_secret)


def payment_confirm(*, payment: Payment) -> Payment:
    """After 3-D Secure in the browser: read the hold's state at the provider and go on from it."""
    if payment.status == PaymentStatus.PENDING and payment.provider_ref:
        intent = payment_provider(payment).intent_get(ref=payment.provider_ref)
        _reconcile(payment.pk, intent)
    return _reloaded(payment)


def _end_without_hold(payment: Payment, status: str, failure: str) -> None:
    with transaction.atomic():
        changed = Payment.objects.filter(pk=payment.pk, status=PaymentStatus.PENDING).update(
            status=status, failure=failure[:2000], settled_at=timezone.now()
        )
        if changed:
            IdToken.objects.filter(pk=payment.id_token_id).update(status=IdTokenStatus.BLOCKED)
            _log(payment, status, detail={"failure": failure[:500]})


# --- Start ------------------------------------------------------------------------------------------


def payment_start_charging(*, payment_id: int) -> str:
    """Ask the charger to start with the payment's one-off token (module docstring, step 2). Claimed with a
    conditional UPDATE, so a job delivered twice sends one command."""
    claimed = Payment.objects.filter(
        pk=payment_id, status=PaymentStatus.AUTHORISED, start_command__isnull=True
    ).update(status=PaymentStatus.STARTING, updated_at=timezone.now())
    if not claimed:
        return "not_authorised"
    payment = Payment.objects.select_related("station", "evse", "id_token").get(pk=payment_id)
    # The reasons stored for the driver's page are in the language the driver paid in.
    with translation.override(payment.language or None):
        return _start(payment)


def _start(payment: Payment) -> str:
    payment_id = payment.pk
    station = payment.station
    try:
        call = builders.remote_start(
            station_version(station),
            id_token=payment.id_token.value,
            target=builders.Target(evse_id=payment.evse.evse_id),
        )
    except DomainError as error:  # a station that never connected: nothing can be sent to it
        _log(payment, "start_refused", detail={"error": str(error)[:500]})
        payment_release(
            payment_id=payment_id,
            reason=gettext("The charger cannot be started: %(error)s") % {"error": error},
        )
        return "refused"
    command = command_send(
        station=station,
        call=call,
        requested_by=None,
        source=CommandSource.SYSTEM,
        timeout_s=settings.PAYMENT_START_COMMAND_TIMEOUT_S,
        queue_for_s=0,
    )
    Payment.objects.filter(pk=payment_id).update(start_command=command)
    response = command.response if isinstance(command.response, dict) else {}
    if command.status == CommandStatus.ANSWERED and response.get("status") == "Accepted":
        _log(payment, "start_accepted", detail={"command": command.pk})
        return "accepted"
    why = (
        gettext("The charger refused to start (%(status)s).") % {"status": response.get("status")}
        if command.status == CommandStatus.ANSWERED
        else gettext("The charger did not start (%(status)s).")
        % {"status": command.get_status_display().lower()}
    )
    _log(payment, "start_refused", detail={"command": command.pk, "status": command.status})
    payment_release(payment_id=payment_id, reason=why)
    return "refused"


# --- Release ------------------------------------------------------------------------------------------


def payment_release(*, payment_id: int, reason: str) -> str:
    """Give the hold back when no session will be paid with it (refused, no cable, timed out). Only from a
    holding state without a session; the token is blocked first, so a late start cannot charge for free."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        holding = (PaymentStatus.PENDING, PaymentStatus.AUTHORISED, PaymentStatus.STARTING)
        if payment.status not in holding or payment.session_id or not payment.provider_ref:
            return "not_holding"
        if ChargingSession.objects.filter(id_token_id=payment.id_token_id).exists():
            return "has_session"  # the sweep binds it; it is settled from its CDR
        IdToken.objects.filter(pk=payment.id_token_id).update(status=IdTokenStatus.BLOCKED)
        Payment.objects.filter(pk=payment.pk).update(failure=reason[:2000])
    try:
        intent = payment_provider(payment).release(
            ref=payment.provider_ref, idempotency_key=f"cpms-release-{payment.pk}"
        )
    except ProviderError as error:
        try:
            intent = payment_provider(payment).intent_get(ref=payment.provider_ref)
        except ProviderError:
            logger.warning("payment %s: release failed (%s); the sweep retries", payment.pk, error)
            return "retry"
    _reconcile(payment.pk, intent, release_reason=reason)
    return "released"


# --- Sessions bound, settled ------------------------------------------------------------------------------


def payments_bind_sessions(*, payment_ids: list[int] | None = None) -> int:
    """Bind each started session to the payment whose one-off token started it (module docstring, step 3):
    every waiting payment, or only `payment_ids`. One query finds the sessions of all their tokens."""
    bound = 0
    waiting = Payment.objects.filter(
        status__in=(PaymentStatus.AUTHORISED, PaymentStatus.STARTING), session__isnull=True
    )
    if payment_ids is not None:
        waiting = waiting.filter(pk__in=payment_ids)
    token_payments = dict(waiting.values_list("id_token_id", "pk"))
    first_sessions: dict[int, int] = {}
    for token_id, session_id in (
        ChargingSession.objects.filter(id_token_id__in=token_payments)
        .order_by("pk")
        .values_list("id_token_id", "pk")
    ):
        first_sessions.setdefault(token_id, session_id)
    for token_id, session_id in first_sessions.items():
        payment_id = token_payments[token_id]
        with transaction.atomic():
            changed = Payment.objects.filter(
                pk=payment_id,
                status__in=(PaymentStatus.AUTHORISED, PaymentStatus.STARTING),
                session__isnull=True,
            ).update(status=PaymentStatus.CHARGING, session_id=session_id)
            if changed:
                # One-off: the token started its session; it starts no other.
                IdToken.objects.filter(pk=token_id).update(status=IdTokenStatus.BLOCKED)
                _log_id(payment_id, "charging", detail={"session": session_id})
                bound += changed
    return bound


def payment_settle(*, payment_id: int) -> str:
    """Capture the CDR's total (module docstring, step 4). Claimed `settling` with a conditional UPDATE; the
    provider's state is read first, so a capture that happened before a crash is found, not repeated."""
    now = timezone.now()
    claimed = Payment.objects.filter(
        Q(status=PaymentStatus.CHARGING)
        | Q(status=PaymentStatus.UNPAID, next_attempt_at__lte=now)
        | Q(status=PaymentStatus.SETTLING, updated_at__lt=now - timedelta(seconds=SETTLING_STALE_S)),
        pk=payment_id,
        session__cdr__isnull=False,
    ).update(status=PaymentStatus.SETTLING, updated_at=now)
    if not claimed:
        return "not_due"
    payment = Payment.objects.select_related("session__cdr").get(pk=payment_id)
    cdr = payment.session.cdr  # type: ignore[union-attr]
    due = cdr_credit_totals(cdr=cdr)["net_total"]
    provider = payment_provider(payment)
    try:
        intent = provider.intent_get(ref=payment.provider_ref)
        if intent.state == IntentState.AUTHORISED:
            if due <= 0:
                intent = provider.release(
                    ref=payment.provider_ref, idempotency_key=f"cpms-release-{payment.pk}"
                )
            else:
                amount = min(due, payment.hold_amount)
                intent = provider.capture(
                    ref=payment.provider_ref,
                    amount_minor=_minor(amount, payment.currency),
                    idempotency_key=f"cpms-capture-{payment.pk}",
                )
    except ProviderError as error:
        _capture_failed(payment, str(error))
        return "failed"
    _settled(payment, intent, due=due)
    return "settled"


def _capture_failed(payment: Payment, error: str) -> None:
    attempts = payment.capture_attempts + 1
    retry = attempts < settings.PAYMENT_CAPTURE_ATTEMPTS
    next_at = timezone.now() + timedelta(minutes=2 ** (attempts - 1)) if retry else None
    Payment.objects.filter(pk=payment.pk, status=PaymentStatus.SETTLING).update(
        status=PaymentStatus.UNPAID, capture_attempts=attempts, next_attempt_at=next_at, failure=error[:2000]
    )
    logger.warning("payment %s: capture failed (attempt %d): %s", payment.pk, attempts, error)
    _log(payment, "capture_failed", detail={"error": error[:500], "attempt": attempts, "retry": retry})


def _settled(payment: Payment, intent: ProviderIntent, *, due: Decimal) -> None:
    """Record the provider's final state of a settling payment."""
    with transaction.atomic():
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        if locked.status not in (PaymentStatus.SETTLING, PaymentStatus.UNPAID):
            return
        captured = _major(intent.captured_minor, locked.currency)
        if intent.state == IntentState.CAPTURED:
            shortfall = max(due - captured, Decimal(0))
            status = PaymentStatus.SHORTFALL if shortfall > 0 else PaymentStatus.CAPTURED
        elif intent.state == IntentState.CANCELED:
            # Released (nothing due), or the hold expired at the provider before we captured.
            captured, shortfall = Decimal(0), max(due, Decimal(0))
            status = PaymentStatus.SHORTFALL if shortfall > 0 else PaymentStatus.RELEASED
        else:
            _capture_failed(locked, f"The hold is {intent.state} at the provider; not captured.")
            return
        Payment.objects.filter(pk=locked.pk).update(
            status=status,
            captured_amount=captured,
            unpaid_amount=round_money(shortfall, locked.currency),
            settled_at=timezone.now(),
            next_attempt_at=None,
            card_hint=intent.card_hint[:40] or locked.card_hint,
        )
        _log(locked, status, amount=captured, detail={"due": str(due), "unpaid": str(shortfall)})
        if locked.email and locked.receipt_sent_at is None and status != PaymentStatus.RELEASED:
            from billing.tasks import payment_receipt_email

            transaction.on_commit(lambda: payment_receipt_email.delay(locked.pk))


def payments_sweep() -> dict[str, int]:
    """Every PAYMENT_SWEEP_S: bind started sessions, release holds whose session never started, settle
    payments whose CDR exists, retry failed captures and refunds. One payment's failure never stops the
    others."""
    done = {"bound": payments_bind_sessions(), "released": 0, "settled": 0, "refunds": 0}
    done["stopped"] = payments_stop_at_hold()
    now = timezone.now()
    waiting = Payment.objects.filter(
        status__in=(PaymentStatus.AUTHORISED, PaymentStatus.STARTING), session__isnull=True
    ).values_list("pk", "authorised_at", "organisation__payment_settings__start_timeout_s")
    expired = [
        payment_id
        for payment_id, authorised_at, timeout_s in waiting
        if authorised_at is None or authorised_at < now - timedelta(seconds=timeout_s or 0)
    ]
    expired += list(
        Payment.objects.filter(
            status=PaymentStatus.PENDING, created_at__lt=now - timedelta(seconds=PENDING_EXPIRY_S)
        )
        .exclude(provider_ref="")
        .values_list("pk", flat=True)
    )
    for payment_id in expired:
        try:
            if (
                payment_release(payment_id=payment_id, reason=gettext("No charging session started in time."))
                == "released"
            ):
                done["released"] += 1
        except Exception:
            logger.exception("payment %s: release failed", payment_id)
    due = Payment.objects.filter(
        Q(status=PaymentStatus.CHARGING)
        | Q(status=PaymentStatus.UNPAID, next_attempt_at__lte=now)
        | Q(status=PaymentStatus.SETTLING, updated_at__lt=now - timedelta(seconds=SETTLING_STALE_S)),
        session__cdr__isnull=False,
    ).values_list("pk", flat=True)
    for payment_id in list(due):
        try:
            if payment_settle(payment_id=payment_id) == "settled":
                done["settled"] += 1
        except Exception:
            logger.exception("payment %s: settle failed", payment_id)
    for refund_id in list(
        PaymentRefund.objects.filter(status=RefundStatus.PENDING).values_list("pk", flat=True)
    ):
        try:
            if refund_send(refund_id=refund_id) == RefundStatus.SUCCEEDED:
                done["refunds"] += 1
        except Exception:
            logger.exception("refund %s: send failed", refund_id)
    return done


def payments_stop_at_hold() -> int:
    """Stop the sessions whose cost so far reached PAYMENT_STOP_AT_HOLD_FRACTION of their hold, once each: what
    a session costs beyond the hold could not be captured (`shortfall`). Returns the stops sent."""
    fraction = Decimal(str(settings.PAYMENT_STOP_AT_HOLD_FRACTION))
    if fraction <= 0:
        return 0
    stopped = 0
    charging = Payment.objects.filter(
        status=PaymentStatus.CHARGING, session__status=SessionStatus.ACTIVE
    ).exclude(events__kind="hold_reached")
    for payment in charging.select_related("session__station", "organisation"):
        session = payment.session
        assert session is not None  # filtered on
        cost = session_cost_so_far(session=session)
        if cost is None or cost.total < payment.hold_amount * fraction:
            continue
        _log(payment, "hold_reached", amount=cost.total, detail={"hold": str(payment.hold_amount)})
        try:
            payment_stop(payment=payment)
            stopped += 1
        except (Conflict, DomainError) as error:
            logger.warning("payment %s: stop at the hold not accepted: %s", payment.pk, error)
    return stopped


def payment_settle_for_session(*, session_id: int) -> str:
    """Right after a session's CDR was written (billing.tasks.session_bill): bind and settle its payment,
    if it was paid ad hoc; the sweep does the same later if this is lost."""
    # A payment's session is always one its one-off token started: the token finds it, bound or not yet.
    payment_id = (
        Payment.objects.filter(id_token__sessions__pk=session_id).values_list("pk", flat=True).first()
    )
    if payment_id is None:
        return "no_payment"
    payments_bind_sessions(payment_ids=[payment_id])
    return payment_settle(payment_id=payment_id)


# --- Webhooks and reconciliation ---------------------------------------------------------------------------


def payment_webhook(*, organisation_id: int, payload: bytes, signature: str) -> str:
    """A provider's webhook for an organisation: verified (WebhookRefused otherwise), stored once by its
    event id, then the payment's state is read from the provider and applied forwards."""
    row = PaymentSettings.objects.filter(organisation_id=organisation_id, enabled=True).first()
    if row is None:
        raise WebhookRefused("payments are not enabled for this organisation")
    event = provider_for(row).webhook_verify(payload=payload, signature=signature)
    event_key = f"{row.provider}:{event.id}"
    if PaymentEvent.objects.filter(provider_event_id=event_key).exists():
        return "duplicate"
    payment = (
        Payment.objects.filter(organisation_id=organisation_id, provider_ref=event.intent_ref).first()
        if event.intent_ref
        else None
    )
    # Read before recording: if the provider cannot be read, nothing is recorded and its redelivery applies.
    intent = payment_provider(payment).intent_get(ref=payment.provider_ref) if payment is not None else None
    try:
        with transaction.atomic():
            PaymentEvent.objects.create(
                payment=payment,
                organisation_id=organisation_id,
                kind=f"webhook:{event.type}"[:40],
                provider_event_id=event_key,
                detail={"type": event.type, "intent": event.intent_ref, "created": event.created},
            )
            if payment is not None and intent is not None:
                _reconcile(payment.pk, intent)
    except IntegrityError:
        return "duplicate"  # the same event, delivered twice at the same moment: the other one applied it
    return "applied" if payment is not None else "ignored"


def _reconcile(payment_id: int, intent: ProviderIntent, *, release_reason: str = "") -> None:
    """Apply the provider's state of a hold forwards only: a state already passed is ignored, so replays
    and reordered webhooks change nothing. Settling (capture) is `payment_settle`'s; here a capture the
    provider reports for a payment being settled or unpaid is recorded."""
    start = False
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        now = timezone.now()
        if intent.state == IntentState.AUTHORISED and payment.status == PaymentStatus.PENDING:
            Payment.objects.filter(pk=payment.pk).update(
                status=PaymentStatus.AUTHORISED,
                authorised_at=now,
                card_hint=intent.card_hint[:40] or payment.card_hint,
            )
            _log(payment, "authorised", amount=_major(intent.amount_minor, payment.currency))
            start = True
        elif intent.state == IntentState.FAILED and payment.status == PaymentStatus.PENDING:
            Payment.objects.filter(pk=payment.pk).update(
                status=PaymentStatus.DECLINED, failure=intent.error[:2000], settled_at=now
            )
            IdToken.objects.filter(pk=payment.id_token_id).update(status=IdTokenStatus.BLOCKED)
            _log(payment, "declined", detail={"failure": intent.error[:500]})
        elif intent.state == IntentState.CANCELED and payment.status in (
            PaymentStatus.PENDING,
            PaymentStatus.AUTHORISED,
            PaymentStatus.STARTING,
        ):
            Payment.objects.filter(pk=payment.pk).update(
                status=PaymentStatus.RELEASED,
                settled_at=now,
                failure=release_reason[:2000]
                or payment.failure
                or gettext("The hold was released at the provider."),
            )
            IdToken.objects.filter(pk=payment.id_token_id).update(status=IdTokenStatus.BLOCKED)
            _log(payment, "released", amount=payment.hold_amount, detail={"reason": release_reason[:500]})
        elif intent.state == IntentState.CAPTURED and payment.status in (
            PaymentStatus.SETTLING,
            PaymentStatus.UNPAID,
        ):
            cdr = ChargeDetailRecord.objects.filter(session_id=payment.session_id).first()
            if cdr is not None:
                due = cdr_credit_totals(cdr=cdr)["net_total"]
                transaction.on_commit(lambda: _settled(payment, intent, due=due))
    if start:
        from billing.tasks import payment_start

        transaction.on_commit(lambda: payment_start.delay(payment_id))


# --- Refunds ---------------------------------------------------------------------------------------------


def payment_refund(*, payment: Payment, user: User, amount: Decimal | None, reason: str) -> PaymentRefund:
    """Give back `amount` (tax included; all that is refundable when None) of a captured payment: a credit on
    the session's CDR and a provider refund of the credit's exact total, created together (operator admins
    and finance of the organisation)."""
    if not user_can(user=user, capability=Capability.BILLING, organisation_id=payment.organisation_id):
        raise PermissionDenied("You may not refund payments of this organisation.")
    reason = reason.strip()
    if not reason:
        raise ValidationFailed("reason: required")
    with transaction.atomic():
        locked = (
            Payment.objects.select_for_update(of=("self",)).select_related("session__cdr").get(pk=payment.pk)
        )
        if (
            locked.status not in (PaymentStatus.CAPTURED, PaymentStatus.SHORTFALL)
            or locked.captured_amount <= 0
        ):
            raise Conflict("Only a captured payment can be refunded.")
        pending = sum(
            (r.amount for r in locked.refunds.filter(status=RefundStatus.PENDING)), start=Decimal(0)
        )
        refundable = round_money(locked.captured_amount - locked.refunded_amount - pending, locked.currency)
        if refundable <= 0:
            raise Conflict("Nothing is left to refund on this payment.")
        if amount is None:
            amount = refundable
        if amount <= 0 or amount != round_money(amount, locked.currency):
            raise ValidationFailed(
                f"amount: a positive amount with at most {minor_unit(locked.currency)} decimals"
            )
        if amount > refundable:
            raise ValidationFailed(f"amount: at most {refundable} {locked.currency} can be refunded")
        cdr = locked.session.cdr  # type: ignore[union-attr]
        subtotal = round_money(amount / (1 + cdr.tax_rate), locked.currency)
        credit = cdr_credit_create(cdr=cdr, user=user, reason=f"Refund: {reason}", subtotal=subtotal)
        # The credit's tax is computed at the CDR's rate; the refund is the credit's exact total.
        refund_amount = -credit.total
        if refund_amount > refundable:
            raise ValidationFailed(f"amount: at most {refundable} {locked.currency} can be refunded")
        refund = PaymentRefund.objects.create(
            payment=locked, credit=credit, amount=refund_amount, created_by=user
        )
        _log(
            locked,
            "refund_requested",
            amount=refund_amount,
            detail={"refund": refund.pk, "credit": credit.pk},
        )
    refund_send(refund_id=refund.pk)
    refund.refresh_from_db()
    return refund


def refund_send(*, refund_id: int) -> str:
    """Send a pending refund to the provider, once: a retry first looks for the refund made under this row's
    key (its answer may have been lost)."""
    refund = PaymentRefund.objects.select_related("payment").get(pk=refund_id)
    if refund.status != RefundStatus.PENDING:
        return refund.status
    payment = refund.payment
    provider = payment_provider(payment)
    key = str(refund.pk)
    PaymentRefund.objects.filter(pk=refund.pk).update(attempts=F("attempts") + 1)
    try:
        found = provider.refund_find(ref=payment.provider_ref, refund_key=key) if refund.attempts else None
        result = found or provider.refund(
            ref=payment.provider_ref,
            amount_minor=_minor(refund.amount, payment.currency),
            refund_key=key,
            idempotency_key=f"cpms-refund-{refund.pk}",
        )
    except ProviderUnavailable as error:
        PaymentRefund.objects.filter(pk=refund.pk).update(error=str(error)[:2000])
        return RefundStatus.PENDING
    except ProviderError as error:
        PaymentRefund.objects.filter(pk=refund.pk).update(status=RefundStatus.FAILED, error=str(error)[:2000])
        _log(
            payment,
            "refund_failed",
            amount=refund.amount,
            detail={"refund": refund.pk, "error": str(error)[:500]},
        )
        return RefundStatus.FAILED
    with transaction.atomic():
        changed = PaymentRefund.objects.filter(pk=refund.pk, status=RefundStatus.PENDING).update(
            status=RefundStatus.SUCCEEDED, provider_ref=result.ref, error=""
        )
        if changed:
            Payment.objects.filter(pk=payment.pk).update(refunded_amount=F("refunded_amount") + refund.amount)
            _log(
                payment,
                "refunded",
                amount=refund.amount,
                detail={"refund": refund.pk, "provider_ref": result.ref},
            )
    return RefundStatus.SUCCEEDED


# --- The driver's live page ---------------------------------------------------------------------------------


def payment_by_access_key(*, access_key: str) -> Payment | None:
    """The payment whose driver's pages carry `access_key` (None for a wrong one)."""
    if not access_key or len(access_key) > 100:
        return None
    return (
        Payment.objects.select_related("station__site", "evse", "session", "organisation")
        .filter(access_key_hash=access_key_hash(access_key))
        .first()
    )


def payment_session(*, payment: Payment) -> ChargingSession | None:
    """The session started with the payment's token (bound or not yet bound by the sweep)."""
    if payment.session_id:
        return payment.session
    return ChargingSession.objects.filter(id_token_id=payment.id_token_id).order_by("pk").first()


def payment_stop(*, payment: Payment) -> str:
    """The driver's stop button: RemoteStop / RequestStopTransaction of this payment's session only."""
    session = payment_session(payment=payment)
    if session is None or session.status != SessionStatus.ACTIVE:
        raise Conflict(gettext("No charging session of this payment is running."))
    station: ChargingStation = session.station
    call = builders.remote_stop(station_version(station), transaction_id=session.transaction_id)
    command = command_send(
        station=station,
        call=call,
        requested_by=None,
        source=CommandSource.SYSTEM,
        timeout_s=15.0,
        queue_for_s=0,
    )
    response = command.response if isinstance(command.response, dict) else {}
    _log(payment, "stop_requested", detail={"command": command.pk, "status": command.status})
    if command.status == CommandStatus.ANSWERED and response.get("status") == "Accepted":
        return "accepted"
    raise Conflict(
        gettext("The charger did not accept the stop; unplug the cable at the car to end charging.")
    )


def payment_receipt_sent(*, payment_id: int) -> bool:
    """Mark the receipt as emailed, once (the job delivered twice sends one mail)."""
    return bool(
        Payment.objects.filter(pk=payment_id, receipt_sent_at__isnull=True).update(
            receipt_sent_at=timezone.now()
        )
    )


# --- Helpers -----------------------------------------------------------------------------------------------


def payment_provider(payment: Payment) -> PaymentProvider:
    """The provider adapter of the payment's organisation."""
    row = PaymentSettings.objects.get(organisation_id=payment.organisation_id)
    return provider_for(row)


def _minor(amount: Decimal, currency: str) -> int:
    return int(round_money(amount, currency).scaleb(minor_unit(currency)))


def _major(amount_minor: int, currency: str) -> Decimal:
    return Decimal(amount_minor).scaleb(-minor_unit(currency))


def _reloaded(payment: Payment) -> Payment:
    payment.refresh_from_db()
    return payment


def _log(
    payment: Payment, kind: str, *, amount: Decimal | None = None, detail: dict[str, Any] | None = None
) -> None:
    PaymentEvent.objects.create(
        payment_id=payment.pk,
        organisation_id=payment.organisation_id,
        kind=kind,
        amount=amount,
        detail=detail or {},
    )


def _log_id(payment_id: int, kind: str, *, detail: dict[str, Any] | None = None) -> None:
    organisation_id = Payment.objects.filter(pk=payment_id).values_list("organisation_id", flat=True).get()
    PaymentEvent.objects.create(
        payment_id=payment_id, organisation_id=organisation_id, kind=kind, detail=detail or {}
    )
