"""REST API of a site's access rule ("who may charge here"): read it (anyone who sees the site), replace it
(the pricing right on the site: operator admins and staff, site hosts granted `stations.change_site`).

A site the user cannot see is a 404 (`site_access`); a visible one without the right a 403."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from cpms.api import BAD_REQUEST, FORBIDDEN, NOT_FOUND, StrictInputSerializer
from sessions.services.site_access import SiteAccessRules, site_access_rules_get, site_access_rules_set
from stations.models import SiteAccessMode
from stations.selectors import site_access

TAGS = ["sites"]


class SiteAccessRulesInputSerializer(StrictInputSerializer):
    mode = serializers.ChoiceField(
        choices=SiteAccessMode.choices,
        help_text="public: every id token the organisation accepts; restricted: the allowed groups only.",
    )
    groups = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        allow_empty=True,
        max_length=1000,
        help_text="Ids of group id tokens (tokens with members) of the site's organisation. A member of a "
        "group may charge too. Kept, but not applied, while the site is public.",
    )


class SiteAccessRulesOutputSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=SiteAccessMode.choices, read_only=True)
    groups = serializers.ListField(
        child=serializers.IntegerField(), read_only=True, help_text="Ids of the allowed group id tokens."
    )


def _out(rules: SiteAccessRules) -> dict:
    return SiteAccessRulesOutputSerializer({"mode": rules.mode, "groups": list(rules.group_ids)}).data


@extend_schema(tags=TAGS)
class SiteAccessRulesApi(APIView):
    @extend_schema(
        operation_id="sites_access_rules_retrieve",
        summary="Who may charge at the site",
        responses={200: SiteAccessRulesOutputSerializer, 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        site = site_access(user=request.user, pk=pk)
        return Response(_out(site_access_rules_get(site=site)))

    @extend_schema(
        operation_id="sites_access_rules_update",
        summary="Replace who may charge at the site",
        description="A restricted site needs at least one group. Enforced at the next authorisation; a "
        "charger's local authorisation list may still accept a token offline until its next synchronisation. "
        "Needs the pricing right on the site. Audited.",
        request=SiteAccessRulesInputSerializer,
        responses={200: SiteAccessRulesOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def put(self, request, pk: int):
        site = site_access(user=request.user, pk=pk)
        serializer = SiteAccessRulesInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rules = site_access_rules_set(
            actor=request.user,
            site=site,
            mode=serializer.validated_data["mode"],
            group_ids=serializer.validated_data["groups"],
            request=request,
        )
        return Response(_out(rules))
