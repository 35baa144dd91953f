from django import forms
from django.contrib import admin, messages
from django.db.models import Q

from accounts.admin import (
    DomainValidatedForm,
    NoFullCountAdminMixin,
    ReadOnlyAdminMixin,
    ScopedInlineMixin,
    domain_errors_as_http,
    saved_adopt,
)
from accounts.enums import Capability
from accounts.selectors import organisation_ids_with
from cpms.errors import DomainError, ValidationFailed
from sessions.enums import ReservationStatus
from sessions.models import (
    ChargingSession,
    IdToken,
    LocalListEntry,
    LocalListState,
    MeterValue,
    Reservation,
    SessionAnomaly,
    SiteAccessGroup,
    TransactionEvent,
    WaitlistEntry,
)
from sessions.selectors import id_token_scope_q
from sessions.services.local_lists import local_list_entries_forget
from sessions.services.reservations import reservation_cancel
from sessions.services.tokens import (
    SETTABLE_STATUSES,
    id_token_create,
    id_token_delete,
    id_token_update,
    id_token_validate,
)
from sessions.services.waitlists import waitlist_leave
from stations.admin import StationScopedAdmin
from stations.admin_scope import SiteScopedAdminMixin
from stations.enums import CommandSource
from stations.scope import site_scope_q

# --- id tokens ------------------------------------------------------------------------------------


class IdTokenAdminForm(DomainValidatedForm):
    # ConcurrentTx is an answer to an authorisation, never a token's own status.
    status = forms.ChoiceField(choices=[(s.value, s.label) for s in SETTABLE_STATUSES])

    class Meta:
        model = IdToken
        fields = "__all__"

    def domain_validate(self) -> None:
        id_token_validate(self.instance)
        # The service checks these too; here they show as form errors.
        organisation_id = self.instance.organisation_id
        for field in ("allowed_sites", "allowed_stations"):
            foreign = [
                str(obj) for obj in self.cleaned_data.get(field, ()) if obj.organisation_id != organisation_id
            ]
            if foreign:
                raise ValidationFailed(f"Not in the token's organisation: {', '.join(foreign)}.")


# admin form field -> id_token_update data key
ID_TOKEN_WRITABLE = {
    "value": "value",
    "type": "type",
    "status": "status",
    "expires_at": "expires_at",
    "group": "group_id",
    "owner_name": "owner_name",
    "owner_email": "owner_email",
    "in_local_list": "in_local_list",
}
# admin form field -> (data key, how the service names the chosen objects)
ID_TOKEN_PLACES = {
    "allowed_sites": lambda sites: [site.pk for site in sites],
    "allowed_stations": lambda stations: [station.identity for station in stations],
}


