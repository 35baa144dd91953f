from django import forms
from django.contrib import admin, messages
from django.db.models import Q

import stations.admin_certificates
import stations.admin_firmware  # noqa: F401  (firmware, uploads, jobs)
from accounts.admin import (
    DomainValidatedForm,
    NoFullCountAdminMixin,
    ReadOnlyAdminMixin,
    ScopedInlineMixin,
    domain_errors_as_http,
    saved_adopt,
)
from cpms.errors import DomainError
from stations.admin_commands import StationCommandsMixin
from stations.admin_scope import SiteScopedAdminMixin
from stations.enums import RegistrationStatus
from stations.models import (
    ChargingStation,
    Connector,
    DeviceVariable,
    Evse,
    Incident,
    OcppMessage,
    SecurityEvent,
    Site,
    StationEvent,
    StatusChange,
)
from stations.scope import site_scope_q, station_scope_q
from stations.services.incidents import incident_acknowledge
from stations.services.management import (
    site_create,
    site_update,
    site_validate,
    station_create,
    station_update,
    station_validate,
)


class StationScopedAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    """A model reached from ChargingStation through `station_path` (e.g. "station__")."""

    station_path = "station__"

    def scope_q(self, *, user, capability) -> Q:
        return station_scope_q(user=user, capability=capability, prefix=self.station_path)


# --- sites ----------------------------------------------------------------------------------------


class SiteAdminForm(DomainValidatedForm):
    class Meta:
        model = Site
        fields = "__all__"

    def domain_validate(self) -> None:
        site_validate(self.instance)


SITE_FIELDS = [
    "name",
    "time_zone",
    "address",
    "city",
    "postal_code",
    "country",
    "latitude",
    "longitude",
    "grid_capacity_w",
]


@admin.register(Site)
class SiteAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    form = SiteAdminForm
    list_display = ["name", "organisation", "city", "country", "time_zone", "grid_capacity_w"]
    list_filter = [("organisation", admin.RelatedOnlyFieldListFilter), "country"]
    list_select_related = ["organisation"]
    search_fields = ["name", "city", "postal_code", "address"]
    fields = ["organisation", *SITE_FIELDS, "created_at"]
    readonly_fields = ["created_at"]

    def scope_q(self, *, user, capability) -> Q:
        return site_scope_q(user=user, capability=capability)

    def get_readonly_fields(self, request, obj=None):
        # A site never changes tenant (stations.services.management).
        if obj is not None:
            return ["organisation", "created_at"]
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        with domain_errors_as_http():
            if change:
                data = {
                    field: form.cleaned_data[field] for field in form.changed_data if field in SITE_FIELDS
                }
                site = site_update(actor=request.user, site=obj, data=data)
            else:
                site = site_create(
                    actor=request.user,
                    organisation_id=obj.organisation_id,
                    **{field: form.cleaned_data[field] for field in SITE_FIELDS},
                )
        saved_adopt(obj, site)


# --- stations -------------------------------------------------------------------------------------


class EvseInline(ScopedInlineMixin, admin.TabularInline):  # type: ignore[misc]  # the stubs' InlineModelAdmin.has_add_permission takes obj, BaseModelAdmin's not
    model = Evse
    extra = 0
    fields = ["evse_id", "max_power_w", "connector_summary"]
    readonly_fields = ["connector_summary"]
    show_change_link = True  # the connectors are edited on the EVSE's page: inlines do not nest

    @admin.display(description="Connectors")
    def connector_summary(self, evse: Evse) -> str:
        if evse.pk is None:
            return "-"
        return ", ".join(
            f"{c.connector_id}: {c.get_connector_type_display()} {c.status}" for c in evse.connectors.all()
        )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("connectors")


class StationAdminForm(DomainValidatedForm):
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="The charger's HTTP Basic password (security profiles 1 and 2). Leave empty to keep it.",
    )

    class Meta:
        model = ChargingStation
        fields = ["identity", "name", "organisation", "site", "registration_status", "security_profile"]

    def domain_validate(self) -> None:
        station_validate(
            self.instance,
            password=self.cleaned_data.get("password") or None,
            profile_changed="security_profile" in self.changed_data,
        )


# admin form field -> station_update data key
STATION_WRITABLE = {
    "name": "name",
    "site": "site_id",
    "registration_status": "registration_status",
    "security_profile": "security_profile",
}


