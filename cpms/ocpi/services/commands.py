"""OCPI 2.2.1 commands, Receiver side (OCPI 2.2.1 section 13): START_SESSION, STOP_SESSION, RESERVE_NOW,
CANCEL_RESERVATION and UNLOCK_CONNECTOR become our OCPP commands.

Two steps, as the module prescribes (13.1 "Flow"):
1. `command_receive` (the request): the body is schema-checked (2001 on failure); what can be checked
   without the charger is checked against what this partner may reach (the Location published to it, the
   EVSE of that Location, the station connected, its own session, its own reservation) and answered at once
   with a CommandResponse (ACCEPTED, REJECTED, UNKNOWN_SESSION; a Location or EVSE it cannot see is 2003).
   An accepted command is stored (`OcpiCommand`) and its execution queued after commit. The same command
   repeated (same body, same response_url) is answered again without being stored or sent twice.
2. `command_execute` (the Celery task `cpms.ocpi.tasks_commands.command_execute`): sends the OCPP call
   through `command_send` (1.6 or 2.0.1, built by cpms.ocpp_wire), waits for the charger, and queues the
   CommandResult to the command's response_url through the outbox (which retries it until delivered).

START_SESSION and RESERVE_NOW carry a Token: it is stored as the partner's `OcpiToken` + `IdToken` by the
tokens module (`token_put`: value = uid, group = the partner's token group), so that the charger's
Authorize and the session's start find it. START_SESSION records an `OcpiAuthorization(auth_method=COMMAND)`
with the command's authorization_reference, which the session that opens with that token at that Location
takes (OCPI_CORE contract); a start the charger refused gives its authorisation up, so no later session
takes a reference the eMSP never saw succeed. RESERVE_NOW goes through the sessions reservation service
(`reservation_create`), so the reservation is ours like any other: the OCPP reservationId is our
Reservation's primary key, never the eMSP's reservation_id (13.4.5: an eMSP must not reach another eMSP's
reservation), and the eMSP's id is matched through the OcpiCommand that made it.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cpms.errors import DomainError
from cpms.ocpi import ids
from cpms.ocpi.enums import Module
from cpms.ocpi.models import OcpiAuthorization, OcpiCommand, OcpiPartner, OcpiToken
from cpms.ocpi.protocol import (
    DATETIME,
    INVALID_PARAMETERS,
    SUCCESS,
    UNKNOWN_LOCATION,
    OcpiError,
    parse_datetime,
    schema_validator,
    string,
)
from cpms.ocpi.services import tokens
from cpms.ocpi.services.outbox import outbox_enqueue
from cpms.ocpp_wire import operations
from cpms.ocpp_wire.operations import Target
from sessions.enums import ReservationStatus, SessionStatus
from sessions.models import ChargingSession, Reservation
from sessions.services.reservations import reservation_cancel, reservation_create
from stations.enums import CommandSource, CommandStatus
from stations.models import ChargingStation, Command, Connector, Evse, Site
from stations.services.commands import NOT_CONNECTED, NOT_DELIVERED, command_send, station_version

logger = logging.getLogger(__name__)

START_SESSION = "START_SESSION"
STOP_SESSION = "STOP_SESSION"
RESERVE_NOW = "RESERVE_NOW"
CANCEL_RESERVATION = "CANCEL_RESERVATION"
UNLOCK_CONNECTOR = "UNLOCK_CONNECTOR"
COMMANDS = (START_SESSION, STOP_SESSION, RESERVE_NOW, CANCEL_RESERVATION, UNLOCK_CONNECTOR)

# CommandResponseType (13.4.1) and CommandResultType (13.4.2).
ACCEPTED = "ACCEPTED"
NOT_SUPPORTED = "NOT_SUPPORTED"
REJECTED = "REJECTED"
UNKNOWN_SESSION = "UNKNOWN_SESSION"
CANCELED_RESERVATION = "CANCELED_RESERVATION"
EVSE_OCCUPIED = "EVSE_OCCUPIED"
EVSE_INOPERATIVE = "EVSE_INOPERATIVE"
FAILED = "FAILED"
TIMEOUT = "TIMEOUT"
UNKNOWN_RESERVATION = "UNKNOWN_RESERVATION"
# OcpiCommand.result while its execution runs: a task delivered twice finds it taken.
SENDING = "SENDING"

AUTH_COMMAND = "COMMAND"
# A CALLERROR code meaning the charger does not do the action at all.
UNSUPPORTED_ERRORS = frozenset({"NotImplemented", "NotSupported"})

# --- schemas (OCPI 2.2.1 13.3 and 12.3.2 Token) ---------------------------------------------------------
URL = {"type": "string", "maxLength": 255, "pattern": r"^https?://"}
CISTRING_36 = string(36, minLength=1)
# The Token object as the tokens module checks it (optional fields may be null).
TOKEN = tokens.TOKEN_SCHEMA


def _object(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


SCHEMAS = {
    START_SESSION: _object(
        ["response_url", "token", "location_id"],
        {
            "response_url": URL,
            "token": TOKEN,
            "location_id": CISTRING_36,
            "evse_uid": CISTRING_36,
            "connector_id": CISTRING_36,
            "authorization_reference": string(36),
        },
    ),
    STOP_SESSION: _object(["response_url", "session_id"], {"response_url": URL, "session_id": CISTRING_36}),
    RESERVE_NOW: _object(
        ["response_url", "token", "expiry_date", "reservation_id", "location_id"],
        {
            "response_url": URL,
            "token": TOKEN,
            "expiry_date": DATETIME,
            "reservation_id": CISTRING_36,
            "location_id": CISTRING_36,
            "evse_uid": CISTRING_36,
            "authorization_reference": string(36),
        },
    ),
    CANCEL_RESERVATION: _object(
        ["response_url", "reservation_id"], {"response_url": URL, "reservation_id": CISTRING_36}
    ),
    UNLOCK_CONNECTOR: _object(
        ["response_url", "location_id", "evse_uid", "connector_id"],
        {
            "response_url": URL,
            "location_id": CISTRING_36,
            "evse_uid": CISTRING_36,
            "connector_id": CISTRING_36,
        },
    ),
}
VALIDATORS = {command: schema_validator(schema) for command, schema in SCHEMAS.items()}


def command_timeout_s() -> int:
    """The CommandResponse timeout (13.3.2): how long the eMSP should wait for the result: the charger's
    delivery and answer time, and a margin for the task queue and the outbox."""
    return int(settings.OCPP_COMMAND_DELIVERY_S + settings.OCPP_CALL_TIMEOUT_S) + 30


def display_text(message: str) -> list[dict[str, str]]:
    return [{"language": "en", "text": message[:512]}] if message else []


@dataclass(frozen=True, slots=True)
class CommandAnswer:
    """The immediate answer: a CommandResponse, in an envelope with `status_code` (2003 for a Location or
    EVSE the partner cannot see) and `http_status`."""

    result: str
    message: str = ""
    status_code: int = SUCCESS
    http_status: int = 200

    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"result": self.result, "timeout": command_timeout_s()}
        if self.message:
            data["message"] = display_text(self.message)
        return data


def _refused(result: str, message: str) -> CommandAnswer:
    return CommandAnswer(result=result, message=message)


def _unknown_location(message: str) -> CommandAnswer:
    return CommandAnswer(REJECTED, message, status_code=UNKNOWN_LOCATION, http_status=404)


class _Refusal(Exception):
    def __init__(self, answer: CommandAnswer) -> None:
        super().__init__(answer.message)
        self.answer = answer


@dataclass(frozen=True, slots=True)
class _Place:
    site: Site
    station: ChargingStation
    evse: Evse | None
    connector: Connector | None


# --- the request ------------------------------------------------------------------------------------------


def command_receive(
    *, partner: OcpiPartner, from_party: tuple[str, str], command: str, body: Any
) -> CommandAnswer:
    """Checks and accepts (or refuses) one command of `partner`, sent for `from_party` (itself, or through
    a hub the party behind it). Raises OcpiError for an unknown command (404) or a malformed body (2001)."""
    if command not in COMMANDS:
        raise OcpiError(f"Unknown command {command!r}.", status_code=INVALID_PARAMETERS, http_status=404)
    VALIDATORS[command](body)
    try:
        return CHECKS[command](partner, from_party, command, body)
    except _Refusal as refusal:
        return refusal.answer


def _place(
    partner: OcpiPartner,
    location_id: str,
    evse_uid: str | None,
    connector_id: str | None = None,
    *,
    station_needed: bool = True,
) -> _Place:
    """The Location, EVSE and connector the partner named, all of them published to it; when no EVSE is
    named, the Location's one station (a Location of several stations needs an EVSE to pick one)."""
    site = ids.site_for_location_id(partner, location_id)
    if site is None:
        raise _Refusal(_unknown_location(f"Unknown Location {location_id!r}."))
    evse = connector = None
    if evse_uid is not None:
        evse = ids.evse_for_uid(site, evse_uid)
        if evse is None:
            raise _Refusal(_unknown_location(f"Unknown EVSE {evse_uid!r} at Location {location_id!r}."))
        station = evse.station
    else:
        stations = list(ChargingStation.objects.filter(site=site).order_by("pk")[:2])
        if len(stations) != 1:
            raise _Refusal(_refused(REJECTED, "Name the EVSE (evse_uid): this Location has several."))
        station = stations[0]
    if connector_id is not None:
        if evse is None:
            raise OcpiError("connector_id needs evse_uid.", status_code=INVALID_PARAMETERS)
        connector = (
            Connector.objects.filter(evse=evse, connector_id=int(connector_id)).first()
            if connector_id.isdigit()
            else None
        )
        if connector is None:
            raise _Refusal(_unknown_location(f"Unknown connector {connector_id!r} of EVSE {evse_uid!r}."))
    if station_needed and not station.is_connected:
        raise _Refusal(_refused(REJECTED, "The Charge Point is offline."))
    return _Place(site=site, station=station, evse=evse, connector=connector)


