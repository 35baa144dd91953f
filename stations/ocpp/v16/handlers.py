"""OCPP 1.6J charge-point-initiated messages: mapper -> one service call in a thread -> mapper -> result."""

from ocpp.v16.enums import Action

from sessions.services.transactions import (
    id_token_authorize,
    meter_values_record,
    session_start,
    session_stop,
)
from stations.enums import ConnectorStatus, SecurityEventKind, StationEventKind
from stations.ocpp.chargepoint import ChargePoint, Request, run_db
from stations.ocpp.errors import V16_CODES
from stations.ocpp.mappers import format_datetime, parse_datetime, text
from stations.ocpp.v16 import mappers
from stations.services.ocpp import (
    connector_status_update,
    security_event_record,
    station_boot,
    station_event_record,
    station_seen,
)


async def boot_notification(req: Request) -> dict:
    result = await run_db(
        station_boot,
        station_id=req.station.station_id,
        info=mappers.station_info(req.payload),
        received_at=req.received_at,
    )
    req.station.registration_status = result.status
    return {
        "status": result.status,
        "currentTime": format_datetime(result.current_time),
        "interval": result.interval_s,
    }


async def heartbeat(req: Request) -> dict:
    await run_db(station_seen, station_id=req.station.station_id, at=req.received_at)
    return {"currentTime": format_datetime(req.received_at)}


async def status_notification(req: Request) -> dict:
    report = mappers.status_report(req.payload, req.received_at)
    if report.status not in ConnectorStatus.values:  # the schema's enum already limits it; belt and braces
        report = report.__class__(**{**report.__dict__, "status": ConnectorStatus.UNKNOWN})
    await run_db(connector_status_update, station_id=req.station.station_id, report=report)
    return {}


async def authorize(req: Request) -> dict:
    token = await run_db(
        id_token_authorize, organisation_id=req.station.organisation_id, value=req.payload["idTag"]
    )
    return {"idTagInfo": mappers.id_tag_info(token)}


async def start_transaction(req: Request) -> dict:
    request = mappers.start_request(
        req.payload, station_id=req.station.station_id, received_at=req.received_at
    )
    result = await run_db(session_start, request=request, organisation_id=req.station.organisation_id)
    return {"transactionId": int(result.transaction_id), "idTagInfo": mappers.id_tag_info(result.token)}


async def stop_transaction(req: Request) -> dict:
    request = mappers.stop_request(
        req.payload, station_id=req.station.station_id, received_at=req.received_at
    )
    result = await run_db(session_stop, request=request, organisation_id=req.station.organisation_id)
    return {"idTagInfo": mappers.id_tag_info(result.token)} if result.token is not None else {}


async def meter_values(req: Request) -> dict:
    transaction_id = req.payload.get("transactionId")
    connector_id = req.payload["connectorId"]
    await run_db(
        meter_values_record,
        station_id=req.station.station_id,
        evse_id=connector_id or None,
        transaction_id=str(transaction_id) if transaction_id is not None else None,
        samples=mappers.samples(req.payload["meterValue"]),
        received_at=req.received_at,
    )
    return {}


async def data_transfer(req: Request) -> dict:
    await _event(req, StationEventKind.DATA_TRANSFER, dict(req.payload))
    # We define no vendor extensions yet; the spec's answer for an unknown vendor (1.6 section 6.18).
    return {"status": "UnknownVendorId"}


async def diagnostics_status_notification(req: Request) -> dict:
    await _event(
        req,
        StationEventKind.DIAGNOSTICS_STATUS,
        dict(req.payload),
        "diagnostics_status",
        req.payload["status"],
    )
    return {}


async def firmware_status_notification(req: Request) -> dict:
    await _event(
        req, StationEventKind.FIRMWARE_STATUS, dict(req.payload), "firmware_status", req.payload["status"]
    )
    return {}


async def signed_firmware_status_notification(req: Request) -> dict:
    await _event(
        req, StationEventKind.FIRMWARE_STATUS, dict(req.payload), "firmware_status", req.payload["status"]
    )
    return {}


async def log_status_notification(req: Request) -> dict:
    await _event(
        req, StationEventKind.LOG_STATUS, dict(req.payload), "diagnostics_status", req.payload["status"]
    )
    return {}


async def security_event_notification(req: Request) -> dict:
    detail = f"{req.payload['type']} at {req.payload['timestamp']}: {text(req.payload.get('techInfo'), 255)}"
    await run_db(
        security_event_record,
        identity=req.station.identity,
        station_id=req.station.station_id,
        kind=SecurityEventKind.CHARGER_REPORTED,
        detail=detail,
    )
    return {}


async def sign_certificate(req: Request) -> dict:
    # Certificate handling (security profile 3) is not built yet: the request is kept and refused, so
    # the charger keeps its current certificate instead of waiting for one that will not come.
    await _event(req, StationEventKind.CERTIFICATE_REQUEST, {"csr": req.payload["csr"][:5500]})
    return {"status": "Rejected"}


async def _event(
    req: Request, kind: str, detail: dict, status_field: str | None = None, status: str = ""
) -> None:
    timestamp = req.payload.get("timestamp")
    await run_db(
        station_event_record,
        station_id=req.station.station_id,
        kind=kind,
        detail=detail,
        occurred_at=parse_datetime(timestamp, "timestamp") if timestamp else req.received_at,
        received_at=req.received_at,
        status_field=status_field,
        status=status,
    )


class V16ChargePoint(ChargePoint):
    version = "1.6"
    error_codes = V16_CODES
    known_actions = frozenset(action.value for action in Action)
    handlers = {
        "BootNotification": boot_notification,
        "Heartbeat": heartbeat,
        "StatusNotification": status_notification,
        "Authorize": authorize,
        "StartTransaction": start_transaction,
        "StopTransaction": stop_transaction,
        "MeterValues": meter_values,
        "DataTransfer": data_transfer,
        "DiagnosticsStatusNotification": diagnostics_status_notification,
        "FirmwareStatusNotification": firmware_status_notification,
        # OCPP 1.6 Security Whitepaper (edition 3) messages from the charge point.
        "SecurityEventNotification": security_event_notification,
        "SignedFirmwareStatusNotification": signed_firmware_status_notification,
        "LogStatusNotification": log_status_notification,
        "SignCertificate": sign_certificate,
    }
