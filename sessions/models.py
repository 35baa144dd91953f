from django.conf import settings
from django.db import models

from accounts.models import Organisation
from sessions.enums import AnomalyKind, IdTokenStatus, IdTokenType, ReservationStatus, SessionStatus
from stations.models import ChargingStation, Command, Connector, Evse, Site


class IdToken(models.Model):
    """An RFID card, app account or other token that may start charging (1.6 idTag, 2.0.1 idToken)."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="id_tokens")
    value = models.CharField(max_length=255)
    type = models.CharField(max_length=20, choices=IdTokenType.choices, default=IdTokenType.ISO14443)
    status = models.CharField(max_length=16, choices=IdTokenStatus.choices, default=IdTokenStatus.ACCEPTED)
    expires_at = models.DateTimeField(null=True, blank=True)
    # 1.6 parentIdTag / 2.0.1 groupIdToken: a token that groups others (a fleet, members, ...).
    group = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="members"
    )
    owner_name = models.CharField(max_length=200, blank=True)
    owner_email = models.EmailField(blank=True)
    # Where the token may charge: nowhere restricted when both are empty (the whole organisation).
    allowed_sites = models.ManyToManyField(Site, blank=True, related_name="+")
    allowed_stations = models.ManyToManyField(ChargingStation, blank=True, related_name="+")
    # Sent to chargers in their local authorisation list (SendLocalList) when true.
    in_local_list = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organisation_id", "value"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "value"], name="idtoken_value_unique_per_org"),
            models.CheckConstraint(
                condition=models.Q(status__in=IdTokenStatus.values), name="idtoken_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.value


class ChargingSession(models.Model):
    """One transaction on one connector, whichever OCPP version reported it.

    `transaction_id` is the id on the wire: for 1.6 the decimal string of the integer we issued (the row's
    own primary key, never reused), for 2.0.1 the charger's string. Unique per station.
    """

    station = models.ForeignKey(ChargingStation, on_delete=models.PROTECT, related_name="sessions")
    evse = models.ForeignKey(Evse, on_delete=models.PROTECT, related_name="sessions", null=True, blank=True)
    connector = models.ForeignKey(
        Connector, on_delete=models.PROTECT, related_name="sessions", null=True, blank=True
    )
    transaction_id = models.CharField(max_length=36)
    id_token = models.ForeignKey(
        IdToken, on_delete=models.SET_NULL, related_name="sessions", null=True, blank=True
    )
    id_tag = models.CharField(max_length=255, blank=True, help_text="The token as the charger presented it.")
    id_token_status = models.CharField(max_length=16, choices=IdTokenStatus.choices, blank=True)

    started_at = models.DateTimeField(help_text="The charger's start timestamp.")
    start_received_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    stop_received_at = models.DateTimeField(null=True, blank=True)
    # Null until a register reading arrives (a 2.0.1 Started event may carry no meter value).
    meter_start_wh = models.BigIntegerField(null=True, blank=True)
    meter_stop_wh = models.BigIntegerField(null=True, blank=True)
    # Last energy register reading seen (Energy.Active.Import.Register), for running totals.
    meter_last_wh = models.BigIntegerField(null=True, blank=True)
    meter_last_at = models.DateTimeField(null=True, blank=True)
    energy_wh = models.BigIntegerField(null=True, blank=True)
    stop_reason = models.CharField(max_length=50, blank=True)
    # 2.0.1 chargingState (Charging, EVConnected, SuspendedEV, SuspendedEVSE, Idle); 1.6 leaves it blank.
    charging_state = models.CharField(max_length=20, blank=True)
    status = models.CharField(max_length=16, choices=SessionStatus.choices, default=SessionStatus.ACTIVE)
    flags = models.JSONField(default=list, blank=True)
    held_for_review = models.BooleanField(default=False)
    offline = models.BooleanField(default=False)
    reservation_id = models.IntegerField(null=True, blank=True)
    remote_start_id = models.IntegerField(null=True, blank=True)
    # Hash of a 1.6 StartTransaction's content: a start re-sent after a reconnect (new message id,
    # same content) finds its session instead of opening a second one.
    start_fingerprint = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["station", "transaction_id"], name="session_txid_unique_per_station"
            ),
            models.UniqueConstraint(
                fields=["station", "start_fingerprint"],
                condition=~models.Q(start_fingerprint=""),
                name="session_start_fingerprint_unique",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=SessionStatus.values), name="session_status_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["station", "status"], name="session_station_status"),
            models.Index(fields=["started_at"], name="session_started_at"),
        ]

    def __str__(self) -> str:
        return f"{self.station_id}:{self.transaction_id}"


class MeterValue(models.Model):
    """One sampled value. Append-only and large: never counted in full in the admin."""

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="+")
    session = models.ForeignKey(
        ChargingSession, on_delete=models.CASCADE, related_name="meter_values", null=True, blank=True
    )
    evse_id = models.PositiveIntegerField(null=True, blank=True)
    timestamp = models.DateTimeField()
    measurand = models.CharField(max_length=64, default="Energy.Active.Import.Register")
    phase = models.CharField(max_length=8, blank=True)
    location = models.CharField(max_length=16, blank=True)
    unit = models.CharField(max_length=16, blank=True)
    context = models.CharField(max_length=32, blank=True)
    # Null when the charger sent no number (signed data, or a value that is not a decimal).
    value = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    # Signed meter data (OCMF and the like), kept byte-for-byte as received.
    signed_data = models.TextField(blank=True)
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["timestamp", "id"]
        indexes = [
            models.Index(fields=["session", "timestamp"], name="metervalue_session_time"),
            models.Index(fields=["station", "timestamp"], name="metervalue_station_time"),
        ]


class SessionAnomaly(models.Model):
    """Something set aside for review: a stop for an unknown transaction, a duplicate stop, ..."""

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="session_anomalies")
    session = models.ForeignKey(
        ChargingSession, on_delete=models.CASCADE, related_name="anomalies", null=True, blank=True
    )
    kind = models.CharField(max_length=32, choices=AnomalyKind.choices)
    transaction_id = models.CharField(max_length=36, blank=True)
    detail = models.JSONField(default=dict)
    reviewed = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "session anomalies"


class TransactionEvent(models.Model):
    """One 2.0.1 TransactionEvent as received. (station, transaction_id, seq_no) is unique: the same event
    delivered twice is stored once and applied once (docs/reliability.md case 22). seqNo restarts per
    transaction."""

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="+")
    session = models.ForeignKey(ChargingSession, on_delete=models.CASCADE, related_name="events")
    transaction_id = models.CharField(max_length=36)
    seq_no = models.PositiveIntegerField()
    event_type = models.CharField(max_length=10)
    trigger_reason = models.CharField(max_length=32)
    timestamp = models.DateTimeField()
    received_at = models.DateTimeField()
    offline = models.BooleanField(default=False)
    charging_state = models.CharField(max_length=20, blank=True)
    payload = models.JSONField()

    class Meta:
        ordering = ["station_id", "transaction_id", "seq_no"]
        constraints = [
            models.UniqueConstraint(
                fields=["station", "transaction_id", "seq_no"], name="txevent_seqno_unique_per_transaction"
            )
        ]

    def __str__(self) -> str:
        return f"{self.transaction_id}#{self.seq_no} {self.event_type}"


class Reservation(models.Model):
    """A connector (or EVSE, or any connector of a station) held for one id token until `expires_at`.
    The OCPP reservationId is the row's primary key."""

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="reservations")
    evse = models.ForeignKey(Evse, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    connector = models.ForeignKey(
        Connector, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    id_token = models.ForeignKey(IdToken, on_delete=models.CASCADE, related_name="reservations")
    expires_at = models.DateTimeField()
    status = models.CharField(
        max_length=16, choices=ReservationStatus.choices, default=ReservationStatus.REQUESTED
    )
    # What the charger answered (Accepted, Occupied, Faulted, Unavailable, Rejected) or reported later.
    charger_status = models.CharField(max_length=32, blank=True)
    command = models.ForeignKey(Command, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    session = models.ForeignKey(
        ChargingSession, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "expires_at"], name="reservation_status_expiry")]


class LocalListEntry(models.Model):
    """One id token as a station holds it in its local authorisation list, after an accepted
    SendLocalList: what we last sent, so that the next update can be differential."""

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="local_list_entries")
    id_token = models.ForeignKey(IdToken, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16, choices=IdTokenStatus.choices)
    expires_at = models.DateTimeField(null=True, blank=True)
    group_value = models.CharField(max_length=255, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["station", "id_token"], name="locallistentry_unique_token")
        ]


