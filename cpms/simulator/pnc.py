"""Plug&Charge for the simulator: an EV with a contract certificate, and a mobility operator's OCSP responder.

- `ContractEv`: the car's side. It holds its contract certificate (PEM, eMAID in the CN) and the chain up to
  (not including) the MO root, and makes the station's requests for it: a 2.0.1 Authorize with the OCSP hash
  data (the station validated the chain itself: C07.FR.01) or with the certificate (central contract
  validation: C07.FR.06), and the same as a 1.6 DataTransfer of the OCA application note
  (vendorId org.openchargealliance.iso15118pnc, the 2.0.1 request as a JSON string in `data`).
- `OcspResponder`: a real OCSP responder (RFC 6960 over HTTP POST) for one CA, built on `cryptography`'s
  OCSPResponseBuilder and served by http.server in a thread: it answers good, revoked (serials marked with
  `revoke`) or unknown (another issuer), signed by the CA, with a nextUpdate. It counts the requests it
  served (`requests_served`), so a test can tell a cached answer from a fresh one.

No Django here (the simulator runs without it). The ISO 15118 side (EXI between car and station) is not
simulated: the EV hands the station what the station would have read from it.

Plugging it into the simulated chargers (files this module does not own):
- cpms/simulator/charger_v201.py, ChargerV201: `async def authorize_contract(self, ev, *, with_certificate=False)`
  -> `result = await self._call(call.Authorize(**ev.authorize_v201_kwargs(with_certificate=with_certificate)))`
  returning `(result.id_token_info["status"], result.certificate_status)`.
- cpms/simulator/charger_v16.py, ChargerV16: `async def authorize_contract(self, ev, *, with_certificate=False)`
  -> `result = await self._call(call.DataTransfer(**ev.authorize_v16_kwargs(with_certificate=with_certificate)))`
  then `ev.authorize_v16_answer(result.status, result.data)`.
- a `--pnc-emaid`/`--pnc-certificate` option of `manage.py simulate` (cpms/simulator/config.py) building a
  ContractEv from files, used instead of the id tag when a session starts.
"""

import base64
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

PNC_VENDOR_ID = "org.openchargealliance.iso15118pnc"
OCSP_REQUEST_MAX_BYTES = 16 * 1024


def ocsp_request_data(certificate: x509.Certificate, issuer: x509.Certificate, responder_url: str) -> dict:
    """OCPP OCSPRequestDataType for `certificate` (SHA256 hashes of the issuer's name and key, hex serial)."""
    request = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, hashes.SHA256()).build()
    return {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": request.issuer_name_hash.hex(),
        "issuerKeyHash": request.issuer_key_hash.hex(),
        "serialNumber": format(certificate.serial_number, "X"),
        "responderURL": responder_url,
    }


def ocsp_url(certificate: x509.Certificate) -> str:
    try:
        access = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return ""
    for description in access:
        if description.access_method == AuthorityInformationAccessOID.OCSP:
            return str(description.access_location.value)
    return ""


@dataclass
class ContractEv:
    """A car with a contract: its eMAID, its contract certificate and the certificates between it and the MO
    root (leaf first; empty when the root signed the contract directly), and the MO root it chains to."""

    emaid: str
    certificate: x509.Certificate
    issuer: x509.Certificate
    intermediates: list[x509.Certificate] = field(default_factory=list)

    @property
    def certificate_pem(self) -> str:
        chain = [self.certificate, *self.intermediates]
        return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain)

    def hash_data(self) -> list[dict]:
        """iso15118CertificateHashData: the contract certificate (and each sub-CA) as OCSPRequestData."""
        chain = [self.certificate, *self.intermediates]
        issuers = [*self.intermediates, self.issuer]
        return [
            ocsp_request_data(c, i, ocsp_url(c)) for c, i in zip(chain, issuers, strict=True) if ocsp_url(c)
        ]

    def authorize_v201(self, *, with_certificate: bool = False) -> dict:
        """The 2.0.1 AuthorizeRequest payload (camelCase, as on the wire)."""
        payload: dict = {"idToken": {"idToken": self.emaid, "type": "eMAID"}}
        if with_certificate:
            payload["certificate"] = self.certificate_pem
        else:
            payload["iso15118CertificateHashData"] = self.hash_data()
        return payload

    def authorize_v201_kwargs(self, *, with_certificate: bool = False) -> dict:
        """The same for the `ocpp` package's call.Authorize (snake_case keyword arguments)."""
        payload = self.authorize_v201(with_certificate=with_certificate)
        kwargs: dict = {"id_token": {"id_token": self.emaid, "type": "eMAID"}}
        if "certificate" in payload:
            kwargs["certificate"] = payload["certificate"]
        else:
            kwargs["iso15118_certificate_hash_data"] = [
                {
                    "hash_algorithm": d["hashAlgorithm"],
                    "issuer_name_hash": d["issuerNameHash"],
                    "issuer_key_hash": d["issuerKeyHash"],
                    "serial_number": d["serialNumber"],
                    "responder_url": d["responderURL"],
                }
                for d in payload["iso15118CertificateHashData"]
            ]
        return kwargs

    def authorize_v16(self, *, with_certificate: bool = False) -> dict:
        """The 1.6 DataTransfer.req payload (OCA application note): the 2.0.1 request as a JSON string."""
        return {
            "vendorId": PNC_VENDOR_ID,
            "messageId": "Authorize",
            "data": json.dumps(self.authorize_v201(with_certificate=with_certificate)),
        }

    def authorize_v16_kwargs(self, *, with_certificate: bool = False) -> dict:
        payload = self.authorize_v16(with_certificate=with_certificate)
        return {"vendor_id": payload["vendorId"], "message_id": payload["messageId"], "data": payload["data"]}

    @staticmethod
    def authorize_v16_answer(status: str, data: str | None) -> tuple[str, str | None]:
        """(idTokenInfo.status, certificateStatus) from a DataTransfer.conf; ("Rejected", None) when the
        CSMS refused the request itself."""
        if status != "Accepted" or not data:
            return "Rejected", None
        answer = json.loads(data)
        return answer["idTokenInfo"]["status"], answer.get("certificateStatus")


