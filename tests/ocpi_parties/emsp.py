"""An eMSP written from the OCPI 2.2.1 specification, to drive a CPO over HTTP in tests.

Server side (what a CPO calls): versions, version details, credentials, and the Receiver interfaces of
locations (8.2.2), tariffs (11.2.2), sessions (9.2.2), cdrs (10.2.2), hubclientinfo (15.3.1), the Sender
interface of tokens (12.2.2, with real-time authorization) and of commands (13.2.2, the response_url).
Each receiver stores exactly what it got, merged as the specification says, and checks it: what the CPO does
against the specification is written to `problems`.

Client side (what the eMSP calls at the CPO): register/rotate/unregister, paginated pulls, token pushes and
commands. Its requests carry the routing headers from this eMSP to `target` (the CPO party): directly, or
through a Hub, which routes them by those headers.
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.ocpi_parties.checks import MODULE_KINDS, object_problems
from tests.ocpi_parties.platform import (
    VERSION_PREFIX,
    Connection,
    OcpiError,
    OcpiResponse,
    Party,
    Platform,
    Request,
    Response,
    next_link,
    now_iso,
    ocpi,
    paginate,
    party,
)

_SEG = r"(?P<{}>[^/]+)"


def make_token(
    uid: str,
    *,
    country_code: str,
    party_id: str,
    type: str = "RFID",
    whitelist: str = "ALLOWED",
    valid: bool = True,
    contract_id: str | None = None,
    issuer: str = "Test eMSP",
    last_updated: str | None = None,
    **extra: Any,
) -> dict:
    """A Token object (12.3.2). whitelist: ALWAYS, ALLOWED, ALLOWED_OFFLINE or NEVER (12.4.4)."""
    return {
        "country_code": country_code,
        "party_id": party_id,
        "uid": uid,
        "type": type,
        "contract_id": contract_id or f"{country_code}-{party_id}-C{uid}"[:36],
        "issuer": issuer,
        "valid": valid,
        "whitelist": whitelist,
        "last_updated": last_updated or now_iso(),
        **extra,
    }


def cdr_token(token: dict) -> dict:
    """The CdrToken (10.4.5) a CPO should put in Sessions and CDRs for `token`."""
    return {k: token[k] for k in ("country_code", "party_id", "uid", "type", "contract_id")}


class Emsp(Platform):
    """One eMSP party on its own platform.

    Knobs: `realtime_auth` {token uid: AllowedType} answers POST tokens/{uid}/authorize (a uid not in it is
    unknown: HTTP 404 + 2004, 12.2.2.2), after `realtime_auth_delay_s`; `require_location_references` makes
    an authorize without LocationReferences answer 2002; `tokens` is served on GET tokens with pages of at
    most `page_limit`.
    """

    party_role = "EMSP"

    def __init__(self, *, country_code: str = "DE", party_id: str = "EMS", name: str = "Test eMSP", **kwargs):
        self.locations: dict[tuple[str, str, str], dict] = {}
        self.tariffs: dict[tuple[str, str, str], dict] = {}
        self.sessions: dict[tuple[str, str, str], dict] = {}
        self.cdrs: dict[tuple[str, str, str], dict] = {}
        self.cdr_urls: dict[tuple[str, str, str], str] = {}
        self.client_infos: dict[tuple[str, str], dict] = {}
        self.command_results: dict[str, list[dict]] = {}
        self.commands_sent: dict[str, dict] = {}
        self.authorizations: list[dict] = []
        self.tokens: list[dict] = []
        self.realtime_auth: dict[str, str] = {}
        self.realtime_auth_delay_s = 0.0
        self.require_location_references = False
        self.page_limit = 50
        # The CPO party this eMSP talks to; set by register() (from the credentials roles, or `to=`).
        self.target: Party | None = None
        self._cdr_by_number: dict[str, tuple[str, str, str]] = {}
        self._cdr_counter = 0
        super().__init__(country_code=country_code, party_id=party_id, name=name, **kwargs)

    # --- identity --------------------------------------------------------------------------------------

    def endpoint_paths(self) -> list[tuple[str, str, str]]:
        p = VERSION_PREFIX
        return [
            ("credentials", "SENDER", f"{p}/credentials"),
            ("locations", "RECEIVER", f"{p}/locations"),
            ("tariffs", "RECEIVER", f"{p}/tariffs"),
            ("sessions", "RECEIVER", f"{p}/sessions"),
            ("cdrs", "RECEIVER", f"{p}/cdrs"),
            ("tokens", "SENDER", f"{p}/tokens"),
            ("commands", "SENDER", f"{p}/commands-result"),
            ("hubclientinfo", "RECEIVER", f"{p}/hubclientinfo"),
        ]

    def token(self, uid: str, **kwargs: Any) -> dict:
        """A Token of this eMSP (see make_token)."""
        cc, pid = self.party
        return make_token(uid, country_code=cc, party_id=pid, **kwargs)

    # --- registration ----------------------------------------------------------------------------------

    def register(self, versions_url: str, token_a: str, *, to: tuple[str, str] | None = None) -> Connection:
        """7.1.1 as the Sender. `to` is the CPO party to address (required through a Hub, whose credentials
        name only the Hub); directly, it is the CPO role of the other platform's credentials."""
        conn = super().register(versions_url, token_a)
        self._set_target(conn, to)
        return conn

    def _set_target(self, conn: Connection, to: tuple[str, str] | None) -> None:
        if to is not None:
            self.target = party(*to)
            return
        cpos = [party(r["country_code"], r["party_id"]) for r in conn.roles if r.get("role") == "CPO"]
        if cpos:
            self.target = cpos[0]

    def _credentials(self, req: Request) -> Response:
        response = super()._credentials(req)
        # A CPO that registered with us: address it from now on.
        succeeded = response.body is not None and response.body.get("status_code") == 1000
        if succeeded and (req.method == "PUT" or (req.method == "POST" and self.target is None)):
            self._set_target(req.connection, None)
        return response

    # --- client ----------------------------------------------------------------------------------------

    def _endpoint(self, module: str, role: str) -> str:
        url = self.connection.endpoint(module, role)
        if url is None:
            raise OcpiError(f"{self.name}: the other platform has no {module} {role} endpoint")
        return url.rstrip("/")

    def _routing(self) -> tuple[Party, Party | None]:
        return (self.party, self.target)

    def request(self, method: str, url: str, **kwargs: Any) -> OcpiResponse:
        """A functional-module request on the registered connection, with routing headers."""
        kwargs.setdefault("routing", self._routing())
        return self.call(method, url, conn=self.connection, **kwargs)

    def pull_pages(self, module: str, *, role: str = "SENDER", **params: Any) -> list[OcpiResponse]:
        """GET a paginated list (4.1.4.1), following Link rel="next" to the end; every page's response.

        Checks each page (into `problems`): X-Total-Count and X-Limit present, no more objects than X-Limit,
        and the next Link keeps the request's filters."""
        url: str | None = self._endpoint(module, role)
        query: dict | None = {k: str(v) for k, v in params.items()}
        filters = {k: v for k, v in (query or {}).items() if k not in {"offset", "limit"}}
        pages = []
        while url is not None:
            if len(pages) > 10_000:
                raise OcpiError(f"{self.name}: more than 10000 pages at {module}")
            response = self.request("GET", url, params=query)
            pages.append(response)
            if not response.ok:
                break
            self._check_page(module, response, filters)
            url, query = next_link(response.headers), None
        return pages

    def pull(self, module: str, *, role: str = "SENDER", **params: Any) -> list[dict]:
        """Every object of a paginated list; raises when a page is not a success."""
        objects: list[dict] = []
        for page in self.pull_pages(module, role=role, **params):
            if not page.ok:
                raise OcpiError(f"{self.name}: GET {module} page not successful", page)
            objects.extend(page.data)
        return objects

    def _check_page(self, module: str, response: OcpiResponse, filters: dict) -> None:
        where = f"GET {response.url}"
        if not isinstance(response.data, list):
            self.problem(f"{where}: data is not a list")
            return
        total, limit = response.headers.get("X-Total-Count"), response.headers.get("X-Limit")
        if total is None or not total.isdigit():
            self.problem(f"{where}: no integer X-Total-Count header (4.1.4.1)")
        if limit is None or not limit.isdigit():
            self.problem(f"{where}: no integer X-Limit header (4.1.4.1)")
        elif len(response.data) > int(limit):
            self.problem(f"{where}: {len(response.data)} objects on a page, more than X-Limit {limit}")
        kind = MODULE_KINDS.get(module)
        direct = not self.connection.is_hub
        for index, obj in enumerate(response.data):
            if kind is None:
                break
            for text in object_problems(kind, obj, where=f"{where}: {kind} [{index}]"):
                self.problem(text)
            # 4.1.6: the owner of a pulled object is the country_code/party_id in it: a role of the sender.
            if direct and isinstance(obj, dict) and module != "tokens":
                owner = (str(obj.get("country_code", "")).upper(), str(obj.get("party_id", "")).upper())
                if not self.connection.has_party(owner):
                    self.problem(f"{where}: {kind} [{index}] owned by {owner}, not a role of the platform")
        link = next_link(response.headers)
        if link is not None:
            linked = dict(parse_qsl(urlsplit(link).query))
            lost = {k: v for k, v in filters.items() if linked.get(k) != v}
            if lost:
                self.problem(f"{where}: next Link {link} loses the filters {lost} (4.1.4.1)")

    def get(self, module: str, *path: str, role: str = "SENDER", **params: Any) -> OcpiResponse:
        """GET one object, e.g. get("locations", "LOC1", "EVSE1")."""
        url = "/".join([self._endpoint(module, role), *path])
        return self.request("GET", url, params=params or None)

    def _token_url(self, uid: str) -> str:
        cc, pid = self.party
        return f"{self._endpoint('tokens', 'RECEIVER')}/{cc}/{pid}/{uid}"

    def push_token(self, token: dict) -> OcpiResponse:
        """12.2.1.2 PUT the Token on the CPO's tokens Receiver."""
        return self.request("PUT", self._token_url(token["uid"]), params={"type": token["type"]}, body=token)

    def patch_token(self, uid: str, changes: dict, *, type: str = "RFID") -> OcpiResponse:
        """12.2.1.3 PATCH; last_updated is added when missing (the PATCH SHALL contain it)."""
        body = {"last_updated": now_iso(), **changes}
        return self.request("PATCH", self._token_url(uid), params={"type": type}, body=body)

    def get_token(self, uid: str, *, type: str = "RFID") -> OcpiResponse:
        """12.2.1.1 GET the Token as the CPO stores it."""
        return self.request("GET", self._token_url(uid), params={"type": type})

    def command(self, name: str, body: dict, *, command_id: str | None = None) -> OcpiResponse:
        """13.2.1.1 POST a command; `response_url` (added when absent) points at this eMSP's
        commands-result/<command_id>. The response carries `command_id` for wait_command_result()."""
        command_id = command_id or uuid.uuid4().hex
        body = {"response_url": self.url(f"{VERSION_PREFIX}/commands-result/{command_id}"), **body}
        with self._lock:
            self.commands_sent[command_id] = {"command": name, "body": body}
        response = self.request("POST", f"{self._endpoint('commands', 'RECEIVER')}/{name}", body=body)
        response.command_id = command_id
        if response.ok:
            for text in object_problems(
                "CommandResponse", response.data, where=f"POST {name}: CommandResponse"
            ):
                self.problem(text)
        return response

    def wait_command_result(self, command_id: str, timeout: float = 10.0) -> dict:
        """The first CommandResult POSTed to the command's response_url."""
        results = self.wait_for(
            lambda: self.command_results.get(command_id), timeout, what=f"CommandResult for {command_id}"
        )
        return results[0]

    # --- command bodies (13.3) -------------------------------------------------------------------------

    @staticmethod
    def start_session(token: dict, location_id: str, evse_uid: str | None = None, **kwargs: Any) -> dict:
        body = {"token": token, "location_id": location_id, **kwargs}
        if evse_uid is not None:
            body["evse_uid"] = evse_uid
        return body

    @staticmethod
    def stop_session(session_id: str) -> dict:
        return {"session_id": session_id}

    @staticmethod
    def reserve_now(
        token: dict, location_id: str, reservation_id: str, expiry_date: str, evse_uid: str | None = None
    ) -> dict:
        body = {
            "token": token,
            "location_id": location_id,
            "reservation_id": reservation_id,
            "expiry_date": expiry_date,
        }
        if evse_uid is not None:
            body["evse_uid"] = evse_uid
        return body

    @staticmethod
    def cancel_reservation(reservation_id: str) -> dict:
        return {"reservation_id": reservation_id}

    @staticmethod
    def unlock_connector(location_id: str, evse_uid: str, connector_id: str) -> dict:
        return {"location_id": location_id, "evse_uid": evse_uid, "connector_id": connector_id}

    # --- server: receivers -----------------------------------------------------------------------------

    def routes(self):
        p = VERSION_PREFIX
        s = _SEG.format
        owner = f"{s('cc')}/{s('pid')}"
        return [
            self.route(
                "GET PUT PATCH",
                rf"{p}/locations/{owner}/{s('location_id')}(?:/{s('evse_uid')})?(?:/{s('connector_id')})?",
                self._locations,
            ),
            self.route("GET PUT DELETE", rf"{p}/tariffs/{owner}/{s('tariff_id')}", self._tariffs),
            self.route("GET PUT PATCH", rf"{p}/sessions/{owner}/{s('session_id')}", self._sessions),
            self.route("POST", rf"{p}/cdrs", self._cdrs_post),
            self.route("GET", rf"{p}/cdrs/{s('number')}", self._cdrs_get),
            self.route("GET", rf"{p}/tokens", self._tokens_list),
            self.route("POST", rf"{p}/tokens/{s('uid')}/authorize", self._authorize),
            self.route("POST", rf"{p}/commands-result/{s('command_id')}", self._command_result),
            self.route("GET PUT", rf"{p}/hubclientinfo/{owner}", self._client_info),
        ]

    def _owner_ok(self, req: Request, cc: str, pid: str, body: Any) -> Response | None:
        """4.1.5: the URL's {country_code}/{party_id} name the pushing party, equal to the object's own."""
        owner = party(cc, pid)
        conn = req.connection
        if conn is not None and not conn.is_hub and not conn.has_party(owner):
            self.problem(
                f"{req.method} {req.path}: {owner} is not a role of the platform that sent it (4.1.5.1)"
            )
            return ocpi(http=404, status_code=2000, message="not your object")
        pushed_owner = (
            party(body["country_code"], body.get("party_id", ""))
            if isinstance(body, dict) and req.method == "PUT" and "country_code" in body
            else owner
        )
        if pushed_owner != owner:
            self.problem(f"{req.method} {req.path}: body country_code/party_id differ from the URL")
            return ocpi(status_code=2001, message="country_code/party_id differ from the URL")
        return None

    def _check_object(self, req: Request, kind: str, obj: Any, *, partial: bool = False) -> Response | None:
        """Every problem of `obj` (checks.py) goes to `problems`; 2001 when it cannot be used at all (a
        required field missing or of the wrong type)."""
        problems = object_problems(kind, obj, where=f"{req.method} {req.path}: {kind}", partial=partial)
        for text in problems:
            self.problem(text)
        unusable = [
            p for p in problems if "required, missing" in p or "not an object" in p or "not a list" in p
        ]
        if unusable:
            return ocpi(status_code=2001, message="; ".join(unusable)[:1000])
        return None

    def _invalid(self, req: Request, what: str, missing: list[str]) -> Response:
        self.problem(f"{req.method} {req.path}: {what} lacks required fields {missing}")
        return ocpi(status_code=2001, message=f"{what} lacks {missing}")

    def _patch_needs_last_updated(self, req: Request) -> Response | None:
        if not isinstance(req.json, dict):
            return self._invalid(req, "PATCH body", ["(not an object)"])
        if "last_updated" not in req.json:
            # 8.2.2.3, 9.2.2.3, 12.2.1.3: any request to the PATCH method SHALL contain last_updated.
            return self._invalid(req, "PATCH body", ["last_updated"])
        return None

    def _locations(
        self,
        req: Request,
        cc: str,
        pid: str,
        location_id: str,
        evse_uid: str | None = None,
        connector_id: str | None = None,
    ) -> Response:
        """8.2.2 Locations Receiver: GET, PUT and PATCH of a Location, an EVSE or a Connector."""
        refused = self._owner_ok(req, cc, pid, req.json)
        if refused is not None:
            return refused
        key = (*party(cc, pid), location_id)
        with self._lock:
            location = self.locations.get(key)
            evse = _find(location.get("evses", []), "uid", evse_uid) if location and evse_uid else None
            connector = (
                _find(evse.get("connectors", []), "id", connector_id) if evse and connector_id else None
            )
            target = connector if connector_id else evse if evse_uid else location
            if req.method == "GET":
                if target is None:
                    return ocpi(http=404, status_code=2000, message="unknown object")
                return ocpi(copy.deepcopy(target))
            if req.method == "PATCH":
                refused = self._patch_needs_last_updated(req)
                if refused is not None:
                    return refused
                kind = "Connector" if connector_id else "EVSE" if evse_uid else "Location"
                refused = self._check_object(req, kind, req.json, partial=True)
                if refused is not None:
                    return refused
                if target is None:
                    self.problem(f"PATCH {req.path}: the object was never PUT")
                    return ocpi(http=404, status_code=2001, message="unknown object: PUT it first")
                target.update(copy.deepcopy(req.json))
                stamp = req.json["last_updated"]
                # 8.2.2.3: a PATCH of a Connector or EVSE sets last_updated on its parents too.
                for parent in (evse if connector_id else None, location if evse_uid else None):
                    if parent is not None:
                        parent["last_updated"] = stamp
                return ocpi()
            # PUT (8.2.2.2)
            body = copy.deepcopy(req.json)
            if connector_id:
                what, ident = "Connector", ("id", connector_id)
            elif evse_uid:
                what, ident = "EVSE", ("uid", evse_uid)
            else:
                what, ident = "Location", ("id", location_id)
            refused = self._check_object(req, what, body)
            if refused is not None:
                return refused
            if body[ident[0]] != ident[1]:
                # 4.1.5.1: the object id in the URL differs from the object's own: 2001.
                self.problem(f"PUT {req.path}: {what}.{ident[0]} {body[ident[0]]!r} differs from the URL")
                return ocpi(status_code=2001, message="object id differs from the URL")
            created = target is None
            if what == "Location":
                self.locations[key] = body
            else:
                if location is None:
                    self.problem(f"PUT {req.path}: {what} of a Location that was never PUT")
                    return ocpi(http=404, status_code=2001, message="unknown Location: PUT it first")
                if what == "EVSE":
                    _replace(location.setdefault("evses", []), "uid", body)
                else:
                    if evse is None:
                        self.problem(f"PUT {req.path}: Connector of an EVSE that was never PUT")
                        return ocpi(http=404, status_code=2001, message="unknown EVSE: PUT it first")
                    _replace(evse.setdefault("connectors", []), "id", body)
                    evse["last_updated"] = body["last_updated"]
                # 8.2.2.2: a PUT of an EVSE or Connector sets the parents' last_updated.
                location["last_updated"] = body["last_updated"]
            return ocpi(http=201 if created else 200)

    def _tariffs(self, req: Request, cc: str, pid: str, tariff_id: str) -> Response:
        """11.2.2 Tariffs Receiver: GET, PUT, DELETE."""
        refused = self._owner_ok(req, cc, pid, req.json)
        if refused is not None:
            return refused
        key = (*party(cc, pid), tariff_id)
        with self._lock:
            if req.method == "GET":
                tariff = self.tariffs.get(key)
                return ocpi(copy.deepcopy(tariff)) if tariff else ocpi(http=404, status_code=2000)
            if req.method == "DELETE":
                if self.tariffs.pop(key, None) is None:
                    return ocpi(http=404, status_code=2000, message="unknown tariff")
                return ocpi()
            refused = self._check_object(req, "Tariff", req.json)
            if refused is not None:
                return refused
            if req.json["id"] != tariff_id:
                self.problem(f"PUT {req.path}: Tariff.id differs from the URL")
                return ocpi(status_code=2001, message="Tariff.id differs from the URL")
            created = key not in self.tariffs
            self.tariffs[key] = copy.deepcopy(req.json)
            return ocpi(http=201 if created else 200)

    def _sessions(self, req: Request, cc: str, pid: str, session_id: str) -> Response:
        """9.2.2 Sessions Receiver: GET, PUT (replaces, charging_periods included), PATCH (merges; a
        non-empty charging_periods list is appended)."""
        refused = self._owner_ok(req, cc, pid, req.json)
        if refused is not None:
            return refused
        key = (*party(cc, pid), session_id)
        with self._lock:
            session = self.sessions.get(key)
            if req.method == "GET":
                return ocpi(copy.deepcopy(session)) if session else ocpi(http=404, status_code=2000)
            if req.method == "PUT":
                refused = self._check_object(req, "Session", req.json)
                if refused is not None:
                    return refused
                if req.json["id"] != session_id:
                    self.problem(f"PUT {req.path}: Session.id differs from the URL")
                    return ocpi(status_code=2001, message="Session.id differs from the URL")
                body = copy.deepcopy(req.json)
                body.setdefault("charging_periods", [])
                self.sessions[key] = body
                return ocpi(http=201 if session is None else 200)
            refused = self._patch_needs_last_updated(req)
            if refused is not None:
                return refused
            refused = self._check_object(req, "Session", req.json, partial=True)
            if refused is not None:
                return refused
            if session is None:
                self.problem(f"PATCH {req.path}: the Session was never PUT")
                return ocpi(http=404, status_code=2001, message="unknown Session: PUT it first")
            changes = copy.deepcopy(req.json)
            periods = changes.pop("charging_periods", None) or []
            session.update(changes)
            session.setdefault("charging_periods", []).extend(periods)
            return ocpi()

    def _cdrs_post(self, req: Request) -> Response:
        """10.2.2.2 POST a CDR; the answer's Location header is where to GET it."""
        cdr = req.json
        refused = self._check_object(req, "CDR", cdr)
        if refused is not None:
            return refused
        owner = party(cdr["country_code"], cdr["party_id"])
        conn = req.connection
        if conn is not None and not conn.is_hub and not conn.has_party(owner):
            self.problem(f"POST {req.path}: CDR of {owner}, not a role of the platform that sent it")
            return ocpi(status_code=2001, message="CDR of another party")
        key = (*owner, cdr["id"])
        with self._lock:
            if key in self.cdrs:
                # 10.1: a CDR cannot be changed once sent. The same CDR again (a retry) is harmless.
                if self.cdrs[key] != cdr:
                    self.problem(f"POST {req.path}: CDR {key} sent again with different content")
                    return ocpi(status_code=2001, message="a CDR with this id exists with other content")
                return Response(200, ocpi().body, {"Location": self.cdr_urls[key]})
            self._cdr_counter += 1
            number = str(self._cdr_counter)
            self.cdrs[key] = copy.deepcopy(cdr)
            self._cdr_by_number[number] = key
            self.cdr_urls[key] = self.url(f"{VERSION_PREFIX}/cdrs/{number}")
            return Response(201, ocpi().body, {"Location": self.cdr_urls[key]})

    def _cdrs_get(self, req: Request, number: str) -> Response:
        with self._lock:
            key = self._cdr_by_number.get(number)
            if key is None:
                return ocpi(http=404, status_code=2000, message="unknown CDR")
            return ocpi(copy.deepcopy(self.cdrs[key]))

    def _tokens_list(self, req: Request) -> Response:
        """12.2.2.1 GET the Tokens, paginated."""
        with self._lock:
            tokens = list(self.tokens)
        return paginate(
            req, tokens, endpoint_url=self.url(f"{VERSION_PREFIX}/tokens"), max_limit=self.page_limit
        )

    def _authorize(self, req: Request, uid: str) -> Response:
        """12.2.2.2 real-time authorization."""
        token_type = req.query.get("type", "RFID")
        if self.realtime_auth_delay_s:
            time.sleep(self.realtime_auth_delay_s)
        with self._lock:
            self.authorizations.append({"uid": uid, "type": token_type, "body": req.json, "at": time.time()})
            allowed = self.realtime_auth.get(uid)
            if allowed is None:
                return ocpi(http=404, status_code=2004, message="Unknown Token")
            if self.require_location_references and not req.json:
                return ocpi(status_code=2002, message="LocationReferences needed")
            known = [t for t in self.tokens if t["uid"] == uid and t["type"] == token_type]
            token = copy.deepcopy(known[0]) if known else self.token(uid, type=token_type, whitelist="NEVER")
            info = {"allowed": allowed, "token": token, "authorization_reference": uuid.uuid4().hex[:36]}
            if isinstance(req.json, dict) and req.json.get("location_id"):
                info["location"] = copy.deepcopy(req.json)
            self.authorizations[-1]["answer"] = info
            return ocpi(info)

    def _command_result(self, req: Request, command_id: str) -> Response:
        """13.2.2.1 the CommandResult POSTed to a response_url."""
        result = req.json
        refused = self._check_object(req, "CommandResult", result)
        if refused is not None:
            return refused
        with self._lock:
            if command_id not in self.commands_sent:
                self.problem(f"POST {req.path}: a CommandResult for a command never sent")
                return ocpi(http=404, status_code=2000, message="unknown command")
            self.command_results.setdefault(command_id, []).append(copy.deepcopy(result))
        return ocpi()

    def _client_info(self, req: Request, cc: str, pid: str) -> Response:
        """15.3.1 HubClientInfo Receiver."""
        key = party(cc, pid)
        with self._lock:
            if req.method == "GET":
                info = self.client_infos.get(key)
                return ocpi(copy.deepcopy(info)) if info else ocpi(http=404, status_code=2000)
            refused = self._check_object(req, "ClientInfo", req.json)
            if refused is not None:
                return refused
            created = key not in self.client_infos
            self.client_infos[key] = copy.deepcopy(req.json)
            return ocpi(http=201 if created else 200)

    # --- lookups for tests ------------------------------------------------------------------------------

    def location(self, location_id: str) -> dict | None:
        with self._lock:
            found = [v for (_, _, lid), v in self.locations.items() if lid == location_id]
            return copy.deepcopy(found[0]) if found else None

    def session(self, session_id: str) -> dict | None:
        with self._lock:
            found = [v for (_, _, sid), v in self.sessions.items() if sid == session_id]
            return copy.deepcopy(found[0]) if found else None

    def cdr(self, cdr_id: str) -> dict | None:
        with self._lock:
            found = [v for (_, _, cid), v in self.cdrs.items() if cid == cdr_id]
            return copy.deepcopy(found[0]) if found else None


def _find(items: list[dict], key: str, value: str | None) -> dict | None:
    for item in items:
        if item.get(key) == value:
            return item
    return None


def _replace(items: list[dict], key: str, new: dict) -> None:
    for index, item in enumerate(items):
        if item.get(key) == new[key]:
            items[index] = new
            return
    items.append(new)


__all__ = ["Emsp", "cdr_token", "make_token"]
