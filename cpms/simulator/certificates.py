"""The certificates a simulated charger keeps, in memory: the 1.6 security whitepaper's and 2.0.1's
InstallCertificate, GetInstalledCertificateIds, DeleteCertificate and CertificateSigned.

A certificate is named by its CertificateHashData (OCPP 2.0.1 2.6; the whitepaper alike): SHA256 hashes
of the issuer's DER-encoded distinguished name and of the issuer's public key, and the serial number in
hexadecimal without leading zeroes. The simulator reads these from the X.509 structure itself (a few lines
of DER, no crypto library); the issuer's key is the certificate's own for a self-signed root, else that of
an installed certificate whose subject is the issuer. A PEM block it cannot parse still gets stable
stand-in values derived from its bytes, so that it can be listed and deleted. Nothing is verified: the
simulator accepts any root certificate that is PEM-encoded.

Its own certificate (security profile 3, A02 / whitepaper A02): asked by TriggerMessage
SignChargingStationCertificate (1.6: ExtendedTriggerMessage SignChargePointCertificate), the simulator
makes an EC P-256 key and a real PKCS#10 CSR with the `cryptography` library (`csr_new`: CN = its identity,
O = its operator's name), sends SignCertificate, and installs the chain CertificateSigned brings only when
the leaf holds the key it made (`accept_signed`); `client_files` writes the certificate and key for a TLS
client to reconnect with. The CSR is the only real cryptography here: roots are still taken as they come.
"""

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# The triggers that ask for a CSR (2.0.1 MessageTriggerEnumType; 1.6 whitepaper ExtendedTriggerMessage) ->
# the certificate type the store keeps the key and chain under (1.6's CertificateSigned names none).
SIGN_TRIGGERS = {
    "SignChargingStationCertificate": "ChargingStationCertificate",
    "SignV2GCertificate": "V2GCertificate",
    "SignChargePointCertificate": "ChargePointCertificate",
}

PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)
_SEQUENCE, _INTEGER, _BIT_STRING, _VERSION = 0x30, 0x02, 0x03, 0xA0


@dataclass(frozen=True)
class _Parsed:
    issuer: bytes
    subject: bytes
    serial: bytes
    public_key: bytes


@dataclass(frozen=True)
class InstalledCertificate:
    certificate_type: str
    pem: str
    # snake_case, as the `ocpp` package hands payloads over: hash_algorithm, issuer_name_hash, ...
    hash_data: dict


@dataclass
class CertificateStore:
    installed: list[InstalledCertificate] = field(default_factory=list)
    # The last chain received with CertificateSigned, by certificate type (1.6: "ChargePointCertificate").
    signed: dict[str, str] = field(default_factory=dict)
    # Keys made for a CSR, by certificate type, until a CertificateSigned for them arrives (PEM, PKCS#8).
    pending_keys: dict[str, str] = field(default_factory=dict)
    # The key of each installed signed certificate, by certificate type.
    keys: dict[str, str] = field(default_factory=dict)

    def install(self, certificate_type: str, pem: str) -> bool:
        """False when `pem` holds no PEM certificate. The same certificate installed twice is kept once."""
        blocks = pem_blocks(pem)
        if not blocks:
            return False
        data = hash_data(blocks[0], self._subject_keys())
        self.installed = [c for c in self.installed if c.hash_data != data]
        self.installed.append(InstalledCertificate(certificate_type, pem, data))
        return True

    def of_types(self, types: list[str] | None) -> list[InstalledCertificate]:
        return [c for c in self.installed if not types or c.certificate_type in types]

    def delete(self, data: dict) -> bool:
        """Delete the certificate named by `data` (a CertificateHashData); False when none is."""
        wanted = _key(data)
        kept = [c for c in self.installed if _key(c.hash_data) != wanted]
        found = len(kept) < len(self.installed)
        self.installed = kept
        return found

    def csr_new(self, certificate_type: str, *, identity: str, organization: str) -> str:
        """A new key for `certificate_type` and the PEM CSR of its public key (CN = identity, O =
        organization when given). The key waits for its certificate; the current one stays in use."""
        key = ec.generate_private_key(ec.SECP256R1())
        names = [x509.NameAttribute(NameOID.COMMON_NAME, identity)]
        if organization:
            names.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        csr = (
            x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names)).sign(key, hashes.SHA256())
        )
        self.pending_keys[certificate_type] = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    def accept_signed(self, certificate_type: str, chain: str) -> bool:
        """Install a signed chain. After a CSR of ours, only a chain whose leaf holds the key we made (the
        station keeps its old certificate otherwise); without one, any PEM chain (tests of the message)."""
        if not pem_blocks(chain):
            return False
        pending = self.pending_keys.get(certificate_type)
        if pending is not None:
            if not _holds_key(chain, pending):
                return False
            self.keys[certificate_type] = self.pending_keys.pop(certificate_type)
        self.signed[certificate_type] = chain
        return True

    def client_files(self, certificate_type: str, directory: Path) -> tuple[Path, Path] | None:
        """Write the installed certificate chain and its key for a TLS client (0600); None without one."""
        chain, key = self.signed.get(certificate_type), self.keys.get(certificate_type)
        if not chain or not key:
            return None
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / "client-cert.pem", directory / "client-key.pem"
        cert_path.write_text(chain)
        key_path.touch(mode=0o600)
        key_path.write_text(key)
        return cert_path, key_path

    def _subject_keys(self) -> dict[bytes, bytes]:
        keys = {}
        for certificate in self.installed:
            for block in pem_blocks(certificate.pem)[:1]:
                parsed = _parse(block)
                if parsed is not None:
                    keys[parsed.subject] = parsed.public_key
        return keys


