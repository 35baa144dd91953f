"""Contract certificates for ISO 15118 Plug&Charge: who installs and updates them in the car.

A car asks for its contract certificate (ISO 15118-2 CertificateInstallationReq / CertificateUpdateReq); the
charging station forwards the EXI bytes base64-encoded (OCPP 2.0.1 Get15118EVCertificate, or the 1.6
DataTransfer of the OCA application note), and the CSMS hands them to a contract-certificate provider (a
Plug&Charge ecosystem such as Hubject's, or the mobility operator itself) and returns its EXI answer.

We do not encode or decode ISO 15118 EXI. The providers here:
- `TestMobilityOperatorProvider` (built in, for demos and tests): backed by a test mobility-operator root CA
  of the organisation (a `CertificateAuthority` with purpose mo_root whose key we hold). It treats the
  request as opaque bytes (checked to be base64 and within the size OCPP allows), issues a contract
  certificate for an eMAID derived from those bytes, and answers with a PKCS#7 (certs-only, DER) bundle of
  that certificate and the MO root, base64-encoded. That is NOT a CertificateInstallationRes: a real car
  needs a provider that speaks ISO 15118 EXI (and encrypts the contract key for the car).
- `HubjectProvider`: the place a Hubject-style adapter goes. It is not built: every call raises
  `ProviderNotConfigured`, so a station is answered Failed, never a fake success.

Which one an organisation uses: settings.PNC_CONTRACT_PROVIDER ("builtin", the default, or "hubject").
"""

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
from django.conf import settings

from cpms.secret_box import secret_decrypt, secret_encrypt
from stations.enums import CertificateAuthorityPurpose
from stations.models import CertificateAuthority
from stations.services.certificates import ca_certificate_self_signed

# Get15118EVCertificateRequest.exiRequest is at most 5600 characters (OCPP 2.0.1 schema); the 1.6
# application note carries the same message, so the same bound holds there.
EXI_REQUEST_MAX_CHARS = 5600
# The CertificateAuthority.private_key_encrypted purpose (stations.models; cpms.secret_box).
CA_KEY_PURPOSE = "cpms.ca-key.v1"
CONTRACT_VALIDITY = timedelta(days=365)
ISO15118_SCHEMA_VERSIONS = frozenset(
    {"urn:iso:15118:2:2013:MsgDef", "urn:iso:std:iso:15118:-20:CommonMessages"}
)
CERTIFICATE_ACTIONS = frozenset({"Install", "Update"})


class ContractCertificateError(Exception):
    """The provider could not produce an answer; `message` says why (shown in statusInfo, logged)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ProviderNotConfigured(ContractCertificateError):
    pass


@dataclass(frozen=True, slots=True)
class EvCertificateAnswer:
    exi_response_b64: str
    # What was installed, for the audit trail (the built-in provider; an external one may not say).
    emaid: str = ""
    serial_number_hex: str = ""


class ContractCertificateProvider(Protocol):
    name: str

    def ev_certificate(
        self, *, organisation_id: int, iso15118_schema_version: str, action: str, exi_request: bytes
    ) -> EvCertificateAnswer:
        """The EXI answer to a car's CertificateInstallationReq (action Install) or CertificateUpdateReq
        (Update), both as raw bytes in, base64 out. Raises ContractCertificateError."""
        ...

    def trust_anchors(self, *, organisation_id: int) -> list[x509.Certificate]:
        """The mobility-operator roots this provider's contract certificates chain to."""
        ...


def exi_request_decode(exi_request: str) -> bytes:
    """The raw bytes of a station's base64 `exiRequest`; ContractCertificateError when it is empty, too long
    or not base64 (nothing else is assumed about its content)."""
    if not isinstance(exi_request, str) or not exi_request:
        raise ContractCertificateError("exiRequest is empty.")
    if len(exi_request) > EXI_REQUEST_MAX_CHARS:
        raise ContractCertificateError(f"exiRequest is longer than {EXI_REQUEST_MAX_CHARS} characters.")
    try:
        raw = base64.b64decode(exi_request, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ContractCertificateError("exiRequest is not base64.") from exc
    if not raw:
        raise ContractCertificateError("exiRequest is empty.")
    return raw


# --- the test mobility operator -----------------------------------------------------------------
def mo_ca_for_tests_create(
    *, organisation_id: int, name: str = "Test mobility operator root"
) -> CertificateAuthority:
    """A self-signed mobility-operator root (EC P-256) for demos and tests, its key encrypted at rest. Its
    contract certificates are not trusted by any real car or charger."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CPMS test MO"),
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "MO"),
        ]
    )
    # No path length: a mobility operator signs through sub-CAs.
    certificate = ca_certificate_self_signed(key=key, subject=subject, valid_days=3650, path_length=None)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return CertificateAuthority.objects.create(
        organisation_id=organisation_id,
        name=name,
        purpose=CertificateAuthorityPurpose.MO_ROOT,
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        private_key_encrypted=secret_encrypt(key_pem, purpose=CA_KEY_PURPOSE),
        not_after=certificate.not_valid_after_utc,
    )


def ca_signer(ca: CertificateAuthority) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA's certificate and key; ContractCertificateError when we hold no (readable) key for it."""
    key_pem = secret_decrypt(ca.private_key_encrypted, purpose=CA_KEY_PURPOSE)
    if not key_pem:
        raise ContractCertificateError(f"No signing key is held for {ca.name!r}.")
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ContractCertificateError(f"{ca.name!r} does not hold an EC key.")
    return x509.load_pem_x509_certificate(ca.certificate_pem.encode()), key


def contract_certificate_issue(
    *,
    ca: CertificateAuthority,
    emaid: str,
    public_key: ec.EllipticCurvePublicKey,
    ocsp_url: str = "",
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    serial_number: int | None = None,
) -> x509.Certificate:
    """A contract certificate for `emaid` (ISO 15118-2 Annex F: the eMAID is the subject CN), signed by
    `ca`, naming `ocsp_url` as its OCSP responder (Authority Information Access) when given."""
    issuer, key = ca_signer(ca)
    start = not_before or datetime.now(UTC) - timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, emaid),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CPMS test MO"),
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                ]
            )
        )
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(serial_number or x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after or start + CONTRACT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
    )
    if ocsp_url:
        builder = builder.add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
                    )
                ]
            ),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256())


