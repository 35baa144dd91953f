"""Reads of id tokens and charging sessions, always through the user's scope (accounts.selectors).

Id tokens are organisation-wide: only organisation-wide roles see them, site hosts see none. Sessions follow
their station (its organisation, or a site host's sites). `*_access` raises NotFound for an object outside
the view scope and PermissionDenied for a visible object the user lacks `capability` on.
"""

from collections.abc import Mapping
from typing import Any

import django_filters
from django.db.models import Q, QuerySet

from accounts.enums import Capability
from accounts.models import User
from accounts.selectors import organisation_ids_with, station_scope_q, user_can
from cpms.errors import NotFound, PermissionDenied
from cpms.filters import filters_apply
from sessions.enums import IdTokenStatus, IdTokenType, SessionStatus
from sessions.models import ChargingSession, IdToken


def id_token_scope_q(*, user: User, capability: str = Capability.VIEW, prefix: str = "") -> Q:
    if user.is_superuser:
        return Q()
    return Q(**{f"{prefix}organisation_id__in": organisation_ids_with(user=user, capability=capability)})


class IdTokenFilter(django_filters.FilterSet):
    organisation = django_filters.NumberFilter(field_name="organisation_id")
    status = django_filters.ChoiceFilter(choices=IdTokenStatus.choices)
    type = django_filters.ChoiceFilter(choices=IdTokenType.choices)
    value = django_filters.CharFilter(field_name="value")

    class Meta:
        model = IdToken
        fields = ["organisation", "status", "type", "value"]


class SessionFilter(django_filters.FilterSet):
    station = django_filters.CharFilter(field_name="station__identity")
    site = django_filters.NumberFilter(field_name="station__site_id")
    started_after = django_filters.IsoDateTimeFilter(field_name="started_at", lookup_expr="gte")
    started_before = django_filters.IsoDateTimeFilter(field_name="started_at", lookup_expr="lt")
    status = django_filters.ChoiceFilter(choices=SessionStatus.choices)

    class Meta:
        model = ChargingSession
        fields = ["station", "site", "started_after", "started_before", "status"]


def id_token_list(*, user: User, filters: Mapping[str, Any] | None = None) -> QuerySet[IdToken]:
    qs = IdToken.objects.filter(id_token_scope_q(user=user)).select_related("organisation")
    return filters_apply(IdTokenFilter, filters, qs)


def id_token_access(*, user: User, pk: int, capability: str = Capability.VIEW) -> IdToken:
    token = IdToken.objects.filter(id_token_scope_q(user=user)).filter(pk=pk).first()
    if token is None:
        raise NotFound(f"Id token {pk} not found.")
    if capability != Capability.VIEW and not user_can(
        user=user, capability=capability, organisation_id=token.organisation_id
    ):
        raise PermissionDenied(f"You may not {capability} id token {token.pk}.")
    return token


def _session_qs() -> QuerySet[ChargingSession]:
    return ChargingSession.objects.select_related("station", "evse", "connector")


def session_list(*, user: User, filters: Mapping[str, Any] | None = None) -> QuerySet[ChargingSession]:
    qs = _session_qs().filter(station_scope_q(user=user, prefix="station__"))
    return filters_apply(SessionFilter, filters, qs)


def session_access(*, user: User, pk: int) -> ChargingSession:
    session = _session_qs().filter(station_scope_q(user=user, prefix="station__")).filter(pk=pk).first()
    if session is None:
        raise NotFound(f"Session {pk} not found.")
    return session
