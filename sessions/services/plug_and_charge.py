"""ISO 15118 Plug&Charge as a CSMS does it (OCPP 2.0.1 C07, M06, M03/M04; the same through 1.6 DataTransfer).

- `pnc_authorize`: a car's contract (its eMAID, with the contract certificate chain or its OCSP hash data) is
  checked: the chain against the organisation's mobility-operator roots (CertificateAuthority purpose mo_root,
  and v2g), validity, then revocation by OCSP; then the eMAID as an id token of the organisation, by the
  usual rules (sessions.services.transactions.id_token_authorize).
- `certificate_status_get`: OCSP on the station's behalf (GetCertificateStatus).
- `ev_certificate_get`: a car's contract-certificate install/update through the provider
  (sessions.contract_certificates).

OCSP answers are kept in OcspResponseCache until their nextUpdate: a certificate is asked about at most once
per validity, whichever flow asks. No database transaction is held while a responder is asked.

Input the station passes on from the car (PEM, hashes, base64 EXI) is checked before anything is asked or
stored; what does not fit its field raises ValidationFailed (the OCPP layer answers it as a
PropertyConstraintViolation, or a Rejected DataTransfer in 1.6).
"""

import base64
import itertools
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cpms.errors import ValidationFailed
from sessions.contract_certificates import (
    CERTIFICATE_ACTIONS,
    ContractCertificateError,
    contract_certificate_provider,
    exi_request_decode,
)
from sessions.enums import IdTokenStatus
from sessions.services.transactions import id_token_authorize
from sessions.types import TokenInfo
from stations.enums import CertificateAuthorityPurpose, StationEventKind
from stations.models import CertificateAuthority, OcspResponseCache, StationEvent

logger = logging.getLogger(__name__)

# AuthorizeCertificateStatusEnumType (OCPP 2.0.1).
ACCEPTED = "Accepted"
SIGNATURE_ERROR = "SignatureError"
CERTIFICATE_EXPIRED = "CertificateExpired"
CERTIFICATE_REVOKED = "CertificateRevoked"
NO_CERTIFICATE_AVAILABLE = "NoCertificateAvailable"
CERT_CHAIN_ERROR = "CertChainError"
CONTRACT_CANCELLED = "ContractCancelled"

HASH_ALGORITHMS: dict[str, type[hashes.SHA256] | type[hashes.SHA384] | type[hashes.SHA512]] = {
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
}
DIGEST_HEX_DIGITS = {"SHA256": 64, "SHA384": 96, "SHA512": 128}
# AuthorizeRequest.certificate is at most 5500 characters (2.0.1 schema); the 1.6 DataTransfer data is a
# free string, so the same bound is applied here for both. A contract chain is the leaf and at most two
# sub-CAs (ISO 15118-2 PKI); a root sent along is ignored.
CERTIFICATE_MAX_CHARS = 5500
CHAIN_MAX_CERTIFICATES = 4
HASH_DATA_MAX_ENTRIES = 4  # iso15118CertificateHashData maxItems
RESPONDER_URL_MAX = 512  # OCSPRequestDataType.responderURL maxLength
OCSP_RESPONSE_MAX_BYTES = 64 * 1024
OCSP_TIMEOUT_S = 10.0
# Without a nextUpdate (RFC 6960 2.4: "newer information is always available") an answer is kept this long,
# so a burst of requests for one car does not become a burst at the responder.
OCSP_NO_NEXT_UPDATE_KEEP_S = 300
_HEX = re.compile(r"^[0-9A-Fa-f]+$")
_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----\s+.+?\s+-----END CERTIFICATE-----", re.DOTALL)
TRUSTED_PURPOSES = (CertificateAuthorityPurpose.MO_ROOT, CertificateAuthorityPurpose.V2G)


@dataclass(frozen=True, slots=True)
class OcspRequestData:
    """OCPP OCSPRequestDataType: which certificate (issuer name and key hashes, serial) and who to ask."""

    hash_algorithm: str
    issuer_name_hash: str  # hex, lower case
    issuer_key_hash: str
    serial_number: str  # hex, upper case, no leading zeroes
    responder_url: str


