"""Calls to a roaming partner's platform (OCPI 2.2.1 transport): the token it gave us, base64-encoded; a new
X-Request-ID per request and the correlation id of what caused it; the routing headers (from: our party,
to: the party the message is for, which a hub forwards on). Answers are read as the OCPI envelope.

Failures are split the way the outbox needs them:
- `PartnerUnavailable`: no answer, a timeout, HTTP 5xx, or an OCPI 3xxx/4xxx status. Worth retrying, for as
  long as it takes.
- `PartnerRefused`: HTTP 4xx or an OCPI 2xxx status: the partner read the request and said no.
"""

import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from django.conf import settings

from cpms import secret_box
from cpms.ocpi import protocol
from cpms.ocpi.models import OcpiPartner

TOKEN_PURPOSE = "cpms.ocpi.partner-token.v1"


class PartnerCallFailed(Exception):
    pass


class PartnerUnavailable(PartnerCallFailed):
    pass


class PartnerRefused(PartnerCallFailed):
    def __init__(self, message: str, *, http_status: int, status_code: int | None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class PartnerAnswer:
    http_status: int
    status_code: int
    data: Any
    headers: dict[str, str] = field(default_factory=dict)


def outgoing_token(partner: OcpiPartner) -> str:
    return secret_box.secret_decrypt(partner.outgoing_token_encrypted, purpose=TOKEN_PURPOSE)


def outgoing_token_seal(token: str) -> str:
    return secret_box.secret_encrypt(token, purpose=TOKEN_PURPOSE)


def request_headers(
    *,
    token: str,
    from_party: tuple[str, str] | None,
    to_party: tuple[str, str] | None,
    correlation_id: str | None = None,
) -> dict[str, str]:
    """`from_party` None: no routing headers, as configuration modules (versions, credentials, hubclientinfo)
    must be sent (OCPI 2.2.1 4.1.8.2)."""
    request_id = str(uuid.uuid4())
    headers = {
        "Authorization": protocol.authorization_header(token),
        "Content-Type": "application/json",
        "X-Request-ID": request_id,
        "X-Correlation-ID": correlation_id or request_id,
    }
    if from_party is None:
        return headers
    headers["OCPI-from-country-code"] = from_party[0]
    headers["OCPI-from-party-id"] = from_party[1]
    if to_party and to_party[0]:
        headers["OCPI-to-country-code"] = to_party[0]
        headers["OCPI-to-party-id"] = to_party[1]
    return headers


def answer_read(response: httpx.Response) -> PartnerAnswer:
    """The envelope of `response`, or the failure it stands for."""
    if response.status_code >= 500:
        raise PartnerUnavailable(f"HTTP {response.status_code}: {response.text[:200]}")
    try:
        body = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        if response.status_code >= 400:
            raise PartnerRefused(
                f"HTTP {response.status_code}: {response.text[:200]}",
                http_status=response.status_code,
                status_code=None,
            )
        raise PartnerUnavailable(f"HTTP {response.status_code}: not an OCPI envelope: {response.text[:200]}")
    status_code = body.get("status_code")
    message = f"HTTP {response.status_code}, OCPI {status_code}: {str(body.get('status_message', ''))[:200]}"
    if response.status_code >= 400 or (isinstance(status_code, int) and 2000 <= status_code < 3000):
        raise PartnerRefused(
            message,
            http_status=response.status_code,
            status_code=status_code if isinstance(status_code, int) else None,
        )
    if not isinstance(status_code, int) or status_code >= 3000:
        raise PartnerUnavailable(message)
    return PartnerAnswer(
        http_status=response.status_code,
        status_code=status_code,
        data=body.get("data"),
        headers=dict(response.headers),
    )


_client: httpx.Client | None = None
_client_pid = 0


def _http() -> httpx.Client:
    """One HTTP client per process, made on first use (after a worker forked): a new client per request
    loads the CA bundle and opens a connection each time, ~20 ms a push (bench/ocpi_push.py); this one keeps
    connections to partners alive. httpx.Client is safe to share between threads."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = httpx.Client(limits=httpx.Limits(max_connections=50, max_keepalive_connections=20))
        _client_pid = os.getpid()
    return _client


def call(
    method: str,
    url: str,
    *,
    token: str,
    from_party: tuple[str, str] | None,
    to_party: tuple[str, str] | None = None,
    body: Any = None,
    correlation_id: str | None = None,
    timeout_s: float | None = None,
) -> PartnerAnswer:
    """One request to a partner (blocking: Celery jobs and the credentials exchange)."""
    headers = request_headers(
        token=token, from_party=from_party, to_party=to_party, correlation_id=correlation_id
    )
    try:
        response = _http().request(
            method,
            url,
            headers=headers,
            content=orjson.dumps(body) if body is not None else None,
            timeout=timeout_s or settings.OCPI_PARTNER_TIMEOUT_S,
        )
    except httpx.HTTPError as exc:
        raise PartnerUnavailable(f"{type(exc).__name__}: {exc}") from exc
    return answer_read(response)


async def call_async(
    method: str,
    url: str,
    *,
    token: str,
    from_party: tuple[str, str],
    to_party: tuple[str, str] | None = None,
    body: Any = None,
    timeout_s: float,
) -> PartnerAnswer:
    """One request to a partner from the event loop (real-time authorisation while a charger waits)."""
    headers = request_headers(token=token, from_party=from_party, to_party=to_party)
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as http:
            response = await http.request(
                method, url, headers=headers, content=orjson.dumps(body) if body is not None else None
            )
    except httpx.HTTPError as exc:
        raise PartnerUnavailable(f"{type(exc).__name__}: {exc}") from exc
    return answer_read(response)


def our_party(partner: OcpiPartner) -> tuple[str, str]:
    return partner.party.country_code, partner.party.party_id


def endpoint_url(partner: OcpiPartner, module: str, role: str) -> str | None:
    """The partner's endpoint for `module` in `role` (its RECEIVER for what we push, its SENDER for what we
    ask), or None when it has none."""
    for endpoint in partner.endpoints:
        if endpoint.get("identifier") == module and endpoint.get("role", role) == role:
            return str(endpoint["url"]).rstrip("/")
    return None
