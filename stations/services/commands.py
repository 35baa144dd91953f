"""Remote commands: CSMS->charger OCPP calls, issued from any process (API, admin, Celery).

How a command travels:
1. `command_send` takes a `Call` built by a cpms.ocpp_wire builder; `command_create` writes the record
   (status `pending`) and commits. The record is the outbox: nothing lives only in the transport.
2. The issuer tells the process holding the station through the transport (`CommandTransport`, chosen by
   the setting OCPP_COMMAND_TRANSPORT; the OCPP server's, cpms/ocpp/transport.py, uses the channel layer):
   the fast path. Every server process also polls for pending commands of the stations it holds
   (`command_pending_for`, once a second), which delivers commands when the transport lost the word, when
   the issuer had none (a Celery worker in embedded mode) and outbox commands once their station connects.
3. The process that holds the connection claims the command (`command_claim`: pending -> sent, exactly
   once), sends the CALL, and records the answer (`command_finish`: sent -> answered / failed / timed_out,
   with the answer hook of sessions.services.command_answers), then tells the issuer.
4. The issuer waits for that word (or polls the record) and returns the final record.

Caller errors (unknown station, not allowed) are the caller's to check; this module records what happened.
"""

import asyncio
import copy
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from accounts.models import AuditAction, User
from accounts.services import audit_record
from cpms.errors import Conflict, ValidationFailed
from cpms.ocpp_wire.calls import Call, version_checked
from cpms.ocpp_wire.operations import Target
from cpms.ocpp_wire.redaction import request_redacted
from stations.enums import CommandSource, CommandStatus
from stations.models import ChargingStation, Command, CommandJob, DeviceVariable
from stations.services.credentials import (
    rotation_password,
    rotation_password_validate,
    station_password_pending_set,
    station_password_withdrawn,
)
from stations.services.device_model import OCPP16_COMPONENT

logger = logging.getLogger(__name__)

T = TypeVar("T")

# error_code values of our own (a charger's CALLERROR code is stored as it spelt it).
NOT_CONNECTED = "NotConnected"
NOT_DELIVERED = "NotDelivered"
DISCONNECTED = "Disconnected"
LOST = "Lost"

FINAL_STATUSES = frozenset({CommandStatus.ANSWERED, CommandStatus.FAILED, CommandStatus.TIMED_OUT})
# After its timeout, a sent command is given this long for the holding process to record the outcome
# before anyone else declares it lost.
FINISH_GRACE_S = 5.0
# How often a waiting issuer re-reads the record without a transport's word (nothing will tell it); with
# one, every OCPP_COMMAND_POLL_S (only to notice a lost word).
POLL_WITHOUT_LAYER_S = 0.2

# Given (command, response) inside the transaction that records an answer: applies what the answer means
# to the domain (configuration read into the database, a reservation accepted...).
AnswerHook = Callable[[Command, dict[str, Any]], None]


def station_version(station: ChargingStation) -> str:
    """The OCPP schema version to build calls for. A station that never connected has no version: nothing
    can be built for it, and it is not connected (Conflict, as a command to an offline station is)."""
    version = station.protocol.removeprefix("ocpp")
    if not version:
        raise Conflict(
            f"Station {station.identity!r} has never connected: its OCPP version is not known yet."
        )
    return version_checked(version)


def target_resolve(*, station: ChargingStation, evse_id: int | None, connector_id: int | None) -> Target:
    """Operator input -> Target. `evse_id` (with or without `connector_id`) is taken as it is. A lone
    `connector_id` counts the connectors of the whole station, as 1.6 and most chargers' labels do: in 1.6
    it is the connectorId (EVSE n, connector 1); in 2.0.1 it is the n-th connector in (EVSE, connector) order
    of those the station reported (its Evse/Connector rows)."""
    if evse_id is not None or connector_id is None:
        return Target(evse_id=evse_id, connector_id=connector_id)
    if station_version(station) == "1.6":
        return Target(evse_id=connector_id, connector_id=1)
    points = sorted(
        (evse.evse_id, connector.connector_id)
        for evse in station.evses.all()
        for connector in evse.connectors.all()
    )
    if not 1 <= connector_id <= len(points):
        raise ValidationFailed(
            f"Station {station.identity!r} reported {len(points)} connector(s), so it has no connector "
            f"{connector_id}: give evse_id and connector_id."
        )
    evse, connector = points[connector_id - 1]
    return Target(evse_id=evse, connector_id=connector)


