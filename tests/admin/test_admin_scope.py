"""Admin scoping (docs/reliability.md case 37 for the admin): a staff user who is not a superuser sees only
the rows of their scope, cannot open another tenant's object, and is offered only their own objects in
forms."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from accounts.models import AuditRecord, Membership, Organisation, User
from billing.models import (
    CdrCredit,
    CdrLine,
    ChargeDetailRecord,
    ExportJob,
    KpiDay,
    Payment,
    PaymentEvent,
    PaymentRefund,
    PaymentSettings,
    RoiInputs,
    SessionPricing,
    SiteEnergyPrice,
    Tariff,
    TariffAssignment,
    TariffVersion,
)
from energy.models import (
    ChargingProfileRecord,
    EvseAllocation,
    EvseElectrical,
    GridNode,
    GridSignal,
    NodeLimitSchedule,
)
from sessions.models import (
    ChargingSession,
    IdToken,
    LocalListEntry,
    LocalListState,
    MeterValue,
    Reservation,
    SessionAnomaly,
    SiteAccessGroup,
    TransactionEvent,
    WaitlistEntry,
)
from stations.models import (
    CertificateAuthority,
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
    OcspResponseCache,
    SecurityEvent,
    Site,
    StationCertificate,
    StationEvent,
    StatusChange,
)
from tests.factories import EvseFactory
from tests.support import at, row

# model -> (path to the organisation id, path to the station id or None): the ground truth the admin's scope
# is compared with, written independently of the selectors under test.
SCOPED = {
    Organisation: ("pk", None),
    Site: ("organisation_id", None),
    ChargingStation: ("organisation_id", "pk"),
    Evse: ("station__organisation_id", "station_id"),
    Connector: ("evse__station__organisation_id", "evse__station_id"),
    StatusChange: ("station__organisation_id", "station_id"),
    OcppMessage: ("station__organisation_id", "station_id"),
    StationEvent: ("station__organisation_id", "station_id"),
    SecurityEvent: ("station__organisation_id", "station_id"),
    DeviceVariable: ("station__organisation_id", "station_id"),
    IdToken: ("organisation_id", None),
    ChargingSession: ("station__organisation_id", "station_id"),
    MeterValue: ("station__organisation_id", "station_id"),
    SessionAnomaly: ("station__organisation_id", "station_id"),
    TransactionEvent: ("station__organisation_id", "station_id"),
    Command: ("station__organisation_id", "station_id"),
    CommandJobTarget: ("station__organisation_id", "station_id"),
    FirmwareUpdate: ("station__organisation_id", "station_id"),
    DiagnosticsUpload: ("station__organisation_id", "station_id"),
    Reservation: ("station__organisation_id", "station_id"),
    LocalListEntry: ("station__organisation_id", "station_id"),
    LocalListState: ("station__organisation_id", "station_id"),
    ConfigurationTemplate: ("organisation_id", None),
    FirmwareFile: ("organisation_id", None),
    CommandJob: ("organisation_id", None),
    # A site host sees the tariffs assigned at their sites and stations (the fixture assigns per station).
    Tariff: ("organisation_id", "assignments__station_id"),
    TariffVersion: ("tariff__organisation_id", "tariff__assignments__station_id"),
    TariffAssignment: ("organisation_id", "station_id"),
    SiteEnergyPrice: ("site__organisation_id", "site__stations__id"),
    SessionPricing: ("session__station__organisation_id", "session__station_id"),
    ChargeDetailRecord: ("organisation_id", "station_id"),
    CdrLine: ("cdr__organisation_id", "cdr__station_id"),
    CdrCredit: ("organisation_id", "cdr__station_id"),
    # The topology follows its site (the fixture puts each station alone on its site), wiring, allocations and
    # profiles their station.
    GridNode: ("site__organisation_id", "site__stations__id"),
    NodeLimitSchedule: ("node__site__organisation_id", "node__site__stations__id"),
    GridSignal: ("node__site__organisation_id", "node__site__stations__id"),
    EvseElectrical: ("evse__station__organisation_id", "evse__station_id"),
    EvseAllocation: ("evse__station__organisation_id", "evse__station_id"),
    ChargingProfileRecord: ("station__organisation_id", "station_id"),
    # KPI days follow their station; ROI inputs are organisation-wide, for the export right.
    KpiDay: ("organisation_id", "station_id"),
    RoiInputs: ("organisation_id", None),
    # Waitlists follow their site (the fixture puts each station alone on its site).
    WaitlistEntry: ("site__organisation_id", "site__stations__id"),
    # Access rules follow their site too.
    SiteAccessGroup: ("site__organisation_id", "site__stations__id"),
    Incident: ("organisation_id", "station_id"),
    # Ad-hoc payments follow the paid station, like its sessions; their events and refunds follow them.
    Payment: ("organisation_id", "station_id"),
    PaymentEvent: ("organisation_id", "payment__station_id"),
    PaymentRefund: ("payment__organisation_id", "payment__station_id"),
    # The certificate inventory follows its station; certificate authorities are organisation-wide.
    StationCertificate: ("organisation_id", "station_id"),
    CertificateAuthority: ("organisation_id", None),
}
# The provider account of an organisation: for who may manage it only (test_payment_settings_are_for_managers).
SCOPED_BY_MANAGE = (PaymentSettings,)
# Scoped otherwise: export jobs are seen by who asked for them (test_export_jobs_are_their_requesters).
SCOPED_BY_REQUESTER = (ExportJob,)
# The audit log: read-only for everyone (superusers too), seen by who manages users in its organisation
# (test_audit_records_are_read_only_and_for_user_managers).
READ_ONLY_FOR_EVERYONE = (AuditRecord,)
# Organisation-wide objects: a site host has none (403 on their changelist).
ORGANISATION_WIDE = (
    IdToken,
    ConfigurationTemplate,
    FirmwareFile,
    CommandJob,
    RoiInputs,
    CertificateAuthority,
)
# No tenant of its own (OCSP answers about any organisation's certificates): superusers only
# (test_the_ocsp_cache_is_for_superusers_only).
SUPERUSER_ONLY = (OcspResponseCache,)


@pytest.fixture
def logs(logs, world, tenants):
    """The shared log rows, plus a waitlist entry at each standing station's site."""
    tokens = {world.org_a.pk: tenants.token_a, world.org_b.pk: tenants.token_b}
    for station in (world.station_a1, world.station_a2, world.station_b1):
        logs.by_station[station.identity][WaitlistEntry] = WaitlistEntry.objects.create(
            site=station.site,
            id_token=tokens[station.organisation_id],
            contact_email="driver@example.com",
            joined_at=at(6),
        )
        logs.by_station[station.identity][SiteAccessGroup] = SiteAccessGroup.objects.create(
            site=station.site, group=tokens[station.organisation_id]
        )
        # A KPI day per station, ROI inputs per organisation (under its first station).
        logs.by_station[station.identity][KpiDay] = KpiDay.objects.create(
            organisation_id=station.organisation_id,
            site=station.site,
            station=station,
            day=at(6).date(),
            currency="EUR",
            computed_at=at(6),
        )
        logs.by_station[station.identity][StationCertificate] = StationCertificate.objects.create(
            organisation_id=station.organisation_id,
            station=station,
            use="ChargingStationCertificate",
            source="reported",
            issuer_name_hash="aa",
            issuer_key_hash="bb",
            serial_number=f"{station.pk:x}",
        )
        if not CertificateAuthority.objects.filter(organisation_id=station.organisation_id).exists():
            logs.by_station[station.identity][CertificateAuthority] = CertificateAuthority.objects.create(
                organisation_id=station.organisation_id,
                name=f"CA {station.organisation_id}",
                purpose="charging_station",
                certificate_pem="-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
                not_after=at(6),
            )
        if not RoiInputs.objects.filter(organisation_id=station.organisation_id).exists():
            logs.by_station[station.identity][RoiInputs] = RoiInputs.objects.create(
                organisation_id=station.organisation_id
            )
        logs.by_station[station.identity][Incident] = Incident.objects.create(
            organisation_id=station.organisation_id,
            site=station.site,
            station=station,
            kind="fault",
            code="GroundFailure",
            occurred_at=at(6),
            detected_at=at(6),
        )
        payment = Payment.objects.create(
            organisation_id=station.organisation_id,
            station=station,
            evse=EvseFactory(station=station, evse_id=7),
            id_token=IdToken.objects.create(
                organisation_id=station.organisation_id, value=f"PAY-{station.identity}"
            ),
            access_key_hash=f"{station.pk:064d}",
            provider="stripe",
            currency="EUR",
            hold_amount=50,
            captured_amount=10,
            status="captured",
        )
        logs.by_station[station.identity][Payment] = payment
        logs.by_station[station.identity][PaymentEvent] = PaymentEvent.objects.create(
            payment=payment, organisation_id=station.organisation_id, kind="captured"
        )
        credit = logs.by_station[station.identity][CdrCredit]
        logs.by_station[station.identity][PaymentRefund] = PaymentRefund.objects.create(
            payment=payment, credit=credit, amount=-credit.total
        )
    return logs


