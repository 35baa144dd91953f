"""OCPI 2.2.1 Locations module, CPO as Sender (OCPI 2.2.1 section 8): our sites as Location objects, their
EVSEs and connectors, served on GET and pushed to the partners' receivers.

What a partner sees: the sites published to it (`ids.sites_published_to`) that can be a valid Location,
i.e. that have coordinates and a country (both required by 8.3.1; a site without them is not published until
the operator enters them), with their stations whose registration is Accepted; an EVSE without a connector
is left out (8.3.2: connectors is `+`).

Status (8.4.22 Status) from the OCPP live status: a station that is not connected is UNKNOWN (we cannot
know); a station-wide (1.6 connector 0) Faulted/Unavailable makes every EVSE OUTOFORDER/INOPERATIVE;
otherwise the EVSE's connectors decide, the most telling first: one connector in use makes the EVSE CHARGING
(an EVSE serves one vehicle at a time; 2.0.1 reports its other connectors Unavailable then), then RESERVED,
then AVAILABLE (one usable connector is enough), then OUTOFORDER, INOPERATIVE, UNKNOWN.

Connectors (8.3.3): standard/format/power type from the connector type; voltage and amperage are not
recorded per connector, so they follow from the standard and the connector's (else the EVSE's) max power:
AC 3-phase 230 V line to neutral (the value 8.3.3 asks for), AC 1-phase 230 V, DC 500 V (a common rating for
CCS and CHAdeMO); amperage = power / (voltage x phases), rounded; without a known power, the standard's
usual rating (Type 2: 32 A, Type 1: 32 A, Schuko: 16 A, DC: 125 A) and no max_electric_power. An Unknown
connector type is published as a Type 2 socket, the common European AC connector.

last_updated: OCPI wants the time the object last changed. We have: the site's created_at and updated_at, its
OcpiLocation's updated_at, the stations' updated_at (saved on boot and edits), connected_at, last_seen_at of an
offline station (about when it went offline), each EVSE's and connector's updated_at (their definitions) and
each connector's status_changed_at. The EVSE's is the latest of its station's, its own and its connectors'
times; the Location's the latest of its own and its EVSEs'. The list's
date_from/date_to filter uses the same formula in SQL (`_with_last_updated`).

Pushes (8.2.2, the eMSP's Receiver interface) go through the outbox, per partner, with `pushed_until
["locations"]` as cursor over server times (`locations_push_changes`, module docstring there).
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.db import transaction
from django.db.models import Exists, F, Max, OuterRef, Prefetch, Q, QuerySet
from django.db.models.functions import Coalesce, Greatest
from django.db.models.lookups import GreaterThanOrEqual, LessThan
from django.utils import timezone

from cpms.ocpi import client, ids
from cpms.ocpi.enums import InterfaceRole, Module, PartnerStatus, Role
from cpms.ocpi.models import OcpiLocation, OcpiPartner, OcpiParty
from cpms.ocpi.protocol import Page, format_datetime, parse_datetime
from cpms.ocpi.services.outbox import outbox_enqueue
from cpms.ocpi.services.tariffs import TariffIndex, tariff_index
from stations.enums import ConnectorStatus, ConnectorType, RegistrationStatus, StationEventKind
from stations.models import ChargingStation, Connector, Evse, Site, StationEvent, StatusChange

logger = logging.getLogger(__name__)

CURSOR_KEY = "locations"
# The newest connector (pk) the sweep has seen: EVSEs and connectors have no creation time, and chargers
# create theirs when they first report a status (stations.services.ocpp.connector_resolve), so a new one is
# told by its pk being above this mark. Its site is then PUT whole: a PATCH of an EVSE the partner does not
# have yet would be refused.
CONNECTOR_MARK_KEY = "locations_connector_pk"
# The partner's tariff scopes at the last sweep (TariffIndex.scopes): when they change, the connectors'
# tariff_ids of the sites concerned change, and those Locations are PUT.
TARIFF_SCOPES_KEY = "locations_tariff_scopes"
# The sweep reads changes up to this long ago only: a status row is written with its received_at before its
# transaction commits, so a window closing at "now" could pass over a row committed a moment later.
PUSH_LAG = timedelta(seconds=2)
# Locations serialised per batch by locations_push_all.
PUSH_ALL_BATCH = 100

# ISO 3166-1 alpha-2 -> alpha-3 (OCPI 2.2.1 8.3.1 Location.country is alpha-3; Site.country is alpha-2),
# all 249 officially assigned codes, generated from Debian's iso-codes 4.15 (iso_3166-1.json).
_ALPHA3_TABLE = """
ADAND AEARE AFAFG AGATG AIAIA ALALB AMARM AOAGO AQATA ARARG ASASM ATAUT AUAUS AWABW AXALA AZAZE BABIH BBBRB
BDBGD BEBEL BFBFA BGBGR BHBHR BIBDI BJBEN BLBLM BMBMU BNBRN BOBOL BQBES BRBRA BSBHS BTBTN BVBVT BWBWA BYBLR
BZBLZ CACAN CCCCK CDCOD CFCAF CGCOG CHCHE CICIV CKCOK CLCHL CMCMR CNCHN COCOL CRCRI CUCUB CVCPV CWCUW CXCXR
CYCYP CZCZE DEDEU DJDJI DKDNK DMDMA DODOM DZDZA ECECU EEEST EGEGY EHESH ERERI ESESP ETETH FIFIN FJFJI FKFLK
FMFSM FOFRO FRFRA GAGAB GBGBR GDGRD GEGEO GFGUF GGGGY GHGHA GIGIB GLGRL GMGMB GNGIN GPGLP GQGNQ GRGRC GSSGS
GTGTM GUGUM GWGNB GYGUY HKHKG HMHMD HNHND HRHRV HTHTI HUHUN IDIDN IEIRL ILISR IMIMN ININD IOIOT IQIRQ IRIRN
ISISL ITITA JEJEY JMJAM JOJOR JPJPN KEKEN KGKGZ KHKHM KIKIR KMCOM KNKNA KPPRK KRKOR KWKWT KYCYM KZKAZ LALAO
LBLBN LCLCA LILIE LKLKA LRLBR LSLSO LTLTU LULUX LVLVA LYLBY MAMAR MCMCO MDMDA MEMNE MFMAF MGMDG MHMHL MKMKD
MLMLI MMMMR MNMNG MOMAC MPMNP MQMTQ MRMRT MSMSR MTMLT MUMUS MVMDV MWMWI MXMEX MYMYS MZMOZ NANAM NCNCL NENER
NFNFK NGNGA NINIC NLNLD NONOR NPNPL NRNRU NUNIU NZNZL OMOMN PAPAN PEPER PFPYF PGPNG PHPHL PKPAK PLPOL PMSPM
PNPCN PRPRI PSPSE PTPRT PWPLW PYPRY QAQAT REREU ROROU RSSRB RURUS RWRWA SASAU SBSLB SCSYC SDSDN SESWE SGSGP
SHSHN SISVN SJSJM SKSVK SLSLE SMSMR SNSEN SOSOM SRSUR SSSSD STSTP SVSLV SXSXM SYSYR SZSWZ TCTCA TDTCD TFATF
TGTGO THTHA TJTJK TKTKL TLTLS TMTKM TNTUN TOTON TRTUR TTTTO TVTUV TWTWN TZTZA UAUKR UGUGA UMUMI USUSA UYURY
UZUZB VAVAT VCVCT VEVEN VGVGB VIVIR VNVNM VUVUT WFWLF WSWSM YEYEM YTMYT ZAZAF ZMZMB ZWZWE
"""
COUNTRY_ALPHA3: dict[str, str] = {pair[:2]: pair[2:] for pair in _ALPHA3_TABLE.split()}


def country_alpha3(alpha2: str) -> str | None:
    return COUNTRY_ALPHA3.get(alpha2.strip().upper())


# --- EVSE status (OCPI 2.2.1 8.4.22) ---------------------------------------------------------------------
OCPP_TO_OCPI_STATUS: dict[str, str] = {
    ConnectorStatus.AVAILABLE: "AVAILABLE",
    ConnectorStatus.PREPARING: "CHARGING",
    ConnectorStatus.CHARGING: "CHARGING",
    ConnectorStatus.SUSPENDED_EV: "CHARGING",
    ConnectorStatus.SUSPENDED_EVSE: "CHARGING",
    ConnectorStatus.FINISHING: "CHARGING",
    ConnectorStatus.OCCUPIED: "CHARGING",
    ConnectorStatus.RESERVED: "RESERVED",
    ConnectorStatus.UNAVAILABLE: "INOPERATIVE",
    ConnectorStatus.FAULTED: "OUTOFORDER",
}
_STATUS_PRECEDENCE = ("CHARGING", "RESERVED", "AVAILABLE", "OUTOFORDER", "INOPERATIVE")


def evse_status(*, connected: bool, station_status: str, connector_statuses: Iterable[str]) -> str:
    """The EVSE's OCPI status (module docstring)."""
    if not connected:
        return "UNKNOWN"
    if station_status == ConnectorStatus.FAULTED:
        return "OUTOFORDER"
    if station_status == ConnectorStatus.UNAVAILABLE:
        return "INOPERATIVE"
    mapped = {OCPP_TO_OCPI_STATUS.get(status, "UNKNOWN") for status in connector_statuses}
    return next((status for status in _STATUS_PRECEDENCE if status in mapped), "UNKNOWN")


