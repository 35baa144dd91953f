"""OCPI 2.2.1 Tariffs, Sender interface (11.2.1): the list of the partner's tariffs (the Sender has no
single-object GET). Objects and scoping live in cpms.ocpi.services.tariffs."""

from django.http import HttpRequest
from django.urls import path

from cpms.ocpi.services import tariffs
from cpms.ocpi.views.base import OcpiContext, Paged, ocpi_endpoint, page_of


@ocpi_endpoint(methods=("GET",))
def tariff_list(request: HttpRequest, ctx: OcpiContext) -> Paged:
    page = page_of(request)
    items, total = tariffs.tariff_list(partner=ctx.partner, page=page)
    return Paged(items, total, page)


urlpatterns = [
    path("tariffs", tariff_list),
]
