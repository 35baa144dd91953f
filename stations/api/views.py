from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.enums import Capability
from cpms.api import BAD_REQUEST, FORBIDDEN, NOT_FOUND, paginated_response
from stations.api.serializers import (
    DeviceVariableFilterSerializer,
    DeviceVariableOutputSerializer,
    SecurityEventFilterSerializer,
    SecurityEventListFilterSerializer,
    SecurityEventOutputSerializer,
    SiteFilterSerializer,
    SiteInputSerializer,
    SiteOutputSerializer,
    StationEventFilterSerializer,
    StationEventOutputSerializer,
    StationFilterSerializer,
    StationInputSerializer,
    StationOutputSerializer,
    StatusChangeFilterSerializer,
    StatusChangeOutputSerializer,
)
from stations.selectors import (
    device_variable_list,
    security_event_list,
    site_access,
    site_list,
    station_access,
    station_event_list,
    station_list,
    status_change_list,
)
from stations.services.management import site_create, site_update, station_create, station_update

IDENTITY = OpenApiParameter(
    "identity", str, OpenApiParameter.PATH, description="The station's OCPP identity (URL-encoded)."
)


@extend_schema(tags=["sites"])
class SiteListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="sites_list",
        parameters=[SiteFilterSerializer],
        responses={200: SiteOutputSerializer(many=True), 400: BAD_REQUEST},
    )
    def get(self, request):
        filters = SiteFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        sites = site_list(user=request.user, filters=filters.validated_data)
        return paginated_response(
            request=request, view=self, queryset=sites, serializer_class=SiteOutputSerializer
        )

    @extend_schema(
        operation_id="sites_create",
        request=SiteInputSerializer,
        responses={201: SiteOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN},
    )
    def post(self, request):
        serializer = SiteInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        site = site_create(actor=request.user, **serializer.validated_data)
        return Response(SiteOutputSerializer(site).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["sites"])
