from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.api.serializers import (
    AuditFilterInputSerializer,
    AuditRecordOutputSerializer,
    OrganisationInputSerializer,
    OrganisationOutputSerializer,
)
from accounts.selectors import (
    AuditFilters,
    audit_record_list,
    organisation_list,
)
from accounts.services import (
    organisation_create,
)
from cpms.api import BAD_REQUEST, FORBIDDEN, ErrorOutputSerializer, paginated_response


@extend_schema(tags=["organisations"])
class OrganisationListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="organisations_list",
        description="The organisations you belong to (every organisation for a superuser).",
        responses={200: OrganisationOutputSerializer(many=True)},
    )
    def get(self, request):
        return paginated_response(
            request=request,
            view=self,
            queryset=organisation_list(user=request.user),
            serializer_class=OrganisationOutputSerializer,
        )

    @extend_schema(
        operation_id="organisations_create",
        description="Superusers only.",
        request=OrganisationInputSerializer,
        responses={
            201: OrganisationOutputSerializer,
            400: OpenApiResponse(description="Invalid input."),
            403: OpenApiResponse(ErrorOutputSerializer, description="Not a superuser."),
        },
    )
    def post(self, request):
        serializer = OrganisationInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        organisation = organisation_create(actor=request.user, **serializer.validated_data)
        return Response(OrganisationOutputSerializer(organisation).data, status=status.HTTP_201_CREATED)


# The users endpoints (operator admins) are in stations.api.users: a site host's grants are on sites.


@extend_schema(tags=["audit"])
class AuditRecordListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="audit_records_list",
        description="The audit log of the organisations where you manage users (superusers: all), newest first.",
        parameters=[AuditFilterInputSerializer],
        responses={200: AuditRecordOutputSerializer(many=True), 400: BAD_REQUEST, 403: FORBIDDEN},
    )
    def get(self, request):
        data = AuditFilterInputSerializer(data=request.query_params)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        filters = AuditFilters(
            action=values.get("action", ""),
            actor_id=values.get("actor"),
            organisation_id=values.get("organisation"),
            since=values.get("since"),
            until=values.get("until"),
        )
        return paginated_response(
            request=request,
            view=self,
            queryset=audit_record_list(user=request.user, filters=filters),
            serializer_class=AuditRecordOutputSerializer,
        )
