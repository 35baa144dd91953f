"""Reads of tariffs, their versions and assignments, site energy prices, CDRs and credits, always through the
user's scope (accounts.selectors).

- Tariffs and assignments belong to an organisation: its organisation-wide roles see them all. A site host
  sees the assignments made at their sites or at stations of their sites (token assignments narrowed to one
  of those included), and the tariffs of those assignments; they change none of it (the site-host role has
  no `manage`).
- Energy prices are read per site, after `site_access` checked the scope.
- CDRs follow their site (copied onto the CDR when it was written): the organisation's roles, and site hosts
  for their sites. Credits and lines are read per CDR, after `cdr_access` checked the scope.
- Ad-hoc payments follow their station, like sessions: the organisation's roles, and site hosts for the
  stations of their sites.

`*_access` raises NotFound for an object outside the view scope and PermissionDenied for a visible object the
user lacks `capability` on.
"""

from collections.abc import Mapping
from typing import Any

import django_filters
from django.conf import settings
from django.db.models import Prefetch, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse

from accounts.enums import Capability
from accounts.models import User
from accounts.selectors import organisation_ids_with
from billing.enums import AssignmentLevel, PaymentStatus
from billing.models import (
    CdrCredit,
    CdrLine,
    ChargeDetailRecord,
    Payment,
    PaymentEvent,
    PaymentRefund,
    SiteEnergyPrice,
    Tariff,
    TariffAssignment,
    TariffVersion,
)
from cpms.errors import NotFound, PermissionDenied
from cpms.filters import filters_apply
from sessions.models import ChargingSession
from stations.models import Site
from stations.scope import site_host_site_ids, site_scope_q, station_scope_q, user_can

# --- tariffs --------------------------------------------------------------------------------------------


def _assignments_at_sites_q(site_ids: list[int]) -> Q:
    return Q(site_id__in=site_ids) | Q(station__site_id__in=site_ids)


def tariff_scope_q(*, user: User, capability: str = Capability.VIEW, prefix: str = "") -> Q:
    """The tariffs (via `prefix`, e.g. "tariff__") the user may act on with `capability` (module docstring)."""
    if user.is_superuser:
        return Q()
    q = Q(**{f"{prefix}organisation_id__in": organisation_ids_with(user=user, capability=capability)})
    site_ids = site_host_site_ids(user=user, capability=capability)
    if site_ids:
        # A subquery, not a join over assignments: a tariff assigned at two of the host's places is one row.
        assigned = TariffAssignment.objects.filter(_assignments_at_sites_q(site_ids)).values("tariff_id")
        q |= Q(**{f"{prefix}pk__in": assigned})
    return q


class TariffFilter(django_filters.FilterSet):
    organisation = django_filters.NumberFilter(field_name="organisation_id")

    class Meta:
        model = Tariff
        fields = ["organisation"]


def tariff_list(*, user: User, filters: Mapping[str, Any] | None = None) -> QuerySet[Tariff]:
    qs = Tariff.objects.filter(tariff_scope_q(user=user))
    return filters_apply(TariffFilter, filters, qs)


def tariff_access(*, user: User, pk: int, capability: str = Capability.VIEW) -> Tariff:
    tariff = Tariff.objects.filter(tariff_scope_q(user=user)).filter(pk=pk).first()
    if tariff is None:
        raise NotFound(f"Tariff {pk} not found.")
    if capability != Capability.VIEW and not user_can(
        user=user, capability=capability, organisation_id=tariff.organisation_id
    ):
        raise PermissionDenied(f"You may not {capability} tariff {tariff.pk}.")
    return tariff


def tariff_version_list(*, tariff: Tariff) -> QuerySet[TariffVersion]:
    """The tariff's versions, newest first. The caller checked access to the tariff (`tariff_access`)."""
    return TariffVersion.objects.filter(tariff=tariff).select_related("created_by").order_by("-version")


def tariff_version_get(*, tariff: Tariff, version: int) -> TariffVersion:
    found = tariff_version_list(tariff=tariff).filter(version=version).first()
    if found is None:
        raise NotFound(f"Tariff {tariff.pk} has no version {version}.")
    return found


# --- assignments ----------------------------------------------------------------------------------------


def assignment_scope_q(*, user: User, capability: str = Capability.VIEW) -> Q:
    if user.is_superuser:
        return Q()
    q = Q(organisation_id__in=organisation_ids_with(user=user, capability=capability))
    site_ids = site_host_site_ids(user=user, capability=capability)
    if site_ids:
        q |= _assignments_at_sites_q(site_ids)
    return q


