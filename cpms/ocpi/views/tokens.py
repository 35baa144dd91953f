"""/ocpi/2.2.1/tokens: the tokens module, Receiver interface (OCPI 2.2.1 mod_tokens "Receiver Interface"):
`{country_code}/{party_id}/{token_uid}[?type=...]` with GET (the token as we hold it), PUT (new or replaced)
and PATCH (some fields, with last_updated). POST and DELETE are not part of it (405)."""

from django.http import HttpRequest
from django.urls import path

from cpms.ocpi.protocol import UNKNOWN_TOKEN, NotFound
from cpms.ocpi.services import tokens
from cpms.ocpi.views.base import OcpiContext, ocpi_endpoint


@ocpi_endpoint(methods=("GET", "PUT", "PATCH"))
def token_detail(request: HttpRequest, ctx: OcpiContext, country_code: str, party_id: str, token_uid: str):
    token_type = tokens.token_type_param(request.GET.get("type"))
    target = {"country_code": country_code, "party_id": party_id, "uid": token_uid, "token_type": token_type}
    if request.method == "GET":
        token = tokens.ocpi_token_get(partner=ctx.partner, **target)
        if token is None:
            raise NotFound(f"Unknown token {token_uid!r} ({token_type}).", status_code=UNKNOWN_TOKEN)
        return token.data
    write = tokens.token_put if request.method == "PUT" else tokens.token_patch
    write(
        partner=ctx.partner,
        from_party=(ctx.from_country_code, ctx.from_party_id),
        body=ctx.body,
        **target,
    )
    return None


urlpatterns = [
    path("tokens/<str:country_code>/<str:party_id>/<str:token_uid>", token_detail),
]
