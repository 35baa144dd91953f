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
    MeterValueFilterSerializer,
    MeterValueOutputSerializer,
    SessionAnomalyFilterSerializer,
    SessionAnomalyOutputSerializer,
    SessionFilterSerializer,
    SessionOutputSerializer,
    TransactionEventOutputSerializer,
)
from sessions.selectors import (
    id_token_access,
    id_token_list,
    meter_value_list,
    session_access,
    session_anomaly_list,
    session_list,
    transaction_event_list,
)
from sessions.services.tokens import id_token_create, id_token_update
from stations.api.views import RecordListApi, record_list_schema

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


# --- what a session recorded ------------------------------------------------------------------------


class SessionRecordListApi(RecordListApi):
    def owner_access(self, *, user, pk: int):
        return session_access(user=user, pk=pk)


@record_list_schema(
    tag="sessions",
    operation_id="sessions_meter_values_list",
    description="The session's sampled values in the order they were taken (timestamp, then arrival).",
)
class SessionMeterValueListApi(SessionRecordListApi):
    filter_serializer_class = MeterValueFilterSerializer
    output_serializer_class = MeterValueOutputSerializer

    def records(self, *, user, owner, filters):
        return meter_value_list(session=owner, filters=filters)


@record_list_schema(
    tag="sessions",
    operation_id="sessions_events_list",
    description="The session's OCPP 2.0.1 TransactionEvents in seqNo order (empty for a 1.6 session).",
)
class SessionEventListApi(SessionRecordListApi):
    output_serializer_class = TransactionEventOutputSerializer

    def records(self, *, user, owner, filters):
        return transaction_event_list(session=owner)


@record_list_schema(
    tag="sessions",
    operation_id="session_anomalies_list",
    description="What was set aside for review (unknown, foreign or duplicate stops, ...), newest first.",
)
class SessionAnomalyListApi(RecordListApi):
    filter_serializer_class = SessionAnomalyFilterSerializer
    output_serializer_class = SessionAnomalyOutputSerializer

    def records(self, *, user, owner, filters):
        return session_anomaly_list(user=user, filters=filters)
