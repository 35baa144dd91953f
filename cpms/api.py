"""API plumbing shared by every app: the one exception handler, strict input parsing, pagination."""

from collections.abc import Callable, Mapping
from typing import Any, cast

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.settings import api_settings
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from cpms.errors import DomainError


def exception_handler(exc, context):
    """Map domain errors to 4xx with a clear message; everything else as DRF does it."""
    if isinstance(exc, DomainError):
        return Response({"detail": exc.message}, status=exc.status_code)
    if isinstance(exc, exceptions.APIException):
        return drf_exception_handler(exc, context)
    return drf_exception_handler(exc, context)


class ErrorOutputSerializer(serializers.Serializer):
    """The body of every 403/404 (and of 400s raised by services): {"detail": message}."""

    detail = serializers.CharField()


# The error answers every API view documents (drf-spectacular responses).
NOT_FOUND = OpenApiResponse(ErrorOutputSerializer, description="Not found, or outside your scope.")
FORBIDDEN = OpenApiResponse(
    ErrorOutputSerializer, description="Visible to you, but your role may not do this."
)
BAD_REQUEST = OpenApiResponse(description="Invalid input: {field: [messages]} or {detail: message}.")


class StrictInputSerializer(serializers.Serializer):
    """An input serializer that refuses fields it does not know.

    DRF drops unknown keys silently, so a PATCH of a read-only or misspelt field (`"organization"`,
    `"connected"`) would answer 200 and change nothing: the caller must learn that it did not happen.
    """

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError(
                    {name: ["Unknown or read-only field; it cannot be set."] for name in unknown}
                )
        return super().to_internal_value(data)


def paginated_response(
    *,
    request: Request,
    view: APIView,
    queryset: QuerySet[Any],
    serializer_class: Callable[..., BaseSerializer[Any]],
) -> Response:
    """One page of `queryset` rendered with `serializer_class`, with the configured paginator.

    API views that use it declare `pagination_class = api_settings.DEFAULT_PAGINATION_CLASS` so that the
    OpenAPI schema shows the page envelope and the limit/offset parameters.
    """
    # api_settings imports the dotted path of DEFAULT_PAGINATION_CLASS: a class, which the stubs type as the
    # setting's text.
    paginator_class = cast(
        type[BasePagination], getattr(view, "pagination_class", None) or api_settings.DEFAULT_PAGINATION_CLASS
    )
    paginator = paginator_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)
