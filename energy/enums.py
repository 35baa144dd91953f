from django.db import models


class NodeKind(models.TextChoices):
    GRID_CONNECTION = "grid_connection", "Grid connection"
    PANEL = "panel", "Panel"
    CIRCUIT = "circuit", "Circuit"


class SignalKind(models.TextChoices):
    """External inputs the next rebalance uses."""

    METER_READING = "meter_reading", "Measured current at the node (all loads, EVSEs included)"
    DYNAMIC_LIMIT = "dynamic_limit", "A limit set from outside (PV surplus, grid operator)"


class ProfileKind(models.TextChoices):
    """What a sent charging profile is for."""

    DEFAULT = "default", "Fail-safe default at boot (TxDefaultProfile)"
    TRANSACTION = "transaction", "A session's limit from the balancer (TxProfile)"
    CLEAR = "clear", "Limit removed (ClearChargingProfile)"