@admin.register(ChargingStation)
class ChargingStationAdmin(StationCommandsMixin, SiteScopedAdminMixin, admin.ModelAdmin):
    form = StationAdminForm
    list_display = [
        "identity",
        "name",
        "organisation",
        "site",
        "protocol",
        "registration_status",
        "is_connected",
        "last_seen_at",
        "status",
    ]
    list_filter = [
        "is_connected",
        "registration_status",
        "protocol",
        "status",
        "security_profile",
        ("organisation", admin.RelatedOnlyFieldListFilter),
        ("site", admin.RelatedOnlyFieldListFilter),
    ]
    list_select_related = ["organisation", "site"]
    search_fields = ["identity", "name", "serial_number", "vendor", "model"]
    raw_id_fields = ["site"]
    inlines = [EvseInline]
    actions = [
        "accept_registration",
        "reject_registration",
        "bulk_soft_reset",
        "bulk_clear_cache",
        "bulk_trigger_status",
        "bulk_read_configuration",
        "bulk_apply_template",
        "bulk_update_firmware",
    ]
    REPORTED = [
        "vendor",
        "model",
        "serial_number",
        "firmware_version",
        "iccid",
        "imsi",
        "meter_type",
        "meter_serial_number",
        "protocol",
        "is_connected",
        "connected_at",
        "last_seen_at",
        "last_boot_at",
        "heartbeat_interval_s",
        "status",
        "error_code",
        "firmware_status",
        "diagnostics_status",
        "created_at",
        "updated_at",
    ]
    readonly_fields = REPORTED
    fieldsets = [
        (None, {"fields": ["identity", "name", "organisation", "site"]}),
        ("Security", {"fields": ["registration_status", "security_profile", "password"]}),
        ("Reported by the charger", {"fields": [*REPORTED], "classes": ["collapse"]}),
    ]

    def scope_q(self, *, user, capability) -> Q:
        return station_scope_q(user=user, capability=capability)

    def get_readonly_fields(self, request, obj=None):
        # The identity is the charger's own configuration and a station never changes tenant.
        if obj is not None:
            return ["identity", "organisation", *self.REPORTED]
        return self.REPORTED

    def save_model(self, request, obj, form, change):
        password = form.cleaned_data.get("password") or None
        with domain_errors_as_http():
            if change:
                data = {
                    STATION_WRITABLE[field]: getattr(obj, STATION_WRITABLE[field])
                    for field in form.changed_data
                    if field in STATION_WRITABLE
                }
                if password is not None:
                    data["password"] = password
                station = station_update(actor=request.user, station=obj, data=data)
            else:
                station = station_create(
                    actor=request.user,
                    identity=obj.identity,
                    organisation_id=obj.organisation_id,
                    site_id=obj.site_id,
                    name=obj.name,
                    registration_status=obj.registration_status,
                    security_profile=obj.security_profile,
                    password=password,
                )
        saved_adopt(obj, station)

    def _registration_set(self, request, queryset, status: str) -> None:
        done = 0
        for station in queryset:
            try:
                station_update(actor=request.user, station=station, data={"registration_status": status})
            except DomainError as exc:
                self.message_user(request, f"{station.identity}: {exc.message}", messages.ERROR)
            else:
                done += 1
        self.message_user(request, f"{done} station(s) set to {status}.", messages.SUCCESS)

    @admin.action(description="Accept registration of the selected stations", permissions=["change"])
    def accept_registration(self, request, queryset):
        self._registration_set(request, queryset, RegistrationStatus.ACCEPTED)

    @admin.action(description="Reject registration of the selected stations", permissions=["change"])
    def reject_registration(self, request, queryset):
        self._registration_set(request, queryset, RegistrationStatus.REJECTED)


class ConnectorInline(ScopedInlineMixin, admin.TabularInline):  # type: ignore[misc]  # the stubs' InlineModelAdmin.has_add_permission takes obj, BaseModelAdmin's not
    model = Connector
    extra = 0
    fields = ["connector_id", "connector_type", "max_power_w", "status", "error_code", "status_changed_at"]
    # Status comes from the charger (StatusNotification); the operator describes the hardware.
    readonly_fields = ["status", "error_code", "status_changed_at"]


