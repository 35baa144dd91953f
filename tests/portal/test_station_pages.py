"""Portal pages about stations: the overview, the station list and the station page with its commands, for every
standing role, and the denials (anonymous, another organisation, a role that may not command)."""

import pytest
from django.urls import reverse

from sessions.enums import SessionStatus
from stations.models import Command, Connector, DeviceVariable, Evse
from tests.factories import ChargingSessionFactory

pytestmark = pytest.mark.django_db


def page(client, user, url, method="get", data=None):
    client.force_login(user)
    return getattr(client, method)(url, data or {})


def station_url(identity: str, name: str = "portal:station-detail") -> str:
    return reverse(name, args=[identity])


@pytest.fixture
def evses(world):
    """A1-CP1 with EVSE 1 (Charging, an active session) and EVSE 2 (Available); A2-CP1 with one Faulted."""
    evse1 = Evse.objects.create(station=world.station_a1, evse_id=1)
    Connector.objects.create(evse=evse1, connector_id=1, status="Charging")
    evse2 = Evse.objects.create(station=world.station_a1, evse_id=2)
    Connector.objects.create(evse=evse2, connector_id=1, status="Available")
    evse_a2 = Evse.objects.create(station=world.station_a2, evse_id=1)
    Connector.objects.create(evse=evse_a2, connector_id=1, status="Faulted")
    session = ChargingSessionFactory(station=world.station_a1, evse=evse1, status=SessionStatus.ACTIVE)
    return session


def test_anonymous_is_sent_to_the_login_page(client, world):
    for url in (reverse("portal:overview"), reverse("portal:station-list"), station_url("A1-CP1")):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"] == f"/portal/login/?next={url}"


def test_the_site_root_leads_to_the_portal(client):
    assert client.get("/")["Location"] == "/portal/"


def test_overview_counts_connectors_by_status_within_the_users_scope(client, world, evses):
    world.station_a1.is_connected = True
    world.station_a1.save()
    body = page(client, world.operator_a, reverse("portal:overview")).content.decode()
    assert '1</span><span class="label">of 3 stations online' not in body  # operator A sees 2 stations
    assert '<span class="value" id="stations-online">1</span><span class="label">of 2 stations online' in body
    # A1-CP1 is online: its connectors count as they are; A2-CP1 is offline: its Faulted connector shows Offline.
    assert '<span class="value">1</span><span class="label">connectors Available' in body
    assert '<span class="value">1</span><span class="label">connectors Charging' in body
    assert '<span class="value">1</span><span class="label">connectors Offline' in body
    assert "A1-CP1" in body and "A2-CP1" in body and "B1-CP1" not in body

    host = page(client, world.host_a1, reverse("portal:overview")).content.decode()
    assert "A1-CP1" in host and "A2-CP1" not in host and "B1-CP1" not in host
    assert '<span class="value" id="stations-online">1</span><span class="label">of 1 stations online' in host

    other = page(client, world.operator_b, reverse("portal:overview")).content.decode()
    assert "B1-CP1" in other and "A1-CP1" not in other


def test_station_list_is_scoped_and_filters(client, world):
    body = page(client, world.operator_a, reverse("portal:station-list")).content.decode()
    assert "A1-CP1" in body and "A2-CP1" in body and "B1-CP1" not in body
    body = page(
        client, world.operator_a, reverse("portal:station-list") + f"?site={world.site_a2.pk}"
    ).content.decode()
    assert "A2-CP1" in body and "A1-CP1" not in body
    body = page(client, world.operator_a, reverse("portal:station-list") + "?q=zzz").content.decode()
    assert "No stations match." in body
    body = page(client, world.host_a1, reverse("portal:station-list")).content.decode()
    assert "A1-CP1" in body and "A2-CP1" not in body


