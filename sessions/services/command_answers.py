"""What an answered command means for the domain: the one table of answer hooks, per (version, action).

A hook runs in the transaction that records the answer (stations.services.commands.command_finish, called
by the OCPP server with `answer_hook(version, action)`). The table lives in sessions, the lowest app that
may write both what a station holds (device model, its password; stations) and reservations and local
lists (sessions). Where several meanings share one answer (a SetVariables sets device variables and may
rotate the password), each runs, in the order listed.

Firmware and upload commands need none: the service that sent the command reads the outcome from the
Command record (the durable one) and applies it, and a campaign run that was interrupted reads it again
from there on its next delivery.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from cpms.ocpp_wire.auth import local_list_items_sent
from cpms.ocpp_wire.calls import SET_APPLIED
from cpms.ocpp_wire.operations import result_key
from sessions.services.local_lists import local_list_answered, local_list_version_reported
from sessions.services.reservations import reservation_answered, reservation_cancel_answered
from stations.models import Command
from stations.services.certificates import (
    certificate_signed_answered,
    installed_certificates_reported,
    root_installed_answered,
)
from stations.services.commands import AnswerHook
from stations.services.credentials import ROTATION_KEY, is_password_item, station_password_answered
from stations.services.device_model import OCPP16_COMPONENT, VariableValue, device_variable_values_record

# --- the device model (stations) ------------------------------------------------------------------------


def _get_configuration_answered(command: Command, response: dict[str, Any]) -> None:
    """1.6 GetConfiguration.conf: the known keys, value and mutability (`unknownKey`s are not stored)."""
    values = [
        VariableValue(
            component=OCPP16_COMPONENT,
            variable=item["key"],
            value=item.get("value") or "",
            mutability="ReadOnly" if item.get("readonly") else "ReadWrite",
        )
        for item in response.get("configurationKey") or []
    ]
    if values:
        device_variable_values_record(
            station_id=command.station_id, values=values, recorded_at=_finished_at(command)
        )


def _change_configuration_answered(command: Command, response: dict[str, Any]) -> None:
    """1.6 ChangeConfiguration.conf: Accepted / RebootRequired mean the charger holds the value sent."""
    if response.get("status") in SET_APPLIED:
        value = VariableValue(
            component=OCPP16_COMPONENT, variable=command.request["key"], value=command.request["value"]
        )
        device_variable_values_record(
            station_id=command.station_id, values=[value], recorded_at=_finished_at(command)
        )


def _get_variables_answered(command: Command, response: dict[str, Any]) -> None:
    """2.0.1 GetVariablesResponse: the Accepted results' attributeValue."""
    values = [
        _value(result["component"], result["variable"], result.get("attributeType"), result["attributeValue"])
        for result in response.get("getVariableResult") or []
        if result.get("attributeStatus") == "Accepted" and "attributeValue" in result
    ]
    if values:
        device_variable_values_record(
            station_id=command.station_id, values=values, recorded_at=_finished_at(command)
        )


def _set_variables_answered(command: Command, response: dict[str, Any]) -> None:
    """2.0.1 SetVariablesResponse: the values the charger now holds (SET_APPLIED), taken from our request;
    results are matched to the request's items by (component, variable, attribute type), not by position."""
    sent = {result_key(item): item["attributeValue"] for item in command.request.get("setVariableData", [])}
    values = []
    for result in response.get("setVariableResult") or []:
        key = result_key(result)
        if result.get("attributeStatus") in SET_APPLIED and key in sent:
            values.append(
                _value(result["component"], result["variable"], result.get("attributeType"), sent[key])
            )
    if values:
        device_variable_values_record(
            station_id=command.station_id, values=values, recorded_at=_finished_at(command)
        )


def _finished_at(command: Command) -> datetime:
    """When the answer was recorded: command_finish sets it before any hook runs."""
    assert command.finished_at is not None
    return command.finished_at


def _value(
    component: dict[str, Any], variable: dict[str, Any], attribute_type: str | None, value: str
) -> VariableValue:
    evse = component.get("evse") or {}
    return VariableValue(
        component=component["name"],
        component_instance=component.get("instance", ""),
        evse_id=evse.get("id", 0),
        connector_id=evse.get("connectorId", 0),
        variable=variable["name"],
        variable_instance=variable.get("instance", ""),
        attribute_type=attribute_type or "Actual",
        value=value,
    )


