"""Roaming (OCPI 2.2.1) for the operator over the REST API: its CPO party per organisation, its partners (a
new one gets a token A to register with, or we register with a partner's), their settings, the credentials
actions, "sync now" and the outbox.

Scope (cpms.ocpi.selectors): the operator admins and staff of the party's organisation; every other role,
and other organisations, get empty lists and 404. Errors of the OCPI services (a partner that refused, a
registration in the wrong state) are answered 400/409 with their message.
"""

import contextlib
from collections.abc import Iterator

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from cpms.api import BAD_REQUEST, FORBIDDEN, NOT_FOUND, ErrorOutputSerializer, paginated_response
from cpms.errors import Conflict, NotFound, ValidationFailed
from cpms.ocpi.api.serializers import (
    OutboxItemOutputSerializer,
    OutboxOutputSerializer,
    OutboxSummarySerializer,
    PartnerCreatedOutputSerializer,
    PartnerCreateInputSerializer,
    PartnerOutputSerializer,
    PartnerRegisterInputSerializer,
    PartnerUpdateInputSerializer,
    PartyInputSerializer,
    PartyOutputSerializer,
    RetryRefusedOutputSerializer,
    SyncOutputSerializer,
    TokenAOutputSerializer,
)
from cpms.ocpi.protocol import OcpiError
from cpms.ocpi.selectors import (
    partner_access,
    partner_list,
    partner_outbox_items,
    partner_outbox_summary,
    party_for_input,
    party_list,
    roaming_organisation_access,
)
from cpms.ocpi.services.credentials import (
    partner_create,
    partner_credentials_rotate,
    partner_register,
    partner_suspend,
    partner_token_a_renew,
    partner_unregister,
    versions_url,
)
from cpms.ocpi.services.outbox import outbox_retry_refused
from cpms.ocpi.services.partners import partner_sync, partner_update, party_create
from stations.scope import organisation_site_list

TAGS = ["roaming"]
CONFLICT = OpenApiResponse(ErrorOutputSerializer, description="Not possible in the partner's current status.")
REFUSED = OpenApiResponse(
    ErrorOutputSerializer,
    description="The partner's platform could not be used, or refused (the message says).",
)


@contextlib.contextmanager
def ocpi_errors_as_api() -> Iterator[None]:
    """An OcpiError of the credentials services as the API's domain errors: a state that forbids the action
    (OCPI answers 405 or 409 there) is a 409, anything else (the partner's platform refused or could not be
    read) a 400 with the message."""
    try:
        yield
    except OcpiError as exc:
        if exc.http_status in (405, 409):
            raise Conflict(exc.message) from exc
        raise ValidationFailed(exc.message) from exc


def _base_url(request) -> str:
    """Our versions URL comes from OCPI_BASE_URL or PUBLIC_BASE_URL; this request's address otherwise."""
    return request.build_absolute_uri("/")


def _partner_output(request, pk: int) -> Response:
    """The partner as it is now (its status and outbox counts read again after an action)."""
    return Response(PartnerOutputSerializer(partner_access(user=request.user, pk=pk)).data)


PARTY_FILTER = OpenApiParameter("party", int, description="Only this party's partners.")


# --- parties ---------------------------------------------------------------------------------------------


@extend_schema(tags=TAGS)
class RoamingPartyListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="roaming_parties_list",
        description="Our CPO parties (one per organisation) in the organisations you manage.",
        responses={200: PartyOutputSerializer(many=True)},
    )
    def get(self, request):
        return paginated_response(
            request=request,
            view=self,
            queryset=party_list(user=request.user),
            serializer_class=PartyOutputSerializer,
        )

    @extend_schema(
        operation_id="roaming_parties_create",
        summary="Create an organisation's CPO party",
        description="The identity partners know the organisation by: a country code and a party id "
        "(upper-cased) no other organisation uses. One per organisation: a second is refused (400). "
        "Operator admins and staff (the manage right) only.",
        request=PartyInputSerializer,
        responses={201: PartyOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN},
    )
    def post(self, request):
        serializer = PartyInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        organisation = roaming_organisation_access(user=request.user, pk=data.pop("organisation"))
        party = party_create(organisation=organisation, actor=request.user, **data)
        return Response(PartyOutputSerializer(party).data, status=status.HTTP_201_CREATED)


# --- partners --------------------------------------------------------------------------------------------