class TariffAssignmentFilter(django_filters.FilterSet):
    organisation = django_filters.NumberFilter(field_name="organisation_id")
    tariff = django_filters.NumberFilter(field_name="tariff_id")
    level = django_filters.ChoiceFilter(choices=AssignmentLevel.choices)

    class Meta:
        model = TariffAssignment
        fields = ["organisation", "tariff", "level"]


def _assignment_qs() -> QuerySet[TariffAssignment]:
    return TariffAssignment.objects.select_related("station", "created_by")


def assignment_list(*, user: User, filters: Mapping[str, Any] | None = None) -> QuerySet[TariffAssignment]:
    qs = _assignment_qs().filter(assignment_scope_q(user=user))
    return filters_apply(TariffAssignmentFilter, filters, qs)


def assignment_access(*, user: User, pk: int, capability: str = Capability.VIEW) -> TariffAssignment:
    assignment = _assignment_qs().filter(assignment_scope_q(user=user)).filter(pk=pk).first()
    if assignment is None:
        raise NotFound(f"Tariff assignment {pk} not found.")
    if capability != Capability.VIEW and not user_can(
        user=user, capability=capability, organisation_id=assignment.organisation_id
    ):
        raise PermissionDenied(f"You may not {capability} tariff assignment {assignment.pk}.")
    return assignment


# --- site energy prices ---------------------------------------------------------------------------------


def energy_price_list(*, site: Site) -> QuerySet[SiteEnergyPrice]:
    """The site's electricity prices, newest first. The caller checked access to the site (`site_access`)."""
    return SiteEnergyPrice.objects.filter(site=site).order_by("-valid_from", "-id")


# --- CDRs and credits -----------------------------------------------------------------------------------


def cdr_scope_q(*, user: User, capability: str = Capability.VIEW, prefix: str = "") -> Q:
    """CDRs (via `prefix`, e.g. "cdr__") the user may act on with `capability`: by the CDR's site."""
    return site_scope_q(user=user, capability=capability, prefix=f"{prefix}site__")


class CdrFilter(django_filters.FilterSet):
    organisation = django_filters.NumberFilter(field_name="organisation_id")
    site = django_filters.NumberFilter(field_name="site_id")
    # The identity copied onto the CDR when it was written.
    station = django_filters.CharFilter(field_name="station_identity")
    stopped_after = django_filters.IsoDateTimeFilter(field_name="stopped_at", lookup_expr="gte")
    stopped_before = django_filters.IsoDateTimeFilter(field_name="stopped_at", lookup_expr="lt")
    currency = django_filters.CharFilter(field_name="currency")

    class Meta:
        model = ChargeDetailRecord
        fields = ["organisation", "site", "station", "stopped_after", "stopped_before", "currency"]


def cdr_list(*, user: User, filters: Mapping[str, Any] | None = None) -> QuerySet[ChargeDetailRecord]:
    """CDRs of the sites the user sees, newest stop first."""
    qs = ChargeDetailRecord.objects.filter(cdr_scope_q(user=user)).order_by("-stopped_at", "-id")
    return filters_apply(CdrFilter, filters, qs)


def credit_qs() -> QuerySet[CdrCredit]:
    return CdrCredit.objects.select_related("created_by").order_by("created_at", "id")


def cdr_access(*, user: User, pk: int, capability: str = Capability.VIEW) -> ChargeDetailRecord:
    """The CDR with its lines and credits prefetched, if the user sees it (NotFound) and holds `capability`
    on it (PermissionDenied)."""
    cdr = (
        ChargeDetailRecord.objects.filter(cdr_scope_q(user=user))
        .prefetch_related(
            Prefetch("lines", queryset=CdrLine.objects.order_by("position")),
            Prefetch("credits", queryset=credit_qs()),
        )
        .filter(pk=pk)
        .first()
    )
    if cdr is None:
        raise NotFound(f"CDR {pk} not found.")
    if capability != Capability.VIEW and not user_can(
        user=user, capability=capability, organisation_id=cdr.organisation_id, site_id=cdr.site_id
    ):
        raise PermissionDenied(f"You may not {capability} CDR {cdr.pk}.")
    return cdr


def session_cdr_get(*, session: ChargingSession) -> ChargeDetailRecord | None:
    """The session's CDR with its lines, or None while it is not billed. The caller checked access to the
    session (`sessions.selectors.session_access`)."""
    return (
        ChargeDetailRecord.objects.filter(session=session)
        .prefetch_related(Prefetch("lines", queryset=CdrLine.objects.order_by("position")))
        .first()
    )


