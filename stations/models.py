import secrets

from django.conf import settings
from django.db import models

from accounts.models import Organisation
from stations.enums import (
    CertificateAuthorityPurpose,
    CertificateSource,
    CertificateStatus,
    CertificateUse,
    CommandSource,
    CommandStatus,
    ConnectorStatus,
    ConnectorType,
    IncidentKind,
    JobKind,
    JobStatus,
    JobTargetStatus,
    MessageDirection,
    OcppVersion,
    RegistrationStatus,
    SecurityEventKind,
    StationEventKind,
    UploadKind,
)


class SiteAccessMode(models.TextChoices):
    """Who may charge at a site (kept here with its model: stations/enums.py belongs to others)."""

    PUBLIC = "public", "Public: every id token the organisation accepts"
    RESTRICTED = "restricted", "Restricted: members of the allowed groups only"


class Site(models.Model):
    """A place with chargers behind one grid connection; prices and access are usually set per site.

    `access_mode` restricted: only id tokens that are, or belong to, one of the site's allowed groups
    (sessions.models.SiteAccessGroup) may charge here (sessions.services.tokens.id_token_allowed_q)."""

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="sites")
    name = models.CharField(max_length=200)
    time_zone = models.CharField(max_length=64, default="UTC")
    address = models.CharField(max_length=300, blank=True)
    city = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2")
    latitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    longitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    grid_capacity_w = models.BigIntegerField(
        null=True, blank=True, help_text="Grid connection capacity in watts (all phases)."
    )
    access_mode = models.CharField(
        max_length=16, choices=SiteAccessMode.choices, default=SiteAccessMode.PUBLIC
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # When the site's own fields last changed (what roaming partners are sent as its Location's last_updated).
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organisation_id", "name"]
        permissions = [("operate_site", "Operate the stations of a site (site host)")]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "name"], name="site_name_unique_per_org"),
            models.CheckConstraint(
                condition=models.Q(access_mode__in=SiteAccessMode.values), name="site_access_mode_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(grid_capacity_w__isnull=True) | models.Q(grid_capacity_w__gte=0),
                name="site_grid_capacity_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ChargingStation(models.Model):
    """A charger, identified on the wire by `identity` (the last path segment of its OCPP URL)."""

    identity = models.CharField(max_length=48, unique=True)
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="stations")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="stations", null=True, blank=True)
    name = models.CharField(max_length=200, blank=True)

    vendor = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=50, blank=True)
    serial_number = models.CharField(max_length=50, blank=True)
    firmware_version = models.CharField(max_length=50, blank=True)
    iccid = models.CharField(max_length=20, blank=True)
    imsi = models.CharField(max_length=20, blank=True)
    meter_type = models.CharField(max_length=25, blank=True)
    meter_serial_number = models.CharField(max_length=25, blank=True)

    protocol = models.CharField(max_length=16, choices=OcppVersion.choices, blank=True)
    registration_status = models.CharField(
        max_length=16, choices=RegistrationStatus.choices, default=RegistrationStatus.ACCEPTED
    )
    # 0: no authentication (trusted network only); 1: HTTP Basic over ws://; 2: Basic over TLS; 3: client cert.
    security_profile = models.PositiveSmallIntegerField(default=1)
    # The highest profile the station has connected with: it is never accepted at a lower one again
    # (docs/reliability.md case 3).
    security_profile_seen = models.PositiveSmallIntegerField(default=0)
    # "hmac-sha256$<salt>$<hex>"; empty means no password set (allowed only with security_profile 0).
    password_hash = models.CharField(max_length=200, blank=True)
    # A new password sent to the charger (1.6 AuthorizationKey / 2.0.1 BasicAuthPassword) and the command that
    # carries it, written before the command is sent. The handshake accepts it beside `password_hash` until
    # the charger's answer is committed (Accepted: it replaces `password_hash`; Rejected: it is dropped) or
    # the charger connects with it: a crash in between locks nobody out (docs/reliability.md case 5).
    pending_password_hash = models.CharField(max_length=200, blank=True)
    pending_password_command = models.ForeignKey(
        "Command", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    is_connected = models.BooleanField(default=False)
    # Which WebSocket holds the station now: a superseded connection's late disconnect must not mark the
    # station offline (docs/reliability.md case 6).
    connection_id = models.CharField(max_length=64, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_boot_at = models.DateTimeField(null=True, blank=True)
    heartbeat_interval_s = models.PositiveIntegerField(default=300)
    # Status of the whole station (1.6 connectorId 0).
    status = models.CharField(max_length=20, choices=ConnectorStatus.choices, default=ConnectorStatus.UNKNOWN)
    error_code = models.CharField(max_length=50, blank=True)
    firmware_status = models.CharField(max_length=50, blank=True)
    diagnostics_status = models.CharField(max_length=50, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["identity"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(security_profile__lte=3), name="station_security_profile_0_to_3"
            ),
            models.CheckConstraint(
                condition=models.Q(registration_status__in=RegistrationStatus.values),
                name="station_registration_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.identity


# An EVSE's public code: lower-case letters and digits without the look-alikes 0/o, 1/l/i, so that a driver
# can type it from a label. 31**10 ~ 8e14 codes: a collision among a million EVSEs has odds ~6e-4 and is
# refused by the unique constraint, never silently shared.
PUBLIC_CODE_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
PUBLIC_CODE_LENGTH = 10


def public_code_new() -> str:
    """A new random EVSE public code (the model field's default: every new row gets its own, bulk_create
    included)."""
    return "".join(secrets.choice(PUBLIC_CODE_ALPHABET) for _ in range(PUBLIC_CODE_LENGTH))


class Evse(models.Model):
    """An EVSE (2.0.1) or a 1.6 connector > 0, which maps to EVSE n with connector 1.

    `public_code` names the EVSE in its public URL (the driver's page behind its QR code,
    stations.selectors.evse_public_url): random, so that URLs cannot be enumerated, and never changed, since
    it is printed on labels."""

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="evses")
    evse_id = models.PositiveIntegerField()
    max_power_w = models.PositiveIntegerField(null=True, blank=True)
    public_code = models.CharField(max_length=16, unique=True, default=public_code_new, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["station_id", "evse_id"]
        constraints = [
            models.UniqueConstraint(fields=["station", "evse_id"], name="evse_unique_per_station"),
            models.CheckConstraint(condition=models.Q(evse_id__gte=1), name="evse_id_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.station_id}/{self.evse_id}"


class Connector(models.Model):
    evse = models.ForeignKey(Evse, on_delete=models.CASCADE, related_name="connectors")
    connector_id = models.PositiveIntegerField(default=1)
    connector_type = models.CharField(
        max_length=20, choices=ConnectorType.choices, default=ConnectorType.UNKNOWN
    )
    max_power_w = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=ConnectorStatus.choices, default=ConnectorStatus.UNKNOWN)
    error_code = models.CharField(max_length=50, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    # When its definition (type, power) last changed; status changes are written with update() and leave it.
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["evse_id", "connector_id"]
        constraints = [
            models.UniqueConstraint(fields=["evse", "connector_id"], name="connector_unique_per_evse"),
            models.CheckConstraint(condition=models.Q(connector_id__gte=1), name="connector_id_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.evse}/{self.connector_id}"


class StatusChange(models.Model):
    """Append-only status history: uptime and MTTR are computed from it.

    `evse_id`/`connector_id` are both null for the whole station (1.6 connectorId 0) and for
    connection events (status Unavailable with info "offline" when the socket drops).
    """

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="status_changes")
    evse_id = models.PositiveIntegerField(null=True, blank=True)
    connector_id = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=ConnectorStatus.choices)
    error_code = models.CharField(max_length=50, blank=True)
    info = models.CharField(max_length=255, blank=True)
    vendor_id = models.CharField(max_length=255, blank=True)
    vendor_error_code = models.CharField(max_length=50, blank=True)
    occurred_at = models.DateTimeField(
        help_text="The charger's timestamp (our receive time when it sent none)."
    )
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["station", "received_at"], name="statuschange_station_time")]


class OcppMessage(models.Model):
    """Raw OCPP frames for troubleshooting. Written in batches; purged after OCPP_MESSAGE_LOG_DAYS."""

    station = models.ForeignKey(
        ChargingStation, on_delete=models.CASCADE, related_name="messages", null=True, blank=True
    )
    identity = models.CharField(max_length=48)
    direction = models.CharField(max_length=3, choices=MessageDirection.choices)
    message_type = models.PositiveSmallIntegerField()
    unique_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=64, blank=True)
    payload = models.TextField()
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["station", "created_at"], name="ocppmessage_station_time")]


class StationEvent(models.Model):
    """Notifications that are kept but drive no state machine: DataTransfer, firmware/diagnostics status."""

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32, choices=StationEventKind.choices)
    detail = models.JSONField(default=dict)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["station", "received_at"], name="stationevent_station_time")]


