"""Admin for tariffs, their versions and assignments, site energy prices, CDRs and credits, session tariff
snapshots and export jobs.

Scoped like the rest of the admin (stations/admin_scope.py), with the scopes of billing.selectors:
tariffs and assignments by organisation (a site host sees those at their sites, read-only), energy prices
and CDRs by site, snapshots by the session's station, export jobs by who asked for them.

Every write goes through the billing services: a tariff version is added (never edited: a price change is a
new version), an assignment is added (replacing the one at its scope) or removed, an energy price is added.
CDRs, their lines and credits are final: nothing here saves or deletes one. "Issue a credit" (a link on the
CDR's page, for the holders of the billing right) is the credit add form, which calls `cdr_credit_create`.
"""

from decimal import Decimal

from django import forms
from django.contrib import admin
from django.db.models import Q
from django.urls import reverse
from django.utils.html import format_html

from accounts.admin import (
    DomainValidatedForm,
    NoFullCountAdminMixin,
    ReadOnlyAdminMixin,
    ScopedAdminMixin,
    ScopedInlineMixin,
    domain_errors_as_http,
    saved_adopt,
)
from accounts.enums import Capability
from accounts.selectors import organisation_ids_with
from billing.models import (
    CdrCredit,
    CdrLine,
    ChargeDetailRecord,
    ExportJob,
    KpiDay,
    Payment,
    PaymentEvent,
    PaymentRefund,
    PaymentSettings,
    RoiInputs,
    SessionPricing,
    SiteEnergyPrice,
    Tariff,
    TariffAssignment,
    TariffVersion,
)
from billing.money import minor_unit, round_money
from billing.selectors import assignment_scope_q, cdr_scope_q, payment_scope_q, tariff_scope_q
from billing.services.cdrs import cdr_credit_create, cdr_credit_totals
from billing.services.energy_prices import EnergyPriceInput, site_energy_price_create
from billing.services.exports.columns import CDR_ADMIN_FIELDS, CDR_ADMIN_LIST
from billing.services.payments import PaymentSettingsInput, payment_settings_update
from billing.services.tariffs import (
    TariffVersionInput,
    tariff_assign,
    tariff_create,
    tariff_unassign,
    tariff_update,
    tariff_version_create,
)
from billing.tariff_json import TariffFormatError, elements_normalise
from cpms.errors import ValidationFailed
from stations.admin_scope import SiteScopedAdminMixin
from stations.scope import site_scope_q, station_scope_q, user_can


