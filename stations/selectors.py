"""Reads of sites and stations, always through the user's scope (accounts.selectors).

`*_access` fetches and checks in one step: an object outside the user's view scope is NotFound (404, so that
its existence does not leak); a visible object the user lacks `capability` on is PermissionDenied (403).

What a station reported (device model, status history, events) is read per station: the caller fetched the
station with `station_access`, which did the scope check. Security events are also listed across stations,
scoped here.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import django_filters
from django.conf import settings
from django.db.models import Count, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse

from accounts.enums import Capability
from accounts.models import User
from accounts.selectors import membership_roles, organisation_ids_with
from cpms.errors import NotFound, PermissionDenied, ValidationFailed
from cpms.filters import filters_apply
from stations.enums import (
    CommandStatus,
    IncidentKind,
    JobKind,
    OcppVersion,
    RegistrationStatus,
    SecurityEventKind,
    StationEventKind,
)
from stations.models import (
    ChargingStation,
    Command,
    CommandJob,
    CommandJobTarget,
    ConfigurationTemplate,
    Connector,
    DeviceVariable,
    DiagnosticsUpload,
    Evse,
    FirmwareFile,
    FirmwareUpdate,
    Incident,
    OcppMessage,
    SecurityEvent,
    Site,
    StationEvent,
    StatusChange,
)
from stations.scope import site_scope_q, station_scope_q, user_can


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
        verb = "set the prices and access rules of" if capability == Capability.PRICING else capability
        raise PermissionDenied(f"You may not {verb} site {site.pk}.")
    return site


def _station_qs() -> QuerySet[ChargingStation]:
    connectors = Prefetch("connectors", queryset=Connector.objects.order_by("connector_id"))
    evses = Prefetch("evses", queryset=Evse.objects.order_by("evse_id").prefetch_related(connectors))
    return ChargingStation.objects.select_related("organisation", "site").prefetch_related(evses)


def station_list(*, user: User, filters: Mapping[str, Any] | None = None) -> QuerySet[ChargingStation]:
    qs = _station_qs().filter(station_scope_q(user=user))
    return filters_apply(StationFilter, filters, qs)


def station_access(
    *, user: User, identity: str, capability: str = Capability.VIEW, with_points: bool = True
) -> ChargingStation:
    """The station if the user may see it (NotFound) and holds `capability` on it (PermissionDenied).
    `with_points=False` skips loading its EVSEs and connectors (two queries) for callers that do not use
    them, such as the command endpoint."""
    stations = (
        _station_qs() if with_points else ChargingStation.objects.select_related("organisation", "site")
    )
    station = stations.filter(station_scope_q(user=user)).filter(identity=identity).first()
    if station is None:
        raise NotFound(f"Station {identity!r} not found.")
    if capability != Capability.VIEW and not user_can(
        user=user, capability=capability, organisation_id=station.organisation_id, site_id=station.site_id
    ):
        raise PermissionDenied(f"You may not {capability} station {identity!r}.")
    return station


# --- EVSEs' public identity ---------------------------------------------------------------------------


def evse_label(evse: Evse) -> str:
    """How an EVSE is named to drivers: "<station identity> EVSE <n>", the text beside its QR code on the
    label and on its receipts (load `station` with the EVSE to avoid a query)."""
    return f"{evse.station.identity} EVSE {evse.evse_id}"


def evse_public_path(evse: Evse) -> str:
    """The path of the EVSE's page for drivers (cpms/pay: see the price, pay and charge without an account)."""
    return reverse("pay:evse", kwargs={"code": evse.public_code})


def evse_public_url(evse: Evse, request: HttpRequest | None = None) -> str:
    """The URL a driver opens from the EVSE's QR code: PUBLIC_BASE_URL + path when the setting is set; else
    absolute on the host of `request`; else the bare path (no request to take a host from)."""
    path = evse_public_path(evse)
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL + path
    if request is not None:
        return request.build_absolute_uri(path)
    return path


