"""Portal forms of the accounts app: parse input; the services decide (scope, rules)."""

from django import forms

from accounts.enums import Role
from accounts.models import AuditAction


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=150)
    organisation = forms.TypedChoiceField(coerce=int, choices=())
    role = forms.ChoiceField(choices=Role.choices)
    sites = forms.TypedMultipleChoiceField(
        coerce=int, choices=(), required=False, help_text="Site hosts only."
    )
    may_set_prices = forms.BooleanField(
        required=False, label="May set prices and access rules of these sites"
    )

    def __init__(self, *args, organisations, sites, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["organisation"].choices = [(org.pk, org.name) for org in organisations]
        self.fields["sites"].choices = [
            (site.pk, f"{site.name} ({site.organisation.name})") for site in sites
        ]
        if len(organisations) == 1:
            self.fields["organisation"].initial = organisations[0].pk
            self.fields["organisation"].widget = forms.HiddenInput()


class RoleForm(forms.Form):
    organisation = forms.IntegerField(widget=forms.HiddenInput)
    role = forms.ChoiceField(choices=Role.choices)


class SiteGrantsForm(forms.Form):
    organisation = forms.IntegerField(widget=forms.HiddenInput)
    sites = forms.TypedMultipleChoiceField(coerce=int, choices=(), required=False)
    may_set_prices = forms.BooleanField(required=False, label="May set prices and access rules")

    def __init__(self, *args, sites, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["sites"].choices = [(site.pk, site.name) for site in sites]


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(choices=[("", "Any action"), *AuditAction.choices], required=False)
    actor = forms.TypedChoiceField(coerce=int, choices=(), required=False, empty_value=None)
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(
        required=False, label="To (inclusive)", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args, actors, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["actor"].choices = [("", "Anyone"), *((user.pk, user.get_username()) for user in actors)]
