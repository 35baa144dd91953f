"""Input and output serializers of the energy API: grid nodes and their schedules, external signals, EVSE
wiring, the charging profiles sent, and a site's live energy view.

Currents are amps per phase, decimal strings with one decimal ("16.0"), as stored. Inputs accept decimal
strings or JSON numbers. A list of three currents is per grid phase L1, L2, L3; null in a limit is
"unlimited".

Enum naming: the OpenAPI generator names a `kind` enum after the one component that uses it. The node and
signal input and output serializers therefore share a component name ("GridNode" answered, "GridNodeRequest"
posted), so that their `kind` is one enum (GridNodeKindEnum, GridSignalKindEnum); the energy view repeats a
node's kind as a plain string.
"""

from decimal import Decimal

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from cpms.api import StrictInputSerializer
from energy.enums import NodeKind, ProfileKind, SignalKind
from energy.models import ChargingProfileRecord, EvseElectrical, GridNode, GridSignal, NodeLimitSchedule
from energy.selectors import DAYS


def _amps(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=8, decimal_places=1, **kwargs)


# --- grid nodes and schedules ---------------------------------------------------------------------------


class ScheduleRowOutputSerializer(serializers.ModelSerializer):
    day_of_week = serializers.ListField(
        child=serializers.ChoiceField(choices=DAYS), help_text="Days the period starts on; empty: every day."
    )

    class Meta:
        model = NodeLimitSchedule
        fields = ["position", "start_time", "end_time", "day_of_week", "limit_a"]
        read_only_fields = fields


SCHEDULE_HELP = (
    "Limits at times of day (site local time), first matching row wins; outside them the node's own limit. "
    "An end_time at or before start_time wraps past midnight."
)


@extend_schema_serializer(component_name="GridNode")
class GridNodeOutputSerializer(serializers.ModelSerializer):
    schedule = ScheduleRowOutputSerializer(
        source="schedules", many=True, read_only=True, help_text=SCHEDULE_HELP
    )

    class Meta:
        model = GridNode
        fields = [
            "id",
            "site",
            "parent",
            "name",
            "kind",
            "limit_a",
            "limit_kw",
            "voltage_v",
            "schedule",
            "created_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "parent": {"help_text": "The node it hangs off; null for the root (the grid connection)."},
            "limit_a": {"help_text": "Amps per phase (the fuse); null: unlimited."},
            "limit_kw": {
                "help_text": "Power of the whole connection, as amps per phase kW*1000/(3*voltage_v); the "
                "smaller of both limits applies."
            },
        }


def _limit_a_field() -> serializers.DecimalField:
    return _amps(
        min_value=Decimal(0),
        required=False,
        allow_null=True,
        help_text="Amps per phase (the fuse); null: unlimited.",
    )


def _limit_kw_field() -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=10,
        decimal_places=2,
        min_value=Decimal(0),
        required=False,
        allow_null=True,
        help_text="Power of the whole connection in kW, as amps per phase kW*1000/(3*voltage_v); null: none.",
    )


def _voltage_field() -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=1, max_value=100_000, required=False, help_text="Phase-to-neutral voltage (default 230)."
    )


@extend_schema_serializer(component_name="GridNode")
class GridNodeInputSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=100, help_text="Unique in the site.")
    kind = serializers.ChoiceField(
        choices=NodeKind.choices,
        required=False,
        help_text="Default: grid_connection for the root (no parent), else circuit. Only the root is the grid "
        "connection.",
    )
    parent = serializers.IntegerField(  # type: ignore[assignment]  # a field named like Field.parent
        required=False,
        allow_null=True,
        default=None,
        help_text="A node of the same site; null: the root (a site has one).",
    )
    limit_a = _limit_a_field()
    limit_kw = _limit_kw_field()
    voltage_v = _voltage_field()


class GridNodeUpdateSerializer(StrictInputSerializer):
    """What a node may change; site and kind are fixed."""

    name = serializers.CharField(max_length=100, required=False)
    parent = serializers.IntegerField(  # type: ignore[assignment]  # a field named like Field.parent
        required=False,
        allow_null=True,
        help_text="Move under another node of the site (not its own subtree).",
    )
    limit_a = _limit_a_field()
    limit_kw = _limit_kw_field()
    voltage_v = _voltage_field()


