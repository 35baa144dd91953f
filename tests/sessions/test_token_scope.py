"""Id tokens restricted to sites and stations: refused elsewhere (1.6 Invalid, 2.0.1 NotAtThisLocation), at
no extra query for unrestricted tokens; and the id-token API's allowed_sites / allowed_stations / in_local_list."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import api_token_get_or_create
from cpms.errors import PermissionDenied
from cpms.ocpp.mappers import format_datetime
from sessions.models import ChargingSession, IdToken
from sessions.services.tokens import id_token_delete
from sessions.services.transactions import id_token_authorize
from tests.factories import ChargingStationFactory, IdTokenFactory
from tests.ocpp.dialects import DIALECTS
from tests.ocpp.harness import Harness, inline_db  # noqa: F401
from tests.support import row


@pytest.fixture
def tokens(world):
    """FREE: anywhere in org A. SITE-A1: site A1 only. STATION-A2: station A2 only. BOTH: site A1 and
    station A2. BLOCKED-A1: blocked, site A1 only."""
    free = IdTokenFactory(organisation=world.org_a, value="FREE")
    site = IdTokenFactory(organisation=world.org_a, value="SITE-A1")
    site.allowed_sites.set([world.site_a1])
    station = IdTokenFactory(organisation=world.org_a, value="STATION-A2")
    station.allowed_stations.set([world.station_a2])
    both = IdTokenFactory(organisation=world.org_a, value="BOTH")
    both.allowed_sites.set([world.site_a1])
    both.allowed_stations.set([world.station_a2])
    blocked = IdTokenFactory(organisation=world.org_a, value="BLOCKED-A1", status="Blocked")
    blocked.allowed_sites.set([world.site_a1])
    return {"free": free, "site": site, "station": station, "both": both, "blocked": blocked}


@pytest.mark.parametrize(
    ("value", "at_a1", "at_a2", "at_a1_second"),
    [
        ("FREE", "Accepted", "Accepted", "Accepted"),
        ("SITE-A1", "Accepted", "NotAtThisLocation", "Accepted"),
        ("STATION-A2", "NotAtThisLocation", "Accepted", "NotAtThisLocation"),
        ("BOTH", "Accepted", "Accepted", "Accepted"),
        ("BLOCKED-A1", "Blocked", "Blocked", "Blocked"),
    ],
)
def test_authorize_by_station(world, tokens, value, at_a1, at_a2, at_a1_second):
    second_at_a1 = ChargingStationFactory(identity="A1-CP2", site=world.site_a1)
    statuses = [
        id_token_authorize(organisation_id=world.org_a.pk, value=value, station_id=station.pk).status
        for station in (world.station_a1, world.station_a2, second_at_a1)
    ]
    assert statuses == [at_a1, at_a2, at_a1_second]


def test_without_a_station_restrictions_do_not_apply(world, tokens):
    assert id_token_authorize(organisation_id=world.org_a.pk, value="STATION-A2").status == "Accepted"


def test_an_expired_restricted_token_is_expired_not_elsewhere(world, tokens):
    IdToken.objects.filter(pk=tokens["site"].pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    info = id_token_authorize(organisation_id=world.org_a.pk, value="SITE-A1", station_id=world.station_a2.pk)
    assert info.status == "Expired"


@pytest.mark.parametrize("value", ["FREE", "SITE-A1"])
def test_the_lookup_is_one_query_restricted_or_not(world, tokens, value, django_assert_num_queries):
    with django_assert_num_queries(1):
        id_token_authorize(organisation_id=world.org_a.pk, value=value, station_id=world.station_a2.pk)


# --- through the OCPP handlers -------------------------------------------------------------------------


@pytest.fixture(params=DIALECTS, ids=lambda d: d.name)
def dialect(request):
    return request.param()


@pytest.mark.usefixtures("inline_db")
def test_a_token_restricted_to_another_site_cannot_start(world, tokens, dialect):
    at = timezone.now().replace(microsecond=0) - timedelta(minutes=1)
    refused = dialect.start("TX-A2", "SITE-A1", 1000, at)
    answer = Harness(dialect.cp_class, world.station_a2).call(*refused, unique_id="s1")
    expected = "Invalid" if dialect.name == "1.6" else "NotAtThisLocation"
    assert dialect.start_token_status(answer) == expected
    session = ChargingSession.objects.get(station=world.station_a2)
    # NotAtThisLocation is an answer, not a token status: the session keeps Invalid.
    assert (session.id_tag, session.id_token_id, session.id_token_status) == (
        "SITE-A1",
        tokens["site"].pk,
        "Invalid",
    )

    accepted = Harness(dialect.cp_class, world.station_a1).call(
        *dialect.start("TX-A1", "SITE-A1", 1000, at), unique_id="s2"
    )
    assert dialect.start_token_status(accepted) == "Accepted"


@pytest.mark.usefixtures("inline_db")
def test_a_201_token_presented_during_the_transaction_is_checked_at_the_station(world, tokens):
    at = format_datetime(timezone.now() - timedelta(minutes=1))
    cp = Harness(DIALECTS[1].cp_class, world.station_a2)
    started = {
        "eventType": "Started",
        "timestamp": at,
        "triggerReason": "CablePluggedIn",
        "seqNo": 0,
        "transactionInfo": {"transactionId": "TX-9"},
        "evse": {"id": 1, "connectorId": 1},
    }
    assert cp.call("TransactionEvent", started, "e0")[:2] == [3, "e0"]
    authorised = {
        **started,
        "eventType": "Updated",
        "triggerReason": "Authorized",
        "seqNo": 1,
        "idToken": {"idToken": "SITE-A1", "type": "ISO14443"},
    }
    assert cp.call("TransactionEvent", authorised, "e1") == [
        3,
        "e1",
        {"idTokenInfo": {"status": "NotAtThisLocation"}},
    ]
    assert ChargingSession.objects.get(station=world.station_a2).id_token_status == "Invalid"


@pytest.mark.usefixtures("inline_db")
def test_authorize_of_a_token_restricted_to_another_site(world, tokens, dialect):
    answer = Harness(dialect.cp_class, world.station_a2).call(*dialect.authorize("SITE-A1"))
    assert dialect.token_status(answer) == ("Invalid" if dialect.name == "1.6" else "NotAtThisLocation")


# --- the id-token API ---------------------------------------------------------------------------------


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_get_or_create(user=user).key}")
    return client


def test_create_a_restricted_token_in_the_local_list(world):
    body = {
        "organisation": world.org_a.pk,
        "value": "RESTRICTED",
        "allowed_sites": [world.site_a1.pk],
        "allowed_stations": ["A2-CP1"],
        "in_local_list": True,
    }
    response = client_for(world.operator_a).post("/api/v1/id-tokens/", body, format="json")
    assert response.status_code == 201
    token = IdToken.objects.get(value="RESTRICTED")
    assert (
        response.json()["allowed_sites"],
        response.json()["allowed_stations"],
        response.json()["in_local_list"],
    ) == ([world.site_a1.pk], ["A2-CP1"], True)
    assert list(token.allowed_sites.all()) == [world.site_a1]
    assert list(token.allowed_stations.all()) == [world.station_a2]
    assert token.in_local_list is True


@pytest.mark.parametrize(
    ("field", "foreign", "message"),
    [
        ("allowed_sites", "site_b1", "Sites not found in this organisation: {pk}."),
        ("allowed_sites", 999999, "Sites not found in this organisation: 999999."),
        ("allowed_stations", "B1-CP1", "Stations not found in this organisation: 'B1-CP1'."),
        ("allowed_stations", "NOPE", "Stations not found in this organisation: 'NOPE'."),
    ],
)
def test_create_refuses_places_of_another_organisation(world, field, foreign, message):
    if foreign == "site_b1":
        foreign = world.site_b1.pk
    body = {"organisation": world.org_a.pk, "value": "NEW", field: [foreign]}
    response = client_for(world.operator_a).post("/api/v1/id-tokens/", body, format="json")
    assert response.status_code == 400
    assert response.json() == {"detail": message.format(pk=foreign)}
    assert not IdToken.objects.filter(value="NEW").exists()


def test_patch_replaces_the_places(world, tokens):
    token = tokens["both"]
    response = client_for(world.operator_a).patch(
        f"/api/v1/id-tokens/{token.pk}/", {"allowed_sites": [], "allowed_stations": ["A1-CP1"]}, format="json"
    )
    assert response.status_code == 200
    assert (response.json()["allowed_sites"], response.json()["allowed_stations"]) == ([], ["A1-CP1"])
    assert list(token.allowed_sites.all()) == []
    assert list(token.allowed_stations.all()) == [world.station_a1]


def test_patch_with_a_foreign_station_changes_nothing(world, tokens):
    token = tokens["both"]
    before = row(token)
    response = client_for(world.operator_a).patch(
        f"/api/v1/id-tokens/{token.pk}/",
        {"status": "Blocked", "allowed_sites": [], "allowed_stations": ["B1-CP1"]},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Stations not found in this organisation: 'B1-CP1'."}
    assert row(token) == before
    assert list(token.allowed_sites.all()) == [world.site_a1]
    assert list(token.allowed_stations.all()) == [world.station_a2]


def test_finance_cannot_restrict_a_token(world, tokens):
    token = tokens["free"]
    response = client_for(world.finance_a).patch(
        f"/api/v1/id-tokens/{token.pk}/", {"allowed_sites": [world.site_a1.pk]}, format="json"
    )
    assert response.status_code == 403
    assert list(token.allowed_sites.all()) == []


def test_only_managers_delete_tokens(world, tokens):
    with pytest.raises(PermissionDenied):
        id_token_delete(actor=world.finance_a, id_token=tokens["free"])
    assert IdToken.objects.filter(pk=tokens["free"].pk).exists()
    id_token_delete(actor=world.operator_a, id_token=tokens["free"])
    assert not IdToken.objects.filter(pk=tokens["free"].pk).exists()


# --- admin -----------------------------------------------------------------------------------------------


ADMIN_FORM = {
    "value": "FREE",
    "type": "ISO14443",
    "status": "Accepted",
    "expires_at_0": "",
    "expires_at_1": "",
    "group": "",
    "owner_name": "",
    "owner_email": "",
}


def staff_client(user) -> Client:
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(user)
    return client


def test_admin_sets_places_through_the_service(world, tokens):
    token = tokens["free"]
    client = staff_client(world.operator_a)
    form = {
        **ADMIN_FORM,
        "in_local_list": "on",
        "allowed_sites": [world.site_a1.pk],
        "allowed_stations": [world.station_a2.pk],
    }
    assert client.post(f"/admin/charging/idtoken/{token.pk}/change/", form).status_code == 302
    token.refresh_from_db()
    assert (token.in_local_list, list(token.allowed_sites.all()), list(token.allowed_stations.all())) == (
        True,
        [world.site_a1],
        [world.station_a2],
    )


def test_admin_does_not_offer_foreign_sites(world, tokens):
    token = tokens["free"]
    response = staff_client(world.operator_a).post(
        f"/admin/charging/idtoken/{token.pk}/change/", {**ADMIN_FORM, "allowed_sites": [world.site_b1.pk]}
    )
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["allowed_sites"]
    assert list(token.allowed_sites.all()) == []
