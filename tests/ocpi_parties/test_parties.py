"""Self-tests of the OCPI 2.2.1 test parties, without our server: the eMSP against a tiny CPO written here,
two platforms registering with each other both ways, a Hub routing between a CPO and an eMSP, and the
transport rules (401 with the envelope, pagination, routing headers, stop/start on the same port)."""

import threading
import time

import httpx
import pytest

from tests.ocpi_parties import Emsp, Hub, Platform, b64, cdr_token, envelope, now_iso, paginate
from tests.ocpi_parties.checks import object_problems
from tests.ocpi_parties.platform import VERSION_PREFIX, Request, Response, next_link, ocpi, party


def location(n: int, *, last_updated: str = "2026-01-01T00:00:00Z") -> dict:
    return {
        "country_code": "NL",
        "party_id": "CPO",
        "id": f"LOC{n}",
        "publish": True,
        "address": f"Street {n}",
        "city": "Utrecht",
        "country": "NLD",
        "coordinates": {"latitude": "52.090000", "longitude": "5.120000"},
        "time_zone": "Europe/Amsterdam",
        "evses": [evse(f"E{n}")],
        "last_updated": last_updated,
    }


def evse(uid: str, status: str = "AVAILABLE") -> dict:
    return {
        "uid": uid,
        "evse_id": f"NL*CPO*E{uid}",
        "status": status,
        "connectors": [connector("1")],
        "last_updated": "2026-01-01T00:00:00Z",
    }


def connector(cid: str) -> dict:
    return {
        "id": cid,
        "standard": "IEC_62196_T2",
        "format": "SOCKET",
        "power_type": "AC_3_PHASE",
        "max_voltage": 230,
        "max_amperage": 16,
        "last_updated": "2026-01-01T00:00:00Z",
    }


def session(session_id: str, token: dict, **changes) -> dict:
    return {
        "country_code": "NL",
        "party_id": "CPO",
        "id": session_id,
        "start_date_time": "2026-01-01T10:00:00Z",
        "kwh": 0.0,
        "cdr_token": cdr_token(token),
        "auth_method": "WHITELIST",
        "location_id": "LOC1",
        "evse_uid": "E1",
        "connector_id": "1",
        "currency": "EUR",
        "charging_periods": [],
        "status": "ACTIVE",
        "last_updated": "2026-01-01T10:00:00Z",
        **changes,
    }


