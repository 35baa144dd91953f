"""Versions, version details and credentials (OCPI 2.2.1 sections 6 and 7): reachable with token A."""

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path

from cpms.ocpi.enums import OCPI_VERSION, PartnerStatus
from cpms.ocpi.protocol import OcpiError
from cpms.ocpi.services import credentials
from cpms.ocpi.views.base import OcpiContext, ocpi_endpoint


def _base_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/")


@ocpi_endpoint(methods=("GET",), registered=False, routed=False)
def versions_view(request: HttpRequest, ctx: OcpiContext) -> Any:
    return [{"version": OCPI_VERSION, "url": credentials.version_details_url(_base_url(request))}]


@ocpi_endpoint(methods=("GET",), registered=False, routed=False)
def version_details_view(request: HttpRequest, ctx: OcpiContext) -> Any:
    return {"version": OCPI_VERSION, "endpoints": credentials.our_endpoints(_base_url(request))}


@ocpi_endpoint(methods=("GET", "POST", "PUT", "DELETE"), registered=False, routed=False)
def credentials_view(request: HttpRequest, ctx: OcpiContext) -> Any | HttpResponse:
    base_url = _base_url(request)
    if request.method == "GET":
        # Our credentials for this partner: the token it calls us with is the one it just presented.
        return credentials.our_credentials(party=ctx.party, token=ctx.token, base_url=base_url)
    if request.method == "DELETE":
        if ctx.partner.status != PartnerStatus.REGISTERED:
            raise OcpiError("Not registered.", http_status=405)
        credentials.credentials_delete(partner=ctx.partner)
        return None
    return credentials.credentials_accept(
        partner=ctx.partner, body=ctx.body, update=request.method == "PUT", base_url=base_url
    )


urlpatterns = [
    path("versions", versions_view, name="versions"),
    path(f"{OCPI_VERSION}", version_details_view, name="version-details"),
    path(f"{OCPI_VERSION}/credentials", credentials_view, name="credentials"),
]
