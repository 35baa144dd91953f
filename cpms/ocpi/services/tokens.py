"""Tokens our partners' drivers charge with (OCPI 2.2.1 tokens module, Receiver interface), and the `IdToken`
each one is mirrored by, so that every charger path (1.6, 2.0.1, local lists, site access rules) authorises
it like any other token of the organisation.

The mirror is derived from the OCPI token on every write, never edited by hand:
- organisation = the partner's organisation, value = uid;
- type: RFID -> ISO14443, APP_USER/AD_HOC_USER/OTHER -> Central;
- status: Accepted when `valid`, else Blocked;
- group: the partner's group token (`partner_token_group`): a tariff assigned to that group is the partner's
  tariff, and an operator who blocks the group blocks every driver of that partner;
- in_local_list: whitelist ALWAYS or ALLOWED_OFFLINE. A local list is what a charger uses when it cannot
  reach us, which is exactly when those two allow the token (OCPI 2.2.1 WhitelistType); ALLOWED is not sent
  (we answer it online without asking), NEVER must never be whitelisted.

A uid names one IdToken per organisation: a uid that is already one of our own tokens, or another
partner's, is refused rather than overwritten (a partner must not take over a card we or another eMSP issued).
"""

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction

from cpms.ocpi import protocol
from cpms.ocpi.enums import Role
from cpms.ocpi.models import OcpiPartner, OcpiToken
from cpms.ocpi.protocol import CLIENT_ERROR, INVALID_PARAMETERS, UNKNOWN_TOKEN, NotFound, OcpiError
from sessions.enums import IdTokenStatus, IdTokenType
from sessions.models import IdToken

logger = logging.getLogger(__name__)

TOKEN_TYPES = ("AD_HOC_USER", "APP_USER", "OTHER", "RFID")
WHITELIST_TYPES = ("ALWAYS", "ALLOWED", "ALLOWED_OFFLINE", "NEVER")
PROFILE_TYPES = ("CHEAP", "FAST", "GREEN", "REGULAR")
DEFAULT_TOKEN_TYPE = "RFID"  # OCPI 2.2.1: the `type` URL parameter defaults to RFID
# Whitelist values that let a charger hold the token in its local list (see the module docstring).
LOCAL_LIST_WHITELISTS = frozenset({"ALWAYS", "ALLOWED_OFFLINE"})
GROUP_VALUE_PREFIX = "OCPI-GROUP-"