def _own_token_party(from_party: tuple[str, str], token: dict[str, Any]) -> None:
    """13.3.5: an eMSP uses only its own Tokens in commands."""
    if from_party[0] and (token["country_code"].upper(), token["party_id"].upper()) != from_party:
        raise _Refusal(_refused(REJECTED, "The Token belongs to another party than the sender."))


def _accept(
    partner: OcpiPartner,
    from_party: tuple[str, str],
    command: str,
    body: dict[str, Any],
    before_send: Any = None,
) -> CommandAnswer:
    """Stores the command and queues its execution after commit, unless the same command (same body, hence
    the same response_url) was stored already: then it is answered again, not sent again."""
    with transaction.atomic():
        # One partner's commands are taken one at a time, so a repeat sent concurrently finds the first.
        OcpiPartner.objects.select_for_update().filter(pk=partner.pk).first()
        existing = OcpiCommand.objects.filter(
            partner=partner,
            module=Module.COMMANDS,
            command=command,
            response_url=body["response_url"],
            request=body,
        ).first()
        if existing is not None:
            return CommandAnswer(ACCEPTED)
        if before_send is not None:
            before_send()
        ocpi_command = OcpiCommand.objects.create(
            partner=partner,
            module=Module.COMMANDS,
            command=command,
            request=body,
            response_url=body["response_url"],
            from_country_code=from_party[0],
            from_party_id=from_party[1],
        )
        transaction.on_commit(lambda: _queue(ocpi_command.pk))
    return CommandAnswer(ACCEPTED)