# --- connectors (OCPI 2.2.1 8.3.3, 8.4.4 ConnectorFormat, 8.4.5 ConnectorType, 8.4.19 PowerType) ----------
@dataclass(frozen=True, slots=True)
class ConnectorKind:
    standard: str
    format: str
    power_type: str
    voltage: int
    phases: int
    default_amperage: int


_AC3 = ("AC_3_PHASE", 230, 3)
_AC1 = ("AC_1_PHASE", 230, 1)
_DC = ("DC", 500, 1)
CONNECTOR_KINDS: dict[str, ConnectorKind] = {
    ConnectorType.TYPE2: ConnectorKind("IEC_62196_T2", "SOCKET", *_AC3, 32),
    ConnectorType.TYPE2_CABLE: ConnectorKind("IEC_62196_T2", "CABLE", *_AC3, 32),
    ConnectorType.CCS2: ConnectorKind("IEC_62196_T2_COMBO", "CABLE", *_DC, 125),
    ConnectorType.CCS1: ConnectorKind("IEC_62196_T1_COMBO", "CABLE", *_DC, 125),
    ConnectorType.CHADEMO: ConnectorKind("CHADEMO", "CABLE", *_DC, 125),
    ConnectorType.TYPE1: ConnectorKind("IEC_62196_T1", "CABLE", *_AC1, 32),
    ConnectorType.SCHUKO: ConnectorKind("DOMESTIC_F", "SOCKET", *_AC1, 16),
}
_UNKNOWN_KIND = CONNECTOR_KINDS[ConnectorType.TYPE2]


