"""The certificate authority, station certificates and their inventory: issuance (SignCertificate),
renewal, revocation with a published CRL, inventory from GetInstalledCertificateIds, CSMS root rotation.
docs/certificates.md is the runbook.

Keys: a CA's private key is stored only encrypted (`cpms.secret_box`, purpose KEY_PURPOSE), decrypted in
this module only for the moment it signs, and never returned, logged or rendered. Who signs a request is a
`CertificateSigner`: our own CA key (`LocalSigner`) when we hold it, else the external signer configured for
the CA's purpose (setting CERTIFICATE_EXTERNAL_SIGNERS, {purpose: dotted path}); a CA with neither refuses.

What the OCPP rules ask of a station certificate (2.0.1 Part 2 A00 "Certificate properties"; 1.6 security
whitepaper 3.2): the subject's commonName is the station's identity and its organizationName the CSO's name
(the station fills it from SecurityCtrlr.OrganizationName / the 1.6 key CpoName). We sign the subject we
build (CN = identity, O = the organisation's name), never extensions the station asked for.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.ocsp import OCSPRequestBuilder
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from accounts.models import AuditAction, Organisation, User
from accounts.services import audit_record
from cpms.errors import Conflict, ValidationFailed
from cpms.ocpp_wire import certificates as wire
from cpms.secret_box import secret_decrypt, secret_encrypt
from stations.enums import (
    CertificateAuthorityPurpose,
    CertificateSource,
    CertificateStatus,
    CertificateUse,
    CommandSource,
    CommandStatus,
    SecurityEventKind,
    StationEventKind,
)
from stations.models import CertificateAuthority, ChargingStation, Command, StationCertificate
from stations.services.commands import command_create, command_send, station_version
from stations.services.ocpp import security_event_record, station_event_record

logger = logging.getLogger(__name__)

KEY_PURPOSE = "cpms.ca-key.v1"

AUDIT_CA_CREATED = AuditAction.CERTIFICATE_CA_CREATED
AUDIT_CA_IMPORTED = AuditAction.CERTIFICATE_CA_IMPORTED
AUDIT_ISSUED = AuditAction.CERTIFICATE_ISSUED
AUDIT_REVOKED = AuditAction.CERTIFICATE_REVOKED
AUDIT_RENEWAL = AuditAction.CERTIFICATE_RENEWAL_REQUESTED
AUDIT_ROOT_ROLLOUT = AuditAction.CERTIFICATE_ROOT_ROLLOUT

# The schemas' limits: SignCertificate.csr 5500 characters, CertificateSigned.certificateChain 10000.
CSR_MAX_CHARS = 5500
CHAIN_MAX_CHARS = 10000
# Allowed station keys (2.0.1 A00.FR.3xx / 1.6 whitepaper: the TLS 1.2 cipher suites OCPP requires use
# P-256/P-384 ECDSA or RSA >= 2048).
EC_CURVES = ("secp256r1", "secp384r1")
RSA_MIN_BITS = 2048
# A CertificateSigned waits this long in the outbox for a station that dropped its connection meanwhile.
DELIVERY_QUEUE_S = 3600
# The expiry job asks a station again at most once a day per certificate.
RENEWAL_RETRY = timedelta(days=1)
CRL_VALID = timedelta(days=7)

# What a SignCertificate's certificateType is signed by.
_SIGNING_PURPOSE = {
    wire.CHARGING_STATION: CertificateAuthorityPurpose.CHARGING_STATION,
    wire.V2G: CertificateAuthorityPurpose.V2G,
}


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


# --- who signs ------------------------------------------------------------------------------------------


class CertificateSigner(Protocol):
    """Signs a validated CSR for `ca`. Returns the certificates to send, leaf first, then the sub-CAs the
    station needs (not the root). Raises SigningRefused with a reason the station's record keeps.

    An external CA (the CPO sub-CA of the V2G PKI, a corporate PKI) implements this and is named in the
    setting CERTIFICATE_EXTERNAL_SIGNERS = {"v2g": "mypkg.signers.HubjectSigner"}; it is called from the
    SignCertificate handler's worker thread before any database transaction opens, so it may take a few
    seconds (the station waits for its answer)."""

    def sign(
        self,
        *,
        ca: CertificateAuthority,
        csr: x509.CertificateSigningRequest,
        subject: x509.Name,
        certificate_type: str,
        valid_days: int,
    ) -> list[x509.Certificate]: ...


class SigningRefused(Exception):
    pass


class LocalSigner:
    """Signs with the CA key we hold (encrypted at rest; decrypted here for this signature only)."""

    def sign(
        self,
        *,
        ca: CertificateAuthority,
        csr: x509.CertificateSigningRequest,
        subject: x509.Name,
        certificate_type: str,
        valid_days: int,
    ) -> list[x509.Certificate]:
        key = _ca_key(ca)
        if key is None:
            raise SigningRefused(f"The key of CA {ca.name!r} cannot be read (SECRET_KEY rotated?).")
        ca_cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
        now = datetime.now(UTC)
        not_after = min(now + timedelta(days=valid_days), ca_cert.not_valid_after_utc)
        public_key = csr.public_key()
        usages = {"digital_signature": True, "key_encipherment": isinstance(public_key, rsa.RSAPublicKey)}
        purposes = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if certificate_type == wire.V2G:
            # The SECC is the TLS server of the ISO 15118 link.
            purposes.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    content_commitment=False,
                    data_encipherment=False,
                    key_agreement=isinstance(public_key, ec.EllipticCurvePublicKey),
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                    **usages,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(purposes), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
            .add_extension(
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            full_name=[x509.UniformResourceIdentifier(crl_url(ca))],
                            relative_name=None,
                            reasons=None,
                            crl_issuer=None,
                        )
                    ]
                ),
                critical=False,
            )
        )
        leaf = builder.sign(key, hashes.SHA256())
        # The root stays out of the chain (the station holds it as a trust anchor); a sub-CA goes in.
        return [leaf] if ca_cert.issuer == ca_cert.subject else [leaf, ca_cert]


def signer_for(ca: CertificateAuthority) -> CertificateSigner | None:
    """Our key signs when we hold it; else the external signer configured for the CA's purpose; else
    nobody (the request is refused)."""
    if ca.private_key_encrypted:
        return LocalSigner()
    path = (_setting("CERTIFICATE_EXTERNAL_SIGNERS", {}) or {}).get(ca.purpose)
    return import_string(path)() if path else None


# --- certificate helpers --------------------------------------------------------------------------------


SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _ca_key(ca: CertificateAuthority) -> SigningKey | None:
    pem = secret_decrypt(ca.private_key_encrypted, purpose=KEY_PURPOSE)
    if not pem:
        return None
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    # ca_create and ca_import store no other kind.
    return key if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) else None


def _key_pem(key: SigningKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def serial_hex(serial: int) -> str:
    """OCPP's CertificateHashData.serialNumber: hexadecimal, without leading zeroes, lower case."""
    return format(serial, "x")


