from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.enums import Capability
from cpms.api import ErrorOutputSerializer, paginated_response
from sessions.api.serializers import (
    IdTokenFilterSerializer,
    IdTokenInputSerializer,
    IdTokenOutputSerializer,
    SessionFilterSerializer,
    SessionOutputSerializer,
)
from sessions.selectors import id_token_access, id_token_list, session_access, session_list
from sessions.services.tokens import id_token_create, id_token_update

NOT_FOUND = OpenApiResponse(ErrorOutputSerializer, description="Not found, or outside your scope.")
FORBIDDEN = OpenApiResponse(
    ErrorOutputSerializer, description="Visible to you, but your role may not do this."
)
BAD_REQUEST = OpenApiResponse(description="Invalid input: {field: [messages]} or {detail: message}.")


@extend_schema(tags=["id-tokens"])
class IdTokenListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="id_tokens_list",
        description="Id tokens of the organisations where you hold an organisation-wide role.",
        parameters=[IdTokenFilterSerializer],
        responses={200: IdTokenOutputSerializer(many=True), 400: BAD_REQUEST},
    )
    def get(self, request):
        filters = IdTokenFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        tokens = id_token_list(user=request.user, filters=filters.validated_data)
        return paginated_response(
            request=request, view=self, queryset=tokens, serializer_class=IdTokenOutputSerializer
        )

    @extend_schema(
        operation_id="id_tokens_create",
        request=IdTokenInputSerializer,
        responses={201: IdTokenOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN},
    )
    def post(self, request):
        serializer = IdTokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token = id_token_create(actor=request.user, **serializer.validated_data)
        return Response(IdTokenOutputSerializer(token).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["id-tokens"])
class IdTokenDetailApi(APIView):
    @extend_schema(
        operation_id="id_tokens_retrieve", responses={200: IdTokenOutputSerializer, 404: NOT_FOUND}
    )
    def get(self, request, pk: int):
        token = id_token_access(user=request.user, pk=pk)
        return Response(IdTokenOutputSerializer(token).data)

    @extend_schema(
        operation_id="id_tokens_partial_update",
        request=IdTokenInputSerializer(partial=True),
        responses={200: IdTokenOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def patch(self, request, pk: int):
        token = id_token_access(user=request.user, pk=pk, capability=Capability.MANAGE)
        serializer = IdTokenInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        token = id_token_update(actor=request.user, id_token=token, data=serializer.validated_data)
        return Response(IdTokenOutputSerializer(token).data)


@extend_schema(tags=["sessions"])
class SessionListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="sessions_list",
        parameters=[SessionFilterSerializer],
        responses={200: SessionOutputSerializer(many=True), 400: BAD_REQUEST},
    )
    def get(self, request):
        filters = SessionFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        sessions = session_list(user=request.user, filters=filters.validated_data)
        return paginated_response(
            request=request, view=self, queryset=sessions, serializer_class=SessionOutputSerializer
        )


@extend_schema(tags=["sessions"])
class SessionDetailApi(APIView):
    @extend_schema(operation_id="sessions_retrieve", responses={200: SessionOutputSerializer, 404: NOT_FOUND})
    def get(self, request, pk: int):
        session = session_access(user=request.user, pk=pk)
        return Response(SessionOutputSerializer(session).data)
