"""Remote commands in the admin: buttons on a station's page (sent at once, the answer shown), actions on
the station list (a bulk job per organisation), and the command history.

Everything goes through the same services as the API: `command_send` for one station,
`command_job_create` for many; the calls are built per version by cpms.ocpp_wire.
"""

import json
from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Model, Q
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.urls import path, reverse

from accounts.admin import NoFullCountAdminMixin, ReadOnlyAdminMixin, domain_errors_as_http
from accounts.enums import Capability
from accounts.selectors import organisation_ids_with
from cpms.errors import DomainError
from cpms.ocpp_wire import operations as builders
from cpms.ocpp_wire.calls import VERSIONS, Call
from cpms.ocpp_wire.redaction import request_redacted
from cpms.ocpp_wire.templates import PROTOCOLS_OF, read_configuration_calls, template_calls
from stations.admin_scope import SiteScopedAdminMixin
from stations.enums import CommandSource, CommandStatus, JobKind
from stations.models import ChargingStation, Command, CommandJobTarget, ConfigurationTemplate
from stations.scope import station_scope_q
from stations.selectors import (
    configuration_template_access,
    configuration_template_list,
    firmware_file_list,
    station_access,
)
from stations.services.commands import command_send, station_version, target_resolve
from stations.services.firmware_campaigns import firmware_campaign_create
from stations.services.jobs import command_job_create

RECENT_COMMANDS = 20


def _all_versions(build: Callable[[str], Call]) -> dict[str, list[list]]:
    return {f"ocpp{version}": [list(build(version))] for version in VERSIONS}


# name -> (label, builder for one version or None for a read, needs a connector)
OPERATIONS: dict[str, tuple[str, Callable | None]] = {
    "soft_reset": ("Soft reset (when idle)", lambda v, t: builders.reset(v, kind="soft")),
    "hard_reset": ("Hard reset (now)", lambda v, t: builders.reset(v, kind="hard")),
    "clear_cache": ("Clear authorisation cache", lambda v, t: builders.clear_cache(v)),
    "trigger_status": (
        "Ask for status (TriggerMessage StatusNotification)",
        lambda v, t: builders.trigger_message(v, message="StatusNotification"),
    ),
    "trigger_heartbeat": (
        "Ask for a heartbeat",
        lambda v, t: builders.trigger_message(v, message="Heartbeat"),
    ),
    "read_configuration": ("Read configuration into the database", None),
    "unlock": ("Unlock connector", lambda v, t: builders.unlock(v, target=t)),
    "make_operative": (
        "Make available",
        lambda v, t: builders.change_availability(v, operative=True, target=t),
    ),
    "make_inoperative": (
        "Make unavailable",
        lambda v, t: builders.change_availability(v, operative=False, target=t),
    ),
}


class StationCommandForm(forms.Form):
    operation = forms.ChoiceField(choices=[(name, label) for name, (label, _) in OPERATIONS.items()])
    connector_id = forms.IntegerField(
        required=False,
        min_value=1,
        help_text="For unlock and availability: the connector (counted over the station). Empty: the station.",
    )


def _call_for(station: ChargingStation, operation: str, connector_id: int | None) -> Call:
    version = station_version(station)
    _label, build = OPERATIONS[operation]
    if build is None:
        action, payload = read_configuration_calls()[station.protocol][0]
        return Call(action, payload)
    target = target_resolve(station=station, evse_id=None, connector_id=connector_id)
    return build(version, target)


def station_command_view(model_admin: admin.ModelAdmin, request, object_id: str):
    """GET: the form and the station's recent commands. POST: send one command, show the outcome."""
    identity = ChargingStation.objects.filter(pk=object_id).values_list("identity", flat=True).first()
    with domain_errors_as_http():
        station = station_access(user=request.user, identity=identity or "", capability=Capability.COMMAND)
    change_url = reverse("admin:stations_chargingstation_change", args=[station.pk])
    form = StationCommandForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            call = _call_for(station, form.cleaned_data["operation"], form.cleaned_data["connector_id"])
        except DomainError as exc:
            model_admin.message_user(request, exc.message, messages.ERROR)
        else:
            command = command_send(
                station=station,
                call=call,
                requested_by=request.user,
                source=CommandSource.ADMIN,
            )
            _report(model_admin, request, command)
            return HttpResponseRedirect(request.path)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "station": station,
        "form": form,
        "commands": Command.objects.filter(station=station).select_related("requested_by")[:RECENT_COMMANDS],
        "change_url": change_url,
        "title": f"Commands: {station.identity}",
    }
    return render(request, "admin/stations/station_commands.html", context)


