from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models

from accounts.enums import Role


class User(AbstractUser):
    """Our own user model from day one, so that later fields need no swap."""

    class Meta:
        ordering = ["username"]


class Organisation(models.Model):
    """A tenant: the charge point operator that owns sites, stations and id tokens."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    # CONTRACT.md: unknown identities connecting are created and answered Pending until accepted.
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
