"""REST API for user management (operator admins): list, invite, change a role, a site host's sites or
whether a user may log in. Here rather than in accounts.api because a site host's grants are on sites
(stations.services.site_hosts); the URLs are the same /api/v1/users/ as the rest of the API."""

from typing import Any

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.api.serializers import (
    UserInviteInputSerializer,
    UserOutputSerializer,
    UserUpdateInputSerializer,
)
from accounts.enums import Capability, Role
from accounts.models import Membership, User
from accounts.selectors import organisation_access, organisation_user_access, organisation_user_list
from accounts.services import user_activate, user_deactivate
from cpms.api import BAD_REQUEST, FORBIDDEN, NOT_FOUND
from cpms.errors import NotFound, ValidationFailed
from stations.scope import user_site_grants
from stations.services.site_hosts import user_invite, user_role_set, user_site_grants_set


def _managed_memberships(member: User) -> list[Membership]:
    """The memberships organisation_user_list prefetched (to_attr: not a declared attribute of User)."""
    return member.managed_memberships  # type: ignore[attr-defined]


def _user_data(member: User) -> dict[str, Any]:
    memberships = []
    for membership in _managed_memberships(member):
        sites: list[int] = []
        prices: list[int] = []
        if membership.role == Role.SITE_HOST:
            sites, prices = user_site_grants(user=member, organisation=membership.organisation)
        memberships.append({"membership": membership, "sites": sites, "may_set_prices": prices})
    return UserOutputSerializer(
        {
            "id": member.pk,
            "username": member.username,
            "email": member.email,
            "first_name": member.first_name,
            "last_name": member.last_name,
            "is_active": member.is_active,
            "last_login": member.last_login,
            "invitation_pending": not member.has_usable_password(),
            "memberships": memberships,
        }
    ).data


@extend_schema(tags=["users"])
class UserListApi(APIView):
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema(
        operation_id="users_list",
        description="Users of the organisations where you manage users (operator admins; superusers: all).",
        responses={200: UserOutputSerializer(many=True), 403: FORBIDDEN},
    )
    def get(self, request):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(organisation_user_list(user=request.user), request, view=self)
        return paginator.get_paginated_response([_user_data(member) for member in page])

    @extend_schema(
        operation_id="users_invite",
        description="Invite a user: they get an email with a one-time link to set their password. A site host "
        "needs `sites`; `may_set_prices` lets them set those sites' prices and access rules.",
        request=UserInviteInputSerializer,
        responses={201: UserOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def post(self, request):
        data = UserInviteInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        organisation = organisation_access(
            user=request.user, pk=values["organisation"], capability=Capability.MANAGE_USERS
        )
        invited = user_invite(
            actor=request.user,
            organisation=organisation,
            email=values["email"],
            role=values["role"],
            sites=values["sites"],
            may_set_prices=values["may_set_prices"],
            request=request,
        )
        member = organisation_user_access(user=request.user, pk=invited.pk)
        return Response(_user_data(member), status=status.HTTP_201_CREATED)


@extend_schema(tags=["users"])
class UserDetailApi(APIView):
    @extend_schema(
        operation_id="users_retrieve",
        responses={200: UserOutputSerializer, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def get(self, request, pk: int):
        return Response(_user_data(organisation_user_access(user=request.user, pk=pk)))

    @extend_schema(
        operation_id="users_update",
        description="Change a user's role, site grants (site hosts) or whether they may log in, in one of "
        "the organisations you manage. All or nothing.",
        request=UserUpdateInputSerializer,
        responses={200: UserOutputSerializer, 400: BAD_REQUEST, 403: FORBIDDEN, 404: NOT_FOUND},
    )
    def patch(self, request, pk: int):
        member = organisation_user_access(user=request.user, pk=pk)
        data = UserUpdateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if "organisation" in values:
            membership = next(
                (m for m in _managed_memberships(member) if m.organisation_id == values["organisation"]), None
            )
            if membership is None:
                raise NotFound(f"Organisation {values['organisation']} not found for user {pk}.")
        elif len(_managed_memberships(member)) == 1:
            membership = _managed_memberships(member)[0]
        else:
            raise ValidationFailed(
                "The user belongs to several organisations you manage: give 'organisation'."
            )
        organisation = membership.organisation
        common = {"actor": request.user, "user": member, "organisation": organisation, "request": request}
        with transaction.atomic():
            if "role" in values:
                user_role_set(role=values["role"], **common)
            if "sites" in values or "may_set_prices" in values:
                current, prices = user_site_grants(user=member, organisation=organisation)
                user_site_grants_set(
                    sites=values.get("sites", current),
                    may_set_prices=values.get(
                        "may_set_prices", bool(current) and set(current) <= set(prices)
                    ),
                    **common,
                )
            if values.get("is_active") is False:
                user_deactivate(**common)
            elif values.get("is_active") is True:
                user_activate(**common)
        return Response(_user_data(organisation_user_access(user=request.user, pk=pk)))
