"""Admin for roaming (OCPI 2.2.1): our parties, the partners and what they sent or we owe them.

Scoped like the rest of the admin (stations/admin_scope.py). Parties, partners and everything a partner sent
(tokens, sessions, commands, hub clients, the outbox) are the operator admins' business, like the payment
settings: shown only to roles with the manage capability of the party's organisation. A site's OCPI settings
(published or not, parking type, facilities, opening times) follow the site.

No credentials token is ever shown: the partner's token is kept as a hash, ours encrypted, and neither field
is on any page. A partner is created (with its token A) through the API or the portal, which show token A once;
its settings are saved through `partner_update`, and the actions call the services the API calls.
"""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q
from django.utils.html import format_html

from accounts.admin import (
    DomainValidatedForm,
    NoFullCountAdminMixin,
    ReadOnlyAdminMixin,
    ScopedAdminMixin,
    domain_errors_as_http,
    saved_adopt,
)
from accounts.enums import Capability
from accounts.selectors import organisation_ids_with
from cpms.errors import DomainError, ValidationFailed
from cpms.ocpi.enums import OutboxStatus
from cpms.ocpi.models import (
    OcpiAuthorization,
    OcpiClientInfo,
    OcpiCommand,
    OcpiLocation,
    OcpiOutboxItem,
    OcpiPartner,
    OcpiParty,
    OcpiSession,
    OcpiToken,
)
from cpms.ocpi.protocol import OcpiError, schema_validator
from cpms.ocpi.services.credentials import partner_suspend
from cpms.ocpi.services.outbox import outbox_retry_refused
from cpms.ocpi.services.partners import (
    COUNTRY_CODE_RE,
    PARTY_ID_RE,
    partner_sync,
    partner_update,
    party_create,
)
from stations.admin_scope import SiteScopedAdminMixin
from stations.scope import site_scope_q


def _pretty_json(value: Any) -> str:
    return format_html('<pre class="payload">{}</pre>', json.dumps(value, indent=2, sort_keys=True))


class RoamingScopedAdminMixin(ScopedAdminMixin):
    """Rows of the parties whose organisation the user manages (`party_path` leads to OcpiParty); roles
    without the manage capability get no roaming admin at all (403), whatever they may view elsewhere."""

    party_path = ""

    def scope_q(self, *, user, capability) -> Q:
        organisation_ids = organisation_ids_with(user=user, capability=Capability.MANAGE)
        return Q(**{f"{self.party_path}organisation_id__in": organisation_ids})

    def capable_somewhere(self, *, user, capability: str) -> bool:
        return bool(organisation_ids_with(user=user, capability=Capability.MANAGE))


class ReadOnlyRoamingAdmin(ReadOnlyAdminMixin, RoamingScopedAdminMixin, admin.ModelAdmin):
    """What partners sent and what we recorded of it: evidence, written only by the OCPI modules."""


# --- parties --------------------------------------------------------------------------------------------


class OcpiPartyAddForm(DomainValidatedForm):
    class Meta:
        model = OcpiParty
        fields = ["organisation", "country_code", "party_id", "name", "website"]

    def clean_country_code(self) -> str:
        value = self.cleaned_data["country_code"].strip().upper()
        if not COUNTRY_CODE_RE.match(value):
            raise forms.ValidationError("Two letters (ISO 3166-1 alpha-2), e.g. NL.")
        return value

    def clean_party_id(self) -> str:
        value = self.cleaned_data["party_id"].strip().upper()
        if not PARTY_ID_RE.match(value):
            raise forms.ValidationError("Three letters or digits (ISO 15118), e.g. ABC.")
        return value