def changelist_url(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def expected_pks(world, model, actor: str) -> set:
    org_path, station_path = SCOPED[model]
    if actor == "host_a1":
        if model is Organisation:
            return {world.org_a.pk}
        if model is Site:
            return {world.site_a1.pk}
        return set(model.objects.filter(**{station_path: world.station_a1.pk}).values_list("pk", flat=True))
    org = world.org_b if actor == "operator_b" else world.org_a
    return set(model.objects.filter(**{org_path: org.pk}).values_list("pk", flat=True))


def shown_pks(response) -> set:
    return {obj.pk for obj in response.context["cl"].result_list}


def test_every_domain_model_is_registered():
    for label in ("accounts", "stations", "charging", "billing", "energy"):
        for model in apps.get_app_config(label).get_models():
            assert admin.site.is_registered(model), f"{model.__name__} has no admin"
            if (label != "accounts" or model is Organisation) and model not in (
                *SCOPED_BY_REQUESTER,
                *SCOPED_BY_MANAGE,
                *SUPERUSER_ONLY,
            ):
                assert model in SCOPED, f"{model.__name__} is missing from this test's scope table"


@pytest.mark.parametrize("model", list(SCOPED), ids=lambda m: m.__name__)
@pytest.mark.parametrize("actor", ["operator_b", "operator_a", "finance_a"])
def test_rel_37_changelist_shows_only_own_organisation(world, logs, admin_client_for, actor, model):
    response = admin_client_for(getattr(world, actor)).get(changelist_url(model))
    assert response.status_code == 200
    expected = expected_pks(world, model, actor)
    assert expected  # the fixture put rows of this tenant in every table, so the comparison means something
    assert shown_pks(response) == expected


@pytest.mark.parametrize("model", [m for m in SCOPED if m not in ORGANISATION_WIDE], ids=lambda m: m.__name__)
def test_rel_37_site_host_changelist_shows_only_their_site(world, logs, admin_client_for, model):
    response = admin_client_for(world.host_a1).get(changelist_url(model))
    assert response.status_code == 200
    expected = expected_pks(world, model, "host_a1")
    assert expected
    assert shown_pks(response) == expected


@pytest.mark.parametrize("actor", ["operator_a", "finance_a", "operator_b"])
def test_export_jobs_are_their_requesters(world, logs, admin_client_for, actor):
    response = admin_client_for(getattr(world, actor)).get(changelist_url(ExportJob))
    assert response.status_code == 200
    assert shown_pks(response) == {logs.export_jobs[actor].pk}
    other = next(job for name, job in logs.export_jobs.items() if name != actor)
    assert admin_client_for(getattr(world, actor)).get(change_url(other)).status_code == 302


def test_payment_settings_are_for_managers(world, admin_client_for):
    own = {
        org.pk: PaymentSettings.objects.create(organisation=org, hold_amount=50)
        for org in (world.org_a, world.org_b)
    }
    for actor, org in (("operator_a", world.org_a), ("operator_b", world.org_b)):
        response = admin_client_for(getattr(world, actor)).get(changelist_url(PaymentSettings))
        assert (response.status_code, shown_pks(response)) == (200, {own[org.pk].pk})
        other = next(row for pk, row in own.items() if pk != org.pk)
        assert admin_client_for(getattr(world, actor)).get(change_url(other)).status_code == 302
    for actor in ("finance_a", "host_a1"):
        response = admin_client_for(getattr(world, actor)).get(changelist_url(PaymentSettings))
        assert response.status_code == 403 or shown_pks(response) == set(), actor
        assert admin_client_for(getattr(world, actor)).get(change_url(own[world.org_a.pk])).status_code in (
            302,
            403,
        )


def test_export_jobs_for_superusers_and_site_hosts(world, logs, admin_client_for):
    response = admin_client_for(world.superuser).get(changelist_url(ExportJob))
    assert shown_pks(response) == {job.pk for job in logs.export_jobs.values()}
    assert admin_client_for(world.host_a1).get(changelist_url(ExportJob)).status_code == 403


def test_site_host_has_no_id_token_admin(world, tenants, logs, admin_client_for):
    client = admin_client_for(world.host_a1)
    for model in ORGANISATION_WIDE:
        assert client.get(changelist_url(model)).status_code == 403, model.__name__
    assert client.get(change_url(tenants.token_a)).status_code == 403


def test_superuser_sees_every_row(world, logs, admin_client_for):
    client = admin_client_for(world.superuser)
    for model in (ChargingStation, SecurityEvent, IdToken, MeterValue):
        response = client.get(changelist_url(model))
        assert shown_pks(response) == set(model.objects.values_list("pk", flat=True))


def test_security_events_without_a_station_are_for_superusers_only(world, logs, admin_client_for):
    response = admin_client_for(world.operator_a).get(changelist_url(SecurityEvent))
    assert logs.unknown_identity_event.pk not in shown_pks(response)


def test_rel_37_changelist_html_names_nothing_of_another_tenant(world, logs, admin_client_for):
    """The sidebar filters too: an unscoped organisation/site filter would list the other tenant's names."""
    client = admin_client_for(world.operator_b)
    own = {ChargingStation: "B1-CP1", Site: "B1", IdToken: "BBBB0001", ChargingSession: "3001"}
    for model, own_text in own.items():
        html = client.get(changelist_url(model)).content.decode()
        for foreign in ("Org A", "A1-CP1", "A2-CP1", "AAAA0001"):
            assert foreign not in html, (model.__name__, foreign)
        assert own_text in html, model.__name__


def foreign_objects(world, tenants, logs) -> list:
    a1 = logs.by_station["A1-CP1"]
    return [
        world.org_a,
        world.site_a1,
        world.station_a1,
        tenants.evse_a1,
        tenants.connector_a1,
        tenants.token_a,
        tenants.session_a1,
        *a1.values(),
    ]


def test_rel_37_change_page_of_another_tenant_redirects_as_if_deleted(world, tenants, logs, admin_client_for):
    client = admin_client_for(world.operator_b)
    for obj in foreign_objects(world, tenants, logs):
        response = client.get(change_url(obj))
        assert (response.status_code, response["Location"]) == (302, reverse("admin:index")), obj
        history = client.get(change_url(obj).replace("/change/", "/history/"))
        assert history.status_code == 302, obj


def test_rel_37_post_to_another_tenant_changes_nothing(world, tenants, admin_client_for):
    client = admin_client_for(world.operator_b)
    before = (row(world.site_a1), row(world.station_a1), row(tenants.token_a))
    client.post(change_url(world.site_a1), {"name": "Taken", "time_zone": "UTC"})
    client.post(
        change_url(world.station_a1),
        {"name": "Taken", "registration_status": "Rejected", "security_profile": 1, "evses-TOTAL_FORMS": 0},
    )
    client.post(change_url(tenants.token_a), {"value": "TAKEN", "type": "ISO14443", "status": "Blocked"})
    client.post(reverse("admin:stations_chargingstation_delete", args=[world.station_a1.pk]), {"post": "yes"})
    assert (row(world.site_a1), row(world.station_a1), row(tenants.token_a)) == before


def test_foreign_key_choices_are_what_the_user_may_manage(world, admin_client_for):
    response = admin_client_for(world.operator_a).get(reverse("admin:stations_chargingstation_add"))
    assert response.status_code == 200
    fields = response.context["adminform"].form.fields
    assert list(fields["organisation"].queryset) == [world.org_a]
    assert set(fields["site"].queryset) == {world.site_a1, world.site_a2}


def test_a_foreign_site_typed_into_the_raw_id_field_is_refused(world, admin_client_for):
    response = admin_client_for(world.operator_a).post(
        reverse("admin:stations_chargingstation_add"),
        {
            "identity": "SNEAKY",
            "organisation": world.org_a.pk,
            "site": world.site_b1.pk,
            "registration_status": "Accepted",
            "security_profile": 0,
            "evses-TOTAL_FORMS": 0,
            "evses-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 200
    assert "site" in response.context["adminform"].form.errors
    assert not ChargingStation.objects.filter(identity="SNEAKY").exists()


def test_finance_sees_stations_read_only(world, admin_client_for):
    client = admin_client_for(world.finance_a)
    page = client.get(change_url(world.station_a1))
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    before = row(world.station_a1)
    posted = client.post(change_url(world.station_a1), {"name": "Finance"})
    assert posted.status_code == 403
    assert row(world.station_a1) == before
    assert client.get(reverse("admin:stations_chargingstation_add")).status_code == 403


def test_site_host_sees_their_station_read_only(world, admin_client_for):
    client = admin_client_for(world.host_a1)
    page = client.get(change_url(world.station_a1))
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert client.get(change_url(world.station_a2)).status_code == 302


def test_only_superusers_delete(world, admin_client_for):
    client = admin_client_for(world.operator_a)
    url = reverse("admin:stations_chargingstation_delete", args=[world.station_a1.pk])
    assert client.get(url).status_code == 403
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert ChargingStation.objects.filter(pk=world.station_a1.pk).exists()


@pytest.mark.parametrize("model", [User, Membership], ids=lambda m: m.__name__)
def test_users_and_memberships_are_for_superusers(world, admin_client_for, model):
    assert admin_client_for(world.operator_a).get(changelist_url(model)).status_code == 403
    assert admin_client_for(world.superuser).get(changelist_url(model)).status_code == 200


def test_operator_cannot_edit_their_own_account_into_a_superuser(world, admin_client_for):
    client = admin_client_for(world.operator_a)
    response = client.post(
        change_url(world.operator_a), {"username": "operator_a", "is_superuser": "on", "is_staff": "on"}
    )
    assert response.status_code == 403
    world.operator_a.refresh_from_db()
    assert world.operator_a.is_superuser is False


def test_login_page_works_for_anonymous_users(world, client):
    """Every admin page (the login page too) asks each registered admin for its permissions."""
    assert client.get(reverse("admin:login")).status_code == 200
    response = client.post(
        reverse("admin:login") + "?next=/admin/", {"username": "root", "password": "pw-for-tests-1"}
    )
    assert (response.status_code, response["Location"]) == (302, "/admin/")


def test_members_who_are_not_staff_stay_out(world, client):
    client.force_login(world.operator_a)
    response = client.get(changelist_url(ChargingStation))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("model", READ_ONLY_FOR_EVERYONE, ids=lambda m: m.__name__)
def test_audit_records_are_read_only_and_for_user_managers(world, admin_client_for, model):
    from accounts.services import audit_record

    record_a = audit_record(actor=world.operator_a, action="admin.change", obj=world.station_a1)
    record_b = audit_record(actor=world.operator_b, action="admin.change", obj=world.station_b1)
    expected = {
        "operator_a": {record_a.pk},
        "operator_b": {record_b.pk},
        "superuser": {record_a.pk, record_b.pk},
    }
    for actor, pks in expected.items():
        client = admin_client_for(getattr(world, actor))
        assert shown_pks(client.get(changelist_url(model))) == pks
        assert client.get(reverse(f"admin:accounts_{model._meta.model_name}_add")).status_code == 403
        delete = reverse(f"admin:accounts_{model._meta.model_name}_delete", args=[record_a.pk])
        assert client.post(delete, {"post": "yes"}).status_code == 403
        assert client.post(change_url(record_a), {"action": "admin.delete"}).status_code == 403
    assert (
        admin_client_for(world.operator_b).get(change_url(record_a)).status_code == 302
    )  # outside: as if deleted
    assert admin_client_for(world.finance_a).get(changelist_url(model)).status_code == 403
    assert admin_client_for(world.host_a1).get(changelist_url(model)).status_code == 403
    assert list(AuditRecord.objects.order_by("pk").values_list("pk", "action")) == [
        (record_a.pk, "admin.change"),
        (record_b.pk, "admin.change"),
    ]


@pytest.mark.parametrize("actor", ["operator_a", "finance_a", "host_a1"])
def test_the_ocsp_cache_is_for_superusers_only(world, admin_client_for, actor):
    assert admin_client_for(getattr(world, actor)).get(changelist_url(OcspResponseCache)).status_code == 403
    assert admin_client_for(world.superuser).get(changelist_url(OcspResponseCache)).status_code == 200