def connector_electrics(kind: ConnectorKind, power_w: int | None) -> dict[str, int]:
    if not power_w:
        return {"max_voltage": kind.voltage, "max_amperage": kind.default_amperage}
    amperage = max(1, round(power_w / (kind.voltage * kind.phases)))
    return {"max_voltage": kind.voltage, "max_amperage": amperage, "max_electric_power": power_w}


# --- which sites, and their last change ------------------------------------------------------------------
def publishable_sites(partner: OcpiPartner) -> QuerySet[Site]:
    """The sites this partner sees as Locations (module docstring)."""
    return (
        ids.sites_published_to(partner)
        .filter(latitude__isnull=False, longitude__isnull=False)
        .exclude(country="")
    )


_ACCEPTED = Q(stations__registration_status=RegistrationStatus.ACCEPTED)


def _with_last_updated(sites: QuerySet[Site]) -> QuerySet[Site]:
    """Annotates `last_updated_at`: the formula of the module docstring, in SQL, for date_from/date_to."""
    created = "created_at"
    return sites.annotate(
        _station_changed=Max("stations__updated_at", filter=_ACCEPTED),
        _station_connected=Max("stations__connected_at", filter=_ACCEPTED),
        _station_offline=Max("stations__last_seen_at", filter=_ACCEPTED & Q(stations__is_connected=False)),
        _status_changed=Max("stations__evses__connectors__status_changed_at", filter=_ACCEPTED),
        _evse_changed=Max("stations__evses__updated_at", filter=_ACCEPTED),
        _connector_changed=Max("stations__evses__connectors__updated_at", filter=_ACCEPTED),
    ).annotate(
        last_updated_at=Greatest(
            created,
            "updated_at",
            Coalesce("ocpi__updated_at", created),
            Coalesce("_evse_changed", created),
            Coalesce("_connector_changed", created),
            Coalesce("_station_changed", created),
            Coalesce("_station_connected", created),
            Coalesce("_station_offline", created),
            Coalesce("_status_changed", created),
        )
    )


