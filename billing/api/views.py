"""The billing API: tariffs and their versions, tariff assignments, site energy prices, CDRs and their
credits, and the cost of a session.

Every view checks the scope first (billing.selectors / the owners' selectors: 404 outside it, 403 for a
visible object the role may not change), then parses the body, then calls one service. CDRs, their lines and
credits, and tariff versions are never changed: they have no PUT/PATCH/DELETE (405).
"""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.enums import Capability
from accounts.selectors import organisation_access
from billing.api.serializers import (
    CdrCreditInputSerializer,
    CdrCreditOutputSerializer,
    CdrDetailOutputSerializer,
    CdrFilterSerializer,
    CdrOutputSerializer,
    CostState,
    EnergyPriceInputSerializer,
    EnergyPriceOutputSerializer,
    SessionCostOutputSerializer,
    TariffAssignmentFilterSerializer,
    TariffAssignmentInputSerializer,
    TariffAssignmentOutputSerializer,
    TariffFilterSerializer,
    TariffInputSerializer,
    TariffOutputSerializer,
    TariffUpdateSerializer,
    TariffVersionInputSerializer,
    TariffVersionOutputSerializer,
)
from billing.selectors import (
    assignment_access,
    assignment_list,
    cdr_access,
    cdr_list,
    credit_list,
    energy_price_list,
    session_cdr_get,
    tariff_access,
    tariff_list,
    tariff_version_get,
    tariff_version_list,
)
from billing.services.cdrs import cdr_credit_create, cdr_credit_totals, session_cost_so_far
from billing.services.energy_prices import EnergyPriceInput, site_energy_price_create
from billing.services.tariffs import (
    TariffVersionInput,
    tariff_assign,
    tariff_create,
    tariff_unassign,
    tariff_update,
    tariff_version_create,
)
from cpms.api import BAD_REQUEST, FORBIDDEN, NOT_FOUND, ErrorOutputSerializer, paginated_response
from sessions.enums import SessionStatus
from sessions.models import ChargingSession
from sessions.selectors import id_token_access, session_access
from stations.selectors import site_access, station_access

VERSION = OpenApiParameter(
    "version", int, OpenApiParameter.PATH, description="The version number (1, 2, ...)."
)
TAGS = ["billing"]


# --- tariffs --------------------------------------------------------------------------------------------


@extend_schema(tags=TAGS)
class TariffListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="tariffs_list",
        description="Tariffs of your organisations; a site host sees the tariffs assigned at their sites "
        "and stations.",
        parameters=[TariffFilterSerializer],
        responses={200: TariffOutputSerializer(many=True), 400: BAD_REQUEST},
    )
    def get(self, request):
        filters = TariffFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        tariffs = tariff_list(user=request.user, filters=filters.validated_data)
        return paginated_response(
            request=request, view=self, queryset=tariffs, serializer_class=TariffOutputSerializer
        )

    @extend_schema(
        operation_id="tariffs_create",
        description="A tariff without prices: add them as a version (POST .../versions/). Needs the manage "
        "right on the organisation.",
        request=TariffInputSerializer,
        responses={
            201: TariffOutputSerializer,
            400: BAD_REQUEST,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: OpenApiResponse(ErrorOutputSerializer, description="The name is taken."),
        },
    )
    def post(self, request):
        serializer = TariffInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        organisation = organisation_access(
            user=request.user, pk=data["organisation"], capability=Capability.MANAGE
        )
        tariff = tariff_create(organisation=organisation, name=data["name"], description=data["description"])
        return Response(TariffOutputSerializer(tariff).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=TAGS)
class TariffDetailApi(APIView):
    @extend_schema(operation_id="tariffs_retrieve", responses={200: TariffOutputSerializer, 404: NOT_FOUND})
    def get(self, request, pk: int):
        return Response(TariffOutputSerializer(tariff_access(user=request.user, pk=pk)).data)

    @extend_schema(
        operation_id="tariffs_partial_update",
        description="Name and description only: prices change through a new version.",
        request=TariffUpdateSerializer,
        responses={
            200: TariffOutputSerializer,
            400: BAD_REQUEST,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: OpenApiResponse(ErrorOutputSerializer, description="The name is taken."),
        },
    )
    def patch(self, request, pk: int):
        tariff = tariff_access(user=request.user, pk=pk, capability=Capability.MANAGE)
        serializer = TariffUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tariff = tariff_update(tariff=tariff, **serializer.validated_data)
        return Response(TariffOutputSerializer(tariff).data)