def _queue(ocpi_command_id: int) -> None:
    from cpms.ocpi.tasks_commands import command_execute  # the task module imports this one

    try:
        command_execute.delay(ocpi_command_id)
    except Exception:  # a broker that is down: the sweep (commands_due) queues it again
        logger.warning("OCPI command %s: could not queue its execution; the sweep will", ocpi_command_id)


def commands_due(*, module: str = Module.COMMANDS, older_than_s: float = 10.0) -> list[int]:
    """Stored commands nobody took (their task was lost with a broker that was down): the sweep queues them
    again; one past its announced timeout is then answered without being sent (`command_execute`)."""
    return list(
        OcpiCommand.objects.filter(
            module=module, result="", created_at__lt=timezone.now() - timedelta(seconds=older_than_s)
        )
        .order_by("pk")
        .values_list("pk", flat=True)[:500]
    )


def _check_start(
    partner: OcpiPartner, from_party: tuple[str, str], command: str, body: dict[str, Any]
) -> CommandAnswer:
    _own_token_party(from_party, body["token"])
    _place(partner, body["location_id"], body.get("evse_uid"), body.get("connector_id"))
    return _accept(
        partner,
        from_party,
        command,
        body,
        before_send=lambda: token_mirror(partner=partner, from_party=from_party, data=body["token"]),
    )


