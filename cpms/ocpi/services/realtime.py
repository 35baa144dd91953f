"""Real-time authorisation of a roaming driver's token at its eMSP while the charger waits (OCPI 2.2.1
tokens module, "Real-time authorization": POST `{tokens SENDER url}/{token_uid}/authorize?type=...` with a
LocationReferences body, answered with an AuthorizationInfo).

When we ask (`roaming_token_authorize`, the hook on the OCPP Authorize path):
- a token we know that is not a partner's: never (no query, no HTTP: read from the TokenInfo we have);
- a partner's token whose whitelist is NEVER or ALLOWED_OFFLINE ("In normal situations realtime
  authorization shall be used"), or one we only learnt from an earlier real-time answer (the partner pushes
  us no updates of it): its partner, even when the token is invalid here ("the state of the Token might
  have changed", WhitelistType). ALWAYS and ALLOWED tokens are answered from what the partner pushed;
- a token nobody pushed (uid of at most 36 characters): every REGISTERED partner of the organisation with a
  tokens SENDER endpoint, all at once. The first ALLOWED answer wins: the token is that partner's driver's
  (an eMSP answers a token it does not know with 404/2004, so at most one should allow it; if two did,
  the first to answer bears the session). Through a hub we send no OCPI-to-* headers (an open routing
  request: the hub finds the eMSP).

What the charger is told:
- ALLOWED: the token is stored (an `OcpiToken` marked `realtime`, mirrored by an `IdToken` that is in no local
  list) with an `OcpiAuthorization(auth_method="AUTH_REQUEST", authorization_reference=...)` for the session
  it opens, then judged like any token here (site access rules, the partner's group status): Accepted.
- BLOCKED -> Blocked, EXPIRED -> Expired, NO_CREDIT -> NoCredit, NOT_ALLOWED -> NotAtThisLocation (the
  2.0.1 AuthorizationStatusEnumType values that say the same; the 1.6 mapper sends Invalid for both).
  The token a refusal carries is kept too; one we only know from real-time answers is then Blocked (or
  Expired) here, so that a charger starting without asking is refused as well.
- Every asked partner answered that it does not know the token: the token stays unknown (1.6 Invalid, 2.0.1
  Unknown). A known token its own eMSP no longer knows is Invalid.
- An answer that is not an AuthorizationInfo with a valid Token of that uid, of a party the partner speaks
  for, is no answer.
- No usable answer within OCPI_REALTIME_AUTH_TIMEOUT_S (timeout, partner down, 5xx, garbage): the partner's
  `realtime_auth_fallback`. REJECT: Invalid. ACCEPT: the token is accepted and an authorization recorded
  (with no reference: the partner gave none), so the session is reported to that partner, which agreed to
  bear the risk. For an unknown token the fallback is ACCEPT only when exactly one partner that did not
  answer has ACCEPT (otherwise nobody knows whose driver it is). A known ALLOWED_OFFLINE or previously
  learnt ALLOWED/ALWAYS token is answered from what we hold ("when the CPO cannot get a response from the
  eMSP ... the CPO shall allow this Token to be used"); only a NEVER token uses the fallback.

The charger never waits for more than the timeout on HTTP, and a failure of this module never fails its
Authorize: it is logged and the answer we had without roaming stands. A token our own site rules refuse
(NotAtThisLocation) is not asked about.

The database work runs through the OCPP layer's `run_db` (a worker thread per call, as every OCPP handler's
service; inline in handler-level tests): this module is called from the OCPP Authorize handlers only.
"""

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from cpms.ocpi import client, protocol
from cpms.ocpi.enums import InterfaceRole, Module, PartnerStatus, RealtimeAuthFallback, Role
from cpms.ocpi.models import OcpiAuthorization, OcpiPartner, OcpiToken
from cpms.ocpi.protocol import OcpiError
from cpms.ocpi.services import tokens as tokens_service
from cpms.ocpp.chargepoint import run_db
from sessions.enums import IdTokenStatus
from sessions.models import IdToken
from sessions.services.tokens import NOT_AT_THIS_LOCATION
from sessions.services.transactions import id_token_authorize
from sessions.types import TokenInfo
from stations.models import ChargingStation

