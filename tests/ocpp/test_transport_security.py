"""Security profiles enforced at the handshake (docs/contract.md#security-profiles): the consumer in-process,
with the scope a trusted TLS terminator (nginx, deploy/nginx/ocpp-tls.conf) would give it. The same rules
through a real nginx are in tests/e2e/test_tls_profiles.py, which also uses the PKI helpers here."""

import asyncio
import base64
import datetime as dt
import hashlib
import logging
import ssl
from urllib.parse import quote

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cpms.ocpp.routing import websocket_urlpatterns
from cpms.ocpp.throttle import handshake_throttle
from cpms.simulator.config import ChargerConfig, FleetConfig
from stations.enums import CertificateAuthorityPurpose, CertificateSource, CertificateStatus, CertificateUse
from stations.models import CertificateAuthority, ChargingStation, Command, SecurityEvent, StationCertificate
from stations.services.ocpp import station_auth_get
from stations.services.transport_security import (
    station_certificate_check,
    station_profile_seen_raise,
    transport_of,
)
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory, OrganisationFactory, SiteFactory

pytestmark = pytest.mark.django_db(transaction=True)

application = URLRouter(websocket_urlpatterns)
PROXY = "10.9.9.9"
CHARGER = "203.0.113.7"
NOW = dt.datetime.now(dt.UTC)


# --- a small PKI (also used by tests/e2e/test_tls_profiles.py) --------------------------------------------