def site_evse_list(*, site: Site) -> QuerySet[Evse]:
    """Every EVSE of every station of `site`, by station identity then EVSE number, with its station. The
    caller checked access to the site (site_access): whoever may see a site sees all its stations."""
    return (
        Evse.objects.filter(station__site=site)
        .select_related("station")
        .order_by("station__identity", "evse_id")
    )


# --- what stations reported -------------------------------------------------------------------------


class DeviceVariableFilter(django_filters.FilterSet):
    component = django_filters.CharFilter(field_name="component")
    variable = django_filters.CharFilter(field_name="variable")
    evse_id = django_filters.NumberFilter(field_name="evse_id")

    class Meta:
        model = DeviceVariable
        fields = ["component", "variable", "evse_id"]


class SecurityEventFilter(django_filters.FilterSet):
    # The identity the event was logged under: it also finds refused handshakes of unknown identities,
    # which have no station row (superusers only see those).
    station = django_filters.CharFilter(field_name="identity")
    kind = django_filters.ChoiceFilter(choices=SecurityEventKind.choices)
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = SecurityEvent
        fields = ["station", "kind", "created_after", "created_before"]


class ReceivedRangeFilter(django_filters.FilterSet):
    """received_after (inclusive) / received_before (exclusive), for the tables ordered by received_at."""

    received_after = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="lt")


class StationEventFilter(ReceivedRangeFilter):
    kind = django_filters.ChoiceFilter(choices=StationEventKind.choices)

    class Meta:
        model = StationEvent
        fields = ["kind", "received_after", "received_before"]


class StatusChangeFilter(ReceivedRangeFilter):
    evse_id = django_filters.NumberFilter(field_name="evse_id")

    class Meta:
        model = StatusChange
        fields = ["evse_id", "received_after", "received_before"]


def device_variable_list(
    *, station: ChargingStation, filters: Mapping[str, Any] | None = None
) -> QuerySet[DeviceVariable]:
    """The station's device model (2.0.1) or configuration keys (1.6), in a total order (the unique
    constraint's columns) so that pages neither repeat nor skip rows."""
    qs = DeviceVariable.objects.filter(station=station).order_by(
        "component",
        "component_instance",
        "evse_id",
        "connector_id",
        "variable",
        "variable_instance",
        "attribute_type",
    )
    return filters_apply(DeviceVariableFilter, filters, qs)


def security_event_list(
    *, user: User, station: ChargingStation | None = None, filters: Mapping[str, Any] | None = None
) -> QuerySet[SecurityEvent]:
    """Security events of the stations the user sees, newest first; those of `station` only if given.

    Events without a station (refused handshakes for unknown identities) belong to no organisation: only
    superusers see them. The scope Q goes through the station, so it leaves them out for everyone else.
    """
    qs = SecurityEvent.objects.filter(station_scope_q(user=user, prefix="station__")).select_related(
        "station"
    )
    if station is not None:
        qs = qs.filter(station=station)
    return filters_apply(SecurityEventFilter, filters, qs.order_by("-created_at", "-id"))


def station_event_list(
    *, station: ChargingStation, filters: Mapping[str, Any] | None = None
) -> QuerySet[StationEvent]:
    qs = StationEvent.objects.filter(station=station).order_by("-received_at", "-id")
    return filters_apply(StationEventFilter, filters, qs)


def ocpp_message_list(*, station: ChargingStation) -> QuerySet[OcppMessage]:
    """The station's logged OCPP frames, newest first (empty when OCPP_MESSAGE_LOG keeps none)."""
    return OcppMessage.objects.filter(station=station).order_by("-created_at", "-id")


def status_change_list(
    *, station: ChargingStation, filters: Mapping[str, Any] | None = None
) -> QuerySet[StatusChange]:
    qs = StatusChange.objects.filter(station=station).order_by("-received_at", "-id")
    return filters_apply(StatusChangeFilter, filters, qs)


# --- remote commands ---------------------------------------------------------------------------------


class CommandFilter(django_filters.FilterSet):
    action = django_filters.CharFilter(field_name="action")
    status = django_filters.ChoiceFilter(choices=CommandStatus.choices)
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Command
        fields = ["action", "status", "created_after", "created_before"]