@dataclass(frozen=True, slots=True)
class OcspOutcome:
    """One OCSP answer: `status` good / revoked / unknown, or "" when none could be had (then `error`)."""

    status: str
    response_der_b64: str = ""
    error: str = ""
    signature_failed: bool = False


@dataclass(frozen=True, slots=True)
class PncAuthorizeResult:
    token: TokenInfo
    # AuthorizeCertificateStatusEnumType, or None when the request carried no certificate data.
    certificate_status: str | None


@dataclass(frozen=True, slots=True)
class CertificateStatusResult:
    status: str  # GetCertificateStatusEnumType: Accepted / Failed
    ocsp_result_b64: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class EvCertificateResult:
    status: str  # Iso15118EVCertificateStatusEnumType: Accepted / Failed
    exi_response_b64: str = ""
    reason: str = ""


# --- input ----------------------------------------------------------------------------------------
def ocsp_request_data_parse(raw: object, *, field: str = "ocspRequestData") -> OcspRequestData:
    """An OCSPRequestDataType as the station sent it, checked: a known hash algorithm, hashes of that
    algorithm's length in hex, a hex serial number, an http(s) responder URL."""
    if not isinstance(raw, dict):
        raise ValidationFailed(f"{field} must be an object.")
    algorithm = raw.get("hashAlgorithm")
    if algorithm not in HASH_ALGORITHMS:
        raise ValidationFailed(f"{field}.hashAlgorithm must be one of {', '.join(HASH_ALGORITHMS)}.")
    digest_hex = DIGEST_HEX_DIGITS[algorithm]
    values = {}
    for name in ("issuerNameHash", "issuerKeyHash"):
        value = raw.get(name)
        if not isinstance(value, str) or len(value) != digest_hex or not _HEX.match(value):
            raise ValidationFailed(
                f"{field}.{name} must be the {algorithm} hash in hex ({digest_hex} digits)."
            )
        values[name] = value.lower()
    serial = raw.get("serialNumber")
    if not isinstance(serial, str) or not 1 <= len(serial) <= 40 or not _HEX.match(serial):
        raise ValidationFailed(f"{field}.serialNumber must be the serial number in hex (1-40 digits).")
    url = raw.get("responderURL")
    if not isinstance(url, str) or not url or len(url) > RESPONDER_URL_MAX:
        raise ValidationFailed(
            f"{field}.responderURL must be a URL of at most {RESPONDER_URL_MAX} characters."
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed(f"{field}.responderURL must be an http or https URL.")
    return OcspRequestData(
        hash_algorithm=algorithm,
        issuer_name_hash=values["issuerNameHash"],
        issuer_key_hash=values["issuerKeyHash"],
        serial_number=format(int(serial, 16), "X"),
        responder_url=url,
    )


def certificate_chain_parse(pem: object, *, field: str = "certificate") -> list[x509.Certificate]:
    """The certificates of a PEM chain, leaf first; ValidationFailed when it is too long or unreadable."""
    if not isinstance(pem, str) or not pem.strip():
        raise ValidationFailed(f"{field} is empty.")
    if len(pem) > CERTIFICATE_MAX_CHARS:
        raise ValidationFailed(f"{field} is longer than {CERTIFICATE_MAX_CHARS} characters.")
    blocks = _PEM_BLOCK.findall(pem)
    if not blocks:
        raise ValidationFailed(f"{field} holds no PEM certificate.")
    if len(blocks) > CHAIN_MAX_CERTIFICATES:
        raise ValidationFailed(f"{field} holds more than {CHAIN_MAX_CERTIFICATES} certificates.")
    try:
        return [x509.load_pem_x509_certificate(block.encode()) for block in blocks]
    except ValueError as exc:
        raise ValidationFailed(f"{field} is not a readable X.509 certificate.") from exc


def _hash_data_parse(raw: object) -> list[OcspRequestData]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not 1 <= len(raw) <= HASH_DATA_MAX_ENTRIES:
        raise ValidationFailed(f"iso15118CertificateHashData must list 1-{HASH_DATA_MAX_ENTRIES} entries.")
    return [
        ocsp_request_data_parse(item, field=f"iso15118CertificateHashData[{index}]")
        for index, item in enumerate(raw)
    ]


# --- trust ----------------------------------------------------------------------------------------
def trust_anchors(organisation_id: int) -> list[x509.Certificate]:
    """The organisation's active mobility-operator (and V2G) roots: what a contract certificate must chain to."""
    anchors = []
    for pem in CertificateAuthority.objects.filter(
        organisation_id=organisation_id, purpose__in=TRUSTED_PURPOSES, active=True
    ).values_list("certificate_pem", flat=True):
        try:
            anchors.append(x509.load_pem_x509_certificate(pem.encode()))
        except ValueError:
            logger.warning("organisation %s: an unreadable CA certificate is ignored", organisation_id)
    return anchors


def _key_hash(certificate: x509.Certificate, algorithm: str) -> str:
    """Hash of the certificate's subjectPublicKey bits (RFC 6960 CertID.issuerKeyHash), through the OCSP
    request builder rather than by hand."""
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(certificate, certificate, HASH_ALGORITHMS[algorithm]())
        .build()
    )
    return request.issuer_key_hash.hex()