class SecurityEvent(models.Model):
    """Security log: refused handshakes, protocol abuse, and charger-reported security events."""

    station = models.ForeignKey(
        ChargingStation, on_delete=models.CASCADE, related_name="security_events", null=True, blank=True
    )
    identity = models.CharField(max_length=100)
    kind = models.CharField(max_length=32, choices=SecurityEventKind.choices)
    detail = models.CharField(max_length=500, blank=True)
    remote_addr = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["identity", "created_at"], name="securityevent_identity_time")]


class DeviceVariable(models.Model):
    """One attribute of one variable of one component of a 2.0.1 device model (NotifyReport), or a 1.6
    configuration key (component "OCPP16", variable = key). Upserted: the latest report wins."""

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="device_variables")
    component = models.CharField(max_length=50)
    component_instance = models.CharField(max_length=50, blank=True)
    # 0 = not tied to an EVSE / connector (a plain unique constraint needs non-null columns).
    evse_id = models.PositiveIntegerField(default=0)
    connector_id = models.PositiveIntegerField(default=0)
    variable = models.CharField(max_length=50)
    variable_instance = models.CharField(max_length=50, blank=True)
    attribute_type = models.CharField(max_length=10, default="Actual")
    value = models.CharField(max_length=2500, blank=True)
    mutability = models.CharField(max_length=10, blank=True)
    persistent = models.BooleanField(null=True, blank=True)
    constant = models.BooleanField(null=True, blank=True)
    data_type = models.CharField(max_length=20, blank=True)
    unit = models.CharField(max_length=16, blank=True)
    min_limit = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    max_limit = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    values_list = models.CharField(max_length=1000, blank=True)
    supports_monitoring = models.BooleanField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["station_id", "component", "component_instance", "evse_id", "variable", "attribute_type"]
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "station",
                    "component",
                    "component_instance",
                    "evse_id",
                    "connector_id",
                    "variable",
                    "variable_instance",
                    "attribute_type",
                ],
                name="devicevariable_unique_attribute",
            )
        ]

    def __str__(self) -> str:
        return f"{self.component}/{self.variable}[{self.attribute_type}]"


