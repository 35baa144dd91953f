"""OCPP 1.6J payloads <-> version-neutral domain values.

1.6 has connectors only: connectorId n > 0 is EVSE n with connector 1; connectorId 0 is the whole station.
"""

from datetime import datetime
from typing import Any

from cpms.ocpp import ranges
from cpms.ocpp.errors import ErrorKind, OcppError
from cpms.ocpp.mappers import (
    charger_time,
    format_datetime,
    text,
    timestamp_window,
    wire_id,
)
from sessions.types import Sample, StartRequest, StopRequest, TokenInfo
from stations.types import ConnectorStatusReport, StationInfo


def station_info(payload: dict[str, Any]) -> StationInfo:
    return StationInfo(
        vendor=payload["chargePointVendor"],
        model=payload["chargePointModel"],
        serial_number=payload.get("chargePointSerialNumber") or payload.get("chargeBoxSerialNumber") or "",
        firmware_version=payload.get("firmwareVersion", ""),
        iccid=payload.get("iccid", ""),
        imsi=payload.get("imsi", ""),
        meter_type=payload.get("meterType", ""),
        meter_serial_number=payload.get("meterSerialNumber", ""),
    )


def status_report(payload: dict[str, Any], received_at: datetime) -> ConnectorStatusReport:
    connector_id = wire_id(payload["connectorId"], "connectorId")
    timestamp = payload.get("timestamp")
    return ConnectorStatusReport(
        evse_id=connector_id or None,
        connector_id=1 if connector_id else None,
        status=payload["status"],
        error_code="" if payload["errorCode"] == "NoError" else payload["errorCode"],
        info=text(payload.get("info"), 255),
        vendor_id=text(payload.get("vendorId"), 255),
        vendor_error_code=text(payload.get("vendorErrorCode"), 50),
        occurred_at=charger_time(timestamp, "timestamp", received_at)[0] if timestamp else received_at,
        received_at=received_at,
    )


# 1.6 AuthorizationStatus. Richer answers (2.0.1 NotAtThisLocation for a token restricted to other sites)
# are Invalid in 1.6.
AUTHORIZATION_STATUSES = frozenset({"Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"})


def id_tag_info(token: TokenInfo) -> dict[str, Any]:
    info: dict[str, Any] = {"status": token.status if token.status in AUTHORIZATION_STATUSES else "Invalid"}
    if token.expires_at is not None:
        info["expiryDate"] = format_datetime(token.expires_at)
    if token.group_value:
        info["parentIdTag"] = token.group_value[:20]
    return info


def samples(meter_values: list[dict[str, Any]], received_at: datetime) -> list[Sample]:
    result = []
    window = timestamp_window(received_at)
    for meter_value in meter_values:
        timestamp, raw_time = charger_time(
            meter_value["timestamp"], "meterValue.timestamp", received_at, window
        )
        for sampled in meter_value["sampledValue"]:
            raw = sampled["value"]
            signed = sampled.get("format") == "SignedData"
            result.append(
                Sample(
                    timestamp=timestamp,
                    value=None if signed else ranges.sampled_value(raw),
                    measurand=sampled.get("measurand", "Energy.Active.Import.Register"),
                    phase=sampled.get("phase", ""),
                    location=sampled.get("location", ""),
                    unit=sampled.get("unit", "Wh"),
                    context=sampled.get("context", "Sample.Periodic"),
                    signed_data=raw if signed else "",
                    charger_timestamp=raw_time,
                )
            )
    return result


def start_request(payload: dict[str, Any], *, station_id: int, received_at: datetime) -> StartRequest:
    connector_id = payload["connectorId"]
    if connector_id < 1:
        raise OcppError(ErrorKind.PROPERTY, "connectorId: a transaction needs a connector > 0")
    started_at, raw_time = charger_time(payload["timestamp"], "timestamp", received_at)
    return StartRequest(
        station_id=station_id,
        evse_id=connector_id,
        connector_id=1,
        id_tag=payload["idTag"],
        meter_start_wh=payload["meterStart"],
        started_at=started_at,
        received_at=received_at,
        reservation_id=payload.get("reservationId"),
        charger_started_at=raw_time,
    )


def stop_request(payload: dict[str, Any], *, station_id: int, received_at: datetime) -> StopRequest:
    stopped_at, raw_time = charger_time(payload["timestamp"], "timestamp", received_at)
    return StopRequest(
        station_id=station_id,
        transaction_id=str(payload["transactionId"]),
        meter_stop_wh=payload["meterStop"],
        stopped_at=stopped_at,
        received_at=received_at,
        reason=payload.get("reason", "Local"),
        id_tag=payload.get("idTag", ""),
        samples=tuple(samples(payload.get("transactionData", []), received_at)),
        charger_stopped_at=raw_time,
    )
