"""Login throttling (docs/reliability.md case 41) on top of django-axes."""

import ipaddress

from axes.backends import AxesStandaloneBackend
from django.conf import settings


class LoginLockoutBackend(AxesStandaloneBackend):
    """axes' lockout check for logins over HTTP (the portal, the admin: both pass the request).

    axes refuses `authenticate()` calls without a request outright; those come from code in this process
    (the test client's `login()`, a shell), not from a login endpoint, so they go on to the next backend.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def client_ip(request) -> str | None:
    """The client's address: REMOTE_ADDR, or behind our TLS proxy (CLIENT_IP_FROM_FORWARDED_FOR) the last
    X-Forwarded-For entry, which the proxy appended (earlier entries are whatever the client sent)."""
    address = request.META.get("REMOTE_ADDR") or ""
    if getattr(settings, "CLIENT_IP_FROM_FORWARDED_FOR", False):
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        if forwarded and forwarded[-1]:
            address = forwarded[-1]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None
