"""OCPP 2.0.1 ISO 15118 Plug&Charge messages from a charging station (C07 Authorize with a contract, M06
GetCertificateStatus, M01/M02 Get15118EVCertificate): parse, one service call in a thread, answer.

Input that does not fit its field (unreadable PEM, hashes that are not hex, EXI that is not base64) is
answered with a PropertyConstraintViolation naming the field: nothing was asked or stored for it.
"""

from cpms.errors import ValidationFailed
from cpms.ocpp.chargepoint import Handler, Request, run_db
from cpms.ocpp.errors import MAX_DESCRIPTION, ErrorKind, OcppError
from cpms.ocpp.v201 import mappers
from sessions.services.plug_and_charge import (
    certificate_status_get,
    ev_certificate_get,
    pnc_authorize,
)

EMAID = "eMAID"
# StatusInfoType: reasonCode at most 20 characters, additionalInfo at most 512.
REASON_CODE = "ProviderFailed"
OCSP_REASON_CODE = "OcspUnavailable"
OCSP_RESULT_MAX = 5500  # GetCertificateStatusResponse.ocspResult maxLength
EXI_RESPONSE_MAX = 7500  # Get15118EVCertificateResponse.exiResponse maxLength


def is_contract_authorize(payload: dict) -> bool:
    """An Authorize that carries a contract to check: an eMAID with its certificate or OCSP hash data. An
    eMAID without either (the station checked the contract itself) is an ordinary token."""
    return payload["idToken"].get("type") == EMAID and (
        "certificate" in payload or "iso15118CertificateHashData" in payload
    )


def _property_error(exc: ValidationFailed) -> OcppError:
    return OcppError(ErrorKind.PROPERTY, exc.message[:MAX_DESCRIPTION])


async def contract_authorize(req: Request) -> dict:
    try:
        result = await run_db(
            pnc_authorize,
            organisation_id=req.station.organisation_id,
            station_id=req.station.station_id,
            emaid=req.payload["idToken"]["idToken"],
            certificate=req.payload.get("certificate"),
            hash_data=req.payload.get("iso15118CertificateHashData"),
        )
    except ValidationFailed as exc:
        raise _property_error(exc) from exc
    answer: dict = {"idTokenInfo": mappers.id_token_info(result.token)}
    if result.certificate_status is not None:
        answer["certificateStatus"] = result.certificate_status
    return answer


def authorize(fallback: Handler) -> Handler:
    """Authorize: a contract (is_contract_authorize) is checked here; every other token goes to
    `fallback` (the ordinary Authorize handler, roaming included)."""

    async def handler(req: Request) -> dict:
        if is_contract_authorize(req.payload):
            return await contract_authorize(req)
        return await fallback(req)

    handler.__name__ = "authorize_with_contracts"
    return handler


async def get_certificate_status(req: Request) -> dict:
    try:
        result = await run_db(
            certificate_status_get,
            organisation_id=req.station.organisation_id,
            ocsp_request_data=req.payload["ocspRequestData"],
        )
    except ValidationFailed as exc:
        raise _property_error(exc) from exc
    if result.status == "Accepted" and len(result.ocsp_result_b64) <= OCSP_RESULT_MAX:
        return {"status": "Accepted", "ocspResult": result.ocsp_result_b64}
    reason = result.reason or "The OCSP answer is longer than ocspResult allows."
    return {
        "status": "Failed",
        "statusInfo": {"reasonCode": OCSP_REASON_CODE, "additionalInfo": reason[:512]},
    }


async def get_15118_ev_certificate(req: Request) -> dict:
    try:
        result = await run_db(
            ev_certificate_get,
            organisation_id=req.station.organisation_id,
            station_id=req.station.station_id,
            iso15118_schema_version=req.payload["iso15118SchemaVersion"],
            action=req.payload["action"],
            exi_request=req.payload["exiRequest"],
        )
    except ValidationFailed as exc:
        raise _property_error(exc) from exc
    if result.status == "Accepted" and len(result.exi_response_b64) <= EXI_RESPONSE_MAX:
        return {"status": "Accepted", "exiResponse": result.exi_response_b64}
    reason = result.reason or "The provider's answer is longer than exiResponse allows."
    # exiResponse is required even when Failed (Get15118EVCertificateResponse): empty.
    return {
        "status": "Failed",
        "exiResponse": "",
        "statusInfo": {"reasonCode": REASON_CODE, "additionalInfo": reason[:512]},
    }
