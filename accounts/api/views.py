from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.api.serializers import OrganisationInputSerializer, OrganisationOutputSerializer
from accounts.selectors import organisation_list
from accounts.services import organisation_create
from cpms.api import ErrorOutputSerializer, paginated_response


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