class ReadOnlyInline(ScopedInlineMixin, admin.TabularInline):
    """Rows shown under their parent for everyone who sees it, superusers included, and never changed."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- tariffs and versions -------------------------------------------------------------------------------


class TariffVersionInline(ReadOnlyInline):
    model = TariffVersion
    fields = readonly_fields = (
        "version",
        "valid_from",
        "valid_until",
        "currency",
        "tax_rate",
        "min_price",
        "max_price",
    )
    show_change_link = True
    ordering = ["-version"]


class TariffAdminForm(DomainValidatedForm):
    class Meta:
        model = Tariff
        fields = ["organisation", "name", "description"]

    def domain_validate(self) -> None:
        # On a change the organisation is read-only, so the form's own unique check leaves the name out.
        tariff = self.instance
        taken = Tariff.objects.filter(organisation_id=tariff.organisation_id, name=tariff.name.strip())
        if taken.exclude(pk=tariff.pk).exists():
            raise ValidationFailed(
                f"A tariff named {tariff.name.strip()!r} already exists in this organisation."
            )


@admin.register(Tariff)
class TariffAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    form = TariffAdminForm
    list_display = ["name", "organisation", "created_at", "updated_at"]
    list_filter = [("organisation", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["organisation"]
    search_fields = ["name"]
    fields = ["organisation", "name", "description", "created_at", "updated_at"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [TariffVersionInline]

    def scope_q(self, *, user, capability) -> Q:
        return tariff_scope_q(user=user, capability=capability)

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:  # a tariff never changes organisation
            return ["organisation", *self.readonly_fields]
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        with domain_errors_as_http():
            if change:
                tariff = tariff_update(
                    tariff=obj, name=form.cleaned_data["name"], description=form.cleaned_data["description"]
                )
            else:
                tariff = tariff_create(
                    organisation=obj.organisation,
                    name=form.cleaned_data["name"],
                    description=form.cleaned_data["description"],
                )
        saved_adopt(obj, tariff)


VERSION_INPUT = [
    "valid_from",
    "valid_until",
    "currency",
    "tax_rate",
    "min_price",
    "max_price",
    "parking_grace_s",
    "parking_cap",
    "elements",
]


class TariffVersionAddForm(DomainValidatedForm):
    class Meta:
        model = TariffVersion
        fields = ["tariff", *VERSION_INPUT]
        help_texts = {
            "elements": 'OCPI 2.2.1 TariffElement list, e.g. [{"price_components": [{"type": "ENERGY", '
            '"price": "0.30", "step_size": 1}]}].'
        }

    def domain_validate(self) -> None:
        # The elements are what people get wrong; the service checks them (and the rest) again.
        try:
            elements_normalise(self.instance.elements)
        except TariffFormatError as error:
            raise ValidationFailed(str(error)) from None


@admin.register(TariffVersion)
class TariffVersionAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    """Versions are added, never edited: their change page is read-only for everyone."""

    form = TariffVersionAddForm
    list_display = ["tariff", "version", "valid_from", "valid_until", "currency", "tax_rate", "created_by"]
    list_filter = ["currency"]
    list_select_related = ["tariff", "created_by"]
    search_fields = ["tariff__name"]
    readonly_fields = ["version", "created_by", "created_at"]

    def scope_q(self, *, user, capability) -> Q:
        return tariff_scope_q(user=user, capability=capability, prefix="tariff__")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["tariff", *VERSION_INPUT]
        return ["tariff", "version", *VERSION_INPUT, "created_by", "created_at"]

    def has_change_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        data = TariffVersionInput(**{name: form.cleaned_data[name] for name in VERSION_INPUT})
        with domain_errors_as_http():
            version = tariff_version_create(tariff=obj.tariff, data=data, user=request.user)
        saved_adopt(obj, version)


# --- assignments ----------------------------------------------------------------------------------------


class TariffAssignmentForm(DomainValidatedForm):
    class Meta:
        model = TariffAssignment
        fields = ["tariff", "site", "station", "id_token_group"]
        help_texts = {
            "site": "At most one of site and station; neither: the whole organisation.",
            "id_token_group": "An id token or group token: the tariff applies to it, narrowed to the site or "
            "station if one is chosen.",
        }

    def domain_validate(self) -> None:
        # tariff_assign checks these too; here they show as form errors.
        assignment = self.instance
        if assignment.site_id and assignment.station_id:
            raise ValidationFailed("Give a site or a station, not both.")
        organisation_id = assignment.tariff.organisation_id
        foreign = [
            str(obj)
            for obj in (assignment.site, assignment.station, assignment.id_token_group)
            if obj is not None and obj.organisation_id != organisation_id
        ]
        if foreign:
            raise ValidationFailed(f"Not in the tariff's organisation: {', '.join(foreign)}.")


@admin.register(TariffAssignment)
class TariffAssignmentAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    """Added (replacing the assignment at the same scope) or removed, never edited."""

    form = TariffAssignmentForm
    list_display = ["scope_key", "tariff", "level", "organisation", "created_by", "created_at"]
    list_filter = ["level", ("organisation", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["tariff", "organisation", "created_by"]
    search_fields = ["scope_key", "tariff__name"]
    raw_id_fields = ["station", "id_token_group"]

    def scope_q(self, *, user, capability) -> Q:
        return assignment_scope_q(user=user, capability=capability)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["tariff", "site", "station", "id_token_group"]
        return [
            "organisation",
            "tariff",
            "level",
            "site",
            "station",
            "id_token_group",
            "scope_key",
            "created_by",
            "created_at",
        ]

    def get_readonly_fields(self, request, obj=None):
        return ["organisation", "level", "scope_key", "created_by", "created_at"] if obj else []

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        if self._is_unscoped(request):
            return super().has_delete_permission(request, obj)
        return self._holds(request, obj, Capability.MANAGE)

    def save_model(self, request, obj, form, change):
        with domain_errors_as_http():
            assignment = tariff_assign(
                tariff=obj.tariff,
                site=obj.site,
                station=obj.station,
                id_token_group=obj.id_token_group,
                user=request.user,
            )
        saved_adopt(obj, assignment)

    def delete_model(self, request, obj):
        tariff_unassign(assignment=obj)

    def delete_queryset(self, request, queryset):
        # Only rows the user may manage: the changelist's queryset is the view scope.
        if not self._is_unscoped(request):
            queryset = queryset.filter(assignment_scope_q(user=request.user, capability=Capability.MANAGE))
        for assignment in queryset:
            tariff_unassign(assignment=assignment)


# --- site energy prices ---------------------------------------------------------------------------------


@admin.register(SiteEnergyPrice)
class SiteEnergyPriceAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    """A price change is a new row from its valid_from on; the history stays."""

    list_display = ["site", "valid_from", "currency", "price_per_kwh", "created_at"]
    list_filter = ["currency", ("site", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["site"]
    fields = ["site", "valid_from", "currency", "price_per_kwh", "time_of_use"]

    def scope_q(self, *, user, capability) -> Q:
        return site_scope_q(user=user, capability=capability, prefix="site__")

    def has_change_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        data = EnergyPriceInput(
            valid_from=obj.valid_from,
            currency=obj.currency,
            price_per_kwh=obj.price_per_kwh,
            time_of_use=obj.time_of_use or [],
        )
        with domain_errors_as_http():
            price = site_energy_price_create(site=obj.site, data=data)
        saved_adopt(obj, price)


# --- CDRs and credits -----------------------------------------------------------------------------------


class CdrLineInline(ReadOnlyInline):
    model = CdrLine
    fields = readonly_fields = (
        "position",
        "dimension",
        "element_index",
        "quantity",
        "used_quantity",
        "unit",
        "unit_price",
        "amount",
    )


class CdrCreditInline(ReadOnlyInline):
    model = CdrCredit
    fields = readonly_fields = ("created_at", "subtotal", "tax", "total", "reason", "created_by")
    show_change_link = True


@admin.register(ChargeDetailRecord)
class ChargeDetailRecordAdmin(
    ReadOnlyAdminMixin, NoFullCountAdminMixin, SiteScopedAdminMixin, admin.ModelAdmin
):
    """Final: nobody adds, edits or deletes a CDR (the database refuses it too). Corrections are credits."""

    # The fields of the CDR column table (billing/services/exports/columns.py), which the CSV and the API share.
    list_display = CDR_ADMIN_LIST
    list_filter = ["currency", ("site", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["site", "organisation"]
    search_fields = ["=station_identity", "=id_tag"]
    inlines = [CdrLineInline, CdrCreditInline]

    def scope_q(self, *, user, capability) -> Q:
        return cdr_scope_q(user=user, capability=capability)

    def get_fields(self, request, obj=None):
        if obj is not None and user_can(
            user=request.user,
            capability=Capability.BILLING,
            organisation_id=obj.organisation_id,
            site_id=obj.site_id,
        ):
            return [*CDR_ADMIN_FIELDS, "issue_credit"]
        return CDR_ADMIN_FIELDS

    @admin.display(description="Credit")
    def issue_credit(self, cdr: ChargeDetailRecord) -> str:
        url = reverse("admin:billing_cdrcredit_add") + f"?cdr={cdr.pk}"
        return format_html('<a href="{}">Issue a credit…</a>', url)


@admin.register(CdrLine)
class CdrLineAdmin(ReadOnlyAdminMixin, NoFullCountAdminMixin, SiteScopedAdminMixin, admin.ModelAdmin):
    """The priced lines of every CDR (also shown on the CDR's page)."""

    list_display = ["cdr", "position", "dimension", "quantity", "unit", "unit_price", "amount"]
    list_select_related = ["cdr"]
    raw_id_fields = ["cdr"]
    ordering = ["-id"]

    def scope_q(self, *, user, capability) -> Q:
        return cdr_scope_q(user=user, capability=capability, prefix="cdr__")


class CdrCreditAddForm(DomainValidatedForm):
    amount = forms.DecimalField(
        label="Subtotal to credit",
        required=False,
        max_digits=14,
        decimal_places=4,
        help_text="Excl. tax, in the CDR's currency; tax is credited at the CDR's rate. Empty: all that is "
        "left to credit.",
    )

    class Meta:
        model = CdrCredit
        fields = ["cdr", "amount", "reason"]

    def clean_amount(self):
        # As typed, without trailing zeros: the service counts decimals ("1.50" EUR has two, "1.5000" four).
        amount = self.cleaned_data["amount"]
        if amount is None:
            return None
        return Decimal(int(amount)) if amount == amount.to_integral_value() else amount.normalize()

    def domain_validate(self) -> None:
        # What people get wrong, shown on the form; cdr_credit_create checks it all again under a lock.
        cdr = self.instance.cdr
        left = cdr.subtotal + cdr_credit_totals(cdr=cdr)["credited_subtotal"]
        amount = self.cleaned_data.get("amount")
        if left <= 0:
            raise ValidationFailed(f"CDR {cdr.pk} is fully credited.")
        if amount is None:
            return
        if amount <= 0:
            raise ValidationFailed("The amount must be greater than 0.")
        if amount != round_money(amount, cdr.currency):
            raise ValidationFailed(f"At most {minor_unit(cdr.currency)} decimals for {cdr.currency}.")
        if amount > left:
            raise ValidationFailed(
                f"At most {round_money(left, cdr.currency)} {cdr.currency} is left to credit on CDR {cdr.pk}."
            )


@admin.register(CdrCredit)
class CdrCreditAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    """Credits are issued here (the billing right: operator admins, finance) and never changed or deleted."""

    form = CdrCreditAddForm
    manage_capability = Capability.BILLING
    list_display = [
        "id",
        "cdr",
        "organisation",
        "currency",
        "subtotal",
        "tax",
        "total",
        "created_by",
        "created_at",
    ]
    list_filter = ["currency"]
    list_select_related = ["cdr", "organisation", "created_by"]
    search_fields = ["=cdr__id", "reason"]
    raw_id_fields = ["cdr"]

    def scope_q(self, *, user, capability) -> Q:
        return cdr_scope_q(user=user, capability=capability, prefix="cdr__")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["cdr", "amount", "reason"]
        return [
            "cdr",
            "organisation",
            "currency",
            "subtotal",
            "tax",
            "total",
            "reason",
            "created_by",
            "created_at",
        ]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        with domain_errors_as_http():
            credit = cdr_credit_create(
                cdr=obj.cdr,
                user=request.user,
                reason=form.cleaned_data["reason"],
                subtotal=form.cleaned_data["amount"],
            )
        saved_adopt(obj, credit)


# --- what billing recorded ------------------------------------------------------------------------------


@admin.register(SessionPricing)
class SessionPricingAdmin(ReadOnlyAdminMixin, SiteScopedAdminMixin, admin.ModelAdmin):
    """The tariff each session was priced with, copied when it started."""

    list_display = ["session", "tariff_version", "assignment_scope", "snapshotted_at"]
    list_select_related = ["session", "tariff_version"]
    search_fields = ["=session__transaction_id", "=session__station__identity"]
    raw_id_fields = ["session", "tariff_version"]

    def scope_q(self, *, user, capability) -> Q:
        return station_scope_q(user=user, capability=capability, prefix="session__station__")


@admin.register(ExportJob)
class ExportJobAdmin(ReadOnlyAdminMixin, SiteScopedAdminMixin, admin.ModelAdmin):
    """Export runs, each seen by who asked for it (as in the API); started and downloaded through the API."""

    list_display = [
        "id",
        "kind",
        "status",
        "requested_by",
        "rows_done",
        "rows_total",
        "created_at",
        "finished_at",
    ]
    list_filter = ["kind", "status"]
    list_select_related = ["requested_by"]

    def scope_q(self, *, user, capability) -> Q:
        return Q(requested_by=user)

    def capable_somewhere(self, *, user, capability) -> bool:
        return bool(organisation_ids_with(user=user, capability=Capability.EXPORT))


# --- KPIs and ROI inputs --------------------------------------------------------------------------------


@admin.register(KpiDay)
class KpiDayAdmin(ReadOnlyAdminMixin, NoFullCountAdminMixin, SiteScopedAdminMixin, admin.ModelAdmin):
    """Computed by the KPI job (billing/services/kpis.py), never edited: recompute with `kpis_compute`."""

    list_display = [
        "day",
        "station",
        "site",
        "ports",
        "observed_s",
        "in_service_s",
        "sessions",
        "energy_wh",
        "incidents_detected",
        "incidents_resolved",
        "cdrs",
        "revenue",
        "currency",
        "computed_at",
    ]
    list_select_related = ["station", "site"]
    search_fields = ["=station__identity"]
    raw_id_fields = ["station", "site", "organisation"]
    date_hierarchy = "day"

    def scope_q(self, *, user, capability) -> Q:
        return station_scope_q(user=user, capability=capability, prefix="station__")


@admin.register(RoiInputs)
class RoiInputsAdmin(ReadOnlyAdminMixin, SiteScopedAdminMixin, admin.ModelAdmin):
    """Shown to who may see the ROI (the export right); edited on the portal's ROI page or PATCH /api/v1/roi/,
    which validate them."""

    list_display = [
        "organisation",
        "cpms_cost_annual",
        "truck_roll_cost",
        "baseline_uptime_pct",
        "updated_at",
    ]
    list_select_related = ["organisation"]

    def scope_q(self, *, user, capability) -> Q:
        return Q(organisation_id__in=organisation_ids_with(user=user, capability=Capability.EXPORT))

    def capable_somewhere(self, *, user, capability) -> bool:
        return bool(organisation_ids_with(user=user, capability=Capability.EXPORT))


# --- ad-hoc card payments -------------------------------------------------------------------------------


def _organisation_scope_q(*, user, capability: str, prefix: str = "") -> Q:
    return Q(**{f"{prefix}organisation_id__in": organisation_ids_with(user=user, capability=capability)})


class PaymentSettingsForm(DomainValidatedForm):
    """The secrets are write-only: never rendered (not even encrypted), and left blank they keep the stored
    value. Saved through payment_settings_update (PaymentSettingsAdmin.save_model)."""

    secret_key = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave blank to keep the stored key.",
    )
    webhook_secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave blank to keep the stored secret.",
    )

    class Meta:
        model = PaymentSettings
        fields = [
            "organisation",
            "enabled",
            "publishable_key",
            "api_base",
            "js_url",
            "hold_amount",
            "start_timeout_s",
            "operator_legal_name",
            "operator_address",
            "operator_vat_id",
        ]

    def domain_validate(self) -> None:
        # What payment_settings_update refuses, shown on the form; the service checks it all again.
        row = self.instance
        currency = row.organisation.currency
        hold = self.cleaned_data.get("hold_amount")
        if hold is not None and (hold <= 0 or hold != round_money(hold, currency)):
            raise ValidationFailed(
                f"hold_amount: a positive amount with at most {minor_unit(currency)} decimals"
            )
        timeout = self.cleaned_data.get("start_timeout_s")
        if timeout is not None and not 30 <= timeout <= 3600:
            raise ValidationFailed("start_timeout_s: between 30 and 3600 seconds")
        if self.cleaned_data.get("enabled"):
            missing = [
                name
                for name, value in (
                    ("publishable_key", self.cleaned_data.get("publishable_key")),
                    ("secret_key", self.cleaned_data.get("secret_key") or row.secret_key_encrypted),
                    (
                        "webhook_secret",
                        self.cleaned_data.get("webhook_secret") or row.webhook_secret_encrypted,
                    ),
                )
                if not value
            ]
            if missing:
                raise ValidationFailed(f"{', '.join(missing)}: required to enable payments")


