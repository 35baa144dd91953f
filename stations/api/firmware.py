"""Firmware files, firmware updates and campaigns, diagnostics and log uploads over the API.

Who may do what:
- firmware files: listed to members of their organisation; uploaded with MANAGE on the organisation;
- a station's firmware update and diagnostics/log request: COMMAND on the station (a site host on their
  sites' stations; finance users may look but not command); its history: VIEW on the station;
- campaigns: created with COMMAND organisation-wide, seen by organisation-wide roles (site hosts have none);
- an uploaded file: VIEW on its station.
Objects in the URL outside the user's scope are 404; ids in a body that the user cannot see are 400.

A firmware update or diagnostics request answers like the generic OCPP call
(docs/contract.md#any-ocpp-call-to-a-station): 200 when the charger answered (its answer in
`command.response`, Rejected included), 409 when the station is not connected, 502 for a CALLERROR, 504 on
timeout; the update or upload record is in the body every time.
"""

import json

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import renderers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.enums import Capability
from cpms.api import BAD_REQUEST, FORBIDDEN, NOT_FOUND, paginated_response
from cpms.errors import NotFound
from stations.api.firmware_serializers import (
    DiagnosticsInputSerializer,
    DiagnosticsRequestOutputSerializer,
    DiagnosticsUploadOutputSerializer,
    FirmwareCampaignDetailOutputSerializer,
    FirmwareCampaignInputSerializer,
    FirmwareCampaignOutputSerializer,
    FirmwareFileInputSerializer,
    FirmwareFileOutputSerializer,
    FirmwareUpdateInputSerializer,
    FirmwareUpdateOutputSerializer,
    FirmwareUpdateStartOutputSerializer,
)
from stations.api.views import IDENTITY
from stations.enums import CommandSource, CommandStatus
from stations.models import Command, CommandJob
from stations.selectors import (
    diagnostics_upload_access,
    diagnostics_upload_list,
    firmware_campaign_access,
    firmware_campaign_list,
    firmware_campaign_targets,
    firmware_file_access,
    firmware_file_list,
    firmware_update_list,
    station_access,
)
from stations.services.commands import NOT_CONNECTED, NOT_DELIVERED
from stations.services.firmware import diagnostics_upload_request, firmware_file_create, firmware_update_start
from stations.services.firmware_campaigns import firmware_campaign_create


def _outcome(command: Command) -> tuple[int, str | None]:
    """HTTP status and `detail` for a command's outcome, as the generic OCPP call answers it."""
    if command.status == CommandStatus.ANSWERED:
        return status.HTTP_200_OK, None
    if command.status in (CommandStatus.PENDING, CommandStatus.SENT):
        return status.HTTP_202_ACCEPTED, "Queued: the command is sent when the station connects."
    detail = command.error_description or command.error_code
    if command.status == CommandStatus.TIMED_OUT:
        return status.HTTP_504_GATEWAY_TIMEOUT, detail
    if command.error_code in (NOT_CONNECTED, NOT_DELIVERED):
        return status.HTTP_409_CONFLICT, detail
    return status.HTTP_502_BAD_GATEWAY, detail


def _outcomes(serializer) -> dict:
    return {
        200: OpenApiResponse(serializer, description="The charger answered (see command.response)."),
        400: BAD_REQUEST,
        403: FORBIDDEN,
        404: NOT_FOUND,
        409: OpenApiResponse(serializer, description="The station is not connected."),
        502: OpenApiResponse(serializer, description="The charger answered with a CALLERROR."),
        504: OpenApiResponse(serializer, description="No answer within the timeout."),
    }


class BinaryRenderer(renderers.BaseRenderer):
    """Lets a client ask for application/octet-stream (a file download); errors still render as JSON."""

    media_type = "application/octet-stream"
    format = "bin"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes) else json.dumps(data).encode()


# --- firmware files ---------------------------------------------------------------------------------