def _check_stop(
    partner: OcpiPartner, from_party: tuple[str, str], command: str, body: dict[str, Any]
) -> CommandAnswer:
    session = partner_session(partner, from_party, body["session_id"])
    if session is None:
        return _refused(UNKNOWN_SESSION, f"Unknown Session {body['session_id']!r}.")
    if session.status != SessionStatus.ACTIVE:
        return _refused(REJECTED, "The Session has ended already.")
    if not session.station.is_connected:
        return _refused(REJECTED, "The Charge Point is offline.")
    return _accept(partner, from_party, command, body)


def partner_session(
    partner: OcpiPartner, from_party: tuple[str, str], session_id: str
) -> ChargingSession | None:
    """A session of one of this partner's tokens (of the party it speaks for), or None: another partner's
    session is as unknown as one that does not exist."""
    if not session_id.isdigit():
        return None
    session = (
        ChargingSession.objects.select_related("station", "id_token__ocpi")
        .filter(pk=int(session_id), id_token__ocpi__partner=partner)
        .first()
    )
    if session is None or session.id_token is None:
        return None
    token = session.id_token.ocpi
    if from_party[0] and (token.country_code, token.party_id) != from_party:
        return None
    return session


def _check_reserve(
    partner: OcpiPartner, from_party: tuple[str, str], command: str, body: dict[str, Any]
) -> CommandAnswer:
    _own_token_party(from_party, body["token"])
    _place(partner, body["location_id"], body.get("evse_uid"))
    expiry = parse_datetime(body["expiry_date"], field="expiry_date")
    if expiry <= timezone.now():
        return _refused(REJECTED, "expiry_date is in the past.")
    return _accept(
        partner,
        from_party,
        command,
        body,
        before_send=lambda: token_mirror(partner=partner, from_party=from_party, data=body["token"]),
    )


def _check_cancel(
    partner: OcpiPartner, from_party: tuple[str, str], command: str, body: dict[str, Any]
) -> CommandAnswer:
    reservation = partner_reservation(partner=partner, reservation_id=body["reservation_id"])
    if reservation is None or reservation.status not in (
        ReservationStatus.REQUESTED,
        ReservationStatus.ACCEPTED,
    ):
        return _refused(REJECTED, f"Unknown reservation {body['reservation_id']!r}.")
    if not reservation.station.is_connected:
        return _refused(REJECTED, "The Charge Point is offline.")
    return _accept(partner, from_party, command, body)


def _check_unlock(
    partner: OcpiPartner, from_party: tuple[str, str], command: str, body: dict[str, Any]
) -> CommandAnswer:
    _place(partner, body["location_id"], body["evse_uid"], body["connector_id"])
    return _accept(partner, from_party, command, body)


CHECKS = {
    START_SESSION: _check_start,
    STOP_SESSION: _check_stop,
    RESERVE_NOW: _check_reserve,
    CANCEL_RESERVATION: _check_cancel,
    UNLOCK_CONNECTOR: _check_unlock,
}


# --- tokens and reservations of a partner -----------------------------------------------------------------


def token_mirror(*, partner: OcpiPartner, from_party: tuple[str, str], data: dict[str, Any]) -> OcpiToken:
    """The partner's OcpiToken (and IdToken mirror) for the Token a command carries, stored by the tokens
    module's own rules (cpms/ocpi/services/tokens.py: value = uid, the partner's group, a newer Token
    updating an older one) as if the partner had pushed it: a command's Token was authorised by the eMSP
    (13.3.5), so it is answered from what we hold rather than asked for again in real time. A Token the
    tokens module refuses (its uid taken by another token here, another party's) is REJECTED."""
    try:
        return tokens.token_put(
            partner=partner,
            from_party=from_party,
            country_code=data["country_code"],
            party_id=data["party_id"],
            uid=data["uid"],
            token_type=data["type"],
            body=data,
        )
    except OcpiError as exc:
        raise _Refusal(_refused(REJECTED, exc.message)) from exc


def _command_token(partner: OcpiPartner, data: dict[str, Any]) -> OcpiToken:
    return OcpiToken.objects.select_related("id_token").get(
        partner=partner,
        country_code=data["country_code"].upper(),
        party_id=data["party_id"].upper(),
        uid=data["uid"],
        type=data["type"],
    )


def _reservation_pk(ocpp_command: Command | None) -> int | None:
    """Our reservation's pk, as the ReserveNow sent it (1.6 reservationId, 2.0.1 id)."""
    if ocpp_command is None or ocpp_command.action != "ReserveNow":
        return None
    request = ocpp_command.request or {}
    value = request.get("reservationId", request.get("id"))
    return value if isinstance(value, int) else None


