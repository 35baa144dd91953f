from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.enums import Capability
from cpms.api import ErrorOutputSerializer, paginated_response
from stations.api.serializers import (
    SiteFilterSerializer,
    SiteInputSerializer,
    SiteOutputSerializer,
    StationFilterSerializer,
    StationInputSerializer,
    StationOutputSerializer,
)
from stations.selectors import site_access, site_list, station_access, station_list
from stations.services.management import site_create, site_update, station_create, station_update

NOT_FOUND = OpenApiResponse(ErrorOutputSerializer, description="Not found, or outside your scope.")
FORBIDDEN = OpenApiResponse(
    ErrorOutputSerializer, description="Visible to you, but your role may not do this."
)
BAD_REQUEST = OpenApiResponse(description="Invalid input: {field: [messages]} or {detail: message}.")
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
            request=request, view=self, queryset=stations, serializer_class=StationOutputSerializer
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
        return Response(StationOutputSerializer(station).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["stations"])
class StationDetailApi(APIView):
    @extend_schema(
        operation_id="stations_retrieve",
        parameters=[IDENTITY],
        responses={200: StationOutputSerializer, 404: NOT_FOUND},
    )
    def get(self, request, identity: str):
        station = station_access(user=request.user, identity=identity)
        return Response(StationOutputSerializer(station).data)

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
        return Response(StationOutputSerializer(station).data)
