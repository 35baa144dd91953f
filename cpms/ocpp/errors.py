"""OCPP-J RPC error codes per version, and the exception handlers raise to answer with a CALLERROR.

1.6 and 2.0.1 spell some codes differently (OCPP-J 1.6 section 4.2.3, OCPP 2.0.1 Part 4 section 4.3):
1.6 "OccurenceConstraintViolation" / "FormationViolation", 2.0.1 "OccurrenceConstraintViolation" /
"FormatViolation"; 2.0.1 adds RpcFrameworkError and MessageTypeNotSupported.
"""

from cpms.ocpp_wire.errors import ErrorKind, OcppError

# ErrorKind and OcppError are the wire's (the schema check raises them); the server's modules import them
# from here with the codes.
__all__ = ["MAX_DESCRIPTION", "V16_CODES", "V201_CODES", "ErrorKind", "OcppError"]


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