class LocalListState(models.Model):
    """A station's local list version as last confirmed (SendLocalList Accepted / GetLocalListVersion)."""

    station = models.OneToOneField(ChargingStation, on_delete=models.CASCADE, related_name="local_list")
    version = models.IntegerField(default=0)
    reported_version = models.IntegerField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True)


class WaitlistStatus(models.TextChoices):
    """Life of a waitlist entry (kept here with its model: sessions/enums.py belongs to others)."""

    WAITING = "waiting", "Waiting"
    OFFERED = "offered", "Offered a connector"
    FULFILLED = "fulfilled", "Charging (fulfilled)"
    EXPIRED = "expired", "Offer expired"
    CANCELLED = "cancelled", "Left the waitlist"


WAITLIST_OPEN_STATUSES = (WaitlistStatus.WAITING, WaitlistStatus.OFFERED)


class WaitlistEntry(models.Model):
    """A driver queueing for a busy site: `id_token` is the token they will charge with (of the site's
    organisation). Queue order is (joined_at, id). Life (WaitlistStatus): waiting -> offered (a free connector
    held for them until `offer_expires_at`, with an OCPP reservation where the charger supports it) ->
    fulfilled (their token started a session at the site) or expired (the offer ran out); cancelled when they
    leave. A token holds at most one open (waiting or offered) entry per site."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="waitlist_entries")
    id_token = models.ForeignKey(IdToken, on_delete=models.CASCADE, related_name="waitlist_entries")
    contact_email = models.EmailField()
    status = models.CharField(max_length=16, choices=WaitlistStatus.choices, default=WaitlistStatus.WAITING)
    joined_at = models.DateTimeField()
    offered_at = models.DateTimeField(null=True, blank=True)
    offer_expires_at = models.DateTimeField(null=True, blank=True)
    offered_station = models.ForeignKey(
        ChargingStation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    offered_evse = models.ForeignKey(Evse, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    offered_connector = models.ForeignKey(
        Connector, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reservation = models.ForeignKey(
        Reservation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # When the offer email went out (claimed before sending, so two runs never send it twice).
    notified_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["joined_at", "id"]
        verbose_name_plural = "waitlist entries"
        constraints = [
            models.UniqueConstraint(
                fields=["site", "id_token"],
                condition=models.Q(status__in=["waiting", "offered"]),
                name="waitlist_one_open_entry_per_token",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=WaitlistStatus.values), name="waitlist_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["site", "status", "joined_at"], name="waitlist_site_queue")]

    def __str__(self) -> str:
        return f"{self.site_id}:{self.id_token_id} ({self.status})"


class SiteAccessGroup(models.Model):
    """A group id token allowed to charge at a site whose `access_mode` is restricted: the token itself and
    its members (tokens whose `group` it is). The site's rule, set by who holds the pricing right on the site
    (sessions.services.site_access), not a property of the token: it lives here because stations may not
    import sessions."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="access_groups")
    group = models.ForeignKey(IdToken, on_delete=models.CASCADE, related_name="site_access")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["site_id", "group_id"]
        constraints = [
            models.UniqueConstraint(fields=["site", "group"], name="siteaccessgroup_unique_per_site")
        ]

    def __str__(self) -> str:
        return f"{self.site_id}:{self.group_id}"