def _loaded(site_pks: Sequence[int]) -> list[Site]:
    """Sites with everything a Location needs, in 4 queries whatever their size."""
    connectors = Prefetch("connectors", queryset=Connector.objects.order_by("connector_id"))
    evses = Prefetch("evses", queryset=Evse.objects.order_by("evse_id").prefetch_related(connectors))
    stations = Prefetch(
        "stations",
        queryset=ChargingStation.objects.filter(registration_status=RegistrationStatus.ACCEPTED)
        .order_by("pk")
        .prefetch_related(evses),
    )
    return list(
        Site.objects.filter(pk__in=site_pks).select_related("ocpi").prefetch_related(stations).order_by("pk")
    )


# --- the objects (OCPI 2.2.1 8.3) ---------------------------------------------------------------------------
def _site_ocpi(site: Site) -> OcpiLocation | None:
    try:
        return site.ocpi
    except OcpiLocation.DoesNotExist:
        return None


def _station_times(station: ChargingStation) -> list[datetime]:
    times = [station.updated_at]
    if station.connected_at is not None:
        times.append(station.connected_at)
    if not station.is_connected and station.last_seen_at is not None:
        times.append(station.last_seen_at)
    return times


def _evse_last_updated(station: ChargingStation, evse: Evse) -> datetime:
    times = [*_station_times(station), evse.updated_at]
    times += [c.status_changed_at for c in evse.connectors.all() if c.status_changed_at is not None]
    times += [c.updated_at for c in evse.connectors.all()]
    return max(times)


@dataclass(frozen=True, slots=True)
class LocationContext:
    """What every object of one partner's answer shares."""

    party: OcpiParty
    partner: OcpiPartner
    tariffs: TariffIndex


def _context(partner: OcpiPartner) -> LocationContext:
    return LocationContext(party=partner.party, partner=partner, tariffs=tariff_index(partner=partner))


def _capabilities(ctx: LocationContext) -> list[str]:
    # What our command and authorisation paths support for every OCPP charger (8.4.3 Capability): RFID
    # tokens, START/STOP_SESSION, RESERVE_NOW and UNLOCK_CONNECTOR (commands module); charging profiles
    # only where the operator lets this partner set them.
    capabilities = ["RFID_READER", "REMOTE_START_STOP_CAPABLE", "RESERVABLE", "UNLOCK_CAPABLE"]
    if ctx.partner.allow_charging_profiles:
        capabilities.insert(0, "CHARGING_PROFILE_CAPABLE")
    return capabilities


def connector_object(
    connector: Connector, *, evse: Evse, station: ChargingStation, ctx: LocationContext
) -> dict[str, Any]:
    kind = CONNECTOR_KINDS.get(connector.connector_type, _UNKNOWN_KIND)
    data: dict[str, Any] = {
        "id": str(connector.connector_id),
        "standard": kind.standard,
        "format": kind.format,
        "power_type": kind.power_type,
        **connector_electrics(kind, connector.max_power_w or evse.max_power_w),
    }
    tariff_ids = ctx.tariffs.tariff_ids(site_id=station.site_id, station_id=station.pk)
    if tariff_ids:
        data["tariff_ids"] = tariff_ids
    # What it shows changes with its own definition and with its station (edits, boot).
    data["last_updated"] = format_datetime(max(station.updated_at, station.created_at, connector.updated_at))
    return data