@extend_schema(tags=["firmware"])
class FirmwareFileListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        operation_id="firmware_files_list", responses={200: FirmwareFileOutputSerializer(many=True)}
    )
    def get(self, request):
        return paginated_response(
            request=request,
            view=self,
            queryset=firmware_file_list(user=request.user),
            serializer_class=FirmwareFileOutputSerializer,
        )

    @extend_schema(
        operation_id="firmware_files_create",
        summary="Upload a firmware image (multipart/form-data)",
        request={"multipart/form-data": FirmwareFileInputSerializer},
        responses={201: FirmwareFileOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN},
    )
    def post(self, request):
        data = FirmwareFileInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        firmware = firmware_file_create(
            actor=request.user,
            organisation_id=fields["organisation"],
            name=fields["name"],
            version=fields["version"],
            content=fields["file"],
            signature=fields.get("signature", ""),
            signing_certificate=fields.get("signing_certificate", ""),
        )
        return Response(FirmwareFileOutputSerializer(firmware).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["firmware"])
class FirmwareFileDetailApi(APIView):
    @extend_schema(
        operation_id="firmware_files_retrieve", responses={200: FirmwareFileOutputSerializer, 404: NOT_FOUND}
    )
    def get(self, request, pk: int):
        return Response(FirmwareFileOutputSerializer(firmware_file_access(user=request.user, pk=pk)).data)


# --- firmware updates of a station ------------------------------------------------------------------


@extend_schema(tags=["firmware"])
class StationFirmwareUpdateApi(APIView):
    @extend_schema(
        operation_id="stations_firmware_update",
        summary="Update a station's firmware",
        description="Sends UpdateFirmware (1.6 core, 2.0.1, 2.1) or, for a signed image and a 1.6 station, "
        "SignedUpdateFirmware, with the image's download URL. Later FirmwareStatusNotifications move the "
        "update's status.",
        parameters=[IDENTITY],
        request=FirmwareUpdateInputSerializer,
        responses=_outcomes(FirmwareUpdateStartOutputSerializer),
    )
    def post(self, request, identity: str):
        station = station_access(user=request.user, identity=identity, capability=Capability.COMMAND)
        data = FirmwareUpdateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        update = firmware_update_start(
            actor=request.user,
            station=station,
            firmware_id=data.validated_data["firmware_id"],
            retrieve_at=data.validated_data.get("retrieve_at"),
            source=CommandSource.API,
        )
        assert update.command is not None  # the update was sent (or queued) as a command
        http_status, detail = _outcome(update.command)
        rendered = FirmwareUpdateOutputSerializer(update).data
        body = {"firmware_update": rendered, "command": rendered["command"]}
        if detail is not None:
            body["detail"] = detail
        return Response(body, status=http_status)


@extend_schema(tags=["firmware"])
class StationFirmwareUpdateListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="stations_firmware_updates_list",
        parameters=[IDENTITY],
        responses={200: FirmwareUpdateOutputSerializer(many=True), 404: NOT_FOUND},
    )
    def get(self, request, identity: str):
        station = station_access(user=request.user, identity=identity)
        return paginated_response(
            request=request,
            view=self,
            queryset=firmware_update_list(station=station),
            serializer_class=FirmwareUpdateOutputSerializer,
        )


# --- campaigns --------------------------------------------------------------------------------------


def _campaign_detail(job: CommandJob) -> dict:
    # Read by FirmwareCampaignDetailOutputSerializer from the instance; not a model field.
    job.campaign_targets = firmware_campaign_targets(job=job)  # type: ignore[attr-defined]
    return FirmwareCampaignDetailOutputSerializer(job).data


