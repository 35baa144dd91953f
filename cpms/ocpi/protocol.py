"""OCPI 2.2.1 transport rules shared by every module (OCPI 2.2.1 "Transport and format", "Status codes"):
the response envelope, status codes, the Authorization token encoding, DateTime format, pagination, and the
schema check every partner body goes through. No ORM here."""

import base64
import binascii
import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import fastjsonschema

# --- status codes (OCPI 2.2.1 section 5) ---------------------------------------------------------------
SUCCESS = 1000
CLIENT_ERROR = 2000
INVALID_PARAMETERS = 2001
NOT_ENOUGH_INFORMATION = 2002
UNKNOWN_LOCATION = 2003
UNKNOWN_TOKEN = 2004
SERVER_ERROR = 3000
UNABLE_TO_USE_CLIENT_API = 3001
UNSUPPORTED_VERSION = 3002
NO_MATCHING_ENDPOINTS = 3003
HUB_ERROR = 4000
UNKNOWN_RECEIVER = 4001


class OcpiError(Exception):
    """Answered as the OCPI envelope with `status_code` and HTTP `http_status`; `message` is for the partner."""

    def __init__(self, message: str, *, status_code: int = CLIENT_ERROR, http_status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.http_status = http_status


class Unauthorized(OcpiError):
    def __init__(self, message: str = "Invalid or missing token.") -> None:
        super().__init__(message, status_code=CLIENT_ERROR, http_status=401)


class NotFound(OcpiError):
    def __init__(self, message: str, *, status_code: int = CLIENT_ERROR) -> None:
        super().__init__(message, status_code=status_code, http_status=404)


def envelope(data: Any = None, *, status_code: int = SUCCESS, message: str = "Success") -> dict[str, Any]:
    body: dict[str, Any] = {"status_code": status_code, "status_message": message, "timestamp": ocpi_now()}
    if data is not None:
        body["data"] = data
    return body


# --- DateTime: "2015-06-29T20:39:09Z", always UTC (OCPI 2.2.1 16.2) ---------------------------------------
def format_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ocpi_now() -> str:
    return format_datetime(datetime.now(UTC))


def parse_datetime(value: str, *, field: str) -> datetime:
    """An OCPI DateTime (UTC; a missing zone is read as UTC, as 2.2.1 16.2 allows)."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError) as exc:
        raise OcpiError(f"{field}: not a DateTime: {value!r}", status_code=INVALID_PARAMETERS) from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# --- credentials tokens ---------------------------------------------------------------------------------
def token_new() -> str:
    """A credentials token: 43 URL-safe characters (256 bits), within CiString(64)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authorization_header(token: str) -> str:
    """OCPI 2.2.1 4.1.3: the token is sent base64-encoded."""
    return "Token " + base64.b64encode(token.encode()).decode()


def tokens_from_header(header: str) -> list[str]:
    """The candidate tokens of an Authorization header: the base64-decoded token (2.2.1), and the token as
    sent (2.1.1 style, which some partners still send); empty when the header is not a Token header."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "token" or not value or len(value) > 512:
        return []
    candidates = [value]
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return candidates
    if decoded and decoded.isprintable():
        candidates.insert(0, decoded)
    return candidates


# --- pagination (OCPI 2.2.1 4.1.5) --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Page:
    offset: int
    limit: int
    date_from: datetime | None
    date_to: datetime | None


def page_from_query(query: Mapping[str, str], *, max_limit: int) -> Page:
    def integer(name: str, default: int) -> int:
        raw = query.get(name)
        if raw in (None, ""):
            return default
        try:
            value = int(raw)
        except ValueError as exc:
            raise OcpiError(f"{name}: not an integer: {raw!r}", status_code=INVALID_PARAMETERS) from exc
        if value < 0:
            raise OcpiError(f"{name}: must not be negative", status_code=INVALID_PARAMETERS)
        return value

    date_from = query.get("date_from")
    date_to = query.get("date_to")
    return Page(
        offset=integer("offset", 0),
        # A larger limit than the server's is lowered to it (the answer's X-Limit says which).
        limit=min(integer("limit", max_limit), max_limit),
        date_from=parse_datetime(date_from, field="date_from") if date_from else None,
        date_to=parse_datetime(date_to, field="date_to") if date_to else None,
    )


# --- schema checks of partner input -------------------------------------------------------------------------
def schema_validator(schema: dict[str, Any]) -> Callable[[Any], Any]:
    """A compiled JSON-schema check whose failures are OcpiError 2001 naming the field."""
    check = fastjsonschema.compile(schema)

    def validate(body: Any) -> Any:
        try:
            return check(body)
        except fastjsonschema.JsonSchemaException as exc:
            raise OcpiError(_schema_message(exc), status_code=INVALID_PARAMETERS) from exc

    return validate


def _schema_message(exc: fastjsonschema.JsonSchemaException) -> str:
    message = str(getattr(exc, "message", exc)).replace("data.", "", 1).replace("data ", "body ", 1)
    return message[:300]


def string(max_length: int, **extra: Any) -> dict[str, Any]:
    """A JSON-schema string of at most `max_length` characters (OCPI CiString/string(n))."""
    return {"type": "string", "maxLength": max_length, **extra}


DATETIME = {
    "type": "string",
    "maxLength": 35,
    "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)?$",
}
COUNTRY_CODE = {"type": "string", "pattern": "^[A-Za-z]{2}$"}
PARTY_ID = {"type": "string", "pattern": "^[A-Za-z0-9]{3}$"}
