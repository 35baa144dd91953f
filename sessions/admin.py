from django import forms
from django.contrib import admin
from django.db.models import Q

from accounts.admin import (
    DomainValidatedForm,
    NoFullCountAdminMixin,
    ReadOnlyAdminMixin,
    ScopedAdminMixin,
    ScopedInlineMixin,
    domain_errors_as_http,
    saved_adopt,
)
from accounts.selectors import organisation_ids_with
from sessions.models import ChargingSession, IdToken, MeterValue, SessionAnomaly, TransactionEvent
from sessions.selectors import id_token_scope_q
from sessions.services.tokens import SETTABLE_STATUSES, id_token_create, id_token_update, id_token_validate
from stations.admin import StationScopedAdmin

# --- id tokens ------------------------------------------------------------------------------------


class IdTokenAdminForm(DomainValidatedForm):
    # ConcurrentTx is an answer to an authorisation, never a token's own status.
    status = forms.ChoiceField(choices=[(s.value, s.label) for s in SETTABLE_STATUSES])

    class Meta:
        model = IdToken
        fields = "__all__"

    def domain_validate(self) -> None:
        id_token_validate(self.instance)


# admin form field -> id_token_update data key
ID_TOKEN_WRITABLE = {
    "value": "value",
    "type": "type",
    "status": "status",
    "expires_at": "expires_at",
    "group": "group_id",
    "owner_name": "owner_name",
    "owner_email": "owner_email",
}


@admin.register(IdToken)
class IdTokenAdmin(ScopedAdminMixin, admin.ModelAdmin):
    form = IdTokenAdminForm
    list_display = ["value", "organisation", "type", "status", "expires_at", "group", "owner_name"]
    list_filter = ["status", "type", ("organisation", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["organisation", "group"]
    search_fields = ["value", "owner_name", "owner_email"]
    raw_id_fields = ["group"]
    fields = ["organisation", *ID_TOKEN_WRITABLE, "created_at", "updated_at"]
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

    def save_model(self, request, obj, form, change):
        with domain_errors_as_http():
            if change:
                data = {
                    key: getattr(obj, key)
                    for field, key in ID_TOKEN_WRITABLE.items()
                    if field in form.changed_data
                }
                token = id_token_update(actor=request.user, id_token=obj, data=data)
            else:
                token = id_token_create(
                    actor=request.user,
                    organisation_id=obj.organisation_id,
                    **{key: getattr(obj, key) for key in ID_TOKEN_WRITABLE.values()},
                )
        saved_adopt(obj, token)


# --- sessions (charger-reported, read-only) --------------------------------------------------------


class SessionAnomalyInline(ScopedInlineMixin, admin.TabularInline):
    model = SessionAnomaly
    extra = 0
    fields = ["kind", "transaction_id", "reviewed", "created_at"]
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ChargingSession)
class ChargingSessionAdmin(ReadOnlyAdminMixin, StationScopedAdmin):
    """Sessions are what chargers reported and what billing will rely on (RELIABILITY.md 29): nobody edits
    them here; corrections will be their own records."""

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