def _optional(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, or null: some partners send optional fields as null, meaning "not set". (A type list
    rather than anyOf, so that a failure still names the field.)"""
    if "enum" in schema:
        return {"enum": [*schema["enum"], None]}
    return {**schema, "type": [schema["type"], "null"]}


_TOKEN_PROPERTIES: dict[str, Any] = {
    "country_code": protocol.COUNTRY_CODE,
    "party_id": protocol.PARTY_ID,
    "uid": protocol.string(36, minLength=1),
    "type": {"enum": list(TOKEN_TYPES)},
    "contract_id": protocol.string(36, minLength=1),
    "visual_number": _optional(protocol.string(64)),
    "issuer": protocol.string(64),
    "group_id": _optional(protocol.string(36)),
    "valid": {"type": "boolean"},
    "whitelist": {"enum": list(WHITELIST_TYPES)},
    "language": _optional(protocol.string(2)),
    "default_profile_type": _optional({"enum": list(PROFILE_TYPES)}),
    "energy_contract": _optional(
        {
            "type": "object",
            "properties": {
                "supplier_name": protocol.string(64),
                "contract_id": _optional(protocol.string(64)),
            },
            "required": ["supplier_name"],
        }
    ),
    "last_updated": protocol.DATETIME,
}
TOKEN_REQUIRED = [
    "country_code",
    "party_id",
    "uid",
    "type",
    "contract_id",
    "issuer",
    "valid",
    "whitelist",
    "last_updated",
]
TOKEN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": _TOKEN_PROPERTIES,
    "required": TOKEN_REQUIRED,
}
TOKEN_PATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": _TOKEN_PROPERTIES,
    # OCPI 2.2.1 tokens PATCH: "Any request to the PATCH method SHALL contain the last_updated field."
    "required": ["last_updated"],
}
token_validate = protocol.schema_validator(TOKEN_SCHEMA)
token_patch_validate = protocol.schema_validator(TOKEN_PATCH_SCHEMA)


# --- reading ----------------------------------------------------------------------------------------
def ocpi_token_get(
    *, partner: OcpiPartner, country_code: str, party_id: str, uid: str, token_type: str
) -> OcpiToken | None:
    """The token `partner` pushed (or we learnt from it in real time), or None: a partner never sees
    another partner's tokens."""
    return OcpiToken.objects.filter(
        partner=partner,
        country_code=country_code.upper(),
        party_id=party_id.upper(),
        uid=uid,
        type=token_type,
    ).first()


def token_type_param(value: str | None) -> str:
    """The `type` URL parameter (OCPI 2.2.1 tokens Receiver interface), RFID when omitted."""
    if not value:
        return DEFAULT_TOKEN_TYPE
    if value not in TOKEN_TYPES:
        raise OcpiError(
            f"type: {value!r} is not one of {', '.join(TOKEN_TYPES)}.", status_code=INVALID_PARAMETERS
        )
    return value


def token_party_check(
    *, partner: OcpiPartner, from_party: tuple[str, str], country_code: str, party_id: str
) -> None:
    """A direct partner reaches only its own parties' tokens; a hub any party it speaks for (the
    OCPI-from-* party when it names one). Else 404, as OCPI 2.2.1 "Client Owned Object Push" allows."""
    party = (country_code.upper(), party_id.upper())
    if any(role.get("role") == Role.HUB for role in partner.roles):
        allowed = not from_party[0] or party == from_party
    else:
        allowed = party in {
            (role["country_code"].upper(), role["party_id"].upper())
            for role in partner.roles
            if "country_code" in role
        }
    if not allowed:
        raise NotFound(
            f"{party[0]}*{party[1]} is not a party of this connection.", status_code=INVALID_PARAMETERS
        )


# --- the partner's group ----------------------------------------------------------------------------
def partner_token_group(partner: OcpiPartner) -> IdToken:
    """The group token of `partner`'s drivers, created on first need (an operator assigns a tariff to it to
    give that partner a tariff). Call inside a transaction."""
    if partner.id_token_group is not None:
        return partner.id_token_group
    # `of=("self",)`: the group is a nullable join, which PostgreSQL will not lock.
    locked = (
        OcpiPartner.objects.select_for_update(of=("self",))
        .select_related("party", "id_token_group")
        .get(pk=partner.pk)
    )
    group = locked.id_token_group
    if group is None:
        group, _ = IdToken.objects.get_or_create(
            organisation_id=locked.party.organisation_id,
            value=f"{GROUP_VALUE_PREFIX}{locked.pk}",
            defaults={
                "type": IdTokenType.CENTRAL,
                "status": IdTokenStatus.ACCEPTED,
                # Members only read its status; as a token of its own it must charge nowhere: a driver who
                # typed this value (2.0.1 KeyCode/Central) would otherwise be Accepted.
                "expires_at": datetime(2000, 1, 1, tzinfo=UTC),
                "owner_name": f"OCPI partner {locked.name}"[:200],
            },
        )
        OcpiPartner.objects.filter(pk=locked.pk).update(id_token_group=group)
    partner.id_token_group = group
    return group


def is_partner_group(group_value: str | None) -> bool:
    """Whether a token whose group is `group_value` may be a partner's token (read from TokenInfo, no
    query): the OCPP Authorize path asks no more for any other token."""
    return group_value is not None and group_value.startswith(GROUP_VALUE_PREFIX)


# --- writing ----------------------------------------------------------------------------------------
def _normalised(data: Mapping[str, Any]) -> dict[str, Any]:
    """The Token as we keep and serve it: its known fields, nulls dropped, party upper-cased."""
    token = {name: data[name] for name in _TOKEN_PROPERTIES if data.get(name) is not None}
    token["country_code"] = token["country_code"].upper()
    token["party_id"] = token["party_id"].upper()
    return token


def _mirror_fields(data: Mapping[str, Any], group: IdToken, *, realtime: bool) -> dict[str, Any]:
    return {
        "type": IdTokenType.ISO14443 if data["type"] == "RFID" else IdTokenType.CENTRAL,
        "status": IdTokenStatus.ACCEPTED if data["valid"] else IdTokenStatus.BLOCKED,
        "group_id": group.pk,
        # A token we only learnt from a real-time answer gets no updates from its partner: no charger holds it.
        "in_local_list": data["whitelist"] in LOCAL_LIST_WHITELISTS and not realtime,
    }


def _uid_taken(value: str) -> OcpiError:
    return OcpiError(
        f"Token uid {value!r} is already in use at this operator (one of its own tokens or another "
        "eMSP's): not stored.",
        status_code=CLIENT_ERROR,
        http_status=409,
    )


def _store(partner: OcpiPartner, data: dict[str, Any], *, realtime: bool) -> OcpiToken:
    """Create or update the OcpiToken of `data` (a checked, normalised Token) and its IdToken mirror
    (caller is inside a transaction). A token older than the stored one changes nothing (pushes may
    arrive out of order), and neither does the same token twice."""
    last_updated = protocol.parse_datetime(data["last_updated"], field="last_updated")
    key = {
        "partner": partner,
        "country_code": data["country_code"],
        "party_id": data["party_id"],
        "uid": data["uid"],
        "type": data["type"],
    }
    group = partner_token_group(partner)
    tokens = OcpiToken.objects.select_for_update().select_related("id_token")
    token = tokens.filter(**key).first()
    if token is None:
        # A card of this partner we only know from real-time answers (or accepted on its fallback, under its
        # own party: a hub's drivers' party is not known then) is the same card: the partner's Token now
        # names it, party and type included.
        token = tokens.filter(
            partner=partner,
            uid=data["uid"],
            realtime=True,
            id_token__organisation_id=partner.party.organisation_id,
        ).first()
    # A token the partner pushes is no longer one we only learnt from a real-time answer.
    realtime = realtime if token is None else token.realtime and realtime
    mirror = _mirror_fields(data, group, realtime=realtime)
    if token is None:
        organisation_id = partner.party.organisation_id
        if IdToken.objects.filter(organisation_id=organisation_id, value=data["uid"]).exists():
            raise _uid_taken(data["uid"])
        try:
            with transaction.atomic():
                id_token = IdToken.objects.create(
                    organisation_id=organisation_id, value=data["uid"], **mirror
                )
                return OcpiToken.objects.create(
                    **key,
                    id_token=id_token,
                    contract_id=data["contract_id"],
                    data=data,
                    realtime=realtime,
                    last_updated=last_updated,
                )
        except IntegrityError as exc:
            # The same uid created concurrently: by this partner (the same push twice at once: now an
            # update) or by another.
            if OcpiToken.objects.filter(**key).exists():
                return _store(partner, data, realtime=realtime)
            raise _uid_taken(data["uid"]) from exc

    if last_updated < token.last_updated:
        return token
    values = {
        "country_code": data["country_code"],
        "party_id": data["party_id"],
        "type": data["type"],
        "contract_id": data["contract_id"],
        "data": data,
        "last_updated": last_updated,
        "realtime": realtime,
    }
    changed = [field for field, value in values.items() if getattr(token, field) != value]
    if changed:
        for field in changed:
            setattr(token, field, values[field])
        token.save(update_fields=[*changed, "updated_at"])
    id_token = token.id_token
    mirror_changed = [field for field, value in mirror.items() if getattr(id_token, field) != value]
    if mirror_changed:
        for field in mirror_changed:
            setattr(id_token, field, mirror[field])
        id_token.save(update_fields=[f.removesuffix("_id") for f in mirror_changed] + ["updated_at"])
    return token


def _url_matches(
    data: Mapping[str, Any], *, country_code: str, party_id: str, uid: str, token_type: str
) -> None:
    """OCPI 2.2.1 "Client Owned Object Push", Errors: the object must be the one the URL names (2001)."""
    expected = {
        "country_code": country_code.upper(),
        "party_id": party_id.upper(),
        "uid": uid,
        "type": token_type,
    }
    for field, value in expected.items():
        got = data.get(field)
        if got is None:
            continue
        if (got.upper() if field in ("country_code", "party_id") else got) != value:
            raise OcpiError(
                f"{field}: {got!r} in the body, {value!r} in the URL.", status_code=INVALID_PARAMETERS
            )


@transaction.atomic
def token_put(
    *,
    partner: OcpiPartner,
    from_party: tuple[str, str],
    country_code: str,
    party_id: str,
    uid: str,
    token_type: str,
    body: Any,
) -> OcpiToken:
    """Create or replace a token (PUT). Idempotent: the same token twice changes nothing the second time."""
    token_party_check(partner=partner, from_party=from_party, country_code=country_code, party_id=party_id)
    token_validate(body)
    _url_matches(body, country_code=country_code, party_id=party_id, uid=uid, token_type=token_type)
    return _store(partner, _normalised(body), realtime=False)


@transaction.atomic
def token_patch(
    *,
    partner: OcpiPartner,
    from_party: tuple[str, str],
    country_code: str,
    party_id: str,
    uid: str,
    token_type: str,
    body: Any,
) -> OcpiToken:
    """Change some fields of a token we hold (PATCH): the fields sent replace ours, the others stay."""
    token_party_check(partner=partner, from_party=from_party, country_code=country_code, party_id=party_id)
    token_patch_validate(body)
    _url_matches(body, country_code=country_code, party_id=party_id, uid=uid, token_type=token_type)
    token = ocpi_token_get(
        partner=partner, country_code=country_code, party_id=party_id, uid=uid, token_type=token_type
    )
    if token is None:
        raise NotFound(f"Unknown token {uid!r} ({token_type}): PUT it first.", status_code=UNKNOWN_TOKEN)
    merged = {**token.data, **body}
    token_validate(merged)
    return _store(partner, _normalised(merged), realtime=token.realtime)


@transaction.atomic
def token_store_realtime(*, partner: OcpiPartner, data: Mapping[str, Any]) -> OcpiToken:
    """Keep the Token a partner returned in a real-time authorisation (checked here like a pushed one):
    new tokens are marked `realtime` (asked again at every use, see services/realtime.py)."""
    token_validate(data)
    token_party_check(
        partner=partner, from_party=("", ""), country_code=data["country_code"], party_id=data["party_id"]
    )
    return _store(partner, _normalised(data), realtime=True)
