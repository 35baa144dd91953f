"""Input and output serializers of the billing API: tariffs and their versions, assignments, site energy
prices, CDRs with their lines and credits, and the cost of a session.

Money and other decimals are strings in the output, as stored: amounts (excl. tax unless named `total`) are
rounded to the currency's minor unit and shown with 4 decimals ("12.3000"), unit prices and quantities with
6 decimals. Inputs accept decimal strings (or JSON numbers) and are read as the decimal of their text.
"""

from decimal import Decimal

from django.db import models
from rest_framework import serializers

from billing.enums import AssignmentLevel
from billing.models import (
    CdrCredit,
    CdrLine,
    ChargeDetailRecord,
    SiteEnergyPrice,
    Tariff,
    TariffAssignment,
    TariffVersion,
)
from billing.services.exports.columns import CDR_API_FIELDS
from cpms.api import StrictInputSerializer

# --- tariffs --------------------------------------------------------------------------------------------


class TariffOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tariff
        fields = ["id", "organisation", "name", "description", "created_at", "updated_at"]
        read_only_fields = fields
        extra_kwargs = {"description": {"help_text": "Shown to drivers (OCPI tariff_alt_text)."}}


class TariffInputSerializer(StrictInputSerializer):
    organisation = serializers.IntegerField(help_text="Needs the manage right on the organisation.")
    name = serializers.CharField(max_length=100, help_text="Unique in the organisation.")
    description = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Shown to drivers (OCPI tariff_alt_text)."
    )


class TariffUpdateSerializer(StrictInputSerializer):
    """Name and description only: prices change through a new version."""

    name = serializers.CharField(max_length=100, required=False)
    description = serializers.CharField(required=False, allow_blank=True)


class TariffFilterSerializer(serializers.Serializer):
    organisation = serializers.IntegerField(required=False, help_text="Organisation id.")


ELEMENTS_HELP = (
    'OCPI 2.2.1 TariffElement list: [{"price_components": [{"type": "ENERGY"|"TIME"|"PARKING_TIME"|"FLAT", '
    '"price": "0.30", "step_size": 1}], "restrictions": {"start_time": "08:00", "end_time": "18:00", '
    '"day_of_week": ["MONDAY"], "min_kwh", "max_kwh", "min_power", "max_power", "min_duration", '
    '"max_duration", "start_date", "end_date"}}]. Prices excl. tax; stored with prices as strings.'
)


class TariffVersionOutputSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, default=None, allow_null=True, help_text="Username."
    )

    class Meta:
        model = TariffVersion
        fields = [
            "tariff",
            "version",
            "valid_from",
            "valid_until",
            "currency",
            "tax_rate",
            "min_price",
            "max_price",
            "parking_grace_s",
            "parking_cap",
            "elements",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "version": {"help_text": "1, 2, ... in the order the versions were created."},
            "elements": {"help_text": ELEMENTS_HELP},
        }


class TariffVersionInputSerializer(StrictInputSerializer):
    valid_from = serializers.DateTimeField(help_text="In force from this instant (unique per tariff).")
    valid_until = serializers.DateTimeField(
        required=False, allow_null=True, default=None, help_text="Not in force from this instant on."
    )
    currency = serializers.CharField(min_length=3, max_length=3, help_text="ISO 4217, e.g. EUR.")
    tax_rate = serializers.DecimalField(
        max_digits=6, decimal_places=4, min_value=Decimal(0), help_text="A fraction: 0.19 = 19 %."
    )
    min_price = serializers.DecimalField(
        max_digits=14,
        decimal_places=4,
        min_value=Decimal(0),
        required=False,
        allow_null=True,
        default=None,
        help_text="Per session, excl. tax.",
    )
    max_price = serializers.DecimalField(
        max_digits=14,
        decimal_places=4,
        min_value=Decimal(0),
        required=False,
        allow_null=True,
        default=None,
        help_text="Per session, excl. tax.",
    )
    parking_grace_s = serializers.IntegerField(
        min_value=0,
        required=False,
        default=0,
        help_text="Idle time after charging ended that is not billed as parking.",
    )
    parking_cap = serializers.DecimalField(
        max_digits=14,
        decimal_places=4,
        min_value=Decimal(0),
        required=False,
        allow_null=True,
        default=None,
        help_text="At most this much parking per session, excl. tax.",
    )
    elements = serializers.JSONField(help_text=ELEMENTS_HELP)


# --- assignments ----------------------------------------------------------------------------------------


