from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone

from accounts.enums import Role
from cpms.db import ImmutableModel


class User(AbstractUser):
    """Our own user model from day one, so that later fields need no swap."""

    class Meta:
        ordering = ["username"]


class Organisation(models.Model):
    """A tenant: the charge point operator that owns sites, stations and id tokens."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    # docs/contract.md#unknown-identities-and-auto-registration: unknown identities connecting are created and
    # answered Pending until accepted.
    auto_register_stations = models.BooleanField(default=False)
    # ISO 4217: the currency of sessions priced without a tariff (free sessions still get a CDR of 0).
    currency = models.CharField(max_length=3, default="EUR")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in an organisation. A site host's sites are guardian object permissions."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=32, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organisation"], name="membership_one_role_per_org"),
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} - {self.organisation} ({self.role})"


class AuditAction(models.TextChoices):
    """What an audit record says happened. Codes are stable: filters and exports use them."""

    USER_INVITED = "user.invited", "User invited"
    MEMBERSHIP_CHANGED = "membership.changed", "Role changed"
    SITE_GRANT_ADDED = "site_grant.added", "Site grant added"
    SITE_GRANT_REMOVED = "site_grant.removed", "Site grant removed"
    SITE_GRANT_CHANGED = "site_grant.changed", "Site pricing right changed"
    USER_DEACTIVATED = "user.deactivated", "User deactivated"
    USER_ACTIVATED = "user.activated", "User reactivated"
    INVITE_ACCEPTED = "user.invite_accepted", "Invitation accepted"
    ADMIN_ADD = "admin.add", "Admin: added"
    ADMIN_CHANGE = "admin.change", "Admin: changed"
    ADMIN_DELETE = "admin.delete", "Admin: deleted"
    COMMAND_SENT = "command.sent", "Remote command"
    EXPORT_CREATED = "export.created", "Export"
    SITE_ACCESS_RULES_CHANGED = "site.access_rules_changed", "Site access rules changed"
    ROAMING_PARTNER_CREATED = "roaming.partner_created", "Roaming partner created"
    ROAMING_PARTNER_REGISTERED = "roaming.partner_registered", "Roaming partner registered"
    ROAMING_PARTNER_CHANGED = "roaming.partner_changed", "Roaming partner changed"
    ROAMING_CREDENTIALS_ROTATED = "roaming.credentials_rotated", "Roaming credentials rotated"
    ROAMING_PARTNER_UNREGISTERED = "roaming.partner_unregistered", "Roaming partner unregistered"
    CERTIFICATE_CA_CREATED = "certificate.ca_created", "Certificate authority created"
    CERTIFICATE_CA_IMPORTED = "certificate.ca_imported", "Certificate authority imported"
    CERTIFICATE_ISSUED = "certificate.issued", "Certificate issued"
    CERTIFICATE_REVOKED = "certificate.revoked", "Certificate revoked"
    CERTIFICATE_RENEWAL_REQUESTED = "certificate.renewal_requested", "Certificate renewal requested"
    CERTIFICATE_ROOT_ROLLOUT = "certificate.root_rollout", "CSMS root rollout"


class AuditRecord(ImmutableModel):
    """Who changed what, when, from where (docs/reliability.md case 42). Insert-only: the model refuses
    updates and deletes, and database triggers (migration 0004) refuse them to raw SQL too.

    The foreign keys carry no database constraint and do nothing on delete: the record keeps the ids of an
    actor or organisation that was deleted later (and a cascade must not try to update or delete it)."""

    created_at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
        help_text="Empty for the system.",
    )
    organisation = models.ForeignKey(
        Organisation,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    action = models.CharField(max_length=64, choices=AuditAction.choices)
    object_type = models.CharField(max_length=100, blank=True, help_text="app_label.model")
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organisation", "created_at"], name="audit_org_time"),
            models.Index(fields=["created_at"], name="audit_time"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.action} {self.object_type} {self.object_id}"
