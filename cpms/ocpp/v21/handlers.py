"""OCPP 2.1: a superset of 2.0.1 for every message the 2.0.1 handlers take (the 2.1 schemas only add
optional fields to them), so the same handlers and mappers serve it, validated against the 2.1 schemas.

2.1 messages that 2.0.1 does not have (DER control, battery swap, settlement, periodic event streams, ...)
are answered NotSupported: recognised, not supported yet.
"""

from ocpp.v21.enums import Action

from cpms.ocpp.v201.handlers import V201ChargePoint


class V21ChargePoint(V201ChargePoint):
    version = "2.1"
    known_actions = frozenset(action.value for action in Action)