def hash_data(cert: x509.Certificate, issuer: x509.Certificate) -> dict[str, str]:
    """The CertificateHashData (SHA256) of `cert` issued by `issuer`, as RFC 6960 CertID computes it."""
    request = OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
    return {
        "hash_algorithm": "SHA256",
        "issuer_name_hash": request.issuer_name_hash.hex(),
        "issuer_key_hash": request.issuer_key_hash.hex(),
        "serial_number": serial_hex(cert.serial_number),
    }


def fingerprint(certificate_pem: str) -> str:
    """SHA-256 fingerprint of a PEM certificate, colon-separated hex (what operators compare)."""
    cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def crl_url(ca: CertificateAuthority) -> str:
    return f"{settings.CPMS_PUBLIC_URL}/pki/ca/{ca.pk}/crl.der"


def _new_key(key_type: str) -> SigningKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ValidationFailed(f"Key type {key_type!r}: choose 'ec' (P-256) or 'rsa' (3072 bits).")


def _purpose_checked(purpose: str) -> str:
    if purpose not in CertificateAuthorityPurpose.values:
        raise ValidationFailed(
            f"Purpose {purpose!r}: one of {', '.join(CertificateAuthorityPurpose.values)}."
        )
    return purpose


# --- certificate authorities ----------------------------------------------------------------------------


