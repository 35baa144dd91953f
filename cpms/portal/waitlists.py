"""Portal pages of site waitlists: the sites with their queue lengths, and one site's queue (in order, with
places in line) with a form to add a driver and buttons to remove one (command right on the site).

Access is decided by the selectors (`site_access`, `waitlist_entry_access`) and the services, never here:
another tenant's site or entry is a 404, a role without the command right gets a 403 for a POST.
"""

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.enums import Capability
from cpms.errors import Conflict, ValidationFailed
from cpms.portal.base import PortalRequest, page_of, portal_view, require_capability
from sessions.models import WaitlistStatus
from sessions.selectors import (
    waitlist_entry_access,
    waitlist_entry_list,
    waitlist_positions,
    waitlist_site_summaries,
)
from sessions.services.waitlists import waitlist_join, waitlist_leave
from stations.enums import CommandSource
from stations.scope import user_can
from stations.selectors import site_access

# Closed entries (fulfilled, expired, cancelled) shown under the queue, newest first.
RECENT_CLOSED = 20


class WaitlistJoinForm(forms.Form):
    id_token = forms.CharField(label="Token value", max_length=255, strip=True)
    contact_email = forms.EmailField(
        label="Contact email", required=False, help_text="Empty: the token's owner email."
    )


@portal_view
def waitlist_list_page(request: PortalRequest):
    require_capability(request, Capability.VIEW)
    sites = waitlist_site_summaries(user=request.user)
    return render(request, "sessions/waitlist_list.html", {"page": page_of(request, sites)})


@portal_view
def waitlist_site_page(request: PortalRequest, site_id: int):
    site = site_access(user=request.user, pk=site_id)
    queue = list(waitlist_entry_list(user=request.user, site=site, filters={"open": True}))
    positions = waitlist_positions(site_id=site.pk)
    closed = waitlist_entry_list(user=request.user, site=site, filters={"open": False}).order_by(
        "-closed_at", "-id"
    )[:RECENT_CLOSED]
    return render(
        request,
        "sessions/waitlist_site.html",
        {
            "site": site,
            "queue": [(entry, positions.get(entry.pk)) for entry in queue],
            "waiting": len(positions),
            "offered": sum(1 for entry in queue if entry.status == WaitlistStatus.OFFERED),
            "closed": closed,
            "can_command": user_can(
                user=request.user,
                capability=Capability.COMMAND,
                organisation_id=site.organisation_id,
                site_id=site.pk,
            ),
            "form": WaitlistJoinForm(),
        },
    )


@require_POST
@portal_view
def waitlist_join_view(request: PortalRequest, site_id: int):
    """Add a driver (token value + email) at the end of the queue; the service checks the command right."""
    site = site_access(user=request.user, pk=site_id)
    form = WaitlistJoinForm(request.POST)
    if not form.is_valid():
        problems = "; ".join(
            f"{field}: {' '.join(str(error) for error in errors)}" for field, errors in form.errors.items()
        )
        messages.error(request, f"Not added: {problems}")
        return redirect("portal:waitlist-site", site_id=site.pk)
    try:
        entry = waitlist_join(
            actor=request.user,
            site=site,
            id_token=form.cleaned_data["id_token"],
            contact_email=form.cleaned_data["contact_email"],
        )
    except (ValidationFailed, Conflict) as exc:  # PermissionDenied goes on to the 403 page
        messages.error(request, f"Not added: {exc.message}")
    else:
        messages.success(request, f"{entry.id_token.value} joined the waitlist of {site.name}.")
    return redirect("portal:waitlist-site", site_id=site.pk)


@require_POST
@portal_view
def waitlist_leave_view(request: PortalRequest, entry_id: int):
    entry = waitlist_entry_access(user=request.user, pk=entry_id, capability=Capability.COMMAND)
    try:
        waitlist_leave(actor=request.user, entry=entry, cancel_reservation=True, source=CommandSource.PORTAL)
    except Conflict as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{entry.id_token.value} left the waitlist of {entry.site.name}.")
    return redirect("portal:waitlist-site", site_id=entry.site_id)
