"""Messages on a charger's display (OCPP 2.0.1 / 2.1 functional block O, Display Message; 1.6 has none)."""

from typing import Any

from cpms.errors import ValidationFailed
from cpms.ocpp_wire.calls import Call, call_checked, version_checked

# MessageFormatEnumType. QRCODE is 2.1 only (the call's schema check refuses it for 2.0.1). URI is not a link
# to show: the station downloads the URI and displays what it gets (e.g. an HTML page in a browser component).
MESSAGE_FORMATS = ("ASCII", "HTML", "URI", "UTF8", "QRCODE")
# MessagePriorityEnumType.
MESSAGE_PRIORITIES = ("AlwaysFront", "InFront", "NormalCycle")


def set_display_message(
    version: str,
    *,
    message_id: int,
    content: str,
    message_format: str,
    priority: str,
    state: str | None = None,
    language: str | None = None,
    transaction_id: str | None = None,
) -> Call:
    """SetDisplayMessage {message: MessageInfo {id, priority, state?, transactionId?, message {format,
    language?, content}}} (2.0.1 O01, 2.1). A message with an id the station already holds replaces it.
    ValidationFailed for 1.6, and for what the version's schema refuses (QRCODE in 2.0.1, content over 512
    characters in 2.0.1 / 1024 in 2.1, an unknown format, priority or state)."""
    if version_checked(version) == "1.6":
        raise ValidationFailed(
            "OCPP 1.6 has no display messages: SetDisplayMessage is an OCPP 2.0.1 and 2.1 message."
        )
    content_part: dict[str, Any] = {"format": message_format, "content": content}
    if language is not None:
        content_part["language"] = language
    info: dict[str, Any] = {"id": message_id, "priority": priority, "message": content_part}
    if state is not None:
        info["state"] = state
    if transaction_id is not None:
        info["transactionId"] = transaction_id
    return call_checked(version, Call("SetDisplayMessage", {"message": info}))
