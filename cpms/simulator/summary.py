"""What the simulator reports: per session, per charger, per fleet. Protocol-independent, except that
meter values are kept exactly as sent on the wire (so that a test can compare them with what was stored)."""

from collections import Counter
from dataclasses import asdict, dataclass, field


@dataclass
class SessionRecord:
    connector_id: int
    id_tag: str
    remote: bool = False
    # 2.0.1 RequestStartTransaction.remoteStartId, echoed in TransactionEvent Started (F01.FR.25).
    remote_start_id: int | None = None
    # The reservation the session used (1.6 StartTransaction.reservationId, 2.0.1 TransactionEvent).
    reservation_id: int | None = None
    transaction_id: str | None = None
    meter_start_wh: int | None = None
    meter_stop_wh: int | None = None
    started_at: str | None = None
    stopped_at: str | None = None
    stop_reason: str | None = None
    # "completed", "failed", or "running" while in progress.
    status: str = "running"
    failure: str | None = None
    # meterValue elements as sent, {"timestamp", "sampledValue": [...]}: 1.6 MeterValues, 2.0.1
    # TransactionEvent Started and Updated.
    meter_values: list[dict] = field(default_factory=list)
    # Meter values sent with the stop (1.6 StopTransaction.transactionData, 2.0.1 TransactionEvent Ended).
    transaction_data: list[dict] = field(default_factory=list)

    @property
    def energy_wh(self) -> int | None:
        if self.meter_start_wh is None or self.meter_stop_wh is None:
            return None
        return self.meter_stop_wh - self.meter_start_wh

    def fail(self, reason: str) -> None:
        self.status = "failed"
        self.failure = reason


@dataclass
class Transfer:
    """One file transfer made for the CSMS: a firmware download (GET) or a log upload (PUT)."""

    # "firmware", "signed_firmware", "publish_firmware", "diagnostics" or "log".
    kind: str
    method: str
    url: str
    request_id: int | None = None
    # "running", "done" or "failed".
    status: str = "running"
    http_status: int | None = None
    # Bytes received (GET) or sent (PUT), with their digests.
    size_bytes: int = 0
    sha256: str | None = None
    md5: str | None = None
    attempts: int = 0
    error: str | None = None


@dataclass
class ChargerResult:
    identity: str
    protocol: str = "1.6"
    connected: bool = False
    # HTTP status when the handshake was refused (401, 404, ...).
    refused_status: int | None = None
    failure: str | None = None
    boot_status: str | None = None
    connections: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    # CALLERRORs the CSMS answered our calls with: "Action: ErrorCode description".
    call_errors: list[str] = field(default_factory=list)
    # Other problems: invalid or missing responses, unexpected disconnects.
    errors: list[str] = field(default_factory=list)
    # CSMS-initiated calls we answered, by action.
    calls_received: Counter = field(default_factory=Counter)
    sessions: list[SessionRecord] = field(default_factory=list)
    sessions_skipped: int = 0
    transfers: list[Transfer] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.connected
            and self.failure is None
            and self.boot_status == "Accepted"
            and not any(s.status == "failed" for s in self.sessions)
        )


