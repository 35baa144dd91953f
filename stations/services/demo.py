"""Demo data for `make run`: one organisation, two sites in different time zones, four chargers and one
user per role, all with known passwords. Each app above seeds its own part (sessions.services.demo: the id
tokens; billing, energy: prices and load management); `load_demo` calls them in that order.

Everything is created through the same services operators use (with the demo superuser as the actor), so
the demo data passes the same validation.

Idempotent by "create what is missing, never modify what exists": `make run` calls it on every start, so
a second run changes nothing, and a password an operator changed after the first run is never reset to the
public demo value. The passwords below are printed and documented: they are for a local demo only.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction

from accounts.enums import Role
from accounts.models import Membership, Organisation, User
from accounts.services import membership_set, organisation_create
from cpms.errors import Conflict
from stations.enums import ConnectorType
from stations.models import ChargingStation, Connector, Evse, Site
from stations.services.management import site_create, station_create
from stations.services.site_hosts import site_host_grant

ORGANISATION_SLUG = "demo"
ORGANISATION_NAME = "Demo Charging Co"
# Every station has its own password (a salted hash per station); the demo stations share one value so
# that a single `simulate --identities ... --password ...` run can drive all four of them.
STATION_PASSWORD = "demo-charger-secret"  # public: printed by load_demo and in the README


@dataclass(frozen=True)
class DemoSiteSpec:
    name: str
    time_zone: str
    grid_capacity_w: int
    address: str
    postal_code: str
    city: str
    country: str
    latitude: str
    longitude: str


@dataclass(frozen=True)
class DemoStationSpec:
    identity: str
    password: str
    site_name: str
    name: str
    vendor: str
    model: str
    connector_type: str
    # Per EVSE; each EVSE has one connector (a 1.6 connectorId n is EVSE n, connector 1).
    max_power_w: int
    evse_count: int = 2


@dataclass(frozen=True)
class DemoUserSpec:
    username: str
    password: str
    # None for the superuser (the first entry of USERS); otherwise a Role value in the demo organisation.
    role: str | None
    description: str
    # Only for Role.SITE_HOST: the one site granted.
    site_name: str = ""


SITES: tuple[DemoSiteSpec, ...] = (
    DemoSiteSpec(
        name="Berlin Depot",
        time_zone="Europe/Berlin",
        grid_capacity_w=100_000,
        address="Demostraße 1",
        postal_code="10179",
        city="Berlin",
        country="DE",
        latitude="52.512500",
        longitude="13.419000",
    ),
    DemoSiteSpec(
        name="Boston Plaza",
        time_zone="America/New_York",
        grid_capacity_w=60_000,
        address="1 Demo Plaza",
        postal_code="02110",
        city="Boston",
        country="US",
        latitude="42.357200",
        longitude="-71.055000",
    ),
)

STATIONS: tuple[DemoStationSpec, ...] = (
    DemoStationSpec(
        identity="DEMO-BER-01",
        password=STATION_PASSWORD,
        site_name="Berlin Depot",
        name="Berlin Depot AC 1",
        vendor="DemoVendor",
        model="AC22-Duo",
        connector_type=ConnectorType.TYPE2,
        max_power_w=22_000,
    ),
    DemoStationSpec(
        identity="DEMO-BER-02",
        password=STATION_PASSWORD,
        site_name="Berlin Depot",
        name="Berlin Depot DC 1",
        vendor="DemoVendor",
        model="DC50-Duo",
        connector_type=ConnectorType.CCS2,
        max_power_w=50_000,
    ),
    DemoStationSpec(
        identity="DEMO-BOS-01",
        password=STATION_PASSWORD,
        site_name="Boston Plaza",
        name="Boston Plaza AC 1",
        vendor="DemoVendor",
        model="AC7-Duo",
        connector_type=ConnectorType.TYPE1,
        max_power_w=7_200,
    ),
    DemoStationSpec(
        identity="DEMO-BOS-02",
        password=STATION_PASSWORD,
        site_name="Boston Plaza",
        name="Boston Plaza DC 1",
        vendor="DemoVendor",
        model="DC50-Duo",
        connector_type=ConnectorType.CCS1,
        max_power_w=50_000,
    ),
)

USERS: tuple[DemoUserSpec, ...] = (
    DemoUserSpec("admin", "admin-demo", None, "superuser: everything"),
    DemoUserSpec("operator", "operator-demo", Role.OPERATOR_ADMIN, "operator admin of Demo Charging Co"),
    DemoUserSpec("staff", "staff-demo", Role.OPERATOR_STAFF, "operator staff of Demo Charging Co"),
    DemoUserSpec(
        "host",
        "host-demo",
        Role.SITE_HOST,
        "site host of Berlin Depot only (may set its prices)",
        "Berlin Depot",
    ),
    DemoUserSpec("finance", "finance-demo", Role.FINANCE, "finance of Demo Charging Co"),
    DemoUserSpec("support", "support-demo", Role.SUPPORT, "support of Demo Charging Co"),
)


@dataclass(frozen=True)
class DemoData:
    """What the demo consists of (whether created by this call or an earlier one).

    `created` counts the rows this call inserted (users, memberships, permissions, sites, stations, EVSEs,
    connectors); 0 means everything was already there and nothing was changed.
    """

    organisation: Organisation
    # The demo superuser: the actor the other apps' demo data is created by.
    superuser: User
    sites: tuple[Site, ...]
    stations: tuple[DemoStationSpec, ...]
    users: tuple[DemoUserSpec, ...]
    created: int


@transaction.atomic
def demo_data_load() -> DemoData:
    """Create the demo organisation with its sites, stations and users, where missing.

    Existing rows are left as they are (passwords included). Raises Conflict when a demo station identity
    is already taken by another organisation (identities are unique across the whole system), or when a
    user `admin` exists that is not a superuser (it is the actor the demo data is created by).
    """
    # The superuser first: it is the actor that creates the organisation (only superusers create tenants).
    superuser_spec, *member_specs = USERS
    admin, created = _superuser_ensure(spec=superuser_spec)
    if not admin.is_superuser:
        raise Conflict(
            f"User {admin.username!r} exists but is not a superuser; load_demo creates the demo data as that "
            "user. Make it a superuser or rename it."
        )
    organisation = Organisation.objects.filter(slug=ORGANISATION_SLUG).first()
    if organisation is None:
        organisation = organisation_create(actor=admin, name=ORGANISATION_NAME, slug=ORGANISATION_SLUG)
        created += 1

    sites: dict[str, Site] = {}
    for spec in SITES:
        site = Site.objects.filter(organisation=organisation, name=spec.name).first()
        if site is None:
            site = site_create(
                actor=admin,
                organisation_id=organisation.pk,
                name=spec.name,
                time_zone=spec.time_zone,
                address=spec.address,
                city=spec.city,
                postal_code=spec.postal_code,
                country=spec.country,
                latitude=Decimal(spec.latitude),
                longitude=Decimal(spec.longitude),
                grid_capacity_w=spec.grid_capacity_w,
            )
            created += 1
        sites[spec.name] = site

    for station_spec in STATIONS:
        created += _station_ensure(
            spec=station_spec, actor=admin, organisation=organisation, site=sites[station_spec.site_name]
        )

    for member_spec in member_specs:
        created += _member_ensure(spec=member_spec, organisation=organisation, sites=sites)

    return DemoData(
        organisation=organisation,
        superuser=admin,
        sites=tuple(sites.values()),
        stations=STATIONS,
        users=USERS,
        created=created,
    )


def _station_ensure(*, spec: DemoStationSpec, actor: User, organisation: Organisation, site: Site) -> int:
    created = 0
    station = ChargingStation.objects.filter(identity=spec.identity).first()
    if station is None:
        # The password only on creation: one changed after the first run is not reset to the public value.
        station = station_create(
            actor=actor,
            identity=spec.identity,
            site_id=site.pk,
            name=spec.name,
            security_profile=1,
            password=spec.password,
        )
        created += 1
    elif station.organisation_id != organisation.pk:
        raise Conflict(
            f"Station identity {spec.identity} already belongs to organisation {station.organisation}; "
            "the demo data cannot use it."
        )

    for evse_id in range(1, spec.evse_count + 1):
        evse, was_created = Evse.objects.get_or_create(
            station=station, evse_id=evse_id, defaults={"max_power_w": spec.max_power_w}
        )
        created += was_created
        _connector, was_created = Connector.objects.get_or_create(
            evse=evse,
            connector_id=1,
            defaults={"connector_type": spec.connector_type, "max_power_w": spec.max_power_w},
        )
        created += was_created
    return created


def _superuser_ensure(*, spec: DemoUserSpec) -> tuple[User, int]:
    user = User.objects.filter(username=spec.username).first()
    if user is not None:
        return user, 0
    return User.objects.create_superuser(username=spec.username, email="", password=spec.password), 1


def _member_ensure(*, spec: DemoUserSpec, organisation: Organisation, sites: dict[str, Site]) -> int:
    created = 0
    user = User.objects.filter(username=spec.username).first()
    if user is None:
        user = User.objects.create_user(username=spec.username, password=spec.password, is_staff=True)
        created += 1
    # A user that already has a role in the demo organisation keeps it (an operator may have changed it).
    if Membership.objects.filter(user=user, organisation=organisation).exists():
        return created
    if spec.role == Role.SITE_HOST:
        # The demo host may also set the Berlin Depot's prices (the per-site pricing grant).
        site_host_grant(user=user, site=sites[spec.site_name], may_set_prices=True)
    elif spec.role is None:  # only the superuser's spec has no role, and it is not a member
        raise ValueError(f"Demo user {spec.username!r} has no role.")
    else:
        membership_set(user=user, organisation=organisation, role=spec.role)
    return created + 1
