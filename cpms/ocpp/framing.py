"""OCPP-J framing: turning a WebSocket text frame into a Call/CallResult/CallError, and back.

We parse frames ourselves (orjson, 4x faster than json;
docs/performance.md#json-parsing-and-schema-validation) instead of `ocpp.messages.unpack`, which drops
unparsable frames silently and accepts numeric message ids. docs/reliability.md cases 9-11: an unreadable
frame is answered with a CALLERROR whose id is "-1"; a message id must be a non-empty string of at most 36
characters.
"""

from dataclasses import dataclass
from typing import Any, TypeGuard

import orjson

from cpms.ocpp.errors import MAX_DESCRIPTION, ErrorKind, OcppError

CALL = 2
CALL_RESULT = 3
CALL_ERROR = 4
MAX_MESSAGE_ID_LENGTH = 36
UNREADABLE_ID = "-1"


@dataclass(frozen=True, slots=True)
class Call:
    unique_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallResult:
    unique_id: str
    payload: Any


@dataclass(frozen=True, slots=True)
class CallError:
    unique_id: str
    error_code: str
    description: str
    details: Any


class FrameError(Exception):
    """A frame we cannot process. `unique_id` is what to answer with ("-1" when unreadable);
    `answer` is False for frames that must only be logged (a broken CALLRESULT/CALLERROR)."""

    def __init__(self, error: OcppError, unique_id: str = UNREADABLE_ID, *, answer: bool = True):
        super().__init__(str(error))
        self.error = error
        self.unique_id = unique_id
        self.answer = answer


def _strip_nul(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL; a hostile charger must not turn that into a database error."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_strip_nul(k): _strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_nul(v) for v in value]
    return value


def _valid_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= MAX_MESSAGE_ID_LENGTH


def parse(raw: str | bytes) -> Call | CallResult | CallError:
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FrameError(OcppError(ErrorKind.RPC_FRAMEWORK, f"Frame is not valid JSON: {exc}")) from None
    if isinstance(raw, bytes | bytearray):
        raw = raw.decode("utf-8", "replace")
    if "\\u0000" in raw:
        frame = _strip_nul(frame)
    if not isinstance(frame, list) or not frame:
        raise FrameError(OcppError(ErrorKind.RPC_FRAMEWORK, "Frame must be a non-empty JSON array"))
    message_type = frame[0]
    raw_id = frame[1] if len(frame) > 1 else None
    unique_id = raw_id if _valid_id(raw_id) else UNREADABLE_ID

    if message_type == CALL:
        if not _valid_id(raw_id):
            raise FrameError(
                OcppError(ErrorKind.RPC_FRAMEWORK, "messageId must be a string of 1-36 characters")
            )
        if len(frame) != 4:
            raise FrameError(
                OcppError(ErrorKind.RPC_FRAMEWORK, f"CALL must have 4 elements, got {len(frame)}"), unique_id
            )
        action, payload = frame[2], frame[3]
        if not isinstance(action, str) or not action:
            raise FrameError(
                OcppError(ErrorKind.RPC_FRAMEWORK, "Action must be a non-empty string"), unique_id
            )
        if not isinstance(payload, dict):
            raise FrameError(OcppError(ErrorKind.FORMAT, "Payload must be a JSON object"), unique_id)
        return Call(unique_id, action, payload)
    if message_type == CALL_RESULT:
        if len(frame) != 3 or not _valid_id(raw_id):
            raise FrameError(
                OcppError(ErrorKind.RPC_FRAMEWORK, "Malformed CALLRESULT"), unique_id, answer=False
            )
        return CallResult(unique_id, frame[2])
    if message_type == CALL_ERROR:
        if len(frame) != 5 or not _valid_id(raw_id):
            raise FrameError(
                OcppError(ErrorKind.RPC_FRAMEWORK, "Malformed CALLERROR"), unique_id, answer=False
            )
        return CallError(unique_id, str(frame[2]), str(frame[3]), frame[4])
    raise FrameError(
        OcppError(ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED, f"Message type {message_type!r} is not supported"),
        unique_id,
    )


def dumps(frame: list[Any]) -> str:
    return orjson.dumps(frame).decode()


def call_result(unique_id: str, payload: dict[str, Any]) -> str:
    return dumps([CALL_RESULT, unique_id, payload])


def call_error(unique_id: str, code: str, description: str, details: dict[str, Any] | None = None) -> str:
    return dumps([CALL_ERROR, unique_id, code, description[:MAX_DESCRIPTION], details or {}])


def call(unique_id: str, action: str, payload: dict[str, Any]) -> str:
    return dumps([CALL, unique_id, action, payload])