@extend_schema(tags=TAGS)
class TariffVersionListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="tariffs_versions_list",
        description="The tariff's versions, newest first.",
        responses={200: TariffVersionOutputSerializer(many=True), 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        tariff = tariff_access(user=request.user, pk=pk)
        return paginated_response(
            request=request,
            view=self,
            queryset=tariff_version_list(tariff=tariff),
            serializer_class=TariffVersionOutputSerializer,
        )

    @extend_schema(
        operation_id="tariffs_versions_create",
        summary="Add a version of the tariff's prices",
        description="The prices from `valid_from` on (OCPI 2.2.1 elements plus the session-wide fields), "
        "numbered after the last version. Versions are never edited: a price change is a new version, so "
        "sessions and CDRs keep naming the prices they were priced with. An invalid element is a 400 whose "
        "detail names its path (elements[0].price_components[1].price: ...). Needs the manage right.",
        request=TariffVersionInputSerializer,
        responses={
            201: TariffVersionOutputSerializer,
            400: BAD_REQUEST,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: OpenApiResponse(
                ErrorOutputSerializer, description="A version starting at valid_from exists."
            ),
        },
    )
    def post(self, request, pk: int):
        tariff = tariff_access(user=request.user, pk=pk, capability=Capability.MANAGE)
        serializer = TariffVersionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = tariff_version_create(
            tariff=tariff, data=TariffVersionInput(**serializer.validated_data), user=request.user
        )
        return Response(TariffVersionOutputSerializer(version).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=TAGS)
class TariffVersionDetailApi(APIView):
    @extend_schema(
        operation_id="tariffs_versions_retrieve",
        parameters=[VERSION],
        responses={200: TariffVersionOutputSerializer, 404: NOT_FOUND},
    )
    def get(self, request, pk: int, version: int):
        tariff = tariff_access(user=request.user, pk=pk)
        return Response(
            TariffVersionOutputSerializer(tariff_version_get(tariff=tariff, version=version)).data
        )


# --- assignments ----------------------------------------------------------------------------------------


@extend_schema(tags=TAGS)
class TariffAssignmentListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="tariff_assignments_list",
        description="Where tariffs are in force. A site host sees those at their sites and stations.",
        parameters=[TariffAssignmentFilterSerializer],
        responses={200: TariffAssignmentOutputSerializer(many=True), 400: BAD_REQUEST},
    )
    def get(self, request):
        filters = TariffAssignmentFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        assignments = assignment_list(user=request.user, filters=filters.validated_data)
        return paginated_response(
            request=request,
            view=self,
            queryset=assignments,
            serializer_class=TariffAssignmentOutputSerializer,
        )

    @extend_schema(
        operation_id="tariff_assignments_create",
        summary="Put a tariff in force at a scope",
        description="The scope: the organisation (no site, station or token), a site, a station, or an id "
        "token or group token (optionally narrowed to a site or station). A scope holds one tariff: posting "
        "to a scope that has one replaces it (201 with the assignment). Precedence when a session starts, "
        "most specific first: the token (at the station, the site, anywhere), its group (likewise), the "
        "station, the site, the organisation. The tariff, site, station and token must be of one "
        "organisation where you hold the manage right (404 for what you cannot see).",
        request=TariffAssignmentInputSerializer,
        responses={201: TariffAssignmentOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def post(self, request):
        serializer = TariffAssignmentInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        user = request.user
        tariff = tariff_access(user=user, pk=data["tariff"], capability=Capability.MANAGE)
        site = station = token = None
        if data["site"] is not None:
            site = site_access(user=user, pk=data["site"], capability=Capability.MANAGE)
        if data["station"] is not None:
            station = station_access(
                user=user, identity=data["station"], capability=Capability.MANAGE, with_points=False
            )
        if data["id_token_group"] is not None:
            token = id_token_access(user=user, pk=data["id_token_group"], capability=Capability.MANAGE)
        assignment = tariff_assign(tariff=tariff, site=site, station=station, id_token_group=token, user=user)
        return Response(TariffAssignmentOutputSerializer(assignment).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=TAGS)
class TariffAssignmentDetailApi(APIView):
    @extend_schema(
        operation_id="tariff_assignments_retrieve",
        responses={200: TariffAssignmentOutputSerializer, 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        return Response(TariffAssignmentOutputSerializer(assignment_access(user=request.user, pk=pk)).data)

    @extend_schema(
        operation_id="tariff_assignments_destroy",
        description="The scope falls back to the next one in precedence. Sessions already started keep "
        "the tariff they were snapshotted with.",
        responses={204: None, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def delete(self, request, pk: int):
        assignment = assignment_access(user=request.user, pk=pk, capability=Capability.MANAGE)
        tariff_unassign(assignment=assignment)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- site energy prices ---------------------------------------------------------------------------------


@extend_schema(tags=TAGS)
class SiteEnergyPriceListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="sites_energy_prices_list",
        description="What the site pays for electricity, newest first (each from its valid_from on).",
        responses={200: EnergyPriceOutputSerializer(many=True), 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        site = site_access(user=request.user, pk=pk)
        return paginated_response(
            request=request,
            view=self,
            queryset=energy_price_list(site=site),
            serializer_class=EnergyPriceOutputSerializer,
        )

    @extend_schema(
        operation_id="sites_energy_prices_create",
        description="The site's electricity price from valid_from on (a change is a new price; history "
        "stays). Used for the energy cost of CDRs in the same currency. Needs the manage right on the site.",
        request=EnergyPriceInputSerializer,
        responses={
            201: EnergyPriceOutputSerializer,
            400: BAD_REQUEST,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: OpenApiResponse(ErrorOutputSerializer, description="A price starting at valid_from exists."),
        },
    )
    def post(self, request, pk: int):
        site = site_access(user=request.user, pk=pk, capability=Capability.MANAGE)
        serializer = EnergyPriceInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        price = site_energy_price_create(site=site, data=EnergyPriceInput(**serializer.validated_data))
        return Response(EnergyPriceOutputSerializer(price).data, status=status.HTTP_201_CREATED)


# --- CDRs and credits -----------------------------------------------------------------------------------


@extend_schema(tags=TAGS)
class CdrListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="cdrs_list",
        description="Charge detail records of the sites you see, newest stop first. A CDR is final; "
        "corrections are its credits.",
        parameters=[CdrFilterSerializer],
        responses={200: CdrOutputSerializer(many=True), 400: BAD_REQUEST},
    )
    def get(self, request):
        filters = CdrFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        cdrs = cdr_list(user=request.user, filters=filters.validated_data)
        return paginated_response(
            request=request, view=self, queryset=cdrs, serializer_class=CdrOutputSerializer
        )


@extend_schema(tags=TAGS)
class CdrDetailApi(APIView):
    @extend_schema(
        operation_id="cdrs_retrieve",
        description="The CDR with its priced lines, its credits and what it nets to.",
        responses={200: CdrDetailOutputSerializer, 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        cdr = cdr_access(user=request.user, pk=pk)
        # Read by CdrDetailOutputSerializer from the instance; not a model field.
        cdr.credit_totals = cdr_credit_totals(cdr=cdr)  # type: ignore[attr-defined]
        return Response(CdrDetailOutputSerializer(cdr).data)


@extend_schema(tags=TAGS)
class CdrCreditListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="cdrs_credits_list",
        description="The CDR's credits, oldest first.",
        responses={200: CdrCreditOutputSerializer(many=True), 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        cdr = cdr_access(user=request.user, pk=pk)
        return paginated_response(
            request=request,
            view=self,
            queryset=credit_list(cdr=cdr),
            serializer_class=CdrCreditOutputSerializer,
        )

    @extend_schema(
        operation_id="cdrs_credits_create",
        summary="Credit a CDR",
        description="A correction: negative subtotal, tax at the CDR's rate and total. The credits of a CDR "
        "never exceed it; the credit that brings it to zero takes exactly the tax left. Needs the billing "
        "right on the CDR's organisation (operator admins, finance).",
        request=CdrCreditInputSerializer,
        responses={
            201: CdrCreditOutputSerializer,
            400: BAD_REQUEST,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: OpenApiResponse(ErrorOutputSerializer, description="The CDR is fully credited."),
        },
    )
    def post(self, request, pk: int):
        cdr = cdr_access(user=request.user, pk=pk, capability=Capability.BILLING)
        serializer = CdrCreditInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        credit = cdr_credit_create(cdr=cdr, user=request.user, **serializer.validated_data)
        return Response(CdrCreditOutputSerializer(credit).data, status=status.HTTP_201_CREATED)


# --- the cost of a session ------------------------------------------------------------------------------


def _lines(lines) -> list[dict]:
    return [
        {
            "position": position,
            "dimension": str(line.dimension),
            "element_index": line.element_index,
            "quantity": line.quantity,
            "used_quantity": line.used_quantity,
            "unit": line.unit,
            "unit_price": line.unit_price,
            "amount": line.amount,
        }
        for position, line in enumerate(lines, start=1)
    ]


def _session_cost(session: ChargingSession) -> dict[str, Any]:
    body: dict[str, Any] = {
        "session": session.pk,
        "cdr": None,
        "currency": None,
        "subtotal": None,
        "tax": None,
        "total": None,
        "net_total": None,
        "lines": [],
        "as_of": None,
    }
    cdr = session_cdr_get(session=session)
    if cdr is not None:
        return {
            **body,
            "state": CostState.BILLED,
            "cdr": cdr.pk,
            "currency": cdr.currency,
            "subtotal": cdr.subtotal,
            "tax": cdr.tax,
            "total": cdr.total,
            "net_total": cdr_credit_totals(cdr=cdr)["net_total"],
            "lines": _lines(cdr.lines.all()),
            "as_of": cdr.stopped_at,
        }
    if session.status != SessionStatus.ACTIVE:
        return {**body, "state": CostState.PENDING}
    result = session_cost_so_far(session=session)
    if result is None:
        return {**body, "state": CostState.RUNNING}
    return {
        **body,
        "state": CostState.RUNNING,
        "currency": result.currency,
        "subtotal": result.subtotal,
        "tax": result.tax,
        "total": result.total,
        "lines": _lines(result.lines),
        "as_of": session.meter_last_at,
    }


@extend_schema(tags=TAGS)
class SessionCostApi(APIView):
    @extend_schema(
        operation_id="sessions_cost_retrieve",
        summary="What a session costs",
        description="Active: its cost so far under the tariff snapshotted at its start, up to the last "
        "energy reading (the tariff's minimum price is not applied yet). Billed: the CDR's figures. Ended "
        "and not billed yet (queued or held for review): no figures.",
        responses={200: SessionCostOutputSerializer, 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        session = session_access(user=request.user, pk=pk)
        return Response(SessionCostOutputSerializer(_session_cost(session)).data)