@admin.register(OcpiParty)
class OcpiPartyAdmin(RoamingScopedAdminMixin, admin.ModelAdmin):
    """Our CPO identity per organisation. Its country code and party id are fixed once created: partners
    know our objects by them."""

    list_display = ["__str__", "name", "organisation", "website", "created_at"]
    list_select_related = ["organisation"]
    search_fields = ["party_id", "name"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = OcpiPartyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        fields = ["organisation", "country_code", "party_id", "name", "website"]
        return fields if obj is None else [*fields, "created_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["organisation", "country_code", "party_id", "created_at"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        data = form.cleaned_data
        with domain_errors_as_http():
            saved = party_create(
                organisation=data["organisation"],
                country_code=data["country_code"],
                party_id=data["party_id"],
                name=data["name"],
                website=data["website"],
                actor=request.user,
            )
        saved_adopt(obj, saved)


# --- partners -------------------------------------------------------------------------------------------


class OcpiPartnerForm(DomainValidatedForm):
    class Meta:
        model = OcpiPartner
        fields = [
            "name",
            "realtime_auth_fallback",
            "allow_charging_profiles",
            "publish_all_sites",
            "published_sites",
        ]

    def domain_validate(self) -> None:
        organisation_id = self.instance.party.organisation_id
        for site in self.cleaned_data.get("published_sites") or []:
            if site.organisation_id != organisation_id:
                raise ValidationFailed(f"Site {site} is not a site of the partner's organisation.")


@admin.register(OcpiPartner)
class OcpiPartnerAdmin(RoamingScopedAdminMixin, admin.ModelAdmin):
    """A connection with a roaming platform. Created through the API or the portal (its token A is shown
    there, once); here its settings, and the actions: sync now, retry refused pushes, suspend, resume."""

    party_path = "party__"
    form = OcpiPartnerForm
    list_display = [
        "name",
        "party",
        "status",
        "partner_roles",
        "backlog",
        "refused",
        "last_success_at",
        "last_error_at",
    ]
    list_filter = ["status"]
    list_select_related = ["party"]
    search_fields = ["name"]
    filter_horizontal = ["published_sites"]
    actions = ["sync_now", "retry_refused", "suspend", "resume"]
    fieldsets = [
        (None, {"fields": ["name", "party", "status", "registered_at", "created_at"]}),
        ("The partner's platform", {"fields": ["version", "versions_url", "roles_json", "endpoints_json"]}),
        (
            "Settings",
            {
                "fields": [
                    "realtime_auth_fallback",
                    "allow_charging_profiles",
                    "publish_all_sites",
                    "published_sites",
                    "id_token_group",
                ]
            },
        ),
        (
            "Delivery",
            {"fields": ["last_success_at", "last_error_at", "last_error", "pushed_until_json"]},
        ),
    ]
    readonly_fields = [
        "party",
        "status",
        "registered_at",
        "created_at",
        "version",
        "versions_url",
        "roles_json",
        "endpoints_json",
        "id_token_group",
        "last_success_at",
        "last_error_at",
        "last_error",
        "pushed_until_json",
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                outbox_backlog=Count("outbox", filter=Q(outbox__status=OutboxStatus.PENDING)),
                outbox_refused=Count("outbox", filter=Q(outbox__status=OutboxStatus.REFUSED)),
            )
        )

    def has_add_permission(self, request, *args):
        return False  # token A is shown once, by the API or the portal that create the partner

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "published_sites" and not self._is_unscoped(request):
            kwargs["queryset"] = db_field.related_model._default_manager.filter(
                site_scope_q(user=request.user, capability=Capability.MANAGE)
            )
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    @admin.display(description="Roles")
    def partner_roles(self, partner: OcpiPartner) -> str:
        return ", ".join(f"{r['country_code']}*{r['party_id']} {r['role']}" for r in partner.roles) or "—"

    @admin.display(description="Backlog", ordering="outbox_backlog")
    def backlog(self, partner: OcpiPartner) -> int:
        return partner.outbox_backlog  # type: ignore[attr-defined]  # annotated by get_queryset

    @admin.display(description="Refused", ordering="outbox_refused")
    def refused(self, partner: OcpiPartner) -> int:
        return partner.outbox_refused  # type: ignore[attr-defined]  # annotated by get_queryset

    @admin.display(description="Roles")
    def roles_json(self, partner: OcpiPartner) -> str:
        return _pretty_json(partner.roles)

    @admin.display(description="Endpoints")
    def endpoints_json(self, partner: OcpiPartner) -> str:
        return _pretty_json(partner.endpoints)

    @admin.display(description="Pushed until")
    def pushed_until_json(self, partner: OcpiPartner) -> str:
        return _pretty_json(partner.pushed_until)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        with domain_errors_as_http():
            saved = partner_update(
                partner=obj,
                actor=request.user,
                name=data["name"],
                realtime_auth_fallback=data["realtime_auth_fallback"],
                allow_charging_profiles=data["allow_charging_profiles"],
                publish_all_sites=data["publish_all_sites"],
                published_sites=list(data["published_sites"]),
            )
        saved_adopt(obj, saved)

    def save_related(self, request, form, formsets, change):
        # The published sites were saved by partner_update (save_model); the form's m2m save would only
        # write them again.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def _each(self, request, queryset, label: str, act) -> None:
        done, failed = 0, []
        for partner in queryset.select_related("party"):
            try:
                act(partner)
            except (DomainError, OcpiError) as exc:
                failed.append(f"{partner}: {exc.message}")
            else:
                done += 1
        if done:
            self.message_user(request, f"{label}: {done} partner(s).", messages.SUCCESS)
        for text in failed:
            self.message_user(request, text, messages.ERROR)

    @admin.action(description="Sync now (push every published location and tariff)", permissions=["change"])
    def sync_now(self, request, queryset):
        self._each(request, queryset, "Sync queued", lambda p: partner_sync(partner=p, actor=request.user))

    @admin.action(description="Retry refused pushes", permissions=["change"])
    def retry_refused(self, request, queryset):
        self._each(
            request, queryset, "Refused pushes queued again", lambda p: outbox_retry_refused(partner=p)
        )

    @admin.action(description="Suspend", permissions=["change"])
    def suspend(self, request, queryset):
        self._each(
            request,
            queryset,
            "Suspended",
            lambda p: partner_suspend(partner=p, suspended=True, actor=request.user),
        )

    @admin.action(description="Resume", permissions=["change"])
    def resume(self, request, queryset):
        self._each(
            request,
            queryset,
            "Resumed",
            lambda p: partner_suspend(partner=p, suspended=False, actor=request.user),
        )


# --- what partners sent, and what we owe them -------------------------------------------------------------


@admin.register(OcpiToken)
class OcpiTokenAdmin(ReadOnlyRoamingAdmin):
    party_path = "partner__party__"
    list_display = ["__str__", "partner", "type", "contract_id", "realtime", "last_updated"]
    list_filter = ["type", "realtime"]
    list_select_related = ["partner"]
    search_fields = ["=uid", "=contract_id"]
    raw_id_fields = ["id_token"]


@admin.register(OcpiSession)
class OcpiSessionAdmin(ReadOnlyRoamingAdmin):
    party_path = "partner__party__"
    list_display = [
        "session",
        "partner",
        "auth_method",
        "authorization_reference",
        "pushed_at",
        "cdr_pushed_at",
    ]
    list_filter = ["auth_method"]
    list_select_related = ["partner", "session"]
    raw_id_fields = ["session", "token"]


@admin.register(OcpiAuthorization)
class OcpiAuthorizationAdmin(ReadOnlyRoamingAdmin):
    party_path = "partner__party__"
    list_display = [
        "created_at",
        "partner",
        "token",
        "auth_method",
        "authorization_reference",
        "site",
        "used_at",
    ]
    list_filter = ["auth_method"]
    list_select_related = ["partner", "token", "site"]
    raw_id_fields = ["token", "site"]


@admin.register(OcpiCommand)
class OcpiCommandAdmin(ReadOnlyRoamingAdmin):
    party_path = "partner__party__"
    list_display = ["created_at", "partner", "module", "command", "result", "result_at"]
    list_filter = ["module", "command", "result"]
    list_select_related = ["partner"]
    raw_id_fields = ["ocpp_command"]


@admin.register(OcpiClientInfo)
class OcpiClientInfoAdmin(ReadOnlyRoamingAdmin):
    party_path = "partner__party__"
    list_display = ["partner", "country_code", "party_id", "role", "status", "last_updated"]
    list_filter = ["role", "status"]
    list_select_related = ["partner"]


@admin.register(OcpiOutboxItem)
class OcpiOutboxItemAdmin(
    ReadOnlyAdminMixin, NoFullCountAdminMixin, RoamingScopedAdminMixin, admin.ModelAdmin
):
    """Every push to a partner until it is purged (OCPI_OUTBOX_KEEP_DAYS after delivery). A refused item is
    queued again from the partner's actions ("Retry refused pushes")."""

    party_path = "partner__party__"
    list_display = [
        "id",
        "partner",
        "module",
        "method",
        "object_key",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["status", "module"]
    list_select_related = ["partner"]
    search_fields = ["=object_key"]
    ordering = ["-id"]
    fields = readonly_fields = (
        "partner",
        "module",
        "object_key",
        "method",
        "path",
        "url",
        "to_country_code",
        "to_party_id",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "created_at",
        "delivered_at",
        "body_json",
    )

    @admin.display(description="Body")
    def body_json(self, item: OcpiOutboxItem) -> str:
        return _pretty_json(item.body)


# --- what a site publishes --------------------------------------------------------------------------------

PARKING_TYPES = [
    "ALONG_MOTORWAY",
    "PARKING_GARAGE",
    "PARKING_LOT",
    "ON_DRIVEWAY",
    "ON_STREET",
    "UNDERGROUND_GARAGE",
]
FACILITIES = [
    "HOTEL",
    "RESTAURANT",
    "CAFE",
    "MALL",
    "SUPERMARKET",
    "SPORT",
    "RECREATION_AREA",
    "NATURE",
    "MUSEUM",
    "BIKE_SHARING",
    "BUS_STOP",
    "TAXI_STAND",
    "TRAM_STOP",
    "METRO_STATION",
    "TRAIN_STATION",
    "AIRPORT",
    "PARKING_LOT",
    "CARPOOL_PARKING",
    "FUEL_STATION",
    "WIFI",
]
_TIME = {"type": "string", "pattern": "^([0-1][0-9]|2[0-3]):[0-5][0-9]$"}
_DATE_TIME = {"type": "string", "maxLength": 25}
_EXCEPTIONAL = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["period_begin", "period_end"],
        "properties": {"period_begin": _DATE_TIME, "period_end": _DATE_TIME},
        "additionalProperties": False,
    },
}
# OCPI 2.2.1 Hours (locations module, 8.4.14): twentyfourseven, or regular hours per weekday (1 = Monday).
opening_times_check = schema_validator(
    {
        "type": "object",
        "required": ["twentyfourseven"],
        "properties": {
            "twentyfourseven": {"type": "boolean"},
            "regular_hours": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["weekday", "period_begin", "period_end"],
                    "properties": {
                        "weekday": {"type": "integer", "minimum": 1, "maximum": 7},
                        "period_begin": _TIME,
                        "period_end": _TIME,
                    },
                    "additionalProperties": False,
                },
            },
            "exceptional_openings": _EXCEPTIONAL,
            "exceptional_closings": _EXCEPTIONAL,
        },
        "additionalProperties": False,
    }
)


