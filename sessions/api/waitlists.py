"""REST API of site waitlists: a site's queue (list, join), one entry (read, leave).

Scoped like the portal: a site the user cannot see is a 404 (`site_access`), an entry outside their sites too
(`waitlist_entry_access`); joining and leaving need the command right on the site (403)."""

from typing import cast

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.pagination import BasePagination
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.enums import Capability
from cpms.api import (
    BAD_REQUEST,
    FORBIDDEN,
    NOT_FOUND,
    ErrorOutputSerializer,
    StrictInputSerializer,
)
from sessions.models import WaitlistEntry, WaitlistStatus
from sessions.selectors import waitlist_entry_access, waitlist_entry_list, waitlist_positions
from sessions.services.waitlists import waitlist_join, waitlist_leave
from stations.enums import CommandSource
from stations.selectors import site_access

TAGS = ["waitlists"]


@extend_schema_field(
    {
        "oneOf": [{"type": "integer"}, {"type": "string", "minLength": 1, "maxLength": 255}],
        "description": "The id token the driver will charge with: its id (integer) or its value (string), "
        "of the site's organisation.",
    }
)
class IdTokenReferenceField(serializers.Field):
    default_error_messages = {"invalid": "An id token id (integer) or value (non-empty string)."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | str) or data == "":
            self.fail("invalid")
        if isinstance(data, str) and len(data) > 255:
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return value


class WaitlistJoinInputSerializer(StrictInputSerializer):
    id_token = IdTokenReferenceField()
    contact_email = serializers.EmailField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Where the offer is emailed. Empty: the token's owner email.",
    )


class WaitlistFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=WaitlistStatus.choices, required=False)
    open = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="true: waiting or offered only."
    )


class WaitlistEntryOutputSerializer(serializers.ModelSerializer):
    site = serializers.IntegerField(source="site_id", read_only=True)
    id_token = serializers.IntegerField(source="id_token_id", read_only=True)
    id_tag = serializers.CharField(source="id_token.value", read_only=True, help_text="The token's value.")
    position = serializers.SerializerMethodField(
        help_text="Place in line (1: next) while waiting, else null."
    )
    offered_station = serializers.CharField(
        source="offered_station.identity", read_only=True, allow_null=True, help_text="Station identity."
    )
    offered_evse_id = serializers.IntegerField(
        source="offered_evse.evse_id", read_only=True, allow_null=True, help_text="OCPP EVSE number."
    )
    offered_connector_id = serializers.IntegerField(
        source="offered_connector.connector_id", read_only=True, allow_null=True
    )
    reservation = serializers.IntegerField(
        source="reservation_id",
        read_only=True,
        allow_null=True,
        help_text="The OCPP reservation made for the offer, where the charger supports them.",
    )
    reservation_status = serializers.CharField(
        source="reservation.status", read_only=True, allow_null=True, help_text="Its status."
    )

    class Meta:
        model = WaitlistEntry
        fields = [
            "id",
            "site",
            "id_token",
            "id_tag",
            "contact_email",
            "status",
            "position",
            "joined_at",
            "offered_at",
            "offer_expires_at",
            "offered_station",
            "offered_evse_id",
            "offered_connector_id",
            "reservation",
            "reservation_status",
            "notified_at",
            "closed_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.INT)
    def get_position(self, entry: WaitlistEntry) -> int | None:
        return self.context.get("positions", {}).get(entry.pk)


@extend_schema(tags=TAGS)
class SiteWaitlistApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="sites_waitlist_list",
        description="The site's waitlist entries in queue order (joined_at, id), closed ones included unless "
        "filtered out; `position` is each waiting entry's place in line.",
        parameters=[WaitlistFilterSerializer],
        responses={200: WaitlistEntryOutputSerializer(many=True), 400: BAD_REQUEST, 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        site = site_access(user=request.user, pk=pk)
        filters = WaitlistFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = {key: value for key, value in filters.validated_data.items() if value is not None}
        entries = waitlist_entry_list(user=request.user, site=site, filters=data)
        # The setting, once api_settings imported it: a pagination class (the stubs type it as its text).
        paginator = cast(type[BasePagination], self.pagination_class)()
        page = paginator.paginate_queryset(entries, request, view=self)
        context = {"positions": waitlist_positions(site_id=site.pk)}
        return paginator.get_paginated_response(
            WaitlistEntryOutputSerializer(page, many=True, context=context).data
        )

    @extend_schema(
        operation_id="sites_waitlist_join",
        summary="Put a driver at the end of the site's waitlist",
        description="When a connector of the site frees up, the first in line is offered it for "
        "WAITLIST_HOLD_S seconds (reserved on the charger where it supports reservations) and emailed. The "
        "token must be of the site's organisation and Accepted. Needs the command right on the site.",
        request=WaitlistJoinInputSerializer,
        responses={
            201: WaitlistEntryOutputSerializer,
            400: BAD_REQUEST,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: OpenApiResponse(
                ErrorOutputSerializer, description="The token is already waiting or offered at this site."
            ),
        },
    )
    def post(self, request, pk: int):
        site = site_access(user=request.user, pk=pk)
        serializer = WaitlistJoinInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        entry = waitlist_join(actor=request.user, site=site, **serializer.validated_data)
        context = {"positions": waitlist_positions(site_id=site.pk)}
        return Response(
            WaitlistEntryOutputSerializer(entry, context=context).data, status=status.HTTP_201_CREATED
        )


@extend_schema(tags=TAGS)
class WaitlistEntryDetailApi(APIView):
    @extend_schema(
        operation_id="waitlist_entries_retrieve",
        responses={200: WaitlistEntryOutputSerializer, 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        entry = waitlist_entry_access(user=request.user, pk=pk)
        context = {"positions": waitlist_positions(site_id=entry.site_id)}
        return Response(WaitlistEntryOutputSerializer(entry, context=context).data)

    @extend_schema(
        operation_id="waitlist_entries_leave",
        summary="Take a driver out of the waitlist",
        description="The entry becomes `cancelled`; an offer's reservation is cancelled on the charger "
        "(CancelReservation; if that fails it runs out at the offer's end). Answers the entry as it is now. "
        "Only waiting or offered entries can leave (409). Needs the command right on the site.",
        request=None,
        responses={
            200: WaitlistEntryOutputSerializer,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: OpenApiResponse(ErrorOutputSerializer, description="The entry is no longer in the queue."),
        },
    )
    def delete(self, request, pk: int):
        entry = waitlist_entry_access(user=request.user, pk=pk, capability=Capability.COMMAND)
        entry = waitlist_leave(
            actor=request.user, entry=entry, cancel_reservation=True, source=CommandSource.API
        )
        return Response(WaitlistEntryOutputSerializer(entry, context={"positions": {}}).data)
