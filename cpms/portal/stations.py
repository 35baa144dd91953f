"""Operator and site-host pages about stations: the network overview (live), the station list and the
station page with its EVSEs, current sessions, command buttons, message log, command history and
configuration.

The portal is an interface layer, like the REST API and `cpms/ocpp`: its views read the selectors of every
app (a station page shows its sessions) and build OCPP calls with `cpms.ocpp_wire.operations`. Access is decided by
the selectors (`station_access` with the capability the action needs), never here.
"""

from django import forms
from django.contrib import messages
from django.http import HttpRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.enums import Capability
from cpms.errors import DomainError
from cpms.ocpp_wire import operations as builders
from cpms.ocpp_wire.calls import Call
from cpms.ocpp_wire.operations import AVAILABILITY_STATUSES, CENTRAL_TOKEN, RESET_TYPES
from cpms.portal.base import PortalRequest, page_of, portal_view
from sessions.enums import SessionStatus
from sessions.selectors import session_list, session_transaction_id
from stations.enums import CommandSource, CommandStatus
from stations.models import ChargingStation, Command
from stations.scope import user_can
from stations.selectors import (
    command_list,
    device_variable_list,
    network_overview,
    ocpp_message_list,
    site_access,
    site_list,
    station_access,
    station_list,
)
from stations.services.commands import command_send, station_version, target_resolve

# Portal commands wait at most this long for the charger's answer before the page returns (the command goes on
# and its outcome shows in the command history).
PORTAL_COMMAND_TIMEOUT_S = 20.0


@portal_view
def overview(request: PortalRequest):
    """Stations by site with their live status; the page subscribes to the live-status websocket."""
    return render(request, "stations/overview.html", {"overview": network_overview(user=request.user)})


@portal_view
def site_detail(request: PortalRequest, pk: int):
    """One site: its facts and its stations with their live status."""
    site = site_access(user=request.user, pk=pk)
    stations = station_list(user=request.user, filters={"site": site.pk}).order_by("identity")
    return render(request, "stations/site_detail.html", {"site": site, "stations": stations})


@portal_view
def station_list_page(request: PortalRequest):
    filters = {key: value for key, value in request.GET.items() if key in {"site", "connected"} and value}
    stations = station_list(user=request.user, filters=filters).order_by("identity")
    query = request.GET.get("q", "").strip()
    if query:
        stations = stations.filter(identity__icontains=query)
    return render(
        request,
        "stations/station_list.html",
        {
            "page": page_of(request, stations),
            "sites": site_list(user=request.user).order_by("name"),
            "filters": {**filters, "q": query},
        },
    )


def _can_command(user, station: ChargingStation) -> bool:
    return user_can(
        user=user,
        capability=Capability.COMMAND,
        organisation_id=station.organisation_id,
        site_id=station.site_id,
    )


@portal_view
def station_detail(request: PortalRequest, identity: str):
    station = station_access(user=request.user, identity=identity)
    active = {
        session.evse_id: session
        for session in session_list(user=request.user).filter(station=station, status=SessionStatus.ACTIVE)
    }
    evses = [(evse, active.get(evse.pk)) for evse in station.evses.all()]
    return render(
        request,
        "stations/station_detail.html",
        {
            "station": station,
            "evses": evses,
            "can_command": _can_command(request.user, station),
            "commands": command_list(user=request.user, station=station).order_by("-created_at", "-id")[:10],
            "log": ocpp_message_list(station=station)[:20],
            "variables": device_variable_list(station=station)[:30],
            "time_zone": _zone(station),
            "reset_types": RESET_TYPES,
            "availability_statuses": AVAILABILITY_STATUSES,
        },
    )


@portal_view
def station_commands_page(request: PortalRequest, identity: str):
    station = station_access(user=request.user, identity=identity)
    commands = command_list(user=request.user, station=station).order_by("-created_at", "-id")
    return render(
        request,
        "stations/station_commands.html",
        {"station": station, "page": page_of(request, commands), "time_zone": _zone(station)},
    )


@portal_view
def station_messages_page(request: PortalRequest, identity: str):
    station = station_access(user=request.user, identity=identity)
    return render(
        request,
        "stations/station_messages.html",
        {
            "station": station,
            "page": page_of(request, ocpp_message_list(station=station), per_page=50),
            "time_zone": _zone(station),
        },
    )


@portal_view
def station_configuration_page(request: PortalRequest, identity: str):
    station = station_access(user=request.user, identity=identity)
    return render(
        request,
        "stations/station_configuration.html",
        {
            "station": station,
            "page": page_of(request, device_variable_list(station=station), per_page=100),
            "time_zone": _zone(station),
            "can_command": _can_command(request.user, station),
        },
    )