class ConfigurationTemplate(models.Model):
    """Settings applied to many stations at once. `settings` is, for OCPP 1.6, a list of
    {"key", "value"} (ChangeConfiguration) and, for 2.0.1/2.1, a list of
    {"component", "variable", "value", optional "attributeType", "componentInstance", "variableInstance",
    "evseId", "connectorId"} (SetVariables)."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="config_templates")
    name = models.CharField(max_length=200)
    protocol = models.CharField(max_length=16, choices=OcppVersion.choices)
    settings = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organisation_id", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "name"], name="configtemplate_name_unique_per_org"
            )
        ]

    def __str__(self) -> str:
        return self.name


class FirmwareFile(models.Model):
    """A firmware image stored by the platform and served to chargers at an unguessable URL."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="firmware_files")
    name = models.CharField(max_length=200)
    version = models.CharField(max_length=50)
    file = models.FileField(upload_to="firmware/")
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    # Chargers download with this token in the URL: they cannot send our API credentials.
    download_token = models.CharField(max_length=64, unique=True)
    # Security whitepaper / 2.0.1 signed firmware: the signature and the PEM signing certificate.
    signature = models.TextField(blank=True)
    signing_certificate = models.TextField(blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


class CommandJob(models.Model):
    """A bulk operation over many stations (configuration template, firmware campaign, one command to a
    fleet), run by a Celery task in batches; progress is `done_count + failed_count` of `total`."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="command_jobs")
    kind = models.CharField(max_length=24, choices=JobKind.choices)
    action = models.CharField(max_length=64, blank=True)
    request = models.JSONField(default=dict, blank=True)
    template = models.ForeignKey(
        ConfigurationTemplate, on_delete=models.PROTECT, null=True, blank=True, related_name="jobs"
    )
    firmware = models.ForeignKey(
        FirmwareFile, on_delete=models.PROTECT, null=True, blank=True, related_name="jobs"
    )
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The lease (cpms/jobs.py): set while a run lives; a job whose worker died is queued again by the sweep.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(
        default=1, help_text="Which attempt this is: 1, and one more each time its worker was lost."
    )
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"


class CommandJobTarget(models.Model):
    """One station of a bulk job, with its own outcome."""

    job = models.ForeignKey(CommandJob, on_delete=models.CASCADE, related_name="targets")
    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="job_targets")
    status = models.CharField(max_length=16, choices=JobTargetStatus.choices, default=JobTargetStatus.PENDING)
    detail = models.CharField(max_length=500, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job_id", "station_id"]
        constraints = [models.UniqueConstraint(fields=["job", "station"], name="jobtarget_unique_station")]


class Command(models.Model):
    """One CSMS->charger OCPP call: who asked, what, when, and how it ended.

    Written (status pending) before anything is sent, so a command never lives only in the channel
    layer; the server process that holds the connection claims it (pending -> sent) exactly once."""

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="commands")
    action = models.CharField(max_length=64)
    request = models.JSONField()
    status = models.CharField(max_length=16, choices=CommandStatus.choices, default=CommandStatus.PENDING)
    response = models.JSONField(null=True, blank=True)
    # A CALLERROR's code (as the charger spelt it), or ours: NotConnected, NotDelivered, Disconnected.
    error_code = models.CharField(max_length=64, blank=True)
    error_description = models.CharField(max_length=500, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    source = models.CharField(max_length=16, choices=CommandSource.choices, default=CommandSource.API)
    job = models.ForeignKey(
        CommandJob, on_delete=models.SET_NULL, null=True, blank=True, related_name="commands"
    )
    timeout_s = models.FloatField()
    # Outbox: a command for an offline station waits until this time for the station to connect.
    queued_until = models.DateTimeField(null=True, blank=True)
    unique_id = models.CharField(max_length=36, blank=True, help_text="OCPP message id of the CALL")
    created_at = models.DateTimeField(db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["station", "created_at"], name="command_station_time"),
            # Servers look for work with `status = 'pending'`: keep that lookup off the history.
            models.Index(
                fields=["station"], name="command_pending", condition=models.Q(status=CommandStatus.PENDING)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} -> {self.station_id} ({self.status})"

    @property
    def round_trip_ms(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.created_at).total_seconds() * 1000


class FirmwareUpdate(models.Model):
    """One station's firmware update (UpdateFirmware / SignedUpdateFirmware), followed by its status
    notifications."""

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="firmware_updates")
    firmware = models.ForeignKey(FirmwareFile, on_delete=models.PROTECT, related_name="updates")
    job = models.ForeignKey(CommandJob, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    command = models.ForeignKey(Command, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    request_id = models.IntegerField(null=True, blank=True, help_text="2.0.1 requestId")
    status = models.CharField(max_length=40, blank=True, help_text="Last FirmwareStatus reported")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class DiagnosticsUpload(models.Model):
    """A diagnostics (1.6 GetDiagnostics) or log (GetLog) file the charger uploads to our upload URL."""

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="uploads")
    kind = models.CharField(max_length=16, choices=UploadKind.choices)
    command = models.ForeignKey(Command, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    request_id = models.IntegerField(null=True, blank=True, help_text="GetLog requestId")
    upload_token = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=40, blank=True, help_text="Last upload status reported")
    file = models.FileField(upload_to="uploads/", blank=True)
    file_name = models.CharField(max_length=255, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    uploaded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class Incident(models.Model):
    """A problem that takes a station or EVSE out of service, from detection to resolution.

    `occurred_at` is when the problem began (the charger's timestamp of the fault, or the last moment an
    offline station was heard from); `detected_at` is when the CPMS raised the alert. MTTD is their
    difference, MTTR runs from `detected_at` to `resolved_at`. `evse_id`/`connector_id` are the wire ids,
    0 for the whole station. At most one incident of a kind is open per station/EVSE/connector.
    """

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="incidents")
    site = models.ForeignKey(Site, on_delete=models.SET_NULL, null=True, blank=True, related_name="incidents")
    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="incidents")
    evse_id = models.PositiveIntegerField(default=0)
    connector_id = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=16, choices=IncidentKind.choices)
    code = models.CharField(max_length=64, blank=True, help_text="Error code, event code or 'Offline'")
    detail = models.CharField(max_length=500, blank=True)
    occurred_at = models.DateTimeField()
    detected_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty when the station itself reported the recovery.",
    )
    resolved_remotely = models.BooleanField(
        null=True, blank=True, help_text="Resolved without a site visit (set when resolved)."
    )
    resolution_note = models.CharField(max_length=500, blank=True)
    notified_at = models.DateTimeField(null=True, blank=True, help_text="When the alert emails went out.")

    class Meta:
        ordering = ["-detected_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["station", "kind", "evse_id", "connector_id"],
                condition=models.Q(resolved_at__isnull=True),
                name="incident_one_open_per_place",
            ),
            models.CheckConstraint(
                condition=models.Q(detected_at__gte=models.F("occurred_at")), name="incident_detected_after"
            ),
            models.CheckConstraint(
                condition=models.Q(resolved_at__isnull=True)
                | models.Q(resolved_at__gte=models.F("occurred_at")),
                name="incident_resolved_after",
            ),
        ]
        indexes = [
            models.Index(fields=["organisation", "detected_at"], name="incident_org_detected"),
            models.Index(fields=["station", "resolved_at"], name="incident_station_resolved"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.get_kind_display()} {self.code} on {self.station_id} at {self.detected_at:%Y-%m-%d %H:%M}"
        )


class CertificateAuthority(models.Model):
    """A certificate authority an organisation holds (its private key encrypted at rest, `cpms.secret_box`)
    or only trusts (no key: a trust anchor, or a CA that signs through an external service). Nobody reads
    the key through any interface."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="certificate_authorities"
    )
    name = models.CharField(max_length=200)
    purpose = models.CharField(max_length=20, choices=CertificateAuthorityPurpose.choices)
    certificate_pem = models.TextField()
    private_key_encrypted = models.TextField(blank=True, editable=False)
    # The next CRL's number (RFC 5280 5.2.3): a CRL published by this CA counts up.
    crl_number = models.PositiveIntegerField(default=0, editable=False)
    active = models.BooleanField(default=True)
    not_after = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organisation_id", "purpose", "-created_at"]
        verbose_name_plural = "certificate authorities"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(purpose__in=CertificateAuthorityPurpose.values), name="ca_purpose_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class StationCertificate(models.Model):
    """The certificate inventory: every certificate we signed for a station, installed on one, or that one
    reported (GetInstalledCertificateIds), named as OCPP names it (CertificateHashData)."""

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    station = models.ForeignKey(
        ChargingStation, on_delete=models.SET_NULL, null=True, blank=True, related_name="certificates"
    )
    use = models.CharField(max_length=32, choices=CertificateUse.choices)
    source = models.CharField(max_length=10, choices=CertificateSource.choices)
    status = models.CharField(
        max_length=10, choices=CertificateStatus.choices, default=CertificateStatus.ACTIVE
    )
    hash_algorithm = models.CharField(max_length=8, default="SHA256")
    issuer_name_hash = models.CharField(max_length=128)
    issuer_key_hash = models.CharField(max_length=128)
    serial_number = models.CharField(max_length=40, help_text="Hexadecimal, without leading zeroes.")
    subject = models.CharField(max_length=500, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    not_after = models.DateTimeField(null=True, blank=True)
    certificate_pem = models.TextField(blank=True)
    issued_by = models.ForeignKey(
        CertificateAuthority, on_delete=models.PROTECT, null=True, blank=True, related_name="issued"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revocation_reason = models.CharField(max_length=200, blank=True)
    # When the expiry job last asked the station for a new certificate (TriggerMessage SignCertificate).
    renewal_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["station", "use", "issuer_name_hash", "issuer_key_hash", "serial_number"],
                name="station_certificate_unique",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=CertificateStatus.values),
                name="station_certificate_status_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "not_after"], name="station_cert_expiry"),
            models.Index(fields=["issuer_key_hash", "serial_number"], name="station_cert_serial"),
        ]

    def __str__(self) -> str:
        return f"{self.use} {self.serial_number}"


class OcspResponseCache(models.Model):
    """An OCSP answer about one certificate (named by its CertificateHashData), kept until its nextUpdate:
    GetCertificateStatus and Plug&Charge Authorize ask the responder at most once per validity."""

    hash_algorithm = models.CharField(max_length=8, default="SHA256")
    issuer_name_hash = models.CharField(max_length=128)
    issuer_key_hash = models.CharField(max_length=128)
    serial_number = models.CharField(max_length=40)
    responder_url = models.URLField(max_length=500)
    status = models.CharField(max_length=10, help_text="good, revoked or unknown (RFC 6960 CertStatus).")
    response_der_b64 = models.TextField(
        help_text="The DER-encoded OCSPResponse, base64 (what OCPP forwards)."
    )
    this_update = models.DateTimeField()
    next_update = models.DateTimeField(null=True, blank=True)
    fetched_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "hash_algorithm",
                    "issuer_name_hash",
                    "issuer_key_hash",
                    "serial_number",
                    "responder_url",
                ],
                name="ocsp_cache_unique",
            ),
        ]
