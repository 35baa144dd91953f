"""The energy API: a site's grid topology (nodes, their schedules), external signals for a node (meter
readings, dynamic limits from a PV system or the grid operator), each EVSE's wiring, the charging profiles
sent, and a site's live energy view.

Every view checks the scope first (energy.selectors / stations.selectors: 404 outside it, 403 for a visible
object the role may not change: site hosts and finance read, operators manage), then parses the body, then
calls one service.
"""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.enums import Capability
from cpms.api import BAD_REQUEST, FORBIDDEN, NOT_FOUND, ErrorOutputSerializer, paginated_response
from energy.api.serializers import (
    ChargingProfileFilterSerializer,
    ChargingProfileOutputSerializer,
    EvseElectricalInputSerializer,
    EvseElectricalOutputSerializer,
    GridNodeInputSerializer,
    GridNodeOutputSerializer,
    GridNodeUpdateSerializer,
    GridSignalFilterSerializer,
    GridSignalInputSerializer,
    GridSignalOutputSerializer,
    NodeScheduleInputSerializer,
    NodeScheduleOutputSerializer,
    ProfileCheckOutputSerializer,
    SiteEnergyOutputSerializer,
)
from energy.selectors import (
    SiteEnergyView,
    charging_profile_list,
    evse_electrical_get,
    grid_node_access,
    grid_node_list,
    grid_signal_list,
    node_schedule_list,
    site_energy_view,
    station_evse_get,
)
from energy.services.profiles import evse_profile_check
from energy.services.topology import (
    ScheduleRow,
    evse_electrical_set,
    grid_node_create,
    grid_node_delete,
    grid_node_update,
    grid_signal_record,
    node_schedule_set,
)
from energy.types import UNLIMITED
from stations.selectors import site_access, station_access

CONFLICT = OpenApiResponse(ErrorOutputSerializer, description="Conflicts with the site's topology.")
IDENTITY = OpenApiParameter(
    "identity", str, OpenApiParameter.PATH, description="The station's OCPP identity (URL-encoded)."
)
EVSE_ID = OpenApiParameter(
    "evse_id", int, OpenApiParameter.PATH, description="The OCPP EVSE number (1, 2, ...)."
)
TAGS = ["energy"]


# --- grid nodes -----------------------------------------------------------------------------------------


@extend_schema(tags=TAGS)
class SiteGridNodeListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="sites_grid_nodes_list",
        description="The site's electrical topology: its grid connection (the root), panels and circuits, "
        "each with its limit and schedule, in creation order.",
        responses={200: GridNodeOutputSerializer(many=True), 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        site = site_access(user=request.user, pk=pk)
        return paginated_response(
            request=request,
            view=self,
            queryset=grid_node_list(site=site),
            serializer_class=GridNodeOutputSerializer,
        )

    @extend_schema(
        operation_id="sites_grid_nodes_create",
        description="A node of the site. The first is the root, the grid connection (no parent); every other "
        "node hangs off a node of the same site. Needs the manage right on the site.",
        request=GridNodeInputSerializer,
        responses={
            201: GridNodeOutputSerializer,
            400: BAD_REQUEST,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: OpenApiResponse(
                ErrorOutputSerializer, description="The name is taken, or the site has its root already."
            ),
        },
    )
    def post(self, request, pk: int):
        site = site_access(user=request.user, pk=pk, capability=Capability.MANAGE)
        serializer = GridNodeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        node = grid_node_create(site=site, parent_id=data.pop("parent"), **data)
        return Response(GridNodeOutputSerializer(node).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=TAGS)
class GridNodeDetailApi(APIView):
    @extend_schema(
        operation_id="grid_nodes_retrieve", responses={200: GridNodeOutputSerializer, 404: NOT_FOUND}
    )
    def get(self, request, pk: int):
        return Response(GridNodeOutputSerializer(grid_node_access(user=request.user, pk=pk)).data)

    @extend_schema(
        operation_id="grid_nodes_partial_update",
        description="Name, limits, voltage, or the parent (within the site, never under the node's own "
        "subtree). A node keeps its site and kind.",
        request=GridNodeUpdateSerializer,
        responses={
            200: GridNodeOutputSerializer,
            400: BAD_REQUEST,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: CONFLICT,
        },
    )
    def patch(self, request, pk: int):
        node = grid_node_access(user=request.user, pk=pk, capability=Capability.MANAGE)
        serializer = GridNodeUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if "parent" in data:
            data["parent_id"] = data.pop("parent")
        node = grid_node_update(node=node, **data)
        return Response(GridNodeOutputSerializer(node).data)

    @extend_schema(
        operation_id="grid_nodes_destroy",
        description="Deletes the node with its schedule and signals. Refused while nodes or EVSEs hang off it.",
        responses={204: None, 403: FORBIDDEN, 404: NOT_FOUND, 409: CONFLICT},
    )
    def delete(self, request, pk: int):
        node = grid_node_access(user=request.user, pk=pk, capability=Capability.MANAGE)
        grid_node_delete(node=node)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=TAGS)