def evse_object(evse: Evse, *, station: ChargingStation, ctx: LocationContext) -> dict[str, Any]:
    connectors = list(evse.connectors.all())
    return {
        "uid": ids.evse_uid(evse),
        "evse_id": ids.evse_id(ctx.party, station, evse.evse_id),
        "status": evse_status(
            connected=station.is_connected,
            station_status=station.status,
            connector_statuses=[c.status for c in connectors],
        ),
        "capabilities": _capabilities(ctx),
        "connectors": [connector_object(c, evse=evse, station=station, ctx=ctx) for c in connectors],
        # The code printed on the EVSE's label (its QR code's page): 8.3.2 physical_reference, string(16).
        "physical_reference": evse.public_code[:16],
        "last_updated": format_datetime(_evse_last_updated(station, evse)),
    }


def _site_evses(site: Site) -> list[tuple[ChargingStation, Evse]]:
    return [
        (station, evse)
        for station in site.stations.all()
        for evse in station.evses.all()
        if evse.connectors.all()
    ]


def location_object(site: Site, *, ctx: LocationContext) -> dict[str, Any]:
    """The Location of a site loaded by `_loaded` (8.3.1). String lengths are the spec's."""
    party = ctx.party
    extra = _site_ocpi(site)
    business = {"name": party.name[:100], **({"website": party.website} if party.website else {})}
    pairs = _site_evses(site)
    times = [site.created_at, site.updated_at] + ([extra.updated_at] if extra else [])
    for station in site.stations.all():
        times += _station_times(station)
    times += [_evse_last_updated(station, evse) for station, evse in pairs]
    data: dict[str, Any] = {
        "country_code": party.country_code,
        "party_id": party.party_id,
        "id": ids.location_id(site),
        # OCPI's publish is about showing it to the public; we only serve what the operator publishes.
        "publish": True,
        "name": site.name[:255],
        "address": (site.address or site.name)[:45],
        "city": (site.city or "-")[:45],
    }
    if site.postal_code:
        data["postal_code"] = site.postal_code[:10]
    data["country"] = country_alpha3(site.country) or site.country.upper()
    data["coordinates"] = {
        # 8.4.13 GeoLocation: strings, regex -?[0-9]{1,2}\.[0-9]{5,7} (6 decimals as stored).
        "latitude": format(site.latitude, ".6f"),
        "longitude": format(site.longitude, ".6f"),
    }
    if extra is not None and extra.parking_type:
        data["parking_type"] = extra.parking_type
    data["evses"] = [evse_object(evse, station=station, ctx=ctx) for station, evse in pairs]
    data["operator"] = business
    data["owner"] = business
    if extra is not None and extra.facilities:
        data["facilities"] = list(extra.facilities)
    data["time_zone"] = site.time_zone
    data["opening_times"] = (extra.opening_times if extra is not None and extra.opening_times else None) or {
        "twentyfourseven": True
    }
    data["last_updated"] = format_datetime(max(times))
    return data


# --- selectors for the views (8.2.1 Sender interface) -----------------------------------------------------
def location_list(*, partner: OcpiPartner, page: Page) -> tuple[list[dict[str, Any]], int]:
    """One page of the partner's Locations, by id; date_from inclusive, date_to exclusive (transport and format: pagination)."""
    sites = publishable_sites(partner)
    if page.date_from is not None or page.date_to is not None:
        sites = _with_last_updated(sites)
        last_updated = F("last_updated_at")
        if page.date_from is not None:
            sites = sites.filter(GreaterThanOrEqual(last_updated, page.date_from))
        if page.date_to is not None:
            sites = sites.filter(LessThan(last_updated, page.date_to))
    total = sites.count()
    site_pks = list(sites.order_by("pk").values_list("pk", flat=True)[page.offset : page.offset + page.limit])
    if not site_pks:
        return [], total
    ctx = _context(partner)
    return [location_object(site, ctx=ctx) for site in _loaded(site_pks)], total


def location_get(*, partner: OcpiPartner, location_id: str) -> dict[str, Any] | None:
    if not location_id.isdigit():
        return None
    pk = publishable_sites(partner).filter(pk=int(location_id)).values_list("pk", flat=True).first()
    if pk is None:
        return None
    return location_object(_loaded([pk])[0], ctx=_context(partner))


def evse_get(*, partner: OcpiPartner, location_id: str, evse_uid: str) -> dict[str, Any] | None:
    location = location_get(partner=partner, location_id=location_id)
    if location is None:
        return None
    return next((evse for evse in location["evses"] if evse["uid"] == evse_uid), None)