def emaid_for_request(exi_request: bytes) -> str:
    """The eMAID the built-in provider gives a request: "ZZ" (no country), provider "TMO", "C", and eight
    characters from the request's digest (the same request, the same eMAID). No check digit."""
    return "ZZTMOC" + hashlib.sha256(exi_request).hexdigest()[:8].upper()


class TestMobilityOperatorProvider:
    """The built-in provider: the organisation's newest active MO root whose key we hold signs a contract
    certificate for the car, and the answer is a PKCS#7 certs-only bundle (contract certificate, MO root).

    The contract key pair is derived from the request's digest, so the same request gets the same key (and
    eMAID); its private key is not returned (ISO 15118 would encrypt it for the car: not done here)."""

    name = "builtin"
    __test__ = False  # not a pytest test class, whatever its name

    def _ca(self, organisation_id: int) -> CertificateAuthority:
        ca = (
            CertificateAuthority.objects.filter(
                organisation_id=organisation_id, purpose=CertificateAuthorityPurpose.MO_ROOT, active=True
            )
            .exclude(private_key_encrypted="")
            .order_by("-created_at", "-pk")
            .first()
        )
        if ca is None:
            raise ProviderNotConfigured(
                "No test mobility-operator CA (an active mo_root authority with a key) in this organisation."
            )
        return ca

    def ev_certificate(
        self, *, organisation_id: int, iso15118_schema_version: str, action: str, exi_request: bytes
    ) -> EvCertificateAnswer:
        ca = self._ca(organisation_id)
        digest = hashlib.sha256(b"cpms-test-mo:" + exi_request).digest()
        # A private scalar in [1, n-1] from the digest (P-256's order n is just below 2**256).
        scalar = int.from_bytes(digest, "big") % (2**255) + 1
        contract_key = ec.derive_private_key(scalar, ec.SECP256R1())
        emaid = emaid_for_request(exi_request)
        certificate = contract_certificate_issue(
            ca=ca,
            emaid=emaid,
            public_key=contract_key.public_key(),
            ocsp_url=getattr(settings, "PNC_TEST_MO_OCSP_URL", ""),
        )
        root = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
        bundle = pkcs7.serialize_certificates([certificate, root], serialization.Encoding.DER)
        return EvCertificateAnswer(
            exi_response_b64=base64.b64encode(bundle).decode(),
            emaid=emaid,
            serial_number_hex=format(certificate.serial_number, "X"),
        )

    def trust_anchors(self, *, organisation_id: int) -> list[x509.Certificate]:
        return [x509.load_pem_x509_certificate(self._ca(organisation_id).certificate_pem.encode())]


class HubjectProvider:
    """Where a Hubject-style Plug&Charge adapter goes (its contract-certificate pool answers
    CertificateInstallationReq with a signed CertificateInstallationRes, both EXI). Not built: each call
    raises ProviderNotConfigured so that a station is answered Failed, never a made-up success.

    To build it: an HTTPS client with the operator's credentials (client certificate or OAuth token) that
    sends the base64 EXI request with the schema version and action, and returns the base64 EXI response;
    the MO roots come from the ecosystem's root-certificate pool and are installed as mo_root authorities."""

    name = "hubject"

    def ev_certificate(
        self, *, organisation_id: int, iso15118_schema_version: str, action: str, exi_request: bytes
    ) -> EvCertificateAnswer:
        raise ProviderNotConfigured("The Hubject contract-certificate provider is not configured.")

    def trust_anchors(self, *, organisation_id: int) -> list[x509.Certificate]:
        raise ProviderNotConfigured("The Hubject contract-certificate provider is not configured.")


PROVIDERS: dict[str, type] = {"builtin": TestMobilityOperatorProvider, "hubject": HubjectProvider}


def contract_certificate_provider(*, organisation_id: int) -> ContractCertificateProvider:
    """The provider `organisation_id` uses (today one for the whole installation: PNC_CONTRACT_PROVIDER)."""
    name = getattr(settings, "PNC_CONTRACT_PROVIDER", "builtin")
    provider = PROVIDERS.get(name)
    if provider is None:
        raise ProviderNotConfigured(f"Unknown contract-certificate provider {name!r}.")
    return provider()


def ev_certificate_answer_read(exi_response_b64: str) -> list[x509.Certificate]:
    """The certificates in a built-in provider's answer (tests, the simulator's EV)."""
    return pkcs7.load_der_pkcs7_certificates(base64.b64decode(exi_response_b64))
