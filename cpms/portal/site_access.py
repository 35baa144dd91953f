"""The "Who may charge here" part of a site's prices page: the site's access rule (public, or restricted to
some group tokens), shown and changed by who holds `Capability.PRICING` on the site.
`sessions.services.site_access` decides and writes; this parses the form and redirects back to the page."""

from typing import cast

from django import forms
from django.contrib import messages
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from accounts.enums import Capability
from cpms.errors import ValidationFailed
from cpms.portal.base import PortalRequest, portal_view
from sessions.services.site_access import (
    site_access_group_choices,
    site_access_group_label,
    site_access_rules_get,
    site_access_rules_set,
)
from stations.models import Site, SiteAccessMode
from stations.selectors import site_access


class SiteAccessRulesForm(forms.Form):
    mode = forms.ChoiceField(choices=SiteAccessMode.choices, widget=forms.RadioSelect, label="Who may charge")
    groups = forms.TypedMultipleChoiceField(
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Allowed groups (their member tokens too)",
    )

    def __init__(self, *args, site: Site, **kwargs):
        super().__init__(*args, **kwargs)
        cast(forms.TypedMultipleChoiceField, self.fields["groups"]).choices = [
            (token.pk, site_access_group_label(token)) for token in site_access_group_choices(site=site)
        ]


def site_access_rules_context(*, site: Site) -> dict:
    """What the prices page shows of the rule (the caller checked the pricing right on the site)."""
    rules = site_access_rules_get(site=site)
    form = SiteAccessRulesForm(site=site, initial={"mode": rules.mode, "groups": list(rules.group_ids)})
    groups = cast(forms.TypedMultipleChoiceField, form.fields["groups"])
    return {"form": form, "rules": rules, "has_groups": bool(groups.choices)}


@require_POST
@portal_view
def site_access_rules_post(request: PortalRequest, site_id: int):
    site = site_access(user=request.user, pk=site_id, capability=Capability.PRICING)
    form = SiteAccessRulesForm(request.POST, site=site)
    if not form.is_valid():
        errors = "; ".join(
            f"{form.fields[name].label}: {' '.join(str(error) for error in e)}"
            for name, e in form.errors.items()
        )
        messages.error(request, f"Access rules not changed. {errors}")
        return redirect("portal:site-prices-site", site_id=site.pk)
    try:
        rules = site_access_rules_set(
            actor=request.user,
            site=site,
            mode=form.cleaned_data["mode"],
            group_ids=form.cleaned_data["groups"],
            request=request,
        )
    except ValidationFailed as exc:
        messages.error(request, f"Access rules not changed. {exc.message}")
    else:
        if rules.mode == SiteAccessMode.RESTRICTED:
            messages.success(
                request, f"{site.name} is restricted to {len(rules.group_ids)} group(s) and their members."
            )
        else:
            messages.success(request, f"Every id token of the organisation may charge at {site.name}.")
    return redirect("portal:site-prices-site", site_id=site.pk)