class ScheduleRowInputSerializer(StrictInputSerializer):
    start_time = serializers.TimeField(help_text="Site local time, e.g. 17:00.")
    end_time = serializers.TimeField(help_text="Exclusive; at or before start_time: wraps past midnight.")
    day_of_week = serializers.ListField(
        child=serializers.ChoiceField(choices=DAYS),
        required=False,
        default=list,
        help_text="Days the period starts on (a FRIDAY 22:00-06:00 row covers Saturday 02:00); empty: every day.",
    )
    limit_a = _amps(min_value=Decimal(0), help_text="Amps per phase while the row is in force.")


class NodeScheduleInputSerializer(StrictInputSerializer):
    schedule = ScheduleRowInputSerializer(many=True, help_text=f"The whole schedule. {SCHEDULE_HELP}")


class NodeScheduleOutputSerializer(serializers.Serializer):
    schedule = ScheduleRowOutputSerializer(many=True, read_only=True, help_text=SCHEDULE_HELP)


# --- external signals -----------------------------------------------------------------------------------


@extend_schema_serializer(component_name="GridSignal")
class GridSignalOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = GridSignal
        fields = [
            "id",
            "node",
            "kind",
            "l1_a",
            "l2_a",
            "l3_a",
            "source",
            "measured_at",
            "valid_until",
            "received_at",
        ]
        read_only_fields = fields


@extend_schema_serializer(component_name="GridSignal")
class GridSignalInputSerializer(StrictInputSerializer):
    kind = serializers.ChoiceField(
        choices=SignalKind.choices,
        help_text="meter_reading: the current measured at the node, all loads included (negative: export); "
        "dynamic_limit: a limit per phase from outside (PV surplus, grid operator), 0 or more.",
    )
    l1_a = _amps(help_text="Amps on grid phase L1.")
    l2_a = _amps(help_text="Amps on grid phase L2.")
    l3_a = _amps(help_text="Amps on grid phase L3.")
    measured_at = serializers.DateTimeField(
        required=False, allow_null=True, default=None, help_text="In force from; default: now."
    )
    valid_until = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="In force until (exclusive); default: measured_at + 5 minutes.",
    )
    source = serializers.CharField(  # type: ignore[assignment]  # a field named like Field.source
        max_length=100, required=False, allow_blank=True, default="", help_text="Who sent it, free text."
    )


class GridSignalFilterSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=SignalKind.choices, required=False)


# --- EVSE wiring ----------------------------------------------------------------------------------------


class EvseElectricalOutputSerializer(serializers.ModelSerializer):
    station = serializers.CharField(
        source="evse.station.identity", read_only=True, help_text="Station identity."
    )
    evse_id = serializers.IntegerField(source="evse.evse_id", read_only=True, help_text="OCPP EVSE number.")

    class Meta:
        model = EvseElectrical
        fields = [
            "station",
            "evse_id",
            "node",
            "phase_rotation",
            "min_current_a",
            "max_current_a",
            "priority",
        ]
        read_only_fields = fields


ROTATION_HELP = (
    "The grid phases (1-3) the charger's L1, L2, L3 are wired to, in order: '123' none, '231' rotated, '3' a "
    "single-phase charger on grid L3."
)


class EvseElectricalInputSerializer(StrictInputSerializer):
    """The whole wiring (PUT): fields left out take their defaults."""

    node = serializers.IntegerField(help_text="A grid node of the station's site.")
    phase_rotation = serializers.CharField(
        max_length=3, required=False, default="123", help_text=ROTATION_HELP
    )
    min_current_a = _amps(
        min_value=Decimal(0),
        required=False,
        default=Decimal(6),
        help_text="Below this a car stops: the EVSE is paused instead (default 6).",
    )
    max_current_a = _amps(min_value=Decimal(0), required=False, default=Decimal(32), help_text="Default 32.")
    priority = serializers.IntegerField(
        min_value=-32768, max_value=32767, required=False, default=0, help_text="Higher is served first."
    )


# --- charging profiles ----------------------------------------------------------------------------------


class ChargingProfileOutputSerializer(serializers.ModelSerializer):
    station = serializers.CharField(source="station.identity", read_only=True, help_text="Station identity.")

    class Meta:
        model = ChargingProfileRecord
        fields = [
            "id",
            "station",
            "evse_id",
            "kind",
            "profile_id",
            "stack_level",
            "limit_a",
            "transaction_id",
            "profile",
            "command",
            "status",
            "created_at",
        ]
        read_only_fields = fields
        extra_kwargs = {"command": {"help_text": "The command that carried it (GET /commands/{id}/)."}}


