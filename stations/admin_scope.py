"""The role-scoped admin of every model at or above sites: accounts.admin.ScopedAdminMixin plus the site
host's per-site grants (stations.scope), which accounts cannot see (accounts <- stations)."""

from accounts.admin import ScopedAdminMixin
from accounts.models import User
from accounts.selectors import organisation_ids_with
from stations.scope import site_host_site_ids


class SiteScopedAdminMixin(ScopedAdminMixin):
    def capable_somewhere(self, *, user: User, capability: str) -> bool:
        """Whether the user's roles grant `capability` anywhere: an organisation-wide role or a hosted site."""
        return bool(
            organisation_ids_with(user=user, capability=capability)
            or site_host_site_ids(user=user, capability=capability)
        )