@admin.register(Evse)
class EvseAdmin(StationScopedAdmin):
    list_display = ["station", "evse_id", "max_power_w"]
    list_select_related = ["station"]
    search_fields = ["station__identity"]
    raw_id_fields = ["station"]
    inlines = [ConnectorInline]

    def get_readonly_fields(self, request, obj=None):
        return ["station"] if obj is not None else []


@admin.register(Connector)
class ConnectorAdmin(StationScopedAdmin):
    station_path = "evse__station__"
    list_display = [
        "evse",
        "connector_id",
        "connector_type",
        "max_power_w",
        "status",
        "error_code",
        "status_changed_at",
    ]
    list_filter = ["status", "connector_type"]
    list_select_related = ["evse__station"]
    search_fields = ["evse__station__identity", "error_code"]
    raw_id_fields = ["evse"]
    readonly_fields = ["status", "error_code", "status_changed_at"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return ["evse", *self.readonly_fields]
        return self.readonly_fields


# --- logs (read-only) -----------------------------------------------------------------------------


@admin.register(StatusChange)
class StatusChangeAdmin(ReadOnlyAdminMixin, StationScopedAdmin):
    list_display = ["received_at", "station", "evse_id", "connector_id", "status", "error_code", "info"]
    list_filter = ["status"]
    list_select_related = ["station"]
    search_fields = ["=station__identity", "error_code", "vendor_error_code"]
    raw_id_fields = ["station"]


@admin.register(OcppMessage)
class OcppMessageAdmin(ReadOnlyAdminMixin, NoFullCountAdminMixin, StationScopedAdmin):
    list_display = ["created_at", "identity", "direction", "message_type", "action", "unique_id"]
    # Choice filters only: a filter over a free-text column would SELECT DISTINCT over the whole log.
    list_filter = ["direction", "message_type"]
    list_select_related = ["station"]
    search_fields = ["=identity", "=unique_id", "=action"]
    raw_id_fields = ["station"]
    ordering = ["-created_at", "-id"]


@admin.register(StationEvent)
class StationEventAdmin(ReadOnlyAdminMixin, StationScopedAdmin):
    list_display = ["received_at", "station", "kind", "occurred_at"]
    list_filter = ["kind"]
    list_select_related = ["station"]
    search_fields = ["=station__identity"]
    raw_id_fields = ["station"]


@admin.register(SecurityEvent)
class SecurityEventAdmin(ReadOnlyAdminMixin, StationScopedAdmin):
    # Events for unknown identities have no station: only superusers see those.
    list_display = ["created_at", "identity", "kind", "remote_addr", "detail"]
    list_filter = ["kind"]
    list_select_related = ["station"]
    search_fields = ["=identity", "=remote_addr"]
    raw_id_fields = ["station"]


@admin.register(DeviceVariable)
class DeviceVariableAdmin(ReadOnlyAdminMixin, NoFullCountAdminMixin, StationScopedAdmin):
    # Hundreds of rows per station (the 2.0.1 device model): as large as the logs on a big network.
    list_display = [
        "station",
        "component",
        "component_instance",
        "evse_id",
        "variable",
        "attribute_type",
        "value",
    ]
    list_select_related = ["station"]
    search_fields = ["=station__identity", "component", "variable"]
    raw_id_fields = ["station"]


# --- incidents (stations/services/incidents.py) -------------------------------------------------------


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdminMixin, StationScopedAdmin):
    """Read-only: incidents open and resolve from what stations report; operators acknowledge them here (or
    in the portal, which also resolves them by hand)."""

    list_display = ["detected_at", "station", "kind", "code", "evse_id", "connector_id", "resolved_at"]
    list_filter = ["kind"]
    list_select_related = ["station"]
    search_fields = ["=station__identity", "code"]
    raw_id_fields = ["station"]
    actions = ["acknowledge"]

    @admin.action(description="Acknowledge the selected incidents")
    def acknowledge(self, request, queryset):
        done = 0
        for incident in queryset.order_by("pk"):
            try:
                incident_acknowledge(actor=request.user, incident=incident)
                done += 1
            except DomainError as exc:
                self.message_user(request, exc.message, messages.WARNING)
        self.message_user(request, f"Acknowledged {done} incident(s).", messages.SUCCESS)
