"""Reservations, local authorisation lists and their answers on the wire (1.6 Reservation and Local Auth List
Management profiles; 2.0.1 blocks H and D).

Builders are pure, `builder(version, ...) -> Call`, like cpms.ocpp_wire.operations, each ending with
`call_checked` (ValidationFailed for what the version cannot express). 2.1 is built like 2.0.1. The readers
(`local_list_items_sent`) turn a SendLocalList we sent back into typed items for the answer hooks.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cpms.ocpp_wire.calls import Call, call_checked, version_checked
from cpms.ocpp_wire.errors import OcppError
from cpms.ocpp_wire.times import format_datetime, parse_datetime


@dataclass(frozen=True, slots=True)
class LocalListItem:
    """One token in a SendLocalList. `status` None: a removal (sent without idTagInfo / idTokenInfo)."""

    value: str
    type: str
    status: str | None = None
    expires_at: datetime | None = None
    group_value: str = ""
    group_type: str = ""


# Longest idTag (1.6 IdToken: CiString20) / idToken (2.0.1 identifierString 36; 2.1 255) per version.
ID_TOKEN_MAX_LENGTH = {"1.6": 20, "2.0.1": 36, "2.1": 255}
# 2.0.1 ConnectorEnumType: a reserved connector's type is sent only when it is one of these.
CONNECTOR_TYPES_201 = frozenset(
    {
        "cCCS1",
        "cCCS2",
        "cG105",
        "cTesla",
        "cType1",
        "cType2",
        "s309-1P-16A",
        "s309-1P-32A",
        "s309-3P-16A",
        "s309-3P-32A",
        "sBS1361",
        "sCEE-7-7",
        "sType2",
        "sType3",
        "Other1PhMax16A",
        "Other1PhOver16A",
        "Other3Ph",
        "Pan",
        "wInductive",
        "wResonant",
    }
)
# 1.6 AuthorizationStatus: what a 1.6 idTagInfo may say.
STATUSES_16 = frozenset({"Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"})


# --- builders ----------------------------------------------------------------------------------------


def reserve_now(
    version: str,
    *,
    reservation_id: int,
    expires_at: datetime,
    id_token: str,
    id_token_type: str,
    evse_id: int | None = None,
    connector_type: str | None = None,
    group_id_token: str | None = None,
    group_type: str | None = None,
) -> Call:
    """1.6 ReserveNow {connectorId (0: any connector of the station), expiryDate, idTag, reservationId,
    parentIdTag?}; 2.0.1 ReserveNow {id, expiryDateTime, idToken{idToken, type}, evseId?, connectorType?,
    groupIdToken?}. A 1.6 connector n is our EVSE n; 2.0.1 reserves an EVSE, or a connector type at it
    (sent when `connector_type` is a 2.0.1 ConnectorEnumType). A group too long for the version is left out
    (the charger then matches the token itself only)."""
    version = version_checked(version)
    group = group_id_token if group_id_token and len(group_id_token) <= ID_TOKEN_MAX_LENGTH[version] else None
    if version == "1.6":
        payload: dict[str, Any] = {
            "connectorId": evse_id or 0,
            "expiryDate": format_datetime(expires_at),
            "idTag": id_token,
            "reservationId": reservation_id,
        }
        if group:
            payload["parentIdTag"] = group
        return call_checked(version, Call("ReserveNow", payload))
    payload = {
        "id": reservation_id,
        "expiryDateTime": format_datetime(expires_at),
        "idToken": {"idToken": id_token, "type": id_token_type},
    }
    if evse_id is not None:
        payload["evseId"] = evse_id
        if connector_type in CONNECTOR_TYPES_201:
            payload["connectorType"] = connector_type
    if group:
        payload["groupIdToken"] = {"idToken": group, "type": group_type or "Central"}
    return call_checked(version, Call("ReserveNow", payload))


def cancel_reservation(version: str, *, reservation_id: int) -> Call:
    """CancelReservation {reservationId}, the same in every version."""
    return call_checked(version, Call("CancelReservation", {"reservationId": reservation_id}))


def send_local_list(
    version: str, *, version_number: int, update_type: str, items: Sequence[LocalListItem]
) -> Call:
    """1.6 SendLocalList {listVersion, updateType, localAuthorizationList[{idTag, idTagInfo{status,
    expiryDate?, parentIdTag?}}]}; 2.0.1 {versionNumber, updateType, localAuthorizationList[{idToken{idToken,
    type}, idTokenInfo{status, cacheExpiryDateTime?, groupIdToken?}}]}. An item without status is a removal:
    sent without idTagInfo / idTokenInfo. An empty list is left out (2.0.1 allows no empty array; a Full
    update without one empties the station's list)."""
    version = version_checked(version)
    if version == "1.6":
        entries = [_entry_16(item) for item in items]
        payload: dict[str, Any] = {"listVersion": version_number, "updateType": update_type}
    else:
        entries = [_entry_201(item) for item in items]
        payload = {"versionNumber": version_number, "updateType": update_type}
    if entries:
        payload["localAuthorizationList"] = entries
    return call_checked(version, Call("SendLocalList", payload))


def get_local_list_version(version: str) -> Call:
    """GetLocalListVersion {}, the same in every version."""
    return call_checked(version, Call("GetLocalListVersion", {}))


def _entry_16(item: LocalListItem) -> dict[str, Any]:
    entry: dict[str, Any] = {"idTag": item.value}
    if item.status is not None:
        info: dict[str, Any] = {"status": item.status if item.status in STATUSES_16 else "Invalid"}
        if item.expires_at is not None:
            info["expiryDate"] = format_datetime(item.expires_at)
        if item.group_value:
            info["parentIdTag"] = item.group_value
        entry["idTagInfo"] = info
    return entry


def _entry_201(item: LocalListItem) -> dict[str, Any]:
    entry: dict[str, Any] = {"idToken": {"idToken": item.value, "type": item.type}}
    if item.status is not None:
        info: dict[str, Any] = {"status": item.status}
        if item.expires_at is not None:
            info["cacheExpiryDateTime"] = format_datetime(item.expires_at)
        if item.group_value:
            info["groupIdToken"] = {"idToken": item.group_value, "type": item.group_type or "Central"}
        entry["idTokenInfo"] = info
    return entry


# --- reading back what was sent ------------------------------------------------------------------


def local_list_items_sent(version: str, request: dict[str, Any]) -> list[LocalListItem]:
    """The items of a SendLocalList request as we sent it (removals with status None)."""
    return _sent_items_16(request) if version_checked(version) == "1.6" else _sent_items_201(request)


def _sent_items_16(request: dict[str, Any]) -> list[LocalListItem]:
    items = []
    for entry in request.get("localAuthorizationList") or []:
        info = entry.get("idTagInfo")
        items.append(
            LocalListItem(
                value=entry["idTag"],
                type="ISO14443",
                status=info["status"] if info else None,
                expires_at=_datetime_or_none((info or {}).get("expiryDate")),
                group_value=(info or {}).get("parentIdTag", ""),
            )
        )
    return items


def _sent_items_201(request: dict[str, Any]) -> list[LocalListItem]:
    items = []
    for entry in request.get("localAuthorizationList") or []:
        info = entry.get("idTokenInfo")
        group = (info or {}).get("groupIdToken") or {}
        items.append(
            LocalListItem(
                value=entry["idToken"]["idToken"],
                type=entry["idToken"]["type"],
                status=info["status"] if info else None,
                expires_at=_datetime_or_none((info or {}).get("cacheExpiryDateTime")),
                group_value=group.get("idToken", ""),
                group_type=group.get("type", ""),
            )
        )
    return items


# --- helpers -------------------------------------------------------------------------------------------


def _datetime_or_none(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return parse_datetime(value, "expiry")
    except OcppError:
        return None
