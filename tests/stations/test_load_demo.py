import io
import re

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.core.management.base import CommandError
from guardian.models import UserObjectPermission

from accounts.models import Membership, Organisation, User
from cpms.ocpi.models import OcpiParty
from sessions.models import IdToken
from stations.models import ChargingStation, Connector, Evse, Site
from stations.scope import station_scope_q
from stations.services.credentials import password_hash_check

pytestmark = pytest.mark.django_db

SNAPSHOT_MODELS = (Organisation, Site, ChargingStation, Evse, Connector, IdToken, User, Membership, OcpiParty)


def load_demo() -> str:
    out = io.StringIO()
    call_command("load_demo", "--base-url", "http://127.0.0.1:8000", stdout=out)
    return out.getvalue()


def snapshot() -> dict[str, list[dict]]:
    """Every column of every row the demo writes (updated_at and password hashes included)."""
    rows = {model.__name__: list(model.objects.order_by("pk").values()) for model in SNAPSHOT_MODELS}
    rows["UserObjectPermission"] = list(
        UserObjectPermission.objects.order_by("pk").values("user_id", "permission__codename", "object_pk")
    )
    return rows


def printed_logins(output: str) -> dict[str, str]:
    section = output.split("Logins", 1)[1].split("\n\n", 1)[0]
    return dict(re.findall(r"^  (admin|operator|staff|host|finance|support) +(\S+) ", section, re.MULTILINE))


def printed_stations(output: str) -> dict[str, tuple[str, str]]:
    """identity -> (password, ws URL) from the Chargers section."""
    section = output.split("Chargers:", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^  (DEMO-\S+) +(\S+) +.+? +(ws://\S+)$", section, re.MULTILINE)
    return {identity: (password, url) for identity, password, url in rows}


def test_creates_the_demo_world():
    output = load_demo()

    org = Organisation.objects.get(slug="demo")
    assert org.name == "Demo Charging Co"
    sites = {site.name: site for site in Site.objects.filter(organisation=org)}
    assert {name: (s.time_zone, s.grid_capacity_w) for name, s in sites.items()} == {
        "Berlin Depot": ("Europe/Berlin", 100_000),
        "Boston Plaza": ("America/New_York", 60_000),
    }
    assert all(site.address and site.city and site.country for site in sites.values())
    stations = ChargingStation.objects.filter(organisation=org)
    assert {(s.identity, s.site.name, s.security_profile) for s in stations} == {
        ("DEMO-BER-01", "Berlin Depot", 1),
        ("DEMO-BER-02", "Berlin Depot", 1),
        ("DEMO-BOS-01", "Boston Plaza", 1),
        ("DEMO-BOS-02", "Boston Plaza", 1),
    }
    for station in stations:
        evses = list(station.evses.order_by("evse_id"))
        assert [evse.evse_id for evse in evses] == [1, 2]
        for evse in evses:
            connectors = list(evse.connectors.all())
            assert [c.connector_id for c in connectors] == [1]
            assert connectors[0].connector_type != "Unknown"
            assert connectors[0].max_power_w == evse.max_power_w > 0
    assert dict(IdToken.objects.filter(organisation=org).values_list("value", "status")) == {
        "DEMO-FLEET": "Accepted",
        "DEMO-TAG-OK": "Accepted",
        "DEMO-TAG-OK-2": "Accepted",
        "DEMO-TAG-BLOCKED": "Blocked",
        "DEMO-TAG-EXPIRED": "Expired",
    }
    assert IdToken.objects.get(value="DEMO-TAG-OK").group.value == "DEMO-FLEET"
    assert dict(Membership.objects.filter(organisation=org).values_list("user__username", "role")) == {
        "operator": "operator_admin",
        "staff": "operator_staff",
        "host": "site_host",
        "finance": "finance",
        "support": "support",
    }
    assert User.objects.get(username="admin").is_superuser
    assert set(User.objects.filter(is_staff=True).values_list("username", flat=True)) == {
        "admin",
        "operator",
        "staff",
        "host",
        "finance",
        "support",
    }
    assert "must not be used in production" in output


def test_second_run_changes_nothing():
    load_demo()
    before = snapshot()
    assert {name: len(rows) for name, rows in before.items()} == {
        "Organisation": 1,
        "Site": 2,
        "ChargingStation": 4,
        "Evse": 8,
        "Connector": 8,
        "IdToken": 5,
        "User": 6,
        "Membership": 5,
        "UserObjectPermission": 3,  # view, operate and change (prices) on Berlin Depot
        "OcpiParty": 1,
    }

    output = load_demo()

    assert snapshot() == before
    assert "nothing changed" in output


def test_second_run_keeps_changed_passwords_and_roles():
    load_demo()
    admin = User.objects.get(username="admin")
    admin.set_password("a-real-password-now")
    admin.save()
    Membership.objects.filter(user__username="support").update(role="finance")
    station = ChargingStation.objects.get(identity="DEMO-BER-01")
    station.password_hash = ""
    station.save()
    before = snapshot()

    load_demo()

    assert snapshot() == before
    assert authenticate(username="admin", password="admin-demo") is None


def test_printed_logins_work(client):
    logins = printed_logins(load_demo())

    assert set(logins) == {"admin", "operator", "staff", "host", "finance", "support"}
    for username, password in logins.items():
        assert client.login(username=username, password=password), username
        assert client.get("/admin/").status_code == 200
        client.logout()


def test_admin_login_form_accepts_printed_password(client):
    logins = printed_logins(load_demo())

    response = client.post(
        "/admin/login/?next=/admin/", {"username": "operator", "password": logins["operator"]}
    )

    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"


def test_printed_station_passwords_and_urls():
    stations = printed_stations(load_demo())

    assert set(stations) == {"DEMO-BER-01", "DEMO-BER-02", "DEMO-BOS-01", "DEMO-BOS-02"}
    for identity, (password, url) in stations.items():
        station = ChargingStation.objects.get(identity=identity)
        assert password_hash_check(password, station.password_hash), identity
        assert not password_hash_check(password + "x", station.password_hash)
        assert url == f"ws://127.0.0.1:8000/ocpp/{identity}"


def test_host_sees_only_berlin_stations():
    load_demo()

    def visible(username: str) -> set[str]:
        user = User.objects.get(username=username)
        return set(
            ChargingStation.objects.filter(station_scope_q(user=user)).values_list("identity", flat=True)
        )

    assert visible("host") == {"DEMO-BER-01", "DEMO-BER-02"}
    everything = {"DEMO-BER-01", "DEMO-BER-02", "DEMO-BOS-01", "DEMO-BOS-02"}
    for username in ("admin", "operator", "staff", "finance", "support"):
        assert visible(username) == everything, username


def test_station_identity_taken_by_another_organisation_is_refused():
    other = Organisation.objects.create(name="Other", slug="other")
    ChargingStation.objects.create(identity="DEMO-BOS-02", organisation=other)

    with pytest.raises(CommandError, match="DEMO-BOS-02 already belongs to organisation Other"):
        load_demo()

    # One transaction: nothing of the demo was left behind.
    assert not Organisation.objects.filter(slug="demo").exists()
    assert not User.objects.exists()


def test_admin_that_is_not_a_superuser_is_refused():
    User.objects.create_user(username="admin", password="x-not-demo-1")

    with pytest.raises(CommandError, match="'admin' exists but is not a superuser"):
        load_demo()

    assert not Organisation.objects.exists()
    assert User.objects.get(username="admin").check_password("x-not-demo-1")
