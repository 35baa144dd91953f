"""Applying django-filter FilterSets inside selectors."""

from collections.abc import Mapping
from typing import Any

import django_filters
from django.db.models import QuerySet

from cpms.errors import ValidationFailed


def filters_apply(
    filterset_class: type[django_filters.FilterSet], filters: Mapping[str, Any] | None, qs: QuerySet
) -> QuerySet:
    """`qs` narrowed by `filters` (None values mean "not given").

    An invalid value is an error, never ignored: django-filter leaves out the fields that fail to validate,
    which would silently widen a list the caller asked to narrow.
    """
    filters = {key: value for key, value in (filters or {}).items() if value is not None}
    filterset = filterset_class(filters, qs)
    if not filterset.is_valid():
        problems = "; ".join(f"{field}: {' '.join(errs)}" for field, errs in filterset.errors.items())
        raise ValidationFailed(f"Invalid filter: {problems}")
    return filterset.qs
