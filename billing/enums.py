from django.db import models
from django.utils.translation import gettext_lazy as _


class AssignmentLevel(models.TextChoices):
    """Where a tariff is assigned. Precedence, most specific first (billing/services/tariffs.py):
    an id token or its group (optionally narrowed to a site or station) > station > site > organisation."""

    ORGANISATION = "organisation", "Organisation"
    SITE = "site", "Site"
    STATION = "station", "Station"
    ID_TOKEN_GROUP = "id_token_group", "Id token or group"


class ExportKind(models.TextChoices):
    SESSIONS = "sessions", "Sessions with their price"
    CDRS = "cdrs", "Charge detail records and credits"
    REVENUE_SITES = "revenue_sites", "Revenue, energy cost and margin per site per month"
    REVENUE_PORTS = "revenue_ports", "Revenue, energy cost and margin per port per month"


class ExportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class PaymentProviderKind(models.TextChoices):
    STRIPE = "stripe", "Stripe"


class PaymentStatus(models.TextChoices):
    """An ad-hoc payment's life (billing/services/payments.py has the transitions):

    pending -> authorised -> starting -> charging -> settling -> captured | shortfall | unpaid
    and the ends without a charge: declined (no hold), released (hold given back: the charger refused, no
    cable, nothing to pay), error (the hold could not be placed for a reason other than the card)."""

    PENDING = "pending", _("Waiting for the card")
    AUTHORISED = "authorised", _("Hold placed")
    STARTING = "starting", _("Charger accepted, waiting for the session")
    CHARGING = "charging", _("Charging")
    SETTLING = "settling", _("Being captured")
    CAPTURED = "captured", _("Paid")
    SHORTFALL = "shortfall", _("Paid up to the hold; the rest unpaid")
    UNPAID = "unpaid", _("Capture failed; retried")
    RELEASED = "released", _("Hold released")
    DECLINED = "declined", _("Card declined")
    ERROR = "error", _("Payment failed")


# Where the money is final: nothing more will be captured or released automatically.
PAYMENT_FINAL = frozenset(
    {
        PaymentStatus.CAPTURED,
        PaymentStatus.SHORTFALL,
        PaymentStatus.RELEASED,
        PaymentStatus.DECLINED,
        PaymentStatus.ERROR,
    }
)
# Holding money on the driver's card, before anything is settled.
PAYMENT_HOLDING = frozenset({PaymentStatus.AUTHORISED, PaymentStatus.STARTING, PaymentStatus.CHARGING})


class RefundStatus(models.TextChoices):
    PENDING = "pending", "Pending at the provider"
    SUCCEEDED = "succeeded", "Refunded"
    FAILED = "failed", "Failed"
