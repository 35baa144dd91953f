"""OCPP-J RPC error codes per version, and the exception handlers raise to answer with a CALLERROR.

1.6 and 2.0.1 spell some codes differently (OCPP-J 1.6 section 4.2.3, OCPP 2.0.1 Part 4 section 4.3):
1.6 "OccurenceConstraintViolation" / "FormationViolation", 2.0.1 "OccurrenceConstraintViolation" /
"FormatViolation"; 2.0.1 adds RpcFrameworkError and MessageTypeNotSupported.
"""

from dataclasses import dataclass, field
from enum import StrEnum


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


V16_CODES: dict[ErrorKind, str] = {
    ErrorKind.NOT_IMPLEMENTED: "NotImplemented",
    ErrorKind.NOT_SUPPORTED: "NotSupported",
    ErrorKind.INTERNAL: "InternalError",
    ErrorKind.PROTOCOL: "ProtocolError",
    ErrorKind.SECURITY: "SecurityError",
    ErrorKind.FORMAT: "FormationViolation",
    ErrorKind.PROPERTY: "PropertyConstraintViolation",
    ErrorKind.OCCURRENCE: "OccurenceConstraintViolation",  # sic: the 1.6 spelling
    ErrorKind.TYPE: "TypeConstraintViolation",
    ErrorKind.GENERIC: "GenericError",
    # 1.6 has neither: a frame that is not a valid RPC is a formation violation there.
    ErrorKind.RPC_FRAMEWORK: "FormationViolation",
    ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED: "FormationViolation",
}

V201_CODES: dict[ErrorKind, str] = {
    ErrorKind.NOT_IMPLEMENTED: "NotImplemented",
    ErrorKind.NOT_SUPPORTED: "NotSupported",
    ErrorKind.INTERNAL: "InternalError",
    ErrorKind.PROTOCOL: "ProtocolError",
    ErrorKind.SECURITY: "SecurityError",
    ErrorKind.FORMAT: "FormatViolation",
    ErrorKind.PROPERTY: "PropertyConstraintViolation",
    ErrorKind.OCCURRENCE: "OccurrenceConstraintViolation",
    ErrorKind.TYPE: "TypeConstraintViolation",
    ErrorKind.GENERIC: "GenericError",
    ErrorKind.RPC_FRAMEWORK: "RpcFrameworkError",
    ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED: "MessageTypeNotSupported",
}

MAX_DESCRIPTION = 255  # ErrorDescription is at most 255 characters (both versions)


@dataclass
class OcppError(Exception):
    """Raised while handling a CALL: answered with a CALLERROR of this kind."""

    kind: ErrorKind
    description: str = ""
    details: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.kind}: {self.description}"
