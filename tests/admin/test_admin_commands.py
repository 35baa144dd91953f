"""Remote commands in the admin: the station's commands page (one command, answered at once) and the bulk
actions on the station list (a job), with their denials."""

from django.urls import reverse

from stations.models import ChargingStation, Command, CommandJob


def commands_url(station) -> str:
    return reverse("admin:stations_chargingstation_commands", args=[station.pk])


def online(*stations, protocol="ocpp1.6"):
    ChargingStation.objects.filter(pk__in=[s.pk for s in stations]).update(
        is_connected=True, protocol=protocol
    )


def test_operator_sends_a_command_from_the_station_page(world, admin_client_for, fake_charger):
    online(world.station_a1)
    client = admin_client_for(world.operator_a)
    page = client.get(commands_url(world.station_a1))
    assert page.status_code == 200
    assert b"No commands sent to this station yet." in page.content

    response = client.post(commands_url(world.station_a1), {"operation": "soft_reset"}, follow=True)
    assert response.status_code == 200
    command = Command.objects.get()
    assert (command.action, command.request, command.source, command.requested_by) == (
        "Reset",
        {"type": "Soft"},
        "admin",
        world.operator_a,
    )
    assert "Reset: {&#x27;status&#x27;: &#x27;Accepted&#x27;}" in response.content.decode()
    # The change page links to it.
    change = client.get(reverse("admin:stations_chargingstation_change", args=[world.station_a1.pk]))
    assert commands_url(world.station_a1).encode() in change.content


def test_version_neutral_buttons_send_each_version_its_own_call(world, admin_client_for, fake_charger):
    online(world.station_a2, protocol="ocpp2.0.1")
    admin_client_for(world.operator_a).post(commands_url(world.station_a2), {"operation": "soft_reset"})
    assert fake_charger.received == [("A2-CP1", "Reset", {"type": "OnIdle"})]


def test_refused_and_failed_commands_are_reported(world, admin_client_for, fake_charger):
    client = admin_client_for(world.operator_a)
    offline = client.post(commands_url(world.station_a1), {"operation": "clear_cache"}, follow=True)
    assert "has never connected" in offline.content.decode()  # no protocol yet: nothing can be built
    online(world.station_a1)
    ChargingStation.objects.filter(pk=world.station_a1.pk).update(is_connected=False)
    response = client.post(commands_url(world.station_a1), {"operation": "clear_cache"}, follow=True)
    assert "ClearCache Failed: Station A1-CP1 is not connected." in response.content.decode()
    assert Command.objects.get().error_code == "NotConnected"


def test_commands_page_denials(world, admin_client_for, fake_charger):
    online(world.station_a1, world.station_a2, world.station_b1)
    assert admin_client_for(world.host_a1).get(commands_url(world.station_a2)).status_code == 404
    assert admin_client_for(world.operator_b).get(commands_url(world.station_a1)).status_code == 404
    assert admin_client_for(world.finance_a).get(commands_url(world.station_a1)).status_code == 403
    assert (
        admin_client_for(world.finance_a)
        .post(commands_url(world.station_a1), {"operation": "hard_reset"})
        .status_code
        == 403
    )
    assert (
        admin_client_for(world.host_a1)
        .post(commands_url(world.station_a1), {"operation": "clear_cache"})
        .status_code
        == 302
    )
    assert [c.station.identity for c in Command.objects.all()] == ["A1-CP1"]
    assert fake_charger.received == [("A1-CP1", "ClearCache", {})]


def test_bulk_action_starts_a_job_of_the_stations_the_user_may_command(world, admin_client_for, fake_charger):
    online(world.station_a1, world.station_a2)
    changelist = reverse("admin:stations_chargingstation_changelist")
    response = admin_client_for(world.operator_a).post(
        changelist,
        {"action": "bulk_clear_cache", "_selected_action": [world.station_a1.pk, world.station_a2.pk]},
        follow=True,
    )
    assert response.status_code == 200
    job = CommandJob.objects.get()
    assert (job.kind, job.total, job.organisation, job.created_by) == (
        "command",
        2,
        world.org_a,
        world.operator_a,
    )
    assert sorted(job.targets.values_list("station__identity", flat=True)) == ["A1-CP1", "A2-CP1"]
    assert sorted(job.request["calls"]) == ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"]