def _zone(station: ChargingStation) -> str:
    return station.site.time_zone if station.site else "UTC"


# --- commands ----------------------------------------------------------------------------------------


class _TargetForm(forms.Form):
    evse_id = forms.IntegerField(min_value=1, required=False)
    connector_id = forms.IntegerField(min_value=1, required=False)


class _StartForm(_TargetForm):
    id_token = forms.CharField(max_length=255)


class _StopForm(forms.Form):
    session_id = forms.IntegerField(min_value=1)


class _ResetForm(forms.Form):
    kind = forms.ChoiceField(choices=[(kind, kind) for kind in RESET_TYPES])


class _AvailabilityForm(_TargetForm):
    status = forms.ChoiceField(choices=[(status, status) for status in AVAILABILITY_STATUSES])


def _target(station: ChargingStation, data: dict) -> builders.Target:
    return target_resolve(station=station, evse_id=data.get("evse_id"), connector_id=data.get("connector_id"))


def _build_start(request, station, version, data) -> Call:
    return builders.remote_start(
        version, id_token=data["id_token"], id_token_type=CENTRAL_TOKEN, target=_target(station, data)
    )


def _build_stop(request, station, version, data) -> Call:
    transaction_id = session_transaction_id(user=request.user, station=station, session_id=data["session_id"])
    return builders.remote_stop(version, transaction_id=transaction_id)


def _build_reset(request, station, version, data) -> Call:
    return builders.reset(version, kind=data["kind"])


def _build_unlock(request, station, version, data) -> Call:
    return builders.unlock(version, target=_target(station, data))


def _build_availability(request, station, version, data) -> Call:
    return builders.change_availability(
        version, operative=data["status"] == "operative", target=_target(station, data)
    )


def _build_refresh(request, station, version, data) -> Call:
    return builders.trigger_message(version, message="StatusNotification")


def _build_read_configuration(request, station, version, data) -> Call:
    return builders.get_configuration(version)


# operation in the URL -> (form, builder, what the button says)
OPERATIONS = {
    "start": (_StartForm, _build_start, "Start charging"),
    "stop": (_StopForm, _build_stop, "Stop charging"),
    "reset": (_ResetForm, _build_reset, "Reset"),
    "unlock": (_TargetForm, _build_unlock, "Unlock connector"),
    "availability": (_AvailabilityForm, _build_availability, "Change availability"),
    "refresh": (forms.Form, _build_refresh, "Refresh status"),
    "read-configuration": (forms.Form, _build_read_configuration, "Read configuration"),
}


def _outcome_message(request: HttpRequest, label: str, command: Command) -> None:
    answer = command.response if isinstance(command.response, dict) else {}
    if command.status == CommandStatus.ANSWERED:
        status = answer.get("status", "answered")
        level = messages.SUCCESS if status in {"Accepted", "Unlocked", "answered"} else messages.WARNING
        messages.add_message(request, level, f"{label}: the charger answered {status}.")
    elif command.status == CommandStatus.PENDING:
        messages.info(request, f"{label}: sent; the answer has not arrived yet (see the command history).")
    else:
        detail = command.error_description or command.error_code or command.get_status_display()
        messages.error(request, f"{label}: {detail}.")


@require_POST
@portal_view
def station_command(request: PortalRequest, identity: str, operation: str):
    """POST a command button: check COMMAND on the station, validate the form, build the call for the station's
    OCPP version, send it and wait for the answer (at most PORTAL_COMMAND_TIMEOUT_S), then back to the station
    page with the outcome as a message."""
    station = station_access(
        user=request.user, identity=identity, capability=Capability.COMMAND, with_points=False
    )
    if operation not in OPERATIONS:
        messages.error(request, f"Unknown command {operation!r}.")
        return redirect("portal:station-detail", identity=station.identity)
    form_class, build, label = OPERATIONS[operation]
    form = form_class(request.POST)
    if not form.is_valid():
        problems = "; ".join(
            f"{field}: {' '.join(str(error) for error in errors)}" for field, errors in form.errors.items()
        )
        messages.error(request, f"{label}: {problems}")
        return redirect("portal:station-detail", identity=station.identity)
    try:
        call = build(request, station, station_version(station), form.cleaned_data)
        command = command_send(
            station=station,
            call=call,
            requested_by=request.user,
            source=CommandSource.PORTAL,
            timeout_s=PORTAL_COMMAND_TIMEOUT_S,
        )
    except DomainError as exc:
        messages.error(request, f"{label}: {exc.message}")
    else:
        _outcome_message(request, label, command)
    return redirect("portal:station-detail", identity=station.identity)