# --- the transport ----------------------------------------------------------------------------------


class CommandReply(Protocol):
    """The word of the process holding a station that it finished a command."""

    async def wait(self, timeout_s: float) -> None:
        """Return when the word came or `timeout_s` passed; raise when the reply channel failed."""

    def close(self) -> None: ...


class CommandTransport(Protocol):
    """How an issuer tells the process holding a station's connection that a command is pending."""

    async def notify(self, *, identity: str, command_id: int, reply: bool) -> CommandReply | None:
        """Tell the holder of `identity`; with `reply`, a CommandReply to wait on for its word. None when
        nothing can carry the word (the issuer then polls the record, and the holder's poller finds the
        command)."""


class PollingTransport:
    """No transport (no channel layer): the holder's poller finds the command, the issuer polls the record."""

    async def notify(self, *, identity: str, command_id: int, reply: bool) -> CommandReply | None:
        return None


@functools.cache
def _transport_load(path: str) -> CommandTransport:
    return import_string(path)() if path else PollingTransport()


def command_transport() -> CommandTransport:
    """The transport of the setting OCPP_COMMAND_TRANSPORT (a dotted path; empty: PollingTransport)."""
    return _transport_load(settings.OCPP_COMMAND_TRANSPORT)


def command_create(
    *,
    station: ChargingStation,
    action: str,
    request: dict[str, Any],
    user: User | None = None,
    source: str = CommandSource.API,
    timeout_s: float | None = None,
    queue_for_s: float | None = None,
    job: CommandJob | None = None,
) -> Command:
    """Record a command. For a station that is not connected it is recorded as failed (NotConnected),
    unless `queue_for_s` asks for it to wait in the outbox that long for the station to connect."""
    # A new Basic-auth password for the charger is checked before anything is recorded
    # (docs/reliability.md case 5).
    password = rotation_password(action=action, request=request)
    if password is not None:
        rotation_password_validate(action=action, password=password)
    now = timezone.now()
    fields = {
        "station": station,
        "action": action,
        "request": request,
        "requested_by": user,
        "source": source,
        "job": job,
        "timeout_s": settings.OCPP_CALL_TIMEOUT_S if timeout_s is None else timeout_s,
        "created_at": now,
    }
    if queue_for_s:
        fields["queued_until"] = now + timedelta(seconds=queue_for_s)
    elif not station.is_connected:
        fields.update(
            status=CommandStatus.FAILED,
            error_code=NOT_CONNECTED,
            error_description=f"Station {station.identity} is not connected.",
            finished_at=now,
        )
    with transaction.atomic():
        command = Command.objects.create(**fields)
        if password is not None and command.status == CommandStatus.PENDING:
            # Before it is sent: from now on the handshake accepts it beside the current one.
            station_password_pending_set(
                station_id=station.pk, command_id=command.pk, action=action, password=password
            )
        # docs/reliability.md case 42: what people (and their jobs) ask chargers to do; the system's own calls
        # (smart charging profiles, cost updates) are in the command history only, at their volume.
        if source != CommandSource.SYSTEM:
            audit_record(
                actor=user,
                action=AuditAction.COMMAND_SENT,
                obj=command,
                organisation_id=station.organisation_id,
                changes={
                    "station": station.identity,
                    "action": action,
                    "request": request_redacted(action, request),
                    "source": source,
                    "status": command.status,
                },
            )
    return command


def command_claim(*, command_id: int, station_id: int, unique_id: str) -> Command | None:
    """pending -> sent, for the process that holds the station's connection. None when someone else
    claimed it first, or it was given up meanwhile: then it must not be sent."""
    claimed = Command.objects.filter(
        pk=command_id, station_id=station_id, status=CommandStatus.PENDING
    ).update(status=CommandStatus.SENT, sent_at=timezone.now(), unique_id=unique_id)
    return Command.objects.get(pk=command_id) if claimed == 1 else None


