"""Remote commands over the API: any OCPP call to a station (docs/contract.md#any-ocpp-call-to-a-station), and
the command history."""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.enums import Capability
from cpms.api import ErrorOutputSerializer, paginated_response
from cpms.errors import ValidationFailed
from cpms.ocpp_wire import actions
from cpms.ocpp_wire.calls import Call
from cpms.ocpp_wire.errors import OcppError
from cpms.ocpp_wire.redaction import request_redacted
from stations.enums import CommandSource, CommandStatus
from stations.models import Command
from stations.selectors import command_access, command_list, station_access
from stations.services.commands import DISCONNECTED, NOT_CONNECTED, NOT_DELIVERED, command_send

MAX_TIMEOUT_S = 300
MAX_QUEUE_S = 7 * 24 * 3600


class CommandOutputSerializer(serializers.ModelSerializer):
    station = serializers.CharField(source="station.identity")
    requested_by = serializers.CharField(source="requested_by.username", default=None, allow_null=True)
    round_trip_ms = serializers.FloatField(allow_null=True, help_text="From recording to the outcome.")
    request = serializers.SerializerMethodField(
        help_text="The OCPP payload sent; secrets (passwords) masked."
    )

    class Meta:
        model = Command
        fields = [
            "id",
            "station",
            "action",
            "request",
            "status",
            "response",
            "error_code",
            "error_description",
            "requested_by",
            "source",
            "job",
            "timeout_s",
            "queued_until",
            "unique_id",
            "created_at",
            "sent_at",
            "finished_at",
            "round_trip_ms",
        ]
        read_only_fields = fields

    def get_request(self, command: Command) -> dict:
        return request_redacted(command.action, command.request)


class OcppCallOutputSerializer(serializers.Serializer):
    action = serializers.CharField()
    request = serializers.JSONField()
    response = serializers.JSONField()
    command = CommandOutputSerializer()


class CommandErrorOutputSerializer(serializers.Serializer):
    detail = serializers.CharField()
    error = serializers.JSONField(required=False, help_text="The CALLERROR: code, description, details.")
    command = CommandOutputSerializer()


class CallOptionsSerializer(serializers.Serializer):
    timeout = serializers.FloatField(
        required=False,
        min_value=1,
        max_value=MAX_TIMEOUT_S,
        help_text="Seconds to wait for the charger's answer (default OCPP_CALL_TIMEOUT_S).",
    )
    queue = serializers.FloatField(
        required=False,
        min_value=1,
        max_value=MAX_QUEUE_S,
        help_text="Outbox: when the station is offline, keep the command this many seconds and send it when "
        "the station connects (answer 202). Without it, an offline station is a 409.",
    )