@extend_schema(tags=TAGS)
class RoamingPartnerListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="roaming_partners_list",
        description="The partners of the parties you manage, with their status, roles and outbox counts.",
        parameters=[PARTY_FILTER],
        responses={200: PartnerOutputSerializer(many=True), 400: BAD_REQUEST},
    )
    def get(self, request):
        party = None
        if "party" in request.query_params:
            field = serializers.IntegerField()
            try:
                party_pk = field.run_validation(request.query_params["party"])
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"party": exc.detail}) from exc
            party = party_for_input(user=request.user, pk=party_pk)
        return paginated_response(
            request=request,
            view=self,
            queryset=partner_list(user=request.user, party=party),
            serializer_class=PartnerOutputSerializer,
        )

    @extend_schema(
        operation_id="roaming_partners_create",
        summary="Create a partner registration",
        description="A partner registration in PENDING with its credentials token A, shown only in this "
        "answer, and our versions URL: hand both to the partner, which registers with our credentials "
        "module. (To register with a partner's platform instead, create it and POST .../register/.)",
        request=PartnerCreateInputSerializer,
        responses={201: PartnerCreatedOutputSerializer, 400: BAD_REQUEST},
    )
    def post(self, request):
        serializer = PartnerCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        party = party_for_input(user=request.user, pk=serializer.validated_data["party"])
        created, token_a = partner_create(
            party=party, name=serializer.validated_data["name"], actor=request.user
        )
        partner = partner_access(user=request.user, pk=created.pk)
        # Shown once, in this answer only: only the token's hash is kept.
        partner.token_a = token_a
        partner.our_versions_url = versions_url(_base_url(request))
        return Response(PartnerCreatedOutputSerializer(partner).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=TAGS)
