"""/ocpi/2.2.1/commands/{command}: the commands Receiver interface (OCPI 2.2.1 13.2.1). The answer is the
CPO's CommandResponse; the charger's result follows at the command's response_url
(cpms/ocpi/services/commands.py)."""

import orjson
from django.http import HttpRequest, HttpResponse
from django.urls import path

from cpms.ocpi import protocol
from cpms.ocpi.services import commands
from cpms.ocpi.views.base import OcpiContext, ocpi_endpoint


@ocpi_endpoint(methods=("POST",))
def command_view(request: HttpRequest, ctx: OcpiContext, command: str) -> object:
    answer = commands.command_receive(
        partner=ctx.partner,
        from_party=(ctx.from_country_code, ctx.from_party_id),
        command=command,
        body=ctx.body,
    )
    if answer.status_code == protocol.SUCCESS:
        return answer.data()
    # A refusal with a status of its own (2003: a Location or EVSE this partner cannot see) still carries
    # the CommandResponse, so that the eMSP reads REJECTED and the reason either way.
    body = protocol.envelope(answer.data(), status_code=answer.status_code, message=answer.message)
    return HttpResponse(orjson.dumps(body), status=answer.http_status, content_type="application/json")


urlpatterns = [path("commands/<str:command>", command_view)]