class CommandFilterSerializer(serializers.Serializer):
    action = serializers.CharField(required=False)
    status = serializers.ChoiceField(choices=CommandStatus.choices, required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


def command_http_response(command: Command) -> Response:
    """The HTTP answer for a command's outcome (docs/contract.md#any-ocpp-call-to-a-station): 200 answered,
    202 queued in the outbox, 409 station not connected (or not reachable), 502 CALLERROR or an unusable
    answer, 504 timeout."""
    body: dict[str, Any] = {"command": CommandOutputSerializer(command).data}
    if command.status == CommandStatus.ANSWERED:
        body.update(
            action=command.action,
            request=request_redacted(command.action, command.request),
            response=command.response,
        )
        return Response(body, status=status.HTTP_200_OK)
    if command.status in (CommandStatus.PENDING, CommandStatus.SENT):
        body["detail"] = "Queued: the command is sent when the station connects."
        return Response(body, status=status.HTTP_202_ACCEPTED)
    body["detail"] = command.error_description or command.error_code
    if command.status == CommandStatus.TIMED_OUT:
        return Response(body, status=status.HTTP_504_GATEWAY_TIMEOUT)
    if command.error_code in (NOT_CONNECTED, NOT_DELIVERED):
        return Response(body, status=status.HTTP_409_CONFLICT)
    if command.error_code != DISCONNECTED and command.response and "errorCode" in command.response:
        body["error"] = {
            "code": command.response["errorCode"],
            "description": command.response.get("errorDescription", ""),
            "details": command.response.get("errorDetails", {}),
        }
    return Response(body, status=status.HTTP_502_BAD_GATEWAY)


def _options(request) -> dict:
    options = CallOptionsSerializer(data=request.query_params)
    options.is_valid(raise_exception=True)
    return {
        "timeout_s": options.validated_data.get("timeout"),
        "queue_for_s": options.validated_data.get("queue"),
    }


IDENTITY = OpenApiParameter(
    "identity", str, OpenApiParameter.PATH, description="The station's OCPP identity."
)
ACTION = OpenApiParameter(
    "action",
    str,
    OpenApiParameter.PATH,
    description="An OCPP action the CSMS sends, e.g. Reset, GetVariables.",
)
COMMAND_OUTCOMES = {
    202: OpenApiResponse(CommandErrorOutputSerializer, description="Queued in the outbox (`queue` given)."),
    400: OpenApiResponse(
        description="Unknown action for the station's version, or the payload fails its schema."
    ),
    403: OpenApiResponse(
        ErrorOutputSerializer, description="Visible to you, but your role may not command it."
    ),
    404: OpenApiResponse(ErrorOutputSerializer, description="Not found, or outside your scope."),
    409: OpenApiResponse(CommandErrorOutputSerializer, description="The station is not connected."),
    502: OpenApiResponse(CommandErrorOutputSerializer, description="The charger answered with a CALLERROR."),
    504: OpenApiResponse(CommandErrorOutputSerializer, description="No answer within the timeout."),
}


@extend_schema(tags=["commands"])
class StationOcppCallApi(APIView):
    @extend_schema(
        operation_id="stations_ocpp_call",
        summary="Send any OCPP call to a station",
        description="The body is the OCPP payload for the station's protocol version, exactly as on the wire. "
        "Validated against the version's JSON schema, recorded, sent through whichever server process holds "
        "the connection, and answered with the charger's response.",
        parameters=[IDENTITY, ACTION, CallOptionsSerializer],
        request=OpenApiTypes.OBJECT,
        responses={200: OcppCallOutputSerializer, **COMMAND_OUTCOMES},
    )
    def post(self, request, identity: str, action: str):
        station = station_access(
            user=request.user, identity=identity, capability=Capability.COMMAND, with_points=False
        )
        options = _options(request)
        if station.protocol:
            try:
                actions.request_validate(protocol=station.protocol, action=action, payload=request.data)
            except OcppError as exc:
                raise ValidationFailed(f"{action} ({station.protocol}): {exc.description}") from None
        # The generic endpoint's call is the integrator's own payload, checked above like a builder's.
        command = command_send(
            station=station,
            call=Call(action, request.data),
            requested_by=request.user,
            source=CommandSource.API,
            **options,
        )
        return command_http_response(command)


@extend_schema(tags=["commands"])
class StationCommandListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="stations_commands_list",
        parameters=[IDENTITY, CommandFilterSerializer],
        responses={200: CommandOutputSerializer(many=True), 404: COMMAND_OUTCOMES[404]},
    )
    def get(self, request, identity: str):
        station = station_access(user=request.user, identity=identity)
        filters = CommandFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        commands = command_list(user=request.user, station=station, filters=filters.validated_data)
        return paginated_response(
            request=request, view=self, queryset=commands, serializer_class=CommandOutputSerializer
        )


@extend_schema(tags=["commands"])
class CommandListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="commands_list",
        parameters=[CommandFilterSerializer],
        responses={200: CommandOutputSerializer(many=True)},
    )
    def get(self, request):
        filters = CommandFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        commands = command_list(user=request.user, filters=filters.validated_data)
        return paginated_response(
            request=request, view=self, queryset=commands, serializer_class=CommandOutputSerializer
        )


@extend_schema(tags=["commands"])
class CommandDetailApi(APIView):
    @extend_schema(
        operation_id="commands_retrieve", responses={200: CommandOutputSerializer, 404: COMMAND_OUTCOMES[404]}
    )
    def get(self, request, pk: int):
        return Response(CommandOutputSerializer(command_access(user=request.user, pk=pk)).data)
