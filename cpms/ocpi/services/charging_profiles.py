"""OCPI 2.2.1 charging profiles, Receiver side (OCPI 2.2.1 section 14): an eMSP (or an SCSP behind it) sets,
reads or clears the charging profile of one of its drivers' sessions, where the operator allows it
(`OcpiPartner.allow_charging_profiles`; otherwise NOT_SUPPORTED).

Like the commands module, two steps: `charging_profile_receive` answers at once with a
ChargingProfileResponse (ACCEPTED, NOT_SUPPORTED, REJECTED, TOO_OFTEN, UNKNOWN_SESSION) and stores an
`OcpiCommand` (module chargingprofiles, command SET_PROFILE / GET_PROFILE / CLEAR_PROFILE); the Celery task
(`cpms.ocpi.tasks_commands.charging_profile_execute`) sends the OCPP call and queues the
ChargingProfileResult / ActiveChargingProfileResult / ClearProfileResult to the response_url through the
outbox.

How a partner's profile meets our load management (energy/, docs/energy.md), so that the site's limits stay
safe and the balancer always wins:
- The balancer keeps one TxProfile per EVSE on the charger: id `tx_profile_id(evse)`, stack level
  TX_STACK_LEVEL (cpms.ocpp_wire.smart_charging). A partner's profile is sent as that same profile (same id,
  same stack level, naming the session's transaction): it replaces the balancer's profile on the charger
  instead of stacking above it (in OCPP the highest stack level of a purpose wins outright, so a partner
  profile at a higher level would override the site's limits, and at a lower level it would do nothing).
- On a load-managed EVSE (one with `EvseElectrical`), every period of the partner's profile is capped at the
  limit the balancer gave the EVSE (its `EvseAllocation`, or before the first allocation its fail-safe share,
  `energy.services.profiles.safe_shares`): in amps as given, in watts converted at the EVSE's node voltage and
  phases. The charger therefore never draws more than the balancer planned, and can draw less.
- When the balancer's allocation for the EVSE changes (a session starts or ends, a signal, the periodic
  rebalance), the balancer sends its own TxProfile with the same id, which replaces the partner's: the
  partner's lower limit lasts until then. The balancer does not know of partner limits (energy must not import
  the OCPI layer); keeping a partner's cap across rebalances needs a per-session cap in the balancer's input
  (EvseInput.max_a), which is the energy app's to add.
- An EVSE that is not load-managed has no site limit of ours to protect: the partner's profile is sent as it
  is.
- Clearing (DELETE) on a load-managed EVSE sends the balancer's limit again (what it last sent, else its
  allocation) rather than clearing the TxProfile, so the EVSE is never left without the balancer's limit;
  elsewhere it clears the TxProfile (ClearChargingProfile by its id).
- Reading (GET) asks the charger for its composite schedule (GetCompositeSchedule) for `duration` seconds.
A partner may set a profile on one session at most once every MIN_INTERVAL (TOO_OFTEN otherwise): chargers store profiles in flash, and the balancer rate-limits itself the same way.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from cpms.errors import DomainError
from cpms.ocpi.enums import Module
from cpms.ocpi.models import OcpiCommand, OcpiPartner, OcpiToken
from cpms.ocpi.protocol import (
    DATETIME,
    INVALID_PARAMETERS,
    OcpiError,
    format_datetime,
    parse_datetime,
    schema_validator,
)
from cpms.ocpi.services.commands import URL, command_timeout_s, partner_session
from cpms.ocpi.services.outbox import outbox_enqueue
from cpms.ocpp_wire.calls import Call, call_checked
from cpms.ocpp_wire.smart_charging import (
    TX_STACK_LEVEL,
    get_composite_schedule,
    set_charging_profile,
    tx_profile_id,
)
from energy.models import EvseAllocation, EvseElectrical
from energy.services.profiles import safe_shares
from sessions.enums import SessionStatus
from sessions.models import ChargingSession
from stations.enums import CommandSource, CommandStatus
from stations.models import Command
from stations.services.commands import command_send, station_version

logger = logging.getLogger(__name__)

SET_PROFILE = "SET_PROFILE"
GET_PROFILE = "GET_PROFILE"
CLEAR_PROFILE = "CLEAR_PROFILE"
SENDING = "SENDING"

# ChargingProfileResponseType (14.4.3) and ChargingProfileResultType (14.4.4).
ACCEPTED = "ACCEPTED"
NOT_SUPPORTED = "NOT_SUPPORTED"
REJECTED = "REJECTED"
TOO_OFTEN = "TOO_OFTEN"
UNKNOWN_SESSION = "UNKNOWN_SESSION"
UNKNOWN = "UNKNOWN"

MIN_INTERVAL = timedelta(seconds=30)
MAX_DURATION_S = 86_400
TENTH = Decimal("0.1")

CHARGING_PROFILE = {
    "type": "object",
    "required": ["charging_rate_unit", "charging_profile_period"],
    "properties": {
        "start_date_time": DATETIME,
        "duration": {"type": "integer", "minimum": 0, "maximum": 10 * MAX_DURATION_S},
        "charging_rate_unit": {"enum": ["W", "A"]},
        "min_charging_rate": {"type": "number", "minimum": 0},
        "charging_profile_period": {
            "type": "array",
            "minItems": 1,
            "maxItems": 24,
            "items": {
                "type": "object",
                "required": ["start_period", "limit"],
                "properties": {
                    "start_period": {"type": "integer", "minimum": 0},
                    "limit": {"type": "number", "minimum": 0, "maximum": 10_000_000},
                },
            },
        },
    },
}
validate_set = schema_validator(
    {
        "type": "object",
        "required": ["charging_profile", "response_url"],
        "properties": {"charging_profile": CHARGING_PROFILE, "response_url": URL},
    }
)
validate_url = schema_validator(URL)


@dataclass(frozen=True, slots=True)
class ProfileAnswer:
    result: str
    message: str = ""

    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"result": self.result, "timeout": command_timeout_s()}
        if self.message:
            data["message"] = [{"language": "en", "text": self.message[:512]}]
        return data


# --- the request ------------------------------------------------------------------------------------------


def charging_profile_receive(
    *,
    partner: OcpiPartner,
    from_party: tuple[str, str],
    method: str,
    session_id: str,
    body: Any = None,
    response_url: str | None = None,
    duration: str | None = None,
) -> ProfileAnswer:
    """PUT (SetChargingProfile `body`), GET (`duration`, `response_url`) or DELETE (`response_url`) on the
    partner's session `session_id`. Raises OcpiError 2001 for malformed input."""
    if method == "PUT":
        validate_set(body)
        command, request = SET_PROFILE, {"session_id": session_id, **body}
    else:
        validate_url(response_url)
        request = {"session_id": session_id, "response_url": response_url}
        command = CLEAR_PROFILE
        if method == "GET":
            command = GET_PROFILE
            if duration is None or not duration.isdigit() or not 0 < int(duration) <= MAX_DURATION_S:
                raise OcpiError(f"duration: seconds, 1 to {MAX_DURATION_S}.", status_code=INVALID_PARAMETERS)
            request["duration"] = int(duration)
    if not partner.allow_charging_profiles:
        return ProfileAnswer(NOT_SUPPORTED, "Charging profiles are not enabled for this connection.")
    session = partner_session(partner, from_party, session_id)
    if session is None:
        return ProfileAnswer(UNKNOWN_SESSION, f"Unknown Session {session_id!r}.")
    if session.status != SessionStatus.ACTIVE or session.evse_id is None:
        return ProfileAnswer(REJECTED, "The Session is not charging.")
    if not session.station.is_connected:
        return ProfileAnswer(REJECTED, "The Charge Point is offline.")
    with transaction.atomic():
        OcpiPartner.objects.select_for_update().filter(pk=partner.pk).first()
        mine = OcpiCommand.objects.filter(
            partner=partner, module=Module.CHARGING_PROFILES, request__session_id=session_id
        )
        if mine.filter(command=command, request=request).exists():
            return ProfileAnswer(ACCEPTED)  # the same request again: answered, not sent twice
        if (
            command == SET_PROFILE
            and mine.filter(command=SET_PROFILE, created_at__gt=timezone.now() - MIN_INTERVAL).exists()
        ):
            return ProfileAnswer(TOO_OFTEN, f"One profile per Session every {MIN_INTERVAL.seconds} s.")
        ocpi_command = OcpiCommand.objects.create(
            partner=partner,
            module=Module.CHARGING_PROFILES,
            command=command,
            request=request,
            response_url=request["response_url"],
        )
        transaction.on_commit(lambda: _queue(ocpi_command.pk))
    return ProfileAnswer(ACCEPTED)