@dataclass
class FleetSummary:
    url: str
    protocol: str
    chargers: list[ChargerResult]
    elapsed_s: float = 0.0

    @property
    def connected(self) -> int:
        return sum(1 for c in self.chargers if c.connected)

    @property
    def failed(self) -> list[ChargerResult]:
        """Chargers that never got a working connection (refused, unreachable, not accepted at boot)."""
        return [c for c in self.chargers if not c.connected or c.failure or c.boot_status != "Accepted"]

    @property
    def sessions(self) -> list[SessionRecord]:
        return [s for c in self.chargers for s in c.sessions]

    @property
    def sessions_completed(self) -> int:
        return sum(1 for s in self.sessions if s.status == "completed")

    @property
    def sessions_failed(self) -> int:
        return sum(1 for s in self.sessions if s.status == "failed")

    @property
    def sessions_skipped(self) -> int:
        """Requested sessions not started because the deadline (--duration) came first."""
        return sum(c.sessions_skipped for c in self.chargers)

    @property
    def messages_sent(self) -> int:
        return sum(c.messages_sent for c in self.chargers)

    @property
    def call_errors(self) -> int:
        return sum(len(c.call_errors) for c in self.chargers)

    @property
    def other_errors(self) -> int:
        return sum(len(c.errors) for c in self.chargers)

    @property
    def ok(self) -> bool:
        return not self.failed and self.sessions_failed == 0

    @property
    def protocols(self) -> dict[str, int]:
        """Chargers per OCPP version, in the order the versions first appear."""
        return dict(Counter(c.protocol for c in self.chargers))

    def as_dict(self) -> dict:
        return {
            "url": self.url,
            "protocol": self.protocol,
            "protocols": self.protocols,
            "elapsed_s": round(self.elapsed_s, 3),
            "connected": self.connected,
            "failed": len(self.failed),
            "sessions_completed": self.sessions_completed,
            "sessions_failed": self.sessions_failed,
            "sessions_skipped": self.sessions_skipped,
            "messages_sent": self.messages_sent,
            "call_errors": self.call_errors,
            "other_errors": self.other_errors,
            "ok": self.ok,
            "chargers": [
                {**asdict(c), "calls_received": dict(c.calls_received), "ok": c.ok} for c in self.chargers
            ],
        }

    def format(self, *, max_listed: int = 20) -> str:
        versions = self.protocol
        if len(self.protocols) > 1:
            versions = ", ".join(f"{version} x{count}" for version, count in self.protocols.items())
        lines = [
            f"Simulated {len(self.chargers)} charger(s), OCPP {versions}, against {self.url} "
            f"in {self.elapsed_s:.1f} s",
            f"  chargers connected:  {self.connected}",
            f"  chargers failed:     {len(self.failed)}",
        ]
        for charger in self.failed[:max_listed]:
            lines.append(f"    {charger.identity}: {_failure_text(charger)}")
        if len(self.failed) > max_listed:
            lines.append(f"    ... and {len(self.failed) - max_listed} more")
        lines.append(f"  sessions completed:  {self.sessions_completed}")
        lines.append(f"  sessions failed:     {self.sessions_failed}")
        failed_sessions = [(c.identity, s) for c in self.chargers for s in c.sessions if s.status == "failed"]
        for identity, session in failed_sessions[:max_listed]:
            lines.append(
                f"    {identity} connector {session.connector_id}: {session.failure or session.status}"
            )
        if self.sessions_skipped:
            lines.append(f"  sessions skipped:    {self.sessions_skipped} (deadline reached)")
        energy = sum(s.energy_wh or 0 for s in self.sessions if s.status == "completed")
        if self.sessions:
            lines.append(f"  energy delivered:    {energy} Wh")
        lines.append(f"  messages sent:       {self.messages_sent}")
        lines.append(f"  errors (CALLERROR):  {self.call_errors}")
        for identity, error in [(c.identity, e) for c in self.chargers for e in c.call_errors][:max_listed]:
            lines.append(f"    {identity}: {error}")
        if self.other_errors:
            lines.append(f"  other errors:        {self.other_errors}")
            for identity, error in [(c.identity, e) for c in self.chargers for e in c.errors][:max_listed]:
                lines.append(f"    {identity}: {error}")
        transfers = [t for c in self.chargers for t in c.transfers]
        if transfers:
            failed = sum(1 for t in transfers if t.status == "failed")
            lines.append(f"  file transfers:      {len(transfers)} ({failed} failed)")
        received: Counter[str] = Counter()
        for charger in self.chargers:
            received.update(charger.calls_received)
        if received:
            lines.append(
                "  CSMS calls answered: " + ", ".join(f"{a} x{n}" for a, n in sorted(received.items()))
            )
        return "\n".join(lines)


def _failure_text(charger: ChargerResult) -> str:
    if charger.refused_status is not None:
        return f"refused at the handshake, HTTP {charger.refused_status}"
    if charger.failure:
        return charger.failure
    if charger.boot_status != "Accepted":
        return f"BootNotification {charger.boot_status or 'not answered'}"
    return "failed"