def _name_hash(certificate: x509.Certificate, algorithm: str) -> str:
    digest = hashes.Hash(HASH_ALGORITHMS[algorithm]())
    digest.update(certificate.subject.public_bytes())
    return digest.finalize().hex()


def _issuer_for(data: OcspRequestData, candidates: list[x509.Certificate]) -> x509.Certificate | None:
    for candidate in candidates:
        if (
            _name_hash(candidate, data.hash_algorithm) == data.issuer_name_hash
            and _key_hash(candidate, data.hash_algorithm) == data.issuer_key_hash
        ):
            return candidate
    return None


def _valid_at(certificate: x509.Certificate, now: datetime) -> bool:
    return certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc


def _chain_check(
    chain: list[x509.Certificate], anchors: list[x509.Certificate], now: datetime
) -> tuple[str, list[tuple[x509.Certificate, x509.Certificate]]]:
    """(certificate status, [(certificate, its issuer)] from the leaf up) for a chain sent leaf first.
    Accepted only when every link is signed by the next and the last is signed by a trust anchor."""
    if any(certificate.not_valid_after_utc < now for certificate in chain):
        return CERTIFICATE_EXPIRED, []
    if any(certificate.not_valid_before_utc > now for certificate in chain):
        return CERT_CHAIN_ERROR, []
    anchor_ders = {anchor.fingerprint(hashes.SHA256()) for anchor in anchors}
    # A root sent along is not trusted for being sent: only our anchors end a chain.
    path = [c for c in chain if c.fingerprint(hashes.SHA256()) not in anchor_ders]
    if not path:
        return CERT_CHAIN_ERROR, []
    links: list[tuple[x509.Certificate, x509.Certificate]] = []
    for certificate, issuer in itertools.pairwise(path):
        status = _signed_by(certificate, issuer)
        if status != ACCEPTED:
            return status, []
        links.append((certificate, issuer))
    top = path[-1]
    for anchor in anchors:
        if anchor.subject != top.issuer:
            continue
        status = _signed_by(top, anchor)
        if status == ACCEPTED:
            if not _valid_at(anchor, now):
                return CERTIFICATE_EXPIRED, []
            links.append((top, anchor))
            return ACCEPTED, links
        if status == SIGNATURE_ERROR:
            return SIGNATURE_ERROR, []
    return CERT_CHAIN_ERROR, []


def _signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> str:
    if certificate.issuer != issuer.subject:
        return CERT_CHAIN_ERROR
    try:
        certificate.verify_directly_issued_by(issuer)
    except InvalidSignature:
        return SIGNATURE_ERROR
    except (ValueError, TypeError):
        return CERT_CHAIN_ERROR
    return ACCEPTED


