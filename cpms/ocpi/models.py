"""What the OCPI layer keeps: our CPO parties, the partners registered with them, the tokens they pushed,
the durable outbox of everything we push, and per-object push state. Domain data stays in the domain apps:
a partner's token is an `IdToken` (so every charger path authorises it like any other), a roaming session is
a `ChargingSession`, its CDR a `ChargeDetailRecord`."""

from django.db import models

from accounts.models import Organisation
from cpms.ocpi.enums import OutboxStatus, PartnerStatus, RealtimeAuthFallback
from sessions.models import ChargingSession, IdToken
from stations.models import Command, Site


class OcpiParty(models.Model):
    """Our identity as a charge point operator towards roaming partners: one per organisation (several per
    installation). Every object we publish carries its country code and party id."""

    organisation = models.OneToOneField(Organisation, on_delete=models.CASCADE, related_name="ocpi_party")
    country_code = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2, upper case.")
    party_id = models.CharField(max_length=3, help_text="ISO 15118 party id: 3 upper-case letters or digits.")
    name = models.CharField(max_length=100, help_text="Business name sent in the credentials.")
    website = models.URLField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "OCPI party"
        verbose_name_plural = "OCPI parties"
        constraints = [
            models.UniqueConstraint(fields=["country_code", "party_id"], name="ocpi_party_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.country_code}*{self.party_id}"


class OcpiPartner(models.Model):
    """One OCPI connection (a platform: an eMSP directly, or a hub routing for many parties) with one of our
    parties. Its tokens are secrets: the one it calls us with is kept as a SHA-256 hash only, the one we call it
    with encrypted at rest (`cpms.secret_box`)."""

    party = models.ForeignKey(OcpiParty, on_delete=models.PROTECT, related_name="partners")
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=PartnerStatus.choices, default=PartnerStatus.PENDING)
    # SHA-256 (hex) of the token this partner calls us with: token A until it registers, then the token we
    # issued in the credentials exchange (C when it registered with us, B when we registered with it).
    incoming_token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    # The token we call the partner with (B or C), Fernet-encrypted. Never shown.
    outgoing_token_encrypted = models.TextField(blank=True, editable=False)
    versions_url = models.URLField(max_length=500, blank=True, help_text="The partner's versions endpoint.")
    version = models.CharField(max_length=8, blank=True)
    # The partner's 2.2.1 endpoints: [{"identifier": "tokens", "role": "SENDER", "url": "..."}].
    endpoints = models.JSONField(default=list, blank=True)
    # The partner's credentials roles: [{"role": "EMSP", "country_code": "NL", "party_id": "ABC",
    # "business_details": {...}}]. A platform with the HUB role routes for parties not listed here.
    roles = models.JSONField(default=list, blank=True)
    realtime_auth_fallback = models.CharField(
        max_length=8, choices=RealtimeAuthFallback.choices, default=RealtimeAuthFallback.REJECT
    )
    allow_charging_profiles = models.BooleanField(
        default=False, help_text="Whether the partner may set charging profiles on its drivers' sessions."
    )
    publish_all_sites = models.BooleanField(
        default=True, help_text="Publish every site of the organisation (else only the sites listed)."
    )
    published_sites = models.ManyToManyField(Site, blank=True, related_name="+")
    # The group its drivers' tokens join: a tariff assigned to this group is that partner's tariff.
    id_token_group = models.OneToOneField(
        IdToken, on_delete=models.SET_NULL, null=True, blank=True, related_name="ocpi_partner_group"
    )
    # How far the push sweeps have gone for this partner, per module: {"locations": "<iso datetime>"}.
    pushed_until = models.JSONField(default=dict, blank=True)
    # The outbox of this partner is delivered by one worker at a time: a lease, taken with a conditional
    # UPDATE, so that two workers never reorder one object's updates.
    outbox_lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    registered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "OCPI partner"
        ordering = ["party_id", "name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=PartnerStatus.values), name="ocpi_partner_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class OcpiToken(models.Model):
    """A token a partner pushed (or one it authorised in real time), mirrored by an `IdToken` of the
    partner's organisation so that chargers, local lists and site access rules treat it like any other."""

    partner = models.ForeignKey(OcpiPartner, on_delete=models.CASCADE, related_name="tokens")
    id_token = models.OneToOneField(IdToken, on_delete=models.CASCADE, related_name="ocpi")
    country_code = models.CharField(max_length=2)
    party_id = models.CharField(max_length=3)
    uid = models.CharField(max_length=36)
    type = models.CharField(max_length=16)
    contract_id = models.CharField(max_length=36)
    # The whole OCPI Token object as last received (visual_number, issuer, group_id, whitelist, language,
    # energy_contract...): served back and used for cdr_token.
    data = models.JSONField(default=dict)
    # Pushed by the partner, or learnt from a real-time authorisation (not in any local list).
    realtime = models.BooleanField(default=False)
    last_updated = models.DateTimeField(help_text="The partner's last_updated of the object.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "OCPI token"
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "country_code", "party_id", "uid", "type"], name="ocpi_token_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.country_code}*{self.party_id}:{self.uid}"


class OcpiSession(models.Model):
    """A roaming driver's session as we report it to its partner: how it was authorised, and what was last
    pushed (so that the sweep pushes only what changed)."""

    session = models.OneToOneField(ChargingSession, on_delete=models.CASCADE, related_name="ocpi")
    partner = models.ForeignKey(OcpiPartner, on_delete=models.PROTECT, related_name="sessions")
    token = models.ForeignKey(OcpiToken, on_delete=models.PROTECT, related_name="sessions")
    auth_method = models.CharField(max_length=16, help_text="AUTH_REQUEST, COMMAND or WHITELIST.")
    authorization_reference = models.CharField(max_length=36, blank=True)
    # The Session object last pushed (PUT or PATCH), or None before the first push.
    pushed = models.JSONField(null=True, blank=True)
    pushed_at = models.DateTimeField(null=True, blank=True)
    cdr_pushed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "OCPI session"

    def __str__(self) -> str:
        return f"{self.partner_id}:{self.session_id}"


class OcpiAuthorization(models.Model):
    """A real-time authorisation or a START_SESSION the partner gave, waiting for the session it allows:
    the session that opens with its token on its location takes its authorization_reference."""

    partner = models.ForeignKey(OcpiPartner, on_delete=models.CASCADE, related_name="authorizations")
    token = models.ForeignKey(OcpiToken, on_delete=models.CASCADE, related_name="authorizations")
    auth_method = models.CharField(max_length=16)
    authorization_reference = models.CharField(max_length=36, blank=True)
    site = models.ForeignKey(Site, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["token", "used_at"], name="ocpi_auth_token_unused")]


class OcpiCommand(models.Model):
    """A command a partner sent (commands module, or a charging profile request), the OCPP command it became,
    and the asynchronous result owed to its response_url."""

    partner = models.ForeignKey(OcpiPartner, on_delete=models.CASCADE, related_name="commands")
    module = models.CharField(max_length=20, default="commands")
    command = models.CharField(max_length=24, help_text="START_SESSION, ..., or SET/GET/CLEAR_PROFILE.")
    request = models.JSONField()
    response_url = models.URLField(max_length=500)
    # The party that sent it (the partner's own, or through a hub the one in OCPI-from-*): its result is
    # addressed to that party (OCPI-to-*).
    from_country_code = models.CharField(max_length=2, blank=True)
    from_party_id = models.CharField(max_length=3, blank=True)
    ocpp_command = models.ForeignKey(
        Command, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    result = models.CharField(max_length=24, blank=True, help_text="The result sent to response_url.")
    created_at = models.DateTimeField(auto_now_add=True)
    result_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "OCPI command"
        ordering = ["-created_at"]
        indexes = [
            # A repeated command is found by its response_url (`commands._accept`).
            models.Index(fields=["partner", "module", "response_url"], name="ocpi_command_repeat")
        ]


class OcpiClientInfo(models.Model):
    """HubClientInfo: a party a hub routes for, and whether it is connected."""

    partner = models.ForeignKey(OcpiPartner, on_delete=models.CASCADE, related_name="client_infos")
    country_code = models.CharField(max_length=2)
    party_id = models.CharField(max_length=3)
    role = models.CharField(max_length=8)
    status = models.CharField(max_length=16, help_text="CONNECTED, OFFLINE, PLANNED or SUSPENDED.")
    last_updated = models.DateTimeField()

    class Meta:
        verbose_name = "OCPI hub client"
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "country_code", "party_id", "role"], name="ocpi_client_info_unique"
            ),
        ]