@admin.register(IdToken)
class IdTokenAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    form = IdTokenAdminForm
    list_display = [
        "value",
        "organisation",
        "type",
        "status",
        "expires_at",
        "group",
        "owner_name",
        "in_local_list",
    ]
    list_filter = ["status", "type", "in_local_list", ("organisation", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["organisation", "group"]
    search_fields = ["value", "owner_name", "owner_email"]
    raw_id_fields = ["group"]
    autocomplete_fields = ["allowed_sites", "allowed_stations"]
    fields = ["organisation", *ID_TOKEN_WRITABLE, *ID_TOKEN_PLACES, "created_at", "updated_at"]
    readonly_fields = ["created_at", "updated_at"]

    def scope_q(self, *, user, capability) -> Q:
        return id_token_scope_q(user=user, capability=capability)

    def capable_somewhere(self, *, user, capability) -> bool:
        # Id tokens are organisation-wide: a site host holds none, whatever their site rights.
        return bool(organisation_ids_with(user=user, capability=capability))

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:  # a token never changes tenant
            return ["organisation", *self.readonly_fields]
        return self.readonly_fields

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        # Only sites and stations the user may manage are offered (the service checks the organisation).
        if not self._is_unscoped(request) and db_field.name in ID_TOKEN_PLACES:
            related = self._related_scoped_admin(db_field.related_model)
            if related is not None:
                scope = related.scope_q(user=request.user, capability=Capability.MANAGE)
                kwargs["queryset"] = db_field.related_model._default_manager.filter(scope)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        places = {
            field: names(form.cleaned_data.get(field, ()))
            for field, names in ID_TOKEN_PLACES.items()
            if not change or field in form.changed_data
        }
        with domain_errors_as_http():
            if change:
                data = {
                    key: getattr(obj, key)
                    for field, key in ID_TOKEN_WRITABLE.items()
                    if field in form.changed_data
                }
                token = id_token_update(actor=request.user, id_token=obj, data={**data, **places})
            else:
                token = id_token_create(
                    actor=request.user,
                    organisation_id=obj.organisation_id,
                    **{key: getattr(obj, key) for key in ID_TOKEN_WRITABLE.values()},
                    **places,
                )
        saved_adopt(obj, token)

    def save_related(self, request, form, formsets, change):
        # The service set the sites and stations; form.save_m2m() would write them a second time, unchecked.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request, obj):
        with domain_errors_as_http():
            id_token_delete(actor=request.user, id_token=obj)

    def delete_queryset(self, request, queryset):
        with domain_errors_as_http():
            for token in queryset:
                id_token_delete(actor=request.user, id_token=token)


# --- sessions (charger-reported, read-only) --------------------------------------------------------


class SessionAnomalyInline(ScopedInlineMixin, admin.TabularInline):
    model = SessionAnomaly
    extra = 0
    fields = readonly_fields = ("kind", "transaction_id", "reviewed", "created_at")
    show_change_link = True

    def has_add_permission(self, request, obj):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ChargingSession)
class ChargingSessionAdmin(ReadOnlyAdminMixin, StationScopedAdmin):
    """Sessions are what chargers reported and what billing will rely on (docs/reliability.md case 29): nobody
    edits them here; corrections will be their own records."""

    list_display = [
        "id",
        "station",
        "transaction_id",
        "id_tag",
        "started_at",
        "stopped_at",
        "energy_wh",
        "status",
        "held_for_review",
        "offline",
    ]
    list_filter = ["status", "held_for_review", "offline"]
    list_select_related = ["station"]
    search_fields = ["=transaction_id", "=station__identity", "=id_tag"]
    raw_id_fields = ["station", "evse", "connector", "id_token"]
    inlines = [SessionAnomalyInline]


@admin.register(MeterValue)
class MeterValueAdmin(ReadOnlyAdminMixin, NoFullCountAdminMixin, StationScopedAdmin):
    list_display = [
        "timestamp",
        "station",
        "session",
        "evse_id",
        "measurand",
        "phase",
        "value",
        "unit",
        "context",
    ]
    list_select_related = ["station"]
    # No list filters: over free-text columns they SELECT DISTINCT over the whole table.
    search_fields = ["=station__identity"]
    raw_id_fields = ["station", "session"]
    # Newest first, along the primary key: ordering by timestamp would sort the whole table (its indexes
    # start with session or station).
    ordering = ["-id"]


@admin.register(SessionAnomaly)
class SessionAnomalyAdmin(StationScopedAdmin):
    list_display = ["created_at", "station", "kind", "transaction_id", "session", "reviewed"]
    list_filter = ["kind", "reviewed"]
    list_select_related = ["station"]
    search_fields = ["=station__identity", "=transaction_id"]
    raw_id_fields = ["station", "session"]
    # Reviewing (ticking `reviewed`) is the only change: what happened stays as recorded.
    readonly_fields = ["station", "session", "kind", "transaction_id", "detail", "created_at"]

    def has_add_permission(self, request, *args):
        return False


@admin.register(TransactionEvent)
class TransactionEventAdmin(ReadOnlyAdminMixin, NoFullCountAdminMixin, StationScopedAdmin):
    """2.0.1 TransactionEvents exactly as received: one row per event, like the frame log."""

    list_display = [
        "received_at",
        "station",
        "transaction_id",
        "seq_no",
        "event_type",
        "trigger_reason",
        "offline",
    ]
    list_filter = ["offline"]
    list_select_related = ["station"]
    search_fields = ["=station__identity", "=transaction_id"]
    raw_id_fields = ["station", "session"]
    ordering = ["-id"]


# --- reservations and local authorisation lists ----------------------------------------------------


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdminMixin, StationScopedAdmin):
    """Reservations are made through the API (the charger must accept them); here they are looked at and
    cancelled (CancelReservation, through the same service)."""

    list_display = [
        "id",
        "station",
        "evse",
        "connector",
        "id_token",
        "expires_at",
        "status",
        "charger_status",
        "created_at",
    ]
    list_filter = ["status"]
    list_select_related = ["station", "evse", "connector", "id_token"]
    search_fields = ["=station__identity", "=id_token__value"]
    raw_id_fields = ["station", "evse", "connector", "id_token", "command", "session", "created_by"]
    actions = ["cancel_reservations"]

    def has_delete_permission(self, request, obj=None):
        # Superusers only, as for every model here: deleting an id token deletes its reservations.
        return request.user.is_active and request.user.is_superuser

    @admin.action(description="Cancel the selected reservations (CancelReservation)", permissions=["command"])
    def cancel_reservations(self, request, queryset):
        cancelled = 0
        for reservation in queryset.select_related("station"):
            try:
                result = reservation_cancel(
                    actor=request.user,
                    reservation=reservation,
                    source=CommandSource.ADMIN,
                )
            except DomainError as exc:
                self.message_user(request, f"Reservation {reservation.pk}: {exc.message}", messages.ERROR)
                continue
            if result.status == ReservationStatus.CANCELLED:
                cancelled += 1
            else:
                command = result.command
                outcome = command.error_description or command.error_code or command.status if command else ""
                self.message_user(
                    request,
                    f"Reservation {reservation.pk} is still {result.status}: {outcome}",
                    messages.WARNING,
                )
        self.message_user(request, f"{cancelled} reservation(s) cancelled.", messages.SUCCESS)


