"""What a simulated charger needs from one OCPP version (`ProtocolClient`, implemented by charger_v16.py and
charger_v201.py) and what the clients hand back to it."""

from dataclasses import dataclass
from typing import Protocol

from cpms.simulator.meter import Sample


class CallFailed(Exception):
    """A call the CSMS answered with a CALLERROR, answered invalidly, or did not answer in time.
    Already recorded in the charger's result by the protocol client."""


@dataclass(frozen=True)
class BootResult:
    status: str
    interval_s: int


@dataclass(frozen=True)
class StartResult:
    transaction_id: str
    id_token_status: str
    # The Transaction.Begin reading as sent with the start (2.0.1 TransactionEvent Started). Empty when
    # the version sends it in a MeterValues of its own (1.6).
    meter_values: list[dict]


class ProtocolClient(Protocol):
    """What a charger needs from one OCPP version. Transaction ids are strings (1.6 sends integers)."""

    async def serve(self) -> None:
        """Read and route frames until the connection closes."""

    async def boot(self) -> BootResult: ...

    async def heartbeat(self) -> None: ...

    async def status_notification(
        self, *, connector_id: int, status: str, error_code: str = "NoError"
    ) -> None: ...

    async def authorize(self, *, id_tag: str) -> str:
        """The id token's status as the CSMS answered it."""

    async def start_transaction(
        self, *, connector_id: int, id_tag: str, meter_start_wh: int, timestamp: str, begin: Sample
    ) -> StartResult: ...

    async def meter_values(
        self, *, connector_id: int, transaction_id: str | None, samples: list[Sample]
    ) -> list[dict]:
        """Send samples; return them as sent on the wire."""

    async def stop_transaction(
        self,
        *,
        transaction_id: str,
        id_tag: str,
        meter_stop_wh: int,
        timestamp: str,
        reason: str,
        samples: list[Sample],
    ) -> list[dict]:
        """Stop; return the meter values sent with the stop as they were on the wire."""

    async def reservation_ended(self, reservation_id: int) -> None:
        """A reservation expired (2.0.1 ReservationStatusUpdate Expired; 1.6 says nothing)."""