class ChargingProfileFilterSerializer(serializers.Serializer):
    evse_id = serializers.IntegerField(required=False, help_text="OCPP EVSE number; 0 = the station.")
    kind = serializers.ChoiceField(choices=ProfileKind.choices, required=False)


# --- the live view --------------------------------------------------------------------------------------


def _phases(help_text: str, *, allow_null_items: bool = False) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.DecimalField(max_digits=12, decimal_places=1, allow_null=allow_null_items),
        min_length=3,
        max_length=3,
        help_text=help_text,
    )


class EnergyNodeOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    parent = serializers.IntegerField(allow_null=True)  # type: ignore[assignment]  # named like Field.parent
    name = serializers.CharField()
    kind = serializers.CharField(help_text="grid_connection, panel or circuit.")
    limit_a = _phases(
        "The limit in force per grid phase (schedule, else the node's own, capped by a dynamic limit); null: "
        "unlimited.",
        allow_null_items=True,
    )
    base_load_a = _phases("What other loads draw at the node (meter reading minus the managed EVSEs).")
    planned_load_a = _phases("Base load plus the current allocated to the EVSEs under the node.")
    schedule_position = serializers.IntegerField(
        allow_null=True, help_text="The schedule row in force (its position), or null."
    )
    dynamic_limit = serializers.IntegerField(
        allow_null=True, help_text="The dynamic-limit signal applied, or null."
    )
    meter_reading = serializers.IntegerField(
        allow_null=True, help_text="The meter-reading signal used, or null."
    )


class EnergyAllocationOutputSerializer(serializers.Serializer):
    limit_a = _amps(help_text="The balancer's last decision; 0 when paused.")
    paused = serializers.BooleanField()
    phases_used = serializers.CharField(help_text="Grid phases reserved, e.g. '123' or '2'.")
    computed_at = serializers.DateTimeField()
    sent_limit_a = _amps(allow_null=True, help_text="The limit the charger last accepted; null: none yet.")
    sent_at = serializers.DateTimeField(allow_null=True)


class EnergyEvseOutputSerializer(serializers.Serializer):
    station = serializers.CharField(help_text="Station identity.")
    evse_id = serializers.IntegerField(help_text="OCPP EVSE number.")
    node = serializers.IntegerField()
    phase_rotation = serializers.CharField()
    min_current_a = _amps()
    max_current_a = _amps()
    priority = serializers.IntegerField()
    active = serializers.BooleanField(help_text="A charging session is active on it.")
    session = serializers.IntegerField(allow_null=True, help_text="The active session, or null.")
    measured_a = serializers.ListField(
        child=serializers.DecimalField(max_digits=12, decimal_places=1),
        allow_null=True,
        min_length=1,
        max_length=3,
        help_text="Measured current per charger phase L1..Ln (last 5 minutes), or null.",
    )
    allocation = EnergyAllocationOutputSerializer(allow_null=True)
    latest_profile = ChargingProfileOutputSerializer(allow_null=True, help_text="The last profile sent.")


class SiteEnergyOutputSerializer(serializers.Serializer):
    site = serializers.IntegerField()
    time_zone = serializers.CharField()
    at = serializers.DateTimeField(help_text="The instant of the picture.")
    nodes = EnergyNodeOutputSerializer(many=True)
    evses = EnergyEvseOutputSerializer(many=True)


class ProfileCheckOutputSerializer(serializers.Serializer):
    """What the platform expects the EVSE's limit to be now and what the charger reports."""

    evse_id = serializers.IntegerField(help_text="The OCPP EVSE (1.6: connector) number.")
    expected_a = serializers.DecimalField(
        max_digits=8, decimal_places=1, allow_null=True, help_text="The last limit sent; null if none."
    )
    reported_a = serializers.DecimalField(
        max_digits=8,
        decimal_places=1,
        allow_null=True,
        help_text="The limit now in the charger's composite schedule; null if it gave none.",
    )
    matches = serializers.BooleanField()
    command_id = serializers.IntegerField(help_text="The GetCompositeSchedule command (see /commands/).")
    detail = serializers.CharField(help_text="Why there is no reported limit, else empty.")
