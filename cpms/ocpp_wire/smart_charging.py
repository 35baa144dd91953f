"""SetChargingProfile and GetCompositeSchedule calls as each OCPP version expects them (pure; no I/O).

Two kinds of profile, both in amps per phase and `Relative` (the schedule starts when the transaction does):
- the fail-safe default, TxDefaultProfile at stack level 0 on each managed EVSE: what the charger applies to
  any transaction when it has nothing better, including while it is offline (1.6 section 3.13.2; 2.0.1 K01);
- a session's limit from the balancer, TxProfile at stack level 1 naming the transaction (1.6 requires a
  transactionId for TxProfile, 2.0.1 K01.FR.03 too). A limit of 0 pauses charging.

Profile ids are fixed per EVSE and kind, so a new limit replaces the previous profile on the charger
(same id: 1.6 section 3.13.4, 2.0.1 K01.FR.05) instead of piling up profiles.
"""

from decimal import Decimal
from typing import Any

from cpms.ocpp_wire.calls import Call, call_checked, version_checked

DEFAULT_STACK_LEVEL = 0
TX_STACK_LEVEL = 1
_DEFAULT_ID_BASE = 9_000_000
_TX_ID_BASE = 9_100_000


def default_profile_id(evse_number: int) -> int:
    return _DEFAULT_ID_BASE + evse_number


def tx_profile_id(evse_number: int) -> int:
    return _TX_ID_BASE + evse_number


def _limit(limit_a: Decimal) -> float:
    # OCPP limits are decimals with at most one fractional digit here (the balancer works in 0.1 A).
    return float(limit_a.quantize(Decimal("0.1")))


def _periods(limit_a: Decimal) -> list[dict[str, Any]]:
    return [{"startPeriod": 0, "limit": _limit(limit_a)}]


def set_charging_profile(
    version: str,
    *,
    evse_number: int,
    limit_a: Decimal,
    purpose: str,
    transaction_id: str | None = None,
) -> Call:
    """SetChargingProfile for `version` ("1.6", "2.0.1" or "2.1"); `purpose` TxDefaultProfile or TxProfile
    (which needs `transaction_id`)."""
    if purpose not in {"TxDefaultProfile", "TxProfile"}:
        raise ValueError(f"unsupported purpose {purpose!r}")
    if purpose == "TxProfile" and not transaction_id:
        raise ValueError("a TxProfile needs the transaction id")
    is_tx = purpose == "TxProfile"
    profile_id = tx_profile_id(evse_number) if is_tx else default_profile_id(evse_number)
    stack_level = TX_STACK_LEVEL if is_tx else DEFAULT_STACK_LEVEL
    if version_checked(version) == "1.6":
        profile: dict[str, Any] = {
            "chargingProfileId": profile_id,
            "stackLevel": stack_level,
            "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Relative",
            "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": _periods(limit_a)},
        }
        if is_tx:
            # 1.6 transaction ids are integers on the wire.
            profile["transactionId"] = int(transaction_id)  # type: ignore[arg-type]  # checked above
        return call_checked(
            version, Call("SetChargingProfile", {"connectorId": evse_number, "csChargingProfiles": profile})
        )
    profile = {
        "id": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Relative",
        "chargingSchedule": [
            {"id": profile_id, "chargingRateUnit": "A", "chargingSchedulePeriod": _periods(limit_a)}
        ],
    }
    if is_tx:
        profile["transactionId"] = transaction_id
    return call_checked(
        version, Call("SetChargingProfile", {"evseId": evse_number, "chargingProfile": profile})
    )


def get_composite_schedule(version: str, *, evse_number: int, duration_s: int, rate_unit: str = "A") -> Call:
    """GetCompositeSchedule of one EVSE (1.6 connectorId n is our EVSE n) for the next `duration_s`."""
    key = "connectorId" if version_checked(version) == "1.6" else "evseId"
    return call_checked(
        version,
        Call(
            "GetCompositeSchedule", {key: evse_number, "duration": duration_s, "chargingRateUnit": rate_unit}
        ),
    )
