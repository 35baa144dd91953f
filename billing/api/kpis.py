"""KPIs and the ROI over the API: the same summary and ROI as the portal pages (billing/services/kpis.py)."""

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.services.kpis import kpi_summary as summarise
from billing.services.roi import (
    ROI_INPUT_FIELDS,
    roi_access,
    roi_can_edit,
    roi_inputs_get,
    roi_inputs_update,
    roi_report,
)
from cpms.api import BAD_REQUEST, FORBIDDEN, NOT_FOUND, StrictInputSerializer
from cpms.db import DecimalDigits

DEFAULT_DAYS = 30
MONEY: DecimalDigits = {"max_digits": 18, "decimal_places": 4}


class KpiQueryInputSerializer(StrictInputSerializer):
    site = serializers.IntegerField(required=False, min_value=1, help_text="Only this site (id).")
    station = serializers.CharField(required=False, max_length=48, help_text="Only this station (identity).")
    start = serializers.DateField(
        required=False, help_text="First local day, inclusive (default: 29 days before `end`)."
    )
    end = serializers.DateField(required=False, help_text="Last local day, inclusive (default: today).")

    def validate(self, attrs):
        end = attrs.get("end") or timezone.localdate()
        attrs["end"] = end
        attrs["start"] = attrs.get("start") or end - timedelta(days=DEFAULT_DAYS - 1)
        return attrs


class KpiPointOutputSerializer(serializers.Serializer):
    day = serializers.DateField()
    uptime_pct = serializers.FloatField(allow_null=True)
    sessions_per_port = serializers.FloatField(allow_null=True)
    kwh_per_port = serializers.FloatField(allow_null=True)
    revenue = serializers.DecimalField(**MONEY, allow_null=True)