def connector_get(
    *, partner: OcpiPartner, location_id: str, evse_uid: str, connector_id: str
) -> dict[str, Any] | None:
    evse = evse_get(partner=partner, location_id=location_id, evse_uid=evse_uid)
    if evse is None:
        return None
    return next((c for c in evse["connectors"] if c["id"] == connector_id), None)


# --- pushes (8.2.2, the eMSP's Receiver interface) -------------------------------------------------------
def push_to_party(partner: OcpiPartner) -> tuple[str, str] | None:
    """The routing headers' receiver of a push that concerns no single eMSP (a Location, a Tariff): a direct
    eMSP itself; through a hub, the hub (OCPI 2.2.1 "Broadcast Push": the receiver headers name the hub)."""
    for wanted in (Role.EMSP, Role.HUB):
        role = next((r for r in partner.roles if r.get("role") == wanted and "country_code" in r), None)
        if role is not None:
            return role["country_code"].upper(), role["party_id"].upper()
    return None


def _enqueue_location(partner: OcpiPartner, data: dict[str, Any], to_party: tuple[str, str] | None) -> None:
    party = partner.party
    outbox_enqueue(
        partner=partner,
        module=Module.LOCATIONS,
        # One key per Location, not per EVSE: a whole-Location PUT and an EVSE PATCH must reach the partner
        # in the order they were made, or a late PUT would bring back an older status.
        object_key=f"location:{data['id']}",
        method="PUT",
        path=f"/{party.country_code}/{party.party_id}/{data['id']}",
        body=data,
        to_party=to_party,
    )


def _enqueue_evse_status(
    partner: OcpiPartner, location_id: str, evse: dict[str, Any], to_party: tuple[str, str] | None
) -> None:
    party = partner.party
    outbox_enqueue(
        partner=partner,
        module=Module.LOCATIONS,
        object_key=f"location:{location_id}",
        method="PATCH",
        path=f"/{party.country_code}/{party.party_id}/{location_id}/{evse['uid']}",
        # 8.2.2 PATCH: it carries last_updated with the fields that changed.
        body={"status": evse["status"], "last_updated": evse["last_updated"]},
        to_party=to_party,
    )


def _changed_site_pks(
    sites: QuerySet[Site], since: datetime, until: datetime, connectors: tuple[int, int]
) -> set[int]:
    """Sites whose Location content may have changed in (since, until]: created, their OcpiLocation edited,
    a station of theirs created or saved (boot, edits), or a connector (so maybe an EVSE) of theirs created
    (pk in `connectors` = (after, up to])."""

    def window(field: str) -> Q:
        return Q(**{f"{field}__gt": since, f"{field}__lte": until})

    changed = (
        window("created_at")
        | window("updated_at")
        | window("ocpi__updated_at")
        | (window("stations__evses__updated_at") & _ACCEPTED)
        | (window("stations__evses__connectors__updated_at") & _ACCEPTED)
        | (window("stations__created_at") & _ACCEPTED)
        | (window("stations__updated_at") & _ACCEPTED)
        | (
            Q(
                stations__evses__connectors__pk__gt=connectors[0],
                stations__evses__connectors__pk__lte=connectors[1],
            )
            & _ACCEPTED
        )
    )
    return set(sites.filter(changed).values_list("pk", flat=True).distinct())


def _status_changed_evses(
    sites: QuerySet[Site], since: datetime, until: datetime, skip: set[int]
) -> list[Evse]:
    """EVSEs (with their station and connectors) whose status may have changed in (since, until], by
    server time: a StatusNotification of the EVSE or its whole station (StatusChange.received_at), or the
    station's connection opening or closing (StationEvent CONNECTED/DISCONNECTED). One query plus the
    connectors' prefetch, driven by the EVSEs (each probe uses the (station, received_at) indexes)."""
    status_rows = StatusChange.objects.filter(
        Q(evse_id=OuterRef("evse_id")) | Q(evse_id__isnull=True),
        station_id=OuterRef("station_id"),
        received_at__gt=since,
        received_at__lte=until,
    )
    connection_rows = StationEvent.objects.filter(
        station_id=OuterRef("station_id"),
        kind__in=[StationEventKind.CONNECTED, StationEventKind.DISCONNECTED],
        received_at__gt=since,
        received_at__lte=until,
    )
    return list(
        Evse.objects.filter(
            station__site__in=sites.exclude(pk__in=skip),
            station__registration_status=RegistrationStatus.ACCEPTED,
        )
        .filter(Exists(status_rows) | Exists(connection_rows))
        .select_related("station")
        .prefetch_related(Prefetch("connectors", queryset=Connector.objects.order_by("connector_id")))
        .order_by("station__site_id", "pk")
    )