def _ocsp_url(certificate: x509.Certificate) -> str:
    try:
        access = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return ""
    for description in access:
        if description.access_method == AuthorityInformationAccessOID.OCSP and isinstance(
            description.access_location, x509.UniformResourceIdentifier
        ):
            return description.access_location.value
    return ""


def _emaid_of(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def emaid_normalise(emaid: str) -> str:
    """eMAIDs compare without their optional hyphens and case-insensitively (ISO 15118-2 Annex H)."""
    return emaid.replace("-", "").upper()


# --- OCSP -----------------------------------------------------------------------------------------
def _verify_response_signature(response: ocsp.OCSPResponse, issuer: x509.Certificate) -> bool:
    """RFC 6960 4.2.2.2: signed by the issuer itself or by a responder certificate the issuer signed for
    OCSP signing."""
    signer = issuer
    issuer_key_id = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest
    by_issuer = response.responder_name == issuer.subject or response.responder_key_hash == issuer_key_id
    if not by_issuer:
        delegated = None
        for candidate in response.certificates:
            if candidate.issuer != issuer.subject:
                continue
            try:
                candidate.verify_directly_issued_by(issuer)
                usage = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except (InvalidSignature, ValueError, TypeError, x509.ExtensionNotFound):
                continue
            if ExtendedKeyUsageOID.OCSP_SIGNING in usage:
                delegated = candidate
                break
        if delegated is None:
            return False
        signer = delegated
    public_key = signer.public_key()
    algorithm = response.signature_hash_algorithm
    if algorithm is None:
        return False
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(algorithm))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(), algorithm)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _status_name(status: ocsp.OCSPCertStatus) -> str:
    return {
        ocsp.OCSPCertStatus.GOOD: "good",
        ocsp.OCSPCertStatus.REVOKED: "revoked",
        ocsp.OCSPCertStatus.UNKNOWN: "unknown",
    }[status]


def _ocsp_fetch(data: OcspRequestData) -> bytes:
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(
            bytes.fromhex(data.issuer_name_hash),
            bytes.fromhex(data.issuer_key_hash),
            int(data.serial_number, 16),
            HASH_ALGORITHMS[data.hash_algorithm](),
        )
        .build()
    )
    body = request.public_bytes(Encoding.DER)
    timeout = getattr(settings, "PNC_OCSP_TIMEOUT_S", OCSP_TIMEOUT_S)
    headers = {"Content-Type": "application/ocsp-request"}
    with (
        httpx.Client(timeout=timeout, follow_redirects=False) as client,
        client.stream("POST", data.responder_url, content=body, headers=headers) as answer,
    ):
        if answer.status_code != 200:
            raise ValueError(f"the responder answered HTTP {answer.status_code}")
        received = bytearray()
        for chunk in answer.iter_bytes():
            received.extend(chunk)
            if len(received) > OCSP_RESPONSE_MAX_BYTES:
                raise ValueError("the responder's answer is too large")
    return bytes(received)


