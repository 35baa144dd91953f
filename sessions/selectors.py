"""Reads of id tokens and charging sessions, always through the user's scope (accounts.selectors).

Id tokens are organisation-wide: only organisation-wide roles see them, site hosts see none. Sessions,
session anomalies, reservations and local authorisation lists follow their station (its organisation, or a site host's sites); a session's meter values
and transaction events are read per session, after `session_access` checked the scope. `*_access` raises NotFound for an object outside
the view scope and PermissionDenied for a visible object the user lacks `capability` on.
"""

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

import django_filters
from django.db.models import Count, Q, QuerySet

from accounts.enums import Capability
from accounts.models import User
from accounts.selectors import organisation_ids_with
from cpms.errors import NotFound, PermissionDenied, ValidationFailed
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
    WAITLIST_OPEN_STATUSES,
    ChargingSession,
    IdToken,
    LocalListEntry,
    LocalListState,
    MeterValue,
    Reservation,
    SessionAnomaly,
    TransactionEvent,
    WaitlistEntry,
    WaitlistStatus,
)
from stations.models import ChargingStation, Site
from stations.scope import site_scope_q, station_scope_q, user_can


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


def session_transaction_id(*, user: User, station: ChargingStation, session_id: int) -> str:
    """The wire transaction id of an active session at this station, to stop it remotely (NotFound for a
    session the user cannot see or of another station)."""
    try:
        session = session_access(user=user, pk=session_id)
    except NotFound:
        session = None
    if session is None or session.station_id != station.pk:
        raise NotFound(f"Session {session_id} not found at station {station.identity!r}.")
    if session.status != SessionStatus.ACTIVE:
        raise ValidationFailed(f"Session {session_id} has already stopped.")
    return session.transaction_id


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
    return [
        (timestamp, int(value * UNIT_TO_WH[unit]))
        for timestamp, value, unit in rows
        if value is not None  # excluded by the query
    ]


# --- portal: sessions by local date, power readings ---------------------------------------------------

POWER_IMPORT = "Power.Active.Import"
_UNIT_TO_W = {"": 1, "W": 1, "kW": 1000}


def session_started_local_q(*, user: User, start: date | None = None, end: date | None = None) -> Q:
    """Sessions started on local dates [start, end) (either may be None), the local date being the one at
    the session's site (UTC for a station without a site), as the exports count them. One range per time
    zone among the sites the user sees: the index on started_at still applies."""
    from datetime import UTC, time
    from zoneinfo import ZoneInfo

    from stations.models import Site
    from stations.scope import site_scope_q

    if start is None and end is None:
        return Q()

    def window(zone_name: str | None) -> Q:
        try:
            zone = ZoneInfo(zone_name) if zone_name else UTC
        except (KeyError, ValueError):
            zone = UTC
        q = Q()
        if start is not None:
            q &= Q(started_at__gte=datetime.combine(start, time(0), zone))
        if end is not None:
            q &= Q(started_at__lt=datetime.combine(end, time(0), zone))
        return q

    zones = set(Site.objects.filter(site_scope_q(user=user)).values_list("time_zone", flat=True))
    q = Q(station__site__isnull=True) & window(None)
    for zone_name in sorted(zones):
        q |= Q(station__site__time_zone=zone_name) & window(zone_name)
    return q


def session_power_readings(*, session: ChargingSession) -> list[tuple[datetime, float]]:
    """The session's active import power `(timestamp, W)` in time order: the phase-less readings
    (Power.Active.Import, W or kW), or, for a charger that reports per phase only, the sum of its phases
    at each instant. The caller checked access to the session."""
    rows = list(
        MeterValue.objects.filter(
            session=session, measurand=POWER_IMPORT, value__isnull=False, unit__in=list(_UNIT_TO_W)
        )
        .order_by("timestamp", "id")
        .values_list("timestamp", "phase", "value", "unit")
    )
    # value__isnull=False in the query: `value is not None` only tells the type checker.
    total = [
        (ts, float(value) * _UNIT_TO_W[unit])
        for ts, phase, value, unit in rows
        if not phase and value is not None
    ]
    if total:
        return total
    by_instant: dict[datetime, float] = {}
    for ts, _phase, value, unit in rows:
        if value is None:
            continue
        by_instant[ts] = by_instant.get(ts, 0.0) + float(value) * _UNIT_TO_W[unit]
    return sorted(by_instant.items())


