"""OCPP 2.0.1 charging-station-initiated messages: mapper -> one service call in a thread -> mapper -> result.

Messages the platform cannot act on yet (ISO 15118 certificates until the Plug&Charge handlers are wired, EV
charging needs) are recorded and answered with the spec's refusal, never dropped and never a crash.
"""

from ocpp.v201.enums import Action

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
    transaction_events_writer,
)
from cpms.ocpp.errors import V201_CODES
from cpms.ocpp.mappers import parse_datetime, wire_id
from cpms.ocpp.v201 import mappers, plug_and_charge
from sessions.services.ingest import (
    MeterValuesItem,
    transaction_event_is_simple,
    transaction_event_record_one,
)
from sessions.services.reservations import reservation_status_update
from sessions.services.transactions import id_token_authorize
from stations.enums import StationEventKind
from stations.services.certificates import certificate_signing_requested
from stations.services.device_model import device_variables_record


async def authorize(req: Request) -> dict:
    token = await run_db(
        id_token_authorize,
        organisation_id=req.station.organisation_id,
        value=req.payload["idToken"]["idToken"],
        station_id=req.station.station_id,
    )
    # A partner's driver may need its eMSP's word (OCPI real-time authorisation); other tokens return at once.
    token = await roaming_token_authorize(
        token,
        organisation_id=req.station.organisation_id,
        value=req.payload["idToken"]["idToken"],
        station_id=req.station.station_id,
        ocpp_type=req.payload["idToken"]["type"],
    )
    return {"idTokenInfo": mappers.id_token_info(token)}


async def transaction_event(req: Request) -> dict:
    request = mappers.transaction_event(
        req.payload, station_id=req.station.station_id, received_at=req.received_at
    )
    if transaction_event_is_simple(request):
        result = await transaction_events_writer.submit((request, req.station.organisation_id))
    else:
        # Started, Ended, tokens, offline events: the full service, in parallel with other connections' rather
        # than one after another inside the batch writer.
        result = await run_db(
            transaction_event_record_one, request=request, organisation_id=req.station.organisation_id
        )
    applied = await effects.apply(result.outcomes, station=req.station, version=req.version)
    answer: dict = {}
    # TransactionEventResponse.idTokenInfo "is required when the transactionEventRequest contained an idToken"
    # and only then (E01/E02: cable plugged in first, or a remote start whose token comes in a later event):
    # an idTokenInfo Unknown for an event without a token makes some chargers stop the transaction.
    if "idToken" in req.payload and result.token is not None:
        answer["idTokenInfo"] = mappers.id_token_info(result.token)
    if applied.total_cost is not None:
        # I03 (E06): the final total cost of an Ended event, tax included, in the session's currency, read
        # after the commit above (a redelivered Ended gets it again: effects.FinalCost). Sent whatever the
        # station's device model says about TariffCostCtrlr: the field is optional and a station that shows
        # no costs ignores it, while leaving it out tells a station that does that the charge "was NOT free"
        # (TransactionEventResponse.totalCost), and the device model we hold may simply not have been read yet.
        answer["totalCost"] = applied.total_cost
    return answer


async def meter_values(req: Request) -> dict:
    # 2.0.1 MeterValues carry no transaction id: values inside transactions come in TransactionEvent.
    await meter_values_writer.submit(
        MeterValuesItem(
            station_id=req.station.station_id,
            evse_id=wire_id(req.payload["evseId"], "evseId") or None,
            transaction_id=None,
            samples=tuple(mappers.samples(req.payload["meterValue"], req.received_at)),
            received_at=req.received_at,
        )
    )
    return {}


async def notify_report(req: Request) -> dict:
    await run_db(
        device_variables_record,
        station_id=req.station.station_id,
        reports=mappers.variable_reports(req.payload.get("reportData", [])),
        reported_at=parse_datetime(req.payload["generatedAt"], "generatedAt"),
    )
    return {}


async def reservation_status_updated(req: Request) -> dict:
    """H05: the station dropped a reservation (Expired / Removed): kept as a station event, and the
    reservation, if it is ours and still open, follows."""
    await run_db(
        reservation_status_update,
        station_id=req.station.station_id,
        reservation_id=req.payload["reservationId"],
        status=req.payload["reservationUpdateStatus"],
        detail=dict(req.payload),
        received_at=req.received_at,
    )
    return {}


async def sign_certificate(req: Request) -> dict:
    """A02/A03: the station's CSR, signed by the CA of its certificateType (absent: a
    ChargingStationCertificate). Answered at once; CertificateSigned follows from the outbox
    once this answer is out. Why a request was refused is in the station's certificate_request event."""
    outcome = await run_db(
        certificate_signing_requested,
        station_id=req.station.station_id,
        csr_pem=req.payload["csr"],
        certificate_type=req.payload.get("certificateType") or "ChargingStationCertificate",
        received_at=req.received_at,
    )
    return {"status": "Accepted" if outcome.accepted else "Rejected"}


class V201ChargePoint(ChargePoint):
    version = "2.0.1"
    error_codes = V201_CODES
    known_actions = frozenset(action.value for action in Action)
    handlers = {
        "BootNotification": boot_notification(mappers.station_info),
        "Heartbeat": heartbeat,
        "StatusNotification": status_notification(mappers.status_report),
        "Authorize": plug_and_charge.authorize(fallback=authorize),
        "TransactionEvent": transaction_event,
        "MeterValues": meter_values,
        "NotifyReport": notify_report,
        "SecurityEventNotification": security_event_notification,
        "NotifyEvent": recorded(StationEventKind.NOTIFY_EVENT),
        "NotifyMonitoringReport": recorded(StationEventKind.MONITORING_REPORT),
        "LogStatusNotification": recorded(StationEventKind.LOG_STATUS, status_field="diagnostics_status"),
        "FirmwareStatusNotification": recorded(
            StationEventKind.FIRMWARE_STATUS, status_field="firmware_status"
        ),
        "PublishFirmwareStatusNotification": recorded(StationEventKind.PUBLISH_FIRMWARE_STATUS),
        # No vendor extensions are defined yet (P01.FR.06: unknown vendorId -> UnknownVendorId).
        "DataTransfer": recorded(StationEventKind.DATA_TRANSFER, {"status": "UnknownVendorId"}),
        "ReservationStatusUpdate": reservation_status_updated,
        "NotifyChargingLimit": recorded(StationEventKind.CHARGING_LIMIT),
        "ClearedChargingLimit": recorded(StationEventKind.CHARGING_LIMIT),
        "ReportChargingProfiles": recorded(StationEventKind.CHARGING_PROFILES_REPORT),
        # Smart charging schedules for ISO 15118 EVs are not computed yet: refuse, so the EV uses its own.
        "NotifyEVChargingNeeds": recorded(StationEventKind.EV_CHARGING_NEEDS, {"status": "Rejected"}),
        "NotifyEVChargingSchedule": recorded(StationEventKind.EV_CHARGING_SCHEDULE, {"status": "Accepted"}),
        "NotifyDisplayMessages": recorded(StationEventKind.DISPLAY_MESSAGES),
        "NotifyCustomerInformation": recorded(StationEventKind.CUSTOMER_INFORMATION),
        "SignCertificate": sign_certificate,
        # ISO 15118 Plug & Charge is not built yet: requests are kept and refused so the station keeps its
        # current certificates.
        "Get15118EVCertificate": plug_and_charge.get_15118_ev_certificate,
        "GetCertificateStatus": plug_and_charge.get_certificate_status,
    }