# --- the station's password (stations) ------------------------------------------------------------------


def _authorization_key_answered(command: Command, response: dict[str, Any]) -> None:
    """1.6 ChangeConfiguration AuthorizationKey.conf: Accepted (or RebootRequired: stored, used after the
    reboot) makes the pending password the station's; Rejected / NotSupported drops it
    (docs/reliability.md case 5)."""
    if command.request.get("key") == ROTATION_KEY:
        station_password_answered(
            station_id=command.station_id,
            command_id=command.pk,
            applied=response.get("status") in SET_APPLIED,
        )


def _basic_auth_password_answered(command: Command, response: dict[str, Any]) -> None:
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


# --- reservations and local lists (sessions) ------------------------------------------------------------


def _reserve_now_answered(id_key: str) -> AnswerHook:
    def hook(command: Command, response: dict[str, Any]) -> None:
        reservation_answered(
            station_id=command.station_id,
            reservation_id=command.request[id_key],
            command_id=command.pk,
            charger_status=str(response.get("status", "")),
        )

    return hook


def _cancel_reservation_answered(command: Command, response: dict[str, Any]) -> None:
    reservation_cancel_answered(
        station_id=command.station_id,
        reservation_id=command.request["reservationId"],
        charger_status=str(response.get("status", "")),
    )


def _send_local_list_answered(version: str, version_key: str) -> AnswerHook:
    def hook(command: Command, response: dict[str, Any]) -> None:
        local_list_answered(
            station_id=command.station_id,
            version=command.request[version_key],
            update_type=command.request["updateType"],
            items=local_list_items_sent(version, command.request),
            status=str(response.get("status", "")),
            now=command.finished_at,
        )

    return hook


def _local_list_version_answered(key: str) -> AnswerHook:
    def hook(command: Command, response: dict[str, Any]) -> None:
        if isinstance(response.get(key), int):
            local_list_version_reported(station_id=command.station_id, version=response[key])

    return hook


def _chained(*hooks: AnswerHook) -> AnswerHook:
    def hook(command: Command, response: dict[str, Any]) -> None:
        for each in hooks:
            each(command, response)

    return hook


def _201(version: str) -> dict[tuple[str, str], AnswerHook]:
    """2.0.1's hooks, which 2.1 shares."""
    return {
        (version, "GetVariables"): _get_variables_answered,
        (version, "SetVariables"): _chained(_set_variables_answered, _basic_auth_password_answered),
        (version, "ReserveNow"): _reserve_now_answered("id"),
        (version, "CancelReservation"): _cancel_reservation_answered,
        (version, "SendLocalList"): _send_local_list_answered(version, "versionNumber"),
        (version, "GetLocalListVersion"): _local_list_version_answered("versionNumber"),
        **_certificates(version),
    }


def _certificates(version: str) -> dict[tuple[str, str], AnswerHook]:
    """The certificate inventory (stations.services.certificates), the same in every version."""
    return {
        (version, "CertificateSigned"): certificate_signed_answered,
        (version, "GetInstalledCertificateIds"): installed_certificates_reported,
        (version, "InstallCertificate"): root_installed_answered,
    }


HOOKS: dict[tuple[str, str], AnswerHook] = {
    ("1.6", "GetConfiguration"): _get_configuration_answered,
    ("1.6", "ChangeConfiguration"): _chained(_change_configuration_answered, _authorization_key_answered),
    ("1.6", "ReserveNow"): _reserve_now_answered("reservationId"),
    ("1.6", "CancelReservation"): _cancel_reservation_answered,
    ("1.6", "SendLocalList"): _send_local_list_answered("1.6", "listVersion"),
    ("1.6", "GetLocalListVersion"): _local_list_version_answered("listVersion"),
    **_certificates("1.6"),
    **_201("2.0.1"),
    **_201("2.1"),
}


def answer_hook(version: str, action: str) -> Callable[[Command, dict[str, Any]], None] | None:
    return HOOKS.get((version, action))
