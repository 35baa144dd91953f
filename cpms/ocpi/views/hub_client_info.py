"""/ocpi/2.2.1/hubclientinfo/{country_code}/{party_id}: the HubClientInfo Receiver interface (OCPI 2.2.1
17.2.2), for hubs only: any other partner is answered 405, as an interface it has no business with."""

from django.http import HttpRequest
from django.urls import path

from cpms.ocpi.protocol import CLIENT_ERROR, NotFound, OcpiError
from cpms.ocpi.services import hub_client_info
from cpms.ocpi.views.base import OcpiContext, ocpi_endpoint, partner_is_hub


@ocpi_endpoint(methods=("GET", "PUT"), routed=False)  # a configuration module (OCPI 2.2.1 4.1.8.2)
def client_info_view(request: HttpRequest, ctx: OcpiContext, country_code: str, party_id: str) -> object:
    if not partner_is_hub(ctx.partner):
        raise OcpiError("ClientInfo is taken from a hub only.", status_code=CLIENT_ERROR, http_status=405)
    if request.method == "PUT":
        hub_client_info.client_info_put(
            partner=ctx.partner, country_code=country_code, party_id=party_id, data=ctx.body
        )
        return None
    info = hub_client_info.client_info_get(partner=ctx.partner, country_code=country_code, party_id=party_id)
    if info is None:
        raise NotFound(f"No ClientInfo for {country_code}*{party_id}.")
    return hub_client_info.client_info_data(info)


urlpatterns = [path("hubclientinfo/<str:country_code>/<str:party_id>", client_info_view)]
