"""Issue 16 acceptance 1, through a real TLS terminator: Debian's nginx, run unprivileged with
deploy/nginx/ocpp-tls.conf in front of a real server process (`python -m cpms.server`), and chargers that
speak TLS with the `ssl` module (certificates made here with `cryptography`).

Shown: a profile-2 station connects over wss:// with HTTP Basic and is refused over plain ws://; a profile-3
station connects with its client certificate and no password; a certificate with the wrong CN, expired,
revoked (in the inventory) or from an untrusted CA is refused with a SecurityEvent each; a station seen at
profile 3 is refused at 2 and at 1.

Skipped when nginx is not installed, unless CPMS_REQUIRE_NGINX is set (.ci/run sets it once it installed
nginx): then a missing nginx fails the test.
"""

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from django.conf import settings
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from cpms.simulator.config import ChargerConfig
from stations.models import ChargingStation, SecurityEvent
from tests.e2e.conftest import LiveCsms, _process_env, free_port, server_process
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory, OrganisationFactory, SiteFactory
from tests.ocpp.test_transport_security import (
    authority_trust,
    ca_make,
    inventory_revoke,
    key_pem,
    leaf_make,
    pem,
)

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
if NGINX is None and not os.environ.get("CPMS_REQUIRE_NGINX"):
    pytest.skip(
        "nginx is not installed (apt-get install nginx; CI installs it and sets CPMS_REQUIRE_NGINX)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.xdist_group(name="tls")

CONFIG_TEMPLATE = Path(settings.BASE_DIR) / "deploy" / "nginx" / "ocpp-tls.conf"
OPERATOR = "Volt Operator"
NGINX_START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Terminator:
    tls_port: int
    plain_port: int
    server_ca: Path
    error_log: Path

    def url(self, identity: str, *, tls: bool = True) -> str:
        if tls:
            return f"wss://127.0.0.1:{self.tls_port}/ocpp/{identity}"
        return f"ws://127.0.0.1:{self.plain_port}/ocpp/{identity}"


@dataclass(frozen=True)
class Pki:
    organisation: object
    ca: x509.Certificate
    ca_key: object
    folder: Path

    def client_files(self, name: str, certificate: x509.Certificate, key) -> tuple[Path, Path]:
        cert_path, key_path = self.folder / f"{name}.crt", self.folder / f"{name}.key"
        cert_path.write_text(pem(certificate))
        key_path.write_text(key_pem(key))
        return cert_path, key_path


@pytest.fixture
def tls_csms(request, transactional_db, tmp_path) -> Iterator[LiveCsms]:
    """The server process, trusting the terminator on loopback (OCPP_TRUSTED_PROXIES)."""
    env = {**_process_env(request), "OCPP_TRUSTED_PROXIES": "127.0.0.1"}
    log_path = tmp_path / "server.log"
    with server_process(env, log_path) as server:
        yield server
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            print(f"--- server log, last lines ---\n{server.log_tail()}")


@pytest.fixture
def pki(transactional_db, tmp_path) -> Pki:
    """The operator, its charging-station CA (trusted for it in the database), files in tmp_path."""
    folder = tmp_path / "pki"
    folder.mkdir()
    organisation = OrganisationFactory(name=OPERATOR)
    ca, ca_key = ca_make("Volt Charging Station CA", organisation=OPERATOR)
    authority_trust(organisation, ca)
    return Pki(organisation=organisation, ca=ca, ca_key=ca_key, folder=folder)


@pytest.fixture
def terminator(request, tls_csms, pki, tmp_path) -> Iterator[Terminator]:
    """nginx with deploy/nginx/ocpp-tls.conf: its own prefix, pid and logs in tmp_path, free ports."""
    if NGINX is None:
        pytest.fail("CPMS_REQUIRE_NGINX is set but nginx is not installed")
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    server_root, server_root_key = ca_make("CSMS Root")
    server_cert, server_key = leaf_make(
        server_root,
        server_root_key,
        common_name="127.0.0.1",
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        # The chargers connect to the loopback address: the certificate names it (A00.FR.308).
        alt_names=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    (prefix / "server.crt").write_text(pem(server_cert))
    (prefix / "server.key").write_text(key_pem(server_key))
    (prefix / "csms-root.crt").write_text(pem(server_root))
    # The bundle nginx asks chargers' certificates to chain to: the organisation's CA.
    (prefix / "client-ca.crt").write_text(pem(pki.ca))
    tls_port, plain_port = free_port(), free_port()
    site = CONFIG_TEMPLATE.read_text()
    for placeholder, value in {
        "@LISTEN_TLS@": f"127.0.0.1:{tls_port}",
        "@LISTEN_PLAIN@": f"127.0.0.1:{plain_port}",
        "@SERVER_NAME@": "localhost",
        "@SERVER_CERT@": str(prefix / "server.crt"),
        "@SERVER_KEY@": str(prefix / "server.key"),
        "@CLIENT_CA@": str(prefix / "client-ca.crt"),
        "@UPSTREAM@": f"127.0.0.1:{tls_csms.port}",
    }.items():
        site = site.replace(placeholder, value)
    (prefix / "ocpp-tls.conf").write_text(site)
    error_log = prefix / "error.log"
    temp = prefix / "temp"
    temp.mkdir()
    (prefix / "nginx.conf").write_text(
        f"""
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {error_log} info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix / "access.log"};
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {prefix / "ocpp-tls.conf"};
}}
"""
    )
    process = subprocess.Popen(
        [
            NGINX,
            "-p",
            str(prefix),
            "-e",
            str(error_log),
            "-c",
            str(prefix / "nginx.conf"),
            "-g",
            "daemon off;",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_listening(process, [tls_port, plain_port], error_log)
        yield Terminator(
            tls_port=tls_port, plain_port=plain_port, server_ca=prefix / "csms-root.crt", error_log=error_log
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed and error_log.exists():
            print("--- nginx error log ---\n" + "\n".join(error_log.read_text().splitlines()[-40:]))


def _wait_listening(process: subprocess.Popen, ports: list[int], error_log: Path) -> None:
    deadline = time.monotonic() + NGINX_START_TIMEOUT_S
    waiting = list(ports)
    while waiting and time.monotonic() < deadline:
        if process.poll() is not None:
            log = error_log.read_text() if error_log.exists() else "(no error log)"
            pytest.fail(f"nginx exited with {process.returncode}:\n{log}")
        try:
            with socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.5):
                waiting.pop(0)
        except OSError:
            time.sleep(0.05)
    if waiting:
        pytest.fail(f"nginx not listening on {waiting} after {NGINX_START_TIMEOUT_S} s")


# --- a charger's side ---------------------------------------------------------------------------


def tls_context(terminator: Terminator, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """What a charger holds, as the simulator builds it (cpms.simulator.config): the CSMS root to check the
    server with (A00.FR.307) and, for profile 3, its certificate and key."""
    config = ChargerConfig(
        url=f"wss://127.0.0.1:{terminator.tls_port}/ocpp",
        identity="unused",
        tls_ca_file=str(terminator.server_ca),
        tls_cert_file=str(client[0]) if client else None,
        tls_key_file=str(client[1]) if client else None,
    )
    context = config.ssl_context()
    assert context is not None
    return context


def boot(
    url: str, *, context: ssl.SSLContext | None = None, password: str | None = None, identity: str
) -> tuple[str, object]:
    """Open the connection and send a BootNotification: ('accepted', the answer's status) or ('refused',
    the handshake's HTTP status)."""
    headers = {}
    if password is not None:
        token = base64.b64encode(f"{identity}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"

    async def scenario():
        try:
            async with connect(
                url,
                subprotocols=["ocpp1.6"],
                additional_headers=headers,
                ssl=context,
                open_timeout=10,
                proxy=None,
            ) as ws:
                await ws.send(
                    json.dumps(
                        [2, "boot-1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]
                    )
                )
                answer = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
                return "accepted", answer[2]["status"]
        except InvalidStatus as exc:
            return "refused", exc.response.status_code

    return asyncio.run(scenario())


def events_of(identity: str) -> list[tuple[str, str, str]]:
    return list(
        SecurityEvent.objects.filter(identity=identity)
        .order_by("pk")
        .values_list("kind", "detail", "remote_addr")
    )


def station_make(pki: Pki, identity: str, *, profile: int, password: bool = True) -> ChargingStation:
    station = ChargingStationFactory(
        identity=identity,
        site=SiteFactory(organisation=pki.organisation),
        security_profile=profile,
        registration_status="Accepted",
    )
    if not password:
        ChargingStation.objects.filter(pk=station.pk).update(password_hash="")
    return station


def seen_of(station: ChargingStation) -> int:
    return ChargingStation.objects.values_list("security_profile_seen", flat=True).get(pk=station.pk)


# --- acceptance 1 ---------------------------------------------------------------------------------


def test_profile_2_over_wss_with_basic_and_refused_over_plain_ws(pki, terminator):
    station = station_make(pki, "CP-P2", profile=2)

    over_tls = boot(
        terminator.url("CP-P2"),
        context=tls_context(terminator),
        password=DEFAULT_STATION_PASSWORD,
        identity="CP-P2",
    )
    over_plain = boot(terminator.url("CP-P2", tls=False), password=DEFAULT_STATION_PASSWORD, identity="CP-P2")

    assert over_tls == ("accepted", "Accepted")
    assert over_plain == ("refused", 403)
    assert seen_of(station) == 2
    # The charger's address comes through the terminator (X-Forwarded-For), not the terminator's own.
    assert events_of("CP-P2") == [
        (
            "profile_downgrade",
            "connected at profile 1 (HTTP Basic over plain ws://); the station requires 2 (configured 2, seen at 2)",
            "127.0.0.1",
        )
    ]


def test_profile_3_connects_with_its_certificate_and_no_password(pki, terminator):
    station = station_make(pki, "CP-P3", profile=3, password=False)
    cert, key = leaf_make(pki.ca, pki.ca_key, common_name="CP-P3", organisation=OPERATOR)
    context = tls_context(terminator, pki.client_files("cp-p3", cert, key))

    assert boot(terminator.url("CP-P3"), context=context, identity="CP-P3") == ("accepted", "Accepted")
    assert seen_of(station) == 3
    assert events_of("CP-P3") == []


def test_profile_3_refusals_each_with_a_security_event(pki, terminator):
    station_make(pki, "CP-P3", profile=3, password=False)
    wrong_cn, wrong_cn_key = leaf_make(pki.ca, pki.ca_key, common_name="CP-SOMEONE", organisation=OPERATOR)
    expired, expired_key = leaf_make(
        pki.ca,
        pki.ca_key,
        common_name="CP-P3",
        organisation=OPERATOR,
        not_before=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    )
    revoked, revoked_key = leaf_make(pki.ca, pki.ca_key, common_name="CP-P3", organisation=OPERATOR)
    inventory_revoke(ChargingStation.objects.get(identity="CP-P3"), revoked, pki.ca)
    rogue_ca, rogue_ca_key = ca_make("Rogue CA", organisation=OPERATOR)
    untrusted, untrusted_key = leaf_make(rogue_ca, rogue_ca_key, common_name="CP-P3", organisation=OPERATOR)

    outcomes = [
        boot(
            terminator.url("CP-P3"),
            context=tls_context(terminator, pki.client_files(name, cert, key)),
            identity="CP-P3",
        )
        for name, cert, key in [
            ("wrong-cn", wrong_cn, wrong_cn_key),
            ("expired", expired, expired_key),
            ("revoked", revoked, revoked_key),
            ("untrusted", untrusted, untrusted_key),
        ]
    ]

    assert outcomes == [("refused", 403)] * 4
    assert events_of("CP-P3") == [
        ("certificate_refused", "subject CN 'CP-SOMEONE' is not the station identity 'CP-P3'", "127.0.0.1"),
        ("certificate_refused", "expired on 2025-01-01 00:00:00 UTC", "127.0.0.1"),
        ("certificate_refused", f"revoked (serial {revoked.serial_number:x})", "127.0.0.1"),
        (
            "certificate_refused",
            "not issued by a CA the organisation trusts (issuer O=Volt Operator,CN=Rogue CA)",
            "127.0.0.1",
        ),
    ]


def test_station_seen_at_3_is_refused_at_2_and_1(pki, terminator):
    station = station_make(pki, "CP-UP", profile=2)
    cert, key = leaf_make(pki.ca, pki.ca_key, common_name="CP-UP", organisation=OPERATOR)
    with_cert = tls_context(terminator, pki.client_files("cp-up", cert, key))

    at_3 = boot(terminator.url("CP-UP"), context=with_cert, identity="CP-UP")
    at_2 = boot(
        terminator.url("CP-UP"),
        context=tls_context(terminator),
        password=DEFAULT_STATION_PASSWORD,
        identity="CP-UP",
    )
    at_1 = boot(terminator.url("CP-UP", tls=False), password=DEFAULT_STATION_PASSWORD, identity="CP-UP")

    assert (at_3, at_2, at_1) == (("accepted", "Accepted"), ("refused", 403), ("refused", 403))
    assert seen_of(station) == 3
    assert [(kind, detail) for kind, detail, _addr in events_of("CP-UP")] == [
        (
            "profile_downgrade",
            "connected at profile 2 (HTTP Basic over TLS); the station requires 3 (configured 2, seen at 3)",
        ),
        (
            "profile_downgrade",
            "connected at profile 1 (HTTP Basic over plain ws://); the station requires 3 (configured 2, seen at 3)",
        ),
    ]
