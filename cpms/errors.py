"""Domain errors. Services raise these; the API exception handler maps them to 4xx."""


class DomainError(Exception):
    """Base: a request that cannot be carried out as asked. `message` is shown to the caller."""

    status_code = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ValidationFailed(DomainError):
    status_code = 400


class NotFound(DomainError):
    status_code = 404


class PermissionDenied(DomainError):
    status_code = 403


class Conflict(DomainError):
    status_code = 409