def ocsp_status(
    data: OcspRequestData, *, issuer: x509.Certificate | None, now: datetime | None = None
) -> OcspOutcome:
    """The OCSP status of one certificate: from the cache while its nextUpdate is ahead, else asked of the
    responder (no transaction held meanwhile) and cached. With `issuer` known, an answer whose signature does
    not verify is refused (and not cached); without it, the answer is passed on unverified (the station
    verifies what it relays: GetCertificateStatus)."""
    now = now or timezone.now()
    key: dict[str, Any] = {
        "hash_algorithm": data.hash_algorithm,
        "issuer_name_hash": data.issuer_name_hash,
        "issuer_key_hash": data.issuer_key_hash,
        "serial_number": data.serial_number,
        "responder_url": data.responder_url,
    }
    cached = OcspResponseCache.objects.filter(**key, next_update__gt=now).first()
    if cached is not None:
        return OcspOutcome(status=cached.status, response_der_b64=cached.response_der_b64)
    try:
        der = _ocsp_fetch(data)
        response = ocsp.load_der_ocsp_response(der)
    except (httpx.HTTPError, ValueError) as exc:
        logger.info("OCSP request to %s failed: %s", data.responder_url, exc)
        return OcspOutcome(status="", error=f"OCSP responder not usable: {exc}"[:200])
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return OcspOutcome(status="", error=f"OCSP responder answered {response.response_status.name}")
    if (
        response.serial_number != int(data.serial_number, 16)
        or response.issuer_key_hash.hex() != data.issuer_key_hash
        or response.issuer_name_hash.hex() != data.issuer_name_hash
    ):
        return OcspOutcome(status="", error="OCSP answer is about another certificate")
    if issuer is not None and not _verify_response_signature(response, issuer):
        return OcspOutcome(status="", error="OCSP answer signature does not verify", signature_failed=True)
    this_update = response.this_update_utc
    next_update = response.next_update_utc or now + timedelta(seconds=OCSP_NO_NEXT_UPDATE_KEEP_S)
    if next_update <= now:
        return OcspOutcome(status="", error="OCSP answer is out of date")
    status = _status_name(response.certificate_status)
    der_b64 = base64.b64encode(der).decode()
    with transaction.atomic():
        OcspResponseCache.objects.update_or_create(
            defaults={
                "status": status,
                "response_der_b64": der_b64,
                "this_update": this_update,
                "next_update": next_update,
                "fetched_at": now,
            },
            **key,
        )
    return OcspOutcome(status=status, response_der_b64=der_b64)


def _ocsp_to_certificate_status(outcome: OcspOutcome) -> str:
    if outcome.status == "good":
        return ACCEPTED
    if outcome.status == "revoked":
        return CERTIFICATE_REVOKED
    if outcome.signature_failed:
        return SIGNATURE_ERROR
    if outcome.status == "unknown":
        # The responder does not know the certificate: not issued under the CA it answers for.
        return CERT_CHAIN_ERROR
    # No usable answer: revocation cannot be ruled out, so the contract is not accepted (fail closed).
    return NO_CERTIFICATE_AVAILABLE


# --- the three flows -------------------------------------------------------------------------------
def pnc_authorize(
    *,
    organisation_id: int,
    station_id: int | None,
    emaid: str,
    certificate: object = None,
    hash_data: object = None,
    now: datetime | None = None,
) -> PncAuthorizeResult:
    """OCPP 2.0.1 C07 (AuthorizeRequest with an eMAID): the contract checked, then the eMAID as a token.

    With `certificate` (PEM chain, leaf first; C07.FR.06 central contract validation): chain to an MO root of
    the organisation, validity, the eMAID in the leaf's CN, then OCSP for each certificate of the path that
    names a responder. With `hash_data` only (the station validated the chain): OCSP for each entry. Any
    certificate status other than Accepted makes the token Invalid whatever its own status."""
    now = now or timezone.now()
    entries = _hash_data_parse(hash_data)
    chain = certificate_chain_parse(certificate) if certificate is not None else []
    if not isinstance(emaid, str) or not emaid:
        raise ValidationFailed("idToken is empty.")
    if not chain and not entries:
        return PncAuthorizeResult(
            token=id_token_authorize(organisation_id=organisation_id, value=emaid, station_id=station_id),
            certificate_status=None,
        )
    anchors = trust_anchors(organisation_id)
    checks: list[tuple[OcspRequestData, x509.Certificate | None]] = []
    if chain:
        status, links = _chain_check(chain, anchors, now.astimezone(UTC))
        if status == ACCEPTED and emaid_normalise(_emaid_of(chain[0])) != emaid_normalise(emaid):
            # The certificate is someone else's contract.
            status = CERT_CHAIN_ERROR
        if status != ACCEPTED:
            return PncAuthorizeResult(token=_refused(), certificate_status=status)
        for leaf, issuer in links:
            url = _ocsp_url(leaf)
            if url:
                checks.append((_request_data_for(leaf, issuer, url), issuer))
    else:
        checks = [(entry, _issuer_for(entry, anchors)) for entry in entries]
    for data, known_issuer in checks:
        status = _ocsp_to_certificate_status(ocsp_status(data, issuer=known_issuer, now=now))
        if status != ACCEPTED:
            return PncAuthorizeResult(token=_refused(), certificate_status=status)
    token = id_token_authorize(organisation_id=organisation_id, value=emaid, station_id=station_id)
    return PncAuthorizeResult(token=token, certificate_status=ACCEPTED)