def cdr(cdr_id: str, token: dict) -> dict:
    return {
        "country_code": "NL",
        "party_id": "CPO",
        "id": cdr_id,
        "start_date_time": "2026-01-01T10:00:00Z",
        "end_date_time": "2026-01-01T11:00:00Z",
        "session_id": "S1",
        "cdr_token": cdr_token(token),
        "auth_method": "WHITELIST",
        "cdr_location": {
            "id": "LOC1",
            "address": "Street 1",
            "city": "Utrecht",
            "country": "NLD",
            "coordinates": {"latitude": "52.090000", "longitude": "5.120000"},
            "evse_uid": "E1",
            "evse_id": "NL*CPO*EE1",
            "connector_id": "1",
            "connector_standard": "IEC_62196_T2",
            "connector_format": "SOCKET",
            "connector_power_type": "AC_3_PHASE",
        },
        "currency": "EUR",
        "charging_periods": [
            {"start_date_time": "2026-01-01T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 10.0}]}
        ],
        "total_cost": {"excl_vat": 3.0, "incl_vat": 3.63},
        "total_energy": 10.0,
        "total_time": 1.0,
        "last_updated": "2026-01-01T11:00:00Z",
    }


class FakeCpo(Platform):
    """The smallest CPO the harness needs: locations Sender (paginated), tokens Receiver, commands Receiver
    (answers ACCEPTED, then POSTs `command_result` to the response_url)."""

    party_role = "CPO"

    def __init__(self, **kwargs):
        self.locations = [location(n, last_updated=f"2026-01-0{n}T00:00:00Z") for n in range(1, 6)]
        self.tokens: dict[tuple, dict] = {}
        self.commands: list[dict] = []
        self.command_result = "ACCEPTED"
        super().__init__(country_code="NL", party_id="CPO", name="Fake CPO", **kwargs)

    def endpoint_paths(self):
        p = VERSION_PREFIX
        return [
            ("credentials", "SENDER", f"{p}/credentials"),
            ("locations", "SENDER", f"{p}/locations"),
            ("tokens", "RECEIVER", f"{p}/tokens"),
            ("commands", "RECEIVER", f"{p}/commands"),
        ]

    def routes(self):
        p = VERSION_PREFIX
        return [
            self.route("GET", rf"{p}/locations", self._locations),
            self.route("GET", rf"{p}/locations/(?P<location_id>[^/]+)", self._location),
            self.route(
                "GET PUT PATCH", rf"{p}/tokens/(?P<cc>[^/]+)/(?P<pid>[^/]+)/(?P<uid>[^/]+)", self._token
            ),
            self.route("POST", rf"{p}/commands/(?P<command>[A-Z_]+)", self._command),
        ]

    def _locations(self, req: Request) -> Response:
        return paginate(
            req, self.locations, endpoint_url=self.url(f"{VERSION_PREFIX}/locations"), max_limit=2
        )

    def _location(self, req: Request, location_id: str) -> Response:
        found = [loc for loc in self.locations if loc["id"] == location_id]
        return ocpi(found[0]) if found else ocpi(http=404, status_code=2000)

    def _token(self, req: Request, cc: str, pid: str, uid: str) -> Response:
        key = (*party(cc, pid), uid, req.query.get("type", "RFID"))
        if req.method == "GET":
            return ocpi(self.tokens[key]) if key in self.tokens else ocpi(http=404, status_code=2004)
        if req.method == "PUT":
            created = key not in self.tokens
            self.tokens[key] = req.json
            return ocpi(http=201 if created else 200)
        self.tokens[key].update(req.json)
        return ocpi()

    def _command(self, req: Request, command: str) -> Response:
        self.commands.append({"command": command, "body": req.json, "from": req.from_party()})
        conn, requester, url = req.connection, req.from_party(), req.json["response_url"]

        def answer_later():
            time.sleep(0.05)
            self.call(
                "POST", url, conn=conn, body={"result": self.command_result}, routing=(self.party, requester)
            )

        threading.Thread(target=answer_later, daemon=True).start()
        return ocpi({"result": "ACCEPTED", "timeout": 30})

    def push(self, conn, module: str, method: str, suffix: str, body, *, to) -> "httpx.Response":
        base = conn.endpoint(module, "RECEIVER").rstrip("/")
        return self.call(method, f"{base}{suffix}", conn=conn, body=body, routing=(self.party, party(*to)))


def assert_clean(*platforms: Platform) -> None:
    for p in platforms:
        assert p.errors == [], p.errors
        assert p.problems == [], p.problems


@pytest.fixture
def cpo():
    with FakeCpo() as platform:
        yield platform


@pytest.fixture
def emsp():
    with Emsp() as platform:
        yield platform


@pytest.fixture
def hub():
    with Hub() as platform:
        yield platform


# --- credentials ----------------------------------------------------------------------------------------


def test_emsp_registers_with_a_cpo_and_token_a_dies(cpo, emsp):
    token_a = cpo.issue_token_a()

    conn = emsp.register(cpo.versions_url, token_a)

    assert emsp.target == ("NL", "CPO")
    assert conn.roles == cpo.roles()
    assert conn.endpoint("locations", "SENDER") == cpo.url(f"{VERSION_PREFIX}/locations")
    [cpo_side] = cpo.connections
    assert cpo_side.registered and cpo_side.roles == emsp.roles()
    # The CPO called the eMSP's versions back with token B during the POST (7.1.1).
    callbacks = emsp.received("GET")
    assert [r.path for r in callbacks] == ["/ocpi/versions", VERSION_PREFIX]
    assert {r.headers["authorization"] for r in callbacks} == {f"Token {b64(cpo_side.token_out)}"}
    # Token A is thrown away once C is given (7.1.1).
    refused = emsp.raw("GET", cpo.versions_url, headers={"Authorization": f"Token {b64(token_a)}"})
    assert refused.http_status == 401
    assert emsp.call("GET", cpo.versions_url, conn=conn).ok
    assert_clean(cpo, emsp)


def test_cpo_registers_with_the_emsp(cpo, emsp):
    token_a = emsp.issue_token_a()

    conn = cpo.register(emsp.versions_url, token_a)

    assert emsp.target == ("NL", "CPO")
    assert emsp.connection.roles == cpo.roles()
    assert conn.endpoint("sessions", "RECEIVER") == emsp.url(f"{VERSION_PREFIX}/sessions")
    assert conn.endpoint("commands", "SENDER") == emsp.url(f"{VERSION_PREFIX}/commands-result")
    # A second POST by a registered client: 405 (7.2.2).
    again = cpo.call("POST", conn.endpoint("credentials"), conn=conn, body=cpo.credentials_object("x" * 10))
    assert again.http_status == 405
    assert_clean(cpo, emsp)


def test_rotate_then_unregister(cpo, emsp):
    conn = emsp.register(cpo.versions_url, cpo.issue_token_a())
    old_c, old_b = conn.token_out, conn.token_in
    locations_url = conn.endpoint("locations", "SENDER")

    emsp.rotate()

    assert conn.token_out != old_c and conn.token_in != old_b
    assert emsp.raw("GET", locations_url, headers={"Authorization": f"Token {b64(old_c)}"}).http_status == 401
    assert emsp.request("GET", locations_url).ok
    [cpo_side] = cpo.connections
    assert cpo_side.token_out == conn.token_in  # the CPO now calls with the new token B

    emsp.unregister()

    assert cpo.connections == [] and emsp.connections == []
    assert (
        emsp.raw("GET", locations_url, headers={"Authorization": f"Token {b64(conn.token_out)}"}).http_status
        == 401
    )
    assert_clean(cpo, emsp)


# --- pulls, pushes, commands --------------------------------------------------------------------------


def test_pull_follows_pagination_and_keeps_filters(cpo, emsp):
    emsp.register(cpo.versions_url, cpo.issue_token_a())

    pages = emsp.pull_pages("locations", limit=2)
    filtered = emsp.pull("locations", date_from="2026-01-02T00:00:00Z", date_to="2026-01-05T00:00:00Z")

    assert [[loc["id"] for loc in page.data] for page in pages] == [
        ["LOC1", "LOC2"],
        ["LOC3", "LOC4"],
        ["LOC5"],
    ]
    assert [page.headers["X-Total-Count"] for page in pages] == ["5", "5", "5"]
    assert [page.headers["X-Limit"] for page in pages] == ["2", "2", "2"]
    assert next_link(pages[-1].headers) is None
    assert [loc["id"] for loc in filtered] == ["LOC2", "LOC3", "LOC4"]
    # Every request to the CPO addressed it from the eMSP (4.1.8.6 Party to Party).
    routed = cpo.received("GET", "/locations")
    assert len(routed) == 5
    for r in routed:
        assert (r.headers["ocpi-from-country-code"], r.headers["ocpi-from-party-id"]) == ("DE", "EMS")
        assert (r.headers["ocpi-to-country-code"], r.headers["ocpi-to-party-id"]) == ("NL", "CPO")
    assert emsp.get("locations", "LOC3").data["address"] == "Street 3"
    assert_clean(cpo, emsp)


def test_pull_reports_a_page_without_pagination_headers(cpo, emsp):
    emsp.register(cpo.versions_url, cpo.issue_token_a())
    cpo._locations = lambda req: ocpi(cpo.locations)  # a Sender that forgot 4.1.4.1
    cpo._routes = cpo._base_routes() + cpo.routes()

    assert len(emsp.pull("locations")) == 5

    assert emsp.problems == [
        f"GET {cpo.url(VERSION_PREFIX)}/locations: no integer X-Total-Count header (4.1.4.1)",
        f"GET {cpo.url(VERSION_PREFIX)}/locations: no integer X-Limit header (4.1.4.1)",
    ]


def test_tokens_pushed_patched_and_read_back(cpo, emsp):
    emsp.register(cpo.versions_url, cpo.issue_token_a())
    token = emsp.token("04A1B2C3", whitelist="ALLOWED")

    created = emsp.push_token(token)
    patched = emsp.patch_token("04A1B2C3", {"valid": False})
    read = emsp.get_token("04A1B2C3")

    assert (created.http_status, created.status_code) == (201, 1000)
    assert patched.ok
    assert read.data == {**token, "valid": False, "last_updated": read.data["last_updated"]}
    [put] = cpo.received("PUT")
    assert put.path == f"{VERSION_PREFIX}/tokens/DE/EMS/04A1B2C3" and put.query == {"type": "RFID"}
    assert "last_updated" in cpo.received("PATCH")[0].body
    assert_clean(cpo, emsp)


def test_command_answered_then_result_posted_to_response_url(cpo, emsp):
    emsp.register(cpo.versions_url, cpo.issue_token_a())
    token = emsp.token("APP1", type="APP_USER")

    response = emsp.command("START_SESSION", Emsp.start_session(token, "LOC1", "E1"))
    result = emsp.wait_command_result(response.command_id, timeout=5)

    assert response.data == {"result": "ACCEPTED", "timeout": 30}
    assert result == {"result": "ACCEPTED"}
    [sent] = cpo.commands
    assert sent["command"] == "START_SESSION"
    assert sent["body"]["response_url"] == emsp.url(f"{VERSION_PREFIX}/commands-result/{response.command_id}")
    assert sent["body"]["token"] == token and sent["body"]["evse_uid"] == "E1"
    assert_clean(cpo, emsp)


def test_emsp_receivers_store_what_the_cpo_pushes(cpo, emsp):
    conn = cpo.register(emsp.versions_url, emsp.issue_token_a())
    token = emsp.token("04A1B2C3")
    to = emsp.party

    assert cpo.push(conn, "locations", "PUT", "/NL/CPO/LOC1", location(1), to=to).http_status == 201
    assert cpo.push(
        conn,
        "locations",
        "PATCH",
        "/NL/CPO/LOC1/E1",
        {"status": "CHARGING", "last_updated": "2026-01-02T00:00:00Z"},
        to=to,
    ).ok
    assert (
        cpo.push(
            conn,
            "locations",
            "PUT",
            "/NL/CPO/LOC1/E1/2",
            {**connector("2"), "last_updated": "2026-01-03T00:00:00Z"},
            to=to,
        ).http_status
        == 201
    )
    assert cpo.push(conn, "sessions", "PUT", "/NL/CPO/S1", session("S1", token), to=to).http_status == 201
    period = {"start_date_time": "2026-01-01T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 2.5}]}
    changes = {"kwh": 2.5, "charging_periods": [period], "last_updated": "2026-01-01T10:15:00Z"}
    assert cpo.push(conn, "sessions", "PATCH", "/NL/CPO/S1", changes, to=to).ok
    assert cpo.push(conn, "sessions", "PATCH", "/NL/CPO/S1", {**changes, "kwh": 5.0}, to=to).ok
    posted = cpo.push(conn, "cdrs", "POST", "", cdr("CDR1", token), to=to)

    stored = emsp.location("LOC1")
    assert stored["evses"][0]["status"] == "CHARGING"
    assert [c["id"] for c in stored["evses"][0]["connectors"]] == ["1", "2"]
    # 8.2.2.2: a Connector PUT sets the EVSE's and the Location's last_updated.
    assert stored["last_updated"] == stored["evses"][0]["last_updated"] == "2026-01-03T00:00:00Z"
    # 9.2.2.3: a PATCH's charging_periods are added to the Session's.
    assert emsp.session("S1")["charging_periods"] == [period, period]
    assert emsp.session("S1")["kwh"] == 5.0
    assert (posted.http_status, posted.headers["Location"]) == (201, emsp.url(f"{VERSION_PREFIX}/cdrs/1"))
    assert cpo.call("GET", posted.headers["Location"], conn=conn, routing=(cpo.party, to)).data == cdr(
        "CDR1", token
    )
    assert_clean(cpo, emsp)


def test_emsp_reports_a_patch_without_last_updated_and_a_bad_owner(cpo, emsp):
    conn = cpo.register(emsp.versions_url, emsp.issue_token_a())
    to = emsp.party
    cpo.push(conn, "sessions", "PUT", "/NL/CPO/S1", session("S1", emsp.token("T1")), to=to)

    no_stamp = cpo.push(conn, "sessions", "PATCH", "/NL/CPO/S1", {"kwh": 1.0}, to=to)
    foreign = cpo.push(
        conn, "sessions", "PUT", "/NL/XXX/S2", session("S2", emsp.token("T1"), party_id="XXX"), to=to
    )

    assert (no_stamp.http_status, no_stamp.status_code) == (200, 2001)
    assert foreign.http_status == 404
    assert emsp.problems == [
        f"PATCH {VERSION_PREFIX}/sessions/NL/CPO/S1: PATCH body lacks required fields ['last_updated']",
        f"PUT {VERSION_PREFIX}/sessions/NL/XXX/S2: ('NL', 'XXX') is not a role of the platform that sent it (4.1.5.1)",
    ]


def test_realtime_authorization_and_token_list(cpo, emsp):
    conn = cpo.register(emsp.versions_url, emsp.issue_token_a())
    emsp.tokens = [emsp.token(f"T{n}") for n in range(3)]
    emsp.page_limit = 2
    emsp.realtime_auth = {"T1": "ALLOWED", "T2": "BLOCKED"}
    emsp.realtime_auth_delay_s = 0.2
    tokens_url = conn.endpoint("tokens", "SENDER")
    routing = (cpo.party, emsp.party)

    started = time.monotonic()
    allowed = cpo.call(
        "POST",
        f"{tokens_url}/T1/authorize",
        conn=conn,
        params={"type": "RFID"},
        body={"location_id": "LOC1"},
        routing=routing,
    )
    took = time.monotonic() - started
    blocked = cpo.call("POST", f"{tokens_url}/T2/authorize", conn=conn, routing=routing)
    unknown = cpo.call("POST", f"{tokens_url}/NOPE/authorize", conn=conn, routing=routing)
    first = cpo.call("GET", tokens_url, conn=conn, routing=routing)
    second = cpo.call("GET", next_link(first.headers), conn=conn, routing=routing)

    assert took >= 0.2
    assert allowed.data["allowed"] == "ALLOWED"
    assert allowed.data["token"] == emsp.tokens[1]
    assert allowed.data["location"] == {"location_id": "LOC1"}
    assert len(allowed.data["authorization_reference"]) == 32
    assert blocked.data["allowed"] == "BLOCKED"
    assert (unknown.http_status, unknown.status_code, "data" in unknown.body) == (404, 2004, False)
    assert [t["uid"] for t in first.data + second.data] == ["T0", "T1", "T2"]
    assert (first.headers["X-Total-Count"], first.headers["X-Limit"]) == ("3", "2")
    assert [a["uid"] for a in emsp.authorizations] == ["T1", "T2", "NOPE"]
    assert_clean(cpo, emsp)


# --- transport -------------------------------------------------------------------------------------------


def test_wrong_missing_unencoded_or_token_a_is_401_with_envelope(cpo, emsp):
    conn = emsp.register(cpo.versions_url, cpo.issue_token_a())
    token_a = cpo.issue_token_a()
    url = conn.endpoint("locations", "SENDER")

    answers = {
        "wrong": emsp.raw("GET", url, headers={"Authorization": f"Token {b64('wrong')}"}),
        "missing": emsp.raw("GET", url),
        "unencoded": emsp.raw("GET", url, headers={"Authorization": f"Token {conn.token_out}"}),
        "token A": emsp.raw("GET", url, headers={"Authorization": f"Token {b64(token_a)}"}),
    }

    for what, answer in answers.items():
        assert answer.http_status == 401, what
        assert set(answer.body) == {"status_code", "status_message", "timestamp"}, what
        assert answer.body["status_code"] == 2000, what
    assert cpo.problems == [
        f"GET {VERSION_PREFIX}/locations: credentials token sent without Base64 encoding (4.1.2)"
    ]
    # Token A still opens versions and credentials (4.1.2).
    assert emsp.call("GET", cpo.versions_url, token=token_a).ok


def test_malformed_json_is_http_400_and_missing_ids_are_reported(cpo, emsp):
    conn = emsp.register(cpo.versions_url, cpo.issue_token_a())
    url = f"{conn.endpoint('tokens', 'RECEIVER')}/DE/EMS/T1"

    answer = emsp.raw(
        "PUT",
        url,
        headers={"Authorization": f"Token {b64(conn.token_out)}", "Content-Type": "application/json"},
        content=b"{not json",
    )

    assert answer.http_status == 400 and answer.body["status_code"] == 2001
    answer = emsp.raw(
        "GET", conn.endpoint("locations", "SENDER"), headers={"Authorization": f"Token {b64(conn.token_out)}"}
    )
    assert answer.ok
    assert cpo.problems == [
        f"GET {VERSION_PREFIX}/locations: no X-Request-ID header (4.2: every request SHALL contain one)",
        f"GET {VERSION_PREFIX}/locations: no X-Correlation-ID header (4.2: every request SHALL contain one)",
        f"GET {VERSION_PREFIX}/locations: no OCPI-from-country-code/party-id (4.1.8.2)",
        f"GET {VERSION_PREFIX}/locations: no OCPI-to-country-code/party-id (4.1.8.2)",
    ]


def test_stop_refuses_connections_and_start_comes_back_on_the_same_port(emsp):
    token_a = emsp.issue_token_a()
    port = emsp.port
    headers = {"Authorization": f"Token {b64(token_a)}"}

    emsp.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(emsp.versions_url, headers=headers, timeout=2)
    emsp.start()

    assert emsp.port == port
    answer = httpx.get(emsp.versions_url, headers=headers, timeout=2)
    assert answer.status_code == 200
    assert answer.json()["data"] == [{"version": "2.2.1", "url": emsp.version_url}]


def test_envelope_shape():
    body = envelope([1], message="Success")
    assert set(body) == {"data", "status_code", "status_message", "timestamp"}
    assert envelope(status_code=2001)["status_code"] == 2001 and "data" not in envelope(status_code=2001)
    assert now_iso().endswith("Z")


# --- hub ----------------------------------------------------------------------------------------------------


@pytest.fixture
def roaming(cpo, hub):
    """CPO <-> Hub (the Hub registered with the CPO) <-> eMSP "DE*EM2" (registered with the Hub)."""
    with Emsp(party_id="EM2", name="eMSP behind the hub") as emsp2:
        hub.register(cpo.versions_url, cpo.issue_token_a())
        emsp2.register(hub.versions_url, hub.issue_token_a(), to=("NL", "CPO"))
        [cpo_to_hub] = cpo.connections
        yield cpo, hub, emsp2, cpo_to_hub


def test_hub_forwards_emsp_requests_to_the_cpo(roaming):
    cpo, hub, emsp2, _ = roaming

    pages = emsp2.pull_pages("locations", limit=2)
    token = emsp2.token("EM2-T1")
    pushed = emsp2.push_token(token)
    response = emsp2.command("STOP_SESSION", Emsp.stop_session("S1"))
    result = emsp2.wait_command_result(response.command_id, timeout=5)

    assert [len(p.data) for p in pages] == [2, 2, 1]
    # Link rewritten to the Hub's own sender endpoint (the eMSP has no credentials at the CPO).
    assert next_link(pages[0].headers).startswith(hub.url(f"{VERSION_PREFIX}/sender/locations?"))
    assert cpo.tokens[("DE", "EM2", "EM2-T1", "RFID")] == token
    assert result == {"result": "ACCEPTED"}
    # The CPO answered a response_url of the Hub, which the Hub relayed to the eMSP's.
    assert cpo.commands[0]["body"]["response_url"].startswith(hub.url(f"{VERSION_PREFIX}/proxy/"))
    assert cpo.commands[0]["from"] == ("DE", "EM2")
    for r in cpo.received():
        if r.path.startswith(f"{VERSION_PREFIX}/") and not r.path.endswith("credentials"):
            assert (r.headers["ocpi-from-country-code"], r.headers["ocpi-from-party-id"]) == ("DE", "EM2")
            assert (r.headers["ocpi-to-country-code"], r.headers["ocpi-to-party-id"]) == ("NL", "CPO")
    # 4.2: a new X-Request-ID per hop, the same X-Correlation-ID.
    put = cpo.received("PUT")[0]
    [forward] = [f for f in hub.forwarded if f["method"] == "PUT"]
    assert put.headers["x-request-id"] == forward["request_id"] != forward["incoming_request_id"]
    assert put.headers["x-correlation-id"] == pushed.request_headers["X-Correlation-ID"]
    assert_clean(cpo, hub, emsp2)


def test_hub_forwards_cpo_pushes_to_the_emsp_named_in_ocpi_to(roaming):
    cpo, hub, emsp2, conn = roaming
    token = emsp2.token("EM2-T1")

    put = cpo.push(conn, "sessions", "PUT", "/NL/CPO/S9", session("S9", token), to=("DE", "EM2"))
    posted = cpo.push(conn, "cdrs", "POST", "", cdr("CDR9", token), to=("DE", "EM2"))
    back = cpo.call("GET", posted.headers["Location"], conn=conn, routing=(cpo.party, ("DE", "EM2")))

    assert put.http_status == 201
    assert emsp2.session("S9") == session("S9", token)
    [received] = emsp2.received("PUT")
    assert received.path == f"{VERSION_PREFIX}/sessions/NL/CPO/S9"
    assert (received.headers["ocpi-from-country-code"], received.headers["ocpi-from-party-id"]) == (
        "NL",
        "CPO",
    )
    assert received.headers["x-correlation-id"] == put.request_headers["X-Correlation-ID"]
    assert received.headers["x-request-id"] != put.request_headers["X-Request-ID"]
    assert put.headers["X-Request-ID"] == put.request_headers["X-Request-ID"]
    assert posted.headers["Location"].startswith(hub.url(f"{VERSION_PREFIX}/proxy/"))
    assert back.data == cdr("CDR9", token)
    assert_clean(cpo, hub, emsp2)


def test_hub_routing_errors_and_a_receiver_that_comes_back(roaming):
    cpo, hub, emsp2, conn = roaming
    token = emsp2.token("EM2-T1")

    unknown = cpo.push(conn, "sessions", "PUT", "/NL/CPO/S1", session("S1", token), to=("FR", "NOP"))
    emsp2.stop()
    down = cpo.push(conn, "sessions", "PUT", "/NL/CPO/S1", session("S1", token), to=("DE", "EM2"))
    emsp2.start()
    back = cpo.push(conn, "sessions", "PUT", "/NL/CPO/S1", session("S1", token), to=("DE", "EM2"))

    assert (unknown.http_status, unknown.status_code) == (200, 4001)
    assert (down.http_status, down.status_code) == (200, 4003)
    assert (back.http_status, back.status_code) == (201, 1000)
    assert emsp2.session("S1") == session("S1", token)
    assert_clean(cpo, hub, emsp2)


def test_hub_broadcast_push_and_client_info(roaming):
    cpo, hub, emsp2, conn = roaming
    with Emsp(party_id="EM3", name="third") as emsp3:
        emsp3.register(hub.versions_url, hub.issue_token_a(), to=("NL", "CPO"))

        answer = cpo.push(conn, "locations", "PUT", "/NL/CPO/LOC1", location(1), to=hub.party)
        infos = hub.announce(hub.connection_for(("DE", "EM2")))

        assert answer.ok
        assert (answer.headers["OCPI-from-party-id"], answer.headers["OCPI-to-party-id"]) == ("HUB", "CPO")
        assert emsp2.location("LOC1") == location(1) == emsp3.location("LOC1")
        [delivered] = emsp3.received("PUT")
        # 4.1.8.3: the Hub is the sender of what it broadcasts.
        assert (delivered.headers["ocpi-from-party-id"], delivered.headers["ocpi-to-party-id"]) == (
            "HUB",
            "EM3",
        )
        assert [d["to"] for d in hub.broadcasts[0]["deliveries"]] == [("DE", "EM2"), ("DE", "EM3")]
        assert [i.status_code for i in infos] == [1000, 1000]
        assert {k: v["status"] for k, v in emsp2.client_infos.items()} == {
            ("NL", "CPO"): "CONNECTED",
            ("DE", "EM3"): "CONNECTED",
        }
        assert "ocpi-to-party-id" not in emsp2.received("PUT", "hubclientinfo")[0].headers
        assert_clean(cpo, hub, emsp2, emsp3)


def test_hub_forwards_realtime_authorization_and_token_pages_to_the_emsp(roaming):
    cpo, hub, emsp2, conn = roaming
    emsp2.tokens = [emsp2.token(f"T{n}") for n in range(3)]
    emsp2.page_limit = 2
    emsp2.realtime_auth = {"T1": "ALLOWED"}
    tokens_url = conn.endpoint("tokens", "SENDER")
    routing = (cpo.party, ("DE", "EM2"))

    allowed = cpo.call(
        "POST", f"{tokens_url}/T1/authorize", conn=conn, body={"location_id": "LOC1"}, routing=routing
    )
    first = cpo.call("GET", tokens_url, conn=conn, routing=routing)
    second = cpo.call("GET", next_link(first.headers), conn=conn, routing=routing)

    assert tokens_url == hub.url(f"{VERSION_PREFIX}/sender/tokens")
    assert (allowed.data["allowed"], allowed.data["token"]) == ("ALLOWED", emsp2.tokens[1])
    assert next_link(first.headers).startswith(f"{tokens_url}?")
    assert [t["uid"] for t in first.data + second.data] == ["T0", "T1", "T2"]
    assert [a["uid"] for a in emsp2.authorizations] == ["T1"]
    assert_clean(cpo, hub, emsp2)


def test_intercept_answers_instead_of_the_receiver(cpo, emsp):
    conn = cpo.register(emsp.versions_url, emsp.issue_token_a())
    emsp.intercept = lambda req: (
        ocpi(http=503, status_code=3000, message="down for maintenance") if req.method == "PUT" else None
    )

    refused = cpo.push(conn, "sessions", "PUT", "/NL/CPO/S1", session("S1", emsp.token("T1")), to=emsp.party)
    emsp.intercept = None
    accepted = cpo.push(conn, "sessions", "PUT", "/NL/CPO/S1", session("S1", emsp.token("T1")), to=emsp.party)

    assert (refused.http_status, refused.status_code) == (503, 3000)
    assert (accepted.http_status, accepted.status_code) == (201, 1000)
    assert [r.response_status for r in emsp.received("PUT")] == [503, 201]


def test_the_cpo_unregisters_from_the_emsp(cpo, emsp):
    conn = cpo.register(emsp.versions_url, emsp.issue_token_a())

    deleted = cpo.unregister(conn)
    again = cpo.raw(
        "GET", f"{emsp.version_url}/credentials", headers={"Authorization": f"Token {b64(conn.token_out)}"}
    )

    assert deleted.ok and "data" not in deleted.body
    assert emsp.connections == [] and cpo.connections == []
    assert again.http_status == 401
    assert_clean(cpo, emsp)


# --- object checks ------------------------------------------------------------------------------------------


def test_the_examples_objects_pass_the_checks(emsp):
    token = emsp.token("T1")

    assert object_problems("Location", location(1)) == []
    assert object_problems("Session", session("S1", token)) == []
    assert object_problems("CDR", cdr("C1", token)) == []
    assert object_problems("Token", token) == []


def test_checks_name_each_deviation_from_the_specification():
    wrong = {
        **cdr(
            "C1", {"country_code": "DE", "party_id": "EMS", "uid": "T1", "type": "RFID", "contract_id": "X"}
        ),
        "total_cost": {"excl_vat": "3.00"},
        "currency": "eur",
        "end_date_time": "2026-01-01T11:00:00+00:00",
        "charging_periods": [
            {"start_date_time": "2026-01-01T10:00:00Z", "dimensions": [{"type": "POWER", "volume": 7}]}
        ],
    }
    wrong["cdr_location"] = {
        **wrong["cdr_location"],
        "coordinates": {"latitude": "52.09", "longitude": "5.120000"},
    }
    del wrong["total_time"]

    assert object_problems("CDR", wrong) == [
        "CDR.end_date_time: not a DateTime in UTC (16.2): '2026-01-01T11:00:00+00:00'",
        "CDR.cdr_location.coordinates.latitude: not a GeoLocation latitude (8.4.13): '52.09'",
        "CDR.currency: not a ISO 4217 currency: 'eur'",
        "CDR.charging_periods[0].dimensions[0].type: not one of "
        "['ENERGY', 'MAX_CURRENT', 'MAX_POWER', 'MIN_CURRENT', 'MIN_POWER', 'PARKING_TIME', 'RESERVATION_TIME', "
        "'TIME']: 'POWER'",
        "CDR.total_cost.excl_vat: not a JSON number (16.4): '3.00'",
        "CDR.total_time: required, missing",
    ]
    # A PATCH leaves fields out, but what it carries is checked.
    assert object_problems("Session", {"kwh": 1, "last_updated": "2026-01-01T10:00:00Z"}, partial=True) == []
    assert object_problems("EVSE", {"status": "BUSY"}, partial=True) == [
        "EVSE.status: not one of ['AVAILABLE', 'BLOCKED', 'CHARGING', 'INOPERATIVE', 'OUTOFORDER', 'PLANNED', "
        "'REMOVED', 'RESERVED', 'UNKNOWN']: 'BUSY'"
    ]


def test_pulled_objects_are_checked_and_their_owner_too(cpo, emsp):
    emsp.register(cpo.versions_url, cpo.issue_token_a())
    cpo.locations = [location(1), {**location(2), "party_id": "OTH", "publish": "yes"}]

    emsp.pull("locations")

    url = f"GET {cpo.url(VERSION_PREFIX)}/locations"
    assert emsp.problems == [
        f"{url}: Location [1].publish: not a boolean: 'yes'",
        f"{url}: Location [1] owned by ('NL', 'OTH'), not a role of the platform",
    ]


def test_a_pushed_object_lacking_a_required_field_is_refused_and_reported(cpo, emsp):
    conn = cpo.register(emsp.versions_url, emsp.issue_token_a())
    broken = location(1)
    del broken["evses"][0]["connectors"][0]["max_voltage"]

    answer = cpo.push(conn, "locations", "PUT", "/NL/CPO/LOC1", broken, to=emsp.party)

    assert (answer.http_status, answer.status_code) == (200, 2001)
    assert emsp.locations == {}
    assert emsp.problems == [
        f"PUT {VERSION_PREFIX}/locations/NL/CPO/LOC1: Location.evses[0].connectors[0].max_voltage: required, missing"
    ]