@admin.register(PaymentSettings)
class PaymentSettingsAdmin(ScopedAdminMixin, admin.ModelAdmin):
    """An organisation's ad-hoc payment (operator admins and staff: the manage right); written through
    payment_settings_update, so the secrets are encrypted and the ad-hoc token group is created."""

    form = PaymentSettingsForm
    list_display = ["organisation", "enabled", "provider", "hold_amount", "start_timeout_s", "updated_at"]
    list_select_related = ["organisation"]
    readonly_fields = ["provider", "secrets_stored", "adhoc_group", "updated_at"]

    def scope_q(self, *, user, capability) -> Q:
        # The provider's account is the operator admins' business: hidden from roles without `manage`.
        return _organisation_scope_q(user=user, capability=Capability.MANAGE)

    def get_fields(self, request, obj=None):
        fields = [
            "organisation",
            "enabled",
            "provider",
            "publishable_key",
            "secret_key",
            "webhook_secret",
            "secrets_stored",
            "api_base",
            "js_url",
            "hold_amount",
            "start_timeout_s",
            "operator_legal_name",
            "operator_address",
            "operator_vat_id",
            "adhoc_group",
            "updated_at",
        ]
        return fields if obj is None else [f for f in fields if f != "organisation"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "organisation"] if obj is not None else self.readonly_fields

    @admin.display(description="Secrets stored")
    def secrets_stored(self, row: PaymentSettings) -> str:
        return (
            f"secret key: {'yes' if row.secret_key_encrypted else 'no'}, "
            f"webhook secret: {'yes' if row.webhook_secret_encrypted else 'no'}"
        )

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        with domain_errors_as_http():
            saved = payment_settings_update(
                organisation=obj.organisation,
                user=request.user,
                data=PaymentSettingsInput(
                    enabled=data["enabled"],
                    publishable_key=data["publishable_key"],
                    secret_key=data["secret_key"] or None,
                    webhook_secret=data["webhook_secret"] or None,
                    api_base=data["api_base"],
                    js_url=data["js_url"],
                    hold_amount=data["hold_amount"],
                    start_timeout_s=data["start_timeout_s"],
                    operator_legal_name=data["operator_legal_name"],
                    operator_address=data["operator_address"],
                    operator_vat_id=data["operator_vat_id"],
                ),
            )
        saved_adopt(obj, saved)