def credit_list(*, cdr: ChargeDetailRecord) -> QuerySet[CdrCredit]:
    """The CDR's credits, oldest first. The caller checked access to the CDR (`cdr_access`)."""
    return credit_qs().filter(cdr=cdr)


# --- ad-hoc card payments -------------------------------------------------------------------------------

# The operator's "unpaid" list (issue 18): capture failed (retried, then left to the operator) or the
# session cost more than the hold.
PAYMENT_UNPAID_STATUSES = (PaymentStatus.UNPAID, PaymentStatus.SHORTFALL)
PAYMENT_STATUS_FILTER_CHOICES = [
    ("unpaid", "Unpaid (capture failed or above the hold)"),
    *PaymentStatus.choices,
]


def payment_scope_q(*, user: User, capability: str = Capability.VIEW, prefix: str = "") -> Q:
    """Payments (via `prefix`) the user may act on with `capability`: by the paid station, like its sessions
    (the organisation's roles; a site host at their own sites)."""
    return station_scope_q(user=user, capability=capability, prefix=f"{prefix}station__")


class PaymentFilter(django_filters.FilterSet):
    organisation = django_filters.NumberFilter(field_name="organisation_id")
    status = django_filters.ChoiceFilter(choices=PAYMENT_STATUS_FILTER_CHOICES, method="_status")
    site = django_filters.NumberFilter(field_name="station__site_id")
    station = django_filters.CharFilter(field_name="station__identity")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Payment
        fields = ["organisation", "status", "site", "station", "created_after", "created_before"]

    def _status(self, qs: QuerySet[Payment], name: str, value: str) -> QuerySet[Payment]:
        if value == "unpaid":
            return qs.filter(status__in=PAYMENT_UNPAID_STATUSES)
        return qs.filter(status=value)


def _payment_qs() -> QuerySet[Payment]:
    """Payments with what a list or a detail page shows of each: station, EVSE, refunds with their credit."""
    return Payment.objects.select_related("station__site", "evse", "organisation").prefetch_related(
        Prefetch(
            "refunds",
            queryset=PaymentRefund.objects.select_related("credit", "created_by").order_by(
                "created_at", "id"
            ),
        )
    )


def payment_list(*, user: User, filters: Mapping[str, Any] | None = None) -> QuerySet[Payment]:
    """Payments at the stations the user sees, newest first. `filters`: organisation, status (a
    PaymentStatus or "unpaid": unpaid and shortfall), site, station (identity), created_after/before."""
    qs = _payment_qs().filter(payment_scope_q(user=user)).order_by("-created_at", "-id")
    return filters_apply(PaymentFilter, filters, qs)


def payment_access(*, user: User, pk: int, capability: str = Capability.VIEW) -> Payment:
    """The payment with its refunds (and their credits) prefetched, if the user sees it (NotFound) and holds
    `capability` on it (PermissionDenied)."""
    payment = _payment_qs().filter(payment_scope_q(user=user)).filter(pk=pk).first()
    if payment is None:
        raise NotFound(f"Payment {pk} not found.")
    if capability != Capability.VIEW and not user_can(
        user=user,
        capability=capability,
        organisation_id=payment.organisation_id,
        site_id=payment.station.site_id,
    ):
        raise PermissionDenied(f"You may not {capability} payment {payment.pk}.")
    return payment


def payment_event_list(*, payment: Payment) -> QuerySet[PaymentEvent]:
    """The payment's trail, oldest first. The caller checked access to the payment (`payment_access`)."""
    return PaymentEvent.objects.filter(payment=payment).order_by("created_at", "id")


def session_payment_get(*, session: ChargingSession) -> Payment | None:
    """The ad-hoc payment of the session, or None. The caller checked access to the session
    (`sessions.selectors.session_access`)."""
    return Payment.objects.filter(session=session).first()


def payment_webhook_url(*, organisation_id: int, request: HttpRequest | None = None) -> str:
    """Where the provider posts an organisation's webhooks: PUBLIC_BASE_URL + path when set; else absolute on
    the host of `request`; else the path (as stations.selectors.evse_public_url)."""
    path = reverse("pay:webhook-stripe", kwargs={"organisation_id": organisation_id})
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL + path
    if request is not None:
        return request.build_absolute_uri(path)
    return path
