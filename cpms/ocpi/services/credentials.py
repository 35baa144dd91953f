"""The credentials module (OCPI 2.2.1 section 7), both ways, and the partner registrations behind it.

Tokens, as the specification names them:
- A: made by the server side of a registration and handed over out of band; good only for versions, version
  details and credentials.
- B: made by the party that registers (the client); the server calls the client with it.
- C: made by the server in its answer; the client calls the server with it from then on.

When a partner registers with us, it calls us with A, sends B (we call it with B) and gets our C (it calls us
with C). When we register with a partner, we call it with its A, send it our B (it calls us with B) and get its
C (we call it with C). Either side rotates with PUT; DELETE ends the registration. We keep the token a partner
calls us with as a SHA-256 hash only, and the one we call it with encrypted (`cpms.ocpi.client`).
"""

import contextlib
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import AuditAction, User
from accounts.services import audit_record
from cpms.ocpi import client, protocol
from cpms.ocpi.enums import OCPI_VERSION, InterfaceRole, Module, PartnerStatus, Role
from cpms.ocpi.models import OcpiPartner, OcpiParty
from cpms.ocpi.protocol import (
    COUNTRY_CODE,
    INVALID_PARAMETERS,
    NO_MATCHING_ENDPOINTS,
    PARTY_ID,
    UNABLE_TO_USE_CLIENT_API,
    UNSUPPORTED_VERSION,
    OcpiError,
    string,
)
from cpms.ocpi.services.partners import partner_push_all

# The modules we implement, with our role in each (the version details we serve).
OUR_ENDPOINTS: tuple[tuple[str, str], ...] = (
    (Module.CREDENTIALS, InterfaceRole.SENDER),
    (Module.LOCATIONS, InterfaceRole.SENDER),
    (Module.TARIFFS, InterfaceRole.SENDER),
    (Module.SESSIONS, InterfaceRole.SENDER),
    (Module.CDRS, InterfaceRole.SENDER),
    (Module.TOKENS, InterfaceRole.RECEIVER),
    (Module.COMMANDS, InterfaceRole.RECEIVER),
    (Module.CHARGING_PROFILES, InterfaceRole.RECEIVER),
    (Module.HUB_CLIENT_INFO, InterfaceRole.RECEIVER),
)

credentials_check = protocol.schema_validator(
    {
        "type": "object",
        "required": ["token", "url", "roles"],
        "properties": {
            "token": string(64, minLength=1, pattern=r"^[\x21-\x7e]+$"),
            "url": string(255, minLength=1, pattern="^https?://"),
            "roles": {
                "type": "array",
                "minItems": 1,
                "maxItems": 50,
                "items": {
                    "type": "object",
                    "required": ["role", "business_details", "party_id", "country_code"],
                    "properties": {
                        "role": {"enum": list(Role.values)},
                        "business_details": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": string(100), "website": string(255)},
                        },
                        "party_id": PARTY_ID,
                        "country_code": COUNTRY_CODE,
                    },
                },
            },
        },
    }
)


def versions_url(base_url: str) -> str:
    """Our versions endpoint, from OCPI_BASE_URL (or PUBLIC_BASE_URL), else from `base_url` (the request's)."""
    base = (settings.OCPI_BASE_URL or settings.PUBLIC_BASE_URL or base_url).rstrip("/")
    return f"{base}/ocpi/versions"


def version_details_url(base_url: str) -> str:
    return versions_url(base_url).removesuffix("/versions") + f"/{OCPI_VERSION}"


def our_endpoints(base_url: str) -> list[dict[str, str]]:
    details = version_details_url(base_url)
    return [
        {"identifier": module, "role": role, "url": f"{details}/{module}"} for module, role in OUR_ENDPOINTS
    ]


def our_credentials(*, party: OcpiParty, token: str, base_url: str) -> dict[str, Any]:
    business: dict[str, Any] = {"name": party.name}
    if party.website:
        business["website"] = party.website
    return {
        "token": token,
        "url": versions_url(base_url),
        "roles": [
            {
                "role": Role.CPO,
                "business_details": business,
                "party_id": party.party_id,
                "country_code": party.country_code,
            }
        ],
    }