@dataclass(frozen=True, slots=True)
class _Withdrawn:
    location_id: str
    evse_uid: str
    at: datetime


def _withdrawn_evses(partner: OcpiPartner, since: datetime, until: datetime) -> list[_Withdrawn]:
    """EVSEs of sites the operator stopped publishing in (since, until] (OcpiLocation.publish turned off),
    that existed before the window, so that the partner may have them. OCPI has no DELETE of a Location:
    its EVSEs are set REMOVED (8.4.22: "The EVSE/Connector was removed"). Nothing else of the site is sent."""
    sites = Site.objects.filter(
        organisation_id=partner.party.organisation_id,
        ocpi__publish=False,
        ocpi__updated_at__gt=since,
        ocpi__updated_at__lte=until,
        created_at__lte=since,
    )
    if not partner.publish_all_sites:
        sites = sites.filter(pk__in=partner.published_sites.values("pk"))
    rows = (
        Evse.objects.filter(station__site__in=sites, connectors__isnull=False)
        .distinct()
        .order_by("station__site_id", "pk")
        .values_list("station__site_id", "pk", "station__site__ocpi__updated_at")
    )
    return [_Withdrawn(ids.location_id(site), ids.evse_uid(evse), at) for site, evse, at in rows]


def _enqueue_evse_removed(partner: OcpiPartner, evse: _Withdrawn, to_party: tuple[str, str] | None) -> None:
    body = {"uid": evse.evse_uid, "status": "REMOVED", "last_updated": format_datetime(evse.at)}
    _enqueue_evse_status(partner, evse.location_id, body, to_party)


def _locked(partner_id: int) -> OcpiPartner | None:
    return (
        OcpiPartner.objects.select_for_update(of=("self",))
        .select_related("party")
        .filter(pk=partner_id, status=PartnerStatus.REGISTERED)
        .first()
    )


@dataclass(frozen=True, slots=True)
class _Marks:
    """What one sweep of a partner has seen, saved with its items: the end of its window, the newest
    connector, and the tariff scopes its drivers' tariffs were resolved with."""

    until: datetime
    connector: int
    tariff_scopes: dict[str, int]


def _marks_save(partner: OcpiPartner, marks: _Marks) -> None:
    # Caller holds the row lock: the other modules' cursors in the same JSON are kept as they are.
    pushed_until = {
        **partner.pushed_until,
        CURSOR_KEY: marks.until.isoformat(),
        CONNECTOR_MARK_KEY: marks.connector,
        TARIFF_SCOPES_KEY: marks.tariff_scopes,
    }
    OcpiPartner.objects.filter(pk=partner.pk).update(pushed_until=pushed_until)
    partner.pushed_until = pushed_until


def _tariff_changed_site_pks(
    sites: QuerySet[Site], before: dict[str, int], after: dict[str, int]
) -> set[int]:
    """Sites whose connectors' tariff_ids may differ between two resolutions of the partner's tariff scopes
    (an assignment added, moved or removed, a tariff's first version coming into force, its last expiring).
    Scope keys are billing's (billing.services.tariffs._scope_key): "organisation", "site:<pk>",
    "station:<pk>", each possibly under "token:<group pk>/", or "token:<group pk>" alone."""
    keys = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    site_pks: set[int] = set()
    station_pks: set[int] = set()
    for key in keys:
        place = key.split("/", 1)[1] if "/" in key else key
        kind, _, number = place.partition(":")
        if kind == "site" and number.isdigit():
            site_pks.add(int(number))
        elif kind == "station" and number.isdigit():
            station_pks.add(int(number))
        else:  # the organisation, or the partner's group anywhere: every site
            return set(sites.values_list("pk", flat=True))
    if station_pks:
        site_pks |= set(
            ChargingStation.objects.filter(pk__in=station_pks, site__isnull=False).values_list(
                "site_id", flat=True
            )
        )
    return set(sites.filter(pk__in=site_pks).values_list("pk", flat=True)) if site_pks else set()


