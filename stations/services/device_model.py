"""The device model a charger reports, stored per attribute: 2.0.1 NotifyReport (device_variables_record),
and the values command answers tell (1.6 GetConfiguration / ChangeConfiguration, 2.0.1 GetVariables /
SetVariables: device_variable_values_record)."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction

from stations.models import DeviceVariable

_KEY = [
    "station",
    "component",
    "component_instance",
    "evse_id",
    "connector_id",
    "variable",
    "variable_instance",
    "attribute_type",
]
_VALUES = [
    "value",
    "mutability",
    "persistent",
    "constant",
    "data_type",
    "unit",
    "min_limit",
    "max_limit",
    "values_list",
    "supports_monitoring",
    "updated_at",
]


@dataclass(frozen=True, slots=True)
class VariableReport:
    component: str
    variable: str
    attribute_type: str = "Actual"
    component_instance: str = ""
    evse_id: int = 0
    connector_id: int = 0
    variable_instance: str = ""
    value: str = ""
    mutability: str = ""
    persistent: bool | None = None
    constant: bool | None = None
    data_type: str = ""
    unit: str = ""
    min_limit: Decimal | None = None
    max_limit: Decimal | None = None
    values_list: str = ""
    supports_monitoring: bool | None = None


@transaction.atomic
def device_variables_record(*, station_id: int, reports: list[VariableReport], reported_at: datetime) -> int:
    """Upsert reported attributes (the latest report wins). Returns how many rows were written."""
    rows = [
        DeviceVariable(
            station_id=station_id, updated_at=reported_at, **{f: getattr(r, f) for f in r.__slots__}
        )
        for r in reports
    ]
    # The same attribute twice in one report: keep the last (a bulk upsert may not touch a row twice).
    unique = {tuple(getattr(row, f if f != "station" else "station_id") for f in _KEY): row for row in rows}
    DeviceVariable.objects.bulk_create(
        list(unique.values()),
        update_conflicts=True,
        unique_fields=_KEY,
        update_fields=_VALUES,
        batch_size=500,
    )
    return len(unique)


# --- values read or written by commands (GetConfiguration, ChangeConfiguration, GetVariables, SetVariables) --

# 1.6 has no device model: its configuration keys are stored as variables of this component.
OCPP16_COMPONENT = "OCPP16"


@dataclass(frozen=True, slots=True)
class VariableValue:
    """One attribute's value as a command's answer told it. `mutability` "" keeps what is stored (only a
    1.6 GetConfiguration answer says it: `readonly`)."""

    component: str
    variable: str
    value: str
    attribute_type: str = "Actual"
    component_instance: str = ""
    evse_id: int = 0
    connector_id: int = 0
    variable_instance: str = ""
    mutability: str = ""


_VALUE_FIELDS = [
    "component",
    "component_instance",
    "evse_id",
    "connector_id",
    "variable",
    "variable_instance",
]


@transaction.atomic
def device_variable_values_record(
    *, station_id: int, values: list[VariableValue], recorded_at: datetime
) -> int:
    """Upsert the values of attributes (the latest wins), leaving what else a NotifyReport stored about them
    (data type, unit, limits...) as it was. Returns how many rows were written."""
    unique: dict[tuple[object, ...], VariableValue] = {}
    for item in values:
        unique[(*(getattr(item, f) for f in _VALUE_FIELDS), item.attribute_type)] = item
    written = 0
    for with_mutability in (True, False):
        rows = [
            DeviceVariable(
                station_id=station_id,
                updated_at=recorded_at,
                value=item.value,
                mutability=item.mutability,
                attribute_type=item.attribute_type,
                **{f: getattr(item, f) for f in _VALUE_FIELDS},
            )
            for item in unique.values()
            if bool(item.mutability) is with_mutability
        ]
        if not rows:
            continue
        DeviceVariable.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=_KEY,
            update_fields=["value", "mutability", "updated_at"]
            if with_mutability
            else ["value", "updated_at"],
            batch_size=500,
        )
        written += len(rows)
    return written
