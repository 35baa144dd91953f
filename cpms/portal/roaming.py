"""Portal pages of roaming (OCPI 2.2.1, issue 17): the organisation's CPO party and its partners (roles,
status, delivery: last success, last error, backlog and refused pushes), what we publish to each and the
tariff its drivers pay; a partner's page with its endpoints and outbox; and the buttons "Sync now",
"Retry refused", "Suspend" / "Resume", which call the services the API calls.

Roaming is the operator admins' business (cpms.ocpi.selectors): the pages need the manage capability (403
for other roles), and another organisation's partner is a 404. Partners are created, and registered with a
token A, through the API (`POST /api/v1/roaming/partners/`).
"""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.enums import Capability
from cpms.errors import DomainError
from cpms.ocpi.enums import PartnerStatus
from cpms.ocpi.models import OcpiPartner
from cpms.ocpi.protocol import OcpiError
from cpms.ocpi.selectors import (
    partner_access,
    partner_list,
    partner_outbox_items,
    partner_outbox_summary,
    partner_tariffs,
    roaming_organisation_list,
)
from cpms.ocpi.services.credentials import partner_suspend
from cpms.ocpi.services.outbox import outbox_retry_refused
from cpms.ocpi.services.partners import partner_sync
from cpms.portal.base import PortalRequest, page_of, portal_view, require_capability


def _roles(partner: OcpiPartner) -> list[str]:
    return [f"{role['country_code']}*{role['party_id']} {role['role']}" for role in partner.roles]


def _publishes(partner: OcpiPartner) -> str:
    if partner.publish_all_sites:
        return "All sites"
    names = sorted(site.name for site in partner.published_sites.all())
    return ", ".join(names) if names else "No site"


def _row(partner: OcpiPartner, tariffs: dict) -> dict:
    assignment = tariffs.get(partner.pk)
    return {
        "partner": partner,
        "roles": _roles(partner),
        "publishes": _publishes(partner),
        "tariff": assignment.tariff if assignment is not None else None,
        "may_sync": partner.status == PartnerStatus.REGISTERED,
        "may_suspend": partner.status == PartnerStatus.REGISTERED,
        "may_resume": partner.status == PartnerStatus.SUSPENDED,
    }


@portal_view
def roaming_page(request: PortalRequest):
    require_capability(request, Capability.MANAGE)
    partners = list(partner_list(user=request.user))
    tariffs = partner_tariffs(user=request.user, partners=partners)
    by_party: dict[int, list[dict]] = {}
    for partner in partners:
        by_party.setdefault(partner.party_id, []).append(_row(partner, tariffs))
    organisations = []
    for organisation in roaming_organisation_list(user=request.user):
        # The reverse one-to-one raises when the organisation has no party yet.
        party = getattr(organisation, "ocpi_party", None)
        organisations.append(
            {
                "organisation": organisation,
                "party": party,
                "rows": by_party.get(party.pk, []) if party is not None else [],
            }
        )
    return render(request, "portal/roaming/roaming.html", {"organisations": organisations})


@portal_view
def roaming_partner_page(request: PortalRequest, pk: int):
    partner = partner_access(user=request.user, pk=pk)
    tariffs = partner_tariffs(user=request.user, partners=[partner])
    return render(
        request,
        "portal/roaming/partner.html",
        {
            "row": _row(partner, tariffs),
            "partner": partner,
            "summary": partner_outbox_summary(partner=partner),
            "page": page_of(request, partner_outbox_items(partner=partner)),
        },
    )


ACTIONS = ("sync", "retry-refused", "suspend", "resume")


@require_POST
@portal_view
def roaming_partner_action(request: PortalRequest, pk: int, action: str):
    """One of ACTIONS on the partner; back to the page the button was on (`back=partner`, else the list)."""
    if action not in ACTIONS:
        raise Http404("No such action.")
    partner = partner_access(user=request.user, pk=pk)
    try:
        if action == "sync":
            result = partner_sync(partner=partner, actor=request.user)
            messages.success(
                request,
                f"Sync queued for {partner.name}: {result.locations} location(s), {result.tariffs} tariff(s).",
            )
        elif action == "retry-refused":
            count = outbox_retry_refused(partner=partner)
            messages.success(request, f"{count} refused push(es) to {partner.name} queued again.")
        else:
            partner_suspend(partner=partner, suspended=action == "suspend", actor=request.user)
            done = "suspended" if action == "suspend" else "resumed"
            messages.success(request, f"{partner.name} {done}.")
    except (DomainError, OcpiError) as exc:
        if isinstance(exc, DomainError) and exc.status_code not in (400, 409):
            raise
        messages.error(request, exc.message)
    if request.POST.get("back") == "partner":
        return redirect("portal:roaming-partner", pk=partner.pk)
    return redirect("portal:roaming")