# --- registrations the operator makes -----------------------------------------------------------------------
def partner_create(*, party: OcpiParty, name: str, actor: User | None = None) -> tuple[OcpiPartner, str]:
    """A new partner registration and its token A (shown once: only its hash is kept)."""
    token_a = protocol.token_new()
    with transaction.atomic():
        partner = OcpiPartner.objects.create(
            party=party, name=name, incoming_token_hash=protocol.token_hash(token_a)
        )
        audit_record(
            actor=actor,
            action=AuditAction.ROAMING_PARTNER_CREATED,
            obj=partner,
            organisation_id=party.organisation_id,
            changes={"name": name},
        )
    return partner, token_a


def partner_token_a_renew(*, partner: OcpiPartner, actor: User | None = None) -> str:
    """A new token A for a partner that has not registered (the old one stops working)."""
    if partner.status == PartnerStatus.REGISTERED:
        raise OcpiError("The partner is registered: rotate its credentials instead.")
    token_a = protocol.token_new()
    with transaction.atomic():
        OcpiPartner.objects.filter(pk=partner.pk).update(
            incoming_token_hash=protocol.token_hash(token_a), status=PartnerStatus.PENDING
        )
        audit_record(
            actor=actor,
            action=AuditAction.ROAMING_PARTNER_CHANGED,
            obj=partner,
            organisation_id=partner.party.organisation_id,
            changes={"token_a": "renewed"},
        )
    return token_a


# --- the partner's platform, read with a token it gave us --------------------------------------------------
def _their_endpoints(*, versions_url_: str, token: str) -> tuple[str, list[dict[str, Any]]]:
    """Their 2.2.1 version details: (version, endpoints). 3001/3002/3003 when they cannot be used."""
    try:
        versions = client.call("GET", versions_url_, token=token, from_party=None).data
    except client.PartnerCallFailed as exc:
        raise OcpiError(f"Could not read your versions: {exc}", status_code=UNABLE_TO_USE_CLIENT_API) from exc
    match = next(
        (
            v
            for v in versions or []
            if isinstance(v, dict) and v.get("version") == OCPI_VERSION and v.get("url")
        ),
        None,
    )
    if match is None:
        raise OcpiError(f"No common version: we speak {OCPI_VERSION}.", status_code=UNSUPPORTED_VERSION)
    try:
        details = client.call("GET", str(match["url"]), token=token, from_party=None).data
    except client.PartnerCallFailed as exc:
        raise OcpiError(
            f"Could not read your version details: {exc}", status_code=UNABLE_TO_USE_CLIENT_API
        ) from exc
    endpoints = details.get("endpoints") if isinstance(details, dict) else None
    if not isinstance(endpoints, list) or not endpoints:
        raise OcpiError("Your version details list no endpoints.", status_code=NO_MATCHING_ENDPOINTS)
    clean = [
        {"identifier": str(e["identifier"]), "role": str(e.get("role", "")), "url": str(e["url"])}
        for e in endpoints
        if isinstance(e, dict) and e.get("identifier") and e.get("url")
    ]
    return OCPI_VERSION, clean


def _credentials_endpoint(partner: OcpiPartner) -> str:
    url = next((e["url"] for e in partner.endpoints if e["identifier"] == Module.CREDENTIALS), None)
    if url is None:
        raise OcpiError("The partner has no credentials endpoint.", status_code=NO_MATCHING_ENDPOINTS)
    return str(url)


# --- a partner registering with us (we are the server) ------------------------------------------------------
def credentials_accept(*, partner: OcpiPartner, body: Any, update: bool, base_url: str) -> dict[str, Any]:
    """POST (register) or PUT (update) of the partner's credentials: reads its platform with the token it sent,
    and answers with our credentials and a new token C. OCPI 2.2.1 7.2.2: POST when registered, or PUT when
    not, is 405."""
    credentials = credentials_check(body)
    registered = partner.status == PartnerStatus.REGISTERED
    if registered != update:
        raise OcpiError(
            "Already registered: use PUT to update, or DELETE."
            if registered
            else "Not registered: use POST.",
            http_status=405,
        )
    version, endpoints = _their_endpoints(versions_url_=credentials["url"], token=credentials["token"])
    token_c = protocol.token_new()
    _registration_commit(
        partner,
        incoming=token_c,
        theirs=credentials,
        version=version,
        endpoints=endpoints,
        new_registration=not update,
        actor=None,
        changes={"by": "partner", "versions_url": credentials["url"]},
        expected_hash=partner.incoming_token_hash,
    )
    return our_credentials(party=partner.party, token=token_c, base_url=base_url)


