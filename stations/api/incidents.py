"""Incidents over the API: the scoped list and detail, acknowledge and resolve.

Who may do what: every role that sees a station sees its incidents (finance included); acknowledging and
resolving need COMMAND on the station's site (operator admins/staff, support, and site hosts on their sites).
An incident outside the user's scope is 404; acknowledging or resolving a resolved one is 409.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from cpms.api import (
    BAD_REQUEST,
    FORBIDDEN,
    NOT_FOUND,
    ErrorOutputSerializer,
    StrictInputSerializer,
    paginated_response,
)
from stations.enums import IncidentKind
from stations.models import Incident
from stations.selectors import incident_access, incident_list
from stations.services.incidents import incident_acknowledge, incident_resolve, incident_state

STATES = [("open", "open"), ("acknowledged", "acknowledged"), ("resolved", "resolved")]
CONFLICT = OpenApiResponse(ErrorOutputSerializer, description="Already resolved (or acknowledged).")


class IncidentFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=STATES,
        required=False,
        help_text="open: not acknowledged yet; acknowledged: someone is on it; resolved.",
    )
    kind = serializers.ChoiceField(choices=IncidentKind.choices, required=False)
    site = serializers.IntegerField(required=False)
    station = serializers.CharField(
        required=False, trim_whitespace=False, help_text="The station's identity."
    )


class IncidentOutputSerializer(serializers.ModelSerializer):
    station = serializers.CharField(source="station.identity", read_only=True)
    status = serializers.SerializerMethodField()
    acknowledged_by = serializers.CharField(
        source="acknowledged_by.username", read_only=True, allow_null=True
    )
    resolved_by = serializers.CharField(
        source="resolved_by.username",
        read_only=True,
        allow_null=True,
        help_text="Empty when the station itself reported the recovery.",
    )
    time_to_detect_s = serializers.SerializerMethodField(help_text="detected_at - occurred_at (seconds).")
    time_to_repair_s = serializers.SerializerMethodField(
        help_text="resolved_at - detected_at (seconds); null while open."
    )

    class Meta:
        model = Incident
        fields = [
            "id",
            "organisation",
            "site",
            "station",
            "evse_id",
            "connector_id",
            "kind",
            "code",
            "detail",
            "status",
            "occurred_at",
            "detected_at",
            "acknowledged_at",
            "acknowledged_by",
            "resolved_at",
            "resolved_by",
            "resolved_remotely",
            "resolution_note",
            "notified_at",
            "time_to_detect_s",
            "time_to_repair_s",
        ]
        read_only_fields = fields

    def get_status(self, incident: Incident) -> str:
        return incident_state(incident)

    def get_time_to_detect_s(self, incident: Incident) -> float:
        return (incident.detected_at - incident.occurred_at).total_seconds()

    def get_time_to_repair_s(self, incident: Incident) -> float | None:
        if incident.resolved_at is None:
            return None
        return (incident.resolved_at - incident.detected_at).total_seconds()


class IncidentResolveInputSerializer(StrictInputSerializer):
    resolved_remotely = serializers.BooleanField(help_text="false: a site visit was needed.")
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


@extend_schema(tags=["incidents"])
class IncidentListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="incidents_list",
        parameters=[IncidentFilterSerializer],
        responses={200: IncidentOutputSerializer(many=True), 400: BAD_REQUEST},
    )
    def get(self, request):
        filters = IncidentFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        return paginated_response(
            request=request,
            view=self,
            queryset=incident_list(user=request.user, filters=filters.validated_data),
            serializer_class=IncidentOutputSerializer,
        )


@extend_schema(tags=["incidents"])
class IncidentDetailApi(APIView):
    @extend_schema(
        operation_id="incidents_retrieve", responses={200: IncidentOutputSerializer, 404: NOT_FOUND}
    )
    def get(self, request, pk: int):
        return Response(IncidentOutputSerializer(incident_access(user=request.user, pk=pk)).data)


@extend_schema(tags=["incidents"])
class IncidentAcknowledgeApi(APIView):
    @extend_schema(
        operation_id="incidents_acknowledge",
        request=None,
        responses={200: IncidentOutputSerializer, 403: FORBIDDEN, 404: NOT_FOUND, 409: CONFLICT},
    )
    def post(self, request, pk: int):
        incident = incident_access(user=request.user, pk=pk)
        incident = incident_acknowledge(actor=request.user, incident=incident)
        return Response(IncidentOutputSerializer(incident_access(user=request.user, pk=incident.pk)).data)


@extend_schema(tags=["incidents"])
class IncidentResolveApi(APIView):
    @extend_schema(
        operation_id="incidents_resolve",
        request=IncidentResolveInputSerializer,
        responses={
            200: IncidentOutputSerializer,
            400: BAD_REQUEST,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: CONFLICT,
        },
    )
    def post(self, request, pk: int):
        incident = incident_access(user=request.user, pk=pk)
        data = IncidentResolveInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        incident = incident_resolve(
            actor=request.user,
            incident=incident,
            resolved_remotely=data.validated_data["resolved_remotely"],
            note=data.validated_data["note"],
        )
        return Response(IncidentOutputSerializer(incident_access(user=request.user, pk=incident.pk)).data)