class KpiSummaryOutputSerializer(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField()
    days = serializers.IntegerField()
    stations = serializers.IntegerField()
    port_days = serializers.IntegerField()
    observed_s = serializers.IntegerField(help_text="Observed port-seconds.")
    in_service_s = serializers.IntegerField(help_text="In-service port-seconds.")
    uptime_pct = serializers.FloatField(allow_null=True)
    sessions = serializers.IntegerField()
    energy_wh = serializers.IntegerField()
    sessions_per_port_day = serializers.FloatField(allow_null=True)
    kwh_per_port_day = serializers.FloatField(allow_null=True)
    incidents_detected = serializers.IntegerField()
    detect_s = serializers.IntegerField()
    mttd_s = serializers.FloatField(allow_null=True)
    incidents_resolved = serializers.IntegerField()
    repair_s = serializers.IntegerField()
    mttr_s = serializers.FloatField(allow_null=True)
    resolved_remotely = serializers.IntegerField()
    remote_resolution_pct = serializers.FloatField(allow_null=True)
    cdrs = serializers.IntegerField()
    cdr_energy_wh = serializers.IntegerField()
    currency = serializers.CharField(allow_null=True, help_text="Null when the rows span several currencies.")
    revenue = serializers.DecimalField(**MONEY, allow_null=True)
    revenue_per_port_month = serializers.DecimalField(**MONEY, allow_null=True)
    energy_cost = serializers.DecimalField(**MONEY, allow_null=True)
    energy_cost_per_kwh = serializers.DecimalField(**MONEY, allow_null=True)
    disputed_sessions = serializers.IntegerField()
    dispute_rate_pct = serializers.FloatField(allow_null=True)
    other_currency_cdrs = serializers.IntegerField()
    computed_at = serializers.DateTimeField(allow_null=True)
    series = KpiPointOutputSerializer(many=True)


@extend_schema(tags=["kpis"])
class KpiSummaryApi(APIView):
    @extend_schema(
        operation_id="kpis_summary",
        summary="KPIs over a period",
        description="Every KPI of what you may see (site hosts: their sites) over local days, with the daily "
        "series. Ratios are null when their denominator is 0. Definitions: docs/kpis.md.",
        parameters=[KpiQueryInputSerializer],
        responses={200: KpiSummaryOutputSerializer, 400: BAD_REQUEST, 404: NOT_FOUND},
    )
    def get(self, request):
        query = KpiQueryInputSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        summary = summarise(
            user=request.user,
            site=data.get("site"),
            station_identity=data.get("station"),
            start=data["start"],
            end=data["end"],
        )
        return Response(KpiSummaryOutputSerializer(summary).data)


class RoiInputsSerializer(StrictInputSerializer):
    cpms_cost_annual = serializers.DecimalField(max_digits=14, decimal_places=4, required=False)
    integration_cost = serializers.DecimalField(max_digits=14, decimal_places=4, required=False)
    integration_years = serializers.IntegerField(required=False)
    support_cost_annual = serializers.DecimalField(max_digits=14, decimal_places=4, required=False)
    energy_savings_annual = serializers.DecimalField(max_digits=14, decimal_places=4, required=False)
    truck_roll_cost = serializers.DecimalField(max_digits=14, decimal_places=4, required=False)
    incremental_costs_annual = serializers.DecimalField(max_digits=14, decimal_places=4, required=False)
    baseline_uptime_pct = serializers.DecimalField(
        max_digits=6, decimal_places=3, required=False, allow_null=True
    )


class RoiResultOutputSerializer(serializers.Serializer):
    revenue_365 = serializers.DecimalField(**MONEY)
    uptime_pct = serializers.DecimalField(max_digits=8, decimal_places=3, allow_null=True)
    remote_resolved_365 = serializers.IntegerField()
    incremental_revenue = serializers.DecimalField(**MONEY)
    energy_savings = serializers.DecimalField(**MONEY)
    om_savings = serializers.DecimalField(**MONEY)
    incremental_costs = serializers.DecimalField(**MONEY)
    annual_return = serializers.DecimalField(**MONEY)
    integration_annual = serializers.DecimalField(**MONEY)
    annual_cost = serializers.DecimalField(**MONEY)
    roi_pct = serializers.DecimalField(max_digits=18, decimal_places=2, allow_null=True)


class RoiOutputSerializer(serializers.Serializer):
    organisation = serializers.IntegerField()
    currency = serializers.CharField()
    can_edit = serializers.BooleanField()
    inputs = RoiInputsSerializer()
    result = RoiResultOutputSerializer()


ORGANISATION = OpenApiParameter(
    "organisation", int, description="The organisation (needed only when you have several)."
)


def _roi_response(request, organisation) -> Response:
    inputs = roi_inputs_get(organisation=organisation)
    return Response(
        RoiOutputSerializer(
            {
                "organisation": organisation.pk,
                "currency": organisation.currency,
                "can_edit": roi_can_edit(user=request.user, organisation=organisation),
                "inputs": {field: getattr(inputs, field) for field in ROI_INPUT_FIELDS},
                "result": roi_report(organisation=organisation),
            }
        ).data
    )


class OrganisationQuerySerializer(StrictInputSerializer):
    organisation = serializers.IntegerField(required=False, min_value=1)


@extend_schema(tags=["kpis"])
class RoiApi(APIView):
    def _organisation(self, request):
        query = OrganisationQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return roi_access(user=request.user, organisation_id=query.validated_data.get("organisation"))

    @extend_schema(
        operation_id="roi_retrieve",
        summary="The ROI of an organisation",
        description="The inputs and every computed line (docs/kpis.md#roi). Needs the export right.",
        parameters=[ORGANISATION],
        responses={200: RoiOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def get(self, request):
        return _roi_response(request, self._organisation(request))

    @extend_schema(
        operation_id="roi_inputs_update",
        summary="Change ROI inputs",
        description="Sets the given inputs (amounts not negative, integration years at least 1, baseline "
        "uptime 0-100). Needs the billing or export right.",
        parameters=[ORGANISATION],
        request=RoiInputsSerializer,
        responses={200: RoiOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def patch(self, request):
        organisation = self._organisation(request)
        data = RoiInputsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        roi_inputs_update(user=request.user, organisation=organisation, data=dict(data.validated_data))
        return _roi_response(request, organisation)