def credentials_delete(*, partner: OcpiPartner, actor: User | None = None, by_partner: bool = True) -> None:
    """The registration ends: the partner's token stops working and nothing more is pushed to it."""
    with transaction.atomic():
        OcpiPartner.objects.filter(pk=partner.pk).update(
            status=PartnerStatus.UNREGISTERED, incoming_token_hash=None, outgoing_token_encrypted=""
        )
        audit_record(
            actor=actor,
            action=AuditAction.ROAMING_PARTNER_UNREGISTERED,
            obj=partner,
            organisation_id=partner.party.organisation_id,
            changes={"by": "partner" if by_partner else "operator"},
        )


def _registration_commit(
    partner: OcpiPartner,
    *,
    incoming: str,
    theirs: dict[str, Any],
    version: str,
    endpoints: list[dict[str, Any]],
    new_registration: bool,
    actor: User | None,
    changes: dict[str, Any],
    expected_hash: str | None = None,
) -> OcpiPartner:
    """Keeps a completed exchange under the partner's row lock: the token it calls us with (`incoming`, as a
    hash), its credentials (`theirs`: token, versions url, roles) and endpoints; audited. A new registration
    gets everything we publish pushed at once, so that the status updates that follow always concern a
    Location it has (OCPI 2.2.1 8.2.2: a PATCH needs the object). `expected_hash`: refused (409) when the
    partner's token changed since the exchange began."""
    with transaction.atomic():
        locked = OcpiPartner.objects.select_for_update().get(pk=partner.pk)
        if expected_hash is not None and locked.incoming_token_hash != expected_hash:
            raise OcpiError(
                "The credentials changed meanwhile; try again.",
                status_code=INVALID_PARAMETERS,
                http_status=409,
            )
        locked.incoming_token_hash = protocol.token_hash(incoming)
        locked.outgoing_token_encrypted = client.outgoing_token_seal(theirs["token"])
        locked.versions_url = theirs["url"]
        locked.version = version
        locked.endpoints = endpoints
        locked.roles = [
            {**role, "country_code": role["country_code"].upper(), "party_id": role["party_id"].upper()}
            for role in theirs["roles"]
        ]
        locked.status = PartnerStatus.REGISTERED
        locked.registered_at = locked.registered_at or timezone.now()
        locked.save()
        if new_registration:
            partner_push_all(locked)
        audit_record(
            actor=actor,
            action=AuditAction.ROAMING_PARTNER_REGISTERED
            if new_registration
            else AuditAction.ROAMING_CREDENTIALS_ROTATED,
            obj=locked,
            organisation_id=partner.party.organisation_id,
            changes=changes,
        )
    return locked


# --- we register with a partner (it is the server) ----------------------------------------------------------
def partner_register(
    *, partner: OcpiPartner, versions_url_: str, token_a: str, base_url: str, actor: User | None = None
) -> OcpiPartner:
    """Registers with the partner's platform using the token A it gave us: we send our token B (it calls us
    with it) and keep the token C it answers with (we call it with that)."""
    if partner.status == PartnerStatus.REGISTERED:
        raise OcpiError("Already registered: rotate the credentials instead.", http_status=405)
    version, endpoints = _their_endpoints(versions_url_=versions_url_, token=token_a)
    credentials_url = next((e["url"] for e in endpoints if e["identifier"] == Module.CREDENTIALS), None)
    if credentials_url is None:
        raise OcpiError("The partner has no credentials endpoint.", status_code=NO_MATCHING_ENDPOINTS)
    token_b = protocol.token_new()
    # The partner reads our versions with token B while it handles our POST: it must work from now on.
    previous_hash = partner.incoming_token_hash
    OcpiPartner.objects.filter(pk=partner.pk).update(incoming_token_hash=protocol.token_hash(token_b))
    try:
        answer = client.call(
            "POST",
            credentials_url,
            token=token_a,
            from_party=None,  # a configuration module: no routing headers (OCPI 2.2.1 4.1.8.2)
            body=our_credentials(party=partner.party, token=token_b, base_url=base_url),
        )
        theirs = credentials_check(answer.data)
    except (client.PartnerCallFailed, OcpiError) as exc:
        OcpiPartner.objects.filter(pk=partner.pk).update(incoming_token_hash=previous_hash)
        message = exc.message if isinstance(exc, OcpiError) else str(exc)
        raise OcpiError(f"Registration refused: {message}", status_code=UNABLE_TO_USE_CLIENT_API) from exc
    return _registration_commit(
        partner,
        incoming=token_b,
        theirs={**theirs, "url": versions_url_},
        version=version,
        endpoints=endpoints,
        new_registration=True,
        actor=actor,
        changes={"by": "us", "versions_url": versions_url_},
    )


