"""The device model a charger reports (2.0.1 NotifyReport; later 1.6 GetConfiguration), stored per attribute."""

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
