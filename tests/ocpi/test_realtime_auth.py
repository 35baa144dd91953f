"""Real-time authorisation of partners' tokens (cpms/ocpi/services/realtime.py) against a real HTTP eMSP run in
the test (a threaded http.server answering the tokens SENDER `.../{uid}/authorize`), and through the OCPP
Authorize handlers of both versions."""

import asyncio
import base64
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cpms.ocpi import client as ocpi_client
from cpms.ocpi.models import OcpiAuthorization, OcpiPartner, OcpiToken
from cpms.ocpi.services import realtime
from cpms.ocpi.services.realtime import realtime_authorize, roaming_token_authorize
from cpms.ocpi.services.tokens import token_put
from cpms.ocpp.v16.handlers import V16ChargePoint
from cpms.ocpp.v201.handlers import V201ChargePoint
from sessions.models import IdToken
from sessions.services.transactions import id_token_authorize
from tests.factories import IdTokenFactory
from tests.ocpi.conftest import partner_registered
from tests.ocpp.harness import Harness, inline_db  # noqa: F401

pytestmark = pytest.mark.usefixtures("inline_db")

TIMEOUT_S = 0.6


@pytest.fixture(autouse=True)
def _short_timeout(settings):
    settings.OCPI_REALTIME_AUTH_TIMEOUT_S = TIMEOUT_S


def ocpi_token(uid: str, *, country_code: str = "DE", party_id: str = "EMS", **changes: Any) -> dict:
    data = {
        "country_code": country_code,
        "party_id": party_id,
        "uid": uid,
        "type": "RFID",
        "contract_id": f"{country_code}-{party_id}-C{uid}",
        "issuer": "Test eMSP",
        "valid": True,
        "whitelist": "NEVER",
        "last_updated": "2026-01-02T03:04:05Z",
    }
    data.update(changes)
    return data


