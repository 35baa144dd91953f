"""Portal pages for the certificate lifecycle (issue 16): a station's security profile and certificate inventory
with renew/revoke buttons, and the organisation's certificate authorities.

What each role sees: anyone who sees the station sees its inventory (public certificates: serials, subjects,
expiries); renewing and revoking need MANAGE on the station (operator admins and staff), so site hosts and
finance get no buttons and a 403 on POST. The CA page is for organisation-wide MANAGE only: site hosts see no
CA at all. No page here reads `private_key_encrypted`, `certificate_pem` or any key: a CA is shown by name,
purpose, whether the CSMS holds its key, expiry and fingerprint.
"""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.enums import Capability
from accounts.selectors import organisation_ids_with
from cpms.errors import DomainError, NotFound, PermissionDenied
from cpms.ocpp_wire import certificates as wire
from cpms.portal.base import PortalRequest, portal_view
from stations.enums import CommandStatus
from stations.scope import user_can
from stations.selectors import station_access
from stations.services import certificates as service

RENEWABLE_TYPES = (wire.CHARGING_STATION, wire.V2G)


@portal_view
def station_certificates_page(request: PortalRequest, identity: str):
    station = station_access(user=request.user, identity=identity, with_points=False)
    certificates = (
        service.station_certificate_list(station=station)
        # The inventory's columns only: the PEM is public, but nothing here needs it.
        .only(
            "pk",
            "use",
            "source",
            "status",
            "serial_number",
            "subject",
            "not_before",
            "not_after",
            "revoked_at",
            "revocation_reason",
            "renewal_requested_at",
            "issued_by__name",
        )
        .order_by("status", "-not_after", "-pk")
    )
    return render(
        request,
        "portal/certificates/station_certificates.html",
        {
            "station": station,
            "certificates": certificates,
            "time_zone": station.site.time_zone if station.site else "UTC",
            "can_manage": user_can(
                user=request.user,
                capability=Capability.MANAGE,
                organisation_id=station.organisation_id,
                site_id=station.site_id,
            ),
            "renewable_types": RENEWABLE_TYPES,
        },
    )


@require_POST
@portal_view
def station_certificate_renew(request: PortalRequest, identity: str):
    """Ask the station for a new certificate now (a sign-certificate trigger, waiting for its answer)."""
    station = station_access(
        user=request.user, identity=identity, capability=Capability.MANAGE, with_points=False
    )
    certificate_type = request.POST.get("certificate_type") or wire.CHARGING_STATION
    if certificate_type not in RENEWABLE_TYPES:
        messages.error(request, f"Unknown certificate type {certificate_type!r}.")
        return redirect("portal:station-certificates", identity=station.identity)
    try:
        command = service.certificate_renew_now(
            station=station, actor=request.user, certificate_type=certificate_type
        )
    except DomainError as exc:
        messages.error(request, f"Renew: {exc.message}")
    else:
        if command.status == CommandStatus.ANSWERED:
            messages.success(
                request,
                f"Renewal of the {certificate_type} requested: the station answered "
                f"{(command.response or {}).get('status', 'the trigger')}.",
            )
        else:
            messages.error(
                request, f"Renew: {command.error_description or command.error_code or command.status}."
            )
    return redirect("portal:station-certificates", identity=station.identity)


@require_POST
@portal_view
def station_certificate_revoke(request: PortalRequest, identity: str, pk: int):
    """Revoke one certificate of the station's inventory, with a reason."""
    station = station_access(
        user=request.user, identity=identity, capability=Capability.MANAGE, with_points=False
    )
    certificate = service.station_certificate_list(station=station).filter(pk=pk).first()
    if certificate is None:
        raise NotFound(f"Certificate {pk} not found.")
    try:
        revoked = service.certificate_revoke(
            certificate=certificate, reason=request.POST.get("reason", ""), actor=request.user
        )
    except DomainError as exc:
        messages.error(request, f"Revoke: {exc.message}")
    else:
        messages.success(request, f"Certificate {revoked.serial_number} revoked.")
    return redirect("portal:station-certificates", identity=station.identity)


@portal_view
def certificate_authority_list_page(request: PortalRequest):
    """The CAs and trust anchors of the organisations where the user manages (organisation-wide)."""
    user = request.user
    organisation_ids = (
        None if user.is_superuser else organisation_ids_with(user=user, capability=Capability.MANAGE)
    )
    if organisation_ids == []:
        # Site hosts (MANAGE on no organisation) and finance: no CA page at all.
        raise PermissionDenied("Your role does not give access to this page.")
    authorities = service.ca_list(organisation_ids=organisation_ids).order_by(
        "organisation__name", "purpose", "-not_after", "pk"
    )
    rows = [
        {
            "name": ca.name,
            "organisation": ca.organisation.name,
            "purpose": ca.get_purpose_display(),
            "has_key": bool(ca.private_key_encrypted),
            "active": ca.active,
            "not_after": ca.not_after,
            "fingerprint": service.fingerprint(ca.certificate_pem),
            "crl_url": service.crl_url(ca) if ca.private_key_encrypted else "",
        }
        for ca in authorities
    ]
    return render(request, "portal/certificates/authority_list.html", {"authorities": rows})
