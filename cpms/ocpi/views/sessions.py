"""/ocpi/2.2.1/sessions: the Sessions module, Sender interface (OCPI 2.2.1 mod_sessions 2.1): the partner's
roaming sessions by pages, and the answer to a driver's charging preferences."""

from typing import Any

from django.http import HttpRequest
from django.urls import path

from cpms.ocpi.protocol import DATETIME, NotFound, schema_validator
from cpms.ocpi.services.sessions import session_charging_preferences, session_list
from cpms.ocpi.views.base import OcpiContext, Paged, ocpi_endpoint, page_of

# OCPI 2.2.1 mod_sessions 4.2 ChargingPreferences.
_preferences_valid = schema_validator(
    {
        "type": "object",
        "required": ["profile_type"],
        "properties": {
            "profile_type": {"enum": ["CHEAP", "FAST", "GREEN", "REGULAR"]},
            "departure_time": DATETIME,
            "energy_need": {"type": "number", "minimum": 0},
            "discharge_allowed": {"type": "boolean"},
        },
    }
)


def requester_party(ctx: OcpiContext) -> tuple[str, str] | None:
    """The party whose objects a request may see within the partner's: through a hub, only the one named
    in OCPI-from-* (a hub speaks for many); a direct partner sees all of its own."""
    return (ctx.from_country_code, ctx.from_party_id) if ctx.via_hub else None


@ocpi_endpoint(methods=("GET",))
def sessions_get(request: HttpRequest, ctx: OcpiContext) -> Paged:
    page = page_of(request)
    items, total = session_list(partner=ctx.partner, party=requester_party(ctx), page=page)
    return Paged(items, total, page)


@ocpi_endpoint(methods=("PUT",))
def charging_preferences_put(request: HttpRequest, ctx: OcpiContext, session_id: str) -> Any:
    _preferences_valid(ctx.body)
    answer = session_charging_preferences(
        partner=ctx.partner, party=requester_party(ctx), session_id=session_id
    )
    if answer is None:
        raise NotFound(f"Unknown session {session_id!r}.")
    return answer.result


urlpatterns = [
    path("sessions", sessions_get),
    path("sessions/", sessions_get),
    path("sessions/<str:session_id>/charging_preferences", charging_preferences_put),
]