def _refused() -> TokenInfo:
    return TokenInfo(status=IdTokenStatus.INVALID)


def _request_data_for(certificate: x509.Certificate, issuer: x509.Certificate, url: str) -> OcspRequestData:
    request = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, hashes.SHA256()).build()
    return OcspRequestData(
        hash_algorithm="SHA256",
        issuer_name_hash=request.issuer_name_hash.hex(),
        issuer_key_hash=request.issuer_key_hash.hex(),
        serial_number=format(certificate.serial_number, "X"),
        responder_url=url[:RESPONDER_URL_MAX],
    )


def certificate_status_get(
    *, organisation_id: int, ocsp_request_data: object, now: datetime | None = None
) -> CertificateStatusResult:
    """OCPP 2.0.1 M06 (GetCertificateStatus): the OCSP answer for the station's certificate, DER base64, from
    the cache while valid. Verified when the issuer is one of the organisation's roots."""
    data = ocsp_request_data_parse(ocsp_request_data)
    issuer = _issuer_for(data, trust_anchors(organisation_id))
    outcome = ocsp_status(data, issuer=issuer, now=now)
    if not outcome.status:
        return CertificateStatusResult(status="Failed", reason=outcome.error)
    return CertificateStatusResult(status="Accepted", ocsp_result_b64=outcome.response_der_b64)


def ev_certificate_get(
    *,
    organisation_id: int,
    station_id: int | None = None,
    iso15118_schema_version: str,
    action: str,
    exi_request: str,
    now: datetime | None = None,
) -> EvCertificateResult:
    """OCPP 2.0.1 M01/M02 (Get15118EVCertificate): the car's request through the contract-certificate
    provider. Garbage is refused before the provider sees it (ValidationFailed, nothing kept); a provider that
    cannot answer gives Failed with its reason. Each request the provider saw is kept as a station event
    (the contract's eMAID and serial when the provider says; never the EXI itself)."""
    if action not in CERTIFICATE_ACTIONS:
        raise ValidationFailed(f"action must be one of {', '.join(sorted(CERTIFICATE_ACTIONS))}.")
    if not isinstance(iso15118_schema_version, str) or not 1 <= len(iso15118_schema_version) <= 50:
        raise ValidationFailed("iso15118SchemaVersion must be 1-50 characters.")
    try:
        raw = exi_request_decode(exi_request)
    except ContractCertificateError as exc:
        raise ValidationFailed(exc.message) from exc
    detail: dict[str, Any] = {
        "message": "Get15118EVCertificate",
        "action": action,
        "iso15118SchemaVersion": iso15118_schema_version,
    }
    try:
        provider = contract_certificate_provider(organisation_id=organisation_id)
        answer = provider.ev_certificate(
            organisation_id=organisation_id,
            iso15118_schema_version=iso15118_schema_version,
            action=action,
            exi_request=raw,
        )
    except ContractCertificateError as exc:
        logger.info("organisation %s: contract certificate not provided: %s", organisation_id, exc.message)
        result = EvCertificateResult(status="Failed", reason=exc.message)
        detail.update(status="Failed", reason=exc.message[:200])
    else:
        result = EvCertificateResult(status="Accepted", exi_response_b64=answer.exi_response_b64)
        detail.update(
            status="Accepted",
            provider=provider.name,
            emaid=answer.emaid,
            serialNumber=answer.serial_number_hex,
        )
    if station_id is not None:
        at = now or timezone.now()
        StationEvent.objects.create(
            station_id=station_id,
            kind=StationEventKind.CERTIFICATE_REQUEST,
            detail=detail,
            occurred_at=at,
            received_at=at,
        )
    return result