logger = logging.getLogger(__name__)

# OCPI AllowedType -> the status a charger is told (2.0.1 AuthorizationStatusEnumType values; the 1.6
# mapper sends Invalid for the ones 1.6 does not have).
ALLOWED_STATUS = {
    "ALLOWED": IdTokenStatus.ACCEPTED,
    "BLOCKED": IdTokenStatus.BLOCKED,
    "EXPIRED": IdTokenStatus.EXPIRED,
    "NO_CREDIT": "NoCredit",
    "NOT_ALLOWED": NOT_AT_THIS_LOCATION,
}
# OCPP 2.0.1 IdTokenEnumType -> OCPI TokenType (1.6 idTags are RFID cards).
OCPP_TOKEN_TYPES = {"ISO14443": "RFID", "ISO15693": "RFID", "Central": "APP_USER"}
REALTIME_WHITELISTS = frozenset({"NEVER", "ALLOWED_OFFLINE"})
REFUSED = TokenInfo(status=IdTokenStatus.INVALID)

_authorization_info_validate = protocol.schema_validator(
    {
        "type": "object",
        "properties": {
            "allowed": {"enum": list(ALLOWED_STATUS)},
            "token": {"type": "object"},
            "authorization_reference": {"anyOf": [protocol.string(36), {"type": "null"}]},
        },
        "required": ["allowed", "token"],
    }
)


def ocpi_token_type(ocpp_type: str | None) -> str:
    return OCPP_TOKEN_TYPES.get(ocpp_type or "ISO14443", "OTHER")


@dataclass(frozen=True, slots=True)
class _Target:
    partner_id: int
    url: str
    token: str
    from_party: tuple[str, str]
    to_party: tuple[str, str] | None
    fallback: str
    # The parties whose tokens this partner may answer for; None for a hub (any party it routes for).
    parties: frozenset[tuple[str, str]] | None


@dataclass(frozen=True, slots=True)
class _Plan:
    targets: tuple[_Target, ...]
    body: dict[str, Any] | None
    site_id: int | None
    # The partner's token we hold (None: unknown here) and whether we may answer from it when no partner
    # answers.
    known_token_id: int | None = None
    whitelisted_offline: bool = False


@dataclass(frozen=True, slots=True)
class _Where:
    """The Authorize being answered."""

    organisation_id: int
    value: str
    station_id: int
    site_id: int | None


@dataclass(frozen=True, slots=True)
class _Answer:
    target: _Target
    # "answer" (info holds the AuthorizationInfo), "unknown" (404/2004), "failed" (no usable answer).
    kind: str
    info: dict[str, Any] = field(default_factory=dict)


# --- the hook ---------------------------------------------------------------------------------------
async def roaming_token_authorize(
    local: TokenInfo, *, organisation_id: int, value: str, station_id: int, ocpp_type: str | None = None
) -> TokenInfo:
    """The answer to an OCPP Authorize once roaming partners had their say; `local` is what
    `id_token_authorize` answered. A known token that is not a partner's returns `local` at once."""
    if local.known and not tokens_service.is_partner_group(local.group_value):
        return local
    if ocpp_type == "NoAuthorization" or not value or len(value) > 36:
        return local
    if local.status == NOT_AT_THIS_LOCATION:
        return local  # our own site rules refuse it: nothing a partner says changes that
    try:
        decided = await realtime_authorize(
            organisation_id=organisation_id,
            value=value,
            station_id=station_id,
            token_type=ocpi_token_type(ocpp_type),
        )
    except Exception:
        # The charger is owed an answer whatever happens here: the one we had without roaming.
        logger.exception("Real-time authorisation of %r failed", value)
        return local
    return decided if decided is not None else local


