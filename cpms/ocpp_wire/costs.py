"""The running cost of a transaction shown on the charger (OCPP 2.0.1 I02 CostUpdated; 1.6 has no such
message)."""

from decimal import Decimal

from cpms.ocpp_wire.calls import Call, call_checked


def cost_updated(version: str, *, total_cost: Decimal, transaction_id: str) -> Call:
    """CostUpdated {totalCost, transactionId} (2.0.1 / 2.1 only: ValidationFailed for 1.6)."""
    return call_checked(
        version, Call("CostUpdated", {"totalCost": float(total_cost), "transactionId": transaction_id})
    )