def test_station_page_shows_evses_session_commands_log_and_configuration(client, world, evses):
    DeviceVariable.objects.create(
        station=world.station_a1,
        component="OCPPCommCtrlr",
        variable="HeartbeatInterval",
        value="300",
        updated_at=evses.started_at,
    )
    response = page(client, world.operator_a, station_url("A1-CP1"))
    body = response.content.decode()
    assert response.status_code == 200
    assert f'href="/portal/sessions/{evses.pk}/"' in body
    assert 'data-testid="stop-1"' in body and 'data-testid="stop-2"' not in body
    assert "HeartbeatInterval" in body and "300" in body
    assert "No commands sent yet." in body
    assert "Hard reset" in body


def test_roles_without_command_see_the_station_but_no_buttons(client, world, evses):
    body = page(client, world.finance_a, station_url("A1-CP1")).content.decode()
    assert "A1-CP1" in body
    assert "Remote commands" not in body and "Stop charging" not in body


def test_another_organisations_station_is_404_everywhere(client, world):
    for name in (
        "portal:station-detail",
        "portal:station-commands",
        "portal:station-messages",
        "portal:station-configuration",
    ):
        assert page(client, world.operator_b, station_url("A1-CP1", name)).status_code == 404
        assert page(client, world.host_a1, station_url("A2-CP1", name)).status_code == 404
        assert page(client, world.operator_a, station_url("NOPE", name)).status_code == 404


def test_commands_need_the_command_capability_and_change_nothing_when_denied(client, world, evses):
    url = reverse("portal:station-command", args=["A1-CP1", "reset"])
    assert page(client, world.finance_a, url, "post", {"kind": "soft"}).status_code == 403
    assert page(client, world.operator_b, url, "post", {"kind": "soft"}).status_code == 404
    url_a2 = reverse("portal:station-command", args=["A2-CP1", "reset"])
    assert page(client, world.host_a1, url_a2, "post", {"kind": "soft"}).status_code == 404
    assert not Command.objects.exists()
    client.logout()
    assert client.post(url, {"kind": "soft"}).status_code == 302
    assert not Command.objects.exists()


def test_a_command_to_an_offline_station_is_recorded_and_reported(client, world, evses):
    world.station_a1.protocol = "ocpp1.6"
    world.station_a1.save()
    url = reverse("portal:station-command", args=["A1-CP1", "reset"])
    response = page(client, world.host_a1, url, "post", {"kind": "hard"})
    assert response.status_code == 302 and response["Location"] == station_url("A1-CP1")
    command = Command.objects.get()
    assert (command.action, command.request, command.status, command.source, command.requested_by) == (
        "Reset",
        {"type": "Hard"},
        "failed",
        "portal",
        world.host_a1,
    )
    body = client.get(station_url("A1-CP1")).content.decode()
    assert "Reset:" in body  # the outcome message
    assert "Reset" in body and "failed" in body.lower()


def test_bad_command_input_is_a_message_not_a_command(client, world, evses):
    world.station_a1.protocol = "ocpp1.6"
    world.station_a1.save()
    response = page(
        client,
        world.operator_a,
        reverse("portal:station-command", args=["A1-CP1", "reset"]),
        "post",
        {"kind": "explode"},
    )
    assert response.status_code == 302
    assert not Command.objects.exists()
    body = client.get(station_url("A1-CP1")).content.decode()
    assert "Reset: kind: Select a valid choice." in body
    response = page(
        client, world.operator_a, reverse("portal:station-command", args=["A1-CP1", "launch"]), "post"
    )
    assert response.status_code == 302 and not Command.objects.exists()


def test_site_page_is_scoped(client, world):
    url = reverse("portal:site-detail", args=[world.site_a1.pk])
    body = page(client, world.host_a1, url).content.decode()
    assert "A1-CP1" in body and "Europe/Berlin" in body
    assert (
        page(client, world.host_a1, reverse("portal:site-detail", args=[world.site_a2.pk])).status_code == 404
    )
    assert (
        page(client, world.host_a1, reverse("portal:site-detail", args=[world.site_b1.pk])).status_code == 404
    )
    assert page(client, world.operator_b, url).status_code == 404
    assert page(client, world.finance_a, url).status_code == 200
    client.logout()
    assert client.get(url)["Location"] == f"/portal/login/?next={url}"