def _report(model_admin: admin.ModelAdmin, request, command: Command) -> None:
    if command.status == CommandStatus.ANSWERED:
        model_admin.message_user(request, f"{command.action}: {command.response}", messages.SUCCESS)
    else:
        detail = command.error_description or command.error_code or command.status
        model_admin.message_user(
            request, f"{command.action} {command.get_status_display()}: {detail}", messages.ERROR
        )


class StationCommandsMixin:
    """For ChargingStationAdmin: the commands page, and bulk actions that start a job."""

    # Set by the ModelAdmin this is mixed into, and by SiteScopedAdminMixin.
    model: type[Model]
    admin_site: admin.AdminSite
    message_user: Callable[..., None]
    capable_somewhere: Callable[..., bool]

    def get_urls(self):
        urls = super().get_urls()
        own = [
            path(
                "<path:object_id>/commands/",
                self.admin_site.admin_view(
                    lambda request, object_id: station_command_view(self, request, object_id)
                ),
                name="stations_chargingstation_commands",
            )
        ]
        return own + urls

    def has_command_permission(self, request, obj=None) -> bool:
        user = request.user
        return user.is_active and (
            user.is_superuser or self.capable_somewhere(user=user, capability=Capability.COMMAND)
        )

    def _bulk(
        self, request, queryset, label: str, calls: dict[str, list[list]], kind: str = JobKind.COMMAND
    ) -> None:
        stations = list(queryset.filter(station_scope_q(user=request.user, capability=Capability.COMMAND)))
        skipped = queryset.count() - len(stations)
        by_org: dict[int, list[ChargingStation]] = {}
        for station in stations:
            by_org.setdefault(station.organisation_id, []).append(station)
        for stations_of_org in by_org.values():
            job = command_job_create(
                organisation=stations_of_org[0].organisation,
                kind=kind,
                stations=stations_of_org,
                calls=calls,
                user=request.user,
                action=label,
            )
            url = reverse("admin:stations_commandjob_change", args=[job.pk])
            self.message_user(request, f"{label}: job #{job.pk} started for {job.total} station(s) ({url}).")
        if skipped:
            self.message_user(
                request, f"{skipped} station(s) left out: you may not command them.", messages.WARNING
            )

    def _choose(self, request, queryset, *, title: str, label: str, choices: list[tuple[int, str]], apply):
        """An action with a second step: pick one of `choices`, then `apply(choice_id, stations)`."""
        choice = request.POST.get("choice")
        if request.POST.get("confirm") and choice:
            stations = list(
                queryset.filter(station_scope_q(user=request.user, capability=Capability.COMMAND))
            )
            try:
                apply(int(choice), stations)
            except (DomainError, ValueError) as exc:
                self.message_user(request, getattr(exc, "message", str(exc)), messages.ERROR)
            return None
        if not choices:
            self.message_user(
                request, f"Nothing to choose from: create a {label.lower()} first.", messages.WARNING
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "label": label,
            "choices": choices,
            "stations": queryset,
            "action": request.POST.get("action"),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/stations/choose_for_stations.html", context)

    @admin.action(
        description="Apply a configuration template to the selected stations…", permissions=["command"]
    )
    def bulk_apply_template(self, request, queryset):
        templates = configuration_template_list(user=request.user)

        def apply(template_id: int, stations: list[ChargingStation]) -> None:
            template = configuration_template_access(
                user=request.user, pk=template_id, capability=Capability.COMMAND
            )
            fitting = [
                s
                for s in stations
                if s.organisation_id == template.organisation_id
                and s.protocol in PROTOCOLS_OF[template.protocol]
            ]
            if len(fitting) < len(stations):
                self.message_user(
                    request,
                    f"{len(stations) - len(fitting)} station(s) left out: another organisation or OCPP version.",
                    messages.WARNING,
                )
            if fitting:
                job = command_job_create(
                    organisation=template.organisation,
                    kind=JobKind.CONFIGURATION,
                    stations=fitting,
                    calls=template_calls(protocol=template.protocol, settings=template.settings),
                    user=request.user,
                    action=template.name,
                    template=template,
                )
                self.message_user(
                    request, f"Template {template.name}: job #{job.pk} started for {job.total} station(s)."
                )

        return self._choose(
            request,
            queryset,
            title="Apply a configuration template",
            label="Configuration template",
            choices=[(t.pk, f"{t.name} ({t.get_protocol_display()}, {t.organisation})") for t in templates],
            apply=apply,
        )

    @admin.action(description="Update the firmware of the selected stations…", permissions=["command"])
    def bulk_update_firmware(self, request, queryset):
        def apply(firmware_id: int, stations: list[ChargingStation]) -> None:
            job = firmware_campaign_create(
                actor=request.user, firmware_id=firmware_id, station_identities=[s.identity for s in stations]
            )
            self.message_user(
                request, f"Firmware campaign: job #{job.pk} started for {job.total} station(s)."
            )

        return self._choose(
            request,
            queryset,
            title="Update firmware",
            label="Firmware file",
            choices=[
                (f.pk, f"{f.name} {f.version} ({f.organisation})")
                for f in firmware_file_list(user=request.user)
            ],
            apply=apply,
        )

    @admin.action(description="Soft reset the selected stations", permissions=["command"])
    def bulk_soft_reset(self, request, queryset):
        self._bulk(request, queryset, "Soft reset", _all_versions(lambda v: builders.reset(v, kind="soft")))

    @admin.action(
        description="Clear the authorisation cache of the selected stations", permissions=["command"]
    )
    def bulk_clear_cache(self, request, queryset):
        self._bulk(request, queryset, "Clear cache", _all_versions(builders.clear_cache))

    @admin.action(description="Read the configuration of the selected stations", permissions=["command"])
    def bulk_read_configuration(self, request, queryset):
        self._bulk(
            request, queryset, "Read configuration", read_configuration_calls(), JobKind.READ_CONFIGURATION
        )

    @admin.action(description="Ask the selected stations for their status", permissions=["command"])
    def bulk_trigger_status(self, request, queryset):
        self._bulk(
            request,
            queryset,
            "Trigger StatusNotification",
            _all_versions(lambda v: builders.trigger_message(v, message="StatusNotification")),
        )


@admin.register(Command)
class CommandAdmin(ReadOnlyAdminMixin, NoFullCountAdminMixin, SiteScopedAdminMixin, admin.ModelAdmin):
    list_display = [
        "created_at",
        "station",
        "action",
        "status",
        "error_code",
        "requested_by",
        "source",
        "round_trip",
    ]
    list_filter = ["status", "source", "action"]
    list_select_related = ["station", "requested_by"]
    search_fields = ["station__identity", "action", "unique_id"]
    raw_id_fields = ["station", "job"]
    date_hierarchy = "created_at"
    # The request is shown with its secrets masked (a password sent with ChangeConfiguration/SetVariables).
    exclude = ["request"]
    readonly_fields = ["request_shown"]

    @admin.display(description="Request")
    def request_shown(self, command: Command) -> str:
        return json.dumps(request_redacted(command.action, command.request))

    def scope_q(self, *, user, capability) -> Q:
        return station_scope_q(user=user, capability=capability, prefix="station__")

    @admin.display(description="Round trip")
    def round_trip(self, command: Command) -> str:
        return "" if command.round_trip_ms is None else f"{command.round_trip_ms:.0f} ms"


class ConfigurationTemplateForm(forms.ModelForm):
    class Meta:
        model = ConfigurationTemplate
        fields = ["organisation", "name", "protocol", "settings"]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("protocol") and "settings" in cleaned:
            try:
                template_calls(protocol=cleaned["protocol"], settings=cleaned["settings"])
            except DomainError as exc:
                raise forms.ValidationError({"settings": exc.message}) from None
        return cleaned


@admin.register(ConfigurationTemplate)
class ConfigurationTemplateAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    form = ConfigurationTemplateForm
    list_display = ["name", "organisation", "protocol", "created_at"]
    list_filter = ["protocol"]

    def scope_q(self, *, user, capability) -> Q:
        # Organisation-wide: site hosts have no templates.
        return Q(organisation_id__in=organisation_ids_with(user=user, capability=capability))

    def capable_somewhere(self, *, user, capability) -> bool:
        return bool(organisation_ids_with(user=user, capability=capability))


@admin.register(CommandJobTarget)
class CommandJobTargetAdmin(
    ReadOnlyAdminMixin, NoFullCountAdminMixin, SiteScopedAdminMixin, admin.ModelAdmin
):
    """Each station's outcome in a bulk job (also shown on the job's page)."""

    list_display = ["job", "station", "status", "detail", "finished_at"]
    list_filter = ["status"]
    list_select_related = ["job", "station"]
    search_fields = ["station__identity"]
    raw_id_fields = ["job", "station"]

    def scope_q(self, *, user, capability) -> Q:
        return station_scope_q(user=user, capability=capability, prefix="station__")