def key_make() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def ca_make(
    common_name: str, *, organisation: str = "", days: int = 3650, start: dt.datetime | None = None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA certificate and its key."""
    key = key_make()
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organisation:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    name = x509.Name(attributes)
    start = start or NOW - dt.timedelta(days=1)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
    return certificate, key


def leaf_make(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    common_name: str,
    organisation: str | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    alt_names: list[x509.GeneralName] | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate signed by `ca`: a charging station's (CN the identity, O the operator), or with
    `alt_names` and serverAuth a server's."""
    key = key_make()
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organisation:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(hours=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def authority_trust(
    organisation, certificate: x509.Certificate, *, active: bool = True
) -> CertificateAuthority:
    """The organisation trusts `certificate` as its charging-station CA (a trust anchor: no key held)."""
    return CertificateAuthority.objects.create(
        organisation=organisation,
        name=certificate.subject.rfc4514_string(),
        purpose=CertificateAuthorityPurpose.CHARGING_STATION,
        certificate_pem=pem(certificate),
        active=active,
        not_after=certificate.not_valid_after_utc,
    )


def inventory_revoke(station: ChargingStation, certificate: x509.Certificate, ca: x509.Certificate) -> None:
    """The certificate in the inventory, revoked (hash data as OCPP's CertificateHashData: SHA256)."""
    StationCertificate.objects.create(
        organisation_id=station.organisation_id,
        station=station,
        use=CertificateUse.CHARGING_STATION,
        source=CertificateSource.ISSUED,
        status=CertificateStatus.REVOKED,
        issuer_name_hash=hashlib.sha256(certificate.issuer.public_bytes()).hexdigest(),
        issuer_key_hash=hashlib.sha256(
            ca.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        ).hexdigest(),
        serial_number=format(certificate.serial_number, "x"),
        subject=certificate.subject.rfc4514_string(),
        certificate_pem=pem(certificate),
        revoked_at=NOW,
        revocation_reason="key compromise",
    )


# --- the consumer, behind a terminator ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _setup(settings):
    settings.OCPP_TRUSTED_PROXIES = ["10.9.0.0/16"]
    handshake_throttle._failures.clear()
    yield
    handshake_throttle._failures.clear()


def basic(identity: str, password: str = DEFAULT_STATION_PASSWORD) -> tuple[bytes, bytes]:
    return (b"authorization", b"Basic " + base64.b64encode(f"{identity}:{password}".encode()))


def via_terminator(*, tls: bool = True, cert: x509.Certificate | None = None, verify: str = "") -> list:
    """The headers nginx sets (deploy/nginx/ocpp-tls.conf)."""
    headers = [
        (b"x-forwarded-proto", b"https" if tls else b"http"),
        (b"x-forwarded-for", f"198.51.100.1, {CHARGER}".encode()),
    ]
    if cert is not None:
        headers.append((b"x-ssl-client-cert", quote(pem(cert)).encode()))
        headers.append((b"x-ssl-client-verify", (verify or "SUCCESS").encode()))
    elif tls:
        headers.append((b"x-ssl-client-verify", b"NONE"))
    return headers


def handshake(identity: str, headers: list, *, peer: str = PROXY) -> tuple[str, int | str | None]:
    async def scenario():
        comm = WebsocketCommunicator(
            application, f"/ocpp/{identity}", headers=headers, subprotocols=["ocpp1.6"]
        )
        comm.scope["extensions"] = {"websocket.http.response": {}}
        comm.scope["client"] = [peer, 40000]
        await comm.send_input({"type": "websocket.connect"})
        first = await comm.receive_output(timeout=5)
        if first["type"] == "websocket.accept":
            await comm.disconnect()
            return "accepted", first.get("subprotocol")
        assert first["type"] == "websocket.http.response.start", first
        await comm.receive_output(timeout=5)
        return "refused", first["status"]

    return asyncio.run(scenario())


def events() -> list[tuple[str, str, str]]:
    return list(SecurityEvent.objects.order_by("pk").values_list("kind", "detail", "remote_addr"))


def seen_of(station: ChargingStation) -> int:
    return ChargingStation.objects.values_list("security_profile_seen", flat=True).get(pk=station.pk)


@pytest.fixture
def pki():
    """An operator with a trusted charging-station CA, and a profile-3 station of it."""
    organisation = OrganisationFactory(name="Volt Operator")
    ca, ca_key = ca_make("Volt Charging Station CA", organisation="Volt Operator")
    authority_trust(organisation, ca)
    station = ChargingStationFactory(
        identity="CP-TLS-3", site=SiteFactory(organisation=organisation), security_profile=3, password_hash=""
    )
    return organisation, ca, ca_key, station


def test_profile_2_accepted_over_tls_and_seen_raised_to_2():
    station = ChargingStationFactory(identity="CP-P2", security_profile=2)

    assert handshake("CP-P2", [basic("CP-P2"), *via_terminator()]) == ("accepted", "ocpp1.6")
    assert seen_of(station) == 2
    assert events() == []


def test_profile_2_refused_over_plain_ws_with_a_downgrade_event():
    station = ChargingStationFactory(identity="CP-P2", security_profile=2)

    assert handshake("CP-P2", [basic("CP-P2"), *via_terminator(tls=False)]) == ("refused", 403)
    assert events() == [
        (
            "profile_downgrade",
            "connected at profile 1 (HTTP Basic over plain ws://); the station requires 2 "
            "(configured 2, seen at 0)",
            CHARGER,
        )
    ]
    assert seen_of(station) == 0


def test_profile_2_wrong_password_over_plain_ws_is_an_auth_failure_first():
    """The password is checked before the profile: who does not know it learns nothing of the station."""
    ChargingStationFactory(identity="CP-P2", security_profile=2)

    assert handshake("CP-P2", [basic("CP-P2", "not-the-password-1"), *via_terminator(tls=False)]) == (
        "refused",
        401,
    )
    assert events() == [("auth_failed", "wrong username or password", CHARGER)]


def test_forwarded_headers_from_an_untrusted_peer_are_ignored_and_logged(caplog):
    ChargingStationFactory(identity="CP-P2", security_profile=2)

    with caplog.at_level(logging.WARNING, logger="stations.services.transport_security"):
        outcome = handshake("CP-P2", [basic("CP-P2"), *via_terminator()], peer="192.0.2.50")

    assert outcome == ("refused", 403)
    # The claimed charger address is ignored too: the event names the peer.
    assert [(kind, addr) for kind, _detail, addr in events()] == [("profile_downgrade", "192.0.2.50")]
    assert (
        "handshake from 192.0.2.50, which is not in OCPP_TRUSTED_PROXIES: ignored x-forwarded-proto, "
        "x-forwarded-for, x-ssl-client-verify" in caplog.messages
    )


def test_untrusted_peer_cannot_claim_a_client_certificate(pki):
    _organisation, ca, ca_key, _station = pki
    cert, _key = leaf_make(ca, ca_key, common_name="CP-TLS-3", organisation="Volt Operator")

    assert handshake("CP-TLS-3", via_terminator(cert=cert), peer="192.0.2.50") == ("refused", 401)
    assert [kind for kind, _detail, _addr in events()] == ["auth_failed"]


def test_profile_3_accepted_with_its_certificate_and_no_password(pki):
    _organisation, ca, ca_key, station = pki
    cert, _key = leaf_make(ca, ca_key, common_name="CP-TLS-3", organisation="Volt Operator")

    assert handshake("CP-TLS-3", via_terminator(cert=cert)) == ("accepted", "ocpp1.6")
    assert seen_of(station) == 3
    assert events() == []


@pytest.mark.parametrize(
    ("make", "detail"),
    [
        (
            lambda ca, key: leaf_make(ca, key, common_name="CP-OTHER", organisation="Volt Operator"),
            "subject CN 'CP-OTHER' is not the station identity 'CP-TLS-3'",
        ),
        (
            lambda ca, key: leaf_make(ca, key, common_name="CP-TLS-3", organisation="Someone Else"),
            "subject O 'Someone Else' is not the operator 'Volt Operator'",
        ),
        (
            lambda ca, key: leaf_make(
                ca,
                key,
                common_name="CP-TLS-3",
                organisation="Volt Operator",
                not_before=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                not_after=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
            ),
            "expired on 2025-01-01 00:00:00 UTC",
        ),
        (
            lambda ca, key: leaf_make(
                ca,
                key,
                common_name="CP-TLS-3",
                organisation="Volt Operator",
                not_before=dt.datetime(2099, 1, 1, tzinfo=dt.UTC),
                not_after=dt.datetime(2100, 1, 1, tzinfo=dt.UTC),
            ),
            "not valid before 2099-01-01 00:00:00 UTC",
        ),
        (
            lambda ca, key: leaf_make(
                ca,
                key,
                common_name="CP-TLS-3",
                organisation="Volt Operator",
                usage=ExtendedKeyUsageOID.SERVER_AUTH,
            ),
            "its extended key usage does not allow TLS client authentication",
        ),
    ],
    ids=["wrong-cn", "wrong-o", "expired", "not-yet-valid", "server-only"],
)
def test_profile_3_certificate_refused(pki, make, detail):
    _organisation, ca, ca_key, station = pki
    cert, _key = make(ca, ca_key)

    assert handshake("CP-TLS-3", via_terminator(cert=cert)) == ("refused", 403)
    assert events() == [("certificate_refused", detail, CHARGER)]
    assert seen_of(station) == 0


def test_profile_3_revoked_certificate_refused(pki):
    _organisation, ca, ca_key, station = pki
    cert, _key = leaf_make(ca, ca_key, common_name="CP-TLS-3", organisation="Volt Operator")
    inventory_revoke(station, cert, ca)

    assert handshake("CP-TLS-3", via_terminator(cert=cert)) == ("refused", 403)
    assert events() == [("certificate_refused", f"revoked (serial {cert.serial_number:x})", CHARGER)]


def test_profile_3_certificate_of_an_untrusted_ca_refused(pki):
    """A CA with the same name but another key, and another organisation's CA: neither is this one's."""
    _organisation, _ca, _ca_key, _station = pki
    impostor, impostor_key = ca_make("Volt Charging Station CA", organisation="Volt Operator")
    other_org = OrganisationFactory(name="Other Operator")
    other_ca, other_key = ca_make("Other CA")
    authority_trust(other_org, other_ca)
    forged, _ = leaf_make(impostor, impostor_key, common_name="CP-TLS-3", organisation="Volt Operator")
    foreign, _ = leaf_make(other_ca, other_key, common_name="CP-TLS-3", organisation="Volt Operator")

    assert handshake("CP-TLS-3", via_terminator(cert=forged)) == ("refused", 403)
    assert handshake("CP-TLS-3", via_terminator(cert=foreign)) == ("refused", 403)
    assert events() == [
        (
            "certificate_refused",
            "not issued by a CA the organisation trusts (issuer O=Volt Operator,CN=Volt Charging Station CA)",
            CHARGER,
        ),
        ("certificate_refused", "not issued by a CA the organisation trusts (issuer CN=Other CA)", CHARGER),
    ]


def test_profile_3_certificate_of_an_inactive_ca_refused(pki):
    _organisation, ca, ca_key, _station = pki
    CertificateAuthority.objects.update(active=False)
    cert, _key = leaf_make(ca, ca_key, common_name="CP-TLS-3", organisation="Volt Operator")

    assert handshake("CP-TLS-3", via_terminator(cert=cert)) == ("refused", 403)
    assert [detail[:40] for _kind, detail, _addr in events()] == ["not issued by a CA the organisation trus"]


def test_profile_3_refused_when_the_terminator_did_not_verify(pki):
    _organisation, ca, ca_key, _station = pki
    cert, _key = leaf_make(ca, ca_key, common_name="CP-TLS-3", organisation="Volt Operator")

    outcome = handshake(
        "CP-TLS-3", via_terminator(cert=cert, verify="FAILED:unable to get issuer certificate")
    )

    assert outcome == ("refused", 403)
    assert events() == [
        (
            "certificate_refused",
            "the TLS terminator did not verify it (FAILED:unable to get issuer certificate)",
            CHARGER,
        )
    ]


def test_client_certificate_header_without_tls_is_not_believed(pki):
    """A certificate only means something over TLS: a terminator saying http is not handing one over."""
    _organisation, ca, ca_key, _station = pki
    cert, _key = leaf_make(ca, ca_key, common_name="CP-TLS-3", organisation="Volt Operator")
    headers = [(name, value) for name, value in via_terminator(cert=cert) if name != b"x-forwarded-proto"]

    assert handshake("CP-TLS-3", headers) == ("refused", 401)
    assert [kind for kind, _detail, _addr in events()] == ["auth_failed"]


def test_seen_at_3_refused_at_2_and_at_1(pki):
    _organisation, ca, ca_key, station = pki
    ChargingStation.objects.filter(pk=station.pk).update(security_profile=2)
    station.refresh_from_db()
    station.password_hash = ChargingStationFactory.build().password_hash
    station.save(update_fields=["password_hash"])
    cert, _key = leaf_make(ca, ca_key, common_name="CP-TLS-3", organisation="Volt Operator")

    # Configured for 2, it connects at 3 (the upgrade, A05): accepted, and never below 3 again.
    assert handshake("CP-TLS-3", via_terminator(cert=cert)) == ("accepted", "ocpp1.6")
    assert seen_of(station) == 3
    assert handshake("CP-TLS-3", [basic("CP-TLS-3"), *via_terminator()]) == ("refused", 403)
    assert handshake("CP-TLS-3", [basic("CP-TLS-3"), *via_terminator(tls=False)]) == ("refused", 403)
    assert events() == [
        (
            "profile_downgrade",
            "connected at profile 2 (HTTP Basic over TLS); the station requires 3 (configured 2, seen at 3)",
            CHARGER,
        ),
        (
            "profile_downgrade",
            "connected at profile 1 (HTTP Basic over plain ws://); the station requires 3 (configured 2, seen at 3)",
            CHARGER,
        ),
    ]


def test_profile_3_without_a_certificate(pki):
    _organisation, _ca, _ca_key, station = pki
    assert handshake("CP-TLS-3", via_terminator()) == ("refused", 401)
    station.password_hash = ChargingStationFactory.build().password_hash
    station.save(update_fields=["password_hash"])
    assert handshake("CP-TLS-3", [basic("CP-TLS-3"), *via_terminator()]) == ("refused", 403)

    assert [(kind, detail) for kind, detail, _addr in events()] == [
        ("auth_failed", "missing credentials"),
        (
            "profile_downgrade",
            "connected at profile 2 (HTTP Basic over TLS); the station requires 3 (configured 3, seen at 0)",
        ),
    ]


def test_profile_2_station_with_an_unusable_certificate_logs_in_with_its_password(pki, caplog):
    """A charger's TLS stack may send whatever certificate it holds (a manufacturer's, before the operator's
    is installed: 2.0.1 A00.FR.406); a profile-2 station still logs in with its password."""
    organisation, _ca, _ca_key, _station = pki
    station = ChargingStationFactory(
        identity="CP-P2", site=SiteFactory(organisation=organisation), security_profile=2
    )
    maker, maker_key = ca_make("Manufacturer CA")
    cert, _key = leaf_make(maker, maker_key, common_name="SERIAL-1", organisation="Maker")

    with caplog.at_level(logging.WARNING, logger="cpms.ocpp.consumers"):
        outcome = handshake("CP-P2", [basic("CP-P2"), *via_terminator(cert=cert)])

    assert outcome == ("accepted", "ocpp1.6")
    assert seen_of(station) == 2
    assert events() == []
    assert any(
        "client certificate not accepted (not issued by a CA" in message for message in caplog.messages
    )


def test_profile_2_station_with_an_unusable_certificate_and_no_password_is_a_certificate_refusal(pki):
    organisation, _ca, _ca_key, _station = pki
    ChargingStationFactory(identity="CP-P2", site=SiteFactory(organisation=organisation), security_profile=2)
    maker, maker_key = ca_make("Manufacturer CA")
    cert, _key = leaf_make(maker, maker_key, common_name="CP-P2", organisation="Maker")

    assert handshake("CP-P2", via_terminator(cert=cert)) == ("refused", 403)
    assert [(kind, detail) for kind, detail, _addr in events()] == [
        ("certificate_refused", "not issued by a CA the organisation trusts (issuer CN=Manufacturer CA)")
    ]


def test_profile_1_station_over_tls_is_seen_at_2_then_refused_over_plain_ws():
    station = ChargingStationFactory(identity="CP-P1", security_profile=1)

    assert handshake("CP-P1", [basic("CP-P1"), *via_terminator(tls=False)]) == ("accepted", "ocpp1.6")
    assert seen_of(station) == 0  # profile 1 writes nothing more at the handshake
    assert handshake("CP-P1", [basic("CP-P1"), *via_terminator()]) == ("accepted", "ocpp1.6")
    assert seen_of(station) == 2
    assert handshake("CP-P1", [basic("CP-P1"), *via_terminator(tls=False)]) == ("refused", 403)
    assert [kind for kind, _detail, _addr in events()] == ["profile_downgrade"]


# --- the services -----------------------------------------------------------------------------------------


def test_handshake_lookup_is_one_query(django_assert_num_queries):
    station = ChargingStationFactory(identity="CP-Q", security_profile=2, security_profile_seen=3)
    with django_assert_num_queries(1):
        auth = station_auth_get(identity="CP-Q")
    assert (auth.station_id, auth.security_profile, auth.security_profile_seen) == (station.pk, 2, 3)
    assert station_auth_get(identity="CP-NONE") is None


def test_certificate_check_is_one_query(pki, django_assert_num_queries):
    organisation, ca, ca_key, _station = pki
    cert, _key = leaf_make(ca, ca_key, common_name="CP-TLS-3", organisation="Volt Operator")
    with django_assert_num_queries(1):
        refusal = station_certificate_check(
            organisation_id=organisation.pk, identity="CP-TLS-3", pem=pem(cert), verify="SUCCESS", now=NOW
        )
    assert refusal == ""
    assert (
        station_certificate_check(
            organisation_id=organisation.pk, identity="CP-TLS-3", pem="garbage", verify="SUCCESS", now=NOW
        )
        == "unreadable client certificate"
    )


def test_seen_is_never_lowered():
    station = ChargingStationFactory(security_profile_seen=3)
    assert station_profile_seen_raise(station_id=station.pk, profile=2) is False
    assert seen_of(station) == 3
    assert station_profile_seen_raise(station_id=station.pk, profile=3) is False
    station_b = ChargingStationFactory(security_profile_seen=2)
    assert station_profile_seen_raise(station_id=station_b.pk, profile=3) is True
    assert seen_of(station_b) == 3


def test_transport_of_asgi_tls_and_its_client_certificate():
    """The ASGI server's own TLS (scheme wss) and the ASGI TLS extension's client certificate, with no
    terminator in front."""
    scope = {
        "scheme": "wss",
        "client": ["192.0.2.9", 1],
        "headers": [],
        "extensions": {
            "tls": {"client_cert_chain": ["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"]}
        },
    }
    transport = transport_of(scope)
    assert (transport.tls, transport.remote_addr, transport.via_proxy, transport.verify) == (
        True,
        "192.0.2.9",
        False,
        "",
    )
    assert transport.client_cert_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert transport_of({"scheme": "ws", "client": ["192.0.2.9", 1], "headers": []}).tls is False


def test_simulator_tls_context(tmp_path):
    """The simulated charger's TLS (cpms.simulator.config): none over ws://; over wss:// the CSMS's certificate
    and host name checked, TLS 1.2 or above, and its own certificate presented when it has one."""
    ca, ca_key = ca_make("CSMS Root")
    cert, key = leaf_make(ca, ca_key, common_name="SIM-001", organisation="Volt Operator")
    (tmp_path / "root.crt").write_text(pem(ca))
    (tmp_path / "cp.crt").write_text(pem(cert))
    (tmp_path / "cp.key").write_text(key_pem(key))
    fleet = FleetConfig(
        url="wss://csms.example/ocpp",
        tls_ca_file=str(tmp_path / "root.crt"),
        tls_cert_file=str(tmp_path / "cp.crt"),
        tls_key_file=str(tmp_path / "cp.key"),
    )

    context = fleet.charger("SIM-001").ssl_context()

    assert context is not None
    assert (context.verify_mode, context.check_hostname, context.minimum_version) == (
        ssl.CERT_REQUIRED,
        True,
        ssl.TLSVersion.TLSv1_2,
    )
    assert [item["subject"] for item in context.get_ca_certs()] == [((("commonName", "CSMS Root"),),)]
    assert ChargerConfig(url="ws://csms.example/ocpp", identity="SIM-001").ssl_context() is None
    with pytest.raises(FileNotFoundError):
        fleet.charger("SIM-001").ssl_context(cert_file=str(tmp_path / "missing.crt"))


# --- the security-profile upgrade (A05) ----------------------------------------------------------------


def connected_station(world_org=None, *, identity: str, protocol: str, profile: int = 1, seen: int = 0):
    return ChargingStationFactory(
        identity=identity,
        protocol=protocol,
        is_connected=True,
        security_profile=profile,
        security_profile_seen=seen,
        **({"site": SiteFactory(organisation=world_org)} if world_org else {}),
    )


def station_certificate_active(station: ChargingStation, *, not_after: dt.datetime | None = None) -> None:
    ca, ca_key = ca_make("Volt Charging Station CA")
    cert, _key = leaf_make(ca, ca_key, common_name=station.identity, organisation="Volt Operator")
    StationCertificate.objects.create(
        organisation_id=station.organisation_id,
        station=station,
        use=CertificateUse.CHARGING_STATION,
        source=CertificateSource.ISSUED,
        status=CertificateStatus.ACTIVE,
        issuer_name_hash="a" * 64,
        issuer_key_hash="b" * 64,
        serial_number=format(cert.serial_number, "x"),
        not_before=NOW - dt.timedelta(days=1),
        not_after=not_after or NOW + dt.timedelta(days=365),
        certificate_pem=pem(cert),
    )


def upgrade_post(user, identity: str, body: dict):
    from rest_framework.test import APIRequestFactory, force_authenticate

    from stations.api.security_profile import SecurityProfileUpgradeApi

    request = APIRequestFactory().post(
        f"/api/v1/stations/{identity}/security-profile/upgrade/", body, format="json"
    )
    force_authenticate(request, user=user)
    return SecurityProfileUpgradeApi.as_view()(request, identity=identity)


def test_upgrade_201_to_2_sends_network_profile_priority_and_reset(world, fake_charger, settings):
    settings.OCPP_TLS_URL = "wss://csms.example.com/ocpp"
    fake_charger.answers["SetVariables"] = {
        "setVariableResult": [
            {
                "attributeStatus": "Accepted",
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "NetworkConfigurationPriority"},
            }
        ]
    }
    connected_station(world.org_a, identity="CP-UP-201", protocol="ocpp2.0.1")

    response = upgrade_post(world.operator_a, "CP-UP-201", {"target": 2})

    assert response.status_code == 200, response.data
    assert (response.data["started"], response.data["refused"]) == (True, "")
    assert [(c["action"], c["status"]) for c in response.data["commands"]] == [
        ("SetNetworkProfile", "answered"),
        ("SetVariables", "answered"),
        ("Reset", "answered"),
    ]
    assert fake_charger.received == [
        (
            "CP-UP-201",
            "SetNetworkProfile",
            {
                "configurationSlot": 1,
                "connectionData": {
                    "ocppVersion": "OCPP20",
                    "ocppTransport": "JSON",
                    "ocppCsmsUrl": "wss://csms.example.com/ocpp/",
                    "messageTimeout": 30,
                    "securityProfile": 2,
                    "ocppInterface": "Wired0",
                },
            },
        ),
        (
            "CP-UP-201",
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "NetworkConfigurationPriority"},
                        "attributeValue": "1",
                    }
                ]
            },
        ),
        ("CP-UP-201", "Reset", {"type": "OnIdle"}),
    ]
    # Its configured profile waits for the charger to come back at 2 (the handshake records that).
    assert ChargingStation.objects.values_list("security_profile", "security_profile_seen").get(
        identity="CP-UP-201"
    ) == (1, 0)


