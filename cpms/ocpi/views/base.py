"""The request side of every OCPI endpoint: the credentials token, the routing headers, the body, the
envelope and the error answers. A module view is `view(request, ctx, **url_kwargs)` returning the `data` of
its answer (or a `Paged` list, or an HttpResponse); everything else is here.

- A missing, wrong, suspended or unregistered token is 401 with the envelope (OCPI 2.2.1 4.1.3); token A
  (a partner that has not registered yet) reaches only versions, version details and credentials.
- Bodies: JSON, at most OCPI_MAX_BODY_BYTES, checked by the module's schema; a bad one is 400 with status 2001.
- Routing headers (OCPI 2.2.1 4.1.4): `OCPI-to-*` must name our party; `OCPI-from-*` must be one of the
  partner's own parties unless the partner is a hub. They default to our party and the partner's first party.
- `X-Request-ID` and `X-Correlation-ID` are echoed; a new one is made when missing.
- Anything unexpected is logged and answered 500 with status 3000 and no detail.
"""

import functools
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from cpms.ocpi import protocol
from cpms.ocpi.enums import PartnerStatus, Role
from cpms.ocpi.models import OcpiPartner, OcpiParty
from cpms.ocpi.protocol import INVALID_PARAMETERS, UNKNOWN_RECEIVER, OcpiError, Page, Unauthorized

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OcpiContext:
    partner: OcpiPartner
    party: OcpiParty  # ours
    # The party the request comes from: the partner itself, or through a hub the party behind it.
    from_country_code: str
    from_party_id: str
    request_id: str
    correlation_id: str
    body: Any
    # The token the partner presented (the credentials module answers GET with it).
    token: str

    @property
    def via_hub(self) -> bool:
        return partner_is_hub(self.partner)


@dataclass(frozen=True, slots=True)
class Paged:
    """A page of a list endpoint: `items` are this page's objects, `total` the count of the whole list."""

    items: Sequence[Any]
    total: int
    page: Page


def partner_is_hub(partner: OcpiPartner) -> bool:
    return any(role.get("role") == Role.HUB for role in partner.roles)


def partner_parties(partner: OcpiPartner) -> set[tuple[str, str]]:
    return {(r["country_code"].upper(), r["party_id"].upper()) for r in partner.roles if "country_code" in r}


def _json(status: int, body: dict[str, Any], headers: dict[str, str]) -> HttpResponse:
    response = HttpResponse(orjson.dumps(body), status=status, content_type="application/json")
    for name, value in headers.items():
        response[name] = value
    return response


def _partner_for(request: HttpRequest) -> tuple[OcpiPartner, str]:
    candidates = protocol.tokens_from_header(request.headers.get("Authorization", ""))
    if not candidates:
        raise Unauthorized()
    hashes = {protocol.token_hash(token): token for token in candidates}
    partner = (
        OcpiPartner.objects.select_related("party")
        .filter(incoming_token_hash__in=hashes, status__in=[PartnerStatus.PENDING, PartnerStatus.REGISTERED])
        .first()
    )
    if partner is None:
        raise Unauthorized()
    return partner, hashes[partner.incoming_token_hash or ""]


def _body(request: HttpRequest) -> Any:
    if request.method not in ("POST", "PUT", "PATCH"):
        return None
    length = int(request.headers.get("Content-Length") or 0)
    if length > settings.OCPI_MAX_BODY_BYTES or len(request.body) > settings.OCPI_MAX_BODY_BYTES:
        raise OcpiError(
            f"Body larger than {settings.OCPI_MAX_BODY_BYTES} bytes.",
            status_code=INVALID_PARAMETERS,
            http_status=413,
        )
    if not request.body:
        return None
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise OcpiError(f"Body is not valid JSON: {exc}", status_code=INVALID_PARAMETERS) from exc


