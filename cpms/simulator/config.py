"""What a simulated charger (and a fleet of them) is asked to do. Protocol-independent."""

import ssl
from dataclasses import dataclass

DEFAULT_IDENTITY_PREFIX = "SIM-"
DEFAULT_ID_TAG = "SIM-TAG-0001"
# FleetConfig.protocol: every other charger speaks 1.6, the others 2.0.1 (1.6 first).
MIXED = "mixed"
MIXED_VERSIONS = ("1.6", "2.0.1")


@dataclass(frozen=True)
class ChargerConfig:
    """One charger. `url` is the CSMS base URL without the identity (`ws://host:port/ocpp`)."""

    url: str
    identity: str
    protocol: str = "1.6"
    password: str | None = None
    connectors: int = 2
    sessions: bool = False
    session_count: int = 1
    # Periodic MeterValues per session (a session may end earlier: deadline, RemoteStop, Reset).
    meter_samples: int = 5
    meter_interval_s: float = 10.0
    # Simulated charging seconds per real second: energy and SoC advance by power * interval * speedup.
    speedup: float = 1.0
    # Stay connected this long in total (heartbeats, answering the CSMS); None: leave once the scenario is
    # done. Also a hard deadline for the scenario: a running session is stopped when it passes.
    duration_s: float | None = None
    id_tag: str = DEFAULT_ID_TAG
    # Everything random (meter register, EV battery, power jitter) derives from (seed, identity).
    seed: int = 0
    response_timeout_s: float = 30.0
    open_timeout_s: float = 10.0
    # How many times a charger reconnects after a CSMS Reset before it stops obeying (bounds the loop).
    max_reboots: int = 3
    # TLS (a wss:// url; security profiles 2 and 3): the CA bundle the CSMS's certificate must chain to (the
    # charger's CSMSRootCertificate; None: the system's), and for profile 3 the charger's certificate (PEM,
    # with its chain) and private key files.
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    # The operator's name as SecurityCtrlr.OrganizationName (2.0.1) / CpoName (1.6) hold it: the O of the CSRs
    # the charger makes (the CSMS refuses a CSR whose O is not its operator's name).
    organization: str = ""

    def ssl_context(
        self, *, cert_file: str | None = None, key_file: str | None = None
    ) -> ssl.SSLContext | None:
        """What `websockets.connect(ssl=...)` takes: None for a ws:// url. `cert_file`/`key_file` replace the
        configured client certificate (a charger that installed a newly signed one reconnects with it)."""
        return tls_context(
            self.url,
            ca_file=self.tls_ca_file,
            cert_file=cert_file or self.tls_cert_file,
            key_file=key_file or self.tls_key_file,
        )


def tls_context(
    url: str, *, ca_file: str | None, cert_file: str | None, key_file: str | None
) -> ssl.SSLContext | None:
    """A charger's TLS: it checks the CSMS's certificate and host name (OCPP A00.FR.307-308), speaks TLS 1.2 or
    above (A00.FR.312), and presents its own certificate when it has one (profile 3)."""
    if not url.startswith("wss://"):
        return None
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


@dataclass(frozen=True)
class FleetConfig:
    url: str
    stations: int = 1
    # An OCPP version, or MIXED.
    protocol: str = "1.6"
    identity_prefix: str = DEFAULT_IDENTITY_PREFIX
    # Explicit identities win over prefix + count.
    identities: tuple[str, ...] = ()
    password: str | None = None
    connectors: int = 2
    sessions: bool = False
    session_count: int = 1
    meter_samples: int = 5
    meter_interval_s: float = 10.0
    speedup: float = 1.0
    duration_s: float | None = None
    id_tag: str = DEFAULT_ID_TAG
    seed: int = 0
    response_timeout_s: float = 30.0
    open_timeout_s: float = 10.0
    # As ChargerConfig's; one client certificate serves a fleet of one (its CN is the identity, profile 3).
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    organization: str = ""
    # Handshakes in flight at once: Channels admits a few hundred new connections per second
    # (docs/performance.md#connections-and-file-descriptors), so a thousand simultaneous opens would mostly
    # time out.
    max_concurrent_handshakes: int = 50

    def identity_list(self) -> list[str]:
        if self.identities:
            return list(self.identities)
        return [f"{self.identity_prefix}{i:03d}" for i in range(1, self.stations + 1)]

    def protocol_of(self, index: int) -> str:
        """The OCPP version of the charger at `index` (0-based) in identity_list()."""
        if self.protocol == MIXED:
            return MIXED_VERSIONS[index % len(MIXED_VERSIONS)]
        return self.protocol

    def charger(self, identity: str, index: int = 0) -> ChargerConfig:
        return ChargerConfig(
            url=self.url,
            identity=identity,
            protocol=self.protocol_of(index),
            password=self.password,
            connectors=self.connectors,
            sessions=self.sessions,
            session_count=self.session_count,
            meter_samples=self.meter_samples,
            meter_interval_s=self.meter_interval_s,
            speedup=self.speedup,
            duration_s=self.duration_s,
            id_tag=self.id_tag,
            seed=self.seed,
            response_timeout_s=self.response_timeout_s,
            open_timeout_s=self.open_timeout_s,
            tls_ca_file=self.tls_ca_file,
            tls_cert_file=self.tls_cert_file,
            tls_key_file=self.tls_key_file,
            organization=self.organization,
        )