class TariffAssignmentOutputSerializer(serializers.ModelSerializer):
    station = serializers.CharField(
        source="station.identity", read_only=True, default=None, allow_null=True, help_text="Identity."
    )
    id_token_group = serializers.IntegerField(
        source="id_token_group_id", read_only=True, allow_null=True, help_text="Id token (or group) id."
    )
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, default=None, allow_null=True, help_text="Username."
    )

    class Meta:
        model = TariffAssignment
        fields = [
            "id",
            "organisation",
            "tariff",
            "level",
            "site",
            "station",
            "id_token_group",
            "scope_key",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "scope_key": {
                "help_text": "The scope spelt out (organisation, site:<id>, station:<id>, token:<id>, "
                "token:<id>/site:<id>, token:<id>/station:<id>); one tariff per scope."
            }
        }


class TariffAssignmentInputSerializer(StrictInputSerializer):
    tariff = serializers.IntegerField(help_text="Tariff id; needs the manage right on its organisation.")
    site = serializers.IntegerField(required=False, allow_null=True, default=None, help_text="Site id.")
    station = serializers.CharField(
        max_length=48,
        required=False,
        allow_null=True,
        default=None,
        trim_whitespace=False,
        help_text="Station identity. At most one of site and station; neither: the whole organisation.",
    )
    id_token_group = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        help_text="An id token or group token id: the tariff applies to it (or its members), narrowed to the "
        "site or station if one is given.",
    )

    def validate(self, attrs):
        if attrs["site"] is not None and attrs["station"] is not None:
            raise serializers.ValidationError("Give a site or a station, not both.")
        return attrs


class TariffAssignmentFilterSerializer(serializers.Serializer):
    organisation = serializers.IntegerField(required=False, help_text="Organisation id.")
    tariff = serializers.IntegerField(required=False, help_text="Tariff id.")
    level = serializers.ChoiceField(choices=AssignmentLevel.choices, required=False)


# --- site energy prices ---------------------------------------------------------------------------------

TIME_OF_USE_HELP = (
    'Windows priced differently, first match wins, local to the site: [{"start_time": "HH:MM", '
    '"end_time": "HH:MM", "day_of_week": ["MONDAY", ...], "price_per_kwh": "0.21"}].'
)


class EnergyPriceOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = SiteEnergyPrice
        fields = ["id", "site", "valid_from", "currency", "price_per_kwh", "time_of_use", "created_at"]
        read_only_fields = fields
        extra_kwargs = {
            "price_per_kwh": {"help_text": "Excl. tax, outside the time-of-use windows."},
            "time_of_use": {"help_text": TIME_OF_USE_HELP},
        }


class EnergyPriceInputSerializer(StrictInputSerializer):
    valid_from = serializers.DateTimeField(help_text="In force from this instant (unique per site).")
    currency = serializers.CharField(min_length=3, max_length=3, help_text="ISO 4217, e.g. EUR.")
    price_per_kwh = serializers.DecimalField(
        max_digits=14,
        decimal_places=6,
        min_value=Decimal(0),
        help_text="Excl. tax, outside the time-of-use windows.",
    )
    time_of_use = serializers.JSONField(
        required=False,
        default=list,
        help_text=TIME_OF_USE_HELP,
    )


# --- CDRs and credits -----------------------------------------------------------------------------------


class CdrLineOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = CdrLine
        fields = [
            "position",
            "dimension",
            "element_index",
            "quantity",
            "used_quantity",
            "unit",
            "unit_price",
            "amount",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "dimension": {
                "help_text": "ENERGY, TIME, PARKING_TIME, FLAT, or an adjustment: PARKING_CAP_ADJUSTMENT, "
                "MIN_PRICE_ADJUSTMENT, MAX_PRICE_ADJUSTMENT."
            },
            "element_index": {"help_text": "The tariff element that priced it; null for adjustments."},
            "quantity": {"help_text": "Billed, after step_size rounding, in `unit` (kWh, h, session)."},
            "used_quantity": {"help_text": "Measured, before step_size rounding."},
        }


class CdrCreditOutputSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, default=None, allow_null=True, help_text="Username."
    )

    class Meta:
        model = CdrCredit
        fields = ["id", "cdr", "currency", "subtotal", "tax", "total", "reason", "created_by", "created_at"]
        read_only_fields = fields
        extra_kwargs = {
            "subtotal": {"help_text": "Negative: what was credited, excl. tax."},
            "tax": {"help_text": "Negative, at the CDR's tax rate."},
            "total": {"help_text": "Negative: subtotal + tax."},
        }


class AsWrittenDecimalField(serializers.DecimalField):
    """A decimal as the caller wrote it, trailing zeros dropped ("1.50" -> 1.5), not quantized: DRF would
    turn "1.5" into 1.5000, which the credit service reads as 4 decimals (more than EUR has)."""

    def __init__(self, **kwargs):
        super().__init__(max_digits=None, decimal_places=None, **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        return Decimal(int(value)) if value == value.to_integral_value() else value.normalize()


class CdrCreditInputSerializer(StrictInputSerializer):
    subtotal = AsWrittenDecimalField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Positive amount excl. tax to credit, in the CDR's currency (at most its minor unit of "
        "decimals). Absent or null: all that is left to credit.",
    )
    reason = serializers.CharField(help_text="Why: kept with the credit.")


