"""API plumbing shared by every app: the one exception handler."""

from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from cpms.errors import DomainError


def exception_handler(exc, context):
    """Map domain errors to 4xx with a clear message; everything else as DRF does it."""
    if isinstance(exc, DomainError):
        return Response({"detail": exc.message}, status=exc.status_code)
    if isinstance(exc, exceptions.APIException):
        return drf_exception_handler(exc, context)
    return drf_exception_handler(exc, context)
