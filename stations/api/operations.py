"""Version-neutral operations on a station: `POST /api/v1/stations/<identity>/commands/<operation>/`.

One body for every OCPP version: the view checks access, parses, lets cpms.ocpp_wire.operations build the
call of the station's version, sends it with command_send and answers as the generic OCPP endpoint does
(stations/api/commands.py: 200 answered, 409 not connected, 502 CALLERROR, 504 timeout). The wire payload
is in the answer's `request`.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.enums import Capability
from cpms.api import ErrorOutputSerializer
from cpms.ocpp_wire import operations as builders
from cpms.ocpp_wire.calls import Call
from stations.api.commands import (
    CommandErrorOutputSerializer,
    OcppCallOutputSerializer,
    command_http_response,
)
from stations.api.operations_serializers import (
    ChangeAvailabilityInputSerializer,
    ClearCacheInputSerializer,
    DataTransferInputSerializer,
    DisplayPaymentUrlInputSerializer,
    DisplayPaymentUrlOutputSerializer,
    GetConfigurationInputSerializer,
    RemoteStartInputSerializer,
    ResetInputSerializer,
    SetConfigurationInputSerializer,
    SetConfigurationOutputSerializer,
    TriggerMessageInputSerializer,
    UnlockInputSerializer,
)
from stations.api.views import IDENTITY
from stations.enums import CommandSource, CommandStatus
from stations.models import ChargingStation, Command
from stations.selectors import station_access
from stations.services.commands import NOT_CONNECTED, command_send, station_version, target_resolve
from stations.services.display_messages import station_payment_url_display

OUTCOMES = {
    400: OpenApiResponse(
        description="Invalid input ({field: [messages]}), or input the station's OCPP version cannot "
        "express, or a station that never connected ({detail: message})."
    ),
    403: OpenApiResponse(
        ErrorOutputSerializer, description="Visible to you, but your role may not command it."
    ),
    404: OpenApiResponse(ErrorOutputSerializer, description="Not found, or outside your scope."),
    409: OpenApiResponse(
        CommandErrorOutputSerializer,
        description="The station is not connected (the command is recorded as failed). A station that never "
        "connected has no OCPP version to build for: {detail: message} only, nothing recorded.",
    ),
    502: OpenApiResponse(CommandErrorOutputSerializer, description="The charger answered with a CALLERROR."),
    504: OpenApiResponse(CommandErrorOutputSerializer, description="No answer within the timeout."),
}


class OperationApi(APIView):
    """Access (COMMAND) -> parse -> build for the station's version -> command_send -> the outcome.

    Access comes first, so that a 400 never tells a caller that a foreign station exists."""

    input_serializer_class: type[serializers.Serializer]

    def build(self, *, station: ChargingStation, version: str, data: dict, user) -> Call:
        raise NotImplementedError

    def post(self, request, identity: str):
        station = station_access(user=request.user, identity=identity, capability=Capability.COMMAND)
        parsed = self.input_serializer_class(data=request.data)
        parsed.is_valid(raise_exception=True)
        data = parsed.validated_data
        call = self.build(station=station, version=station_version(station), data=data, user=request.user)
        return command_http_response(_execute(station=station, call=call, user=request.user, data=data))


def _execute(*, station: ChargingStation, call: Call, user, data: dict) -> Command:
    return command_send(
        station=station,
        call=call,
        requested_by=user,
        source=CommandSource.API,
        timeout_s=data.get("timeout"),
        queue_for_s=data.get("queue"),
    )


def _target(station: ChargingStation, data: dict) -> builders.Target:
    return target_resolve(station=station, evse_id=data.get("evse_id"), connector_id=data.get("connector_id"))


def operation_schema(*, operation_id: str, summary: str, description: str, responses: dict | None = None):
    """The OpenAPI operation of an OperationApi subclass, its request body from its input serializer."""

    def decorate(view: type[OperationApi]) -> type[OperationApi]:
        operation = extend_schema(
            tags=["commands"],
            operation_id=operation_id,
            summary=summary,
            description=description,
            parameters=[IDENTITY],
            request=view.input_serializer_class,
            responses=responses or {200: OcppCallOutputSerializer, **OUTCOMES},
        )
        return extend_schema_view(post=operation)(view)

    return decorate


@operation_schema(
    operation_id="stations_commands_remote_start",
    summary="Start charging remotely",
    description="1.6 RemoteStartTransaction {connectorId?, idTag, chargingProfile?}; 2.0.1 "
    "RequestStartTransaction {idToken {idToken, type}, remoteStartId (a random 31-bit id of ours), evseId?, chargingProfile?}. "
    "2.0.1 starts on an EVSE: a connector given picks its EVSE.",
)
class RemoteStartApi(OperationApi):
    input_serializer_class = RemoteStartInputSerializer

    def build(self, *, station, version, data, user):
        return builders.remote_start(
            version,
            id_token=data["id_token"],
            id_token_type=data["id_token_type"],
            target=_target(station, data),
            charging_profile=data.get("charging_profile"),
        )


@operation_schema(
    operation_id="stations_commands_reset",
    summary="Reset the station",
    description="1.6 Reset {type Hard|Soft}; 2.0.1 Reset {type Immediate|OnIdle, evseId?}. "
    "An EVSE reset is 2.0.1 only.",
)
class ResetApi(OperationApi):
    input_serializer_class = ResetInputSerializer

    def build(self, *, station, version, data, user):
        return builders.reset(version, kind=data["kind"], evse_id=data.get("evse_id"))


@operation_schema(
    operation_id="stations_commands_unlock",
    summary="Unlock a connector",
    description="1.6 UnlockConnector {connectorId}; 2.0.1 UnlockConnector {evseId, connectorId}.",
)
class UnlockApi(OperationApi):
    input_serializer_class = UnlockInputSerializer

    def build(self, *, station, version, data, user):
        return builders.unlock(version, target=_target(station, data))


@operation_schema(
    operation_id="stations_commands_change_availability",
    summary="Make the station, an EVSE or a connector operative or inoperative",
    description="1.6 ChangeAvailability {connectorId (0: the station), type}; 2.0.1 ChangeAvailability "
    "{operationalStatus, evse? {id, connectorId?}}.",
)
class ChangeAvailabilityApi(OperationApi):
    input_serializer_class = ChangeAvailabilityInputSerializer

    def build(self, *, station, version, data, user):
        return builders.change_availability(
            version, operative=data["status"] == "operative", target=_target(station, data)
        )


@operation_schema(
    operation_id="stations_commands_get_configuration",
    summary="Read configuration",
    description="1.6 GetConfiguration {key?}; 2.0.1 GetVariables for the given variables, or GetBaseReport "
    "(FullInventory) without keys. The values answered are stored in the station's variables.",
)
class GetConfigurationApi(OperationApi):
    input_serializer_class = GetConfigurationInputSerializer

    def build(self, *, station, version, data, user):
        return builders.get_configuration(version, keys=data.get("keys"))


@operation_schema(
    operation_id="stations_commands_trigger_message",
    summary="Ask the station to send a message",
    description="1.6 TriggerMessage {requestedMessage, connectorId?}; "
    "2.0.1 TriggerMessage {requestedMessage, evse?}.",
)
class TriggerMessageApi(OperationApi):
    input_serializer_class = TriggerMessageInputSerializer

    def build(self, *, station, version, data, user):
        return builders.trigger_message(version, message=data["message"], target=_target(station, data))


@operation_schema(
    operation_id="stations_commands_clear_cache",
    summary="Clear the authorisation cache",
    description="ClearCache {} in every version.",
)
class ClearCacheApi(OperationApi):
    input_serializer_class = ClearCacheInputSerializer

    def build(self, *, station, version, data, user):
        return builders.clear_cache(version)


@operation_schema(
    operation_id="stations_commands_data_transfer",
    summary="Send vendor-specific data",
    description="DataTransfer {vendorId, messageId?, data?}; 1.6 data is a string "
    "(other JSON is sent as its text).",
)
class DataTransferApi(OperationApi):
    input_serializer_class = DataTransferInputSerializer

    def build(self, *, station, version, data, user):
        return builders.data_transfer(
            version, vendor_id=data["vendor_id"], message_id=data.get("message_id"), data=data.get("data")
        )


@operation_schema(
    operation_id="stations_commands_set_configuration",
    summary="Change configuration",
    description="1.6: one ChangeConfiguration per key, in order, stopping at the first call without an "
    "answer; 2.0.1: one SetVariables. 200 only if every call was answered (each setting's own status says "
    "whether the charger took it); otherwise the status of the first call that was not (409, 502, 504). "
    "Values the charger took are stored in the station's variables.",
    responses={
        200: SetConfigurationOutputSerializer,
        400: OUTCOMES[400],
        403: OUTCOMES[403],
        404: OUTCOMES[404],
        409: OpenApiResponse(SetConfigurationOutputSerializer, description="The station is not connected."),
        502: OpenApiResponse(SetConfigurationOutputSerializer, description="A call got a CALLERROR."),
        504: OpenApiResponse(SetConfigurationOutputSerializer, description="A call got no answer in time."),
    },
)
class SetConfigurationApi(OperationApi):
    """1.6 sets one key per call: the calls go one after the other, stopping at the first without an answer
    (the rest would only fail the same way, each after its own wait). 200 only if every call was answered;
    otherwise the status of the first that was not, with every outcome in the body either way."""

    input_serializer_class = SetConfigurationInputSerializer

    def post(self, request, identity: str):
        station = station_access(user=request.user, identity=identity, capability=Capability.COMMAND)
        parsed = SetConfigurationInputSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        data = parsed.validated_data
        version = station_version(station)
        values = [(item["key"], item["value"]) for item in data["values"]]
        calls = builders.set_configuration(version, values=values)
        outcomes, answers, failed, queued = [], [], None, None
        for call in calls:
            command = _execute(station=station, call=call, user=request.user, data=data)
            http = command_http_response(command)
            outcomes.append({"status_code": http.status_code, **http.data})
            if command.status == CommandStatus.PENDING:
                queued = http.status_code  # in the outbox: queue the other keys behind it
                continue
            if command.status != CommandStatus.ANSWERED:
                failed = http.status_code
                break
            answers.append(command.response)
        statuses = builders.set_configuration_statuses(version, values=values, responses=answers)
        body = {
            "settings": [
                {"key": key, "value": value, "status": setting_status}
                for (key, value), setting_status in zip(values, statuses, strict=True)
            ],
            "calls": outcomes,
        }
        return Response(body, status=failed or queued or status.HTTP_200_OK)


@operation_schema(
    operation_id="stations_commands_display_payment_url",
    summary="Show each EVSE's payment URL on the station's display",
    description="OCPP 2.0.1 / 2.1 only: one SetDisplayMessage per EVSE (id 1800000 + EVSE number, so that "
    "sending again replaces it; priority InFront, state Idle) with the EVSE's public URL, the page where "
    "drivers see the price, pay and charge: 2.1 as a QR code (QRCODE), 2.0.1 as text (UTF8). Answers at once "
    "with the recorded commands (202), without waiting for the charger; 409 when the station is offline "
    "(unless `queue`). A 1.6 station, one without EVSEs, or no absolute URL (PUBLIC_BASE_URL unset and no "
    "request host) is a 400.",
    responses={
        202: DisplayPaymentUrlOutputSerializer,
        400: OUTCOMES[400],
        403: OUTCOMES[403],
        404: OUTCOMES[404],
        409: OpenApiResponse(DisplayPaymentUrlOutputSerializer, description="The station is not connected."),
    },
)
class DisplayPaymentUrlApi(OperationApi):
    input_serializer_class = DisplayPaymentUrlInputSerializer

    def post(self, request, identity: str):
        station = station_access(user=request.user, identity=identity, capability=Capability.COMMAND)
        parsed = DisplayPaymentUrlInputSerializer(data=request.data)
        parsed.is_valid(raise_exception=True)
        data = parsed.validated_data
        commands = station_payment_url_display(
            station=station,
            user=request.user,
            request=request,
            queue_for_s=data.get("queue"),
            timeout_s=data.get("timeout"),
        )
        # Read again: a connected station may have answered already.
        current = Command.objects.select_related("station", "requested_by").in_bulk([c.pk for c in commands])
        commands = [current[command.pk] for command in commands]
        offline = any(command.error_code == NOT_CONNECTED for command in commands)
        return Response(
            DisplayPaymentUrlOutputSerializer({"commands": commands}).data,
            status=status.HTTP_409_CONFLICT if offline else status.HTTP_202_ACCEPTED,
        )