def _partner_push_changes(partner_id: int, until: datetime, connector_mark: int) -> int:
    with transaction.atomic():
        partner = _locked(partner_id)
        if partner is None:
            return 0
        raw = partner.pushed_until.get(CURSOR_KEY)
        # Without a cursor, changes since the registration (it pulled or pulls the rest with GET).
        since = parse_datetime(raw, field=CURSOR_KEY) if raw else partner.registered_at
        if since is not None and since >= until:
            return 0
        ctx = _context(partner)
        marks = _Marks(until=until, connector=connector_mark, tariff_scopes=ctx.tariffs.scopes)
        if since is None or client.endpoint_url(partner, Module.LOCATIONS, InterfaceRole.RECEIVER) is None:
            _marks_save(partner, marks)
            return 0
        sites = publishable_sites(partner)
        seen = int(partner.pushed_until.get(CONNECTOR_MARK_KEY, connector_mark))
        changed = _changed_site_pks(sites, since, until, (seen, connector_mark))
        scopes_before = partner.pushed_until.get(TARIFF_SCOPES_KEY, marks.tariff_scopes)
        changed |= _tariff_changed_site_pks(sites, scopes_before, marks.tariff_scopes)
        evses = _status_changed_evses(sites, since, until, skip=changed)
        withdrawn = _withdrawn_evses(partner, since, until)
        to_party = push_to_party(partner)
        queued = 0
        for site in _loaded(sorted(changed)) if changed else []:
            _enqueue_location(partner, location_object(site, ctx=ctx), to_party)
            queued += 1
        for evse in evses:
            if not evse.connectors.all():
                continue  # not published (no connector)
            data = evse_object(evse, station=evse.station, ctx=ctx)
            _enqueue_evse_status(partner, ids.location_id(cast(int, evse.station.site_id)), data, to_party)
            queued += 1
        for removed in withdrawn:
            _enqueue_evse_removed(partner, removed, to_party)
            queued += 1
        _marks_save(partner, marks)
        return queued


def locations_push_changes(*, now: datetime | None = None) -> int:
    """The sweep (cpms.ocpi.tasks.push_sweep, every OCPI_PUSH_SWEEP_S): for each registered partner with a
    locations receiver, what changed since its cursor: a PUT of each Location whose content may have
    changed (new connectors and changed tariff_ids included), a PATCH {status, last_updated} of each other EVSE whose status may
    have changed, and a PATCH {status: REMOVED} of the EVSEs of a site withdrawn from publication; then the
    cursor moves to the end of the window, in the same transaction as the outbox items. A few queries per
    partner, whatever the number of EVSEs. Returns how many items it queued."""
    until = (now or timezone.now()) - PUSH_LAG
    connector_mark = Connector.objects.aggregate(newest=Max("pk"))["newest"] or 0
    queued = 0
    for partner_id in OcpiPartner.objects.filter(status=PartnerStatus.REGISTERED).values_list(
        "pk", flat=True
    ):
        try:
            queued += _partner_push_changes(partner_id, until, connector_mark)
        except Exception:  # one partner's failure must not hold the others' pushes
            logger.exception("OCPI locations push sweep failed for partner %s", partner_id)
    return queued


def locations_push_all(partner: OcpiPartner) -> int:
    """ "Sync now": a PUT of every Location published to the partner (in batches). Returns items queued."""
    with transaction.atomic():
        locked = _locked(partner.pk)
        if locked is None or client.endpoint_url(locked, Module.LOCATIONS, InterfaceRole.RECEIVER) is None:
            return 0
        ctx = _context(locked)
        to_party = push_to_party(locked)
        site_pks = list(publishable_sites(locked).order_by("pk").values_list("pk", flat=True))
        for start in range(0, len(site_pks), PUSH_ALL_BATCH):
            for site in _loaded(site_pks[start : start + PUSH_ALL_BATCH]):
                _enqueue_location(locked, location_object(site, ctx=ctx), to_party)
        return len(site_pks)
