"""Finance CSV exports over the API: streamed at once for up to MAX_STREAM_SPAN_DAYS, or written by an
export job and downloaded when done. Columns, order and period rules: billing/services/exports/."""

from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from billing.enums import ExportKind, ExportStatus
from billing.models import ExportJob
from billing.services.exports.csv import CONTENT_TYPE, ExportReader, export_file_stream, export_stream
from billing.services.exports.filters import (
    MAX_STREAM_SPAN_DAYS,
    ExportFilters,
    export_file_name,
    export_filters_validate,
    period_bound_parse,
)
from billing.services.exports.jobs import (
    export_job_access,
    export_job_create,
    export_job_download_access,
    export_job_list,
)
from billing.services.exports.scope import export_scope_access
from cpms.api import BAD_REQUEST, NOT_FOUND, ErrorOutputSerializer, StrictInputSerializer
from cpms.errors import NotFound

FORBIDDEN = OpenApiResponse(
    ErrorOutputSerializer, description="Visible to you, but your role may not export finance data."
)
NOT_DONE = OpenApiResponse(ErrorOutputSerializer, description="The export is not done (yet).")


class JsonErrorsNegotiation(DefaultContentNegotiation):
    """JSON for every answer that is not the CSV itself, whatever the client accepts: a client asking for
    text/csv must get its 400/403/404 explained instead of a 406."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


@extend_schema_field(OpenApiTypes.STR)
class PeriodBoundField(serializers.Field):
    """A date (`YYYY-MM-DD`, local at each site) or an ISO 8601 datetime with an offset (an instant)."""

    default_error_messages = {"invalid": "{message}"}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", message="Expected a date (YYYY-MM-DD) or a datetime with an offset.")
        try:
            return period_bound_parse(data)
        except ValueError as exc:
            self.fail("invalid", message=str(exc))

    def to_representation(self, value):
        return value.isoformat()


# A named component of its own: several apps have a choice field named "kind", and drf-spectacular's enum
# naming would collide (a warning, which fails the schema check).
@extend_schema_field({"type": "string", "enum": ExportKind.values}, component_name="ExportKindEnum")
class ExportKindField(serializers.ChoiceField):
    def __init__(self, **kwargs):
        super().__init__(choices=ExportKind.choices, **kwargs)


class ExportFilterInputSerializer(StrictInputSerializer):
    """The filters of every export, streamed or as a job."""

    organisation = serializers.IntegerField(
        required=False, help_text="Only this organisation (one where you may export)."
    )
    site = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        help_text="Only these sites (repeat the parameter for several).",
    )

    def get_fields(self):
        # `from` is a Python keyword: it cannot be a class attribute.
        return {
            "from": PeriodBoundField(
                help_text="Start, inclusive: a date (the local date at each site) or an aware datetime."
            ),
            "to": PeriodBoundField(help_text="End, exclusive; the same type as `from`."),
            **super().get_fields(),
        }

    def filters(self) -> ExportFilters:
        data = self.validated_data
        return ExportFilters(
            period_from=data["from"],
            period_to=data["to"],
            organisation_id=data.get("organisation"),
            site_ids=tuple(data.get("site", ())),
        )


class ExportJobInputSerializer(ExportFilterInputSerializer):
    kind = ExportKindField()


class ExportJobOutputSerializer(serializers.ModelSerializer):
    kind = ExportKindField(read_only=True)
    progress = serializers.SerializerMethodField(help_text="Percent done, 0..100.")
    download_url = serializers.SerializerMethodField(help_text="Where to get the file once done.")

    class Meta:
        model = ExportJob
        fields = [
            "id",
            "kind",
            "filters",
            "status",
            "rows_done",
            "rows_total",
            "progress",
            "download_url",
            "error",
            "attempts",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_progress(self, job) -> float:
        if job.status == ExportStatus.DONE:
            return 100.0
        if not job.rows_total:
            return 0.0
        return min(100.0, round(100 * job.rows_done / job.rows_total, 1))

    def get_download_url(self, job) -> str | None:
        if job.status != ExportStatus.DONE:
            return None
        return reverse("export-job-download", kwargs={"pk": job.pk}, request=self.context.get("request"))


@extend_schema(tags=["exports"])
class ExportStreamApi(APIView):
    content_negotiation_class = JsonErrorsNegotiation

    @extend_schema(
        operation_id="exports_stream",
        summary="Stream a finance export as CSV",
        description=f"The CSV at once, for a period of at most {MAX_STREAM_SPAN_DAYS} days (longer: "
        "POST /api/v1/exports/). Needs the export right (operator admin, finance) on the organisations "
        "read; without an `organisation` filter, every organisation where you have it. Filters and scope "
        "are checked before the first byte: errors are JSON.",
        parameters=[
            OpenApiParameter("kind", OpenApiTypes.STR, OpenApiParameter.PATH, enum=ExportKind.values),
            ExportFilterInputSerializer,
        ],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (400, "application/json"): BAD_REQUEST,
            (403, "application/json"): FORBIDDEN,
            (404, "application/json"): NOT_FOUND,
        },
    )
    def get(self, request, kind: str):
        if kind not in ExportKind.values:
            raise NotFound(f"Unknown export kind {kind!r}; one of {', '.join(ExportKind.values)}.")
        data = ExportFilterInputSerializer(data=request.query_params)
        data.is_valid(raise_exception=True)
        filters = export_filters_validate(filters=data.filters(), streaming=True)
        scope = export_scope_access(user=request.user, filters=filters)
        reader = ExportReader(kind=kind, filters=filters, scope=scope)
        response = StreamingHttpResponse(export_stream(reader=reader), content_type=CONTENT_TYPE)
        response["Content-Disposition"] = content_disposition_header(
            True, export_file_name(kind=kind, filters=filters)
        )
        response["Cache-Control"] = "no-store"
        return response


@extend_schema(tags=["exports"])
class ExportJobListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="exports_list",
        description="Your export jobs, newest first.",
        responses={200: ExportJobOutputSerializer(many=True)},
    )
    def get(self, request):
        # Not cpms.api.paginated_response: it renders without the request, and download_url would be
        # relative here while absolute on the detail endpoint.
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(export_job_list(user=request.user), request, view=self)
        return paginator.get_paginated_response(
            ExportJobOutputSerializer(page, many=True, context={"request": request}).data
        )

    @extend_schema(
        operation_id="exports_create",
        summary="Start an export job (any period length)",
        description="Checks the filters and your scope now, then a worker writes the CSV; follow `progress` "
        "on the job and download it from `download_url` when it is done.",
        request=ExportJobInputSerializer,
        responses={202: ExportJobOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def post(self, request):
        data = ExportJobInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = export_job_create(user=request.user, kind=data.validated_data["kind"], filters=data.filters())
        return Response(
            ExportJobOutputSerializer(job, context={"request": request}).data, status=status.HTTP_202_ACCEPTED
        )


@extend_schema(tags=["exports"])
class ExportJobDetailApi(APIView):
    @extend_schema(
        operation_id="exports_retrieve", responses={200: ExportJobOutputSerializer, 404: NOT_FOUND}
    )
    def get(self, request, pk: int):
        job = export_job_access(user=request.user, pk=pk)
        return Response(ExportJobOutputSerializer(job, context={"request": request}).data)


@extend_schema(tags=["exports"])
class ExportJobDownloadApi(APIView):
    content_negotiation_class = JsonErrorsNegotiation

    @extend_schema(
        operation_id="exports_download",
        summary="Download the CSV of a finished export job",
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (403, "application/json"): FORBIDDEN,
            (404, "application/json"): NOT_FOUND,
            (409, "application/json"): NOT_DONE,
        },
    )
    def get(self, request, pk: int):
        job, path = export_job_download_access(user=request.user, pk=pk)
        response = StreamingHttpResponse(export_file_stream(path=path), content_type=CONTENT_TYPE)
        response["Content-Length"] = str(path.stat().st_size)
        response["Content-Disposition"] = content_disposition_header(
            True, export_file_name(kind=job.kind, filters=ExportFilters.from_json(job.filters), job_id=job.pk)
        )
        response["Cache-Control"] = "no-store"
        return response