class RoamingPartnerDetailApi(APIView):
    @extend_schema(
        operation_id="roaming_partners_retrieve",
        responses={200: PartnerOutputSerializer, 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        return _partner_output(request, pk)

    @extend_schema(
        operation_id="roaming_partners_partial_update",
        summary="Change a partner's settings",
        description="Name, real-time authorisation fallback, charging profiles, and what we publish to it "
        "(every site, or the listed sites of the party's organisation). A change of what is published "
        "queues every published location and tariff to a registered partner at once.",
        request=PartnerUpdateInputSerializer,
        responses={200: PartnerOutputSerializer, 400: BAD_REQUEST, 404: NOT_FOUND},
    )
    def patch(self, request, pk: int):
        partner = partner_access(user=request.user, pk=pk)
        serializer = PartnerUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if "published_sites" in data:
            try:
                data["published_sites"] = organisation_site_list(
                    organisation=partner.party.organisation, sites=data["published_sites"]
                )
            except NotFound as exc:
                raise ValidationFailed(f"published_sites: {exc.message}") from exc
        partner_update(partner=partner, actor=request.user, **data)
        return _partner_output(request, pk)


# --- credentials actions ---------------------------------------------------------------------------------


@extend_schema(tags=TAGS)
class RoamingPartnerRegisterApi(APIView):
    @extend_schema(
        operation_id="roaming_partners_register",
        summary="Register with a partner's platform",
        description="With the versions URL and token A the partner gave us: we read its 2.2.1 endpoints, "
        "send our credentials with a new token B and keep the token C it answers with. The token A is not "
        "stored.",
        request=PartnerRegisterInputSerializer,
        responses={200: PartnerOutputSerializer, 400: REFUSED, 404: NOT_FOUND, 409: CONFLICT},
    )
    def post(self, request, pk: int):
        partner = partner_access(user=request.user, pk=pk)
        serializer = PartnerRegisterInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with ocpi_errors_as_api():
            partner_register(
                partner=partner,
                versions_url_=serializer.validated_data["versions_url"],
                token_a=serializer.validated_data["token_a"],
                base_url=_base_url(request),
                actor=request.user,
            )
        return _partner_output(request, pk)


@extend_schema(tags=TAGS)
class RoamingPartnerRotateApi(APIView):
    @extend_schema(
        operation_id="roaming_partners_rotate",
        summary="Rotate a registered partner's credentials",
        description="New tokens both ways (OCPI 2.2.1 7.2.3 PUT to the partner's credentials).",
        request=None,
        responses={200: PartnerOutputSerializer, 400: REFUSED, 404: NOT_FOUND, 409: CONFLICT},
    )
    def post(self, request, pk: int):
        partner = partner_access(user=request.user, pk=pk)
        with ocpi_errors_as_api():
            partner_credentials_rotate(partner=partner, base_url=_base_url(request), actor=request.user)
        return _partner_output(request, pk)


@extend_schema(tags=TAGS)
class RoamingPartnerSuspendApi(APIView):
    @extend_schema(
        operation_id="roaming_partners_suspend",
        summary="Suspend a registered partner",
        description="Its token is refused and nothing is sent to it; its outbox keeps filling.",
        request=None,
        responses={200: PartnerOutputSerializer, 404: NOT_FOUND, 409: CONFLICT},
    )
    def post(self, request, pk: int):
        partner = partner_access(user=request.user, pk=pk)
        with ocpi_errors_as_api():
            partner_suspend(partner=partner, suspended=True, actor=request.user)
        return _partner_output(request, pk)


@extend_schema(tags=TAGS)
class RoamingPartnerResumeApi(APIView):
    @extend_schema(
        operation_id="roaming_partners_resume",
        summary="Resume a suspended partner",
        description="Registered again: its token works and its outbox is delivered.",
        request=None,
        responses={200: PartnerOutputSerializer, 404: NOT_FOUND, 409: CONFLICT},
    )
    def post(self, request, pk: int):
        partner = partner_access(user=request.user, pk=pk)
        with ocpi_errors_as_api():
            partner_suspend(partner=partner, suspended=False, actor=request.user)
        return _partner_output(request, pk)


@extend_schema(tags=TAGS)
class RoamingPartnerUnregisterApi(APIView):
    @extend_schema(
        operation_id="roaming_partners_unregister",
        summary="End a partner's registration",
        description="DELETE on the partner's credentials (best effort), then its token stops working here "
        "and nothing more is sent. A new token A (token-a/) lets it register again.",
        request=None,
        responses={200: PartnerOutputSerializer, 404: NOT_FOUND},
    )
    def post(self, request, pk: int):
        partner = partner_access(user=request.user, pk=pk)
        with ocpi_errors_as_api():
            partner_unregister(partner=partner, actor=request.user)
        return _partner_output(request, pk)


@extend_schema(tags=TAGS)
class RoamingPartnerTokenAApi(APIView):
    @extend_schema(
        operation_id="roaming_partners_token_a_renew",
        summary="Issue a new token A",
        description="For a partner that is not registered: the old token A stops working; the new one is "
        "shown only in this answer.",
        request=None,
        responses={200: TokenAOutputSerializer, 400: BAD_REQUEST, 404: NOT_FOUND},
    )
    def post(self, request, pk: int):
        partner = partner_access(user=request.user, pk=pk)
        with ocpi_errors_as_api():
            token_a = partner_token_a_renew(partner=partner, actor=request.user)
        return Response({"token_a": token_a, "versions_url": versions_url(_base_url(request))})


# --- pushes ----------------------------------------------------------------------------------------------


@extend_schema(tags=TAGS)
class RoamingPartnerSyncApi(APIView):
    @extend_schema(
        operation_id="roaming_partners_sync",
        summary="Sync now",
        description="Queues a PUT of every location and tariff published to the partner (delivered by the "
        "outbox after what is already queued). Registered partners only.",
        request=None,
        responses={200: SyncOutputSerializer, 404: NOT_FOUND, 409: CONFLICT},
    )
    def post(self, request, pk: int):
        partner = partner_access(user=request.user, pk=pk)
        result = partner_sync(partner=partner, actor=request.user)
        return Response(SyncOutputSerializer(result).data)


@extend_schema(tags=TAGS)
class RoamingPartnerRetryRefusedApi(APIView):
    @extend_schema(
        operation_id="roaming_partners_retry_refused",
        summary="Retry refused pushes",
        description="Puts the pushes the partner refused back in the queue (after the cause was fixed).",
        request=None,
        responses={200: RetryRefusedOutputSerializer, 404: NOT_FOUND},
    )
    def post(self, request, pk: int):
        partner = partner_access(user=request.user, pk=pk)
        return Response({"requeued": outbox_retry_refused(partner=partner)})


@extend_schema(tags=TAGS)
class RoamingPartnerOutboxApi(APIView):
    @extend_schema(
        operation_id="roaming_partners_outbox",
        description="The partner's outbox: backlog, oldest pending, refused, delivered, last success and "
        "error, and the latest items (newest first, without their bodies), paginated.",
        parameters=[
            OpenApiParameter("limit", int, description="Items per page."),
            OpenApiParameter("offset", int, description="Items to skip."),
        ],
        responses={200: OutboxOutputSerializer, 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        partner = partner_access(user=request.user, pk=pk)
        paginator = LimitOffsetPagination()
        items = paginator.paginate_queryset(partner_outbox_items(partner=partner), request, view=self)
        return Response(
            {
                "summary": OutboxSummarySerializer(partner_outbox_summary(partner=partner)).data,
                "count": paginator.count,
                "next": paginator.get_next_link(),
                "previous": paginator.get_previous_link(),
                "results": OutboxItemOutputSerializer(items, many=True).data,
            }
        )