def _routing(request: HttpRequest, partner: OcpiPartner) -> tuple[str, str]:
    party = partner.party
    to_cc = request.headers.get("OCPI-to-country-code", "").upper()
    to_pid = request.headers.get("OCPI-to-party-id", "").upper()
    if (to_cc or to_pid) and (to_cc, to_pid) != (party.country_code, party.party_id):
        raise OcpiError(
            f"Unknown receiver {to_cc}*{to_pid}: this connection reaches {party}.",
            status_code=UNKNOWN_RECEIVER,
            http_status=404,
        )
    from_cc = request.headers.get("OCPI-from-country-code", "").upper()
    from_pid = request.headers.get("OCPI-from-party-id", "").upper()
    own = partner_parties(partner)
    if from_cc or from_pid:
        if (from_cc, from_pid) not in own and not partner_is_hub(partner):
            raise OcpiError(
                f"OCPI-from {from_cc}*{from_pid} is not a party of this connection.",
                status_code=INVALID_PARAMETERS,
            )
        return from_cc, from_pid
    first = next((r for r in partner.roles if r.get("role") != Role.HUB and "country_code" in r), None)
    return (first["country_code"].upper(), first["party_id"].upper()) if first else ("", "")


def _paged_headers(request: HttpRequest, paged: Paged) -> dict[str, str]:
    headers = {"X-Total-Count": str(paged.total), "X-Limit": str(paged.page.limit)}
    next_offset = paged.page.offset + len(paged.items)
    if paged.items and next_offset < paged.total:
        query = request.GET.copy()
        query["offset"] = str(next_offset)
        query["limit"] = str(paged.page.limit)
        url = request.build_absolute_uri(request.path) + "?" + urlencode(sorted(query.items()))
        headers["Link"] = f'<{url}>; rel="next"'
    return headers


def not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """Any other path under /ocpi/: 404 in the envelope, not an HTML page (OCPI 2.2.1 4.1.7)."""
    return _json(404, protocol.envelope(status_code=protocol.CLIENT_ERROR, message="No such endpoint."), {})


def page_of(request: HttpRequest) -> Page:
    return protocol.page_from_query(request.GET, max_limit=settings.OCPI_PAGE_LIMIT)


def ocpi_endpoint(
    *, methods: Sequence[str], registered: bool = True, routed: bool = True
) -> Callable[[Callable[..., Any]], Callable[..., HttpResponse]]:
    """Wraps a module view (see the module docstring). `registered=False` lets token A in (versions,
    credentials). `routed=False` for the configuration modules (versions, credentials, hubclientinfo), whose
    requests and answers carry no routing headers (OCPI 2.2.1 4.1.8.2): any sent are ignored, none are
    answered."""

    def decorate(view: Callable[..., Any]) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            request_id = request.headers.get("X-Request-ID") or str(uuid.uuid4())
            correlation_id = request.headers.get("X-Correlation-ID") or request_id
            headers = {"X-Request-ID": request_id[:64], "X-Correlation-ID": correlation_id[:64]}
            try:
                if request.method not in methods:
                    raise OcpiError(f"Method {request.method} not allowed here.", http_status=405)
                partner, token = _partner_for(request)
                if registered and partner.status != PartnerStatus.REGISTERED:
                    raise Unauthorized("This token may only be used for the credentials exchange.")
                from_cc, from_pid = ("", "")
                if routed:
                    from_cc, from_pid = _routing(request, partner)
                    headers["OCPI-from-country-code"] = partner.party.country_code
                    headers["OCPI-from-party-id"] = partner.party.party_id
                    if from_cc:
                        headers["OCPI-to-country-code"] = from_cc
                        headers["OCPI-to-party-id"] = from_pid
                ctx = OcpiContext(
                    partner=partner,
                    party=partner.party,
                    from_country_code=from_cc,
                    from_party_id=from_pid,
                    request_id=request_id,
                    correlation_id=correlation_id,
                    body=_body(request),
                    token=token,
                )
                result = view(request, ctx, **kwargs)
            except OcpiError as exc:
                return _json(
                    exc.http_status,
                    protocol.envelope(status_code=exc.status_code, message=exc.message),
                    headers,
                )
            except Exception:
                logger.exception("OCPI %s %s failed", request.method, request.path)
                return _json(
                    500,
                    protocol.envelope(status_code=protocol.SERVER_ERROR, message="Server error."),
                    headers,
                )
            if isinstance(result, HttpResponse):
                for name, value in headers.items():
                    result[name] = value
                return result
            if isinstance(result, Paged):
                headers.update(_paged_headers(request, result))
                return _json(200, protocol.envelope(list(result.items)), headers)
            return _json(200, protocol.envelope(result), headers)

        return wrapper

    return decorate
