"""Reservations, local authorisation lists and the charger's own password on the wire (1.6 Reservation and
Local Auth List Management profiles, security whitepaper; 2.0.1 blocks H, D and A).

- Builders are pure, `builder(version, ...) -> Call`, like cpms.ocpp.commands, each checked against the
  official request schema (ValidationFailed for what the version cannot express). 2.1 is built like 2.0.1.
- Adapters hand them to the version-neutral session services: `reserve_now_for` / `cancel_reservation_for`
  (a Reservation -> its station's call) and `local_list_wire` (a station -> its version's LocalListWire).
- Answer hooks (HOOKS) read what the answer means, by version, and call the session services in the
  transaction that records the answer.
"""

from collections.abc import Sequence
from typing import Any

from cpms.errors import ValidationFailed
from cpms.ocpp import schemas
from cpms.ocpp.commands import SET_APPLIED, VERSIONS, Call, station_version
from cpms.ocpp.errors import OcppError
from cpms.ocpp.mappers import format_datetime, parse_datetime
from sessions.models import Reservation
from sessions.services.local_lists import (
    LocalListItem,
    LocalListWire,
    local_list_answered,
    local_list_version_reported,
)
from sessions.services.reservations import reservation_answered, reservation_cancel_answered
from stations.models import ChargingStation, Command
from stations.services.commands import AnswerHook
from stations.services.credentials import ROTATION_KEY, is_password_item, station_password_answered
from stations.services.device_model import OCPP16_COMPONENT

# Longest idTag (1.6 IdToken: CiString20) / idToken (2.0.1 identifierString 36; 2.1 255) per version.
ID_TOKEN_MAX_LENGTH = {"1.6": 20, "2.0.1": 36, "2.1": 255}
# The most entries one SendLocalList may carry, where the station reports it (DeviceVariable).
LIST_LIMIT_KEYS = {
    "1.6": (OCPP16_COMPONENT, "SendLocalListMaxLength"),
    "2.0.1": ("LocalAuthListCtrlr", "ItemsPerMessage"),
    "2.1": ("LocalAuthListCtrlr", "ItemsPerMessage"),
}
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
    expires_at,
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
    version = _version(version)
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
        return _checked(version, Call("ReserveNow", payload))
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
    return _checked(version, Call("ReserveNow", payload))


def cancel_reservation(version: str, *, reservation_id: int) -> Call:
    """CancelReservation {reservationId}, the same in every version."""
    return _checked(_version(version), Call("CancelReservation", {"reservationId": reservation_id}))


def send_local_list(
    version: str, *, version_number: int, update_type: str, items: Sequence[LocalListItem]
) -> Call:
    """1.6 SendLocalList {listVersion, updateType, localAuthorizationList[{idTag, idTagInfo{status,
    expiryDate?, parentIdTag?}}]}; 2.0.1 {versionNumber, updateType, localAuthorizationList[{idToken{idToken,
    type}, idTokenInfo{status, cacheExpiryDateTime?, groupIdToken?}}]}. An item without status is a removal:
    sent without idTagInfo / idTokenInfo. An empty list is left out (2.0.1 allows no empty array; a Full
    update without one empties the station's list)."""
    version = _version(version)
    if version == "1.6":
        entries = [_entry_16(item) for item in items]
        payload: dict[str, Any] = {"listVersion": version_number, "updateType": update_type}
    else:
        entries = [_entry_201(item) for item in items]
        payload = {"versionNumber": version_number, "updateType": update_type}
    if entries:
        payload["localAuthorizationList"] = entries
    return _checked(version, Call("SendLocalList", payload))


def get_local_list_version(version: str) -> Call:
    """GetLocalListVersion {}, the same in every version."""
    return _checked(_version(version), Call("GetLocalListVersion", {}))


def _entry_16(item: LocalListItem) -> dict:
    entry: dict[str, Any] = {"idTag": item.value}
    if item.status is not None:
        info: dict[str, Any] = {"status": item.status if item.status in STATUSES_16 else "Invalid"}
        if item.expires_at is not None:
            info["expiryDate"] = format_datetime(item.expires_at)
        if item.group_value:
            info["parentIdTag"] = item.group_value
        entry["idTagInfo"] = info
    return entry


def _entry_201(item: LocalListItem) -> dict:
    entry: dict[str, Any] = {"idToken": {"idToken": item.value, "type": item.type}}
    if item.status is not None:
        info: dict[str, Any] = {"status": item.status}
        if item.expires_at is not None:
            info["cacheExpiryDateTime"] = format_datetime(item.expires_at)
        if item.group_value:
            info["groupIdToken"] = {"idToken": item.group_value, "type": item.group_type or "Central"}
        entry["idTokenInfo"] = info
    return entry


# --- adapters for the session services ---------------------------------------------------------------


def reserve_now_for(reservation: Reservation) -> Call:
    """The ReserveNow of a reservation (its station, EVSE, connector, token and group loaded or loadable)."""
    token = reservation.id_token
    group = token.group
    connector = reservation.connector
    return reserve_now(
        station_version(reservation.station),
        reservation_id=reservation.pk,
        expires_at=reservation.expires_at,
        id_token=token.value,
        id_token_type=token.type,
        evse_id=reservation.evse.evse_id if reservation.evse is not None else None,
        connector_type=connector.connector_type if connector is not None else None,
        group_id_token=group.value if group is not None else None,
        group_type=group.type if group is not None else None,
    )


