from django.db import models


class Role(models.TextChoices):
    """A user's role within one organisation.

    Organisation-wide roles see every site of the organisation. A site host sees only the sites they were
    granted (django-guardian object permissions on Site).
    """

    OPERATOR_ADMIN = "operator_admin", "Operator admin"
    OPERATOR_STAFF = "operator_staff", "Operator staff"
    SITE_HOST = "site_host", "Site host"
    FINANCE = "finance", "Finance"
    SUPPORT = "support", "Support"


class Capability(models.TextChoices):
    VIEW = "view", "View"
    MANAGE = "manage", "Create and edit stations, sites, tokens"
    COMMAND = "command", "Send remote commands"
    EXPORT = "export", "Export finance data"
    BILLING = "billing", "Issue credits on charge detail records"
    MANAGE_USERS = "manage_users", "Manage users"
    PRICING = "pricing", "Set prices and access rules of their sites"


ROLE_CAPABILITIES: dict[str, frozenset[str]] = {
    Role.OPERATOR_ADMIN: frozenset(
        {
            Capability.VIEW,
            Capability.MANAGE,
            Capability.COMMAND,
            Capability.EXPORT,
            Capability.BILLING,
            Capability.MANAGE_USERS,
            Capability.PRICING,
        }
    ),
    Role.OPERATOR_STAFF: frozenset(
        {Capability.VIEW, Capability.MANAGE, Capability.COMMAND, Capability.PRICING}
    ),
    # A site host sets prices and access rules only on the sites where they were also granted
    # `stations.change_site` (see stations.scope.site_host_site_ids).
    Role.SITE_HOST: frozenset({Capability.VIEW, Capability.COMMAND, Capability.PRICING}),
    Role.FINANCE: frozenset({Capability.VIEW, Capability.EXPORT, Capability.BILLING}),
    Role.SUPPORT: frozenset({Capability.VIEW, Capability.COMMAND}),
}

ORGANISATION_WIDE_ROLES = frozenset({Role.OPERATOR_ADMIN, Role.OPERATOR_STAFF, Role.FINANCE, Role.SUPPORT})
