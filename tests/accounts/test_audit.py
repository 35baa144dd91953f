"""The audit log (docs/reliability.md case 42): insert-only down to the database, and written by admin
changes, remote commands and exports."""

from datetime import date

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from accounts.models import AuditRecord, Organisation
from accounts.selectors import AuditFilters, audit_record_list
from accounts.services import audit_record
from billing.services.exports import csv as export_csv
from billing.services.exports.filters import ExportFilters
from billing.services.exports.jobs import export_job_create
from cpms.db import ImmutableRecordError
from cpms.errors import PermissionDenied
from stations.enums import CommandSource, CommandStatus
from stations.models import Site
from stations.services.commands import command_create
from tests.factories import SiteFactory


@pytest.fixture
def record(world):
    return audit_record(
        actor=world.operator_a, action="admin.change", obj=world.station_a1, changes={"message": "x"}
    )


def test_records_cannot_be_changed_through_the_orm(record):
    record.action = "admin.delete"
    with pytest.raises(ImmutableRecordError):
        record.save()
    with pytest.raises(ImmutableRecordError):
        record.delete()
    with pytest.raises(ImmutableRecordError):
        AuditRecord.objects.filter(pk=record.pk).update(action="admin.delete")
    with pytest.raises(ImmutableRecordError):
        AuditRecord.objects.filter(pk=record.pk).delete()
    assert AuditRecord.objects.get(pk=record.pk).action == "admin.change"


