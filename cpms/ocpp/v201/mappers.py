"""OCPP 2.0.1 payloads <-> version-neutral domain values."""

from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from cpms.ocpp import ranges
from cpms.ocpp.mappers import (
    charger_time,
    format_datetime,
    text,
    timestamp_window,
    wire_id,
)
from sessions.types import Sample, TokenInfo, TransactionEventRequest
from stations.services.device_model import VariableReport
from stations.types import ConnectorStatusReport, StationInfo


def station_info(payload: dict[str, Any]) -> StationInfo:
    station = payload["chargingStation"]
    modem = station.get("modem") or {}
    return StationInfo(
        vendor=station["vendorName"],
        model=station["model"],
        serial_number=station.get("serialNumber", ""),
        firmware_version=station.get("firmwareVersion", ""),
        iccid=modem.get("iccid", ""),
        imsi=modem.get("imsi", ""),
    )


def status_report(payload: dict[str, Any], received_at: datetime) -> ConnectorStatusReport:
    evse_id = wire_id(payload["evseId"], "evseId")
    connector_id = wire_id(payload["connectorId"], "connectorId")
    return ConnectorStatusReport(
        evse_id=evse_id or None,
        connector_id=(connector_id or 1) if evse_id else None,
        status=payload["connectorStatus"],
        error_code="",
        info="",
        vendor_id="",
        vendor_error_code="",
        occurred_at=charger_time(payload["timestamp"], "timestamp", received_at)[0],
        received_at=received_at,
    )


def id_token_info(token: TokenInfo) -> dict[str, Any]:
    # 2.0.1 distinguishes a token we do not know (Unknown) from one we know is not valid (Invalid).
    info: dict[str, Any] = {"status": token.status if token.known else "Unknown"}
    if token.expires_at is not None:
        info["cacheExpiryDateTime"] = format_datetime(token.expires_at)
    if token.group_value:
        info["groupIdToken"] = {"idToken": token.group_value[:36], "type": token.group_type or "Central"}
    return info


def samples(meter_values: list[dict[str, Any]], received_at: datetime) -> list[Sample]:
    result = []
    window = timestamp_window(received_at)
    for meter_value in meter_values:
        timestamp, raw_time = charger_time(
            meter_value["timestamp"], "meterValue.timestamp", received_at, window
        )
        for sampled in meter_value["sampledValue"]:
            unit = sampled.get("unitOfMeasure") or {}
            value = ranges.sampled_value(sampled["value"], multiplier=unit.get("multiplier", 0))
            signed = sampled.get("signedMeterValue")
            result.append(
                Sample(
                    timestamp=timestamp,
                    value=value,
                    measurand=sampled.get("measurand", "Energy.Active.Import.Register"),
                    phase=sampled.get("phase", ""),
                    location=sampled.get("location", ""),
                    unit=ranges.unit(unit.get("unit", "Wh")),
                    context=sampled.get("context", "Sample.Periodic"),
                    # The whole signedMeterValue object, its signedMeterData byte-for-byte
                    # (docs/reliability.md case 28).
                    signed_data=orjson.dumps(signed).decode() if signed else "",
                    charger_timestamp=raw_time,
                )
            )
    return result


def transaction_event(
    payload: dict[str, Any], *, station_id: int, received_at: datetime
) -> TransactionEventRequest:
    info = payload["transactionInfo"]
    evse = payload.get("evse") or {}
    id_token = payload.get("idToken") or {}
    timestamp, raw_time = charger_time(payload["timestamp"], "timestamp", received_at)
    return TransactionEventRequest(
        station_id=station_id,
        transaction_id=info["transactionId"],
        seq_no=wire_id(payload["seqNo"], "seqNo"),
        event_type=payload["eventType"],
        trigger_reason=payload["triggerReason"],
        timestamp=timestamp,
        received_at=received_at,
        payload=payload,
        offline=bool(payload.get("offline", False)),
        evse_id=wire_id(evse.get("id", 0), "evse.id") or None,
        connector_id=wire_id(evse.get("connectorId", 1), "evse.connectorId") or 1,
        id_tag=id_token.get("idToken", ""),
        samples=tuple(samples(payload.get("meterValue", []), received_at)),
        charging_state=info.get("chargingState", ""),
        stopped_reason=info.get("stoppedReason", ""),
        remote_start_id=info.get("remoteStartId"),
        reservation_id=payload.get("reservationId"),
        charger_timestamp=raw_time,
    )


def _limit(value: object) -> Decimal | None:
    return None if value is None else ranges.variable_limit(value)


def variable_reports(report_data: list[dict[str, Any]]) -> list[VariableReport]:
    reports = []
    for item in report_data:
        component = item["component"]
        evse = component.get("evse") or {}
        variable = item["variable"]
        characteristics = item.get("variableCharacteristics") or {}
        for attribute in item["variableAttribute"]:
            reports.append(
                VariableReport(
                    component=component["name"],
                    component_instance=component.get("instance", ""),
                    evse_id=wire_id(evse.get("id", 0), "component.evse.id"),
                    connector_id=wire_id(evse.get("connectorId", 0), "component.evse.connectorId"),
                    variable=variable["name"],
                    variable_instance=variable.get("instance", ""),
                    attribute_type=attribute.get("type", "Actual"),
                    value=text(attribute.get("value"), 2500),
                    mutability=attribute.get("mutability", ""),
                    persistent=attribute.get("persistent"),
                    constant=attribute.get("constant"),
                    data_type=characteristics.get("dataType", ""),
                    unit=characteristics.get("unit", ""),
                    min_limit=_limit(characteristics.get("minLimit")),
                    max_limit=_limit(characteristics.get("maxLimit")),
                    values_list=text(characteristics.get("valuesList"), 1000),
                    supports_monitoring=characteristics.get("supportsMonitoring"),
                )
            )
    return reports