def partner_credentials_rotate(
    *, partner: OcpiPartner, base_url: str, actor: User | None = None
) -> OcpiPartner:
    """New tokens both ways (OCPI 2.2.1 7.2.3 PUT): a new token for the partner to call us with, sent with
    the token we call it with; its answer carries our new token for calling it."""
    if partner.status != PartnerStatus.REGISTERED:
        raise OcpiError("Not registered.", http_status=409)
    new_incoming = protocol.token_new()
    previous_hash = partner.incoming_token_hash
    OcpiPartner.objects.filter(pk=partner.pk).update(incoming_token_hash=protocol.token_hash(new_incoming))
    try:
        answer = client.call(
            "PUT",
            _credentials_endpoint(partner),
            token=client.outgoing_token(partner),
            from_party=None,  # a configuration module: no routing headers (OCPI 2.2.1 4.1.8.2)
            body=our_credentials(party=partner.party, token=new_incoming, base_url=base_url),
        )
        theirs = credentials_check(answer.data)
        version, endpoints = _their_endpoints(versions_url_=theirs["url"], token=theirs["token"])
    except (client.PartnerCallFailed, OcpiError) as exc:
        OcpiPartner.objects.filter(pk=partner.pk).update(incoming_token_hash=previous_hash)
        message = exc.message if isinstance(exc, OcpiError) else str(exc)
        raise OcpiError(f"Rotation refused: {message}", status_code=UNABLE_TO_USE_CLIENT_API) from exc
    return _registration_commit(
        partner,
        incoming=new_incoming,
        theirs=theirs,
        version=version,
        endpoints=endpoints,
        new_registration=False,
        actor=actor,
        changes={"by": "us"},
    )


def partner_unregister(*, partner: OcpiPartner, actor: User | None = None) -> None:
    """We end the registration: DELETE on the partner's credentials (best effort), then locally."""
    if partner.status == PartnerStatus.REGISTERED:
        # Best effort: it forgets us or not, its token stops working here either way.
        with contextlib.suppress(client.PartnerCallFailed, OcpiError):
            client.call(
                "DELETE",
                _credentials_endpoint(partner),
                token=client.outgoing_token(partner),
                from_party=None,
            )
    credentials_delete(partner=partner, actor=actor, by_partner=False)


def partner_suspend(*, partner: OcpiPartner, suspended: bool, actor: User | None = None) -> None:
    """Suspends (its token is refused, nothing is pushed; the outbox keeps filling) or resumes a partner."""
    old, new = (
        (PartnerStatus.REGISTERED, PartnerStatus.SUSPENDED)
        if suspended
        else (PartnerStatus.SUSPENDED, PartnerStatus.REGISTERED)
    )
    with transaction.atomic():
        if OcpiPartner.objects.filter(pk=partner.pk, status=old).update(status=new) != 1:
            raise OcpiError(f"The partner is not {old.label.lower()}.", http_status=409)
        audit_record(
            actor=actor,
            action=AuditAction.ROAMING_PARTNER_CHANGED,
            obj=partner,
            organisation_id=partner.party.organisation_id,
            changes={"status": new},
        )
