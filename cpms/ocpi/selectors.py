"""What the operator sees of its roaming set-up (API, admin, portal): its CPO parties, their partners with
their outbox, and each partner's tariff.

Roaming is the operator admins' business: a party's partners hold credentials and decide what the
organisation publishes, so everything here is scoped by the organisation-wide manage capability (operator
admins and staff), as the payment settings are. Roles without it (finance, support, site hosts) see no party
and no partner: empty lists, and NotFound for an id, so that another tenant's ids reveal nothing.
"""

from collections.abc import Iterable

from django.db.models import Count, Q, QuerySet

from accounts.enums import Capability
from accounts.models import Organisation, User
from accounts.selectors import organisation_access, organisation_ids_with
from billing.models import TariffAssignment
from billing.selectors import assignment_list
from cpms.errors import NotFound, ValidationFailed
from cpms.ocpi.enums import OutboxStatus
from cpms.ocpi.models import OcpiOutboxItem, OcpiPartner, OcpiParty
from cpms.ocpi.services.outbox import OutboxSummary, outbox_summary

ROAMING_CAPABILITY = Capability.MANAGE


def party_scope_q(*, user: User, prefix: str = "") -> Q:
    """The parties (via `prefix`, e.g. "party__") whose organisation the user manages; superusers all."""
    if user.is_superuser:
        return Q()
    organisation_ids = organisation_ids_with(user=user, capability=ROAMING_CAPABILITY)
    return Q(**{f"{prefix}organisation_id__in": organisation_ids})


def roaming_organisation_list(*, user: User) -> QuerySet[Organisation]:
    """The organisations whose roaming the user manages, with their party (if any) selected."""
    organisations = Organisation.objects.all()
    if not user.is_superuser:
        organisations = organisations.filter(
            pk__in=organisation_ids_with(user=user, capability=ROAMING_CAPABILITY)
        )
    return organisations.select_related("ocpi_party").order_by("name", "pk")


def roaming_organisation_access(*, user: User, pk: int) -> Organisation:
    """The organisation `pk` for a roaming write (a new party): ValidationFailed when the user does not
    belong to it (it is an input, like a site's organisation), PermissionDenied when their role may not
    manage it."""
    try:
        return organisation_access(user=user, pk=pk, capability=ROAMING_CAPABILITY)
    except NotFound as exc:
        raise ValidationFailed(exc.message) from exc


def party_list(*, user: User) -> QuerySet[OcpiParty]:
    return (
        OcpiParty.objects.select_related("organisation")
        .filter(party_scope_q(user=user))
        .order_by("country_code", "party_id")
    )


def party_access(*, user: User, pk: int) -> OcpiParty:
    party = party_list(user=user).filter(pk=pk).first()
    if party is None:
        raise NotFound(f"Party {pk} not found.")
    return party


def party_for_input(*, user: User, pk: int) -> OcpiParty:
    """A party named in a request body: ValidationFailed (400) outside the user's scope."""
    try:
        return party_access(user=user, pk=pk)
    except NotFound as exc:
        raise ValidationFailed(exc.message) from exc


def _partner_qs() -> QuerySet[OcpiPartner]:
    """Partners with their party, published sites, and their outbox's backlog and refused counts."""
    return (
        OcpiPartner.objects.select_related("party__organisation")
        .prefetch_related("published_sites")
        .annotate(
            outbox_backlog=Count("outbox", filter=Q(outbox__status=OutboxStatus.PENDING)),
            outbox_refused=Count("outbox", filter=Q(outbox__status=OutboxStatus.REFUSED)),
        )
    )


def partner_list(*, user: User, party: OcpiParty | None = None) -> QuerySet[OcpiPartner]:
    """The partners of the parties the user manages (or of `party` only), by party and name."""
    qs = _partner_qs().filter(party_scope_q(user=user, prefix="party__"))
    if party is not None:
        qs = qs.filter(party=party)
    return qs.order_by("party__country_code", "party__party_id", "name", "pk")


def partner_access(*, user: User, pk: int) -> OcpiPartner:
    """The partner `pk` if the user manages its party's organisation; NotFound otherwise."""
    partner = partner_list(user=user).filter(pk=pk).first()
    if partner is None:
        raise NotFound(f"Partner {pk} not found.")
    return partner


def partner_outbox_summary(*, partner: OcpiPartner) -> OutboxSummary:
    """Backlog, oldest pending, refused, delivered, last success and error. The caller checked access."""
    return outbox_summary(partner=partner)


def partner_outbox_items(*, partner: OcpiPartner) -> QuerySet[OcpiOutboxItem]:
    """The partner's outbox, newest first. The caller checked access to the partner."""
    return OcpiOutboxItem.objects.filter(partner=partner).order_by("-id")


def partner_tariffs(*, user: User, partners: Iterable[OcpiPartner]) -> dict[int, TariffAssignment]:
    """partner pk -> the tariff assignment of its drivers' token group (billing's assignment at scope
    `token:<group>`, not narrowed to a site or station), for the partners that have one the user sees."""
    by_group = {p.id_token_group_id: p.pk for p in partners if p.id_token_group_id is not None}
    if not by_group:
        return {}
    assignments = (
        assignment_list(user=user)
        .select_related("tariff")
        .filter(scope_key__in=[f"token:{group}" for group in by_group])
    )
    return {by_group[a.id_token_group_id]: a for a in assignments if a.id_token_group_id in by_group}