def command_finish(
    *,
    command_id: int,
    status: str,
    response: dict[str, Any] | None = None,
    error_code: str = "",
    error_description: str = "",
    expected: str = CommandStatus.SENT,
    on_answer: AnswerHook | None = None,
    request: dict[str, Any] | None = None,
) -> bool:
    """Record the outcome once: `expected` -> `status`. False if the command was no longer `expected`
    (another party finished it). `on_answer` runs in the same transaction for an answered command.
    `request`, when given, replaces the stored request (the sender passes it with secrets masked)."""
    scrub = {} if request is None else {"request": request}
    with transaction.atomic():
        finished = Command.objects.filter(pk=command_id, status=expected).update(
            **scrub,
            status=status,
            response=response,
            error_code=error_code,
            error_description=error_description[:500],
            finished_at=timezone.now(),
        )
        if finished == 1 and status == CommandStatus.ANSWERED and on_answer is not None:
            on_answer(Command.objects.select_related("station").get(pk=command_id), response or {})
        if finished == 1 and status == CommandStatus.FAILED and _not_taken(error_code, response):
            # A new password it carried was never taken by the charger (docs/reliability.md case 5). A timeout
            # or a lost connection says nothing: the pending password then stays valid until confirmed.
            station_password_withdrawn(command_id=command_id)
    return finished == 1


def _not_taken(error_code: str, response: dict[str, Any] | None) -> bool:
    """A failed command the charger certainly did not apply: never delivered, or refused with a CALLERROR."""
    if error_code == NOT_DELIVERED:
        return True
    return error_code != DISCONNECTED and isinstance(response, dict) and "errorCode" in response


def command_pending_for(*, station_ids: Iterable[int]) -> list[tuple[int, int]]:
    """(command id, station id) of pending commands among these stations, oldest first. The partial index
    on pending commands keeps this cheap however long the history is."""
    wanted = set(station_ids)
    if not wanted:
        return []
    pending = (
        Command.objects.filter(status=CommandStatus.PENDING).order_by("id").values_list("id", "station_id")
    )
    return [(pk, station_id) for pk, station_id in pending if station_id in wanted]


def commands_expire(*, now: datetime | None = None) -> int:
    """Give up what nobody will finish: outbox commands past `queued_until`, pending commands nobody
    claimed (their issuer is gone), sent commands whose server process died before recording the answer."""
    now = now or timezone.now()
    delivery = timedelta(seconds=settings.OCPP_COMMAND_DELIVERY_S + FINISH_GRACE_S)
    expired = Command.objects.filter(
        status=CommandStatus.PENDING, queued_until__isnull=False, queued_until__lt=now
    ).update(
        status=CommandStatus.FAILED,
        error_code=NOT_DELIVERED,
        error_description="The station did not connect before the command's queue time ran out.",
        finished_at=now,
    )
    expired += Command.objects.filter(
        status=CommandStatus.PENDING, queued_until__isnull=True, created_at__lt=now - delivery
    ).update(
        status=CommandStatus.FAILED,
        error_code=NOT_DELIVERED,
        error_description="No server process holding the station's connection took the command.",
        finished_at=now,
    )
    # Each command's own timeout decides: a coarse bound in SQL, the exact one per row.
    for pk, sent_at, timeout_s in Command.objects.filter(
        status=CommandStatus.SENT, sent_at__lt=now - timedelta(seconds=FINISH_GRACE_S)
    ).values_list("id", "sent_at", "timeout_s"):
        if sent_at is not None and sent_at + timedelta(seconds=timeout_s + FINISH_GRACE_S) < now:
            expired += command_finish(
                command_id=pk,
                status=CommandStatus.TIMED_OUT,
                error_code=LOST,
                error_description="No outcome was recorded: the server process holding the connection "
                "stopped while waiting for the answer.",
            )
    return expired


# --- issuing and waiting --------------------------------------------------------------------------


def command_send(
    *,
    station: ChargingStation,
    call: Call,
    requested_by: User | None,
    source: str = CommandSource.API,
    timeout_s: float | None = None,
    queue_for_s: float | None = None,
    job: CommandJob | None = None,
    wait: bool = True,
) -> Command:
    """`command_send_async` for synchronous callers (API views, admin actions, services, Celery tasks)."""
    return async_to_sync(command_send_async)(
        station=station,
        call=call,
        requested_by=requested_by,
        source=source,
        timeout_s=timeout_s,
        queue_for_s=queue_for_s,
        job=job,
        wait=wait,
    )