def command_list(
    *, user: User, station: ChargingStation | None = None, filters: Mapping[str, Any] | None = None
) -> QuerySet[Command]:
    """Commands to the stations the user may see, newest first."""
    commands = Command.objects.select_related("station", "requested_by").filter(
        station_scope_q(user=user, prefix="station__")
    )
    if station is not None:
        commands = commands.filter(station=station)
    return filters_apply(CommandFilter, filters, commands)


def command_access(*, user: User, pk: int) -> Command:
    command = command_list(user=user).filter(pk=pk).first()
    if command is None:
        raise NotFound(f"Command {pk} not found.")
    return command


# --- bulk jobs and configuration templates (organisation-wide: site hosts have none) -----------------


def _org_scope(user: User, capability: str = Capability.VIEW) -> Q:
    return (
        Q()
        if user.is_superuser
        else Q(organisation_id__in=organisation_ids_with(user=user, capability=capability))
    )


def configuration_template_list(*, user: User) -> QuerySet[ConfigurationTemplate]:
    return ConfigurationTemplate.objects.filter(_org_scope(user)).select_related("organisation")


def configuration_template_access(
    *, user: User, pk: int, capability: str = Capability.VIEW
) -> ConfigurationTemplate:
    template = configuration_template_list(user=user).filter(pk=pk).first()
    if template is None:
        raise NotFound(f"Configuration template {pk} not found.")
    if capability != Capability.VIEW and not user_can(
        user=user, capability=capability, organisation_id=template.organisation_id
    ):
        raise PermissionDenied(f"You may not {capability} configuration template {pk}.")
    return template


def command_job_list(*, user: User) -> QuerySet[CommandJob]:
    return CommandJob.objects.filter(_org_scope(user)).select_related("created_by", "template", "firmware")


def command_job_access(*, user: User, pk: int) -> CommandJob:
    job = command_job_list(user=user).filter(pk=pk).first()
    if job is None:
        raise NotFound(f"Job {pk} not found.")
    return job


def stations_for_command(
    *, user: User, organisation_id: int, identities: list[str] | None = None, site_id: int | None = None
) -> list[ChargingStation]:
    """The stations named (by identity, or all of a site) that `user` may command in `organisation_id`.
    Any name that is not such a station is an error, so a job never silently covers fewer stations."""
    stations = ChargingStation.objects.filter(
        station_scope_q(user=user, capability=Capability.COMMAND), organisation_id=organisation_id
    )
    if site_id is not None:
        found = list(stations.filter(site_id=site_id).order_by("identity"))
        if not found:
            raise ValidationFailed(f"No station you may command at site {site_id}.")
        return found
    wanted = list(dict.fromkeys(identities or []))
    by_identity = {s.identity: s for s in stations.filter(identity__in=wanted)}
    missing = [identity for identity in wanted if identity not in by_identity]
    if missing:
        raise ValidationFailed(f"Not stations you may command here: {', '.join(missing)}.")
    return [by_identity[identity] for identity in wanted]


# --- firmware and uploads ----------------------------------------------------------------------------

UPDATE_RELATED = ("station", "firmware", "command__station", "command__requested_by")
UPLOAD_RELATED = ("station", "requested_by", "command__station", "command__requested_by")


def firmware_file_list(*, user: User) -> QuerySet[FirmwareFile]:
    """Firmware files of the organisations the user belongs to (any role: a site host may update the
    firmware of their stations)."""
    qs = FirmwareFile.objects.select_related("organisation", "uploaded_by")
    if user.is_superuser:
        return qs
    return qs.filter(organisation_id__in=list(membership_roles(user=user)))


def firmware_file_access(*, user: User, pk: int) -> FirmwareFile:
    firmware = firmware_file_list(user=user).filter(pk=pk).first()
    if firmware is None:
        raise NotFound(f"Firmware file {pk} not found.")
    return firmware


