"""Configuration templates and bulk command jobs over the API."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.enums import Capability
from accounts.selectors import organisation_access
from cpms.api import BAD_REQUEST, FORBIDDEN, NOT_FOUND, StrictInputSerializer, paginated_response
from cpms.errors import ValidationFailed
from cpms.ocpp_wire.templates import read_configuration_calls, template_calls
from stations.enums import JobKind, OcppVersion
from stations.models import CommandJob, CommandJobTarget, ConfigurationTemplate
from stations.selectors import (
    command_job_access,
    command_job_list,
    configuration_template_access,
    configuration_template_list,
    stations_for_command,
)
from stations.services.jobs import (
    command_job_create,
    configuration_template_create,
    configuration_template_update,
)


class TemplateOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = ConfigurationTemplate
        fields = ["id", "organisation", "name", "protocol", "settings", "created_at"]
        read_only_fields = fields


class TemplateInputSerializer(StrictInputSerializer):
    organisation = serializers.IntegerField()
    name = serializers.CharField(max_length=200)
    protocol = serializers.ChoiceField(choices=OcppVersion.choices)
    settings = serializers.JSONField(
        help_text='1.6: [{"key", "value"}]; 2.0.1: [{"component", "variable", "value", optional '
        '"attributeType", "componentInstance", "variableInstance", "evseId", "connectorId"}].'
    )


class TemplateUpdateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=200, required=False)
    settings = serializers.JSONField(required=False)


class TargetsInputSerializer(StrictInputSerializer):
    stations = serializers.ListField(child=serializers.CharField(max_length=48), required=False, min_length=1)
    site = serializers.IntegerField(required=False, help_text="Every station of this site you may command.")

    def validate(self, attrs):
        if ("stations" in attrs) == ("site" in attrs):
            raise serializers.ValidationError("Give either 'stations' (identities) or 'site'.")
        return attrs


class ReadConfigurationInputSerializer(TargetsInputSerializer):
    organisation = serializers.IntegerField()


class JobTargetOutputSerializer(serializers.ModelSerializer):
    station = serializers.CharField(source="station.identity")

    class Meta:
        model = CommandJobTarget
        fields = ["station", "status", "detail", "finished_at"]
        read_only_fields = fields


class JobOutputSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)
    progress = serializers.SerializerMethodField(help_text="Finished targets / total, 0..1.")

    class Meta:
        model = CommandJob
        fields = [
            "id",
            "organisation",
            "kind",
            "action",
            "template",
            "firmware",
            "status",
            "total",
            "done_count",
            "failed_count",
            "progress",
            "error",
            "attempts",
            "created_by",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_progress(self, job) -> float:
        return round((job.done_count + job.failed_count) / job.total, 4) if job.total else 1.0


class JobDetailOutputSerializer(JobOutputSerializer):
    targets = JobTargetOutputSerializer(many=True, source="targets_ordered")

    class Meta(JobOutputSerializer.Meta):
        fields = [*JobOutputSerializer.Meta.fields, "targets"]
        read_only_fields = fields


def _job_detail(job: CommandJob) -> dict:
    # Read by JobDetailOutputSerializer from the instance; not a model field.
    job.targets_ordered = job.targets.select_related("station").order_by("station__identity")  # type: ignore[attr-defined]
    return JobDetailOutputSerializer(job).data


@extend_schema(tags=["configuration"])
class TemplateListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="configuration_templates_list", responses={200: TemplateOutputSerializer(many=True)}
    )
    def get(self, request):
        templates = configuration_template_list(user=request.user)
        return paginated_response(
            request=request, view=self, queryset=templates, serializer_class=TemplateOutputSerializer
        )

    @extend_schema(
        operation_id="configuration_templates_create",
        request=TemplateInputSerializer,
        responses={201: TemplateOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def post(self, request):
        data = TemplateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        organisation = organisation_access(
            user=request.user, pk=fields["organisation"], capability=Capability.MANAGE
        )
        template_calls(protocol=fields["protocol"], settings=fields["settings"])  # refuses a bad template
        template = configuration_template_create(
            organisation=organisation,
            name=fields["name"],
            protocol=fields["protocol"],
            settings=fields["settings"],
        )
        return Response(TemplateOutputSerializer(template).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["configuration"])
class TemplateDetailApi(APIView):
    @extend_schema(
        operation_id="configuration_templates_retrieve",
        responses={200: TemplateOutputSerializer, 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        return Response(
            TemplateOutputSerializer(configuration_template_access(user=request.user, pk=pk)).data
        )

    @extend_schema(
        operation_id="configuration_templates_partial_update",
        request=TemplateUpdateSerializer,
        responses={200: TemplateOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def patch(self, request, pk: int):
        template = configuration_template_access(user=request.user, pk=pk, capability=Capability.MANAGE)
        data = TemplateUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if "settings" in data.validated_data:
            template_calls(protocol=template.protocol, settings=data.validated_data["settings"])
        template = configuration_template_update(template=template, data=data.validated_data)
        return Response(TemplateOutputSerializer(template).data)


@extend_schema(tags=["configuration"])
class TemplateApplyApi(APIView):
    @extend_schema(
        operation_id="configuration_templates_apply",
        summary="Apply a template to stations (a bulk job)",
        request=TargetsInputSerializer,
        responses={202: JobDetailOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def post(self, request, pk: int):
        template = configuration_template_access(user=request.user, pk=pk, capability=Capability.COMMAND)
        data = TargetsInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        stations = stations_for_command(
            user=request.user,
            organisation_id=template.organisation_id,
            identities=data.validated_data.get("stations"),
            site_id=data.validated_data.get("site"),
        )
        mismatched = sorted(
            s.identity for s in stations if s.protocol and not _fits(template.protocol, s.protocol)
        )
        if mismatched:
            raise ValidationFailed(
                f"The template is for {template.protocol}; these stations are not: {', '.join(mismatched)}."
            )
        job = command_job_create(
            organisation=template.organisation,
            kind=JobKind.CONFIGURATION,
            stations=stations,
            calls=template_calls(protocol=template.protocol, settings=template.settings),
            user=request.user,
            action=template.name,
            template=template,
        )
        return Response(_job_detail(job), status=status.HTTP_202_ACCEPTED)


def _fits(template_protocol: str, station_protocol: str) -> bool:
    return station_protocol == template_protocol or (template_protocol, station_protocol) == (
        "ocpp2.0.1",
        "ocpp2.1",
    )


@extend_schema(tags=["configuration"])
class ReadConfigurationApi(APIView):
    @extend_schema(
        operation_id="jobs_read_configuration",
        summary="Read stations' configuration into the database (a bulk job)",
        request=ReadConfigurationInputSerializer,
        responses={202: JobDetailOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def post(self, request):
        data = ReadConfigurationInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        organisation = organisation_access(user=request.user, pk=data.validated_data["organisation"])
        stations = stations_for_command(
            user=request.user,
            organisation_id=organisation.pk,
            identities=data.validated_data.get("stations"),
            site_id=data.validated_data.get("site"),
        )
        job = command_job_create(
            organisation=organisation,
            kind=JobKind.READ_CONFIGURATION,
            stations=stations,
            calls=read_configuration_calls(),
            user=request.user,
            action="ReadConfiguration",
        )
        return Response(_job_detail(job), status=status.HTTP_202_ACCEPTED)


@extend_schema(tags=["jobs"])
class JobListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(operation_id="jobs_list", responses={200: JobOutputSerializer(many=True)})
    def get(self, request):
        jobs = command_job_list(user=request.user)
        return paginated_response(
            request=request, view=self, queryset=jobs, serializer_class=JobOutputSerializer
        )


@extend_schema(tags=["jobs"])
class JobDetailApi(APIView):
    @extend_schema(operation_id="jobs_retrieve", responses={200: JobDetailOutputSerializer, 404: NOT_FOUND})
    def get(self, request, pk: int):
        return Response(_job_detail(command_job_access(user=request.user, pk=pk)))