async def command_send_async(
    *,
    station: ChargingStation,
    call: Call,
    requested_by: User | None,
    source: str = CommandSource.API,
    timeout_s: float | None = None,
    queue_for_s: float | None = None,
    job: CommandJob | None = None,
    wait: bool = True,
) -> Command:
    """Record `call` for `station` (audited unless the system sends it), have it sent by whichever process
    holds the station, and (`wait`) wait for the outcome.

    Returns the final record (answered, failed, timed out), or a pending one when it waits in the outbox
    (`queue_for_s`) for the station to connect or `wait` is False. A request with more items than the
    station takes in one message is sent as several (`_execute_in_parts`), waited for one after the other.
    """
    action, request = call
    options = {
        "user": requested_by,
        "source": source,
        "timeout_s": timeout_s,
        "queue_for_s": queue_for_s,
        "job": job,
    }
    if action in SPLIT_ITEMS and isinstance(request.get(SPLIT_ITEMS[action][0]), list):
        # The whole request is checked before any part of it is sent (command_create checks each part).
        password = rotation_password(action=action, request=request)
        if password is not None:
            rotation_password_validate(action=action, password=password)
        limit = await _db(station_items_per_message, station_id=station.pk, action=action)
        if limit is not None and len(request[SPLIT_ITEMS[action][0]]) > limit:
            return await _execute_in_parts(station, action, request, limit, options)
    return await _execute_one(station, action, request, options, wait=wait)


async def _execute_one(
    station: ChargingStation,
    action: str,
    request: dict[str, Any],
    options: dict[str, Any],
    *,
    wait: bool = True,
) -> Command:
    command = await _db(command_create, station=station, action=action, request=request, **options)
    if command.status != CommandStatus.PENDING:
        return command
    if not station.is_connected:
        return command  # queued for a station that is offline: the poller sends it when it connects
    transport = command_transport()
    try:
        reply = await transport.notify(identity=station.identity, command_id=command.pk, reply=wait)
    except Exception:
        logger.warning("command transport failed; command %s goes by the database", command.pk, exc_info=True)
        reply = None
    if not wait:
        if reply is not None:
            reply.close()
        return command
    return await command_wait(command, reply=reply)


async def command_wait(command: Command, *, reply: CommandReply | None = None) -> Command:
    """Wait for the outcome of a command that was recorded (pending or sent): the holder's word on `reply`,
    or the record re-read. Gives up a pending command nobody took within OCPP_COMMAND_DELIVERY_S
    (NotDelivered; an outbox command stays pending) and a sent one whose outcome nobody recorded within its
    timeout (Lost)."""
    loop = asyncio.get_running_loop()
    delivery_deadline = loop.time() + settings.OCPP_COMMAND_DELIVERY_S
    poll = settings.OCPP_COMMAND_POLL_S if reply else min(POLL_WITHOUT_LAYER_S, settings.OCPP_COMMAND_POLL_S)
    try:
        while True:
            if reply is not None:
                try:
                    await reply.wait(poll)
                except Exception as exc:
                    logger.warning("reply channel failed: %s; polling", exc)
                    reply.close()
                    reply, poll = None, POLL_WITHOUT_LAYER_S
            else:
                await asyncio.sleep(poll)
            current = await _db(_command_reload, command=command)
            if current.status in FINAL_STATUSES:
                return current
            if current.status == CommandStatus.PENDING and loop.time() >= delivery_deadline:
                if current.queued_until is not None:
                    return current  # stays in the outbox
                if await _db(
                    command_finish,
                    command_id=command.pk,
                    status=CommandStatus.FAILED,
                    error_code=NOT_DELIVERED,
                    error_description="The station is marked connected, but no server process holding "
                    "its connection took the command.",
                    expected=CommandStatus.PENDING,
                ):
                    return await _db(_command_reload, command=command)
            if current.status == CommandStatus.SENT and current.sent_at is not None:
                limit = current.sent_at + timedelta(seconds=current.timeout_s + FINISH_GRACE_S)
                if timezone.now() > limit and await _db(
                    command_finish,
                    command_id=command.pk,
                    status=CommandStatus.TIMED_OUT,
                    error_code=LOST,
                    error_description="No outcome was recorded by the server process holding the connection.",
                ):
                    return await _db(_command_reload, command=command)
    finally:
        if reply is not None:
            reply.close()


