"""OCPI 2.2.1 Locations, Sender interface (8.2.1): the list, and one Location, EVSE or Connector. The
objects and the scoping to the partner live in cpms.ocpi.services.locations."""

from typing import Any

from django.http import HttpRequest
from django.urls import path

from cpms.ocpi.protocol import UNKNOWN_LOCATION, NotFound
from cpms.ocpi.services import locations
from cpms.ocpi.views.base import OcpiContext, Paged, ocpi_endpoint, page_of


@ocpi_endpoint(methods=("GET",))
def location_list(request: HttpRequest, ctx: OcpiContext) -> Paged:
    page = page_of(request)
    items, total = locations.location_list(partner=ctx.partner, page=page)
    return Paged(items, total, page)


@ocpi_endpoint(methods=("GET",))
def location_detail(request: HttpRequest, ctx: OcpiContext, location_id: str) -> dict[str, Any]:
    data = locations.location_get(partner=ctx.partner, location_id=location_id)
    if data is None:
        raise NotFound(f"Unknown location {location_id!r}.", status_code=UNKNOWN_LOCATION)
    return data


@ocpi_endpoint(methods=("GET",))
def evse_detail(request: HttpRequest, ctx: OcpiContext, location_id: str, evse_uid: str) -> dict[str, Any]:
    data = locations.evse_get(partner=ctx.partner, location_id=location_id, evse_uid=evse_uid)
    if data is None:
        raise NotFound(f"Unknown EVSE {location_id!r}/{evse_uid!r}.", status_code=UNKNOWN_LOCATION)
    return data


@ocpi_endpoint(methods=("GET",))
def connector_detail(
    request: HttpRequest, ctx: OcpiContext, location_id: str, evse_uid: str, connector_id: str
) -> dict[str, Any]:
    data = locations.connector_get(
        partner=ctx.partner, location_id=location_id, evse_uid=evse_uid, connector_id=connector_id
    )
    if data is None:
        raise NotFound(
            f"Unknown connector {location_id!r}/{evse_uid!r}/{connector_id!r}.", status_code=UNKNOWN_LOCATION
        )
    return data


urlpatterns = [
    path("locations", location_list),
    path("locations/<str:location_id>", location_detail),
    path("locations/<str:location_id>/<str:evse_uid>", evse_detail),
    path("locations/<str:location_id>/<str:evse_uid>/<str:connector_id>", connector_detail),
]