def partner_reservation(
    *, partner: OcpiPartner, reservation_id: str, location_id: str | None = None
) -> Reservation | None:
    """Our Reservation made by the partner's latest RESERVE_NOW with this reservation_id (at that Location,
    when given), or None."""
    commands = OcpiCommand.objects.filter(
        partner=partner, module=Module.COMMANDS, command=RESERVE_NOW, request__reservation_id=reservation_id
    ).select_related("ocpp_command")
    if location_id is not None:
        commands = commands.filter(request__location_id=location_id)
    for ocpi_command in commands.exclude(ocpp_command__isnull=True).order_by("-pk")[:1]:
        pk = _reservation_pk(ocpi_command.ocpp_command)
        if pk is not None:
            return Reservation.objects.select_related("station").filter(pk=pk).first()
    return None


# --- the execution (Celery) ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    result: str
    message: str = ""
    ocpp_command: Command | None = None


def command_execute(*, ocpi_command_id: int) -> str | None:
    """Sends the stored command to the charger, waits for its answer and queues the CommandResult. Returns
    the result, or None when the command was taken already (a task delivered twice sends nothing twice).

    A task delivered again after its worker died mid-way (acks_late) finds the command SENDING past its
    announced timeout: it is not sent again (the charger may have done it), the eMSP is told TIMEOUT."""
    if OcpiCommand.objects.filter(pk=ocpi_command_id, result="").update(result=SENDING) != 1:
        lost_before = timezone.now() - timedelta(seconds=command_timeout_s())
        if (
            OcpiCommand.objects.filter(pk=ocpi_command_id, result=SENDING, created_at__lt=lost_before).update(
                result=TIMEOUT
            )
            == 1
        ):
            ocpi_command = OcpiCommand.objects.select_related("partner__party").get(pk=ocpi_command_id)
            command_result_queue(
                ocpi_command=ocpi_command, outcome=Outcome(TIMEOUT, "The Charge Point's answer was lost.")
            )
            return TIMEOUT
        return None
    ocpi_command = OcpiCommand.objects.select_related("partner__party").get(pk=ocpi_command_id)
    if ocpi_command.created_at < timezone.now() - timedelta(seconds=command_timeout_s()):
        # The eMSP has given up on it (its timeout): a car must not start charging long after its driver
        # was told nothing happened.
        outcome = Outcome(FAILED, "The command could not be sent in time.")
        command_result_queue(ocpi_command=ocpi_command, outcome=outcome)
        return outcome.result
    try:
        outcome = RUNNERS[ocpi_command.command](ocpi_command)
    except _Refusal as refusal:
        outcome = Outcome(refusal.answer.result, refusal.answer.message)
    except DomainError as exc:  # what the domain refuses (a token not allowed here, input the version lacks)
        outcome = Outcome(REJECTED, str(exc))
    except Exception:  # the eMSP is owed a result whatever happened
        logger.exception("OCPI command %s failed", ocpi_command_id)
        outcome = Outcome(FAILED, "The command could not be executed.")
    command_result_queue(ocpi_command=ocpi_command, outcome=outcome)
    return outcome.result


def command_result_queue(*, ocpi_command: OcpiCommand, outcome: Outcome) -> None:
    """Records the result and queues the CommandResult POST to the response_url (through a hub: routed to
    the party the command came for)."""
    body: dict[str, Any] = {"result": outcome.result}
    if outcome.message:
        body["message"] = display_text(outcome.message)
    with transaction.atomic():
        OcpiCommand.objects.filter(pk=ocpi_command.pk).update(
            result=outcome.result, result_at=timezone.now(), ocpp_command=outcome.ocpp_command
        )
        outbox_enqueue(
            partner=ocpi_command.partner,
            module=Module.COMMANDS,
            object_key=f"command:{ocpi_command.pk}",
            method="POST",
            body=body,
            url=ocpi_command.response_url,
            to_party=_to_party(ocpi_command),
        )