def firmware_file_by_token(*, token: str) -> FirmwareFile | None:
    return FirmwareFile.objects.filter(download_token=token).first()


def firmware_update_list(*, station: ChargingStation) -> QuerySet[FirmwareUpdate]:
    """The station's firmware updates, newest first (the caller checked access to the station)."""
    return (
        FirmwareUpdate.objects.filter(station=station)
        .select_related(*UPDATE_RELATED)
        .order_by("-created_at", "-id")
    )


def firmware_campaign_list(*, user: User) -> QuerySet[CommandJob]:
    """Firmware campaigns of the organisations where the user's role is organisation-wide."""
    return command_job_list(user=user).filter(kind=JobKind.FIRMWARE).order_by("-created_at", "-id")


def firmware_campaign_access(*, user: User, pk: int) -> CommandJob:
    job = firmware_campaign_list(user=user).filter(pk=pk).first()
    if job is None:
        raise NotFound(f"Firmware campaign {pk} not found.")
    return job


def firmware_campaign_targets(*, job: CommandJob) -> QuerySet[CommandJobTarget]:
    """The campaign's targets by station identity, each with the last firmware status its station
    reported for this campaign (`firmware_status`)."""
    status = FirmwareUpdate.objects.filter(job=OuterRef("job"), station=OuterRef("station")).order_by("-id")
    return (
        CommandJobTarget.objects.filter(job=job)
        .select_related("station")
        .annotate(firmware_status=Subquery(status.values("status")[:1]))
        .order_by("station__identity")
    )


def diagnostics_upload_list(*, station: ChargingStation) -> QuerySet[DiagnosticsUpload]:
    return (
        DiagnosticsUpload.objects.filter(station=station)
        .select_related(*UPLOAD_RELATED)
        .order_by("-created_at", "-id")
    )


def diagnostics_upload_access(*, user: User, pk: int) -> DiagnosticsUpload:
    """An upload of a station the user may see (NotFound otherwise)."""
    upload = (
        DiagnosticsUpload.objects.filter(station_scope_q(user=user, prefix="station__"))
        .select_related(*UPLOAD_RELATED)
        .filter(pk=pk)
        .first()
    )
    if upload is None:
        raise NotFound(f"Upload {pk} not found.")
    return upload


def diagnostics_upload_by_token(*, token: str) -> DiagnosticsUpload | None:
    return DiagnosticsUpload.objects.filter(upload_token=token).first()


# --- portal ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteOverview:
    site: Site | None  # None: the organisation's stations not placed on a site yet
    stations: list[ChargingStation]
    status_counts: dict[str, int]  # connector status (or "Offline") -> connectors


@dataclass(frozen=True)
class NetworkOverview:
    sites: list[SiteOverview]
    status_counts: dict[str, int]
    stations_total: int
    stations_online: int


def connector_shown_status(*, station: ChargingStation, connector: Connector) -> str:
    """What a driver would find: a connector of a station that is offline is Offline, whatever it last said."""
    return connector.status if station.is_connected else "Offline"


def network_overview(*, user: User) -> NetworkOverview:
    """Every station the user may see, grouped by site (sites without stations included), with connector
    counts per shown status. Three queries (stations, EVSEs, connectors) plus the sites."""
    stations = list(station_list(user=user).order_by("site__name", "identity"))
    by_site: dict[int | None, list[ChargingStation]] = {}
    for station in stations:
        by_site.setdefault(station.site_id, []).append(station)
    totals: dict[str, int] = {}
    groups: list[SiteOverview] = []
    sites = list(site_list(user=user).order_by("name"))
    for site in [*sites, None]:
        members = by_site.get(site.pk if site else None, [])
        if site is None and not members:
            continue
        counts: dict[str, int] = {}
        for station in members:
            for evse in station.evses.all():
                for connector in evse.connectors.all():
                    shown = connector_shown_status(station=station, connector=connector)
                    counts[shown] = counts.get(shown, 0) + 1
                    totals[shown] = totals.get(shown, 0) + 1
        groups.append(SiteOverview(site=site, stations=members, status_counts=counts))
    return NetworkOverview(
        sites=groups,
        status_counts=dict(sorted(totals.items())),
        stations_total=len(stations),
        stations_online=sum(1 for s in stations if s.is_connected),
    )