@extend_schema(tags=["firmware"])
class FirmwareCampaignListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="firmware_campaigns_list", responses={200: FirmwareCampaignOutputSerializer(many=True)}
    )
    def get(self, request):
        return paginated_response(
            request=request,
            view=self,
            queryset=firmware_campaign_list(user=request.user),
            serializer_class=FirmwareCampaignOutputSerializer,
        )

    @extend_schema(
        operation_id="firmware_campaigns_create",
        summary="Update the firmware of many stations (a bulk job)",
        description="Creates the campaign with one target per station and queues it; poll "
        "`/api/v1/firmware-campaigns/<id>/` for progress and per-station results.",
        request=FirmwareCampaignInputSerializer,
        responses={202: FirmwareCampaignDetailOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN},
    )
    def post(self, request):
        data = FirmwareCampaignInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = firmware_campaign_create(
            actor=request.user,
            firmware_id=data.validated_data["firmware_id"],
            station_identities=data.validated_data.get("stations"),
            site_id=data.validated_data.get("site_id"),
            retrieve_at=data.validated_data.get("retrieve_at"),
        )
        return Response(_campaign_detail(job), status=status.HTTP_202_ACCEPTED)


@extend_schema(tags=["firmware"])
class FirmwareCampaignDetailApi(APIView):
    @extend_schema(
        operation_id="firmware_campaigns_retrieve",
        responses={200: FirmwareCampaignDetailOutputSerializer, 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        return Response(_campaign_detail(firmware_campaign_access(user=request.user, pk=pk)))


# --- diagnostics and log uploads --------------------------------------------------------------------


@extend_schema(tags=["diagnostics"])
class StationDiagnosticsApi(APIView):
    @extend_schema(
        operation_id="stations_diagnostics_request",
        summary="Ask a station to upload diagnostics or a log",
        description="Sends GetDiagnostics (kind diagnostics, OCPP 1.6) or GetLog (kind log) with a one-time "
        "upload URL of the platform. The file shows in the station's uploads once the charger sent it.",
        parameters=[IDENTITY],
        request=DiagnosticsInputSerializer,
        responses=_outcomes(DiagnosticsRequestOutputSerializer),
    )
    def post(self, request, identity: str):
        station = station_access(user=request.user, identity=identity, capability=Capability.COMMAND)
        data = DiagnosticsInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = diagnostics_upload_request(
            actor=request.user,
            station=station,
            kind=data.validated_data["kind"],
            log_type=data.validated_data.get("log_type"),
            oldest=data.validated_data.get("start"),
            latest=data.validated_data.get("stop"),
            source=CommandSource.API,
        )
        assert upload.command is not None  # the request was sent (or queued) as a command
        http_status, detail = _outcome(upload.command)
        rendered = DiagnosticsUploadOutputSerializer(upload, context={"request": request}).data
        body = {"upload": rendered, "command": rendered["command"]}
        if detail is not None:
            body["detail"] = detail
        return Response(body, status=http_status)


@extend_schema(tags=["diagnostics"])
class StationUploadListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="stations_uploads_list",
        parameters=[IDENTITY],
        responses={200: DiagnosticsUploadOutputSerializer(many=True), 404: NOT_FOUND},
    )
    def get(self, request, identity: str):
        station = station_access(user=request.user, identity=identity)
        return paginated_response(
            request=request,
            view=self,
            queryset=diagnostics_upload_list(station=station),
            # The request in the context makes `file_url` absolute.
            serializer_class=lambda page, many: DiagnosticsUploadOutputSerializer(
                page, many=many, context={"request": request}
            ),
        )


@extend_schema(tags=["diagnostics"])
class UploadFileApi(APIView):
    renderer_classes = [renderers.JSONRenderer, BinaryRenderer]

    @extend_schema(
        operation_id="uploads_file_retrieve",
        summary="Download an uploaded diagnostics or log file",
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            (404, "application/json"): NOT_FOUND,
        },
    )
    def get(self, request, pk: int):
        upload = diagnostics_upload_access(user=request.user, pk=pk)
        stored = upload.file.name
        if upload.uploaded_at is None or not stored:
            raise NotFound(f"Upload {pk} has not been received yet.")
        try:
            handle = upload.file.storage.open(stored, "rb")
        except FileNotFoundError:
            raise NotFound(f"The file of upload {pk} is missing.") from None
        return FileResponse(
            handle,
            as_attachment=True,
            filename=upload.file_name or stored.rsplit("/", 1)[-1],
            content_type="application/octet-stream",
        )
