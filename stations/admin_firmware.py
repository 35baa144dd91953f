"""Admin for firmware files, firmware updates, diagnostics/log uploads and bulk jobs (stations/admin.py
imports this module).

Scoped like the rest of the admin (stations/admin_scope.py): firmware files and jobs belong to an
organisation and are seen by its organisation-wide roles; updates and uploads belong to a station and are
seen by whoever sees the station. Only firmware files are added here (through the service, which computes
the size, hash and token); the rest is a record of what happened.
"""

from django import forms
from django.contrib import admin
from django.db.models import Q
from django.utils.html import format_html

from accounts.admin import ReadOnlyAdminMixin, ScopedInlineMixin, domain_errors_as_http, saved_adopt
from accounts.selectors import organisation_ids_with
from stations.admin_scope import SiteScopedAdminMixin
from stations.models import CommandJob, CommandJobTarget, DiagnosticsUpload, FirmwareFile, FirmwareUpdate
from stations.scope import station_scope_q
from stations.services.firmware import firmware_download_url, firmware_file_create


class OrganisationScopedAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    """Objects of an organisation as a whole: organisation-wide roles only (site hosts hold none)."""

    def scope_q(self, *, user, capability) -> Q:
        return Q(organisation_id__in=organisation_ids_with(user=user, capability=capability))

    def capable_somewhere(self, *, user, capability) -> bool:
        return bool(organisation_ids_with(user=user, capability=capability))


class StationRecordAdmin(ReadOnlyAdminMixin, SiteScopedAdminMixin, admin.ModelAdmin):
    """Read-only records of one station."""

    def scope_q(self, *, user, capability) -> Q:
        return station_scope_q(user=user, capability=capability, prefix="station__")


class FirmwareFileAddForm(forms.ModelForm):
    class Meta:
        model = FirmwareFile
        fields = ["organisation", "name", "version", "file", "signature", "signing_certificate"]


@admin.register(FirmwareFile)
class FirmwareFileAdmin(OrganisationScopedAdmin):
    list_display = ["name", "version", "organisation", "size_bytes", "created_at", "uploaded_by"]
    list_filter = [("organisation", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["organisation", "uploaded_by"]
    search_fields = ["name", "version", "sha256"]
    SHOWN = [
        "organisation",
        "name",
        "version",
        "file",
        "size_bytes",
        "sha256",
        "download_link",
        "signature",
        "signing_certificate",
        "uploaded_by",
        "created_at",
    ]

    @admin.display(description="Download URL (for chargers)")
    def download_link(self, firmware: FirmwareFile) -> str:
        url = firmware_download_url(firmware)
        return format_html('<a href="{}">{}</a>', url, url)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = FirmwareFileAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request, obj=None):
        return FirmwareFileAddForm.Meta.fields if obj is None else self.SHOWN

    def get_readonly_fields(self, request, obj=None):
        # An image is not edited: its hash and token describe exactly that file. Upload a new one.
        return [] if obj is None else self.SHOWN

    def save_model(self, request, obj, form, change):
        if change:
            return
        with domain_errors_as_http():
            firmware = firmware_file_create(
                actor=request.user,
                organisation_id=obj.organisation_id,
                name=form.cleaned_data["name"],
                version=form.cleaned_data["version"],
                content=form.cleaned_data["file"],
                signature=form.cleaned_data["signature"],
                signing_certificate=form.cleaned_data["signing_certificate"],
            )
        saved_adopt(obj, firmware)


@admin.register(FirmwareUpdate)
class FirmwareUpdateAdmin(StationRecordAdmin):
    list_display = ["created_at", "station", "firmware", "job", "request_id", "status", "updated_at"]
    list_filter = ["status"]
    list_select_related = ["station", "firmware", "job"]
    search_fields = ["=station__identity"]
    raw_id_fields = ["station", "firmware", "job", "command"]


@admin.register(DiagnosticsUpload)
class DiagnosticsUploadAdmin(StationRecordAdmin):
    list_display = ["created_at", "station", "kind", "status", "file_name", "size_bytes", "uploaded_at"]
    list_filter = ["kind", "status"]
    list_select_related = ["station"]
    search_fields = ["=station__identity", "file_name"]
    raw_id_fields = ["station", "command", "requested_by"]
    # The token is the charger's upload credential: not shown.
    exclude = ["upload_token"]


class CommandJobTargetInline(ScopedInlineMixin, admin.TabularInline):
    model = CommandJobTarget
    extra = 0
    fields = readonly_fields = ("station", "status", "detail", "finished_at")
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("station")

    def has_add_permission(self, request, obj):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(CommandJob)
class CommandJobAdmin(ReadOnlyAdminMixin, OrganisationScopedAdmin):
    list_display = [
        "id",
        "kind",
        "action",
        "organisation",
        "status",
        "total",
        "done_count",
        "failed_count",
        "created_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["kind", "status", ("organisation", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["organisation", "created_by"]
    search_fields = ["action"]
    raw_id_fields = ["template", "firmware", "created_by"]
    inlines = [CommandJobTargetInline]