def ca_certificate_self_signed(
    *, key: SigningKey, subject: x509.Name, valid_days: int, path_length: int | None
) -> x509.Certificate:
    """A self-signed CA certificate for `key`: signs certificates and CRLs; `path_length` 0 signs end-entity
    certificates only, None lets it sign sub-CAs too (a mobility operator's root)."""
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def ca_create(
    *,
    organisation: Organisation,
    name: str,
    purpose: str,
    actor: User | None,
    valid_days: int = 3650,
    key_type: str = "ec",
) -> CertificateAuthority:
    """A new self-signed CA whose key we hold (encrypted). It signs from now on: the newest active CA of a
    purpose signs; older ones stay trusted until deactivated (docs/certificates.md#rotating-the-station-ca)."""
    _purpose_checked(purpose)
    if not 1 <= valid_days <= 36500:
        raise ValidationFailed("valid_days must be between 1 and 36500.")
    key = _new_key(key_type)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation.name[:64]),
        ]
    )
    # pathlen 0: it signs end-entity certificates only.
    cert = ca_certificate_self_signed(key=key, subject=subject, valid_days=valid_days, path_length=0)
    with transaction.atomic():
        ca = CertificateAuthority.objects.create(
            organisation=organisation,
            name=name,
            purpose=purpose,
            certificate_pem=_pem(cert),
            private_key_encrypted=secret_encrypt(_key_pem(key), purpose=KEY_PURPOSE),
            not_after=cert.not_valid_after_utc,
        )
        audit_record(
            actor=actor,
            action=AUDIT_CA_CREATED,
            obj=ca,
            organisation_id=organisation.pk,
            changes={"name": name, "purpose": purpose, "fingerprint": fingerprint(ca.certificate_pem)},
        )
    return ca