class OcspResponder:
    """An OCSP responder for `issuer` (signing with `issuer_key`) on 127.0.0.1, in a thread.

    `revoke(serial)` marks a certificate revoked; requests about another issuer are answered `unknown`. The
    answer is signed by the CA itself (RFC 6960 4.2.2.2) and valid for `validity` (its nextUpdate)."""

    def __init__(self, issuer: x509.Certificate, issuer_key, *, validity: timedelta = timedelta(hours=1)):
        self.issuer = issuer
        self.issuer_key = issuer_key
        self.validity = validity
        self.revoked: dict[int, datetime] = {}
        self.requests_served = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/ocsp"

    def revoke(self, serial_number: int, at: datetime | None = None) -> None:
        self.revoked[serial_number] = at or datetime.now(UTC) - timedelta(minutes=1)

    def start(self) -> "OcspResponder":
        responder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # http.server's name for it
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 < length <= OCSP_REQUEST_MAX_BYTES:
                    self.send_error(400)
                    return
                body = responder.answer(self.rfile.read(length))
                self.send_response(200)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):  # quiet in tests
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="ocsp-responder",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def answer(self, request_der: bytes) -> bytes:
        """The DER OCSPResponse for one DER OCSPRequest."""
        with self._lock:
            self.requests_served += 1
        try:
            request = ocsp.load_der_ocsp_request(request_der)
        except ValueError:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.MALFORMED_REQUEST
            ).public_bytes(serialization.Encoding.DER)
        algorithm = request.hash_algorithm
        probe = ocsp.OCSPRequestBuilder().add_certificate(self.issuer, self.issuer, algorithm).build()
        name_hash = hashes.Hash(algorithm)
        name_hash.update(self.issuer.subject.public_bytes())
        ours = (
            request.issuer_key_hash == probe.issuer_key_hash
            and request.issuer_name_hash == name_hash.finalize()
        )
        now = datetime.now(UTC).replace(microsecond=0)
        revoked_at = self.revoked.get(request.serial_number)
        if not ours:
            status, revocation_time, reason = ocsp.OCSPCertStatus.UNKNOWN, None, None
        elif revoked_at is not None:
            status, revocation_time, reason = (
                ocsp.OCSPCertStatus.REVOKED,
                revoked_at.replace(microsecond=0),
                x509.ReasonFlags.key_compromise,
            )
        else:
            status, revocation_time, reason = ocsp.OCSPCertStatus.GOOD, None, None
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                issuer_name_hash=request.issuer_name_hash,
                issuer_key_hash=request.issuer_key_hash,
                serial_number=request.serial_number,
                algorithm=algorithm,
                cert_status=status,
                this_update=now,
                next_update=now + self.validity,
                revocation_time=revocation_time,
                revocation_reason=reason,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, self.issuer)
        )
        response = builder.sign(self.issuer_key, hashes.SHA256())
        return response.public_bytes(serialization.Encoding.DER)


def exi_request_for(emaid_hint: str) -> str:
    """A stand-in for a car's base64 CertificateInstallationReq (bytes the built-in provider does not parse)."""
    return base64.b64encode(b"EXI-CertificateInstallationReq:" + emaid_hint.encode()).decode()