def _queue(ocpi_command_id: int) -> None:
    from cpms.ocpi.tasks_commands import charging_profile_execute  # the task module imports this one

    try:
        charging_profile_execute.delay(ocpi_command_id)
    except Exception:  # a broker that is down: the sweep queues it again (commands.commands_due)
        logger.warning("OCPI charging profile %s: could not queue it; the sweep will", ocpi_command_id)


# --- the execution ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Result:
    body: dict[str, Any]
    ocpp_command: Command | None = None


def charging_profile_execute(*, ocpi_command_id: int) -> str | None:
    """Sends the stored request to the charger and queues its result; None when it was taken already. Like
    `command_execute`, a request whose worker died mid-way is not sent again; past its announced timeout the
    partner is told UNKNOWN."""
    if OcpiCommand.objects.filter(pk=ocpi_command_id, result="").update(result=SENDING) != 1:
        lost_before = timezone.now() - timedelta(seconds=command_timeout_s())
        lost = OcpiCommand.objects.filter(pk=ocpi_command_id, result=SENDING, created_at__lt=lost_before)
        if lost.update(result=UNKNOWN) != 1:
            return None
        ocpi_command = OcpiCommand.objects.select_related("partner").get(pk=ocpi_command_id)
        _result_queue(ocpi_command, _Result({"result": UNKNOWN}))
        return UNKNOWN
    ocpi_command = OcpiCommand.objects.select_related("partner").get(pk=ocpi_command_id)
    if ocpi_command.created_at < timezone.now() - timedelta(seconds=command_timeout_s()):
        # Not sent within the timeout the partner was given: it has given up on it, so it is not applied.
        _result_queue(ocpi_command, _Result({"result": REJECTED}))
        return REJECTED
    session = ChargingSession.objects.select_related("station", "evse").get(
        pk=int(ocpi_command.request["session_id"])
    )
    try:
        if session.status != SessionStatus.ACTIVE or session.evse is None:
            result = _Result({"result": REJECTED})
        else:
            result = RUNNERS[ocpi_command.command](session, ocpi_command.request)
    except DomainError as exc:
        logger.info("OCPI charging profile %s refused: %s", ocpi_command_id, exc)
        result = _Result({"result": REJECTED})
    except Exception:
        logger.exception("OCPI charging profile %s failed", ocpi_command_id)
        result = _Result({"result": REJECTED})
    _result_queue(ocpi_command, result)
    return str(result.body["result"])