class OcpiLocationForm(forms.ModelForm):
    parking_type = forms.ChoiceField(
        required=False, choices=[("", "—"), *((v, v.replace("_", " ").capitalize()) for v in PARKING_TYPES)]
    )
    facilities = forms.MultipleChoiceField(
        required=False,
        choices=[(v, v.replace("_", " ").capitalize()) for v in FACILITIES],
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = OcpiLocation
        fields = ["site", "publish", "parking_type", "facilities", "opening_times"]
        help_texts = {
            "opening_times": 'OCPI Hours, e.g. {"twentyfourseven": true} or {"twentyfourseven": false, '
            '"regular_hours": [{"weekday": 1, "period_begin": "08:00", "period_end": "20:00"}]}. Empty: '
            "open around the clock.",
        }

    def clean_opening_times(self) -> dict:
        value = self.cleaned_data["opening_times"] or {}
        if value:
            try:
                opening_times_check(value)
            except OcpiError as exc:
                raise forms.ValidationError(exc.message) from exc
            if not value["twentyfourseven"] and not value.get("regular_hours"):
                raise forms.ValidationError("Give regular_hours when twentyfourseven is false.")
        return value


@admin.register(OcpiLocation)
class OcpiLocationAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    """What roaming partners see of a site beyond the site itself. A change reaches registered partners with
    the next push sweep (the row's updated_at is the site's last change)."""

    form = OcpiLocationForm
    list_display = ["site", "publish", "parking_type", "updated_at"]
    list_filter = ["publish", "parking_type"]
    list_select_related = ["site"]
    raw_id_fields = ["site"]

    def scope_q(self, *, user, capability) -> Q:
        return site_scope_q(user=user, capability=capability, prefix="site__")

    def get_readonly_fields(self, request, obj=None):
        return ["site", "updated_at"] if obj is not None else []