class GridNodeScheduleApi(APIView):
    @extend_schema(
        operation_id="grid_nodes_schedule_retrieve",
        responses={200: NodeScheduleOutputSerializer, 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        node = grid_node_access(user=request.user, pk=pk)
        return Response(NodeScheduleOutputSerializer({"schedule": node_schedule_list(node=node)}).data)

    @extend_schema(
        operation_id="grid_nodes_schedule_update",
        summary="Replace a node's limit schedule",
        description="The whole schedule, in order (the first row matching the site's local time wins); an "
        "empty list removes it. Needs the manage right on the node's site.",
        request=NodeScheduleInputSerializer,
        responses={200: NodeScheduleOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def put(self, request, pk: int):
        node = grid_node_access(user=request.user, pk=pk, capability=Capability.MANAGE)
        serializer = NodeScheduleInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rows = [
            ScheduleRow(
                start_time=row["start_time"],
                end_time=row["end_time"],
                limit_a=row["limit_a"],
                day_of_week=tuple(row["day_of_week"]),
            )
            for row in serializer.validated_data["schedule"]
        ]
        schedule = node_schedule_set(node=node, rows=rows)
        return Response(NodeScheduleOutputSerializer({"schedule": schedule}).data)


@extend_schema(tags=TAGS)
class GridNodeSignalListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="grid_nodes_signals_list",
        description="The node's external signals, newest measurement first.",
        parameters=[GridSignalFilterSerializer],
        responses={200: GridSignalOutputSerializer(many=True), 400: BAD_REQUEST, 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        node = grid_node_access(user=request.user, pk=pk)
        filters = GridSignalFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        return paginated_response(
            request=request,
            view=self,
            queryset=grid_signal_list(node=node, filters=filters.validated_data),
            serializer_class=GridSignalOutputSerializer,
        )

    @extend_schema(
        operation_id="grid_nodes_signals_create",
        summary="Send an external signal for a node",
        description="A meter reading at the node (the current per phase of all its loads, EVSEs included: the "
        "balancer subtracts what the EVSEs draw to find the other loads) or a dynamic limit (e.g. PV surplus, "
        "a grid operator's limit), in force from measured_at (default: now) until valid_until (default: 5 "
        "minutes later). The newest valid signal of each kind is used by the next rebalance. Needs the manage "
        "right on the node's site.",
        request=GridSignalInputSerializer,
        responses={201: GridSignalOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def post(self, request, pk: int):
        node = grid_node_access(user=request.user, pk=pk, capability=Capability.MANAGE)
        serializer = GridSignalInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        signal = grid_signal_record(node=node, **serializer.validated_data)
        return Response(GridSignalOutputSerializer(signal).data, status=status.HTTP_201_CREATED)


# --- EVSE wiring ----------------------------------------------------------------------------------------


@extend_schema(tags=TAGS, parameters=[IDENTITY, EVSE_ID])
class EvseElectricalApi(APIView):
    @extend_schema(
        operation_id="stations_evses_electrical_retrieve",
        description="How the EVSE is wired and driven by the load balancer; 404 when it is not load-managed.",
        responses={200: EvseElectricalOutputSerializer, 404: NOT_FOUND},
    )
    def get(self, request, identity: str, evse_id: int):
        station = station_access(user=request.user, identity=identity, with_points=False)
        evse = station_evse_get(station=station, evse_id=evse_id)
        return Response(EvseElectricalOutputSerializer(evse_electrical_get(evse=evse)).data)

    @extend_schema(
        operation_id="stations_evses_electrical_update",
        summary="Put an EVSE under load management",
        description="The node it hangs off (of the station's site), its phase rotation, current range and "
        "priority; replaces what was set. Needs the manage right on the station.",
        request=EvseElectricalInputSerializer,
        responses={200: EvseElectricalOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def put(self, request, identity: str, evse_id: int):
        station = station_access(
            user=request.user, identity=identity, capability=Capability.MANAGE, with_points=False
        )
        evse = station_evse_get(station=station, evse_id=evse_id)
        serializer = EvseElectricalInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        electrical = evse_electrical_set(evse=evse, node_id=data.pop("node"), **data)
        return Response(EvseElectricalOutputSerializer(electrical).data)


# --- what was sent, and the live view -------------------------------------------------------------------


@extend_schema(tags=TAGS, parameters=[IDENTITY])
class StationChargingProfileListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="stations_charging_profiles_list",
        description="Every charging profile sent to (or cleared on) the station, newest first, with the "
        "charger's answer.",
        parameters=[ChargingProfileFilterSerializer],
        responses={200: ChargingProfileOutputSerializer(many=True), 400: BAD_REQUEST, 404: NOT_FOUND},
    )
    def get(self, request, identity: str):
        station = station_access(user=request.user, identity=identity, with_points=False)
        filters = ChargingProfileFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        return paginated_response(
            request=request,
            view=self,
            queryset=charging_profile_list(station=station, filters=filters.validated_data),
            serializer_class=ChargingProfileOutputSerializer,
        )


def _limit(value: float) -> float | None:
    return None if value == UNLIMITED else value


def _energy_body(view: SiteEnergyView) -> dict:
    nodes = [
        {
            "id": node.state.node.pk,
            "parent": node.state.node.parent_id,
            "name": node.state.node.name,
            "kind": node.state.node.kind,
            "limit_a": [_limit(value) for value in node.state.limit_a],
            "base_load_a": list(node.state.base_load_a),
            "planned_load_a": list(node.planned_load_a),
            "schedule_position": node.state.schedule.position if node.state.schedule else None,
            "dynamic_limit": node.state.dynamic_limit.pk if node.state.dynamic_limit else None,
            "meter_reading": node.state.meter_reading.pk if node.state.meter_reading else None,
        }
        for node in view.nodes
    ]
    evses = []
    for evse in view.evses:
        electrical, allocation = evse.state.electrical, evse.state.allocation
        measured = evse.state.input.measured_a
        evses.append(
            {
                "station": electrical.evse.station.identity,
                "evse_id": electrical.evse.evse_id,
                "node": electrical.node_id,
                "phase_rotation": electrical.phase_rotation,
                "min_current_a": electrical.min_current_a,
                "max_current_a": electrical.max_current_a,
                "priority": electrical.priority,
                "active": evse.state.input.active,
                "session": evse.state.session.pk if evse.state.session else None,
                "measured_a": list(measured) if measured is not None else None,
                "allocation": None
                if allocation is None
                else {
                    "limit_a": allocation.limit_a,
                    "paused": allocation.paused,
                    "phases_used": allocation.phases_used,
                    "computed_at": allocation.computed_at,
                    "sent_limit_a": allocation.sent_limit_a,
                    "sent_at": allocation.sent_at,
                },
                "latest_profile": evse.latest_profile,
            }
        )
    return {
        "site": view.site.pk,
        "time_zone": view.site.time_zone,
        "at": view.at,
        "nodes": nodes,
        "evses": evses,
    }


@extend_schema(tags=TAGS)
class SiteEnergyApi(APIView):
    @extend_schema(
        operation_id="sites_energy_retrieve",
        summary="A site's energy picture now",
        description="Per node: the limit in force (schedule, dynamic limit), the base load from the latest "
        "meter reading and the planned load (base load plus the allocations under it). Per managed EVSE: "
        "whether it charges, its measured current, the balancer's allocation, the limit last accepted by the "
        "charger and the last profile sent.",
        responses={200: SiteEnergyOutputSerializer, 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        site = site_access(user=request.user, pk=pk)
        return Response(SiteEnergyOutputSerializer(_energy_body(site_energy_view(site_id=site.pk))).data)


@extend_schema(tags=TAGS, parameters=[IDENTITY])
class EvseProfileCheckApi(APIView):
    @extend_schema(
        operation_id="stations_evses_profile_check",
        summary="Compare the limit sent with what the charger applies",
        description="Sends GetCompositeSchedule for the EVSE and compares its limit now with the TxProfile "
        "its session was last given (else its fail-safe default). Needs the command right on the station.",
        request=None,
        responses={200: ProfileCheckOutputSerializer, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def post(self, request, identity: str, evse_id: int):
        station = station_access(
            user=request.user, identity=identity, capability=Capability.COMMAND, with_points=False
        )
        station_evse_get(station=station, evse_id=evse_id)
        check = evse_profile_check(station=station, evse_number=evse_id, user=request.user)
        return Response(ProfileCheckOutputSerializer(check).data)
