"""Transport security at the handshake: what a charger's connection is (TLS or not, which client
certificate), what security profile it reaches, and whether its station may connect with that
(docs/contract.md#security-profiles, docs/deployment.md#tls-and-mutual-tls).

How the server learns the transport:
- Behind a TLS terminator (nginx, docs/deployment.md): from `X-Forwarded-Proto`, `X-Forwarded-For`, the
  verified client certificate (`OCPP_CLIENT_CERT_HEADER`, URL-encoded PEM) and the terminator's verdict on it
  (`OCPP_CLIENT_VERIFY_HEADER`), believed ONLY when the peer's address is in `OCPP_TRUSTED_PROXIES`. From any
  other peer those headers are ignored and logged: anyone can send them.
- When the ASGI server itself terminates TLS, the scope's scheme is "wss"; the client certificate is read from
  the ASGI TLS extension (`scope["extensions"]["tls"]["client_cert_chain"]`) when the server fills it in.
  Daphne does not, so mutual TLS (profile 3) needs the terminator there.

Profiles (OCPP 1.6 security whitepaper section 2 and OCPP 2.0.1 Part 2 A00): 1 is HTTP Basic over ws or wss;
2 is TLS and HTTP Basic; 3 is TLS with a client certificate, no password. A connection reaches the highest
profile its transport and credentials make, and is refused when that is below what the station requires: its
configured profile, and the highest it was ever seen at (`security_profile_seen`, raised by
`station_profile_seen_raise`).

Nothing here is awaited: the consumer calls these in a worker thread (`run_db`) or directly (pure ones).
"""

import hashlib
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from accounts.models import User
from cpms.errors import Conflict, ValidationFailed
from cpms.ocpp_wire import operations
from cpms.ocpp_wire.calls import Call, call_checked
from stations.enums import (
    CertificateAuthorityPurpose,
    CertificateStatus,
    CertificateUse,
    CommandSource,
    CommandStatus,
)
from stations.models import CertificateAuthority, ChargingStation, Command, StationCertificate
from stations.services.commands import command_send, station_version

logger = logging.getLogger(__name__)

# The terminator's verdict when the client certificate verified (nginx $ssl_client_verify), and when the
# client sent none.
VERIFY_SUCCESS = "SUCCESS"
VERIFY_NONE = "NONE"
# Headers nobody but a trusted terminator may set (lower case, as ASGI gives them).
FORWARDED_PROTO = b"x-forwarded-proto"
FORWARDED_FOR = b"x-forwarded-for"
# A PEM certificate is a few kilobytes; a header far larger than that is not one (and is not parsed).
MAX_CERT_HEADER_BYTES = 16 * 1024
ORGANIZATION_NAME_MAX = 64


@dataclass(frozen=True, slots=True)
class Transport:
    """The transport of one handshake, as far as the server can trust what it is told.

    `client_cert_pem`: the leaf certificate the client authenticated with in the TLS handshake (empty: none).
    `verify`: the terminator's verdict on it ("" when the ASGI server terminated TLS itself).
    `remote_addr`: the charger's address (the terminator's X-Forwarded-For when it is trusted).
    `ignored`: forwarded headers an untrusted peer sent, which were ignored.
    """

    tls: bool
    remote_addr: str
    client_cert_pem: str = ""
    verify: str = ""
    via_proxy: bool = False
    ignored: tuple[str, ...] = ()

    @property
    def certificate_presented(self) -> bool:
        return bool(self.client_cert_pem) or self.verify not in ("", VERIFY_NONE)


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def proxy_trusted(address: str) -> bool:
    """Whether `address` is one of OCPP_TRUSTED_PROXIES (IPs or CIDRs)."""
    entries = tuple(settings.OCPP_TRUSTED_PROXIES)
    if not entries or not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # a unix socket path, or nothing: not an address we were told to trust
    return any(ip in network for network in _networks(entries))


def _header_name(setting: str) -> bytes:
    return setting.strip().lower().encode("latin-1")


