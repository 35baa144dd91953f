"""Who may export what: the organisations (and sites) an export reads, from the user's roles and the filters,
and the audit record of who exported what."""

from dataclasses import dataclass, field

from accounts.enums import Capability
from accounts.models import AuditAction, Organisation, User
from accounts.selectors import organisation_access, organisation_ids_with
from accounts.services import audit_record
from billing.models import ExportJob
from billing.services.exports.filters import ExportFilters
from cpms.errors import NotFound, PermissionDenied, ValidationFailed
from stations.models import Site


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportScope:
    """The organisations (and, if not empty, the sites) an export reads; nothing outside them."""

    organisation_ids: tuple[int, ...]
    site_ids: tuple[int, ...] = ()
    # Who asked (the audit record of a streamed export names them); not part of what is read.
    requested_by_id: int | None = field(default=None, compare=False)


def _exportable_organisation_ids(*, user: User) -> list[int]:
    if user.is_superuser:
        return list(Organisation.objects.order_by("pk").values_list("pk", flat=True))
    return sorted(organisation_ids_with(user=user, capability=Capability.EXPORT))


def export_scope_access(*, user: User, filters: ExportFilters) -> ExportScope:
    """What `user` may export with `filters`: the organisations where their role grants the export
    capability (superusers: all), narrowed to the filters.

    PermissionDenied when the user may export nothing, or names an organisation they belong to without the
    capability (a site host, operator staff, support). NotFound for an organisation or site outside their
    organisations. ValidationFailed for a site of another organisation than the one named.
    """
    exportable = _exportable_organisation_ids(user=user)
    if filters.organisation_id is not None:
        # NotFound outside the user's organisations, PermissionDenied without the capability.
        organisation_access(user=user, pk=filters.organisation_id, capability=Capability.EXPORT)
    elif not exportable:
        raise PermissionDenied("Your role may not export finance data.")
    site_ids = tuple(dict.fromkeys(filters.site_ids))
    if site_ids:
        sites = dict(
            Site.objects.filter(pk__in=site_ids, organisation_id__in=exportable).values_list(
                "pk", "organisation_id"
            )
        )
        for site_id in site_ids:
            if site_id not in sites:
                raise NotFound(f"Site {site_id} not found.")
            if filters.organisation_id is not None and sites[site_id] != filters.organisation_id:
                raise ValidationFailed(f"Site {site_id} is not in organisation {filters.organisation_id}.")
    organisation_ids = (
        (filters.organisation_id,) if filters.organisation_id is not None else tuple(exportable)
    )
    return ExportScope(organisation_ids=organisation_ids, site_ids=site_ids, requested_by_id=user.pk)


def export_audit(
    *, kind: str, filters: ExportFilters, scope: ExportScope, job: ExportJob | None = None
) -> None:
    """docs/reliability.md case 42: who exported what (a streamed export when it starts, a job when it is
    created)."""
    organisation_ids = list(scope.organisation_ids)
    actor: User | None = None
    if job is not None:
        actor = job.requested_by
    elif scope.requested_by_id is not None:
        actor = User.objects.filter(pk=scope.requested_by_id).first()
    audit_record(
        actor=actor,
        action=AuditAction.EXPORT_CREATED,
        obj=job,
        organisation_id=organisation_ids[0] if len(organisation_ids) == 1 else None,
        changes={
            "kind": kind,
            "streamed": job is None,
            "from": filters.period_from.isoformat(),
            "to": filters.period_to.isoformat(),
            "organisations": organisation_ids,
            "sites": list(scope.site_ids),
        },
    )
