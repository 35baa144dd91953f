"""/ocpi/2.2.1/chargingprofiles/{session_id}: the ChargingProfiles Receiver interface (OCPI 2.2.1 14.2.1):
PUT sets, GET reads (?duration=&response_url=), DELETE clears (?response_url=) the profile of one of the
partner's sessions. The answer is a ChargingProfileResponse; the charger's result follows at response_url
(cpms/ocpi/services/charging_profiles.py)."""

from django.http import HttpRequest
from django.urls import path

from cpms.ocpi.services import charging_profiles
from cpms.ocpi.views.base import OcpiContext, ocpi_endpoint


@ocpi_endpoint(methods=("GET", "PUT", "DELETE"))
def charging_profile_view(request: HttpRequest, ctx: OcpiContext, session_id: str) -> object:
    answer = charging_profiles.charging_profile_receive(
        partner=ctx.partner,
        from_party=(ctx.from_country_code, ctx.from_party_id),
        method=request.method or "",
        session_id=session_id,
        body=ctx.body,
        response_url=request.GET.get("response_url"),
        duration=request.GET.get("duration"),
    )
    return answer.data()


urlpatterns = [path("chargingprofiles/<str:session_id>", charging_profile_view)]
