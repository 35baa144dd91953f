from decimal import Decimal

from django.db import models

# The measurand sessions and billing take energy from, and the units it may come in.
ENERGY_REGISTER = "Energy.Active.Import.Register"
UNIT_TO_WH = {"": Decimal(1), "Wh": Decimal(1), "kWh": Decimal(1000)}


class IdTokenType(models.TextChoices):
    """OCPP 2.0.1 IdTokenEnumType; a 1.6 idTag is stored with type ISO14443 unless known otherwise."""

    CENTRAL = "Central"
    EMAID = "eMAID"
    ISO14443 = "ISO14443"
    ISO15693 = "ISO15693"
    KEY_CODE = "KeyCode"
    LOCAL = "Local"
    MAC_ADDRESS = "MacAddress"
    NO_AUTHORIZATION = "NoAuthorization"


class IdTokenStatus(models.TextChoices):
    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    CONCURRENT_TX = "ConcurrentTx"


class SessionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    COMPLETED = "completed", "Completed"


class SessionFlag(models.TextChoices):
    """Anomalies. Any flag in HOLD_FLAGS keeps the session from being billed until reviewed."""

    METER_BACKWARDS = "meter_backwards"
    NEGATIVE_METER = "negative_meter"
    STOP_BEFORE_START = "stop_before_start"
    CLOCK_SKEW = "clock_skew"
    UNKNOWN_TOKEN = "unknown_token"
    OFFLINE_START = "offline_start"
    DUPLICATE_STOP = "duplicate_stop"
    STOPPED_BY_NEW_SESSION = "stopped_by_new_session"
    BILLING_ERROR = "billing_error"
    # A charger time outside the accepted window: our receive time was used instead
    # (docs/reliability.md case 45).
    CLOCK_OUT_OF_WINDOW = "clock_out_of_window"
    # A 2.0.1 transaction ended without any energy register reading (docs/reliability.md case 23).
    ENERGY_UNKNOWN = "energy_unknown"


HOLD_FLAGS = frozenset(
    {
        SessionFlag.METER_BACKWARDS,
        SessionFlag.NEGATIVE_METER,
        SessionFlag.STOP_BEFORE_START,
        SessionFlag.BILLING_ERROR,
        SessionFlag.ENERGY_UNKNOWN,
    }
)


class AnomalyKind(models.TextChoices):
    UNKNOWN_TRANSACTION = "unknown_transaction", "Stop for an unknown transaction"
    FOREIGN_TRANSACTION = "foreign_transaction", "Stop naming another station's transaction"
    DUPLICATE_STOP = "duplicate_stop", "Duplicate stop"
    METER_BACKWARDS = "meter_backwards", "Meter register went backwards"
    CLOCK_SKEW = "clock_skew", "Charger clock ahead of ours"
    BILLING_ERROR = "billing_error", "The session could not be priced"
    CLOCK_OUT_OF_WINDOW = "clock_out_of_window", "Charger time outside the accepted window"


class ReservationStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    ACCEPTED = "accepted", "Accepted by the charger"
    REJECTED = "rejected", "Refused by the charger"
    CANCELLED = "cancelled", "Cancelled"
    USED = "used", "Used by a session"
    EXPIRED = "expired", "Expired"