def transport_of(scope: Mapping[str, Any]) -> Transport:
    """The transport of a WebSocket handshake (an ASGI scope). Pure but for a log line: forwarded headers
    from an untrusted peer are ignored and logged (they would let anyone claim TLS or a certificate)."""
    peer = (scope.get("client") or ["", 0])[0] or ""
    headers: dict[bytes, bytes] = {}
    for name, value in scope.get("headers") or []:
        headers.setdefault(bytes(name).lower(), bytes(value))
    cert_header = _header_name(settings.OCPP_CLIENT_CERT_HEADER)
    verify_header = _header_name(settings.OCPP_CLIENT_VERIFY_HEADER)
    forwarded = (FORWARDED_PROTO, FORWARDED_FOR, cert_header, verify_header)
    own_tls = scope.get("scheme") == "wss"
    own_cert = _asgi_tls_certificate(scope)

    if not proxy_trusted(peer):
        ignored = tuple(name.decode("latin-1") for name in forwarded if name in headers)
        if ignored:
            logger.warning(
                "handshake from %s, which is not in OCPP_TRUSTED_PROXIES: ignored %s",
                peer,
                ", ".join(ignored),
            )
        return Transport(
            tls=own_tls,
            remote_addr=peer,
            client_cert_pem=own_cert,
            ignored=ignored,
        )

    proto = headers.get(FORWARDED_PROTO, b"").decode("latin-1").strip().lower()
    # The terminator appends the address it saw to the list (nginx $proxy_add_x_forwarded_for): the last
    # entry is the one it vouches for, anything before it came from the client.
    hops = [hop.strip() for hop in headers.get(FORWARDED_FOR, b"").decode("latin-1").split(",")]
    remote = hops[-1] if hops and hops[-1] else peer
    cert_pem = ""
    raw_cert = headers.get(cert_header, b"")
    if raw_cert and len(raw_cert) <= MAX_CERT_HEADER_BYTES:
        cert_pem = unquote(raw_cert.decode("latin-1")).strip()
    verify = headers.get(verify_header, b"").decode("latin-1").strip()
    return Transport(
        tls=proto in ("https", "wss") or own_tls,
        remote_addr=remote[:64],
        client_cert_pem=cert_pem or own_cert,
        verify=verify[:200],
        via_proxy=True,
    )