@admin.register(LocalListState)
class LocalListStateAdmin(ReadOnlyAdminMixin, StationScopedAdmin):
    """Each station's local list version as last confirmed. Synced through the API
    (POST /api/v1/stations/<identity>/local-list/sync/)."""

    list_display = ["station", "version", "reported_version", "synced_at", "last_error"]
    list_select_related = ["station"]
    search_fields = ["=station__identity"]
    raw_id_fields = ["station"]


@admin.register(LocalListEntry)
class LocalListEntryAdmin(ReadOnlyAdminMixin, StationScopedAdmin):
    """The tokens each station holds in its local list, as of its last accepted update."""

    list_display = ["station", "id_token", "status", "expires_at", "group_value"]
    list_filter = ["status"]
    list_select_related = ["station", "id_token"]
    search_fields = ["=station__identity", "=id_token__value"]
    raw_id_fields = ["station", "id_token"]

    def has_delete_permission(self, request, obj=None):
        # Superusers only: deleting an id token deletes its entries (and makes those stations' next sync
        # Full, see id_token_delete).
        return request.user.is_active and request.user.is_superuser

    def delete_model(self, request, obj):
        with domain_errors_as_http():
            local_list_entries_forget(actor=request.user, entries=[obj])

    def delete_queryset(self, request, queryset):
        with domain_errors_as_http():
            local_list_entries_forget(actor=request.user, entries=queryset)


# --- waitlists -------------------------------------------------------------------------------------


@admin.register(WaitlistEntry)
class WaitlistEntryAdmin(ReadOnlyAdminMixin, SiteScopedAdminMixin, admin.ModelAdmin):
    """Drivers queueing at a site. Joined through the portal or the API; moved on by the waitlist job; here
    looked at, and taken out of the queue (the same service as the portal's remove button)."""

    list_display = [
        "id",
        "site",
        "id_token",
        "contact_email",
        "status",
        "joined_at",
        "offered_connector",
        "offer_expires_at",
        "notified_at",
    ]
    list_filter = ["status"]
    list_select_related = ["site", "id_token", "offered_connector"]
    search_fields = ["=id_token__value", "contact_email"]
    raw_id_fields = [
        "site",
        "id_token",
        "offered_station",
        "offered_evse",
        "offered_connector",
        "reservation",
        "created_by",
    ]
    actions = ["leave_entries"]

    def scope_q(self, *, user, capability) -> Q:
        return site_scope_q(user=user, capability=capability, prefix="site__")

    @admin.action(description="Remove the selected entries from the waitlist", permissions=["command"])
    def leave_entries(self, request, queryset):
        removed = 0
        for entry in queryset.select_related("site"):
            try:
                waitlist_leave(
                    actor=request.user, entry=entry, cancel_reservation=True, source=CommandSource.ADMIN
                )
            except DomainError as exc:
                self.message_user(request, f"Waitlist entry {entry.pk}: {exc.message}", messages.ERROR)
                continue
            removed += 1
        self.message_user(request, f"Removed from the waitlist: {removed}.", messages.SUCCESS)


# --- site access rules -----------------------------------------------------------------------------


@admin.register(SiteAccessGroup)
class SiteAccessGroupAdmin(ReadOnlyAdminMixin, SiteScopedAdminMixin, admin.ModelAdmin):
    """The groups allowed at restricted sites. Looked at here; changed on the site's prices page or through
    the API (sessions.services.site_access: the pricing right, validation and an audit record)."""

    list_display = ["id", "site", "group", "created_at"]
    list_select_related = ["site", "group"]
    search_fields = ["=group__value", "site__name"]
    raw_id_fields = ["site", "group"]

    def scope_q(self, *, user, capability) -> Q:
        return site_scope_q(user=user, capability=capability, prefix="site__")
