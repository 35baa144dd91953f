"""OCPP 1.6J charge-point-initiated messages: mapper -> one service call in a thread -> mapper -> result."""

from ocpp.v16.enums import Action

from cpms.ocpi.services.realtime import roaming_token_authorize
from cpms.ocpp import effects
from cpms.ocpp.chargepoint import ChargePoint, Request, run_db
from cpms.ocpp.common import (
    boot_notification,
    heartbeat,
    meter_values_writer,
    recorded,
    security_event_notification,
    status_notification,
)
from cpms.ocpp.errors import V16_CODES
from cpms.ocpp.mappers import wire_id
from cpms.ocpp.v16 import mappers, plug_and_charge
from sessions.services.ingest import MeterValuesItem
from sessions.services.transactions import id_token_authorize, session_start, session_stop
from stations.enums import StationEventKind
from stations.services.certificates import certificate_signing_requested


async def authorize(req: Request) -> dict:
    token = await run_db(
        id_token_authorize,
        organisation_id=req.station.organisation_id,
        value=req.payload["idTag"],
        station_id=req.station.station_id,
    )
    # A partner's driver may need its eMSP's word (OCPI real-time authorisation); other tokens return at once.
    token = await roaming_token_authorize(
        token,
        organisation_id=req.station.organisation_id,
        value=req.payload["idTag"],
        station_id=req.station.station_id,
    )
    return {"idTagInfo": mappers.id_tag_info(token)}


async def start_transaction(req: Request) -> dict:
    request = mappers.start_request(
        req.payload, station_id=req.station.station_id, received_at=req.received_at
    )
    result = await run_db(session_start, request=request, organisation_id=req.station.organisation_id)
    await effects.apply(result.outcomes, station=req.station, version=req.version)
    return {"transactionId": int(result.transaction_id), "idTagInfo": mappers.id_tag_info(result.token)}


async def stop_transaction(req: Request) -> dict:
    request = mappers.stop_request(
        req.payload, station_id=req.station.station_id, received_at=req.received_at
    )
    result = await run_db(session_stop, request=request, organisation_id=req.station.organisation_id)
    await effects.apply(result.outcomes, station=req.station, version=req.version)
    return {"idTagInfo": mappers.id_tag_info(result.token)} if result.token is not None else {}


async def sign_certificate(req: Request) -> dict:
    """Security whitepaper A02: the charge point's CSR, signed by the organisation's charging-station CA.
    Answered at once; CertificateSigned follows from the outbox once this answer is out."""
    outcome = await run_db(
        certificate_signing_requested,
        station_id=req.station.station_id,
        csr_pem=req.payload["csr"],
        certificate_type="ChargingStationCertificate",
        received_at=req.received_at,
    )
    return {"status": "Accepted" if outcome.accepted else "Rejected"}


async def meter_values(req: Request) -> dict:
    transaction_id = req.payload.get("transactionId")
    connector_id = wire_id(req.payload["connectorId"], "connectorId")
    await meter_values_writer.submit(
        MeterValuesItem(
            station_id=req.station.station_id,
            evse_id=connector_id or None,
            transaction_id=str(transaction_id) if transaction_id is not None else None,
            samples=tuple(mappers.samples(req.payload["meterValue"], req.received_at)),
            received_at=req.received_at,
        )
    )
    return {}


class V16ChargePoint(ChargePoint):
    version = "1.6"
    error_codes = V16_CODES
    known_actions = frozenset(action.value for action in Action)
    handlers = {
        "BootNotification": boot_notification(mappers.station_info),
        "Heartbeat": heartbeat,
        "StatusNotification": status_notification(mappers.status_report),
        "Authorize": authorize,
        "StartTransaction": start_transaction,
        "StopTransaction": stop_transaction,
        "MeterValues": meter_values,
        # We define no vendor extensions yet: the spec's answer for an unknown vendor (1.6 section 6.18).
        "DataTransfer": plug_and_charge.data_transfer(
            fallback=recorded(StationEventKind.DATA_TRANSFER, {"status": "UnknownVendorId"})
        ),
        "DiagnosticsStatusNotification": recorded(
            StationEventKind.DIAGNOSTICS_STATUS, status_field="diagnostics_status"
        ),
        "FirmwareStatusNotification": recorded(
            StationEventKind.FIRMWARE_STATUS, status_field="firmware_status"
        ),
        # OCPP 1.6 Security Whitepaper (edition 3) messages from the charge point.
        "SecurityEventNotification": security_event_notification,
        "SignedFirmwareStatusNotification": recorded(
            StationEventKind.FIRMWARE_STATUS, status_field="firmware_status"
        ),
        "LogStatusNotification": recorded(StationEventKind.LOG_STATUS, status_field="diagnostics_status"),
        "SignCertificate": sign_certificate,
    }