def _asgi_tls_certificate(scope: Mapping[str, Any]) -> str:
    """The client's leaf certificate from the ASGI TLS extension, for servers that terminate TLS themselves
    and fill it in (Daphne does not)."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    return str(chain[0]).strip() if chain else ""


# --- the station's side ---------------------------------------------------------------------------


def profile_required(*, security_profile: int, security_profile_seen: int) -> int:
    """The least profile a station is accepted at: what it is configured for, and never less than it was once
    seen at (docs/contract.md#security-profiles)."""
    return max(security_profile, security_profile_seen)


def station_profile_seen_raise(*, station_id: int, profile: int) -> bool:
    """Record that the station connected at `profile`. A conditional UPDATE: two connections racing, or
    a lower one arriving late, never lower it. True when it was raised."""
    return (
        ChargingStation.objects.filter(pk=station_id, security_profile_seen__lt=profile).update(
            security_profile_seen=profile
        )
        == 1
    )


# --- the client certificate (security profile 3) ------------------------------------------------------


def _issuer_name_hash(certificate: x509.Certificate) -> str:
    """The inventory's issuer_name_hash (OCPP CertificateHashData, SHA256 of the issuer's DER name, hex)."""
    return hashlib.sha256(certificate.issuer.public_bytes()).hexdigest()


def _serial_hex(certificate: x509.Certificate) -> str:
    # The inventory's serial_number: hex, lower case, without leading zeroes (1.6 security whitepaper ed. 3).
    return format(certificate.serial_number, "x")


def _names(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(attribute.value) for attribute in name.get_attributes_for_oid(oid)]


def _parse(pem: str) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return None


@dataclass(frozen=True, slots=True)
class _Authority:
    certificate: x509.Certificate
    organisation_name: str
    revoked: bool  # the presented certificate's serial is revoked in the inventory under this issuer name


def certificate_refusal(
    *,
    pem: str,
    identity: str,
    authorities: list[_Authority],
    now: datetime,
    verify: str = "",
) -> str:
    """Why a profile-3 client certificate is refused ("" when it is not), given the organisation's active
    charging-station CAs. OCPP 1.6 security whitepaper / 2.0.1 A00.FR.403-405 and 407: the certification path
    to a CA the operator trusts, within validity (RFC 5280 section 6), not revoked, the subject's O the
    operator's name and its CN the station's identity."""
    certificate = _parse(pem)
    if certificate is None:
        return "unreadable client certificate"
    issuer = next(
        (
            authority
            for authority in authorities
            if authority.certificate.subject == certificate.issuer and _signed_by(certificate, authority)
        ),
        None,
    )
    if issuer is None:
        return (
            f"not issued by a CA the organisation trusts (issuer {certificate.issuer.rfc4514_string()[:150]})"
        )
    ca = issuer.certificate
    if not ca.not_valid_before_utc <= now <= ca.not_valid_after_utc:
        return f"the issuing CA is outside its validity ({ca.subject.rfc4514_string()[:150]})"
    if now < certificate.not_valid_before_utc:
        return f"not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"
    if now > certificate.not_valid_after_utc:
        return f"expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
    if issuer.revoked:
        return f"revoked (serial {_serial_hex(certificate)})"
    if _is_ca(certificate):
        return "a CA certificate, not a charging station's"
    if not _client_auth_allowed(certificate):
        return "its extended key usage does not allow TLS client authentication"
    common_names = _names(certificate.subject, NameOID.COMMON_NAME)
    if common_names != [identity]:
        shown = ", ".join(common_names) or "none"
        return f"subject CN {shown[:100]!r} is not the station identity {identity!r}"
    organisations = _names(certificate.subject, NameOID.ORGANIZATION_NAME)
    # An organizationName holds at most 64 characters (RFC 5280 ub-organization-name): a longer operator name
    # is signed cut there (stations.services.certificates), and compared so.
    operator = issuer.organisation_name[:ORGANIZATION_NAME_MAX]
    if operator not in organisations:
        shown = ", ".join(organisations) or "none"
        return f"subject O {shown[:100]!r} is not the operator {operator!r}"
    if verify and verify != VERIFY_SUCCESS:
        # Our checks passed but the terminator's did not (a CA it does not list, a chain it could not build):
        # the two must agree before a certificate is believed.
        return f"the TLS terminator did not verify it ({verify[:100]})"
    return ""


def _signed_by(certificate: x509.Certificate, authority: _Authority) -> bool:
    try:
        certificate.verify_directly_issued_by(authority.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _client_auth_allowed(certificate: x509.Certificate) -> bool:
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True  # no restriction
    return ExtendedKeyUsageOID.CLIENT_AUTH in usages or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages


def station_certificate_check(
    *, organisation_id: int, identity: str, pem: str, verify: str, now: datetime
) -> str:
    """Why the station's client certificate is refused ("" when accepted): one query for the organisation's
    active charging-station CAs, each with whether the inventory holds the presented serial as revoked under
    its name (StationCertificate, status revoked; the CA's own revocations are recorded there)."""
    certificate = _parse(pem)
    if certificate is None:
        return "unreadable client certificate" if pem else f"no client certificate ({verify[:100] or 'none'})"
    revoked = StationCertificate.objects.filter(
        organisation_id=OuterRef("organisation_id"),
        status=CertificateStatus.REVOKED,
        issuer_name_hash=_issuer_name_hash(certificate),
        serial_number=_serial_hex(certificate),
    )
    rows = (
        CertificateAuthority.objects.filter(
            organisation_id=organisation_id,
            purpose=CertificateAuthorityPurpose.CHARGING_STATION,
            active=True,
        )
        .annotate(revoked=Exists(revoked), organisation_name=F("organisation__name"))
        .values_list("certificate_pem", "organisation_name", "revoked")
    )
    authorities = []
    for ca_pem, organisation_name, is_revoked in rows:
        ca = _parse(ca_pem)
        if ca is None:
            logger.error(
                "organisation %s: a charging-station CA's certificate does not parse", organisation_id
            )
            continue
        authorities.append(_Authority(ca, organisation_name, is_revoked))
    return certificate_refusal(pem=pem, identity=identity, authorities=authorities, now=now, verify=verify)


# --- the security-profile upgrade (OCPP 2.0.1 A05, 1.6 security whitepaper A05) ------------------------------

UPGRADE_TARGETS = (2, 3)
# The answers that let the upgrade go on: the value is stored (RebootRequired: in effect after the Reset that
# follows), the reset is done or will be once idle.
UPGRADE_GOES_ON = frozenset({"Accepted", "RebootRequired", "Scheduled"})


@dataclass(frozen=True)
class ProfileUpgrade:
    """What an upgrade started: the commands sent in order, and whether the charger took every one
    (`started`; it then reconnects at `target`, and the handshake holds it there) or which it refused."""

    target: int
    started: bool
    commands: tuple[Command, ...]  # in the order sent
    refused: str = ""  # the action the charger did not take, when not started


def upgrade_csms_url() -> str:
    """Where a 2.0.1 charger connects after the upgrade (NetworkConnectionProfile.ocppCsmsUrl, without the
    identity: the charger appends it): OCPP_TLS_URL, else CPMS_PUBLIC_URL with wss://."""
    if settings.OCPP_TLS_URL:
        return settings.OCPP_TLS_URL.rstrip("/") + "/"
    base = settings.CPMS_PUBLIC_URL.split("://", 1)[-1]
    return f"wss://{base}/ocpp/"


def security_profile_upgrade_check(*, station: ChargingStation, target: int, now: datetime) -> None:
    """The upgrade's prerequisites, or ValidationFailed / Conflict saying which is missing. A lower profile is
    never set over OCPP (1.6 security whitepaper A00.FR.005; 2.0.1 A05 remark)."""
    if target not in UPGRADE_TARGETS:
        raise ValidationFailed("The upgrade goes to security profile 2 or 3.")
    current = profile_required(
        security_profile=station.security_profile, security_profile_seen=station.security_profile_seen
    )
    if target <= current:
        raise ValidationFailed(
            f"Station {station.identity!r} is at security profile {current} already; a profile is never "
            "lowered over OCPP."
        )
    if target == 2 and not station.password_hash:
        raise ValidationFailed(
            "Security profile 2 authenticates with HTTP Basic: set the station's password first."
        )
    if target == 3:
        valid = StationCertificate.objects.filter(
            station=station,
            use=CertificateUse.CHARGING_STATION,
            status=CertificateStatus.ACTIVE,
            not_before__lte=now,
            not_after__gt=now,
        ).exists()
        if not valid:
            raise ValidationFailed(
                "Security profile 3 needs a valid ChargingStationCertificate on the station (SignCertificate, "
                "then CertificateSigned): none is active in its inventory."
            )
    if not station.is_connected or not station.protocol:
        raise Conflict(f"Station {station.identity!r} is not connected.")


def security_profile_upgrade_calls(
    *, version: str, target: int, csms_url: str, configuration_slot: int
) -> list[Call]:
    """The calls of the upgrade, in order (cpms.ocpp_wire.calls.Call, schema-checked).

    1.6 (security whitepaper A05): ChangeConfiguration SecurityProfile; the charger then reconnects at it.
    2.0.1 (A05, B09): SetNetworkProfile (a connection profile with the new securityProfile in
    `configuration_slot`), SetVariables OCPPCommCtrlr.NetworkConfigurationPriority (that slot first), Reset
    OnIdle: after the reset the charger connects with the new profile and removes the lower ones (A05.FR.06)."""
    if version == "1.6":
        return operations.set_configuration(version, values=[("SecurityProfile", str(target))])
    network_profile = Call(
        "SetNetworkProfile",
        {
            "configurationSlot": configuration_slot,
            "connectionData": {
                "ocppVersion": "OCPP20",
                "ocppTransport": "JSON",
                "ocppCsmsUrl": csms_url,
                "messageTimeout": 30,
                "securityProfile": target,
                "ocppInterface": "Wired0",
            },
        },
    )
    return [
        call_checked(version, network_profile),
        *operations.set_configuration(
            version, values=[("OCPPCommCtrlr.NetworkConfigurationPriority", str(configuration_slot))]
        ),
        operations.reset(version, kind="on_idle"),
    ]


def security_profile_upgrade(
    *,
    station: ChargingStation,
    target: int,
    actor: User | None,
    csms_url: str | None = None,
    configuration_slot: int = 1,
) -> ProfileUpgrade:
    """Start the upgrade of a connected station to `target` (2 or 3), from the API or the portal: its
    prerequisites checked (security_profile_upgrade_check: nothing is sent when one is missing), then each call
    sent and waited for, stopping at the first the charger does not take. The station's configured profile is
    not changed here: when the charger reconnects at `target`, the handshake records it as seen and never
    accepts less again; if it never does, it goes on connecting as before."""
    security_profile_upgrade_check(station=station, target=target, now=timezone.now())
    calls = security_profile_upgrade_calls(
        version=station_version(station),
        target=target,
        csms_url=csms_url or upgrade_csms_url(),
        configuration_slot=configuration_slot,
    )
    sent = []
    for call in calls:
        command = command_send(station=station, call=call, requested_by=actor, source=CommandSource.API)
        sent.append(command)
        if command.status != CommandStatus.ANSWERED or not _upgrade_goes_on(command.response):
            return ProfileUpgrade(target=target, started=False, commands=tuple(sent), refused=call.action)
    logger.info("%s: security profile upgrade to %s started", station.identity, target)
    return ProfileUpgrade(target=target, started=True, commands=tuple(sent))


def _upgrade_goes_on(response: object) -> bool:
    if not isinstance(response, dict):
        return False
    if "setVariableResult" in response:  # 2.0.1 SetVariables: one result per variable
        results = response["setVariableResult"]
        return bool(results) and all(item.get("attributeStatus") in UPGRADE_GOES_ON for item in results)
    return response.get("status") in UPGRADE_GOES_ON