def test_upgrade_16_to_3_with_a_valid_station_certificate(world, fake_charger):
    station = connected_station(world.org_a, identity="CP-UP-16", protocol="ocpp1.6", profile=2, seen=2)
    station_certificate_active(station)

    response = upgrade_post(world.operator_a, "CP-UP-16", {"target": 3})

    assert response.status_code == 200, response.data
    assert response.data["started"] is True
    assert fake_charger.received == [
        ("CP-UP-16", "ChangeConfiguration", {"key": "SecurityProfile", "value": "3"})
    ]


@pytest.mark.parametrize("certificate", ["none", "expired", "revoked"])
def test_upgrade_to_3_refused_without_a_valid_station_certificate(world, fake_charger, certificate):
    station = connected_station(world.org_a, identity="CP-UP-3", protocol="ocpp2.0.1", profile=2)
    if certificate == "expired":
        station_certificate_active(station, not_after=NOW - dt.timedelta(days=1))
    elif certificate == "revoked":
        station_certificate_active(station)
        StationCertificate.objects.update(status=CertificateStatus.REVOKED)

    response = upgrade_post(world.operator_a, "CP-UP-3", {"target": 3})

    assert response.status_code == 400
    assert "needs a valid ChargingStationCertificate" in str(response.data)
    assert fake_charger.received == []
    assert not Command.objects.exists()


