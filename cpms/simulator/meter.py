"""A charger's energy meter and the EV plugged into it: deterministic for a given random generator.

AC charging on three phases: the EV draws up to the connector's current limit until its battery reaches
about 80 %, then tapers linearly towards 10 % of that at 100 % (the usual constant-current /
constant-voltage shape). Energy advances by power x simulated time; the register is an integer in Wh.
"""

import datetime as dt
import random
from dataclasses import dataclass

PHASES = ("L1", "L2", "L3")
NOMINAL_VOLTAGE_V = 230.0
TAPER_FROM_SOC = 80.0


@dataclass(frozen=True)
class Sample:
    """One reading. None: not measured in this reading (it is left out on the wire)."""

    timestamp: dt.datetime
    # OCPP ReadingContext: "Sample.Periodic", "Transaction.Begin", "Transaction.End", "Trigger".
    context: str
    energy_wh: int
    power_w: int | None = None
    current_a: tuple[float, float, float] | None = None
    voltage_v: tuple[float, float, float] | None = None
    soc_percent: int | None = None


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ocpp_timestamp(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with milliseconds, the way most chargers write it (`2025-01-31T12:00:00.123Z`)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(value: str | None) -> dt.datetime | None:
    """An OCPP timestamp as an aware datetime (naive ones are UTC); None when absent or unreadable."""
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


class EnergyMeter:
    """The connector's cumulative import register. Survives sessions (and simulated reboots)."""

    def __init__(self, rng: random.Random):
        # A used charger: somewhere between new and a few MWh on the clock.
        self.register_wh = rng.randint(0, 5_000_000)
        self._fraction_wh = 0.0

    def add(self, energy_wh: float) -> None:
        total = self._fraction_wh + energy_wh
        whole = int(total)
        self.register_wh += whole
        self._fraction_wh = total - whole


class EvSession:
    """The EV charging on one connector for one session."""

    def __init__(self, rng: random.Random, meter: EnergyMeter, *, max_current_a: float = 16.0):
        self._rng = rng
        self.meter = meter
        self.capacity_wh = rng.choice((40_000, 58_000, 77_000, 100_000))
        self.soc = rng.uniform(15.0, 60.0)
        # The EV's on-board charger may accept less than the connector offers.
        self.max_current_a = min(max_current_a, rng.choice((16.0, 16.0, 32.0)))
        self._base_voltages = tuple(NOMINAL_VOLTAGE_V + rng.uniform(-4.0, 4.0) for _ in PHASES)
        # The last reading: nothing flows until the first advance().
        self._voltages = self._base_voltages
        self._currents: tuple[float, ...] = (0.0, 0.0, 0.0)
        self._power_w = 0.0

    def _current_target(self) -> float:
        if self.soc >= 100.0:
            return 0.0
        if self.soc <= TAPER_FROM_SOC:
            return self.max_current_a
        remaining = (100.0 - self.soc) / (100.0 - TAPER_FROM_SOC)
        return self.max_current_a * (0.1 + 0.9 * remaining)

    def advance(
        self, seconds: float, *, context: str = "Sample.Periodic", limit_a: float | None = None
    ) -> Sample:
        """Charge for `seconds` of simulated time, then read the meter. `limit_a`: the charger's current limit
        per phase from its charging profiles (None: only the EV's and the connector's own limits); below 6 A
        an EV does not charge (IEC 61851)."""
        target = self._current_target()
        if limit_a is not None:
            target = min(target, limit_a) if limit_a >= 6.0 else 0.0
        self._currents = tuple(round(target * self._rng.uniform(0.97, 1.0), 1) for _ in PHASES)
        self._voltages = tuple(v + self._rng.uniform(-0.5, 0.5) for v in self._base_voltages)
        self._power_w = sum(i * v for i, v in zip(self._currents, self._voltages, strict=True))
        energy_wh = self._power_w * seconds / 3600.0
        self.meter.add(energy_wh)
        self.soc = min(100.0, self.soc + 100.0 * energy_wh / self.capacity_wh)
        return self.sample(context)

    def sample(self, context: str) -> Sample:
        """A full reading now, without charging further (a periodic or triggered reading)."""
        l1, l2, l3 = self._currents
        v1, v2, v3 = (round(v, 1) for v in self._voltages)
        return Sample(
            timestamp=utc_now(),
            context=context,
            energy_wh=self.meter.register_wh,
            power_w=round(self._power_w),
            current_a=(l1, l2, l3),
            voltage_v=(v1, v2, v3),
            soc_percent=int(self.soc),
        )

    def register_sample(self, context: str) -> Sample:
        """The register and the EV's state of charge: what chargers send at Transaction.Begin/End."""
        return Sample(
            timestamp=utc_now(), context=context, energy_wh=self.meter.register_wh, soc_percent=int(self.soc)
        )