class SiteDetailApi(APIView):
    @extend_schema(operation_id="sites_retrieve", responses={200: SiteOutputSerializer, 404: NOT_FOUND})
    def get(self, request, pk: int):
        site = site_access(user=request.user, pk=pk)
        return Response(SiteOutputSerializer(site).data)

    @extend_schema(
        operation_id="sites_partial_update",
        request=SiteInputSerializer(partial=True),
        responses={200: SiteOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def patch(self, request, pk: int):
        site = site_access(user=request.user, pk=pk, capability=Capability.MANAGE)
        serializer = SiteInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        site = site_update(actor=request.user, site=site, data=serializer.validated_data)
        return Response(SiteOutputSerializer(site).data)


@extend_schema(tags=["stations"])
class StationListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="stations_list",
        parameters=[StationFilterSerializer],
        responses={200: StationOutputSerializer(many=True), 400: BAD_REQUEST},
    )
    def get(self, request):
        filters = StationFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        stations = station_list(user=request.user, filters=filters.validated_data)
        return paginated_response(
            request=request,
            view=self,
            queryset=stations,
            serializer_class=lambda *args, **kwargs: StationOutputSerializer(
                *args, context={"request": request}, **kwargs
            ),
        )

    @extend_schema(
        operation_id="stations_create",
        request=StationInputSerializer,
        responses={201: StationOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN},
    )
    def post(self, request):
        serializer = StationInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        station = station_create(actor=request.user, **serializer.validated_data)
        station = station_access(user=request.user, identity=station.identity)
        return Response(
            StationOutputSerializer(station, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )


@extend_schema(tags=["stations"])
class StationDetailApi(APIView):
    @extend_schema(
        operation_id="stations_retrieve",
        parameters=[IDENTITY],
        responses={200: StationOutputSerializer, 404: NOT_FOUND},
    )
    def get(self, request, identity: str):
        station = station_access(user=request.user, identity=identity)
        return Response(StationOutputSerializer(station, context={"request": request}).data)

    @extend_schema(
        operation_id="stations_partial_update",
        parameters=[IDENTITY],
        request=StationInputSerializer(partial=True),
        responses={200: StationOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def patch(self, request, identity: str):
        station = station_access(user=request.user, identity=identity, capability=Capability.MANAGE)
        serializer = StationInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        station_update(actor=request.user, station=station, data=serializer.validated_data)
        # Read back through the selector: the response shows the EVSEs and what the scope still allows.
        station = station_access(user=request.user, identity=identity)
        return Response(StationOutputSerializer(station, context={"request": request}).data)


# --- what stations reported -------------------------------------------------------------------------


class RecordListApi(APIView):
    """A read-only, filtered, paginated list of records, of one station or session or across the scope.

    Subclasses name their serializers and implement `records`; those under one object implement
    `owner_access` too (the station or session in the URL, NotFound outside the user's scope). The owner is
    fetched before the filters are parsed: scope first, so that a 400 never tells a caller that a foreign
    object exists.
    """

    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS
    filter_serializer_class: type[serializers.Serializer] | None = None
    output_serializer_class: type[serializers.Serializer]
    # Path parameters the schema cannot infer from the URL converter.
    owner_parameters: list[OpenApiParameter] = []

    def owner_access(self, *, user, **url_kwargs):
        return None

    def records(self, *, user, owner, filters):
        raise NotImplementedError

    def get(self, request, **url_kwargs):
        owner = self.owner_access(user=request.user, **url_kwargs)
        filters = {}
        if self.filter_serializer_class is not None:
            parsed = self.filter_serializer_class(data=request.query_params)
            parsed.is_valid(raise_exception=True)
            filters = parsed.validated_data
        return paginated_response(
            request=request,
            view=self,
            queryset=self.records(user=request.user, owner=owner, filters=filters),
            serializer_class=self.output_serializer_class,
        )


class StationRecordListApi(RecordListApi):
    owner_parameters = [IDENTITY]

    # The owner takes its URL's own parameters (RecordListApi.get passes the URL's kwargs through).
    def owner_access(self, *, user, identity: str):  # type: ignore[override]
        return station_access(user=user, identity=identity)


def record_list_schema(*, tag: str, operation_id: str, description: str):
    """The OpenAPI operation of a RecordListApi subclass, derived from its serializers and owner."""

    def decorate(view: type[RecordListApi]) -> type[RecordListApi]:
        parameters: list[OpenApiParameter | type[serializers.Serializer[Any]]] = list(view.owner_parameters)
        responses: dict[int, serializers.Serializer[Any] | OpenApiResponse] = {
            200: view.output_serializer_class(many=True)
        }
        if view.filter_serializer_class is not None:
            parameters.append(view.filter_serializer_class)
            responses[400] = BAD_REQUEST
        if view.owner_access is not RecordListApi.owner_access:
            responses[404] = NOT_FOUND
        operation = extend_schema(
            tags=[tag],
            operation_id=operation_id,
            description=description,
            parameters=parameters,
            responses=responses,
        )
        return extend_schema_view(get=operation)(view)

    return decorate


@record_list_schema(
    tag="stations",
    operation_id="stations_variables_list",
    description="The station's device model as last reported (2.0.1 NotifyReport, GetVariables answers): one row "
    "per component, variable and attribute type. 1.6 configuration keys (GetConfiguration answers) are component "
    "OCPP16, variable = the key.",
)
class StationVariableListApi(StationRecordListApi):
    filter_serializer_class = DeviceVariableFilterSerializer
    output_serializer_class = DeviceVariableOutputSerializer

    def records(self, *, user, owner, filters):
        return device_variable_list(station=owner, filters=filters)


@record_list_schema(
    tag="stations",
    operation_id="stations_security_events_list",
    description="The station's security log, newest first.",
)
class StationSecurityEventListApi(StationRecordListApi):
    filter_serializer_class = SecurityEventFilterSerializer
    output_serializer_class = SecurityEventOutputSerializer

    def records(self, *, user, owner, filters):
        return security_event_list(user=user, station=owner, filters=filters)


@record_list_schema(
    tag="stations",
    operation_id="stations_events_list",
    description="Notifications kept without a state machine (DataTransfer, firmware status, NotifyEvent, "
    "connects and disconnects, ...), newest first.",
)
class StationEventListApi(StationRecordListApi):
    filter_serializer_class = StationEventFilterSerializer
    output_serializer_class = StationEventOutputSerializer

    def records(self, *, user, owner, filters):
        return station_event_list(station=owner, filters=filters)


@record_list_schema(
    tag="stations",
    operation_id="stations_status_history_list",
    description="Every status the station and its connectors reported, newest first.",
)
class StationStatusHistoryApi(StationRecordListApi):
    filter_serializer_class = StatusChangeFilterSerializer
    output_serializer_class = StatusChangeOutputSerializer

    def records(self, *, user, owner, filters):
        return status_change_list(station=owner, filters=filters)


@record_list_schema(
    tag="security-events",
    operation_id="security_events_list",
    description="Security events of every station you see, newest first. Refused handshakes of unknown "
    "identities (`station` null) are shown to superusers only.",
)
class SecurityEventListApi(RecordListApi):
    filter_serializer_class = SecurityEventListFilterSerializer
    output_serializer_class = SecurityEventOutputSerializer

    def records(self, *, user, owner, filters):
        return security_event_list(user=user, filters=filters)