def _to_party(ocpi_command: OcpiCommand) -> tuple[str, str] | None:
    """The party a result is for: the owner of the command's token (or of the session's, or of the
    reservation's); without one, the partner's own party (the routing headers' default)."""
    request = ocpi_command.request
    token = request.get("token")
    if isinstance(token, dict):
        return token["country_code"].upper(), token["party_id"].upper()
    if ocpi_command.command == STOP_SESSION and str(request.get("session_id", "")).isdigit():
        owner = OcpiToken.objects.filter(id_token__sessions__pk=int(request["session_id"])).first()
        if owner is not None:
            return owner.country_code, owner.party_id
    if ocpi_command.command == CANCEL_RESERVATION:
        made = (
            OcpiCommand.objects.filter(
                partner_id=ocpi_command.partner_id,
                command=RESERVE_NOW,
                request__reservation_id=request.get("reservation_id"),
            )
            .order_by("-pk")
            .first()
        )
        if made is not None:
            return _to_party(made)
    # Otherwise the party that sent the command (an UNLOCK_CONNECTOR names no token).
    if ocpi_command.from_country_code:
        return ocpi_command.from_country_code, ocpi_command.from_party_id
    return None


def _result_of(command: Command, statuses: dict[str, str]) -> Outcome:
    """The CommandResult of an OCPP command's outcome: the charger's status through `statuses`, a CALLERROR
    NotImplemented/NotSupported as NOT_SUPPORTED, no answer as TIMEOUT, never delivered as FAILED."""
    if command.status == CommandStatus.ANSWERED:
        status = str((command.response or {}).get("status", ""))
        return Outcome(statuses.get(status, REJECTED), f"Charge Point: {status}", command)
    if command.status == CommandStatus.TIMED_OUT:
        return Outcome(TIMEOUT, "The Charge Point did not answer.", command)
    if command.error_code in UNSUPPORTED_ERRORS:
        return Outcome(NOT_SUPPORTED, command.error_description or command.error_code, command)
    if command.error_code in (NOT_CONNECTED, NOT_DELIVERED):
        return Outcome(FAILED, "The Charge Point is offline.", command)
    return Outcome(FAILED, command.error_description or command.error_code or "Failed.", command)


def _send(station: ChargingStation, call: Any) -> Command:
    # Audited as a request from outside (a roaming partner), with no user of ours behind it.
    return command_send(station=station, call=call, requested_by=None, source=CommandSource.API)


def _run_start(ocpi_command: OcpiCommand) -> Outcome:
    partner, body = ocpi_command.partner, ocpi_command.request
    place = _place(
        partner, body["location_id"], body.get("evse_uid"), body.get("connector_id"), station_needed=False
    )
    token = _command_token(partner, body["token"])
    target = Target(
        evse_id=place.evse.evse_id if place.evse is not None else None,
        connector_id=place.connector.connector_id if place.connector is not None else None,
    )
    call = operations.remote_start(
        station_version(place.station),
        id_token=token.id_token.value,
        id_token_type=token.id_token.type,
        target=target,
    )
    # Recorded before the call goes out: the session may start before the answer is read.
    authorization = OcpiAuthorization.objects.create(
        partner=partner,
        token=token,
        auth_method=AUTH_COMMAND,
        authorization_reference=body.get("authorization_reference", ""),
        site=place.site,
    )
    outcome = _result_of(_send(place.station, call), {"Accepted": ACCEPTED, "Rejected": REJECTED})
    if outcome.result != ACCEPTED:
        # Never to be taken by a later session: the eMSP was told this start did not happen.
        OcpiAuthorization.objects.filter(pk=authorization.pk, used_at__isnull=True).update(
            used_at=timezone.now()
        )
    return outcome


def _run_stop(ocpi_command: OcpiCommand) -> Outcome:
    session = ChargingSession.objects.select_related("station").get(
        pk=int(ocpi_command.request["session_id"])
    )
    if session.status != SessionStatus.ACTIVE:
        return Outcome(REJECTED, "The Session has ended already.")
    call = operations.remote_stop(station_version(session.station), transaction_id=session.transaction_id)
    return _result_of(_send(session.station, call), {"Accepted": ACCEPTED, "Rejected": REJECTED})


def _run_unlock(ocpi_command: OcpiCommand) -> Outcome:
    body = ocpi_command.request
    place = _place(
        ocpi_command.partner,
        body["location_id"],
        body["evse_uid"],
        body["connector_id"],
        station_needed=False,
    )
    assert place.evse is not None and place.connector is not None  # both named: checked by _place
    call = operations.unlock(
        station_version(place.station),
        target=Target(evse_id=place.evse.evse_id, connector_id=place.connector.connector_id),
    )
    statuses = {
        "Unlocked": ACCEPTED,
        "UnlockFailed": FAILED,
        "NotSupported": NOT_SUPPORTED,
        # 2.0.1: a driver's authorised session holds the cable.
        "OngoingAuthorizedTransaction": EVSE_OCCUPIED,
        "UnknownConnector": REJECTED,
    }
    return _result_of(_send(place.station, call), statuses)