def _result_queue(ocpi_command: OcpiCommand, result: _Result) -> None:
    """Records the result and queues its POST to the response_url (through a hub: routed to the party whose
    driver's session it is)."""
    token = OcpiToken.objects.filter(id_token__sessions__pk=int(ocpi_command.request["session_id"])).first()
    with transaction.atomic():
        OcpiCommand.objects.filter(pk=ocpi_command.pk).update(
            result=result.body["result"], result_at=timezone.now(), ocpp_command=result.ocpp_command
        )
        outbox_enqueue(
            partner=ocpi_command.partner,
            module=Module.CHARGING_PROFILES,
            object_key=f"chargingprofile:{ocpi_command.pk}",
            method="POST",
            body=result.body,
            url=ocpi_command.response_url,
            to_party=(token.country_code, token.party_id) if token is not None else None,
        )


def _send(session: ChargingSession, call: Call) -> Command:
    return command_send(station=session.station, call=call, requested_by=None, source=CommandSource.SYSTEM)


def _answered(command: Command) -> str:
    """ACCEPTED when the charger accepted, UNKNOWN when it did not answer or could not be reached, else
    REJECTED (ChargingProfileResultType)."""
    if command.status == CommandStatus.ANSWERED:
        return ACCEPTED if (command.response or {}).get("status") == "Accepted" else REJECTED
    return UNKNOWN if command.status == CommandStatus.TIMED_OUT else REJECTED


def _amps(value: Decimal) -> Decimal:
    return value.quantize(TENTH, rounding=ROUND_FLOOR)


def _balancer_cap_a(session: ChargingSession) -> Decimal | None:
    """The limit per phase the balancer allows the session's EVSE now, or None for an EVSE it does not
    manage."""
    assert session.evse is not None
    electrical = EvseElectrical.objects.select_related("node").filter(evse=session.evse).first()
    if electrical is None:
        return None
    allocation = EvseAllocation.objects.filter(evse=session.evse).first()
    if allocation is not None:
        return Decimal(0) if allocation.paused else allocation.limit_a
    site_id = session.station.site_id
    share = safe_shares(site_id=site_id).get(session.evse.pk) if site_id is not None else None
    return share if share is not None else Decimal(0)


def _capped_periods(session: ChargingSession, profile: dict[str, Any]) -> list[dict[str, Any]]:
    unit = profile["charging_rate_unit"]
    cap = _balancer_cap_a(session)
    if cap is not None and unit == "W":
        electrical = EvseElectrical.objects.select_related("node").get(evse=session.evse)
        allocation = EvseAllocation.objects.filter(evse=session.evse).first()
        phases = len(allocation.phases_used) if allocation is not None and allocation.phases_used else 0
        cap = cap * electrical.node.voltage_v * (phases or len(electrical.phase_rotation))
    periods = []
    for period in sorted(profile["charging_profile_period"], key=lambda p: p["start_period"]):
        limit = Decimal(str(period["limit"]))
        if cap is not None:
            limit = min(limit, cap)
        periods.append({"startPeriod": period["start_period"], "limit": float(_amps(limit))})
    return periods