class CdrOutputSerializer(serializers.ModelSerializer):
    station = serializers.CharField(
        source="station_identity", read_only=True, help_text="Station identity when the CDR was written."
    )

    class Meta:
        model = ChargeDetailRecord
        # The fields of the CDR column table (billing/services/exports/columns.py), shared with the CSV.
        fields = CDR_API_FIELDS
        read_only_fields = fields
        extra_kwargs = {
            "evse_number": {"help_text": "OCPP EVSE number (not a row id)."},
            "connector_number": {"help_text": "OCPP connector number (not a row id)."},
            "tariff_version": {"help_text": "Tariff version id; null: no tariff applied (free)."},
            "subtotal": {"help_text": "Excl. tax: the sum of the lines."},
            "total": {"help_text": "subtotal + tax."},
            "energy_cost": {
                "help_text": "What the energy cost the site, excl. tax; null if no price was set."
            },
        }


class CdrDetailOutputSerializer(CdrOutputSerializer):
    lines = CdrLineOutputSerializer(many=True, read_only=True)
    credits = CdrCreditOutputSerializer(many=True, read_only=True)
    credited_subtotal = serializers.DecimalField(
        max_digits=14,
        decimal_places=4,
        source="credit_totals.credited_subtotal",
        read_only=True,
        help_text="Sum of the credits' subtotals (negative or 0).",
    )
    credited_total = serializers.DecimalField(
        max_digits=14,
        decimal_places=4,
        source="credit_totals.credited_total",
        read_only=True,
        help_text="Sum of the credits' totals (negative or 0).",
    )
    net_total = serializers.DecimalField(
        max_digits=14,
        decimal_places=4,
        source="credit_totals.net_total",
        read_only=True,
        help_text="total + credited_total: what the CDR nets to.",
    )

    class Meta(CdrOutputSerializer.Meta):
        fields = (*CDR_API_FIELDS, "lines", "credits", "credited_subtotal", "credited_total", "net_total")
        read_only_fields = fields


class CdrFilterSerializer(serializers.Serializer):
    organisation = serializers.IntegerField(required=False, help_text="Organisation id.")
    site = serializers.IntegerField(required=False, help_text="Site id.")
    station = serializers.CharField(required=False, trim_whitespace=False, help_text="Station identity.")
    stopped_after = serializers.DateTimeField(required=False, help_text="Stopped at or after (inclusive).")
    stopped_before = serializers.DateTimeField(required=False, help_text="Stopped before (exclusive).")
    currency = serializers.CharField(required=False, min_length=3, max_length=3, help_text="ISO 4217.")

    def validate_currency(self, value: str) -> str:
        return value.upper()


# --- the cost of a session ------------------------------------------------------------------------------


class CostState(models.TextChoices):
    RUNNING = "running", "Active: the cost so far"
    BILLED = "billed", "Completed and billed: the CDR's figures"
    PENDING = "pending", "Completed, not billed yet (queued, or held for review)"


class CostLineOutputSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    dimension = serializers.CharField(help_text="As on CDR lines.")
    element_index = serializers.IntegerField(allow_null=True)
    quantity = serializers.DecimalField(max_digits=18, decimal_places=6)
    used_quantity = serializers.DecimalField(max_digits=18, decimal_places=6)
    unit = serializers.CharField()
    unit_price = serializers.DecimalField(max_digits=14, decimal_places=6)
    amount = serializers.DecimalField(max_digits=14, decimal_places=4)


class SessionCostOutputSerializer(serializers.Serializer):
    session = serializers.IntegerField()
    state = serializers.ChoiceField(
        choices=CostState.choices,
        help_text="running: the cost so far up to the last energy reading (without the tariff's minimum "
        "price, which may still be reached); billed: the CDR's figures; pending: ended, not billed yet.",
    )
    cdr = serializers.IntegerField(allow_null=True, help_text="The CDR id once billed.")
    currency = serializers.CharField(
        allow_null=True, help_text="Null: no price yet (pending; running without a tariff or a reading)."
    )
    subtotal = serializers.DecimalField(max_digits=14, decimal_places=4, allow_null=True)
    tax = serializers.DecimalField(max_digits=14, decimal_places=4, allow_null=True)
    total = serializers.DecimalField(max_digits=14, decimal_places=4, allow_null=True)
    net_total = serializers.DecimalField(
        max_digits=14, decimal_places=4, allow_null=True, help_text="Billed: total after credits."
    )
    lines = CostLineOutputSerializer(many=True)
    as_of = serializers.DateTimeField(
        allow_null=True, help_text="Running: the last energy reading priced; billed: the session's stop."
    )