# --- a tiny eMSP ------------------------------------------------------------------------------------
@dataclass
class Emsp:
    """Answers POST <base>/tokens/<uid>/authorize: `answers[uid]` = (allowed or None for 404, delay_s,
    the Token to return). Records every request."""

    answers: dict[str, tuple[str | None, float, dict | None]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def tokens_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/ocpi/2.2.1/tokens"

    def answer(
        self, uid: str, allowed: str | None, *, delay_s: float = 0.0, token: dict | None = None
    ) -> None:
        self.answers[uid] = (allowed, delay_s, token)


def _handler(emsp: Emsp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = orjson.loads(self.rfile.read(length)) if length else None
            emsp.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            uid = self.path.split("/authorize", 1)[0].rsplit("/", 1)[1]
            allowed, delay_s, token = emsp.answers.get(uid, (None, 0.0, None))
            time.sleep(delay_s)
            if allowed is None:
                status, envelope = (
                    404,
                    {"status_code": 2004, "status_message": "Unknown token", "timestamp": "x"},
                )
            else:
                info = {
                    "allowed": allowed,
                    "token": token or ocpi_token(uid),
                    "authorization_reference": "AUTH-1",
                }
                status, envelope = 200, {"data": info, "status_code": 1000, "timestamp": "x"}
            payload = orjson.dumps(envelope)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the caller gave up (timeout): nothing to answer to

    return Handler


@pytest.fixture
def emsp() -> Iterator[Emsp]:
    emsp = Emsp()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(emsp))
    server.daemon_threads = True
    emsp.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield emsp
    server.shutdown()
    server.server_close()


@pytest.fixture
def down_url() -> str:
    """A URL where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/ocpi/2.2.1/tokens"


def tokens_sender_at(partner: OcpiPartner, url: str | None, *, fallback: str = "REJECT") -> None:
    endpoints = [e for e in partner.endpoints if e["identifier"] != "tokens"]
    if url is not None:
        endpoints.append({"identifier": "tokens", "role": "SENDER", "url": url})
    OcpiPartner.objects.filter(pk=partner.pk).update(endpoints=endpoints, realtime_auth_fallback=fallback)


@pytest.fixture
def org_a(roaming, world, emsp):
    """Organisation A asks partner_a (at `emsp`); partner_a2 has no tokens SENDER unless a test gives it one."""
    tokens_sender_at(roaming.partner_a, emsp.tokens_url)
    tokens_sender_at(roaming.partner_a2, None)
    return world


def authorize(world, value: str, **kwargs: Any):
    return asyncio.run(
        realtime_authorize(
            organisation_id=world.org_a.pk, value=value, station_id=world.station_a1.pk, **kwargs
        )
    )


def push(partner: OcpiPartner, uid: str, **changes: Any) -> OcpiToken:
    partner = OcpiPartner.objects.select_related("party").get(pk=partner.pk)
    return token_put(
        partner=partner,
        from_party=("DE", "EMS"),
        country_code="DE",
        party_id="EMS",
        uid=uid,
        token_type="RFID",
        body=ocpi_token(uid, **changes),
    )


# --- unknown tokens ---------------------------------------------------------------------------------
def test_an_unknown_token_allowed_by_its_emsp_is_accepted_stored_and_authorised(org_a, roaming, emsp):
    emsp.answer("CARD-1", "ALLOWED")
    info = authorize(org_a, "CARD-1")
    roaming.partner_a.refresh_from_db()
    group_value = f"OCPI-GROUP-{roaming.partner_a.pk}"
    assert (info.status, info.known, info.group_value) == ("Accepted", True, group_value)

    [request] = emsp.requests
    assert request["path"] == "/ocpi/2.2.1/tokens/CARD-1/authorize?type=RFID"
    assert request["body"] == {"location_id": str(org_a.site_a1.pk)}
    headers = request["headers"]
    assert headers["Authorization"] == "Token " + base64.b64encode(b"out-emsp-a").decode()
    assert (headers["OCPI-from-country-code"], headers["OCPI-from-party-id"]) == ("NL", "AAA")
    assert (headers["OCPI-to-country-code"], headers["OCPI-to-party-id"]) == ("DE", "EMS")

    token = OcpiToken.objects.select_related("id_token").get()
    assert (token.partner, token.uid, token.realtime, token.data) == (
        roaming.partner_a,
        "CARD-1",
        True,
        ocpi_token("CARD-1"),
    )
    mirror = token.id_token
    assert (mirror.organisation, mirror.status, mirror.in_local_list, mirror.group.value) == (
        org_a.org_a,
        "Accepted",
        False,
        group_value,
    )
    authorization = OcpiAuthorization.objects.get()
    assert (
        authorization.partner,
        authorization.token,
        authorization.auth_method,
        authorization.authorization_reference,
        authorization.site,
        authorization.used_at,
    ) == (roaming.partner_a, token, "AUTH_REQUEST", "AUTH-1", org_a.site_a1, None)


def test_a_token_learnt_in_real_time_is_in_no_local_list_whatever_its_whitelist(org_a, roaming, emsp):
    emsp.answer("CARD-9", "ALLOWED", token=ocpi_token("CARD-9", whitelist="ALWAYS"))
    assert authorize(org_a, "CARD-9").status == "Accepted"
    assert IdToken.objects.get(value="CARD-9").in_local_list is False
    # Pushed later by its partner: now an ordinary whitelisted token.
    push(roaming.partner_a, "CARD-9", whitelist="ALWAYS", last_updated="2026-02-01T00:00:00Z")
    token = OcpiToken.objects.select_related("id_token").get()
    assert (token.realtime, token.id_token.in_local_list) == (False, True)
    assert authorize(org_a, "CARD-9") is None
    assert len(emsp.requests) == 1


@pytest.mark.parametrize(
    ("allowed", "status", "mirror_status"),
    [
        ("BLOCKED", "Blocked", "Blocked"),
        ("EXPIRED", "Expired", "Expired"),
        ("NO_CREDIT", "NoCredit", "Blocked"),
        ("NOT_ALLOWED", "NotAtThisLocation", "Blocked"),
    ],
)
def test_an_emsp_refusal_is_mapped_and_nothing_authorised(org_a, emsp, allowed, status, mirror_status):
    emsp.answer("CARD-2", allowed)
    info = authorize(org_a, "CARD-2")
    assert info.status == status
    assert OcpiAuthorization.objects.count() == 0
    # The token is kept (and asked again next time); should a charger start without asking, it is refused.
    assert IdToken.objects.get(value="CARD-2").status == mirror_status
    assert id_token_authorize(organisation_id=org_a.org_a.pk, value="CARD-2").status == mirror_status


def test_a_token_no_emsp_knows_stays_unknown(org_a, emsp):
    assert authorize(org_a, "NOBODY") is None
    assert len(emsp.requests) == 1
    assert OcpiToken.objects.count() == 0
    assert not IdToken.objects.filter(value="NOBODY").exists()


def test_every_partner_is_asked_and_the_one_that_allows_wins(org_a, roaming, emsp):
    tokens_sender_at(roaming.partner_a2, emsp.tokens_url.replace("/tokens", "/tokens-a2"))
    # Both partners reach the same little server; only the FR*OTH one knows the card.
    emsp.answer("CARD-3", "ALLOWED", token=ocpi_token("CARD-3", country_code="FR", party_id="OTH"))
    info = authorize(org_a, "CARD-3")
    assert info.status == "Accepted"
    # partner_a answered for a FR*OTH token it may not speak for: no answer, and no end to the wait.
    assert sorted(r["path"] for r in emsp.requests) == [
        "/ocpi/2.2.1/tokens-a2/CARD-3/authorize?type=RFID",
        "/ocpi/2.2.1/tokens/CARD-3/authorize?type=RFID",
    ]
    token = OcpiToken.objects.get()
    assert (token.partner, token.country_code, token.party_id) == (roaming.partner_a2, "FR", "OTH")
    assert OcpiAuthorization.objects.get().partner == roaming.partner_a2


def test_a_partner_that_answers_late_gets_its_fallback_reject(org_a, emsp):
    emsp.answer("SLOW", "ALLOWED", delay_s=TIMEOUT_S + 1.0)
    started = time.monotonic()
    info = authorize(org_a, "SLOW")
    elapsed = time.monotonic() - started
    assert info.status == "Invalid"
    assert TIMEOUT_S - 0.05 <= elapsed < TIMEOUT_S + 0.4
    assert OcpiToken.objects.count() == 0
    assert OcpiAuthorization.objects.count() == 0


def test_a_partner_that_answers_late_gets_its_fallback_accept(org_a, roaming, emsp):
    tokens_sender_at(roaming.partner_a, emsp.tokens_url, fallback="ACCEPT")
    emsp.answer("SLOW", "BLOCKED", delay_s=TIMEOUT_S + 1.0)
    info = authorize(org_a, "SLOW")
    assert info.status == "Accepted"
    token = OcpiToken.objects.get()
    assert (token.partner, token.realtime, token.data["whitelist"], token.data["valid"]) == (
        roaming.partner_a,
        True,
        "NEVER",
        True,
    )
    authorization = OcpiAuthorization.objects.get()
    assert (authorization.auth_method, authorization.authorization_reference, authorization.site) == (
        "AUTH_REQUEST",
        "",
        org_a.site_a1,
    )


def test_a_card_accepted_on_the_fallback_takes_the_partners_token_at_its_next_answer(
    org_a, roaming, emsp, down_url
):
    tokens_sender_at(roaming.partner_a, down_url, fallback="ACCEPT")
    assert authorize(org_a, "LATER-1").status == "Accepted"
    placeholder = OcpiToken.objects.get()
    assert (placeholder.contract_id, placeholder.data["whitelist"]) == ("LATER-1", "NEVER")

    tokens_sender_at(roaming.partner_a, emsp.tokens_url, fallback="ACCEPT")
    real = ocpi_token("LATER-1", whitelist="ALLOWED")
    emsp.answer("LATER-1", "ALLOWED", token=real)
    assert authorize(org_a, "LATER-1").status == "Accepted"
    token = OcpiToken.objects.get()
    assert (token.pk, token.contract_id, token.data, token.realtime) == (
        placeholder.pk,
        "DE-EMS-CLATER-1",
        real,
        True,
    )


def test_a_card_accepted_on_a_hubs_fallback_gets_its_emsps_party_later(org_a, roaming, emsp, down_url):
    tokens_sender_at(roaming.partner_a, None)
    hub, _ = partner_registered(roaming.party_a, name="hub", country_code="NL", party_id="HUB", role="HUB")
    tokens_sender_at(hub, down_url, fallback="ACCEPT")
    assert authorize(org_a, "HUBCARD").status == "Accepted"
    placeholder = OcpiToken.objects.get()
    assert (placeholder.partner, placeholder.country_code, placeholder.party_id) == (hub, "NL", "HUB")

    tokens_sender_at(hub, emsp.tokens_url, fallback="ACCEPT")
    emsp.answer("HUBCARD", "ALLOWED", token=ocpi_token("HUBCARD", country_code="BE", party_id="XYZ"))
    assert authorize(org_a, "HUBCARD").status == "Accepted"
    [request] = emsp.requests
    assert "OCPI-to-country-code" not in request["headers"]
    token = OcpiToken.objects.get()
    assert (token.pk, token.country_code, token.party_id, token.contract_id) == (
        placeholder.pk,
        "BE",
        "XYZ",
        "BE-XYZ-CHUBCARD",
    )
    assert OcpiAuthorization.objects.filter(token=token).count() == 2


def test_a_partner_that_is_down_gets_its_fallback(org_a, roaming, down_url):
    tokens_sender_at(roaming.partner_a, down_url)
    started = time.monotonic()
    assert authorize(org_a, "CARD-4").status == "Invalid"
    assert time.monotonic() - started < TIMEOUT_S + 0.4
    assert OcpiToken.objects.count() == 0


def test_fallback_accept_needs_exactly_one_silent_partner_with_accept(org_a, roaming, down_url):
    tokens_sender_at(roaming.partner_a, down_url, fallback="ACCEPT")
    tokens_sender_at(roaming.partner_a2, down_url.replace("/tokens", "/t2"), fallback="ACCEPT")
    # Two partners could own the card: nobody knows whose driver it is.
    assert authorize(org_a, "CARD-5").status == "Invalid"
    assert OcpiToken.objects.count() == 0


def test_no_partner_with_a_tokens_sender_means_nothing_is_asked(roaming, world):
    tokens_sender_at(roaming.partner_a, None)
    tokens_sender_at(roaming.partner_a2, None)
    assert authorize(world, "CARD-6") is None


def test_a_suspended_partner_is_not_asked(org_a, roaming, emsp):
    OcpiPartner.objects.filter(pk=roaming.partner_a.pk).update(status="SUSPENDED")
    emsp.answer("CARD-7", "ALLOWED")
    assert authorize(org_a, "CARD-7") is None
    assert emsp.requests == []


def test_a_hub_is_asked_without_a_receiver_open_routing(org_a, roaming, emsp):
    tokens_sender_at(roaming.partner_a, None)
    hub, _ = partner_registered(roaming.party_a, name="hub", country_code="NL", party_id="HUB", role="HUB")
    tokens_sender_at(hub, emsp.tokens_url)
    emsp.answer("CARD-8", "ALLOWED", token=ocpi_token("CARD-8", country_code="BE", party_id="XYZ"))
    assert authorize(org_a, "CARD-8").status == "Accepted"
    [request] = emsp.requests
    assert "OCPI-to-country-code" not in request["headers"]
    token = OcpiToken.objects.get()
    assert (token.partner, token.country_code, token.party_id) == (hub, "BE", "XYZ")


# --- known tokens -----------------------------------------------------------------------------------
def test_a_known_never_token_is_asked_every_time(org_a, roaming, emsp):
    push(roaming.partner_a, "NEVER-1", whitelist="NEVER")
    emsp.answer("NEVER-1", "ALLOWED", token=ocpi_token("NEVER-1"))
    assert authorize(org_a, "NEVER-1").status == "Accepted"
    assert authorize(org_a, "NEVER-1").status == "Accepted"
    assert len(emsp.requests) == 2
    assert OcpiAuthorization.objects.count() == 2
    assert OcpiToken.objects.get().realtime is False


@pytest.mark.parametrize(
    ("token_type", "age_min", "asked"), [("RFID", 5, False), ("RFID", 20, True), ("APP_USER", 60, False)]
)
def test_a_token_started_by_a_command_is_not_asked_again(org_a, roaming, emsp, token_type, age_min, asked):
    """OCPI 2.2.1 13.3.5: the token of a START_SESSION/RESERVE_NOW is not authorised again in real time (an
    RFID token only within 15 minutes of the command)."""
    partner = OcpiPartner.objects.select_related("party").get(pk=roaming.partner_a.pk)
    token = token_put(
        partner=partner,
        from_party=("DE", "EMS"),
        country_code="DE",
        party_id="EMS",
        uid="CMD-1",
        token_type=token_type,
        body=ocpi_token("CMD-1", type=token_type, whitelist="NEVER"),
    )
    command = OcpiAuthorization.objects.create(
        partner=partner,
        token=token,
        auth_method="COMMAND",
        authorization_reference="ref-1",
        site=org_a.site_a1,
    )
    OcpiAuthorization.objects.filter(pk=command.pk).update(
        created_at=timezone.now() - timedelta(minutes=age_min)
    )
    emsp.answer("CMD-1", "ALLOWED", token=ocpi_token("CMD-1", type=token_type))

    result = authorize(org_a, "CMD-1", token_type=token_type)

    assert result is None if not asked else result.status == "Accepted"
    assert len(emsp.requests) == (1 if asked else 0)


def test_a_known_invalid_never_token_is_still_asked(org_a, roaming, emsp):
    push(roaming.partner_a, "NEVER-2", whitelist="NEVER", valid=False)
    # "the state of the Token might have changed" (WhitelistType): the eMSP says it is valid again.
    emsp.answer("NEVER-2", "ALLOWED", token=ocpi_token("NEVER-2", last_updated="2026-02-01T00:00:00Z"))
    assert authorize(org_a, "NEVER-2").status == "Accepted"
    assert IdToken.objects.get(value="NEVER-2").status == "Accepted"


def test_a_known_never_token_whose_emsp_is_silent_gets_the_fallback(org_a, roaming, down_url):
    push(roaming.partner_a, "NEVER-3", whitelist="NEVER")
    tokens_sender_at(roaming.partner_a, down_url)
    assert authorize(org_a, "NEVER-3").status == "Invalid"
    tokens_sender_at(roaming.partner_a, down_url, fallback="ACCEPT")
    assert authorize(org_a, "NEVER-3").status == "Accepted"
    assert OcpiAuthorization.objects.get().authorization_reference == ""


def test_a_known_allowed_offline_token_is_asked_and_whitelisted_when_the_emsp_is_silent(
    org_a, roaming, emsp, down_url
):
    push(roaming.partner_a, "OFF-1", whitelist="ALLOWED_OFFLINE")
    emsp.answer("OFF-1", "BLOCKED", token=ocpi_token("OFF-1", whitelist="ALLOWED_OFFLINE"))
    assert authorize(org_a, "OFF-1").status == "Blocked"
    tokens_sender_at(roaming.partner_a, down_url)
    # None: what we hold stands (the hook answers the token's own status).
    assert authorize(org_a, "OFF-1") is None
    assert OcpiAuthorization.objects.count() == 0


@pytest.mark.parametrize("whitelist", ["ALWAYS", "ALLOWED"])
def test_a_whitelisted_token_is_never_asked(org_a, roaming, emsp, whitelist):
    push(roaming.partner_a, "WL-1", whitelist=whitelist)
    assert authorize(org_a, "WL-1") is None
    assert emsp.requests == []


def test_a_known_token_its_emsp_no_longer_knows_is_invalid(org_a, roaming, emsp):
    push(roaming.partner_a, "GONE-1", whitelist="NEVER")
    assert authorize(org_a, "GONE-1").status == "Invalid"


# --- the hook ---------------------------------------------------------------------------------------
def test_the_hook_adds_no_query_and_no_http_for_a_known_non_roaming_token(org_a, roaming, monkeypatch):
    """The cost of roaming on the Authorize path of a token that is not a partner's: nothing."""
    IdTokenFactory(organisation=org_a.org_a, value="OURS")

    async def no_http(*args, **kwargs):
        raise AssertionError("no partner may be called for our own token")

    monkeypatch.setattr(ocpi_client, "call_async", no_http)
    with CaptureQueriesContext(connection) as service_only:
        local = id_token_authorize(
            organisation_id=org_a.org_a.pk, value="OURS", station_id=org_a.station_a1.pk
        )
    with CaptureQueriesContext(connection) as with_hook:
        asyncio.run(
            roaming_token_authorize(
                id_token_authorize(
                    organisation_id=org_a.org_a.pk, value="OURS", station_id=org_a.station_a1.pk
                ),
                organisation_id=org_a.org_a.pk,
                value="OURS",
                station_id=org_a.station_a1.pk,
            )
        )
    assert local.status == "Accepted"
    assert len(with_hook.captured_queries) == len(service_only.captured_queries) == 1

    cp = Harness(V16ChargePoint, org_a.station_a1)
    cp.call("Authorize", {"idTag": "OURS"}, "warm")  # the connection's first message loads what it caches
    with CaptureQueriesContext(connection) as handler:
        assert cp.call("Authorize", {"idTag": "OURS"}, "m1") == [
            3,
            "m1",
            {"idTagInfo": {"status": "Accepted"}},
        ]
    assert len(handler.captured_queries) == len(service_only.captured_queries)


def test_a_failure_inside_real_time_authorisation_leaves_the_local_answer(org_a, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(realtime, "_plan", broken)
    cp = Harness(V16ChargePoint, org_a.station_a1)
    assert cp.call("Authorize", {"idTag": "WHO"}) == [3, "m1", {"idTagInfo": {"status": "Invalid"}}]


# --- at the charger ---------------------------------------------------------------------------------
def test_ocpp16_authorize_of_an_unknown_token_accepted_after_real_time_auth(org_a, roaming, emsp):
    emsp.answer("RFID-16", "ALLOWED")
    cp = Harness(V16ChargePoint, org_a.station_a1)
    roaming.partner_a.refresh_from_db()
    answer = cp.call("Authorize", {"idTag": "RFID-16"})
    group = OcpiPartner.objects.get(pk=roaming.partner_a.pk).id_token_group
    assert answer == [3, "m1", {"idTagInfo": {"status": "Accepted", "parentIdTag": group.value}}]
    assert emsp.requests[0]["path"] == "/ocpi/2.2.1/tokens/RFID-16/authorize?type=RFID"
    # The session that follows finds the token known and accepted.
    started = cp.call(
        "StartTransaction",
        {
            "connectorId": 1,
            "idTag": "RFID-16",
            "meterStart": 0,
            "timestamp": timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "s1",
    )
    assert started[2]["idTagInfo"]["status"] == "Accepted"


def test_ocpp201_authorize_of_an_unknown_token_accepted_after_real_time_auth(org_a, roaming, emsp):
    emsp.answer("APP-201", "ALLOWED", token=ocpi_token("APP-201", type="APP_USER"))
    cp = Harness(V201ChargePoint, org_a.station_a1)
    answer = cp.call("Authorize", {"idToken": {"idToken": "APP-201", "type": "Central"}})
    group = OcpiPartner.objects.get(pk=roaming.partner_a.pk).id_token_group
    assert answer == [
        3,
        "m1",
        {"idTokenInfo": {"status": "Accepted", "groupIdToken": {"idToken": group.value, "type": "Central"}}},
    ]
    assert emsp.requests[0]["path"] == "/ocpi/2.2.1/tokens/APP-201/authorize?type=APP_USER"
    assert OcpiToken.objects.get().type == "APP_USER"


@pytest.mark.parametrize(
    ("cp_class", "frame", "refused"),
    [
        (V16ChargePoint, {"idTag": "RFID-X"}, {"idTagInfo": {"status": "Invalid"}}),
        (
            V201ChargePoint,
            {"idToken": {"idToken": "RFID-X", "type": "ISO14443"}},
            {"idTokenInfo": {"status": "Unknown"}},
        ),
    ],
)
def test_authorize_of_a_token_no_emsp_knows_is_refused(org_a, emsp, cp_class, frame, refused):
    cp = Harness(cp_class, org_a.station_a1)
    assert cp.call("Authorize", frame) == [3, "m1", refused]
    assert len(emsp.requests) == 1


@pytest.mark.parametrize(
    ("cp_class", "frame", "blocked"),
    [
        (V16ChargePoint, {"idTag": "RFID-B"}, {"idTagInfo": {"status": "Invalid"}}),
        (
            V201ChargePoint,
            {"idToken": {"idToken": "RFID-B", "type": "ISO14443"}},
            {"idTokenInfo": {"status": "NoCredit"}},
        ),
    ],
)
def test_authorize_no_credit_is_told_as_each_version_can(org_a, emsp, cp_class, frame, blocked):
    emsp.answer("RFID-B", "NO_CREDIT")
    cp = Harness(cp_class, org_a.station_a1)
    assert cp.call("Authorize", frame) == [3, "m1", blocked]


def test_what_the_hook_costs_for_other_tokens(org_a, roaming, monkeypatch):
    """A partner's whitelisted token: one query (its whitelist); a token nobody here knows at an organisation
    without partners that could know it: two (its OcpiToken, the partners), and no HTTP."""
    tokens_sender_at(roaming.partner_a, None)
    push(roaming.partner_a, "WL-2", whitelist="ALWAYS")

    async def no_http(*args, **kwargs):
        raise AssertionError("no partner may be called")

    monkeypatch.setattr(ocpi_client, "call_async", no_http)
    for value, extra in (("WL-2", 1), ("NOBODY", 2)):
        local = id_token_authorize(
            organisation_id=org_a.org_a.pk, value=value, station_id=org_a.station_a1.pk
        )
        with CaptureQueriesContext(connection) as hook:
            answer = asyncio.run(
                roaming_token_authorize(
                    local, organisation_id=org_a.org_a.pk, value=value, station_id=org_a.station_a1.pk
                )
            )
        assert answer is local
        assert len(hook.captured_queries) == extra
