from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.enums import Capability
from cpms.api import BAD_REQUEST, FORBIDDEN, NOT_FOUND, ErrorOutputSerializer, paginated_response
from cpms.errors import NotFound, ValidationFailed
from sessions.api.serializers import (
    IdTokenFilterSerializer,
    IdTokenInputSerializer,
    IdTokenOutputSerializer,
    LocalListOutputSerializer,
    LocalListSyncInputSerializer,
    LocalListSyncOutputSerializer,
    MeterValueFilterSerializer,
    MeterValueOutputSerializer,
    ReservationFilterSerializer,
    ReservationInputSerializer,
    ReservationOutputSerializer,
    SessionAnomalyFilterSerializer,
    SessionAnomalyOutputSerializer,
    SessionFilterSerializer,
    SessionOutputSerializer,
    TransactionEventOutputSerializer,
)
from sessions.selectors import (
    id_token_access,
    id_token_list,
    local_list_entry_list,
    local_list_state_get,
    meter_value_list,
    reservation_access,
    reservation_list,
    session_access,
    session_anomaly_list,
    session_list,
    transaction_event_list,
)
from sessions.services.local_lists import local_list_sync
from sessions.services.reservations import reservation_cancel, reservation_create
from sessions.services.tokens import id_token_create, id_token_update
from stations.api.views import IDENTITY, RecordListApi, record_list_schema
from stations.enums import CommandSource
from stations.selectors import station_access

NOT_CONNECTED = OpenApiResponse(ErrorOutputSerializer, description="The station is not connected.")


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
    # The owner takes its URL's own parameters (RecordListApi.get passes the URL's kwargs through).
    def owner_access(self, *, user, pk: int):  # type: ignore[override]
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


# --- reservations -----------------------------------------------------------------------------------


@extend_schema(tags=["reservations"])
class ReservationListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="reservations_list",
        description="Reservations at the stations you see, newest first.",
        parameters=[ReservationFilterSerializer],
        responses={200: ReservationOutputSerializer(many=True), 400: BAD_REQUEST},
    )
    def get(self, request):
        filters = ReservationFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        reservations = reservation_list(user=request.user, filters=filters.validated_data)
        return paginated_response(
            request=request, view=self, queryset=reservations, serializer_class=ReservationOutputSerializer
        )

    @extend_schema(
        operation_id="reservations_create",
        summary="Reserve a station, EVSE or connector for an id token",
        description="Records the reservation, sends ReserveNow (1.6 {connectorId, expiryDate, idTag, "
        "reservationId, parentIdTag?}; 2.0.1 {id, expiryDateTime, idToken, evseId?, connectorType?, "
        "groupIdToken?}) and answers with the reservation as the charger's answer left it: `accepted`, "
        "`rejected` (charger_status says why: the charger's status, or the error code of a call that failed), "
        "or `requested` when the call timed out (the charger may hold it: cancel it, or it expires). The call "
        "itself is in `command`. Needs the command right on the station.",
        request=ReservationInputSerializer,
        responses={
            201: ReservationOutputSerializer,
            400: BAD_REQUEST,
            403: FORBIDDEN,
            409: NOT_CONNECTED,
        },
    )
    def post(self, request):
        serializer = ReservationInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            station = station_access(
                user=request.user, identity=data["station"], capability=Capability.COMMAND
            )
        except NotFound as exc:  # a reference in the request body, not the URL: the body is wrong
            raise ValidationFailed(exc.message) from exc
        reservation = reservation_create(
            actor=request.user,
            station=station,
            id_token_id=data["id_token"],
            expires_at=data["expires_at"],
            evse_id=data.get("evse_id"),
            connector_id=data.get("connector_id"),
            source=CommandSource.API,
        )
        return Response(ReservationOutputSerializer(reservation).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["reservations"])
class ReservationDetailApi(APIView):
    @extend_schema(
        operation_id="reservations_retrieve", responses={200: ReservationOutputSerializer, 404: NOT_FOUND}
    )
    def get(self, request, pk: int):
        return Response(ReservationOutputSerializer(reservation_access(user=request.user, pk=pk)).data)


@extend_schema(tags=["reservations"])
class ReservationCancelApi(APIView):
    @extend_schema(
        operation_id="reservations_cancel",
        summary="Cancel a reservation",
        description="Sends CancelReservation {reservationId}. The charger's answer cancels it (`cancelled`; "
        "charger_status CancelRejected when the charger held no such reservation). A call that failed or timed "
        "out changes nothing: see `command`. Only requested or accepted reservations can be cancelled (409).",
        request=None,
        responses={
            200: ReservationOutputSerializer,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: OpenApiResponse(
                ErrorOutputSerializer, description="Not open any more, or the station is not connected."
            ),
        },
    )
    def post(self, request, pk: int):
        reservation = reservation_access(user=request.user, pk=pk, capability=Capability.COMMAND)
        reservation = reservation_cancel(
            actor=request.user,
            reservation=reservation,
            source=CommandSource.API,
        )
        return Response(ReservationOutputSerializer(reservation).data)


# --- local authorisation lists ----------------------------------------------------------------------


@extend_schema(tags=["local-lists"])
class StationLocalListApi(APIView):
    @extend_schema(
        operation_id="stations_local_list_retrieve",
        description="The station's local authorisation list as it holds it (after its last accepted "
        "SendLocalList) and its version.",
        parameters=[IDENTITY],
        responses={200: LocalListOutputSerializer, 404: NOT_FOUND},
    )
    def get(self, request, identity: str):
        station = station_access(user=request.user, identity=identity)
        body = {
            "station": station.identity,
            "state": local_list_state_get(station=station),
            "entries": local_list_entry_list(station=station),
        }
        return Response(LocalListOutputSerializer(body).data)


@extend_schema(tags=["local-lists"])
class StationLocalListSyncApi(APIView):
    @extend_schema(
        operation_id="stations_local_list_sync",
        summary="Bring the station's local authorisation list up to date",
        description="Sends what the station lacks: nothing when it holds the list it should (the tokens of "
        "its organisation marked in_local_list that may charge there), a Differential update, or a Full one "
        "(when asked, the first time, after an update failed or the station reported another version, or "
        "when the changes outnumber the list). Split into several messages when the station reported a "
        "limit (1.6 SendLocalListMaxLength, 2.0.1 LocalAuthListCtrlr.ItemsPerMessage). Needs the command "
        "right on the station.",
        parameters=[IDENTITY],
        request=LocalListSyncInputSerializer,
        responses={
            200: LocalListSyncOutputSerializer,
            400: BAD_REQUEST,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: NOT_CONNECTED,
        },
    )
    def post(self, request, identity: str):
        station = station_access(user=request.user, identity=identity, capability=Capability.COMMAND)
        serializer = LocalListSyncInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = local_list_sync(
            actor=request.user,
            station=station,
            full=serializer.validated_data["full"],
            source=CommandSource.API,
        )
        items = result.update.items if result.update is not None else ()
        body = {
            "update_type": result.update.update_type if result.update is not None else None,
            "entries": sum(1 for item in items if item.status is not None),
            "removals": sum(1 for item in items if item.status is None),
            "commands": result.commands,
            "state": result.state,
        }
        return Response(LocalListSyncOutputSerializer(body).data)