def _set_call(session: ChargingSession, profile: dict[str, Any]) -> Call:
    """The partner's ChargingProfile as the TxProfile of the session's EVSE, in the station's version."""
    assert session.evse is not None
    version = station_version(session.station)
    evse_number = session.evse.evse_id
    profile_id = tx_profile_id(evse_number)
    schedule: dict[str, Any] = {
        "chargingRateUnit": profile["charging_rate_unit"],
        "chargingSchedulePeriod": _capped_periods(session, profile),
    }
    if "duration" in profile:
        schedule["duration"] = profile["duration"]
    if "min_charging_rate" in profile:
        schedule["minChargingRate"] = float(Decimal(str(profile["min_charging_rate"])).quantize(TENTH))
    kind = "Relative"
    if "start_date_time" in profile:
        kind = "Absolute"
        start = parse_datetime(profile["start_date_time"], field="start_date_time")
        schedule["startSchedule"] = format_datetime(start)
    ocpp_profile: dict[str, Any] = {
        "stackLevel": TX_STACK_LEVEL,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": kind,
    }
    if version == "1.6":
        ocpp_profile.update(
            chargingProfileId=profile_id, transactionId=int(session.transaction_id), chargingSchedule=schedule
        )
        payload: dict[str, Any] = {"connectorId": evse_number, "csChargingProfiles": ocpp_profile}
    else:
        ocpp_profile.update(
            id=profile_id,
            transactionId=session.transaction_id,
            chargingSchedule=[{"id": profile_id, **schedule}],
        )
        payload = {"evseId": evse_number, "chargingProfile": ocpp_profile}
    return call_checked(version, Call("SetChargingProfile", payload))


def _run_set(session: ChargingSession, request: dict[str, Any]) -> _Result:
    command = _send(session, _set_call(session, request["charging_profile"]))
    return _Result({"result": _answered(command)}, command)


def _run_clear(session: ChargingSession, request: dict[str, Any]) -> _Result:
    assert session.evse is not None
    version = station_version(session.station)
    evse_number = session.evse.evse_id
    cap = _balancer_cap_a(session)
    if cap is not None:
        # Load-managed: back to the balancer's limit, never to no TxProfile at all.
        allocation = EvseAllocation.objects.filter(evse=session.evse).first()
        if allocation is not None and allocation.sent_limit_a is not None:
            cap = min(cap, allocation.sent_limit_a)
        call = set_charging_profile(
            version,
            evse_number=evse_number,
            limit_a=_amps(cap),
            purpose="TxProfile",
            transaction_id=session.transaction_id,
        )
    else:
        key = "id" if version == "1.6" else "chargingProfileId"
        call = call_checked(version, Call("ClearChargingProfile", {key: tx_profile_id(evse_number)}))
    command = _send(session, call)
    return _Result({"result": _answered(command)}, command)


def _run_get(session: ChargingSession, request: dict[str, Any]) -> _Result:
    assert session.evse is not None
    version = station_version(session.station)
    call = get_composite_schedule(version, evse_number=session.evse.evse_id, duration_s=request["duration"])
    command = _send(session, call)
    result = _answered(command)
    body: dict[str, Any] = {"result": result}
    if result == ACCEPTED:
        profile = _active_profile(command.response or {}, version)
        if profile is not None:
            body["profile"] = profile
    return _Result(body, command)


def _active_profile(response: dict[str, Any], version: str) -> dict[str, Any] | None:
    """An OCPI ActiveChargingProfile from a GetCompositeSchedule answer (1.6 chargingSchedule with
    scheduleStart; 2.0.1 schedule)."""
    if version == "1.6":
        schedule, start = response.get("chargingSchedule"), response.get("scheduleStart")
    else:
        schedule = response.get("schedule")
        start = (schedule or {}).get("scheduleStart")
    if not isinstance(schedule, dict):
        return None
    profile: dict[str, Any] = {
        "charging_rate_unit": schedule.get("chargingRateUnit", "A"),
        "charging_profile_period": [
            {"start_period": period["startPeriod"], "limit": period["limit"]}
            for period in schedule.get("chargingSchedulePeriod", [])
        ],
    }
    if "duration" in schedule:
        profile["duration"] = schedule["duration"]
    if "minChargingRate" in schedule:
        profile["min_charging_rate"] = schedule["minChargingRate"]
    return {"start_date_time": start or format_datetime(timezone.now()), "charging_profile": profile}


RUNNERS = {SET_PROFILE: _run_set, GET_PROFILE: _run_get, CLEAR_PROFILE: _run_clear}
