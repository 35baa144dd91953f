"""Payload validation against the OCPP JSON schemas shipped in the `ocpp` package.

The package validates with jsonschema (354-685 us per MeterValues,
docs/performance.md#json-parsing-and-schema-validation); the same schemas compiled by fastjsonschema take
~15 us. Validators are compiled once per (version, schema) on first use. Schema violations map to the OCPP
error kinds (docs/reliability.md case 10).
"""

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastjsonschema
import ocpp

from cpms.ocpp_wire.errors import ErrorKind, OcppError

_SCHEMA_DIRS = {
    "1.6": Path(ocpp.__file__).parent / "v16" / "schemas",
    "2.0.1": Path(ocpp.__file__).parent / "v201" / "schemas",
    "2.1": Path(ocpp.__file__).parent / "v21" / "schemas",
}

_RULE_KINDS = {
    "required": ErrorKind.OCCURRENCE,
    "type": ErrorKind.TYPE,
    "additionalProperties": ErrorKind.FORMAT,
    "enum": ErrorKind.PROPERTY,
    "maxLength": ErrorKind.PROPERTY,
    "minLength": ErrorKind.PROPERTY,
    "format": ErrorKind.PROPERTY,
    "pattern": ErrorKind.PROPERTY,
    "minimum": ErrorKind.PROPERTY,
    "maximum": ErrorKind.PROPERTY,
    "minItems": ErrorKind.OCCURRENCE,
    "maxItems": ErrorKind.OCCURRENCE,
    "multipleOf": ErrorKind.PROPERTY,
}


def _load(version: str, name: str) -> dict[str, Any] | None:
    path = _SCHEMA_DIRS[version] / f"{name}.json"
    if not path.exists():
        return None
    schema = json.loads(path.read_text(encoding="utf-8-sig"))
    # fastjsonschema resolves "$id"/"id" URNs as remote references; the schemas are self-contained.
    schema.pop("$id", None)
    schema.pop("id", None)
    # Date-time fields are parsed by the mappers (which answer PropertyConstraintViolation when a
    # timestamp is not RFC 3339), so the schema's own "format" check is not run twice.
    _drop_formats(schema)
    _bound_integers(schema)
    return dict(schema)


INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _bound_integers(node: Any) -> None:
    """OCPP integers are 32-bit (2.0.1 Part 2 "integer"; 1.6 implementations alike) but the schemas give
    no bounds: without them a charger could send 10**30 and reach the database as an overflow."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            node.setdefault("minimum", INT32_MIN)
            node.setdefault("maximum", INT32_MAX)
        for value in node.values():
            _bound_integers(value)
    elif isinstance(node, list):
        for value in node:
            _bound_integers(value)


def _drop_formats(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("format") == "date-time":
            del node["format"]
        for value in node.values():
            _drop_formats(value)
    elif isinstance(node, list):
        for value in node:
            _drop_formats(value)


@functools.cache
def _validator(version: str, name: str) -> Callable[[Any], Any] | None:
    schema = _load(version, name)
    if schema is None:
        return None
    return fastjsonschema.compile(schema)


def request_schema(version: str, action: str) -> str:
    """Schema file name of an action's request: 1.6 "Authorize", 2.0.1 "AuthorizeRequest"."""
    return action if version == "1.6" else f"{action}Request"


def response_schema(action: str) -> str:
    return f"{action}Response"


def validate(version: str, name: str, payload: dict[str, Any]) -> None:
    """Raise OcppError if `payload` does not match schema `name` (see request_schema/response_schema)."""
    validator = _validator(version, name)
    if validator is None:
        raise OcppError(ErrorKind.NOT_IMPLEMENTED, f"No schema for {name} in OCPP {version}")
    try:
        validator(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        kind = _RULE_KINDS.get(exc.rule or "", ErrorKind.FORMAT)
        field = (exc.name or "data").removeprefix("data").lstrip(".") or "payload"
        raise OcppError(kind, f"{field}: {exc.message}"[:255], {"field": field}) from None
