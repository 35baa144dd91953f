"""A roaming Hub written from the OCPI 2.2.1 specification (4.1.8 Message routing, 15 HubClientInfo).

Parties register with it (or it registers with them) by the same credentials module as any platform; it
reports only itself, role HUB (7.3.1). For every functional module it offers both interfaces at
`/ocpi/2.2.1/{sender|receiver}/{module}`, and forwards each request to the same interface of the party named
by the request's `OCPI-to-*` headers:

- the routing headers are passed on unchanged, the X-Correlation-ID too, with a new X-Request-ID (4.2);
- the answer comes back with the requester's X-Request-ID, and its pagination headers, the Link rewritten
  to the Hub's own URL;
- URLs one party gives another through it (a command's `response_url`, a CDR's `Location`, a Link it cannot
  rewrite) are replaced by `/ocpi/2.2.1/proxy/<id>` URLs of the Hub, so that each party only ever talks to
  the Hub with the Hub's credentials;
- `OCPI-to-*` = the Hub: Broadcast Push (4.1.8.3) to every connected party of the opposite role, with the
  Hub as `OCPI-from-*`;
- routing errors are answered with the 4xxx status codes (5.4): 4001 unknown receiver, 4002 timeout,
  4003 receiver not reachable. Open routing (no `OCPI-to-*`) and GET All via the Hub are not offered
  (answered 4001).
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx

from tests.ocpi_parties.platform import (
    VERSION_PREFIX,
    Connection,
    OcpiResponse,
    Party,
    Platform,
    Request,
    Response,
    b64,
    envelope,
    now_iso,
    ocpi,
    paginate,
    party,
    replace_url_prefix,
)

HUB_MODULES = ("locations", "tariffs", "sessions", "cdrs", "tokens", "commands", "chargingprofiles")
_PASSED_BACK = ("X-Total-Count", "X-Limit")


class Hub(Platform):
    """A Hub platform. `forwarded` lists every forwarded request (sender connection, receiver party,
    method, url, X-Request-IDs, answer status); `broadcasts` every Broadcast Push and where it went."""

    party_role = "HUB"

    def __init__(
        self,
        *,
        country_code: str = "NL",
        party_id: str = "HUB",
        name: str = "Test Hub",
        forward_timeout_s: float = 10.0,
        **kwargs: Any,
    ):
        self.forward_timeout_s = forward_timeout_s
        self.forwarded: list[dict] = []
        self.broadcasts: list[dict] = []
        self.client_info_status: dict[Party, str] = {}
        self._client_info_updated: dict[Party, str] = {}
        self._proxies: dict[str, dict] = {}
        super().__init__(country_code=country_code, party_id=party_id, name=name, **kwargs)

    def endpoint_paths(self) -> list[tuple[str, str, str]]:
        p = VERSION_PREFIX
        paths = [
            ("credentials", "SENDER", f"{p}/credentials"),
            ("hubclientinfo", "SENDER", f"{p}/hubclientinfo"),
        ]
        for module in HUB_MODULES:
            for role in ("SENDER", "RECEIVER"):
                paths.append((module, role, f"{p}/{role.lower()}/{module}"))
        return paths

    def module_of(self, path: str) -> str:
        if path.startswith(VERSION_PREFIX + "/"):
            segments = path[len(VERSION_PREFIX) :].strip("/").split("/")
            if segments[0] in {"sender", "receiver"} and len(segments) > 1:
                return segments[1]
            if segments[0] == "proxy":
                return "proxy"
        return super().module_of(path)

    def routes(self):
        p = VERSION_PREFIX
        every = "GET POST PUT PATCH DELETE"
        return [
            self.route(
                every, rf"{p}/(?P<iface>sender|receiver)/(?P<module>[a-z]+)(?P<rest>/.*?)?", self._route
            ),
            self.route(every, rf"{p}/proxy/(?P<proxy_id>[^/]+)", self._proxy),
            self.route("GET", rf"{p}/hubclientinfo", self._client_info_list),
        ]

    def check_routing(self, req: Request) -> None:
        # A Hub's connections are the parties' own platforms: OCPI-from SHALL be one of the sender's roles.
        sender = req.from_party()
        if sender is None:
            self.problem(f"{req.method} {req.path}: no OCPI-from-country-code/party-id (4.1.8.2)")
        elif req.connection is not None and not req.connection.has_party(sender):
            self.problem(
                f"{req.method} {req.path}: OCPI-from {sender} is not a role of the platform that sent it"
            )

    # --- routing ---------------------------------------------------------------------------------------

    def _route(self, req: Request, iface: str, module: str, rest: str = "") -> Response:
        sender = req.from_party()
        if sender is None or not req.connection.has_party(sender):
            return _hub_error(4000, "OCPI-from-* missing or not a party of the platform that sent it")
        to = req.to_party()
        if to is None:
            return _hub_error(4001, "no OCPI-to-* headers: this hub does not do open routing")
        if to == self.party:
            if req.method == "GET":
                return _hub_error(4001, "GET All via this hub is not supported")
            return self._broadcast(req, iface, module, rest, sender)
        target = self.connection_for(to)
        if target is None:
            return _hub_error(4001, f"unknown receiver {to}")
        base = target.endpoint(module, iface.upper())
        if base is None:
            return _hub_error(4001, f"receiver {to} has no {module} {iface.upper()} endpoint")
        base = base.rstrip("/")
        body = req.json if req.raw else ...
        if (
            module == "commands"
            and req.method == "POST"
            and isinstance(body, dict)
            and "response_url" in body
        ):
            # 13.2.2: the CPO POSTs the CommandResult to response_url: through the Hub, it must be the Hub's.
            body = {
                **body,
                "response_url": self._proxy_url(
                    caller=target, target=req.connection, url=body["response_url"]
                ),
            }
        answer = self._send(
            req,
            target,
            base + (rest or ""),
            body=body,
            params=req.query or None,
            routing={name: req.header(name) for name in _ROUTING if req.header(name)},
            to=to,
        )
        if isinstance(answer, Response):
            return answer
        return self._relay(req, answer, target, base, self.url(f"{VERSION_PREFIX}/{iface}/{module}"))

    def _send(
        self,
        req: Request,
        target: Connection,
        url: str,
        *,
        body: Any,
        params: dict | None,
        routing: dict[str, str],
        to: Party,
        method: str | None = None,
    ) -> httpx.Response | Response:
        """Forward one request to `target` with the Hub's token for it; a Response when it failed."""
        request_id = str(uuid.uuid4())
        headers = {
            "Authorization": f"Token {b64(target.token_out)}",
            # 4.2: a new X-Request-ID, the same X-Correlation-ID.
            "X-Request-ID": request_id,
            "X-Correlation-ID": req.header("X-Correlation-ID") or str(uuid.uuid4()),
            **routing,
        }
        content = None
        if body is not ...:
            content = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        record = {
            "from_connection": req.connection.id if req.connection else None,
            "to": to,
            "method": method or req.method,
            "url": url,
            "incoming_request_id": req.header("X-Request-ID"),
            "request_id": request_id,
            "correlation_id": headers["X-Correlation-ID"],
            "routing": dict(routing),
            "body": body if body is not ... else None,
        }
        try:
            response = self._http.request(
                method or req.method,
                url,
                params=params,
                headers=headers,
                content=content,
                timeout=self.forward_timeout_s,
            )
        except httpx.TimeoutException as exc:
            record["answer"] = 4002
            failure = _hub_error(4002, f"timeout on forwarded request: {exc!r}")
        except httpx.TransportError as exc:
            record["answer"] = 4003
            failure = _hub_error(4003, f"receiver not reachable: {exc!r}")
        else:
            record["answer"] = response.status_code
            failure = None
        with self._lock:
            self.forwarded.append(record)
        return failure if failure is not None else response

    def _relay(
        self, req: Request, answer: httpx.Response, target: Connection, base: str, hub_base: str
    ) -> Response:
        """The receiver's answer, for the requester."""
        try:
            body = answer.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return Response(
                answer.status_code,
                envelope(
                    status_code=4000, message=f"receiver answered without an OCPI body: {answer.text[:200]!r}"
                ),
            )
        headers = {name: answer.headers[name] for name in _PASSED_BACK if name in answer.headers}
        for name in _ROUTING:
            if name in answer.headers:
                headers[name] = answer.headers[name]
        link = answer.headers.get("Link")
        if link:
            headers["Link"] = self._rewrite_link(link, base, hub_base, caller=req.connection, target=target)
        location = answer.headers.get("Location")
        if location:
            # 10.2.2.2: the URL to GET the CDR back, at the receiver: the requester reaches it through the Hub.
            headers["Location"] = self._proxy_url(caller=req.connection, target=target, url=location)
        return Response(answer.status_code, body, headers)

    def _rewrite_link(
        self, link: str, base: str, hub_base: str, *, caller: Connection, target: Connection
    ) -> str:
        def swap(match_url: str) -> str:
            rewritten = replace_url_prefix(match_url, base, hub_base)
            return rewritten or self._proxy_url(caller=caller, target=target, url=match_url)

        return re.sub(r"<([^>]*)>", lambda m: f"<{swap(m.group(1))}>", link)

    def _proxy_url(self, *, caller: Connection, target: Connection, url: str) -> str:
        proxy_id = uuid.uuid4().hex
        with self._lock:
            self._proxies[proxy_id] = {"caller": caller.id, "target": target.id, "url": url}
        return self.url(f"{VERSION_PREFIX}/proxy/{proxy_id}")

    def _proxy(self, req: Request, proxy_id: str) -> Response:
        with self._lock:
            entry = self._proxies.get(proxy_id)
        if entry is None or req.connection is None or req.connection.id != entry["caller"]:
            return ocpi(http=404, status_code=2000, message="unknown URL")
        target = next((c for c in self.connections if c.id == entry["target"] and c.registered), None)
        if target is None:
            return _hub_error(4003, "receiver no longer connected")
        url = entry["url"]
        if req.query:
            url += ("&" if "?" in url else "?") + urlencode(req.query)
        answer = self._send(
            req,
            target,
            url,
            body=req.json if req.raw else ...,
            params=None,
            routing={name: req.header(name) for name in _ROUTING if req.header(name)},
            to=req.to_party() or target.parties[0],
        )
        if isinstance(answer, Response):
            return answer
        return self._relay(req, answer, target, url, req.path)

    def _broadcast(self, req: Request, iface: str, module: str, rest: str, sender: Party) -> Response:
        """4.1.8.3 Broadcast Push: to every connected party of the opposite role implementing the module, with
        the Hub in OCPI-from-*; the sender gets the Hub's own answer."""
        sender_role = req.connection.role_of(sender)
        deliveries = []
        for conn in [c for c in self.connections if c.registered and c is not req.connection]:
            base = conn.endpoint(module, iface.upper())
            if base is None:
                continue
            for role in conn.roles:
                receiver = party(role["country_code"], role["party_id"])
                if not _opposite(sender_role, role.get("role")):
                    continue
                routing = {
                    "OCPI-from-country-code": self.party[0],
                    "OCPI-from-party-id": self.party[1],
                    "OCPI-to-country-code": receiver[0],
                    "OCPI-to-party-id": receiver[1],
                }
                answer = self._send(
                    req,
                    conn,
                    base.rstrip("/") + (rest or ""),
                    body=req.json if req.raw else ...,
                    params=req.query or None,
                    routing=routing,
                    to=receiver,
                )
                status = answer.body["status_code"] if isinstance(answer, Response) else answer.status_code
                deliveries.append({"to": receiver, "answer": status})
        with self._lock:
            self.broadcasts.append(
                {"from": sender, "method": req.method, "path": req.path, "deliveries": deliveries}
            )
        return ocpi()

    # --- HubClientInfo (15) ----------------------------------------------------------------------------

    def client_infos(self) -> list[dict]:
        """A ClientInfo (15.4.1) for every party of every registered connection."""
        infos = []
        for conn in [c for c in self.connections if c.registered]:
            for role in conn.roles:
                p = party(role["country_code"], role["party_id"])
                infos.append(
                    {
                        "party_id": p[1],
                        "country_code": p[0],
                        "role": role["role"],
                        "status": self.client_info_status.get(p, "CONNECTED"),
                        "last_updated": self._client_info_updated.setdefault(p, now_iso()),
                    }
                )
        return infos

    def send_client_info(self, conn: Connection, info: dict) -> OcpiResponse:
        """15.3.1.2 PUT a ClientInfo on a connected party's hubclientinfo Receiver (no routing headers:
        a configuration module, 4.1.8.2)."""
        base = conn.endpoint("hubclientinfo", "RECEIVER")
        if base is None:
            raise LookupError(f"connection {conn.id} has no hubclientinfo RECEIVER endpoint")
        return self.call(
            "PUT",
            f"{base.rstrip('/')}/{info['country_code']}/{info['party_id']}",
            conn=conn,
            body=info,
            configuration=True,
        )

    def announce(self, conn: Connection) -> list[OcpiResponse]:
        """Tell `conn` about every other connected party."""
        others = [i for i in self.client_infos() if not conn.has_party((i["country_code"], i["party_id"]))]
        return [self.send_client_info(conn, info) for info in others]

    def set_status(self, p: tuple[str, str], status: str) -> list[OcpiResponse]:
        """Change a party's ConnectionStatus (15.5.1) and push it to every other connection that receives it."""
        p = party(*p)
        with self._lock:
            self.client_info_status[p] = status
            self._client_info_updated[p] = now_iso()
        info = next(i for i in self.client_infos() if (i["country_code"], i["party_id"]) == p)
        return [
            self.send_client_info(conn, copy.deepcopy(info))
            for conn in self.connections
            if conn.registered and not conn.has_party(p) and conn.endpoint("hubclientinfo", "RECEIVER")
        ]

    def _client_info_list(self, req: Request) -> Response:
        """15.3.2 the Hub's ClientInfo list, paginated."""
        return paginate(
            req, self.client_infos(), endpoint_url=self.url(f"{VERSION_PREFIX}/hubclientinfo"), max_limit=50
        )


_ROUTING = ("OCPI-to-country-code", "OCPI-to-party-id", "OCPI-from-country-code", "OCPI-from-party-id")


def _hub_error(status_code: int, message: str) -> Response:
    return Response(200, envelope(status_code=status_code, message=message))


def _opposite(sender_role: str | None, receiver_role: str | None) -> bool:
    """4.1.8.3: a CPO's broadcast goes to eMSPs, NSPs and "Other"; theirs only to CPOs."""
    if sender_role == "CPO":
        return receiver_role not in {"CPO", "HUB", None}
    return receiver_role == "CPO"