def test_records_cannot_be_changed_with_raw_sql(record):
    with (
        pytest.raises(IntegrityError, match="immutable"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE accounts_auditrecord SET action = 'admin.delete'")
    if connection.vendor == "postgresql":  # SQLite: DELETE is refused by the model only (test flushes)
        with (
            pytest.raises(IntegrityError, match="immutable"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("DELETE FROM accounts_auditrecord")
    assert list(AuditRecord.objects.values_list("pk", "action")) == [(record.pk, "admin.change")]


def test_record_finds_the_organisation_through_the_object(world, rf):
    request = rf.post("/", REMOTE_ADDR="203.0.113.9")
    request.user = world.operator_a
    record = audit_record(
        actor=world.operator_a, action="admin.change", obj=world.station_b1, request=request
    )
    assert (
        record.organisation_id,
        record.object_type,
        record.object_id,
        record.object_repr,
        record.remote_addr,
    ) == (
        world.org_b.pk,
        "stations.chargingstation",
        str(world.station_b1.pk),
        str(world.station_b1),
        "203.0.113.9",
    )


def test_audit_list_is_for_user_managers_of_the_organisation(world, record):
    other = audit_record(actor=world.operator_b, action="admin.change", obj=world.station_b1)
    platform = audit_record(actor=world.superuser, action="admin.change", obj=world.superuser)
    assert list(audit_record_list(user=world.operator_a)) == [record]
    assert list(audit_record_list(user=world.operator_b)) == [other]
    assert set(audit_record_list(user=world.superuser)) == {record, other, platform}
    for user in (world.finance_a, world.host_a1):
        with pytest.raises(PermissionDenied):
            audit_record_list(user=user)
    assert list(audit_record_list(user=world.operator_a, filters=AuditFilters(action="user.invited"))) == []
    assert list(
        audit_record_list(user=world.operator_a, filters=AuditFilters(actor_id=world.operator_a.pk))
    ) == [record]


# --- admin changes ----------------------------------------------------------------------------------


def test_admin_change_add_and_delete_write_records(world, client):
    client.force_login(world.superuser)
    url = reverse("admin:accounts_organisation_change", args=[world.org_a.pk])
    response = client.post(url, {"name": "Org A renamed", "slug": "org-a", "currency": "EUR"})
    assert response.status_code == 302
    change = AuditRecord.objects.get(action="admin.change")
    assert (
        change.actor_id,
        change.organisation_id,
        change.object_type,
        change.object_repr,
        change.changes,
    ) == (
        world.superuser.pk,
        world.org_a.pk,
        "accounts.organisation",
        "Org A renamed",
        {"message": [{"changed": {"fields": ["Name"]}}]},
    )
    assert change.remote_addr == "127.0.0.1"

    response = client.post(
        reverse("admin:accounts_organisation_add"), {"name": "Org C", "slug": "org-c", "currency": "EUR"}
    )
    assert response.status_code == 302
    added = AuditRecord.objects.get(action="admin.add")
    org_c = Organisation.objects.get(slug="org-c")
    assert (added.organisation_id, added.object_id) == (org_c.pk, str(org_c.pk))

    site = SiteFactory(organisation=world.org_a, name="Doomed")
    response = client.post(reverse("admin:stations_site_delete", args=[site.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Site.objects.filter(pk=site.pk).exists()
    deleted = AuditRecord.objects.get(action="admin.delete")
    assert (deleted.organisation_id, deleted.object_type, deleted.object_id, deleted.object_repr) == (
        world.org_a.pk,
        "stations.site",
        str(site.pk),
        str(site),
    )


def test_a_refused_admin_change_writes_nothing(world, client):
    world.operator_a.is_staff = True
    world.operator_a.save(update_fields=["is_staff"])
    client.force_login(world.operator_a)
    url = reverse("admin:accounts_organisation_change", args=[world.org_b.pk])
    client.post(url, {"name": "Hijacked", "slug": "org-b", "currency": "EUR"})
    assert Organisation.objects.get(pk=world.org_b.pk).name == "Org B"
    assert not AuditRecord.objects.exists()


def test_the_audit_admin_is_read_only_even_for_superusers(world, client, record):
    client.force_login(world.superuser)
    assert client.get(reverse("admin:accounts_auditrecord_changelist")).status_code == 200
    assert client.get(reverse("admin:accounts_auditrecord_add")).status_code == 403
    assert (
        client.post(
            reverse("admin:accounts_auditrecord_delete", args=[record.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    change = client.post(
        reverse("admin:accounts_auditrecord_change", args=[record.pk]), {"action": "admin.add"}
    )
    assert change.status_code == 403
    assert AuditRecord.objects.get(pk=record.pk).action == "admin.change"


# --- remote commands ---------------------------------------------------------------------------------


def test_a_command_to_an_offline_station_is_still_recorded(world):
    """The attempt is what is audited: a command refused for a station that is not connected is recorded
    with that outcome."""
    command = command_create(
        station=world.station_a1,
        action="Reset",
        request={"type": "Soft"},
        user=world.operator_a,
        source=CommandSource.PORTAL,
    )
    assert command.status == CommandStatus.FAILED
    record = AuditRecord.objects.get()
    assert (record.actor_id, record.organisation_id, record.action, record.object_type, record.object_id) == (
        world.operator_a.pk,
        world.org_a.pk,
        "command.sent",
        "stations.command",
        str(command.pk),
    )
    assert record.changes == {
        "station": "A1-CP1",
        "action": "Reset",
        "request": {"type": "Soft"},
        "source": "portal",
        "status": "failed",
    }


def test_a_command_records_secrets_masked(world):
    command_create(
        station=world.station_a1,
        action="ChangeConfiguration",
        # A valid key (40 hex digits): an invalid one is refused before anything is recorded.
        request={"key": "AuthorizationKey", "value": "0123456789abcdef0123456789abcdef01234567"},
        user=world.operator_a,
        queue_for_s=60,
    )
    assert AuditRecord.objects.get().changes["request"] == {"key": "AuthorizationKey", "value": "********"}


def test_the_systems_own_commands_are_not_audited(world):
    command_create(
        station=world.station_a1, action="SetChargingProfile", request={}, source=CommandSource.SYSTEM
    )
    assert not AuditRecord.objects.exists()


def test_a_command_through_the_api_is_recorded(world, api, fake_charger):
    world.station_a1.is_connected = True
    world.station_a1.protocol = "ocpp1.6"
    world.station_a1.save(update_fields=["is_connected", "protocol"])
    response = api(world.operator_a).post(
        "/api/v1/stations/A1-CP1/commands/reset/", {"kind": "soft"}, format="json"
    )
    assert response.status_code == 200, response.content
    record = AuditRecord.objects.get()
    assert (record.actor_id, record.action, record.changes["action"], record.changes["source"]) == (
        world.operator_a.pk,
        "command.sent",
        "Reset",
        "api",
    )


# --- exports ------------------------------------------------------------------------------------------


def test_an_export_job_writes_a_record(world):
    job = export_job_create(
        user=world.finance_a,
        kind="cdrs",
        filters=ExportFilters(period_from=date(2025, 3, 1), period_to=date(2025, 4, 1)),
    )
    record = AuditRecord.objects.get()
    assert (record.actor_id, record.organisation_id, record.action, record.object_type, record.object_id) == (
        world.finance_a.pk,
        world.org_a.pk,
        "export.created",
        "billing.exportjob",
        str(job.pk),
    )
    assert record.changes == {
        "kind": "cdrs",
        "streamed": False,
        "from": "2025-03-01",
        "to": "2025-04-01",
        "organisations": [world.org_a.pk],
        "sites": [],
    }


def test_a_streamed_export_writes_a_record(world, api, monkeypatch):
    monkeypatch.setattr(export_csv, "_db_runner", lambda func: sync_to_async(func, thread_sensitive=True)())

    async def keep_connection() -> None:
        pass

    monkeypatch.setattr(export_csv, "_request_connection_release", keep_connection)
    response = api(world.finance_a).get(
        f"/api/v1/exports/sessions.csv?from=2025-03-01&to=2025-04-01&site={world.site_a1.pk}"
    )
    assert response.status_code == 200

    async def consume() -> bytes:
        return b"".join([part async for part in response.streaming_content])

    async_to_sync(consume)()
    record = AuditRecord.objects.get()
    assert (record.actor_id, record.organisation_id, record.action, record.object_type) == (
        world.finance_a.pk,
        world.org_a.pk,
        "export.created",
        "",
    )
    assert record.changes == {
        "kind": "sessions",
        "streamed": True,
        "from": "2025-03-01",
        "to": "2025-04-01",
        "organisations": [world.org_a.pk],
        "sites": [world.site_a1.pk],
    }


def test_a_refused_export_writes_nothing(world, api):
    response = api(world.host_a1).get("/api/v1/exports/cdrs.csv?from=2025-03-01&to=2025-04-01")
    assert response.status_code == 403
    assert not AuditRecord.objects.exists()