# ReserveNow answers (1.6 ReservationStatus, 2.0.1 ReserveNowStatusEnumType).
RESERVE_STATUSES = {
    "Accepted": ACCEPTED,
    "Occupied": EVSE_OCCUPIED,
    "Faulted": EVSE_INOPERATIVE,
    "Unavailable": EVSE_INOPERATIVE,
    "Rejected": REJECTED,
}


def _run_reserve(ocpi_command: OcpiCommand) -> Outcome:
    partner, body = ocpi_command.partner, ocpi_command.request
    place = _place(partner, body["location_id"], body.get("evse_uid"), station_needed=False)
    token = _command_token(partner, body["token"])
    replaced = partner_reservation(
        partner=partner, reservation_id=body["reservation_id"], location_id=body["location_id"]
    )
    if replaced is not None and replaced.status in (ReservationStatus.REQUESTED, ReservationStatus.ACCEPTED):
        # 13.3.4: the same reservation_id at the same Location replaces the reservation.
        reservation_cancel(actor=None, reservation=replaced, source=CommandSource.API)  # type: ignore[arg-type]
        _reservation_authorization_release(partner, body["reservation_id"], before=ocpi_command)
    expires_at: datetime = parse_datetime(body["expiry_date"], field="expiry_date")
    reservation = reservation_create(
        actor=None,
        station=place.station,
        id_token_id=token.id_token_id,
        expires_at=expires_at,
        evse_id=place.evse.evse_id if place.evse is not None else None,
        source=CommandSource.API,
    )
    command = reservation.command
    if command is None:
        return Outcome(FAILED, "The reservation could not be sent.")
    outcome = _result_of(command, RESERVE_STATUSES)
    if outcome.result == ACCEPTED:
        # The session that uses the reservation carries the eMSP's reference (13.3.4).
        OcpiAuthorization.objects.create(
            partner=partner,
            token=token,
            auth_method=AUTH_COMMAND,
            authorization_reference=body.get("authorization_reference", ""),
            site=place.site,
        )
    return outcome


def _reservation_authorization_release(
    partner: OcpiPartner, reservation_id: str, *, before: OcpiCommand | None = None
) -> None:
    """A cancelled (or replaced) reservation's authorisation is used up: no later session of that token may
    carry the reference the eMSP gave the reservation (13.3.4)."""
    reserves = OcpiCommand.objects.filter(
        partner=partner, module=Module.COMMANDS, command=RESERVE_NOW, request__reservation_id=reservation_id
    )
    if before is not None:
        reserves = reserves.filter(pk__lt=before.pk)
    reserve = reserves.order_by("-pk").first()
    if reserve is None:
        return
    OcpiAuthorization.objects.filter(
        partner=partner,
        auth_method=AUTH_COMMAND,
        used_at__isnull=True,
        token__uid=reserve.request["token"]["uid"],
        authorization_reference=reserve.request.get("authorization_reference", ""),
        created_at__gte=reserve.created_at,
    ).update(used_at=timezone.now())


def _run_cancel(ocpi_command: OcpiCommand) -> Outcome:
    reservation = partner_reservation(
        partner=ocpi_command.partner, reservation_id=ocpi_command.request["reservation_id"]
    )
    if reservation is None or reservation.status not in (
        ReservationStatus.REQUESTED,
        ReservationStatus.ACCEPTED,
    ):
        return Outcome(UNKNOWN_RESERVATION, "The reservation is no longer held.")
    after = reservation_cancel(actor=None, reservation=reservation, source=CommandSource.API)  # type: ignore[arg-type]
    _reservation_authorization_release(ocpi_command.partner, ocpi_command.request["reservation_id"])
    if after.command is None:
        return Outcome(FAILED, "The cancellation could not be sent.")
    # CancelReservation Rejected: the charger holds no such reservation (expired or used there meanwhile).
    return _result_of(after.command, {"Accepted": ACCEPTED, "Rejected": UNKNOWN_RESERVATION})


RUNNERS = {
    START_SESSION: _run_start,
    STOP_SESSION: _run_stop,
    RESERVE_NOW: _run_reserve,
    CANCEL_RESERVATION: _run_cancel,
    UNLOCK_CONNECTOR: _run_unlock,
}
