"""/ocpi/2.2.1/cdrs: the CDRs module, Sender interface (OCPI 2.2.1 mod_cdrs 2.1): the partner's CDRs and
credit CDRs by pages."""

from django.http import HttpRequest
from django.urls import path

from cpms.ocpi.services.cdrs import cdr_list
from cpms.ocpi.views.base import OcpiContext, Paged, ocpi_endpoint, page_of
from cpms.ocpi.views.sessions import requester_party


@ocpi_endpoint(methods=("GET",))
def cdrs_get(request: HttpRequest, ctx: OcpiContext) -> Paged:
    page = page_of(request)
    items, total = cdr_list(partner=ctx.partner, party=requester_party(ctx), page=page)
    return Paged(items, total, page)


urlpatterns = [
    path("cdrs", cdrs_get),
    path("cdrs/", cdrs_get),
]