def ca_import(
    *,
    organisation: Organisation,
    name: str,
    purpose: str,
    certificate_pem: str,
    actor: User | None,
    private_key_pem: str | None = None,
) -> CertificateAuthority:
    """An operator's own CA (with its key: it signs) or a trust anchor / external CA (without: it is
    trusted, and signs only through an external signer). The key must be unencrypted PEM and match the
    certificate; it is stored encrypted and never shown again."""
    _purpose_checked(purpose)
    try:
        cert = x509.load_pem_x509_certificate(certificate_pem.strip().encode())
    except ValueError:
        raise ValidationFailed("certificate_pem is not a PEM X.509 certificate.") from None
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise ValidationFailed("The certificate is not a CA certificate (basicConstraints CA:TRUE).")
    if cert.not_valid_after_utc <= datetime.now(UTC):
        raise ValidationFailed(f"The certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}.")
    stored_key = ""
    if private_key_pem:
        try:
            key = serialization.load_pem_private_key(private_key_pem.strip().encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            # Never echo the input: it is a private key.
            raise ValidationFailed(
                "private_key_pem is not an unencrypted PEM private key (decrypt it first)."
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValidationFailed("A CA key must be EC or RSA.")
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(serialization.Encoding.DER, spki) != cert.public_key().public_bytes(
            serialization.Encoding.DER, spki
        ):
            raise ValidationFailed("The private key does not belong to the certificate.")
        stored_key = secret_encrypt(_key_pem(key), purpose=KEY_PURPOSE)
    with transaction.atomic():
        ca = CertificateAuthority.objects.create(
            organisation=organisation,
            name=name,
            purpose=purpose,
            certificate_pem=_pem(cert),
            private_key_encrypted=stored_key,
            not_after=cert.not_valid_after_utc,
        )
        audit_record(
            actor=actor,
            action=AUDIT_CA_IMPORTED,
            obj=ca,
            organisation_id=organisation.pk,
            changes={
                "name": name,
                "purpose": purpose,
                "fingerprint": fingerprint(ca.certificate_pem),
                "with_key": bool(stored_key),
            },
        )
    return ca


def ca_signing(*, organisation_id: int, purpose: str) -> CertificateAuthority | None:
    """The CA that signs `purpose` requests for the organisation: the newest active one that has not
    expired."""
    return (
        CertificateAuthority.objects.filter(
            organisation_id=organisation_id, purpose=purpose, active=True, not_after__gt=timezone.now()
        )
        .order_by("-created_at", "-pk")
        .first()
    )


def ca_list(*, organisation_ids: Iterable[int] | None) -> Any:
    """CAs of these organisations (None: all, for superusers)."""
    qs = CertificateAuthority.objects.select_related("organisation")
    return qs if organisation_ids is None else qs.filter(organisation_id__in=list(organisation_ids))


# --- signing a station's request ------------------------------------------------------------------------


@dataclass(frozen=True)
class SignOutcome:
    accepted: bool
    reason: str = ""
    certificate: StationCertificate | None = None
    command: Command | None = None


def _refused(reason: str) -> SignOutcome:
    return SignOutcome(accepted=False, reason=reason)


def _csr_problem(
    *, station: ChargingStation, csr_pem: str, certificate_type: str
) -> tuple[x509.CertificateSigningRequest | None, str]:
    """(the CSR, "") when it may be signed, else (None, why not)."""
    if len(csr_pem) > CSR_MAX_CHARS:
        return None, f"The CSR is longer than {CSR_MAX_CHARS} characters."
    try:
        csr = x509.load_pem_x509_csr(csr_pem.strip().encode())
    except ValueError:
        return None, "Not a PEM-encoded PKCS#10 certificate signing request."
    try:
        signature_ok = csr.is_signature_valid
        public_key = csr.public_key()
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        return None, "The CSR's key or signature algorithm is not supported."
    if not signature_ok:
        return None, "The CSR's signature does not verify with its own public key."
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in EC_CURVES:
            return None, f"Elliptic curve {public_key.curve.name} is not allowed (P-256 or P-384)."
    elif isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < RSA_MIN_BITS:
            return None, f"An RSA key of {public_key.key_size} bits is too weak (at least {RSA_MIN_BITS})."
    else:
        return None, "Only EC (P-256, P-384) and RSA (>= 2048 bits) keys are allowed."
    names = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if certificate_type == wire.CHARGING_STATION and names != [station.identity]:
        return (
            None,
            f"The subject's commonName must be the station identity {station.identity!r}, not {names!r}.",
        )
    if certificate_type == wire.V2G and len(names) != 1:
        return None, "The subject must have one commonName."
    organisations = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    expected = station.organisation.name
    if organisations and organisations != [expected]:
        return None, f"The subject's organizationName must be {expected!r}, not {organisations!r}."
    if not organisations and _setting("STATION_CERT_REQUIRE_ORGANIZATION", True):
        # 2.0.1 A00 / 1.6 whitepaper 3.2: O SHALL be the CSO's name (SecurityCtrlr.OrganizationName, CpoName).
        return None, f"The subject has no organizationName; it must be {expected!r}."
    problem = _san_problem(csr, station)
    if problem:
        return None, problem
    return csr, ""


def _san_problem(csr: x509.CertificateSigningRequest, station: ChargingStation) -> str:
    """Alternative names may only repeat the station's identity: a name of another station (or host)
    would let this certificate pass for it."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    except ValueError:
        return "The CSR's extensions cannot be read."
    others = [
        str(getattr(name, "value", name)) for name in san if getattr(name, "value", None) != station.identity
    ]
    return f"The CSR names other identities in subjectAltName: {others!r}." if others else ""


def _subject(
    station: ChargingStation, csr: x509.CertificateSigningRequest, certificate_type: str
) -> x509.Name:
    if certificate_type == wire.V2G:
        # ISO 15118 names the SECC as its PKI says (CN = the SECC/EVSE id); the V2G CA decides.
        return csr.subject
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, station.identity),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, station.organisation.name[:64]),
        ]
    )


def csr_sign(
    *, station: ChargingStation, csr_pem: str, certificate_type: str = wire.CHARGING_STATION
) -> SignOutcome:
    """SignCertificate (2.0.1 A02/A03; 1.6 whitepaper A02): validate the CSR, have the CA of its type
    sign it, record the certificate (source issued, active) and put CertificateSigned in the outbox.

    Refused (nothing stored) when the CSR is malformed, its signature or key is not acceptable, its subject
    names another station or organisation, no CA signs that type for the organisation, or the chain would
    not fit CertificateSigned. The command is written with the certificate in one transaction, and sent by
    the server process holding the station once the caller's answer is out (the poller of pending commands,
    stations.services.commands): the charger's own handler never waits for a call to the charger.

    The previous certificate of the same type stays active until the station accepts the new one
    (CertificateSigned answer hook: certificate_signed_answered)."""
    csr, problem = _csr_problem(station=station, csr_pem=csr_pem, certificate_type=certificate_type)
    if csr is None:
        return _refused(problem)
    purpose = _SIGNING_PURPOSE.get(certificate_type)
    if purpose is None:
        return _refused(f"Certificate type {certificate_type!r} is not signed here.")
    ca = ca_signing(organisation_id=station.organisation_id, purpose=purpose)
    if ca is None:
        return _refused(f"The organisation has no active {purpose} CA.")
    signer = signer_for(ca)
    if signer is None:
        return _refused(
            f"CA {ca.name!r} is held externally and no signer is configured for {purpose} "
            "(setting CERTIFICATE_EXTERNAL_SIGNERS)."
        )
    valid_days = int(_setting("STATION_CERT_VALID_DAYS", 365))
    try:
        chain = signer.sign(
            ca=ca,
            csr=csr,
            subject=_subject(station, csr, certificate_type),
            certificate_type=certificate_type,
            valid_days=valid_days,
        )
    except SigningRefused as exc:
        return _refused(str(exc))
    leaf = chain[0]
    chain_pem = "".join(_pem(cert) for cert in chain)
    if len(chain_pem) > CHAIN_MAX_CHARS:
        return _refused(f"The signed chain is longer than CertificateSigned takes ({CHAIN_MAX_CHARS}).")
    issuer = chain[1] if len(chain) > 1 else x509.load_pem_x509_certificate(ca.certificate_pem.encode())
    try:
        call = wire.certificate_signed(
            station_version(station), chain_pem=chain_pem, certificate_type=certificate_type
        )
    except (Conflict, ValidationFailed) as exc:
        return _refused(str(exc))
    with transaction.atomic():
        certificate = StationCertificate.objects.create(
            organisation_id=station.organisation_id,
            station=station,
            use=certificate_type,
            source=CertificateSource.ISSUED,
            status=CertificateStatus.ACTIVE,
            subject=leaf.subject.rfc4514_string()[:500],
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            certificate_pem=_pem(leaf),
            issued_by=ca,
            **hash_data(leaf, issuer),
        )
        command = command_create(
            station=station,
            action=call.action,
            request=call.payload,
            source=CommandSource.SYSTEM,
            queue_for_s=DELIVERY_QUEUE_S,
        )
        _lifecycle(certificate, actor=None, action=AUDIT_ISSUED, detail=f"issued by {ca.name}")
    return SignOutcome(accepted=True, certificate=certificate, command=command)


@transaction.atomic
def certificate_signing_requested(
    *, station_id: int, csr_pem: str, certificate_type: str, received_at: datetime
) -> SignOutcome:
    """The SignCertificate handlers' service: the request kept as a station event (with the outcome and,
    when refused, why) and `csr_sign`. Returns the outcome; the handler answers Accepted / Rejected."""
    station = ChargingStation.objects.select_related("organisation").get(pk=station_id)
    outcome = csr_sign(station=station, csr_pem=csr_pem, certificate_type=certificate_type)
    detail: dict[str, Any] = {
        "csr": csr_pem[:CSR_MAX_CHARS],
        "certificateType": certificate_type,
        "accepted": outcome.accepted,
    }
    if outcome.reason:
        detail["reason"] = outcome.reason
        logger.info("SignCertificate of %s refused: %s", station.identity, outcome.reason)
    if outcome.certificate is not None:
        detail["certificate_id"] = outcome.certificate.pk
    station_event_record(
        station_id=station_id,
        kind=StationEventKind.CERTIFICATE_REQUEST,
        detail=detail,
        occurred_at=received_at,
        received_at=received_at,
    )
    return outcome


def _lifecycle(certificate: StationCertificate, *, actor: User | None, action: str, detail: str) -> None:
    """Audit trail and station security log of one lifecycle step (caller's transaction)."""
    audit_record(
        actor=actor,
        action=action,
        obj=certificate,
        organisation_id=certificate.organisation_id,
        changes={
            "use": certificate.use,
            "serial_number": certificate.serial_number,
            "station": certificate.station.identity if certificate.station else None,
            "detail": detail,
        },
    )
    if certificate.station is not None:
        security_event_record(
            identity=certificate.station.identity,
            station_id=certificate.station_id,
            kind=SecurityEventKind.CERTIFICATE_LIFECYCLE,
            detail=f"{action} {certificate.use} serial {certificate.serial_number}: {detail}",
        )


# --- answers of the station (sessions.services.command_answers calls these) -----------------------------


def _leaf_of(chain_pem: str) -> x509.Certificate | None:
    try:
        certificates = x509.load_pem_x509_certificates(chain_pem.encode())
    except ValueError:
        return None
    return certificates[0] if certificates else None


def certificate_signed_answered(command: Command, response: dict[str, Any]) -> None:
    """CertificateSigned answered (in the transaction recording the answer). Accepted: the station installed
    the new certificate, the one it replaces is superseded. Rejected: the new one will never be used and
    is revoked, so that nobody can use it (the station keeps its old certificate)."""
    leaf = _leaf_of(command.request.get("certificateChain", ""))
    if leaf is None:
        return
    certificate = (
        StationCertificate.objects.select_for_update(of=("self",))
        .filter(station_id=command.station_id, serial_number=serial_hex(leaf.serial_number))
        .select_related("station")
        .first()
    )
    if certificate is None or certificate.status != CertificateStatus.ACTIVE:
        return
    if response.get("status") == "Accepted":
        replaced = StationCertificate.objects.filter(
            station_id=command.station_id, use=certificate.use, status=CertificateStatus.ACTIVE
        ).exclude(pk=certificate.pk)
        replaced.update(status=CertificateStatus.SUPERSEDED)
        _lifecycle(certificate, actor=None, action=AUDIT_ISSUED, detail="installed by the station")
    else:
        _revoke(certificate, reason="refused by the station (CertificateSigned Rejected)", actor=None)


def installed_certificates_reported(command: Command, response: dict[str, Any]) -> None:
    """GetInstalledCertificateIds answered: each listed certificate is in the inventory (source reported,
    unless we already know it as issued or installed); reported ones of the asked kinds that the station no
    longer lists are superseded. NotFound lists none."""
    version = command.station.protocol.removeprefix("ocpp") or "2.0.1"
    listed = wire.installed_hash_data(version, command.request, response)
    now = timezone.now()
    seen = []
    for use, data in listed:
        key = {
            "station_id": command.station_id,
            "use": use,
            "issuer_name_hash": str(data["issuerNameHash"]).lower(),
            "issuer_key_hash": str(data["issuerKeyHash"]).lower(),
            "serial_number": str(data["serialNumber"]).lower().lstrip("0") or "0",
        }
        certificate, _ = StationCertificate.objects.get_or_create(
            **key,
            defaults={
                "organisation_id": command.station.organisation_id,
                "source": CertificateSource.REPORTED,
                "hash_algorithm": data.get("hashAlgorithm", "SHA256"),
            },
        )
        seen.append(certificate.pk)
    asked = _asked_uses(version, command.request)
    gone = StationCertificate.objects.filter(
        station_id=command.station_id, source=CertificateSource.REPORTED, status=CertificateStatus.ACTIVE
    ).exclude(pk__in=seen)
    if asked is not None:
        gone = gone.filter(use__in=asked)
    gone.update(status=CertificateStatus.SUPERSEDED, updated_at=now)


def _asked_uses(version: str, request: dict[str, Any]) -> list[str] | None:
    if version == "1.6":
        return [wire.use_from_wire(version, request.get("certificateType", ""))]
    return request.get("certificateType") or None


def root_installed_answered(command: Command, response: dict[str, Any]) -> None:
    """InstallCertificate answered Accepted: the root is in the inventory as installed."""
    if response.get("status") != "Accepted":
        return
    try:
        cert = x509.load_pem_x509_certificate(command.request.get("certificate", "").encode())
    except ValueError:
        return
    version = command.station.protocol.removeprefix("ocpp") or "2.0.1"
    use = wire.use_from_wire(version, command.request.get("certificateType", ""))
    data = hash_data(cert, cert)
    StationCertificate.objects.update_or_create(
        station_id=command.station_id,
        use=use,
        issuer_name_hash=data["issuer_name_hash"],
        issuer_key_hash=data["issuer_key_hash"],
        serial_number=data["serial_number"],
        defaults={
            "organisation_id": command.station.organisation_id,
            "source": CertificateSource.INSTALLED,
            "status": CertificateStatus.ACTIVE,
            "subject": cert.subject.rfc4514_string()[:500],
            "not_before": cert.not_valid_before_utc,
            "not_after": cert.not_valid_after_utc,
            "certificate_pem": _pem(cert),
        },
    )


# --- revocation and the CRL -----------------------------------------------------------------------------


def _revoke(certificate: StationCertificate, *, reason: str, actor: User | None) -> None:
    now = timezone.now()
    StationCertificate.objects.filter(pk=certificate.pk).update(
        status=CertificateStatus.REVOKED, revoked_at=now, revocation_reason=reason[:200], updated_at=now
    )
    certificate.status, certificate.revoked_at, certificate.revocation_reason = (
        CertificateStatus.REVOKED,
        now,
        reason[:200],
    )
    if certificate.issued_by_id is not None:
        # The next CRL of its CA lists it under a higher number (RFC 5280 5.2.3).
        CertificateAuthority.objects.filter(pk=certificate.issued_by_id).update(
            crl_number=F("crl_number") + 1
        )
    _lifecycle(certificate, actor=actor, action=AUDIT_REVOKED, detail=reason)


def certificate_revoke(
    *, certificate: StationCertificate, reason: str, actor: User | None
) -> StationCertificate:
    """Revoke a certificate: it is refused at the handshake from now on (transport security reads the
    status), and listed by its CA's CRL (served at crl_url(ca)). Revoking twice is a Conflict."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("Give a reason for the revocation.")
    with transaction.atomic():
        locked = (
            StationCertificate.objects.select_for_update(of=("self",))
            .select_related("station")
            .get(pk=certificate.pk)
        )
        if locked.status == CertificateStatus.REVOKED:
            raise Conflict(f"Certificate {locked.serial_number} is already revoked.")
        _revoke(locked, reason=reason, actor=actor)
    return locked


def crl_for(ca: CertificateAuthority, *, now: datetime | None = None) -> bytes:
    """The CA's current CRL (DER), signed with its key: every revoked certificate it issued that has not
    expired, numbered with the CA's crl_number (which every revocation counts up). A CA whose key we do not
    hold has no CRL of ours (NotFound for the caller)."""
    key = _ca_key(ca)
    if key is None:
        raise Conflict(f"CA {ca.name!r} is not held here: its CRL is published by its owner.")
    now = now or datetime.now(UTC)
    ca_cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(now + CRL_VALID)
        .add_extension(x509.CRLNumber(ca.crl_number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    revoked = StationCertificate.objects.filter(
        issued_by=ca, status=CertificateStatus.REVOKED, not_after__gt=now
    ).values_list("serial_number", "revoked_at")
    for serial, revoked_at in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(int(serial, 16))
            .revocation_date(revoked_at or now)
            .build()
        )
    crl = builder.sign(key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.DER)


# --- renewal --------------------------------------------------------------------------------------------

RENEWABLE = (CertificateUse.CHARGING_STATION, CertificateUse.V2G)


@dataclass
class RenewalRun:
    requested: list[int] = field(default_factory=list)  # certificate ids whose station was asked
    skipped: list[int] = field(default_factory=list)  # not connected: asked on a later run


def certificates_renew_due(*, now: datetime | None = None) -> RenewalRun:
    """The expiry job: ask each connected station whose active certificate expires within
    STATION_CERT_RENEW_DAYS for a new one (TriggerMessage / ExtendedTriggerMessage; the station answers
    with SignCertificate), at most once a day per certificate (`renewal_requested_at`, claimed with a
    conditional update so two runs never ask twice)."""
    now = now or timezone.now()
    horizon = now + timedelta(days=int(_setting("STATION_CERT_RENEW_DAYS", 30)))
    due = (
        StationCertificate.objects.filter(
            status=CertificateStatus.ACTIVE,
            use__in=RENEWABLE,
            station__isnull=False,
            not_after__lte=horizon,
        )
        .filter(Q(renewal_requested_at__isnull=True) | Q(renewal_requested_at__lte=now - RENEWAL_RETRY))
        .select_related("station")
        .order_by("not_after", "pk")
    )
    run = RenewalRun()
    for certificate in due[:500]:
        station = certificate.station
        assert station is not None
        if not station.is_connected:
            run.skipped.append(certificate.pk)
            continue
        claimed = StationCertificate.objects.filter(
            pk=certificate.pk, renewal_requested_at=certificate.renewal_requested_at
        ).update(renewal_requested_at=now)
        if claimed != 1:
            continue
        _trigger(station=station, certificate_type=certificate.use, actor=None, source=CommandSource.SYSTEM)
        run.requested.append(certificate.pk)
    return run


def _trigger(*, station: ChargingStation, certificate_type: str, actor: User | None, source: str) -> Command:
    call = wire.sign_certificate_trigger(station_version(station), certificate_type=certificate_type)
    return command_send(station=station, call=call, requested_by=actor, source=source, wait=False)


def certificate_renew_now(
    *, station: ChargingStation, actor: User | None, certificate_type: str = wire.CHARGING_STATION
) -> Command:
    """Ask the station for a new certificate now (the API's and admin's "renew"); waits for its answer to
    the trigger. The new certificate follows with the station's SignCertificate."""
    call = wire.sign_certificate_trigger(station_version(station), certificate_type=certificate_type)
    command = command_send(station=station, call=call, requested_by=actor, source=CommandSource.API)
    if command.status == CommandStatus.ANSWERED:
        StationCertificate.objects.filter(
            station=station, use=certificate_type, status=CertificateStatus.ACTIVE
        ).update(renewal_requested_at=timezone.now())
    return command


# --- CSMS root rotation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutReport:
    accepted: list[str]
    refused: dict[str, str]  # identity -> why (the station's answer, an error, not connected)

    @property
    def complete(self) -> bool:
        """Every station holds the new root: only now may the server certificate change."""
        return not self.refused


def csms_root_rollout(
    *, organisation: Organisation, certificate: CertificateAuthority, actor: User | None = None
) -> RolloutReport:
    """Install the new CSMS root on every station of the organisation (InstallCertificate
    CSMSRootCertificate), one after the other, waiting for each answer. A station that did not accept
    (answer, error, timeout, offline) is reported; run it again until `complete`, and switch the server
    certificate only then (docs/certificates.md#rotating-the-csms-root)."""
    if (
        certificate.purpose != CertificateAuthorityPurpose.CSMS_ROOT
        or certificate.organisation_id != organisation.pk
    ):
        raise ValidationFailed("Roll out a CSMS root of this organisation.")
    accepted: list[str] = []
    refused: dict[str, str] = {}
    stations = ChargingStation.objects.filter(organisation=organisation).order_by("identity")
    for station in stations:
        try:
            call = wire.install_certificate(
                station_version(station), use=wire.CSMS_ROOT, certificate_pem=certificate.certificate_pem
            )
        except (Conflict, ValidationFailed) as exc:
            refused[station.identity] = str(exc)
            continue
        command = command_send(station=station, call=call, requested_by=actor, source=CommandSource.JOB)
        status = (command.response or {}).get("status") if command.status == CommandStatus.ANSWERED else None
        if status == "Accepted":
            accepted.append(station.identity)
        else:
            refused[station.identity] = (
                status or command.error_description or command.error_code or command.status
            )
    audit_record(
        actor=actor,
        action=AUDIT_ROOT_ROLLOUT,
        obj=certificate,
        organisation_id=organisation.pk,
        changes={
            "accepted": len(accepted),
            "refused": refused,
            "fingerprint": fingerprint(certificate.certificate_pem),
        },
    )
    return RolloutReport(accepted=accepted, refused=refused)


def station_certificate_list(*, station: ChargingStation) -> Any:
    return StationCertificate.objects.filter(station=station).select_related("issued_by")
