from django.db import models

OCPI_VERSION = "2.2.1"


class PartnerStatus(models.TextChoices):
    # Token A issued, the partner has not registered yet (or we have not registered with it).
    PENDING = "PENDING", "Pending registration"
    REGISTERED = "REGISTERED", "Registered"
    # Registered, but the operator stopped the connection: its token is refused and nothing is sent.
    SUSPENDED = "SUSPENDED", "Suspended"
    UNREGISTERED = "UNREGISTERED", "Unregistered"


class Role(models.TextChoices):
    """OCPI 2.2.1 Role (credentials, hubclientinfo)."""

    CPO = "CPO"
    EMSP = "EMSP"
    HUB = "HUB"
    NAP = "NAP"
    NSP = "NSP"
    OTHER = "OTHER"
    SCSP = "SCSP"


class Module(models.TextChoices):
    """OCPI 2.2.1 ModuleID."""

    CDRS = "cdrs"
    CHARGING_PROFILES = "chargingprofiles"
    COMMANDS = "commands"
    CREDENTIALS = "credentials"
    HUB_CLIENT_INFO = "hubclientinfo"
    LOCATIONS = "locations"
    SESSIONS = "sessions"
    TARIFFS = "tariffs"
    TOKENS = "tokens"


class InterfaceRole(models.TextChoices):
    SENDER = "SENDER"
    RECEIVER = "RECEIVER"


class OutboxStatus(models.TextChoices):
    PENDING = "PENDING", "Waiting to be delivered"
    DELIVERED = "DELIVERED", "Delivered"
    # The partner refused it (an OCPI client error) OCPI_OUTBOX_REFUSED_ATTEMPTS times: set aside for the
    # operator, so that the object's later updates are not held behind it forever.
    REFUSED = "REFUSED", "Refused by the partner"


class RealtimeAuthFallback(models.TextChoices):
    """What a charger is told when the partner does not answer a real-time authorisation in time."""

    REJECT = "REJECT", "Refuse the token"
    ACCEPT = "ACCEPT", "Accept the token (the partner bears the risk it agreed to)"
