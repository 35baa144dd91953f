"""Every portal URL x every standing role (docs/reliability.md cases 37 and 39 for the portal).

The table below must name every URL of the `portal` namespace: a new page without a row fails
`test_every_portal_url_is_in_the_matrix`. For each row:
- anonymous: GET and POST go to the login page (or, for POST-only views, GET is 405), and change nothing;
- each standing user gets exactly the status in the row (another organisation's object is 404, a role without
  the capability 403);
- a denied POST changes nothing (a snapshot of every table a portal form writes is compared);
- CSRF: a POST without the token is refused with 403.
The pages' own tests (tests/portal/test_*_pages.py) check what each page shows; this checks who gets in.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import URLPattern, reverse
from django.utils import timezone

from accounts.models import AuditRecord, Membership, User
from billing.models import ExportJob, Payment, RoiInputs, Tariff, TariffAssignment, TariffVersion
from cpms.ocpi.enums import PartnerStatus
from cpms.ocpi.models import OcpiOutboxItem, OcpiPartner, OcpiParty
from cpms.portal import urls as portal_urls
from sessions.enums import IdTokenStatus, SessionStatus
from sessions.models import Reservation, SiteAccessGroup, WaitlistEntry
from stations.enums import IncidentKind
from stations.models import Command, Incident, Site, StationCertificate
from tests.factories import ChargingSessionFactory, EvseFactory, IdTokenFactory

pytestmark = pytest.mark.django_db

ROLES = ("operator_a", "operator_b", "host_a1", "finance_a")
PUBLIC = {"login", "logout", "invite-accept"}


@dataclass(frozen=True)
class Row:
    """GET statuses per role (operator_a, operator_b, host_a1, finance_a); POST-only views have get=None and
    `post_denied` names the roles whose POST must be refused with the given status."""

    url: Callable
    get: tuple[int, int, int, int] | None
    post_denied: dict[str, int] | None = None
    post_data: dict | Callable | None = None  # a callable gets (world, objects)

    def data(self, world, objects) -> dict:
        return self.post_data(world, objects) if callable(self.post_data) else (self.post_data or {})


@pytest.fixture
def objects(world):
    """One object of organisation A behind each object URL."""
    now = timezone.now()
    group = IdTokenFactory(organisation=world.org_a, value="MATRIX-GROUP", status=IdTokenStatus.ACCEPTED)
    token = IdTokenFactory(
        organisation=world.org_a, value="MATRIX-TAG", status=IdTokenStatus.ACCEPTED, group=group
    )
    session = ChargingSessionFactory(station=world.station_a1, status=SessionStatus.COMPLETED, stopped_at=now)
    incident = Incident.objects.create(
        organisation=world.org_a,
        site=world.site_a1,
        station=world.station_a1,
        kind=IncidentKind.FAULT,
        code="GroundFailure",
        occurred_at=now - timedelta(minutes=5),
        detected_at=now,
    )
    entry = WaitlistEntry.objects.create(
        site=world.site_a1, id_token=token, contact_email="driver@example.com", joined_at=now
    )
    job = ExportJob.objects.create(
        requested_by=world.finance_a, kind="cdrs", organisation_ids=[world.org_a.pk]
    )
    payment = Payment.objects.create(
        organisation=world.org_a,
        station=world.station_a1,
        evse=EvseFactory(station=world.station_a1, evse_id=9),
        id_token=IdTokenFactory(organisation=world.org_a, value="MATRIX-PAY"),
        access_key_hash="0" * 64,
        provider="stripe",
        currency="EUR",
        hold_amount=50,
    )
    party = OcpiParty.objects.create(
        organisation=world.org_a, country_code="NL", party_id="AAA", name="Org A"
    )
    partner = OcpiPartner.objects.create(party=party, name="matrix-emsp", status=PartnerStatus.REGISTERED)
    certificate = StationCertificate.objects.create(
        organisation=world.org_a,
        station=world.station_a1,
        use="ChargingStationCertificate",
        source="issued",
        status="active",
        issuer_name_hash="a" * 64,
        issuer_key_hash="b" * 64,
        serial_number="abc1",
        not_after=now + timedelta(days=365),
    )
    return {
        "certificate": certificate,
        "partner": partner,
        "payment": payment,
        "session": session,
        "incident": incident,
        "entry": entry,
        "job": job,
        "token": token,
        "group": group,
    }


def station(name: str, *extra) -> callable:
    return lambda w, o: reverse(f"portal:{name}", args=["A1-CP1", *extra])


MATRIX: dict[str, Row] = {
    # operator_a, operator_b, host_a1, finance_a
    "overview": Row(lambda w, o: reverse("portal:overview"), (200, 200, 200, 200)),
    "station-list": Row(lambda w, o: reverse("portal:station-list"), (200, 200, 200, 200)),
    "site-detail": Row(lambda w, o: reverse("portal:site-detail", args=[w.site_a1.pk]), (200, 404, 200, 200)),
    "site-labels": Row(lambda w, o: reverse("portal:site-labels", args=[w.site_a1.pk]), (200, 404, 200, 200)),
    "station-detail": Row(station("station-detail"), (200, 404, 200, 200)),
    "station-commands": Row(station("station-commands"), (200, 404, 200, 200)),
    "station-messages": Row(station("station-messages"), (200, 404, 200, 200)),
    "station-configuration": Row(station("station-configuration"), (200, 404, 200, 200)),
    "station-command": Row(
        station("station-command", "reset"), None, {"operator_b": 404, "finance_a": 403}, {"kind": "soft"}
    ),
    "station-certificates": Row(station("station-certificates"), (200, 404, 200, 200)),
    "station-certificate-renew": Row(
        station("station-certificate-renew"),
        None,
        {"operator_b": 404, "host_a1": 403, "finance_a": 403},
        {"certificate_type": "ChargingStationCertificate"},
    ),
    "station-certificate-revoke": Row(
        lambda w, o: reverse("portal:station-certificate-revoke", args=["A1-CP1", o["certificate"].pk]),
        None,
        {"operator_b": 404, "host_a1": 403, "finance_a": 403},
        {"reason": "matrix"},
    ),
    # Organisation-wide MANAGE only: site hosts see no CA.
    "certificate-authorities": Row(
        lambda w, o: reverse("portal:certificate-authorities"), (200, 200, 403, 403)
    ),
    "incident-list": Row(lambda w, o: reverse("portal:incident-list"), (200, 200, 200, 200)),
    "incident-detail": Row(
        lambda w, o: reverse("portal:incident-detail", args=[o["incident"].pk]), (200, 404, 200, 200)
    ),
    "incident-acknowledge": Row(
        lambda w, o: reverse("portal:incident-acknowledge", args=[o["incident"].pk]),
        None,
        {"operator_b": 404, "finance_a": 403},
    ),
    "incident-resolve": Row(
        lambda w, o: reverse("portal:incident-resolve", args=[o["incident"].pk]),
        None,
        {"operator_b": 404, "finance_a": 403},
        {"resolved_remotely": "true", "note": "matrix"},
    ),
    "payment-list": Row(lambda w, o: reverse("portal:payment-list"), (200, 200, 200, 200)),
    "payment-detail": Row(
        lambda w, o: reverse("portal:payment-detail", args=[o["payment"].pk]), (200, 404, 200, 200)
    ),
    "session-list": Row(lambda w, o: reverse("portal:session-list"), (200, 200, 200, 200)),
    "session-detail": Row(
        lambda w, o: reverse("portal:session-detail", args=[o["session"].pk]), (200, 404, 200, 200)
    ),
    "waitlist-list": Row(lambda w, o: reverse("portal:waitlist-list"), (200, 200, 200, 200)),
    "waitlist-site": Row(
        lambda w, o: reverse("portal:waitlist-site", args=[w.site_a1.pk]), (200, 404, 200, 200)
    ),
    "waitlist-join": Row(
        lambda w, o: reverse("portal:waitlist-join", args=[w.site_a1.pk]),
        None,
        {"operator_b": 404, "finance_a": 403},
        {"id_token": "MATRIX-TAG", "contact_email": "second@example.com"},
    ),
    "waitlist-leave": Row(
        lambda w, o: reverse("portal:waitlist-leave", args=[o["entry"].pk]),
        None,
        {"operator_b": 404, "finance_a": 403},
    ),
    "kpis": Row(lambda w, o: reverse("portal:kpis"), (200, 200, 200, 200)),
    "roi": Row(
        lambda w, o: reverse("portal:roi"),
        (200, 200, 403, 200),
        {"host_a1": 403},
        {
            "cpms_cost_annual": "1000",
            "integration_cost": "0",
            "integration_years": "1",
            "support_cost_annual": "0",
        },
    ),
    "site-prices": Row(lambda w, o: reverse("portal:site-prices"), (200, 200, 403, 403)),
    "site-prices-site": Row(
        lambda w, o: reverse("portal:site-prices-site", args=[w.site_a1.pk]),
        (200, 404, 403, 403),
        {"operator_b": 404, "host_a1": 403, "finance_a": 403},
        {"energy_price": "0.40", "tax_rate": "19", "currency": "EUR"},
    ),
    "site-access-rules": Row(
        lambda w, o: reverse("portal:site-access-rules", args=[w.site_a1.pk]),
        None,
        {"operator_b": 404, "host_a1": 403, "finance_a": 403},
        lambda w, o: {"mode": "restricted", "groups": [str(o["group"].pk)]},
    ),
    "revenue": Row(lambda w, o: reverse("portal:revenue"), (200, 200, 403, 200)),
    "exports": Row(
        lambda w, o: reverse("portal:exports"),
        (200, 200, 403, 200),
        {"host_a1": 403},
        {"kind": "cdrs", "period_from": "2026-01-01", "period_to": "2026-02-01"},
    ),
    # An export job is its requester's (finance_a's) alone.
    "export-job-row": Row(
        lambda w, o: reverse("portal:export-job-row", args=[o["job"].pk]), (404, 404, 403, 200)
    ),
    "user-list": Row(lambda w, o: reverse("portal:user-list"), (200, 200, 403, 403)),
    "user-invite": Row(
        lambda w, o: reverse("portal:user-invite"),
        (200, 200, 403, 403),
        {"host_a1": 403, "finance_a": 403},
        {"email": "new@example.com", "role": "operator_admin", "organisation": "1"},
    ),
    "user-detail": Row(
        lambda w, o: reverse("portal:user-detail", args=[w.finance_a.pk]),
        (200, 404, 403, 403),
        {"operator_b": 404, "host_a1": 403, "finance_a": 403},
        {"action": "deactivate"},
    ),
    "audit-log": Row(lambda w, o: reverse("portal:audit-log"), (200, 200, 403, 403)),
    "roaming": Row(lambda w, o: reverse("portal:roaming"), (200, 200, 403, 403)),
    "roaming-partner": Row(
        lambda w, o: reverse("portal:roaming-partner", args=[o["partner"].pk]), (200, 404, 404, 404)
    ),
    "roaming-partner-action": Row(
        lambda w, o: reverse("portal:roaming-partner-action", args=[o["partner"].pk, "suspend"]),
        None,
        {"operator_b": 404, "host_a1": 404, "finance_a": 404},
    ),
}


def snapshot() -> dict:
    """Every table a portal form writes."""
    return {
        "commands": list(Command.objects.values_list("pk", "status")),
        "incidents": list(
            Incident.objects.values_list("pk", "acknowledged_at", "resolved_at", "resolution_note")
        ),
        "waitlist": list(WaitlistEntry.objects.values_list("pk", "status", "contact_email")),
        "reservations": Reservation.objects.count(),
        "exports": ExportJob.objects.count(),
        "roi": list(RoiInputs.objects.values()),
        "tariffs": (Tariff.objects.count(), TariffVersion.objects.count(), TariffAssignment.objects.count()),
        "users": list(User.objects.values_list("pk", "is_active", "email")),
        "memberships": list(Membership.objects.values_list("user_id", "organisation_id", "role")),
        "audit": AuditRecord.objects.count(),
        "site_access": list(Site.objects.values_list("pk", "access_mode")),
        "site_access_groups": list(SiteAccessGroup.objects.values_list("site_id", "group_id")),
        "roaming": list(OcpiPartner.objects.values_list("pk", "status")),
        "roaming_outbox": list(OcpiOutboxItem.objects.values_list("pk", "status")),
        "certificates": list(
            StationCertificate.objects.values_list("pk", "status", "revoked_at", "renewal_requested_at")
        ),
    }


def portal_url_names() -> set[str]:
    return {pattern.name for pattern in portal_urls.urlpatterns if isinstance(pattern, URLPattern)}


def test_every_portal_url_is_in_the_matrix():
    assert portal_url_names() - PUBLIC == set(MATRIX)


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_anonymous_is_sent_to_log_in_and_changes_nothing(client, world, objects, name):
    row = MATRIX[name]
    url = row.url(world, objects)
    before = snapshot()
    if row.get is None:
        assert client.get(url).status_code == 405
    else:
        response = client.get(url)
        assert (response.status_code, response["Location"]) == (302, f"/portal/login/?next={url}")
    response = client.post(url, row.data(world, objects))
    assert response.status_code == 302 and response["Location"].startswith("/portal/login/?next=")
    assert snapshot() == before


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_each_role_gets_exactly_its_status(client, world, objects, name):
    row = MATRIX[name]
    url = row.url(world, objects)
    if row.get is None:
        return
    got = []
    for role in ROLES:
        client.force_login(getattr(world, role))
        got.append(client.get(url).status_code)
    assert tuple(got) == row.get, dict(zip(ROLES, got, strict=True))


@pytest.mark.parametrize("name", sorted(name for name, row in MATRIX.items() if row.post_denied))
def test_denied_posts_change_nothing(client, world, objects, name):
    row = MATRIX[name]
    url = row.url(world, objects)
    for role, status in row.post_denied.items():
        before = snapshot()
        client.force_login(getattr(world, role))
        assert client.post(url, row.data(world, objects)).status_code == status, role
        assert snapshot() == before, role


@pytest.mark.parametrize("name", sorted(name for name, row in MATRIX.items() if row.post_denied))
def test_posts_without_the_csrf_token_are_refused(world, objects, name):
    row = MATRIX[name]
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.operator_a)
    before = snapshot()
    assert client.post(row.url(world, objects), row.data(world, objects)).status_code == 403
    assert snapshot() == before