class PaymentRefundInline(ReadOnlyInline):
    model = PaymentRefund
    fields = readonly_fields = (
        "amount",
        "status",
        "credit",
        "provider_ref",
        "error",
        "created_by",
        "created_at",
    )


class PaymentEventInline(ReadOnlyInline):
    model = PaymentEvent
    fields = readonly_fields = ("created_at", "kind", "amount", "provider_event_id", "detail")


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdminMixin, SiteScopedAdminMixin, admin.ModelAdmin):
    """Read-only: money moves through the services (the portal's and the API's refund), never by editing."""

    list_display = [
        "id",
        "organisation",
        "station",
        "status",
        "currency",
        "hold_amount",
        "captured_amount",
        "refunded_amount",
        "unpaid_amount",
        "created_at",
    ]
    list_filter = ["status", "currency"]
    list_select_related = ["organisation", "station"]
    search_fields = ["=provider_ref", "=station__identity"]
    raw_id_fields = ["station", "evse", "id_token", "session", "start_command", "tariff_version"]
    exclude = ["access_key_hash"]
    inlines = [PaymentRefundInline, PaymentEventInline]

    def scope_q(self, *, user, capability) -> Q:
        return payment_scope_q(user=user, capability=capability)


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdminMixin, NoFullCountAdminMixin, SiteScopedAdminMixin, admin.ModelAdmin):
    """Every payment's audit trail (also shown on the payment's page); a webhook for no known payment is for
    superusers only (it has no station to scope it by)."""

    list_display = ["created_at", "payment", "kind", "amount", "provider_event_id"]
    list_filter = ["kind"]
    list_select_related = ["payment"]
    raw_id_fields = ["payment", "organisation"]
    search_fields = ["=provider_event_id"]
    ordering = ["-id"]

    def scope_q(self, *, user, capability) -> Q:
        return payment_scope_q(user=user, capability=capability, prefix="payment__")


@admin.register(PaymentRefund)
class PaymentRefundAdmin(ReadOnlyAdminMixin, SiteScopedAdminMixin, admin.ModelAdmin):
    """Refunds (made from the portal or the API: each with its CDR credit)."""

    list_display = ["id", "payment", "amount", "status", "credit", "provider_ref", "created_by", "created_at"]
    list_filter = ["status"]
    list_select_related = ["payment", "credit", "created_by"]
    raw_id_fields = ["payment", "credit", "created_by"]

    def scope_q(self, *, user, capability) -> Q:
        return payment_scope_q(user=user, capability=capability, prefix="payment__")