@pytest.mark.parametrize(("profile", "seen", "target"), [(2, 0, 2), (1, 3, 3), (1, 3, 2)])
def test_upgrade_never_to_a_profile_not_above_the_current_one(world, fake_charger, profile, seen, target):
    connected_station(world.org_a, identity="CP-UP-N", protocol="ocpp1.6", profile=profile, seen=seen)

    response = upgrade_post(world.operator_a, "CP-UP-N", {"target": target})

    assert response.status_code == 400
    assert f"at security profile {max(profile, seen)} already" in str(response.data)
    assert fake_charger.received == []


def test_upgrade_stops_at_the_first_call_the_charger_refuses(world, fake_charger):
    fake_charger.answers["SetNetworkProfile"] = {"status": "Rejected"}
    connected_station(world.org_a, identity="CP-UP-R", protocol="ocpp2.0.1")

    response = upgrade_post(
        world.operator_a, "CP-UP-R", {"target": 2, "csms_url": "wss://other.example/ocpp/"}
    )

    assert response.status_code == 200
    assert (response.data["started"], response.data["refused"]) == (False, "SetNetworkProfile")
    assert [action for _identity, action, _request in fake_charger.received] == ["SetNetworkProfile"]


def test_upgrade_needs_a_connected_station_and_the_command_capability(world, fake_charger):
    ChargingStationFactory(identity="CP-OFF", site=world.site_a1, protocol="ocpp1.6", is_connected=False)
    connected_station(world.org_a, identity="CP-ON", protocol="ocpp1.6")

    assert upgrade_post(world.operator_a, "CP-OFF", {"target": 2}).status_code == 409
    assert upgrade_post(world.operator_b, "CP-ON", {"target": 2}).status_code == 404
    assert upgrade_post(world.finance_a, "CP-ON", {"target": 2}).status_code == 403
    assert upgrade_post(world.operator_a, "CP-ON", {"target": 1}).status_code == 400
    assert fake_charger.received == []


def test_operator_name_longer_than_an_organization_name_is_compared_cut_at_64(pki):
    """RFC 5280 bounds organizationName at 64 characters: the CA signs a longer operator name cut there."""
    organisation, ca, ca_key, _station = pki
    long_name = "Volt Operator " + "x" * 70
    type(organisation).objects.filter(pk=organisation.pk).update(name=long_name)
    cert, _key = leaf_make(ca, ca_key, common_name="CP-TLS-3", organisation=long_name[:64])

    assert handshake("CP-TLS-3", via_terminator(cert=cert)) == ("accepted", "ocpp1.6")
