from django.db import models

from accounts.models import Organisation
from stations.enums import (
    ConnectorStatus,
    ConnectorType,
    MessageDirection,
    OcppVersion,
    RegistrationStatus,
    SecurityEventKind,
    StationEventKind,
)


class Site(models.Model):
    """A place with chargers behind one grid connection; prices and access are usually set per site."""

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
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organisation_id", "name"]
        permissions = [("operate_site", "Operate the stations of a site (site host)")]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "name"], name="site_name_unique_per_org"),
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
    # "hmac-sha256$<salt>$<hex>"; empty means no password set (allowed only with security_profile 0).
    password_hash = models.CharField(max_length=200, blank=True)

    is_connected = models.BooleanField(default=False)
    # Which WebSocket holds the station now: a superseded connection's late disconnect must not mark the
    # station offline (RELIABILITY.md A6).
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


class Evse(models.Model):
    """An EVSE (2.0.1) or a 1.6 connector > 0, which maps to EVSE n with connector 1."""

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="evses")
    evse_id = models.PositiveIntegerField()
    max_power_w = models.PositiveIntegerField(null=True, blank=True)

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
