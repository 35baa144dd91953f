"""Reads of id tokens and charging sessions, always through the user's scope (accounts.selectors).

Id tokens are organisation-wide: only organisation-wide roles see them, site hosts see none. Sessions,
session anomalies, reservations and local authorisation lists follow their station (its organisation, or a site host's sites); a session's meter values
and transaction events are read per session, after `session_access` checked the scope. `*_access` raises NotFound for an object outside
the view scope and PermissionDenied for a visible object the user lacks `capability` on.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import django_filters
from django.db.models import Q, QuerySet

from accounts.enums import Capability
from accounts.models import User
from accounts.selectors import organisation_ids_with, station_scope_q, user_can
from cpms.errors import NotFound, PermissionDenied
from cpms.filters import filters_apply
from sessions.enums import (
    ENERGY_REGISTER,
    UNIT_TO_WH,
    AnomalyKind,
    IdTokenStatus,
    IdTokenType,
    ReservationStatus,
    SessionStatus,
)
from sessions.models import (
    ChargingSession,
    IdToken,
    LocalListEntry,
    LocalListState,
    MeterValue,
    Reservation,
    SessionAnomaly,
    TransactionEvent,
)
from stations.models import ChargingStation


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


class ReservationFilter(django_filters.FilterSet):
    station = django_filters.CharFilter(field_name="station__identity")
    status = django_filters.ChoiceFilter(choices=ReservationStatus.choices)
    id_token = django_filters.NumberFilter(field_name="id_token_id")

    class Meta:
        model = Reservation
        fields = ["station", "status", "id_token"]


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


def _id_token_qs() -> QuerySet[IdToken]:
    return IdToken.objects.select_related("organisation").prefetch_related(
        "allowed_sites", "allowed_stations"
    )


def id_token_list(*, user: User, filters: Mapping[str, Any] | None = None) -> QuerySet[IdToken]:
    qs = _id_token_qs().filter(id_token_scope_q(user=user))
    return filters_apply(IdTokenFilter, filters, qs)


def id_token_access(*, user: User, pk: int, capability: str = Capability.VIEW) -> IdToken:
    token = _id_token_qs().filter(id_token_scope_q(user=user)).filter(pk=pk).first()
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


# --- reservations and local lists -------------------------------------------------------------------


def _reservation_qs() -> QuerySet[Reservation]:
    return Reservation.objects.select_related("station", "evse", "connector", "id_token", "command")


def reservation_list(*, user: User, filters: Mapping[str, Any] | None = None) -> QuerySet[Reservation]:
    """Reservations at the stations the user sees, newest first."""
    qs = (
        _reservation_qs()
        .filter(station_scope_q(user=user, prefix="station__"))
        .order_by("-created_at", "-id")
    )
    return filters_apply(ReservationFilter, filters, qs)


def reservation_access(*, user: User, pk: int, capability: str = Capability.VIEW) -> Reservation:
    reservation = (
        _reservation_qs().filter(station_scope_q(user=user, prefix="station__")).filter(pk=pk).first()
    )
    if reservation is None:
        raise NotFound(f"Reservation {pk} not found.")
    station = reservation.station
    if capability != Capability.VIEW and not user_can(
        user=user, capability=capability, organisation_id=station.organisation_id, site_id=station.site_id
    ):
        raise PermissionDenied(f"You may not {capability} reservation {reservation.pk}.")
    return reservation


def local_list_state_get(*, station: ChargingStation) -> LocalListState:
    """The station's local list state as last confirmed; an unsaved, empty one (version 0) if we never sent
    it a list. The caller checked access to the station."""
    return LocalListState.objects.filter(station=station).first() or LocalListState(station=station)


def local_list_entry_list(*, station: ChargingStation) -> QuerySet[LocalListEntry]:
    """What the station holds in its local list (as of its last accepted update), by token value."""
    return (
        LocalListEntry.objects.filter(station=station).select_related("id_token").order_by("id_token__value")
    )


def session_energy_readings(*, session: ChargingSession) -> list[tuple[datetime, int]]:
    """The session's energy-register readings `(timestamp, Wh)` in time order, as the charger sampled them
    (Energy.Active.Import.Register, no phase, Wh or kWh; others skipped). What billing builds usage from."""
    rows = (
        MeterValue.objects.filter(
            session=session,
            measurand=ENERGY_REGISTER,
            phase="",
            value__isnull=False,
            unit__in=list(UNIT_TO_WH),
        )
        .order_by("timestamp", "id")
        .values_list("timestamp", "value", "unit")
    )
    return [(timestamp, int(value * UNIT_TO_WH[unit])) for timestamp, value, unit in rows]