def cancel_reservation_for(reservation: Reservation) -> Call:
    return cancel_reservation(station_version(reservation.station), reservation_id=reservation.pk)


def local_list_wire(station: ChargingStation) -> LocalListWire:
    version = station_version(station)
    component, variable = LIST_LIMIT_KEYS[version]
    return LocalListWire(
        value_max_length=ID_TOKEN_MAX_LENGTH[version],
        limit_component=component,
        limit_variable=variable,
        build=lambda update: send_local_list(
            version, version_number=update.version, update_type=update.update_type, items=update.items
        ),
    )


# --- answer hooks --------------------------------------------------------------------------------------


def _reserve_now_answered(id_key: str) -> AnswerHook:
    def hook(command: Command, response: dict) -> None:
        reservation_answered(
            station_id=command.station_id,
            reservation_id=command.request[id_key],
            command_id=command.pk,
            charger_status=str(response.get("status", "")),
        )

    return hook


def _cancel_reservation_answered(command: Command, response: dict) -> None:
    reservation_cancel_answered(
        station_id=command.station_id,
        reservation_id=command.request["reservationId"],
        charger_status=str(response.get("status", "")),
    )


def _sent_items_16(request: dict) -> list[LocalListItem]:
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


def _sent_items_201(request: dict) -> list[LocalListItem]:
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


def _send_local_list_16(command: Command, response: dict) -> None:
    local_list_answered(
        station_id=command.station_id,
        version=command.request["listVersion"],
        update_type=command.request["updateType"],
        items=_sent_items_16(command.request),
        status=str(response.get("status", "")),
        now=command.finished_at,
    )


def _send_local_list_201(command: Command, response: dict) -> None:
    local_list_answered(
        station_id=command.station_id,
        version=command.request["versionNumber"],
        update_type=command.request["updateType"],
        items=_sent_items_201(command.request),
        status=str(response.get("status", "")),
        now=command.finished_at,
    )


def _local_list_version_answered(key: str) -> AnswerHook:
    def hook(command: Command, response: dict) -> None:
        if isinstance(response.get(key), int):
            local_list_version_reported(station_id=command.station_id, version=response[key])

    return hook


def _authorization_key_answered(command: Command, response: dict) -> None:
    """1.6 ChangeConfiguration AuthorizationKey.conf: Accepted (or RebootRequired: stored, used after the
    reboot) makes the pending password the station's; Rejected / NotSupported drops it (RELIABILITY A5)."""
    if command.request.get("key") == ROTATION_KEY:
        station_password_answered(
            station_id=command.station_id,
            command_id=command.pk,
            applied=response.get("status") in SET_APPLIED,
        )


def _basic_auth_password_answered(command: Command, response: dict) -> None:
    """2.0.1 SetVariablesResponse: the result for SecurityCtrlr.BasicAuthPassword decides (A01: Accepted /
    RebootRequired, the station then reconnects with the new password; anything else: it keeps the old one).
    A request without the password, or an answer without its result, changes nothing."""
    if not any(is_password_item(item) for item in command.request.get("setVariableData") or []):
        return
    results = [item for item in response.get("setVariableResult") or [] if is_password_item(item)]
    if results:
        station_password_answered(
            station_id=command.station_id,
            command_id=command.pk,
            applied=results[0].get("attributeStatus") in SET_APPLIED,
        )


HOOKS: dict[tuple[str, str], AnswerHook] = {
    ("1.6", "ChangeConfiguration"): _authorization_key_answered,
    ("1.6", "ReserveNow"): _reserve_now_answered("reservationId"),
    ("1.6", "CancelReservation"): _cancel_reservation_answered,
    ("1.6", "SendLocalList"): _send_local_list_16,
    ("1.6", "GetLocalListVersion"): _local_list_version_answered("listVersion"),
    **{
        (version, action): hook
        for version in ("2.0.1", "2.1")
        for action, hook in {
            "ReserveNow": _reserve_now_answered("id"),
            "CancelReservation": _cancel_reservation_answered,
            "SendLocalList": _send_local_list_201,
            "GetLocalListVersion": _local_list_version_answered("versionNumber"),
            "SetVariables": _basic_auth_password_answered,
        }.items()
    },
}


# --- helpers -------------------------------------------------------------------------------------------


def _version(version: str) -> str:
    if version not in VERSIONS:
        raise ValidationFailed(f"OCPP version {version!r} is not supported.")
    return version


def _checked(version: str, call: Call) -> Call:
    try:
        schemas.validate(version, schemas.request_schema(version, call.action), call.payload)
    except OcppError as exc:
        raise ValidationFailed(f"{call.action} (OCPP {version}): {exc.description}") from None
    return call


def _datetime_or_none(value):
    if not value:
        return None
    try:
        return parse_datetime(value, "expiry")
    except OcppError:
        return None