async def realtime_authorize(
    *, organisation_id: int, value: str, station_id: int, token_type: str = tokens_service.DEFAULT_TOKEN_TYPE
) -> TokenInfo | None:
    """Ask the partners that may know `value` (see the module docstring), record what they allowed and
    return what the charger is told; None when no partner is to be asked or none knows the token."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.OCPI_REALTIME_AUTH_TIMEOUT_S
    plan = await run_db(
        _plan, organisation_id=organisation_id, value=value, station_id=station_id, token_type=token_type
    )
    if plan is None:
        return None
    answers = await _ask_all(plan, value=value, token_type=token_type, deadline=deadline)
    decided: TokenInfo | None = await run_db(
        _decide,
        plan=plan,
        answers=answers,
        organisation_id=organisation_id,
        value=value,
        station_id=station_id,
        token_type=token_type,
    )
    return decided


# --- who to ask -------------------------------------------------------------------------------------
def _target(partner: OcpiPartner, to_party: tuple[str, str] | None) -> _Target | None:
    url = client.endpoint_url(partner, Module.TOKENS, InterfaceRole.SENDER)
    if partner.status != PartnerStatus.REGISTERED or url is None:
        return None
    return _Target(
        partner_id=partner.pk,
        url=url,
        token=client.outgoing_token(partner),
        from_party=client.our_party(partner),
        to_party=to_party,
        fallback=partner.realtime_auth_fallback,
        parties=None if _is_hub(partner) else _own_parties(partner),
    )


def _is_hub(partner: OcpiPartner) -> bool:
    return any(role.get("role") == Role.HUB for role in partner.roles)


def _own_parties(partner: OcpiPartner) -> frozenset[tuple[str, str]]:
    return frozenset(
        (role["country_code"].upper(), role["party_id"].upper())
        for role in partner.roles
        if "country_code" in role
    )


def _direct_party(partner: OcpiPartner) -> tuple[str, str] | None:
    """The party a request to a direct partner is for; None through a hub (open routing)."""
    if _is_hub(partner):
        return None
    first = next((role for role in partner.roles if "country_code" in role), None)
    return (first["country_code"].upper(), first["party_id"].upper()) if first else None


# OCPI 2.2.1 13.3.5: the token of a START_SESSION or RESERVE_NOW is not authorised again in real time when the
# charger presents it: an app's token never, an RFID token within this long of the command.
COMMAND_AUTHORIZED_RFID_FOR = timedelta(minutes=15)


def _started_by_command(token: OcpiToken, station_id: int) -> bool:
    site_id = ChargingStation.objects.filter(pk=station_id).values_list("site_id", flat=True).first()
    commands = OcpiAuthorization.objects.filter(
        token=token, auth_method="COMMAND", used_at__isnull=True
    ).filter(Q(site__isnull=True) | Q(site_id=site_id))
    if token.type == "RFID":
        commands = commands.filter(created_at__gte=timezone.now() - COMMAND_AUTHORIZED_RFID_FOR)
    return commands.exists()


def _plan(*, organisation_id: int, value: str, station_id: int, token_type: str) -> _Plan | None:
    known = (
        OcpiToken.objects.select_related("partner__party")
        .filter(id_token__organisation_id=organisation_id, id_token__value=value)
        .first()
    )
    if known is not None:
        whitelist = known.data.get("whitelist")
        if whitelist not in REALTIME_WHITELISTS and not known.realtime:
            return None
        if _started_by_command(known, station_id):
            return None
        to_party: tuple[str, str] | None = (known.country_code, known.party_id)
        if _is_hub(known.partner) and to_party in _own_parties(known.partner):
            to_party = None  # a card accepted on a hub's fallback: whose it is, the hub finds out
        target = _target(known.partner, to_party)
        targets: tuple[_Target, ...] = (target,) if target else ()
    else:
        partners = OcpiPartner.objects.select_related("party").filter(
            party__organisation_id=organisation_id, status=PartnerStatus.REGISTERED
        )
        targets = tuple(t for p in partners.order_by("pk") if (t := _target(p, _direct_party(p))) is not None)
        if not targets:
            return None
    site_id = ChargingStation.objects.filter(pk=station_id).values_list("site_id", flat=True).first()
    # OCPI 2.2.1: without LocationReferences the eMSP may answer 2002 (not enough information). The EVSE is
    # not known at Authorize (neither 1.6 nor 2.0.1 Authorize names it).
    body = {"location_id": str(site_id)} if site_id is not None else None
    if known is None:
        return _Plan(targets=targets, body=body, site_id=site_id)
    return _Plan(
        targets=targets,
        body=body,
        site_id=site_id,
        known_token_id=known.pk,
        whitelisted_offline=known.data.get("whitelist") != "NEVER",
    )


# --- asking -----------------------------------------------------------------------------------------
async def _ask(target: _Target, *, value: str, token_type: str, body: Any, timeout_s: float) -> _Answer:
    try:
        answer = await client.call_async(
            "POST",
            f"{target.url}/{quote(value, safe='')}/authorize?type={token_type}",
            token=target.token,
            from_party=target.from_party,
            to_party=target.to_party,
            body=body,
            timeout_s=timeout_s,
        )
    except client.PartnerRefused as exc:
        # OCPI 2.2.1: "When the eMSP does not know the Token, the eMSP SHALL respond with ... 404".
        if exc.http_status == 404 or exc.status_code == protocol.UNKNOWN_TOKEN:
            return _Answer(target, "unknown")
        logger.warning("Real-time authorisation refused by partner %s: %s", target.partner_id, exc)
        return _Answer(target, "failed")
    except client.PartnerUnavailable as exc:
        logger.warning("Real-time authorisation: partner %s unavailable: %s", target.partner_id, exc)
        return _Answer(target, "failed")
    except Exception:
        logger.exception("Real-time authorisation: asking partner %s failed", target.partner_id)
        return _Answer(target, "failed")
    try:
        info = _authorization_info_validate(answer.data)
        token = tokens_service.token_validate(info["token"])
    except OcpiError as exc:
        logger.warning("Real-time authorisation: partner %s answered %s", target.partner_id, exc.message)
        return _Answer(target, "failed")
    # Checked here, before an ALLOWED ends the wait for the others: an answer for another token, or for a
    # party this partner does not speak for, is no answer.
    party = (token["country_code"].upper(), token["party_id"].upper())
    if token["uid"] != value or (target.parties is not None and party not in target.parties):
        logger.warning(
            "Real-time authorisation: partner %s answered for token %s*%s:%s",
            target.partner_id,
            *party,
            token["uid"],
        )
        return _Answer(target, "failed")
    return _Answer(target, "answer", info)


async def _ask_all(plan: _Plan, *, value: str, token_type: str, deadline: float) -> list[_Answer]:
    """Every target's answer, in the order they came; those still out at `deadline` (or once one allowed
    the token) are cancelled and count as failed."""
    loop = asyncio.get_running_loop()
    remaining = deadline - loop.time()
    if remaining <= 0:
        return [_Answer(target, "failed") for target in plan.targets]
    tasks = {
        asyncio.ensure_future(
            _ask(target, value=value, token_type=token_type, body=plan.body, timeout_s=remaining)
        ): target
        for target in plan.targets
    }
    answers: list[_Answer] = []
    pending = set(tasks)
    while pending and not any(a.info and a.info["allowed"] == "ALLOWED" for a in answers):
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        done, pending = await asyncio.wait(pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        answers.extend(task.result() for task in done)
    for task in pending:
        task.cancel()
        answers.append(_Answer(tasks[task], "failed"))
    await asyncio.gather(*pending, return_exceptions=True)
    return answers


# --- deciding ---------------------------------------------------------------------------------------
def _keep(answer: _Answer) -> OcpiToken | None:
    """The token a partner's (checked) answer carries, stored; None when it cannot be kept (its uid is one
    of our own tokens' or another partner's): then the answer does not count."""
    partner = OcpiPartner.objects.select_related("party").get(pk=answer.target.partner_id)
    try:
        return tokens_service.token_store_realtime(partner=partner, data=answer.info["token"])
    except OcpiError as exc:
        logger.warning("Real-time authorisation: partner %s token not kept: %s", partner.pk, exc.message)
        return None


def _accept(token: OcpiToken, *, reference: str, where: _Where) -> TokenInfo:
    """The partner allows the token (or its fallback does): judged here like any token (site access rules,
    the group's status), and when Accepted the authorisation waits for the session it allows."""
    info = id_token_authorize(
        organisation_id=where.organisation_id, value=where.value, station_id=where.station_id
    )
    if info.status == IdTokenStatus.ACCEPTED:
        OcpiAuthorization.objects.create(
            partner_id=token.partner_id,
            token=token,
            auth_method="AUTH_REQUEST",
            authorization_reference=reference,
            site_id=where.site_id,
        )
    return info


def _placeholder_token(target: _Target, *, value: str, token_type: str) -> OcpiToken | None:
    """A token for an unknown uid accepted by a partner's ACCEPT fallback, so that its session is reported
    to that partner. NEVER whitelisted: the partner is asked again at its next use."""
    partner = OcpiPartner.objects.select_related("party").get(pk=target.partner_id)
    role = next((role for role in partner.roles if "country_code" in role), None)
    if role is None:
        return None
    data = {
        "country_code": role["country_code"],
        "party_id": role["party_id"],
        "uid": value,
        "type": token_type,
        "contract_id": value,
        "issuer": partner.name[:64],
        "valid": True,
        "whitelist": "NEVER",
        # Older than any Token the partner will send: its first real answer replaces this one.
        "last_updated": "2000-01-01T00:00:00Z",
    }
    try:
        return tokens_service.token_store_realtime(partner=partner, data=data)
    except OcpiError as exc:
        logger.warning("Real-time authorisation fallback: token not kept: %s", exc.message)
        return None


@transaction.atomic
def _decide(
    *, plan: _Plan, answers: list[_Answer], organisation_id: int, value: str, station_id: int, token_type: str
) -> TokenInfo | None:
    where = _Where(organisation_id=organisation_id, value=value, station_id=station_id, site_id=plan.site_id)
    decisive = [answer for answer in answers if answer.kind == "answer"]
    # ALLOWED first, then in the order the answers came.
    for answer in sorted(decisive, key=lambda a: a.info["allowed"] != "ALLOWED"):
        token = _keep(answer)
        if token is None:
            continue
        allowed = answer.info["allowed"]
        if allowed == "ALLOWED":
            return _accept(token, reference=answer.info.get("authorization_reference") or "", where=where)
        if token.realtime:
            # Not pushed to us: our copy says what the partner last said, should the charger start without
            # asking (a 1.6 StartTransaction with no Authorize before it).
            IdToken.objects.filter(pk=token.id_token_id).update(
                status=IdTokenStatus.EXPIRED if allowed == "EXPIRED" else IdTokenStatus.BLOCKED
            )
        return TokenInfo(status=ALLOWED_STATUS[allowed])

    failed = [answer.target for answer in answers if answer.kind != "unknown"]
    if plan.known_token_id is not None:
        if answers and not failed:
            return REFUSED  # its own eMSP no longer knows it
        if plan.whitelisted_offline:
            return None  # ALLOWED_OFFLINE (or a learnt whitelisted token): what we hold stands
        if failed and failed[0].fallback == RealtimeAuthFallback.ACCEPT:
            token = OcpiToken.objects.get(pk=plan.known_token_id)
            return _accept(token, reference="", where=where)
        return REFUSED
    if not failed:
        return None  # nobody knows it
    accepting = [target for target in failed if target.fallback == RealtimeAuthFallback.ACCEPT]
    if len(accepting) != 1:
        return REFUSED
    token = _placeholder_token(accepting[0], value=value, token_type=token_type)
    return _accept(token, reference="", where=where) if token is not None else REFUSED