# --- items per message ------------------------------------------------------------------------------
# A station says how many items it takes in one message and a CSMS must not send more: OCPP 2.0.1
# DeviceDataCtrlr.ItemsPerMessage[GetVariables] (B06.FR.05) and [SetVariables] (its B05 counterpart); the keys
# of a 1.6 GetConfiguration.req, GetConfigurationMaxKeys (1.6 section 9.1). A longer request goes as several messages, one
# after the other (OCPP-J: one CALL at a time), and the caller gets one result.
# action -> (the request's list of items, the answer's lists of results)
SPLIT_ITEMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "GetConfiguration": ("key", ("configurationKey", "unknownKey")),
    "GetVariables": ("getVariableData", ("getVariableResult",)),
    "SetVariables": ("setVariableData", ("setVariableResult",)),
}
# action -> where the limit is in the device model, (component, variable, variable instance), in order of
# preference: the standard name, then the flat spelling some chargers report.
ITEM_LIMITS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "GetConfiguration": ((OCPP16_COMPONENT, "GetConfigurationMaxKeys", ""),),
    "GetVariables": (
        ("DeviceDataCtrlr", "ItemsPerMessage", "GetVariables"),
        ("DeviceDataCtrlr", "ItemsPerMessageGetVariables", ""),
    ),
    "SetVariables": (
        ("DeviceDataCtrlr", "ItemsPerMessage", "SetVariables"),
        ("DeviceDataCtrlr", "ItemsPerMessageSetVariables", ""),
    ),
}


def station_items_per_message(*, station_id: int, action: str) -> int | None:
    """The most items one `action` request may carry for this station, as its device model reports it (read
    by GetVariables / GetConfiguration or a report); None when it reported none we can use."""
    places = ITEM_LIMITS.get(action, ())
    if not places:
        return None
    found = {
        (component, variable, instance): value
        for component, variable, instance, value in DeviceVariable.objects.filter(
            station_id=station_id,
            component__in={place[0] for place in places},
            variable__in={place[1] for place in places},
            attribute_type="Actual",
            evse_id=0,
            connector_id=0,
        ).values_list("component", "variable", "variable_instance", "value")
    }
    for place in places:
        value = found.get(place, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def _request_parts(action: str, request: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    key = SPLIT_ITEMS[action][0]
    items = request[key]
    return [{**request, key: items[start : start + limit]} for start in range(0, len(items), limit)]


def _responses_merged(action: str, responses: list[dict[str, Any]]) -> dict[str, Any]:
    """The answers to the parts as one answer: each list of results concatenated in the parts' order (a
    list no part had stays absent); other fields as the first answer has them."""
    merged = dict(responses[0])
    for key in SPLIT_ITEMS[action][1]:
        values = [value for response in responses for value in response.get(key) or []]
        if values or any(key in response for response in responses):
            merged[key] = values
    return merged


async def _execute_in_parts(
    station: ChargingStation, action: str, request: dict[str, Any], limit: int, options: dict[str, Any]
) -> Command:
    """Send `request` as messages of at most `limit` items, in order, each recorded as a command of its own
    (with its answer hook: the device model is updated per part).

    All answered: the first part's record with the whole request and the merged answer (in memory; each
    part's own record keeps its own). A part that fails or times out ends it: the parts after it are not
    sent and its record is the result. Parts queued for an offline station are all queued, in order; the
    first is the result."""
    done: list[Command] = []
    for part in _request_parts(action, request, limit):
        command = await _execute_one(station, action, part, options)
        if command.status not in (CommandStatus.ANSWERED, CommandStatus.PENDING):
            return command
        done.append(command)
    if any(command.status == CommandStatus.PENDING for command in done):
        return done[0]
    result = copy.copy(done[0])
    result.request = request
    result.response = _responses_merged(action, [command.response or {} for command in done])
    result.finished_at = done[-1].finished_at
    return result


RELOADED = ("status", "response", "error_code", "error_description", "unique_id", "sent_at", "finished_at")


def _command_reload(*, command: Command) -> Command:
    """`command` with its outcome re-read (its station and requester are the ones the caller passed)."""
    values = Command.objects.filter(pk=command.pk).values(*RELOADED).get()
    for field, value in values.items():
        setattr(command, field, value)
    return command


def _db(func: Callable[..., T], /, **kwargs: Any) -> Awaitable[T]:
    """Run `func` on the caller's own thread and database connection (a view, a test: thread_sensitive),
    and give the connection back afterwards (to the pool) unless a transaction holds it: an API request
    waiting 30 s for a charger must not keep a pooled connection all that time."""

    def run() -> T:
        try:
            return func(**kwargs)
        finally:
            if not connection.in_atomic_block:
                connection.close()

    return sync_to_async(run, thread_sensitive=True)()
