"""Admin for certificate authorities and the station certificate inventory (stations/admin.py imports this
module). The CA's private key is not a field of any form or page here: a CA is created through the service
(which generates and encrypts the key) and only its certificate is shown. The inventory is a record; its one
action, revoke, calls the service.
"""

from django import forms
from django.contrib import admin, messages

from accounts.admin import domain_errors_as_http, saved_adopt
from accounts.enums import Capability
from cpms.errors import DomainError
from stations.admin_firmware import OrganisationScopedAdmin, StationRecordAdmin
from stations.enums import CertificateStatus
from stations.models import CertificateAuthority, OcspResponseCache, StationCertificate
from stations.scope import user_can
from stations.services.certificates import ca_create, certificate_revoke, fingerprint


class CertificateAuthorityAddForm(forms.ModelForm):
    valid_days = forms.IntegerField(min_value=1, max_value=36500, initial=3650)
    key_type = forms.ChoiceField(choices=[("ec", "EC P-256"), ("rsa", "RSA 3072")], initial="ec")

    class Meta:
        model = CertificateAuthority
        fields = ["organisation", "name", "purpose"]


@admin.register(CertificateAuthority)
class CertificateAuthorityAdmin(OrganisationScopedAdmin):
    list_display = ["name", "organisation", "purpose", "active", "not_after", "has_key"]
    list_filter = ["purpose", "active", ("organisation", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["organisation"]
    search_fields = ["name"]
    # Never private_key_encrypted: not even encrypted does the key reach a page.
    SHOWN = [
        "organisation",
        "name",
        "purpose",
        "active",
        "certificate_pem",
        "fingerprint_sha256",
        "has_key",
        "crl_number",
        "not_after",
        "created_at",
    ]
    ADD_FIELDS = ["organisation", "name", "purpose", "valid_days", "key_type"]

    @admin.display(boolean=True, description="Key held here")
    def has_key(self, ca: CertificateAuthority) -> bool:
        return bool(ca.private_key_encrypted)

    @admin.display(description="SHA-256 fingerprint")
    def fingerprint_sha256(self, ca: CertificateAuthority) -> str:
        return fingerprint(ca.certificate_pem)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = CertificateAuthorityAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request, obj=None):
        return self.ADD_FIELDS if obj is None else self.SHOWN

    def get_readonly_fields(self, request, obj=None):
        # Only `active` changes (which CA signs); a certificate is never edited.
        return [] if obj is None else [name for name in self.SHOWN if name != "active"]

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        with domain_errors_as_http():
            ca = ca_create(
                organisation=form.cleaned_data["organisation"],
                name=form.cleaned_data["name"],
                purpose=form.cleaned_data["purpose"],
                valid_days=form.cleaned_data["valid_days"],
                key_type=form.cleaned_data["key_type"],
                actor=request.user,
            )
        saved_adopt(obj, ca)


@admin.register(StationCertificate)
class StationCertificateAdmin(StationRecordAdmin):
    list_display = ["station", "use", "source", "status", "serial_number", "not_after", "issued_by"]
    list_filter = ["use", "source", "status"]
    list_select_related = ["station", "issued_by"]
    search_fields = ["=station__identity", "=serial_number"]
    raw_id_fields = ["station", "issued_by", "organisation"]
    actions = ["revoke"]

    @admin.action(description="Revoke the selected certificates")
    def revoke(self, request, queryset):
        done = 0
        for certificate in queryset.select_related("station").order_by("pk"):
            if certificate.status == CertificateStatus.REVOKED:
                continue
            site_id = certificate.station.site_id if certificate.station else None
            if not user_can(
                user=request.user,
                capability=Capability.MANAGE,
                organisation_id=certificate.organisation_id,
                site_id=site_id,
            ):
                self.message_user(request, f"You may not revoke {certificate}.", messages.WARNING)
                continue
            try:
                certificate_revoke(
                    certificate=certificate,
                    reason=f"revoked in the admin by {request.user}",
                    actor=request.user,
                )
                done += 1
            except DomainError as exc:
                self.message_user(request, exc.message, messages.WARNING)
        self.message_user(request, f"Revoked {done} certificate(s).", messages.SUCCESS)


@admin.register(OcspResponseCache)
class OcspResponseCacheAdmin(admin.ModelAdmin):
    """OCSP answers about certificates of every organisation (no tenant of its own): superusers only, read
    only."""

    list_display = ["serial_number", "status", "responder_url", "this_update", "next_update", "fetched_at"]
    list_filter = ["status"]
    search_fields = ["=serial_number"]

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
