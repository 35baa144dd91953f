"""Who may charge at a site: its access rule, set by who holds the pricing right on the site (operator admins
and staff; site hosts granted `stations.change_site` on it).

- public (the default): every id token the organisation accepts, as far as the token's own place
  restrictions go (IdToken.allowed_sites / allowed_stations);
- restricted: in addition, only tokens that are, or belong to (IdToken.group), one of the site's allowed
  groups (SiteAccessGroup).

Enforcement is `sessions.services.tokens.id_token_allowed_q`, in the same query as the token lookup. The
allowed groups are kept when the site goes back to public (they apply again when it is restricted).

A charger's local authorisation list may still accept a token offline: a station's list follows the rule at
its next synchronisation (sessions.services.local_lists), not at the moment the rule changes.

Group tokens are the organisation's id tokens that group others (at least one member). Site hosts see their
values and owner names here, never the member tokens.
"""

from dataclasses import asdict, dataclass
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet

from accounts.enums import Capability
from accounts.models import AuditAction, User
from accounts.services import audit_record
from cpms.errors import ValidationFailed
from sessions.models import IdToken, SiteAccessGroup
from stations.models import Site, SiteAccessMode
from stations.selectors import site_access

# An audit action code (accounts.models.AuditAction lists the others; the log shows unknown codes as they are).
AUDIT_ACTION = AuditAction.SITE_ACCESS_RULES_CHANGED


@dataclass(frozen=True, kw_only=True)
class SiteAccessRules:
    site_id: int
    mode: str
    group_ids: tuple[int, ...]  # ascending


# --- reads ---------------------------------------------------------------------------------------------


def id_token_admitted_at_site(*, site: Site, token: IdToken) -> bool:
    """Whether `token` may charge somewhere at `site` as far as places go: its own restriction (allowed sites or
    stations) and the site's rule. The per-station check at authorisation is `id_token_allowed_q`; this is its
    site-level counterpart for decisions taken before a station is chosen (joining a waitlist)."""
    own_sites = token.allowed_sites.all()
    own_stations = token.allowed_stations.all()
    if (own_sites.exists() or own_stations.exists()) and not (
        own_sites.filter(pk=site.pk).exists() or own_stations.filter(site=site).exists()
    ):
        return False
    if site.access_mode != SiteAccessMode.RESTRICTED:
        return True
    candidates = [token.pk] if token.group_id is None else [token.pk, token.group_id]
    return SiteAccessGroup.objects.filter(site=site, group_id__in=candidates).exists()


def site_access_rules_get(*, site: Site) -> SiteAccessRules:
    """The site's rule as stored (the caller has checked the site is visible: `site_access`)."""
    group_ids = SiteAccessGroup.objects.filter(site_id=site.pk).order_by("group_id")
    return SiteAccessRules(
        site_id=site.pk,
        mode=site.access_mode,
        group_ids=tuple(group_ids.values_list("group_id", flat=True)),
    )


def site_access_group_choices(*, site: Site) -> QuerySet[IdToken]:
    """The group tokens of the site's organisation (tokens with at least one member), by value: what a rule
    may name. Only their own fields are meant to be shown (value, owner name, status)."""
    has_members = IdToken.objects.filter(group_id=OuterRef("pk"))
    return (
        IdToken.objects.filter(organisation_id=site.organisation_id)
        .filter(Exists(has_members))
        .order_by("value", "pk")
    )


def site_access_group_label(token: IdToken) -> str:
    return f"{token.owner_name} ({token.value})" if token.owner_name else token.value


# --- writes --------------------------------------------------------------------------------------------


def _groups_resolve(*, site: Site, group_ids: list[int]) -> list[int]:
    wanted = set(group_ids)
    found = set(site_access_group_choices(site=site).filter(pk__in=wanted).values_list("pk", flat=True))
    missing = wanted - found
    if missing:
        listed = ", ".join(str(pk) for pk in sorted(missing))
        raise ValidationFailed(f"Not group id tokens of this site's organisation: {listed}.")
    return sorted(found)


def site_access_rules_set(
    *, actor: User, site: Site, mode: str, group_ids: list[int], request: Any = None
) -> SiteAccessRules:
    """Replace the site's rule: `mode` (SiteAccessMode) and its allowed groups (ids of group tokens of the
    site's organisation). Needs Capability.PRICING on the site (NotFound outside the actor's scope,
    PermissionDenied without the right); ValidationFailed for an unknown mode, a token that is not a group
    token of the organisation, or a restricted site without any group (nobody could charge there). One
    transaction, with an audit record of before and after (none when nothing changes)."""
    site = site_access(user=actor, pk=site.pk, capability=Capability.PRICING)
    if mode not in SiteAccessMode.values:
        raise ValidationFailed(
            f"Unknown access mode {mode!r}; expected one of {', '.join(SiteAccessMode.values)}."
        )
    if any(isinstance(pk, bool) or not isinstance(pk, int) for pk in group_ids):
        raise ValidationFailed("Groups are id token ids (integers).")
    wanted = _groups_resolve(site=site, group_ids=group_ids)
    if mode == SiteAccessMode.RESTRICTED and not wanted:
        raise ValidationFailed(
            "A restricted site needs at least one allowed group: nobody could charge there."
        )
    with transaction.atomic():
        # The site row is the lock: two concurrent changes of the rule apply one after the other.
        locked = Site.objects.select_for_update().get(pk=site.pk)
        before = site_access_rules_get(site=locked)
        after = SiteAccessRules(site_id=site.pk, mode=mode, group_ids=tuple(wanted))
        if after == before:
            return after
        if mode != before.mode:
            Site.objects.filter(pk=site.pk).update(access_mode=mode)
        SiteAccessGroup.objects.filter(site_id=site.pk).exclude(group_id__in=wanted).delete()
        SiteAccessGroup.objects.bulk_create(
            [
                SiteAccessGroup(site_id=site.pk, group_id=pk)
                for pk in sorted(set(wanted) - set(before.group_ids))
            ]
        )
        audit_record(
            actor=actor,
            action=AUDIT_ACTION,
            obj=locked,
            organisation_id=site.organisation_id,
            changes={"before": _audit_view(before), "after": _audit_view(after)},
            request=request,
        )
    site.access_mode = mode
    return after


def _audit_view(rules: SiteAccessRules) -> dict[str, Any]:
    data = asdict(rules)
    data.pop("site_id")
    data["group_ids"] = list(data["group_ids"])
    return data