# --- waitlists ----------------------------------------------------------------------------------------


class WaitlistEntryFilter(django_filters.FilterSet):
    site = django_filters.NumberFilter(field_name="site_id")
    status = django_filters.ChoiceFilter(choices=WaitlistStatus.choices)
    open = django_filters.BooleanFilter(method="filter_open")

    class Meta:
        model = WaitlistEntry
        fields = ["site", "status", "open"]

    def filter_open(
        self, queryset: QuerySet[WaitlistEntry], name: str, value: bool
    ) -> QuerySet[WaitlistEntry]:
        lookup = Q(status__in=WAITLIST_OPEN_STATUSES)
        return queryset.filter(lookup) if value else queryset.exclude(lookup)


def _waitlist_entry_qs() -> QuerySet[WaitlistEntry]:
    return WaitlistEntry.objects.select_related(
        "site", "id_token", "offered_station", "offered_evse", "offered_connector", "reservation"
    )


def waitlist_entry_list(
    *, user: User, site: Site | None = None, filters: Mapping[str, Any] | None = None
) -> QuerySet[WaitlistEntry]:
    """Waitlist entries at the sites the user sees (a site host: their sites), in queue order."""
    qs = _waitlist_entry_qs().filter(site_scope_q(user=user, prefix="site__")).order_by("joined_at", "id")
    if site is not None:
        qs = qs.filter(site=site)
    return filters_apply(WaitlistEntryFilter, filters, qs)


def waitlist_entry_access(*, user: User, pk: int, capability: str = Capability.VIEW) -> WaitlistEntry:
    entry = _waitlist_entry_qs().filter(site_scope_q(user=user, prefix="site__")).filter(pk=pk).first()
    if entry is None:
        raise NotFound(f"Waitlist entry {pk} not found.")
    if capability != Capability.VIEW and not user_can(
        user=user, capability=capability, organisation_id=entry.site.organisation_id, site_id=entry.site_id
    ):
        raise PermissionDenied(f"You may not {capability} waitlist entry {entry.pk}.")
    return entry


def waitlist_positions(*, site_id: int) -> dict[int, int]:
    """entry id -> place in line (1 = next) of the site's waiting entries. The caller checked access."""
    waiting = (
        WaitlistEntry.objects.filter(site_id=site_id, status=WaitlistStatus.WAITING)
        .order_by("joined_at", "id")
        .values_list("pk", flat=True)
    )
    return {pk: place for place, pk in enumerate(waiting, start=1)}


def waitlist_site_summaries(*, user: User) -> QuerySet[Site]:
    """The sites the user sees, each annotated with `waiting` and `offered` (open entries), by name."""
    return (
        Site.objects.filter(site_scope_q(user=user))
        .annotate(
            waiting=Count("waitlist_entries", filter=Q(waitlist_entries__status=WaitlistStatus.WAITING)),
            offered=Count("waitlist_entries", filter=Q(waitlist_entries__status=WaitlistStatus.OFFERED)),
        )
        .order_by("name", "pk")
    )


def waitlist_site_ids_open() -> list[int]:
    """Sites with open (waiting or offered) entries: what the periodic advance visits."""
    return sorted(
        set(WaitlistEntry.objects.filter(status__in=WAITLIST_OPEN_STATUSES).values_list("site_id", flat=True))
    )


def waitlist_sites_for_stations(*, station_ids: Iterable[int]) -> list[int]:
    """The sites of these stations where someone waits (one query on the queue index): a connector freed
    where nobody waits queues no job."""
    return sorted(
        set(
            WaitlistEntry.objects.filter(
                site__stations__pk__in=list(station_ids), status=WaitlistStatus.WAITING
            ).values_list("site_id", flat=True)
        )
    )