# --- incidents ------------------------------------------------------------------------------------------


class IncidentFilter(django_filters.FilterSet):
    """status: open (nobody acknowledged it yet), acknowledged (someone is on it), resolved."""

    status = django_filters.ChoiceFilter(
        choices=[("open", "open"), ("acknowledged", "acknowledged"), ("resolved", "resolved")],
        method="filter_status",
    )
    kind = django_filters.ChoiceFilter(choices=IncidentKind.choices)
    site = django_filters.NumberFilter(field_name="site_id")
    station = django_filters.CharFilter(field_name="station__identity")

    class Meta:
        model = Incident
        fields = ["status", "kind", "site", "station"]

    def filter_status(self, qs: QuerySet[Incident], name: str, value: str) -> QuerySet[Incident]:
        if value == "open":
            return qs.filter(resolved_at__isnull=True, acknowledged_at__isnull=True)
        if value == "acknowledged":
            return qs.filter(resolved_at__isnull=True, acknowledged_at__isnull=False)
        return qs.filter(resolved_at__isnull=False)


def _incident_qs() -> QuerySet[Incident]:
    return Incident.objects.select_related(
        "station", "site", "organisation", "acknowledged_by", "resolved_by"
    )


def incident_list(*, user: User, filters: Mapping[str, Any] | None = None) -> QuerySet[Incident]:
    """Incidents of the stations the user may see, newest detected first."""
    qs = _incident_qs().filter(station_scope_q(user=user, prefix="station__"))
    return filters_apply(IncidentFilter, filters, qs).order_by("-detected_at", "-id")


def incident_access(*, user: User, pk: int, capability: str = Capability.VIEW) -> Incident:
    """The incident if the user may see its station (NotFound) and holds `capability` on it
    (PermissionDenied)."""
    incident = _incident_qs().filter(station_scope_q(user=user, prefix="station__")).filter(pk=pk).first()
    if incident is None:
        raise NotFound(f"Incident {pk} not found.")
    if capability != Capability.VIEW and not user_can(
        user=user, capability=capability, organisation_id=incident.organisation_id, site_id=incident.site_id
    ):
        raise PermissionDenied(f"You may not {capability} incident {incident.pk}.")
    return incident


def incident_open_counts(*, user: User) -> dict[str, int]:
    """Unresolved incidents the user may see: {"open": n, "acknowledged": n, "<kind>": n per kind}."""
    rows = (
        Incident.objects.filter(station_scope_q(user=user, prefix="station__"), resolved_at__isnull=True)
        .values("kind")
        .annotate(
            waiting=Count("id", filter=Q(acknowledged_at__isnull=True)),
            taken=Count("id", filter=Q(acknowledged_at__isnull=False)),
        )
        .order_by()
    )
    counts = {"open": 0, "acknowledged": 0, **{kind: 0 for kind in IncidentKind.values}}
    for row in rows:
        counts["open"] += row["waiting"]
        counts["acknowledged"] += row["taken"]
        counts[row["kind"]] += row["waiting"] + row["taken"]
    return counts


# A site's country -> the language its drivers' pages, receipts and QR labels are in (number formats included).
COUNTRY_LANGUAGES = {
    "AT": "de", "BE": "nl", "CH": "de", "DE": "de", "DK": "da", "ES": "es", "FI": "fi", "FR": "fr",
    "GB": "en-gb", "IE": "en-gb", "IT": "it", "LU": "fr", "NL": "nl", "NO": "nb", "PL": "pl", "PT": "pt",
    "SE": "sv", "US": "en-us",
}  # fmt: skip


def site_language(site: Site | None) -> str:
    """The language drivers are addressed in at `site`: its country's, else LANGUAGE_CODE."""
    country = (site.country if site is not None else "").upper()
    return COUNTRY_LANGUAGES.get(country, settings.LANGUAGE_CODE)