class OcpiLocation(models.Model):
    """What OCPI publishes of a site beyond what the site holds: facilities, opening hours, parking type and
    whether it is published at all."""

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="ocpi")
    publish = models.BooleanField(default=True)
    parking_type = models.CharField(max_length=24, blank=True, help_text="OCPI ParkingType, e.g. ON_STREET.")
    facilities = models.JSONField(default=list, blank=True, help_text="OCPI Facility values.")
    # OCPI Hours: {"twentyfourseven": true} or {"twentyfourseven": false, "regular_hours": [...]}.
    opening_times = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "OCPI location"


class OcpiOutboxItem(models.Model):
    """One push to a partner, kept until the partner acknowledged it. Items of one object (`object_key`) are
    delivered in the order they were queued; an item waits while an older one of its object is undelivered."""

    partner = models.ForeignKey(OcpiPartner, on_delete=models.CASCADE, related_name="outbox")
    module = models.CharField(max_length=20)
    object_key = models.CharField(max_length=120, help_text="Items with the same key are delivered in order.")
    method = models.CharField(max_length=6)
    # Appended to the partner's receiver endpoint of `module`, e.g. "/NL/ABC/12/3"; or a whole URL (`url`) for
    # a command result going to its response_url.
    path = models.CharField(max_length=300, blank=True)
    url = models.URLField(max_length=500, blank=True)
    body = models.JSONField(null=True, blank=True)
    # The routing headers' receiver (the party the object concerns; through a hub, the party behind it).
    to_country_code = models.CharField(max_length=2, blank=True)
    to_party_id = models.CharField(max_length=3, blank=True)
    status = models.CharField(max_length=10, choices=OutboxStatus.choices, default=OutboxStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "OCPI outbox item"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["partner", "status", "next_attempt_at"], name="ocpi_outbox_due"),
            models.Index(fields=["partner", "object_key", "status"], name="ocpi_outbox_object"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=OutboxStatus.values), name="ocpi_outbox_status_valid"
            ),
        ]
