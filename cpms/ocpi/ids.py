"""How our objects are named in OCPI, in one place (every module and the tests use these):

- Location.id = the site's primary key as a string (CiString(36));
- EVSE.uid = the EVSE's primary key as a string (unique in the installation, never reused);
- EVSE.evse_id = eMI3 "<country>*<party>*E<station pk>*<evse number>" (ISO 15118 / eMI3 EVSE id);
- Connector.id = the connector's number on its EVSE;
- Session.id = the ChargingSession's primary key; CDR.id = the ChargeDetailRecord's primary key (a credit CDR:
  "<cdr pk>-C<credit pk>");
- Tariff.id = the Tariff's primary key.

And which sites a partner sees: the organisation's sites that are published (no `OcpiLocation` row, or its
`publish` set) and, unless the partner has `publish_all_sites`, listed in its `published_sites`.
"""

from django.db.models import Q, QuerySet

from cpms.ocpi.models import OcpiPartner, OcpiParty
from stations.models import ChargingStation, Evse, Site


def location_id(site: Site | int) -> str:
    return str(site if isinstance(site, int) else site.pk)


def evse_uid(evse: Evse | int) -> str:
    return str(evse if isinstance(evse, int) else evse.pk)


def evse_id(party: OcpiParty, station: ChargingStation | int, evse_number: int) -> str:
    station_pk = station if isinstance(station, int) else station.pk
    return f"{party.country_code}*{party.party_id}*E{station_pk}*{evse_number}"


def sites_published_to(partner: OcpiPartner) -> QuerySet[Site]:
    sites = Site.objects.filter(organisation_id=partner.party.organisation_id).filter(
        Q(ocpi__isnull=True) | Q(ocpi__publish=True)
    )
    if not partner.publish_all_sites:
        sites = sites.filter(pk__in=partner.published_sites.values("pk"))
    return sites


def site_for_location_id(partner: OcpiPartner, value: str) -> Site | None:
    """The published site named by a Location.id the partner sent, or None (unknown to this partner)."""
    if not value.isdigit():
        return None
    return sites_published_to(partner).filter(pk=int(value)).first()


def evse_for_uid(site: Site, value: str) -> Evse | None:
    """The EVSE of `site` named by an EVSE.uid, or None."""
    if not value.isdigit():
        return None
    return Evse.objects.select_related("station").filter(pk=int(value), station__site=site).first()