def test_bulk_actions_are_not_offered_to_users_who_cannot_command(world, admin_client_for, fake_charger):
    changelist = reverse("admin:stations_chargingstation_changelist")
    client = admin_client_for(world.finance_a)
    page = client.get(changelist)
    assert b"bulk_clear_cache" not in page.content
    client.post(changelist, {"action": "bulk_clear_cache", "_selected_action": [world.station_a1.pk]})
    assert not CommandJob.objects.exists()


def test_apply_template_action_asks_which_template_then_starts_a_job(world, admin_client_for, fake_charger):
    from stations.models import ConfigurationTemplate

    online(world.station_a1, world.station_a2)
    template = ConfigurationTemplate.objects.create(
        organisation=world.org_a, name="Defaults", protocol="ocpp1.6", settings=[{"key": "K", "value": "1"}]
    )
    ConfigurationTemplate.objects.create(
        organisation=world.org_b, name="Theirs", protocol="ocpp1.6", settings=[]
    )
    changelist = reverse("admin:stations_chargingstation_changelist")
    client = admin_client_for(world.operator_a)
    selected = [world.station_a1.pk, world.station_a2.pk]
    page = client.post(changelist, {"action": "bulk_apply_template", "_selected_action": selected})
    assert page.status_code == 200
    assert b"Defaults" in page.content and b"Theirs" not in page.content
    assert not CommandJob.objects.exists()

    done = client.post(
        changelist,
        {
            "action": "bulk_apply_template",
            "_selected_action": selected,
            "choice": template.pk,
            "confirm": "yes",
        },
        follow=True,
    )
    job = CommandJob.objects.get()
    assert (job.kind, job.template, list(job.targets.values_list("station__identity", flat=True))) == (
        "configuration",
        template,
        ["A1-CP1", "A2-CP1"],
    )
    assert f"job #{job.pk} started for 2 station(s)" in done.content.decode()


def test_apply_template_of_another_organisation_is_refused(world, admin_client_for, fake_charger):
    from stations.models import ConfigurationTemplate

    online(world.station_a1)
    theirs = ConfigurationTemplate.objects.create(
        organisation=world.org_b, name="Theirs", protocol="ocpp1.6", settings=[{"key": "K", "value": "1"}]
    )
    admin_client_for(world.operator_a).post(
        reverse("admin:stations_chargingstation_changelist"),
        {
            "action": "bulk_apply_template",
            "_selected_action": [world.station_a1.pk],
            "choice": theirs.pk,
            "confirm": "yes",
        },
    )
    assert not CommandJob.objects.exists()


def test_firmware_action_starts_a_campaign(world, admin_client_for, fake_charger):
    from stations.models import FirmwareFile

    online(world.station_a1)
    firmware = FirmwareFile.objects.create(
        organisation=world.org_a, name="fw", version="2", sha256="0" * 64, download_token="tok-admin"
    )
    admin_client_for(world.operator_a).post(
        reverse("admin:stations_chargingstation_changelist"),
        {
            "action": "bulk_update_firmware",
            "_selected_action": [world.station_a1.pk],
            "choice": firmware.pk,
            "confirm": "yes",
        },
    )
    job = CommandJob.objects.get()
    assert (job.kind, job.firmware, job.total) == ("firmware", firmware, 1)


def test_command_page_masks_passwords(world, admin_client_for):
    from django.utils import timezone

    command = Command.objects.create(
        station=world.station_a1,
        action="ChangeConfiguration",
        request={"key": "AuthorizationKey", "value": "0123456789abcdef0123456789abcdef01234567"},
        timeout_s=30,
        created_at=timezone.now(),
    )
    page = admin_client_for(world.operator_a).get(reverse("admin:stations_command_change", args=[command.pk]))
    assert page.status_code == 200
    assert b"0123456789abcdef" not in page.content
    assert b"********" in page.content
