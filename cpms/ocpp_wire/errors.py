"""What is wrong with an OCPP payload, version-neutral: the schema check (cpms.ocpp_wire.schemas) and the
server's mappers raise OcppError; the server answers it with a CALLERROR spelt in the station's version
(cpms.ocpp.errors)."""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    """Version-neutral error kinds; ErrorCodes maps each to the version's spelling."""

    NOT_IMPLEMENTED = "not_implemented"  # unknown action
    NOT_SUPPORTED = "not_supported"  # known action we do not accept from a charger
    INTERNAL = "internal"
    PROTOCOL = "protocol"
    SECURITY = "security"
    FORMAT = "format"  # payload or frame syntactically wrong
    PROPERTY = "property"  # bad enum value, length, format
    OCCURRENCE = "occurrence"  # required field missing
    TYPE = "type"  # field of the wrong type
    GENERIC = "generic"
    RPC_FRAMEWORK = "rpc_framework"  # frame not a valid RPC (no readable message id, ...)
    MESSAGE_TYPE_NOT_SUPPORTED = "message_type_not_supported"


@dataclass
class OcppError(Exception):
    """Raised while handling a CALL: answered with a CALLERROR of this kind."""

    kind: ErrorKind
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.kind}: {self.description}"
