"""Incident pages: the list (open counts, filters) and the detail with its timeline, acknowledge and resolve.

Access: whoever sees a station sees its incidents (`incident_list`/`incident_access`: another tenant's incident
is a 404); acknowledging and resolving need COMMAND on the station's site (the services raise
PermissionDenied: a 403 page). The buttons show only to users who may use them.
"""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.enums import Capability
from cpms.errors import Conflict, ValidationFailed
from cpms.portal.base import PortalRequest, page_of, portal_view
from stations.enums import IncidentKind
from stations.scope import user_can
from stations.selectors import incident_access, incident_list, incident_open_counts, site_list
from stations.services.incidents import (
    incident_acknowledge,
    incident_place_label,
    incident_resolve,
    incident_state,
)

STATES = ("open", "acknowledged", "resolved")
FILTERS = ("status", "kind", "site")


@portal_view
def incident_list_page(request: PortalRequest):
    filters = {name: request.GET.get(name) or None for name in FILTERS}
    error = ""
    try:
        incidents = incident_list(user=request.user, filters=filters)
    except ValidationFailed as exc:
        error = exc.message
        incidents = incident_list(user=request.user).none()
    page = page_of(request, incidents)
    rows = [
        {"incident": incident, "state": incident_state(incident), "place": incident_place_label(incident)}
        for incident in page.object_list
    ]
    return render(
        request,
        "stations/incident_list.html",
        {
            "page": page,
            "rows": rows,
            "counts": incident_open_counts(user=request.user),
            "filters": {name: value or "" for name, value in filters.items()},
            "filtered": any(filters.values()),
            "error": error,
            "states": STATES,
            "kinds": IncidentKind.choices,
            "sites": site_list(user=request.user).order_by("name"),
        },
    )


@portal_view
def incident_detail(request: PortalRequest, pk: int):
    incident = incident_access(user=request.user, pk=pk)
    state = incident_state(incident)
    may_act = state != "resolved" and user_can(
        user=request.user,
        capability=Capability.COMMAND,
        organisation_id=incident.organisation_id,
        site_id=incident.site_id,
    )
    time_to_detect = (incident.detected_at - incident.occurred_at).total_seconds()
    time_to_repair = (
        (incident.resolved_at - incident.detected_at).total_seconds() if incident.resolved_at else None
    )
    return render(
        request,
        "stations/incident_detail.html",
        {
            "incident": incident,
            "state": state,
            "place": incident_place_label(incident) or "Whole station",
            "time_zone": incident.site.time_zone if incident.site else "",
            "may_act": may_act,
            "time_to_detect": time_to_detect,
            "time_to_repair": time_to_repair,
        },
    )


@require_POST
@portal_view
def incident_acknowledge_view(request: PortalRequest, pk: int):
    incident = incident_access(user=request.user, pk=pk, capability=Capability.COMMAND)
    try:
        incident_acknowledge(actor=request.user, incident=incident)
    except Conflict as exc:
        messages.warning(request, exc.message)
    else:
        messages.success(request, "Incident acknowledged.")
    return redirect("portal:incident-detail", pk=incident.pk)


@require_POST
@portal_view
def incident_resolve_view(request: PortalRequest, pk: int):
    """The form says how it was fixed: `outcome` = remote (resolved remotely) or site_visit; no default, so
    that an unanswered question is not recorded as either answer."""
    incident = incident_access(user=request.user, pk=pk, capability=Capability.COMMAND)
    outcome = request.POST.get("outcome")
    if outcome not in ("remote", "site_visit"):
        messages.error(request, "Say whether it was resolved remotely or needed a site visit.")
        return redirect("portal:incident-detail", pk=incident.pk)
    try:
        incident_resolve(
            actor=request.user,
            incident=incident,
            resolved_remotely=outcome == "remote",
            note=request.POST.get("note", ""),
        )
    except (Conflict, ValidationFailed) as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Incident resolved.")
    return redirect("portal:incident-detail", pk=incident.pk)
