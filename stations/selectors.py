"""Reads of sites and stations, always through the user's scope (accounts.selectors).

`*_access` fetches and checks in one step: an object outside the user's view scope is NotFound (404, so that
its existence does not leak); a visible object the user lacks `capability` on is PermissionDenied (403).
"""

from collections.abc import Mapping
from typing import Any

import django_filters
from django.db.models import Prefetch, QuerySet

from accounts.enums import Capability
from accounts.models import User
from accounts.selectors import site_scope_q, station_scope_q, user_can
from cpms.errors import NotFound, PermissionDenied
from cpms.filters import filters_apply
from stations.enums import OcppVersion, RegistrationStatus
from stations.models import ChargingStation, Connector, Evse, Site


class SiteFilter(django_filters.FilterSet):
    organisation = django_filters.NumberFilter(field_name="organisation_id")

    class Meta:
        model = Site
        fields = ["organisation"]


class StationFilter(django_filters.FilterSet):
    site = django_filters.NumberFilter(field_name="site_id")
    organisation = django_filters.NumberFilter(field_name="organisation_id")
    connected = django_filters.BooleanFilter(field_name="is_connected")
    registration_status = django_filters.ChoiceFilter(choices=RegistrationStatus.choices)
    protocol = django_filters.ChoiceFilter(choices=OcppVersion.choices)

    class Meta:
        model = ChargingStation
        fields = ["site", "organisation", "connected", "registration_status", "protocol"]


def site_list(*, user: User, filters: Mapping[str, Any] | None = None) -> QuerySet[Site]:
    qs = Site.objects.filter(site_scope_q(user=user)).select_related("organisation")
    return filters_apply(SiteFilter, filters, qs)


def site_access(*, user: User, pk: int, capability: str = Capability.VIEW) -> Site:
    site = Site.objects.filter(site_scope_q(user=user)).filter(pk=pk).first()
    if site is None:
        raise NotFound(f"Site {pk} not found.")
    if capability != Capability.VIEW and not user_can(
        user=user, capability=capability, organisation_id=site.organisation_id, site_id=site.pk
    ):
        raise PermissionDenied(f"You may not {capability} site {site.pk}.")
    return site


def _station_qs() -> QuerySet[ChargingStation]:
    connectors = Prefetch("connectors", queryset=Connector.objects.order_by("connector_id"))
    evses = Prefetch("evses", queryset=Evse.objects.order_by("evse_id").prefetch_related(connectors))
    return ChargingStation.objects.select_related("organisation", "site").prefetch_related(evses)


def station_list(*, user: User, filters: Mapping[str, Any] | None = None) -> QuerySet[ChargingStation]:
    qs = _station_qs().filter(station_scope_q(user=user))
    return filters_apply(StationFilter, filters, qs)


def station_access(*, user: User, identity: str, capability: str = Capability.VIEW) -> ChargingStation:
    station = _station_qs().filter(station_scope_q(user=user)).filter(identity=identity).first()
    if station is None:
        raise NotFound(f"Station {identity!r} not found.")
    if capability != Capability.VIEW and not user_can(
        user=user, capability=capability, organisation_id=station.organisation_id, site_id=station.site_id
    ):
        raise PermissionDenied(f"You may not {capability} station {identity!r}.")
    return station
