"""ISO 15118 Plug&Charge for OCPP 1.6 chargers: the OCA application note "Using ISO 15118 Plug & Charge with
OCPP 1.6" (v1.0, 2020-09-16) carries the 2.0.1 messages in DataTransfer: vendorId
`org.openchargealliance.iso15118pnc`, messageId the 2.0.1 action, `data` the 2.0.1 request as a JSON string;
the answer is DataTransfer.conf Accepted with the 2.0.1 response as a JSON string in `data`.

Taken from a charger here: Authorize, GetCertificateStatus, Get15118EVCertificate (the same services as
2.0.1: sessions.services.plug_and_charge). SignCertificate for the V2G certificate goes with the charging
station certificates (not here): UnknownMessageId until it is wired. Another vendorId goes to `fallback`.

A `data` that is not JSON, not the message's 2.0.1 schema, or whose fields do not fit (unreadable PEM,
garbage EXI) is answered Rejected, the reason in `data`: nothing was asked or stored for it.
"""

import orjson

from cpms.errors import ValidationFailed
from cpms.ocpp.chargepoint import Handler, Request, run_db
from cpms.ocpp.errors import OcppError
from cpms.ocpp.v201 import mappers as v201_mappers
from cpms.ocpp.v201.plug_and_charge import (
    EXI_RESPONSE_MAX,
    OCSP_REASON_CODE,
    OCSP_RESULT_MAX,
    REASON_CODE,
)
from cpms.ocpp_wire import schemas
from sessions.services.plug_and_charge import certificate_status_get, ev_certificate_get, pnc_authorize

PNC_VENDOR_ID = "org.openchargealliance.iso15118pnc"
# The three 2.0.1 requests wrapped whole stay far below this; anything longer is not one of them.
DATA_MAX_CHARS = 16 * 1024
# 1.6 AuthorizationStatus: an answer parsed as a 1.6 IdTagInfo (some implementations do) must not carry the
# 2.0.1-only values, so those become Invalid; the shape stays 2.0.1's IdTokenInfo (the note's messages).
V16_STATUSES = frozenset({"Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"})


def _rejected(reason: str) -> dict:
    return {"status": "Rejected", "data": reason[:500]}


def _accepted(answer: dict) -> dict:
    return {"status": "Accepted", "data": orjson.dumps(answer).decode()}


def _inner(data: object, action: str) -> dict:
    """The 2.0.1 request in `data`, checked against its schema; ValidationFailed otherwise."""
    if not isinstance(data, str) or not data:
        raise ValidationFailed(f"data must hold the {action} request as a JSON string.")
    if len(data) > DATA_MAX_CHARS:
        raise ValidationFailed(f"data is longer than {DATA_MAX_CHARS} characters.")
    try:
        inner = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed("data is not JSON.") from exc
    if not isinstance(inner, dict):
        raise ValidationFailed(f"data must be a JSON object ({action} request).")
    if action == "Authorize" and isinstance(inner.get("idToken"), str):
        # Some 1.6 implementations send the eMAID as a bare identifier string.
        inner = {**inner, "idToken": {"idToken": inner["idToken"], "type": "eMAID"}}
    try:
        schemas.validate("2.0.1", schemas.request_schema("2.0.1", action), inner)
    except OcppError as exc:
        raise ValidationFailed(f"{action}: {exc.description}") from exc
    return inner


async def _authorize(req: Request, inner: dict) -> dict:
    result = await run_db(
        pnc_authorize,
        organisation_id=req.station.organisation_id,
        station_id=req.station.station_id,
        emaid=inner["idToken"]["idToken"],
        certificate=inner.get("certificate"),
        hash_data=inner.get("iso15118CertificateHashData"),
    )
    info = v201_mappers.id_token_info(result.token)
    if info["status"] not in V16_STATUSES:
        info["status"] = "Invalid"
    answer: dict = {"idTokenInfo": info}
    if result.certificate_status is not None:
        answer["certificateStatus"] = result.certificate_status
    return answer


async def _get_certificate_status(req: Request, inner: dict) -> dict:
    result = await run_db(
        certificate_status_get,
        organisation_id=req.station.organisation_id,
        ocsp_request_data=inner["ocspRequestData"],
    )
    if result.status == "Accepted" and len(result.ocsp_result_b64) <= OCSP_RESULT_MAX:
        return {"status": "Accepted", "ocspResult": result.ocsp_result_b64}
    reason = result.reason or "The OCSP answer is longer than ocspResult allows."
    return {
        "status": "Failed",
        "statusInfo": {"reasonCode": OCSP_REASON_CODE, "additionalInfo": reason[:512]},
    }


async def _get_15118_ev_certificate(req: Request, inner: dict) -> dict:
    result = await run_db(
        ev_certificate_get,
        organisation_id=req.station.organisation_id,
        station_id=req.station.station_id,
        iso15118_schema_version=inner["iso15118SchemaVersion"],
        action=inner["action"],
        exi_request=inner["exiRequest"],
    )
    if result.status == "Accepted" and len(result.exi_response_b64) <= EXI_RESPONSE_MAX:
        return {"status": "Accepted", "exiResponse": result.exi_response_b64}
    reason = result.reason or "The provider's answer is longer than exiResponse allows."
    return {
        "status": "Failed",
        "exiResponse": "",
        "statusInfo": {"reasonCode": REASON_CODE, "additionalInfo": reason[:512]},
    }


MESSAGES = {
    "Authorize": _authorize,
    "GetCertificateStatus": _get_certificate_status,
    "Get15118EVCertificate": _get_15118_ev_certificate,
}


def data_transfer(fallback: Handler) -> Handler:
    """DataTransfer: the application note's messages are answered here, any other vendorId by `fallback`."""

    async def handler(req: Request) -> dict:
        if req.payload["vendorId"] != PNC_VENDOR_ID:
            return await fallback(req)
        message = MESSAGES.get(req.payload.get("messageId", ""))
        if message is None:
            return {"status": "UnknownMessageId"}
        try:
            inner = _inner(req.payload.get("data"), req.payload["messageId"])
            return _accepted(await message(req, inner))
        except ValidationFailed as exc:
            return _rejected(exc.message)

    handler.__name__ = "data_transfer_with_pnc"
    return handler
