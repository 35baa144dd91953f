"""The machinery every OCPI 2.2.1 party of the test harness shares: an HTTP server, an HTTP client, the
credentials module and the transport rules, written from the OCPI 2.2.1 specification (not from `cpms`).

Section names below are those of the specification: "4.1.2 Authorization header", "4.1.4.1 Pagination",
"4.1.7 Response format", "4.1.8 Message routing", "4.2 Unique message IDs", "5 Status codes",
"6 Versions module", "7 Credentials module".

A `Platform` is one OCPI platform (it may host one party, or be a Hub). It keeps two lists for assertions:
`requests` (everything it received, with its answer) and `problems` (what the other side did against the
specification, in words). `errors` lists the harness's own exceptions: a test expects both empty.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import datetime as dt
import json
import re
import secrets
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import httpx

OCPI_VERSION = "2.2.1"
VERSION_PREFIX = f"/ocpi/{OCPI_VERSION}"

# 4.1.8.2: requests to/from Configuration Modules are not routed and SHALL NOT carry routing headers.
CONFIGURATION_MODULES = frozenset({"versions", "details", "credentials", "hubclientinfo"})

ROUTING_HEADERS = (
    "OCPI-to-country-code",
    "OCPI-to-party-id",
    "OCPI-from-country-code",
    "OCPI-from-party-id",
)

# 4.1.2: printable non-whitespace ASCII, at most 64 characters (7.3.1 Credentials object, token).
_TOKEN_RE = re.compile(r"^[\x21-\x7e]{1,64}$")

Party = tuple[str, str]  # (country_code, party_id), compared case-insensitively (CiString).


def party(country_code: str, party_id: str) -> Party:
    return (country_code.upper(), party_id.upper())


def b64(token: str) -> str:
    """4.1.2: the credentials token, UTF-8 encoded then Base64 (RFC 4648) encoded."""
    return base64.b64encode(token.encode()).decode()


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(value: str) -> dt.datetime:
    """An OCPI DateTime (16.1 DateTime type: RFC 3339, UTC; the 'Z' is optional in the spec's examples)."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def new_token() -> str:
    return secrets.token_urlsafe(24)


def envelope(data: Any = ..., *, status_code: int = 1000, message: str | None = None) -> dict:
    """4.1.7 Response format; `data` left out when not given (4.1.7.5: an error contains no data field)."""
    body: dict[str, Any] = {"status_code": status_code, "timestamp": now_iso()}
    if data is not ...:
        body["data"] = data
    if message is not None:
        body["status_message"] = message
    return body


class OcpiError(Exception):
    """The other side answered a harness call with something the call cannot go on with."""

    def __init__(self, message: str, response: OcpiResponse | None = None):
        super().__init__(f"{message}: {response}" if response is not None else message)
        self.response = response


@dataclass
class Request:
    """One HTTP request received by a platform's server."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names (HTTP header names are case-insensitive)
    raw: bytes
    json: Any = None
    json_error: str | None = None
    connection: Connection | None = None
    module: str = ""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def from_party(self) -> Party | None:
        cc, pid = self.header("OCPI-from-country-code"), self.header("OCPI-from-party-id")
        return party(cc, pid) if cc and pid else None

    def to_party(self) -> Party | None:
        cc, pid = self.header("OCPI-to-country-code"), self.header("OCPI-to-party-id")
        return party(cc, pid) if cc and pid else None


@dataclass
class Response:
    status: int
    body: dict | None
    headers: dict[str, str] = field(default_factory=dict)


def ocpi(
    data: Any = ..., *, http: int = 200, status_code: int = 1000, message: str | None = None
) -> Response:
    return Response(http, envelope(data, status_code=status_code, message=message))


@dataclass
class Recorded:
    """A request as a platform received it, and what it answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    connection_id: int | None
    response_status: int
    response_body: Any
    at: float


@dataclass
class OcpiResponse:
    """What a platform's client got back."""

    http_status: int
    headers: httpx.Headers
    body: Any
    text: str
    url: str
    request_headers: dict[str, str] = field(default_factory=dict)
    command_id: str | None = None

    @classmethod
    def from_httpx(cls, response: httpx.Response, request_headers: dict[str, str]) -> OcpiResponse:
        try:
            body = response.json()
        except ValueError:
            body = None
        return cls(
            response.status_code, response.headers, body, response.text, str(response.url), request_headers
        )

    @property
    def status_code(self) -> int | None:
        return self.body.get("status_code") if isinstance(self.body, dict) else None

    @property
    def data(self) -> Any:
        return self.body.get("data") if isinstance(self.body, dict) else None

    @property
    def ok(self) -> bool:
        return 200 <= self.http_status < 300 and self.status_code == 1000

    def __str__(self) -> str:
        return f"HTTP {self.http_status} from {self.url}: {self.text[:500]}"


@dataclass
class Connection:
    """One credentials relationship with another platform (7 Credentials module)."""

    id: int
    # The token the other platform sends us: CREDENTIALS_TOKEN_A until it registered, then B or C.
    token_in: str
    token_in_is_a: bool
    # The token we send it (its A while we register, then its B or C); None until we know one.
    token_out: str | None = None
    # During our own PUT (7.1.4), the token it used before, still accepted until its answer arrives.
    token_in_previous: str | None = None
    registered: bool = False
    versions_url: str | None = None
    version_url: str | None = None
    endpoints: list[dict] = field(default_factory=list)
    roles: list[dict] = field(default_factory=list)

    def endpoint(self, identifier: str, role: str | None = None) -> str | None:
        for endpoint in self.endpoints:
            if endpoint.get("identifier") == identifier and (role is None or endpoint.get("role") == role):
                return endpoint.get("url")
        return None

    @property
    def parties(self) -> list[Party]:
        return [party(r["country_code"], r["party_id"]) for r in self.roles]

    def has_party(self, p: Party | None) -> bool:
        return p is not None and party(*p) in self.parties

    def role_of(self, p: Party) -> str | None:
        for r in self.roles:
            if party(r["country_code"], r["party_id"]) == party(*p):
                return r.get("role")
        return None

    @property
    def is_hub(self) -> bool:
        return any(r.get("role") == "HUB" for r in self.roles)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so a stopped platform has no kept-alive connection still served
    # by a handler thread (the tests stop a platform to play "partner down").
    protocol_version = "HTTP/1.0"
    server: _PlatformServer

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _any(self) -> None:
        raw = self._read_body()
        headers = {name.lower(): value for name, value in self.headers.items()}
        response = self.server.platform.dispatch(self.command, self.path, headers, raw)
        payload = json.dumps(response.body).encode() if response.body is not None else b""
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

    def log_message(self, format, *args):
        pass


class _PlatformServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # start() again on the same port right after stop()

    def __init__(self, address, platform: Platform):
        self.platform = platform
        super().__init__(address, _Handler)


Route = tuple[frozenset[str], re.Pattern, Callable[..., Response]]


class Platform:
    """One OCPI 2.2.1 platform with one party (or a Hub), its server and its client.

    Subclasses give `party_role`, `endpoint_paths()` (the version details) and `routes()` (their functional
    modules). Everything here follows the specification; what the other side does wrong goes to `problems`.
    """

    party_role = "OTHER"

    def __init__(
        self,
        *,
        country_code: str,
        party_id: str,
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout_s: float = 10.0,
    ):
        self.party: Party = party(country_code, party_id)
        self.name = name
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.requests: list[Recorded] = []
        self.problems: list[str] = []
        self.errors: list[str] = []
        self.connections: list[Connection] = []
        self._next_connection_id = 1
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._server: _PlatformServer | None = None
        self._thread: threading.Thread | None = None
        self._http = httpx.Client(timeout=timeout_s)
        self._routes: list[Route] = self._base_routes() + self.routes()
        # A test's hook: called with every authenticated, parsed request; a Response it returns is the answer
        # (an eMSP answering 500, or 3000, or slowly), None lets the request through.
        self.intercept: Callable[[Request], Response | None] | None = None

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> Platform:
        """Listen (again) on `port`; the first start picks a free port and keeps it for later starts."""
        if self._server is not None:
            return self
        server = _PlatformServer((self.host, self.port), self)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"ocpi-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: connections to the port are refused until start()."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._server is not None

    def close(self) -> None:
        self.stop()
        self._http.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.close()

    # --- URLs and identity -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def versions_url(self) -> str:
        return f"{self.base_url}/ocpi/versions"

    @property
    def version_url(self) -> str:
        return f"{self.base_url}{VERSION_PREFIX}"

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def business_details(self) -> dict:
        return {"name": self.name}

    def roles(self) -> list[dict]:
        """7.4.1 CredentialsRole list of this platform (a Hub reports only itself, 7.3.1)."""
        cc, pid = self.party
        return [
            {
                "role": self.party_role,
                "business_details": self.business_details(),
                "party_id": pid,
                "country_code": cc,
            }
        ]

    def credentials_object(self, token: str) -> dict:
        return {"token": token, "url": self.versions_url, "roles": self.roles()}

    def endpoint_paths(self) -> list[tuple[str, str, str]]:
        """(identifier, InterfaceRole, path) of every endpoint in this platform's 2.2.1 version details."""
        return [("credentials", "SENDER", f"{VERSION_PREFIX}/credentials")]

    def version_details(self) -> dict:
        return {
            "version": OCPI_VERSION,
            "endpoints": [
                {"identifier": ident, "role": role, "url": self.url(path)}
                for ident, role, path in self.endpoint_paths()
            ],
        }

    # --- waiting and inspection --------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
        """Wait until `predicate()` is truthy (checked after every request received) and return its value."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: no {what} after {timeout} s")
                self._changed.wait(min(left, 0.1))

    def received(self, method: str | None = None, path_contains: str | None = None) -> list[Recorded]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method)
                and (path_contains is None or path_contains in r.path)
            ]

    def transcript(self, limit: int = 200) -> str:
        """The last requests received, one line each (for a failing test's message)."""
        with self._lock:
            recorded = self.requests[-limit:]
        return "\n".join(
            f"{r.method} {r.path}{'?' + '&'.join(f'{k}={v}' for k, v in r.query.items()) if r.query else ''}"
            f" -> {r.response_status} {(r.response_body or {}).get('status_code')}"
            f" from {r.headers.get('ocpi-from-country-code')}*{r.headers.get('ocpi-from-party-id')}"
            for r in recorded
        )

    def problem(self, text: str) -> None:
        with self._lock:
            self.problems.append(text)

    @property
    def connection(self) -> Connection:
        """The only registered connection (an eMSP talking to one CPO or one Hub)."""
        registered = [c for c in self.connections if c.registered]
        if len(registered) != 1:
            raise OcpiError(f"{self.name} has {len(registered)} registered connections, expected one")
        return registered[0]

    def connection_for(self, p: Party) -> Connection | None:
        for conn in self.connections:
            if conn.registered and conn.has_party(p):
                return conn
        return None

    def _new_connection(self, token_in: str, *, is_a: bool) -> Connection:
        with self._lock:
            conn = Connection(id=self._next_connection_id, token_in=token_in, token_in_is_a=is_a)
            self._next_connection_id += 1
            self.connections.append(conn)
            return conn

    # --- credentials: this platform as the Receiver of the registration (7.1.1) -------------------------

    def issue_token_a(self) -> str:
        """A new CREDENTIALS_TOKEN_A for another platform to register with (given to it out of band)."""
        token = new_token()
        self._new_connection(token, is_a=True)
        return token

    # --- client ------------------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        url: str,
        *,
        conn: Connection | None = None,
        token: str | None = None,
        body: Any = ...,
        params: dict | None = None,
        routing: tuple[Party, Party | None] | None = None,
        correlation_id: str | None = None,
        check: bool = True,
        configuration: bool = False,
    ) -> OcpiResponse:
        """One OCPI request (4.1.2 Authorization, 4.2 X-Request-ID / X-Correlation-ID, 4.1.8.2 routing
        headers when `routing` = (from, to) is given). The answer is checked against 4.1.7 and 4.2, and
        `configuration=True` (versions, credentials, hubclientinfo) checks it carries no routing headers."""
        if token is None:
            if conn is None or conn.token_out is None:
                raise OcpiError(f"{self.name}: no token to call {url}")
            token = conn.token_out
        headers = {
            "Authorization": f"Token {b64(token)}",
            "X-Request-ID": str(uuid.uuid4()),
            "X-Correlation-ID": correlation_id or str(uuid.uuid4()),
        }
        if routing is not None:
            (from_cc, from_pid), to = routing
            headers["OCPI-from-country-code"], headers["OCPI-from-party-id"] = from_cc, from_pid
            if to is not None:
                headers["OCPI-to-country-code"], headers["OCPI-to-party-id"] = to
        content = None
        if body is not ...:
            content = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        response = self._http.request(method, url, params=params, headers=headers, content=content)
        result = OcpiResponse.from_httpx(response, headers)
        if check:
            self._check_response(method, result)
            if routing is not None:
                self._check_response_routing(method, result, routing)
            routed = [name for name in ROUTING_HEADERS if name in result.headers]
            if configuration and routed:
                self.problem(
                    f"{method} {result.url} -> HTTP {result.http_status}: routing headers {routed} in the "
                    "response of a configuration module (4.1.8.2: SHALL NOT)"
                )
        return result

    def _check_response_routing(self, method: str, response: OcpiResponse, routing: tuple) -> None:
        """4.1.8.6 Direct response: OCPI-to = the requesting party, OCPI-from = the receiving party."""
        where = f"{method} {response.url} -> HTTP {response.http_status}"
        sender, receiver = routing
        got_to = _header_party(response.headers, "to")
        got_from = _header_party(response.headers, "from")
        if got_to != party(*sender):
            self.problem(
                f"{where}: response OCPI-to {got_to}, expected the requesting party {sender} (4.1.8.6)"
            )
        if receiver is not None and got_from != party(*receiver):
            self.problem(
                f"{where}: response OCPI-from {got_from}, expected the receiving party {receiver} (4.1.8.6)"
            )

    def raw(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: Any = ...,
        content: bytes | None = None,
    ) -> OcpiResponse:
        """A request exactly as given (no header added, nothing checked), for negative tests."""
        if body is not ...:
            content = json.dumps(body).encode()
        response = self._http.request(method, url, headers=headers or {}, content=content)
        return OcpiResponse.from_httpx(response, dict(headers or {}))

    def _check_response(self, method: str, response: OcpiResponse) -> None:
        where = f"{method} {response.url} -> HTTP {response.http_status}"
        body = response.body
        if not isinstance(body, dict):
            self.problem(f"{where}: body is not an OCPI response object (4.1.7): {response.text[:200]!r}")
        else:
            if not isinstance(body.get("status_code"), int):
                self.problem(f"{where}: no integer status_code (4.1.7): {body}")
            if not isinstance(body.get("timestamp"), str):
                self.problem(f"{where}: no timestamp (4.1.7): {body}")
            else:
                try:
                    parse_datetime(body["timestamp"])
                except ValueError:
                    self.problem(f"{where}: timestamp is not a DateTime: {body['timestamp']!r}")
        # 4.2: the response to a request SHALL contain the same X-Request-ID and X-Correlation-ID.
        for name in ("X-Request-ID", "X-Correlation-ID"):
            sent = response.request_headers.get(name)
            got = response.headers.get(name)
            if got != sent:
                self.problem(f"{where}: {name} {got!r} in the response, {sent!r} was sent (4.2)")

    def _get_ok(self, url: str, token: str, what: str) -> Any:
        try:
            response = self.call("GET", url, token=token, configuration=True)
        except httpx.HTTPError as exc:
            raise OcpiError(f"{self.name}: GET {what} {url} failed: {exc!r}") from exc
        if not response.ok:
            raise OcpiError(f"{self.name}: GET {what} {url} not successful", response)
        return response.data

    def _fetch_endpoints(self, conn: Connection, versions_url: str, token: str) -> None:
        """6.1 / 6.2: pick 2.2.1 from the versions, then read its endpoints."""
        versions = self._get_ok(versions_url, token, "versions")
        if not isinstance(versions, list):
            raise OcpiError(f"{self.name}: versions data is not a list: {versions!r}")
        chosen = [v for v in versions if isinstance(v, dict) and v.get("version") == OCPI_VERSION]
        if not chosen:
            raise OcpiError(f"{self.name}: no version {OCPI_VERSION} in {versions!r}")
        details = self._get_ok(chosen[0]["url"], token, "version details")
        if not isinstance(details, dict) or details.get("version") != OCPI_VERSION:
            raise OcpiError(f"{self.name}: version details are not for {OCPI_VERSION}: {details!r}")
        endpoints = details.get("endpoints")
        if not isinstance(endpoints, list) or not all(
            isinstance(e, dict) and {"identifier", "role", "url"} <= e.keys() for e in endpoints
        ):
            raise OcpiError(f"{self.name}: malformed endpoints (6.2.2): {endpoints!r}")
        with self._lock:
            conn.versions_url = versions_url
            conn.version_url = chosen[0]["url"]
            conn.endpoints = endpoints

    def register(self, versions_url: str, token_a: str) -> Connection:
        """7.1.1 Registration, this platform as the Sender: fetch the other's versions with its token A, POST
        our credentials with a fresh token B, keep the token C it answers with."""
        token_b = new_token()
        # Accepted from now on: the other side calls our versions back with B before answering the POST.
        conn = self._new_connection(token_b, is_a=False)
        try:
            self._fetch_endpoints(conn, versions_url, token_a)
            url = conn.endpoint("credentials")
            if url is None:
                raise OcpiError(f"{self.name}: no credentials endpoint at {versions_url}")
            response = self.call(
                "POST", url, token=token_a, body=self.credentials_object(token_b), configuration=True
            )
            if not response.ok:
                raise OcpiError(f"{self.name}: credentials POST refused", response)
            self._take_credentials(conn, response.data, f"POST {url}")
        except BaseException:
            with self._lock:
                self.connections.remove(conn)
            raise
        with self._changed:
            conn.registered = True
            self._changed.notify_all()
        return conn

    def rotate(self, conn: Connection | None = None) -> Connection:
        """7.1.4: new token B by PUT on the other's credentials; it answers with a new token C."""
        conn = conn or self.connection
        self._fetch_endpoints(conn, conn.versions_url, conn.token_out)
        token_b = new_token()
        with self._lock:
            conn.token_in_previous, conn.token_in = conn.token_in, token_b
        try:
            url = conn.endpoint("credentials")
            response = self.call(
                "PUT", url, conn=conn, body=self.credentials_object(token_b), configuration=True
            )
            if not response.ok:
                raise OcpiError(f"{self.name}: credentials PUT refused", response)
            self._take_credentials(conn, response.data, f"PUT {url}")
        except BaseException:
            with self._lock:
                conn.token_in, conn.token_in_previous = conn.token_in_previous, None
            raise
        with self._lock:
            conn.token_in_previous = None
        return conn

    def unregister(self, conn: Connection | None = None) -> OcpiResponse:
        """7.2.4: DELETE our credentials at the other platform; both sides end all communication."""
        conn = conn or self.connection
        response = self.call("DELETE", conn.endpoint("credentials"), conn=conn, configuration=True)
        if not response.ok:
            raise OcpiError(f"{self.name}: credentials DELETE refused", response)
        with self._lock:
            self.connections.remove(conn)
        return response

    def _take_credentials(self, conn: Connection, data: Any, where: str) -> None:
        problems = credentials_problems(data)
        if problems:
            raise OcpiError(f"{self.name}: {where} answered invalid credentials: {problems}: {data!r}")
        with self._lock:
            conn.token_out = data["token"]
            conn.roles = data["roles"]

    # --- server ------------------------------------------------------------------------------------------

    def _base_routes(self) -> list[Route]:
        return [
            self.route("GET", r"/ocpi/versions", self._versions),
            self.route("GET", VERSION_PREFIX, self._details),
            self.route("GET POST PUT DELETE", rf"{VERSION_PREFIX}/credentials", self._credentials),
        ]

    def routes(self) -> list[Route]:
        return []

    @staticmethod
    def route(methods: str, pattern: str, handler: Callable[..., Response]) -> Route:
        return frozenset(methods.split()), re.compile(f"^{pattern}/?$"), handler

    def module_of(self, path: str) -> str:
        """The ModuleID a request path belongs to ('versions' and 'details' for the Versions module)."""
        if path.rstrip("/") == "/ocpi/versions":
            return "versions"
        if not path.startswith(VERSION_PREFIX):
            return ""
        rest = path[len(VERSION_PREFIX) :].strip("/")
        return rest.split("/")[0] if rest else "details"

    def dispatch(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Response:
        split = urlsplit(target)
        req = Request(
            method=method,
            path=unquote(split.path),
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=headers,
            raw=raw,
        )
        req.module = self.module_of(req.path)
        try:
            response = self._handle(req)
        except Exception:
            text = traceback.format_exc()
            with self._lock:
                self.errors.append(f"{method} {target}:\n{text}")
            response = ocpi(http=500, status_code=3000, message="test harness error")
        self._decorate(req, response)
        with self._changed:
            self.requests.append(
                Recorded(
                    method=method,
                    path=req.path,
                    query=req.query,
                    headers=headers,
                    body=req.json if req.json_error is None else raw.decode(errors="replace"),
                    connection_id=req.connection.id if req.connection else None,
                    response_status=response.status,
                    response_body=copy.deepcopy(response.body),
                    at=time.time(),
                )
            )
            self._changed.notify_all()
        return response

    def _decorate(self, req: Request, response: Response) -> None:
        """4.2: echo X-Request-ID and X-Correlation-ID; 4.1.8.6: the response's routing headers are the
        request's swapped (functional modules only)."""
        for name in ("X-Request-ID", "X-Correlation-ID"):
            value = req.header(name)
            if value is not None:
                response.headers.setdefault(name, value)
        if req.module not in CONFIGURATION_MODULES and "OCPI-to-party-id" not in response.headers:
            requester = req.from_party()
            answering = req.to_party() or self.party
            if requester is not None:
                response.headers["OCPI-to-country-code"], response.headers["OCPI-to-party-id"] = requester
            response.headers["OCPI-from-country-code"], response.headers["OCPI-from-party-id"] = answering

    def _authenticate(self, req: Request) -> Response | None:
        """4.1.2: `Authorization: Token <base64(token)>`, else 401; token A only for versions/credentials."""
        header = req.header("Authorization")
        if not header:
            return ocpi(http=401, status_code=2000, message="Authorization header missing")
        scheme, _, encoded = header.partition(" ")
        if scheme != "Token" or not encoded:
            return ocpi(http=401, status_code=2000, message="Authorization is not 'Token <base64>'")
        try:
            token = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            token = None
        conn = self._connection_by_token(token) if token else None
        if conn is None:
            if self._connection_by_token(encoded) is not None:
                self.problem(
                    f"{req.method} {req.path}: credentials token sent without Base64 encoding (4.1.2)"
                )
            return ocpi(http=401, status_code=2000, message="Unknown credentials token")
        req.connection = conn
        if conn.token_in_is_a and req.module not in {"versions", "details", "credentials"}:
            # 4.1.2: a valid CREDENTIALS_TOKEN_A on another module than credentials or versions: 401.
            return ocpi(
                http=401, status_code=2000, message="CREDENTIALS_TOKEN_A is only for versions/credentials"
            )
        return None

    def _connection_by_token(self, token: str) -> Connection | None:
        with self._lock:
            for conn in self.connections:
                if token in (conn.token_in, conn.token_in_previous):
                    return conn
        return None

    def _handle(self, req: Request) -> Response:
        refused = self._authenticate(req)
        if refused is not None:
            return refused
        if req.raw:
            try:
                req.json = json.loads(req.raw)
            except ValueError as exc:
                req.json_error = str(exc)
                # 5: a message that is not valid JSON is answered HTTP 400.
                return ocpi(http=400, status_code=2001, message=f"invalid JSON: {exc}")
        self._check_request_headers(req)
        if self.intercept is not None:
            answer = self.intercept(req)
            if answer is not None:
                return answer
        path_matched = False
        for methods, pattern, handler in self._routes:
            match = pattern.match(req.path)
            if match is None:
                continue
            path_matched = True
            if req.method in methods:
                return handler(req, **{k: v for k, v in match.groupdict().items() if v is not None})
        if path_matched:
            return ocpi(http=405, status_code=2000, message=f"{req.method} not allowed here")
        return ocpi(http=404, status_code=2000, message=f"no such endpoint: {req.path}")

    def _check_request_headers(self, req: Request) -> None:
        where = f"{req.method} {req.path}"
        for name in ("X-Request-ID", "X-Correlation-ID"):
            if not req.header(name):
                self.problem(f"{where}: no {name} header (4.2: every request SHALL contain one)")
        routed = [name for name in ROUTING_HEADERS if req.header(name)]
        if req.module in CONFIGURATION_MODULES:
            if routed:
                self.problem(
                    f"{where}: routing headers {routed} on a configuration module (4.1.8.2: SHALL NOT)"
                )
            return
        self.check_routing(req)

    def check_routing(self, req: Request) -> None:
        """4.1.8.2 / 4.1.8.6 for a functional module request received directly from a party's platform."""
        where = f"{req.method} {req.path}"
        sender, receiver = req.from_party(), req.to_party()
        if sender is None:
            self.problem(f"{where}: no OCPI-from-country-code/party-id (4.1.8.2)")
        elif (
            req.connection is not None and not req.connection.is_hub and not req.connection.has_party(sender)
        ):
            self.problem(f"{where}: OCPI-from {sender} is not a role of the platform that sent it (4.1.8.6)")
        if receiver is None:
            self.problem(f"{where}: no OCPI-to-country-code/party-id (4.1.8.2)")
        elif receiver != self.party:
            self.problem(f"{where}: OCPI-to {receiver} is not this party {self.party} (4.1.8.6)")

    def _versions(self, req: Request) -> Response:
        return ocpi([{"version": OCPI_VERSION, "url": self.version_url}])

    def _details(self, req: Request) -> Response:
        return ocpi(self.version_details())

    def _credentials(self, req: Request) -> Response:
        """7.2 Credentials module, this platform as the server."""
        conn = req.connection
        assert conn is not None
        if req.method == "GET":
            # 7.2.1: the credentials to access this platform.
            return ocpi(self.credentials_object(conn.token_in))
        if req.method == "DELETE":
            if not conn.registered:
                return ocpi(http=405, status_code=2000, message="not registered")
            with self._lock:
                self.connections.remove(conn)
            return ocpi()
        # POST (7.2.2) registers; PUT (7.2.3) updates a registration.
        if req.method == "POST" and conn.registered:
            return ocpi(http=405, status_code=2000, message="already registered")
        if req.method == "PUT" and not conn.registered:
            return ocpi(http=405, status_code=2000, message="not registered yet")
        problems = credentials_problems(req.json)
        if problems:
            self.problem(f"{req.method} credentials: invalid Credentials object: {problems}")
            return ocpi(status_code=2001, message="; ".join(problems))
        data = req.json
        try:
            # 7.2.2: the server fetches the client's versions and endpoints, with the token the client gave.
            self._fetch_endpoints(conn, data["url"], data["token"])
        except (OcpiError, httpx.HTTPError) as exc:
            self.problem(f"{req.method} credentials: could not use the client's API: {exc}")
            return ocpi(status_code=3001, message=f"unable to use the client's API: {exc}")
        token_c = new_token()
        with self._changed:
            conn.token_out = data["token"]
            conn.roles = data["roles"]
            conn.token_in, conn.token_in_is_a, conn.token_in_previous = token_c, False, None
            conn.registered = True
            self._changed.notify_all()
        return ocpi(self.credentials_object(token_c))


def credentials_problems(data: Any) -> list[str]:
    """What is wrong with a Credentials object (7.3.1, 7.4.1)."""
    if not isinstance(data, dict):
        return ["not an object"]
    problems = []
    token = data.get("token")
    if not isinstance(token, str) or not _TOKEN_RE.match(token):
        problems.append("token is not 1-64 printable non-whitespace ASCII characters")
    if not isinstance(data.get("url"), str) or not data["url"].startswith(("http://", "https://")):
        problems.append("url is not a URL")
    roles = data.get("roles")
    if not isinstance(roles, list) or not roles:
        problems.append("roles is not a non-empty list")
    else:
        for role in roles:
            if not isinstance(role, dict):
                problems.append("a role is not an object")
                continue
            missing = [k for k in ("role", "business_details", "party_id", "country_code") if not role.get(k)]
            if missing:
                problems.append(f"role {role!r} lacks {missing}")
            elif not isinstance(role["business_details"], dict) or not role["business_details"].get("name"):
                problems.append(f"role {role!r}: business_details.name is required")
            elif len(role["party_id"]) != 3 or len(role["country_code"]) != 2:
                problems.append(f"role {role!r}: party_id is CiString(3), country_code CiString(2)")
    return problems


# --- pagination (4.1.4.1) --------------------------------------------------------------------------------


def paginate(req: Request, items: list[dict], *, endpoint_url: str, max_limit: int) -> Response:
    """A paginated GET answer: date_from (inclusive) / date_to (exclusive) on last_updated, offset/limit,
    and the Link, X-Total-Count and X-Limit headers."""
    try:
        offset = int(req.query.get("offset", "0"))
        limit = min(int(req.query.get("limit", str(max_limit))), max_limit)
        date_from = parse_datetime(req.query["date_from"]) if req.query.get("date_from") else None
        date_to = parse_datetime(req.query["date_to"]) if req.query.get("date_to") else None
    except ValueError as exc:
        return ocpi(status_code=2001, message=f"invalid pagination parameter: {exc}")
    if offset < 0 or limit < 0:
        return ocpi(status_code=2001, message="offset and limit must not be negative")
    selected = [
        item
        for item in items
        if (date_from is None or parse_datetime(item["last_updated"]) >= date_from)
        and (date_to is None or parse_datetime(item["last_updated"]) < date_to)
    ]
    page = selected[offset : offset + limit]
    headers = {"X-Total-Count": str(len(selected)), "X-Limit": str(max_limit)}
    if offset + limit < len(selected) and limit > 0:
        # The next page's Link carries every filter of the request (4.1.4.1 Paginated Response).
        query = {**req.query, "offset": str(offset + limit), "limit": str(limit)}
        headers["Link"] = f'<{endpoint_url}?{urlencode(query)}>; rel="next"'
    return Response(200, envelope(copy.deepcopy(page)), headers)


_LINK_NEXT = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')


def next_link(headers: httpx.Headers) -> str | None:
    match = _LINK_NEXT.search(headers.get("Link") or "")
    return match.group(1) if match else None


def replace_url_prefix(url: str, old_prefix: str, new_prefix: str) -> str | None:
    """`url` with `old_prefix` replaced by `new_prefix`, or None when it does not start with it."""
    old, candidate = urlsplit(old_prefix), urlsplit(url)
    if (candidate.scheme, candidate.netloc) != (old.scheme, old.netloc):
        return None
    if not (candidate.path == old.path.rstrip("/") or candidate.path.startswith(old.path.rstrip("/") + "/")):
        return None
    new = urlsplit(new_prefix)
    path = new.path.rstrip("/") + candidate.path[len(old.path.rstrip("/")) :]
    return urlunsplit((new.scheme, new.netloc, path, candidate.query, candidate.fragment))


@contextlib.contextmanager
def running(*platforms: Platform) -> Iterator[tuple[Platform, ...]]:
    """Start every platform, close them all on exit."""
    try:
        for p in platforms:
            p.start()
        yield platforms
    finally:
        for p in platforms:
            p.close()


def _header_party(headers: httpx.Headers, direction: str) -> Party | None:
    cc, pid = headers.get(f"OCPI-{direction}-country-code"), headers.get(f"OCPI-{direction}-party-id")
    return party(cc, pid) if cc and pid else None