def _holds_key(chain: str, key_pem: str) -> bool:
    try:
        leaf = x509.load_pem_x509_certificates(chain.encode())[0]
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, IndexError):
        return False
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return leaf.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


def pem_blocks(text: str) -> list[bytes]:
    """The DER bytes of each PEM certificate in `text` (a chain has several)."""
    blocks = []
    for body in PEM_BLOCK.findall(text or ""):
        try:
            blocks.append(base64.b64decode("".join(body.split()), validate=True))
        except (binascii.Error, ValueError):
            continue
    return blocks


def hash_data(der: bytes, subject_keys: dict[bytes, bytes] | None = None) -> dict:
    """The CertificateHashData of a DER certificate, snake_case."""
    parsed = _parse(der)
    if parsed is None:
        digest = hashlib.sha256(der).hexdigest()
        return {
            "hash_algorithm": "SHA256",
            "issuer_name_hash": hashlib.sha256(b"issuer-name:" + der).hexdigest(),
            "issuer_key_hash": hashlib.sha256(b"issuer-key:" + der).hexdigest(),
            "serial_number": digest[:40].lstrip("0") or "0",
        }
    issuer_key = parsed.public_key
    if parsed.issuer != parsed.subject:
        issuer_key = (subject_keys or {}).get(parsed.issuer, parsed.public_key)
    return {
        "hash_algorithm": "SHA256",
        "issuer_name_hash": hashlib.sha256(parsed.issuer).hexdigest(),
        "issuer_key_hash": hashlib.sha256(issuer_key).hexdigest(),
        "serial_number": parsed.serial.hex().lstrip("0") or "0",
    }


def _key(data: dict) -> tuple:
    return tuple(
        str(data.get(name, "")).lower()
        for name in ("hash_algorithm", "issuer_name_hash", "issuer_key_hash", "serial_number")
    )


def _parse(der: bytes) -> _Parsed | None:
    """Issuer and subject (whole DER TLVs), serial (content) and public key (the BIT STRING's bits,
    without the unused-bits octet, as RFC 6960 CertID hashes it) of an X.509 certificate."""
    try:
        [(tag, _, content, end)] = _items(der, 0, len(der))[:1]
        if tag != _SEQUENCE:
            return None
        tbs_tag, _, tbs_start, tbs_end = _items(der, content, end)[0]
        if tbs_tag != _SEQUENCE:
            return None
        fields = _items(der, tbs_start, tbs_end)
        if fields[0][0] == _VERSION:
            fields = fields[1:]
        serial, _signature, issuer, _validity, subject, key_info = fields[:6]
        if serial[0] != _INTEGER or issuer[0] != _SEQUENCE or subject[0] != _SEQUENCE:
            return None
        bit_string = next(item for item in _items(der, key_info[2], key_info[3]) if item[0] == _BIT_STRING)
    except (IndexError, ValueError, StopIteration):
        return None
    return _Parsed(
        issuer=der[issuer[1] : issuer[3]],
        subject=der[subject[1] : subject[3]],
        serial=der[serial[2] : serial[3]],
        public_key=der[bit_string[2] + 1 : bit_string[3]],
    )


def _items(der: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The TLVs in der[start:end]: (tag, header start, content start, content end)."""
    items = []
    position = start
    while position < end:
        tag = der[position]
        length = der[position + 1]
        content = position + 2
        if length & 0x80:
            count = length & 0x7F
            if not 1 <= count <= 4:
                raise ValueError("unsupported DER length")
            length = int.from_bytes(der[content : content + count], "big")
            content += count
        if content + length > end:
            raise ValueError("truncated DER")
        items.append((tag, position, content, content + length))
        position = content + length
    return items
