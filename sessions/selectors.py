"""Reads of id tokens and charging sessions, always through the user's scope (accounts.selectors).

Id tokens are organisation-wide: only organisation-wide roles see them, site hosts see none. Sessions and
session anomalies follow their station (its organisation, or a site host's sites); a session's meter values
and transaction events are read per session, after `session_access` checked the scope. `*_access` raises NotFound for an object outside
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
from sessions.enums import AnomalyKind, IdTokenStatus, IdTokenType, SessionStatus
from sessions.models import ChargingSession, IdToken, MeterValue, SessionAnomaly, TransactionEvent


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


class MeterValueFilter(django_filters.FilterSet):
    measurand = django_filters.CharFilter(field_name="measurand")

    class Meta:
        model = MeterValue
        fields = ["measurand"]


class SessionAnomalyFilter(django_filters.FilterSet):
    station = django_filters.CharFilter(field_name="station__identity")
    kind = django_filters.ChoiceFilter(choices=AnomalyKind.choices)
    reviewed = django_filters.BooleanFilter(field_name="reviewed")

    class Meta:
        model = SessionAnomaly
        fields = ["station", "kind", "reviewed"]


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


def meter_value_list(
    *, session: ChargingSession, filters: Mapping[str, Any] | None = None
) -> QuerySet[MeterValue]:
    """The session's samples in the order they were taken. Bounded by the session (index session,
    timestamp): counting them for a page is cheap, unlike counting the whole table."""
    qs = MeterValue.objects.filter(session=session).order_by("timestamp", "id")
    return filters_apply(MeterValueFilter, filters, qs)


def transaction_event_list(*, session: ChargingSession) -> QuerySet[TransactionEvent]:
    """The session's 2.0.1 TransactionEvents in seqNo order (none for a 1.6 session)."""
    return TransactionEvent.objects.filter(session=session).order_by("seq_no", "id")


def session_anomaly_list(*, user: User, filters: Mapping[str, Any] | None = None) -> QuerySet[SessionAnomaly]:
    qs = (
        SessionAnomaly.objects.filter(station_scope_q(user=user, prefix="station__"))
        .select_related("station")
        .order_by("-created_at", "-id")
    )
    return filters_apply(SessionAnomalyFilter, filters, qs)
