"""Local authorisation lists: the id tokens a station keeps to authorise drivers while it cannot ask us
(1.6 Local Auth List Management, 2.0.1 D01-D02).

What a station should hold: the tokens of its organisation marked `in_local_list` that may charge there (see
sessions.services.tokens for site and station restrictions), each with the status, expiry and group a charger
would be told online. What it holds: its LocalListEntry rows, written only when it accepted an update, from
the update it accepted (what was on the wire, not what the tokens say now).

`local_list_sync` compares the two and sends:
- nothing, when they agree;
- a Differential update with the tokens added or changed and the removed ones without idTagInfo/idTokenInfo
  (which deletes them: 1.6 section 5.15, 2.0.1 D01.FR.17);
- a Full update (the whole list) when asked, when we never sent one, when we no longer know what the station
  holds (last_error set: a refused or unanswered update, VersionMismatch, a version reported by
  GetLocalListVersion that is not ours, a listed token renamed or deleted), or when the differences
  outnumber the list.
Each update carries our version + 1 (the version of the list after it). When the station's message size limit
is known (1.6 SendLocalListMaxLength, 2.0.1 LocalAuthListCtrlr.ItemsPerMessage, as read into DeviceVariable),
an update is split: a Full one into a Full message and Differential ones, each one version further, sent in
order, stopping at the first that is not accepted. The total list size (1.6 LocalAuthListMaxLength, 2.0.1
LocalAuthListCtrlr.Entries) is not checked: a charger that cannot take the whole list answers Failed, which
shows in last_error.

Concurrent syncs of one station are not serialised (that would hold a lock across a network round trip):
the second one's update carries the same version and is refused (VersionMismatch) or detected when its
answer is applied, and the next sync is then Full.

The wire format is cpms.ocpp_wire.auth's (send_local_list, the longest token per version); this module
finds the station's version and its message size limit.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.enums import Capability
from accounts.models import User
from cpms.errors import Conflict, PermissionDenied
from cpms.ocpp_wire.auth import ID_TOKEN_MAX_LENGTH, LocalListItem, send_local_list
from sessions.enums import IdTokenStatus
from sessions.models import IdToken, LocalListEntry, LocalListState
from sessions.services.tokens import LOCAL_LIST_STALE, id_token_allowed_q, id_token_status_at
from stations.enums import CommandSource, CommandStatus
from stations.models import ChargingStation, Command, DeviceVariable
from stations.scope import user_can
from stations.services.commands import NOT_CONNECTED, NOT_DELIVERED, command_send, station_version
from stations.services.device_model import OCPP16_COMPONENT

FULL = "Full"
DIFFERENTIAL = "Differential"
ACCEPTED = "Accepted"
CONCURRENT_UPDATE = "Another update was applied meanwhile: the next sync sends the full list."


# Where a station reports the most entries one SendLocalList may carry (a DeviceVariable), per version.
LIST_LIMIT_KEYS = {
    "1.6": (OCPP16_COMPONENT, "SendLocalListMaxLength"),
    "2.0.1": ("LocalAuthListCtrlr", "ItemsPerMessage"),
    "2.1": ("LocalAuthListCtrlr", "ItemsPerMessage"),
}


@dataclass(frozen=True, slots=True)
class LocalListUpdate:
    """One SendLocalList: `version` is the list's version after it is applied."""

    version: int
    update_type: str  # Full | Differential
    items: tuple[LocalListItem, ...]


@dataclass(frozen=True)
class LocalListSyncResult:
    update: LocalListUpdate | None  # None: the station holds the list it should; nothing was sent
    commands: tuple[Command, ...]  # one per message, in the order sent
    state: LocalListState


def _ms(value: datetime | None) -> datetime | None:
    # Chargers are sent milliseconds (cpms.ocpp_wire.times.format_datetime), and entries store what was sent.
    return None if value is None else value.replace(microsecond=value.microsecond // 1000 * 1000)


def local_list_desired(
    *, station: ChargingStation, value_max_length: int, now: datetime | None = None
) -> dict[int, LocalListItem]:
    """id token pk -> the item the station should hold. Tokens longer than the version carries are left out
    (the charger asks us about them online); so is a group too long for it."""
    now = now or timezone.now()
    tokens = (
        IdToken.objects.filter(organisation_id=station.organisation_id, in_local_list=True)
        .filter(id_token_allowed_q(station_id=station.pk))
        .select_related("group")
        .order_by("value")
    )
    desired = {}
    for token in tokens:
        if len(token.value) > value_max_length:
            continue
        group = (
            token.group if token.group is not None and len(token.group.value) <= value_max_length else None
        )
        desired[token.pk] = LocalListItem(
            value=token.value,
            type=token.type,
            status=id_token_status_at(token, now),
            expires_at=_ms(token.expires_at),
            group_value=group.value if group is not None else "",
            group_type=group.type if group is not None else "",
        )
    return desired


def _same(entry: LocalListEntry, item: LocalListItem) -> bool:
    return (entry.status, entry.expires_at, entry.group_value) == (
        item.status,
        item.expires_at,
        item.group_value,
    )


def local_list_plan(
    *, station: ChargingStation, value_max_length: int, full: bool = False, now: datetime | None = None
) -> LocalListUpdate | None:
    """The update that brings the station's list to what it should be (None: nothing to send)."""
    state = LocalListState.objects.filter(station=station).first()
    desired = local_list_desired(station=station, value_max_length=value_max_length, now=now)
    version = (state.version if state is not None else 0) + 1
    if not (full or state is None or state.version <= 0 or state.last_error):
        entries = {
            entry.id_token_id: entry
            for entry in LocalListEntry.objects.filter(station=station).select_related("id_token")
        }
        changes = [item for pk, item in desired.items() if pk not in entries or not _same(entries[pk], item)]
        removals = [
            LocalListItem(value=entry.id_token.value, type=entry.id_token.type)
            for pk, entry in sorted(entries.items(), key=lambda e: e[1].id_token.value)
            if pk not in desired
        ]
        if not changes and not removals:
            return None
        if len(changes) + len(removals) <= len(desired):
            return LocalListUpdate(version=version, update_type=DIFFERENTIAL, items=(*changes, *removals))
    return LocalListUpdate(version=version, update_type=FULL, items=tuple(desired.values()))


def local_list_split(update: LocalListUpdate, per_message: int | None) -> list[LocalListUpdate]:
    """`update` in messages of at most `per_message` items: the first of the update's type, the others
    Differential, each one version further."""
    if not per_message or len(update.items) <= per_message:
        return [update]
    chunks = [update.items[i : i + per_message] for i in range(0, len(update.items), per_message)]
    return [
        LocalListUpdate(
            version=update.version + n,
            update_type=update.update_type if n == 0 else DIFFERENTIAL,
            items=chunk,
        )
        for n, chunk in enumerate(chunks)
    ]


def _per_message(station: ChargingStation, version: str) -> int | None:
    component, variable = LIST_LIMIT_KEYS[version]
    value = (
        DeviceVariable.objects.filter(
            station=station,
            component=component,
            variable=variable,
            attribute_type="Actual",
        )
        .values_list("value", flat=True)
        .first()
    )
    try:
        limit = int(value) if value is not None else None
    except ValueError:
        return None
    return limit if limit is not None and limit > 0 else None


def local_list_sync(
    *,
    actor: User,
    station: ChargingStation,
    full: bool = False,
    source: str = CommandSource.API,
    now: datetime | None = None,
) -> LocalListSyncResult:
    """Bring the station's local list up to date (see the module docstring): plan, send, and return what was
    sent and the state the answers left."""
    if not user_can(
        user=actor,
        capability=Capability.COMMAND,
        organisation_id=station.organisation_id,
        site_id=station.site_id,
    ):
        raise PermissionDenied(f"You may not command station {station.identity!r}.")
    if not station.is_connected:
        raise Conflict(f"Station {station.identity!r} is not connected.")
    version = station_version(station)
    update = local_list_plan(
        station=station, value_max_length=ID_TOKEN_MAX_LENGTH[version], full=full, now=now
    )
    commands: list[Command] = []
    if update is not None:
        for part in local_list_split(update, _per_message(station, version)):
            call = send_local_list(
                version, version_number=part.version, update_type=part.update_type, items=part.items
            )
            command = command_send(station=station, call=call, requested_by=actor, source=source)
            commands.append(command)
            if command.status != CommandStatus.ANSWERED:
                _unanswered(station.pk, command)
                break
            if (command.response or {}).get("status") != ACCEPTED:
                break  # the answer hook recorded it
    state = LocalListState.objects.filter(station=station).first() or LocalListState(station=station)
    return LocalListSyncResult(update=update, commands=tuple(commands), state=state)


def _unanswered(station_id: int, command: Command) -> None:
    """An update that may have reached the charger without us learning the outcome (timeout, CALLERROR):
    we no longer know what it holds. One that was never sent changes nothing."""
    if command.error_code in (NOT_CONNECTED, NOT_DELIVERED):
        return
    with transaction.atomic():
        state = _state_locked(station_id)
        state.last_error = (
            f"{command.action} {command.status} ({command.error_code}): the next sync sends the full list."
        )[:200]
        state.save(update_fields=["last_error"])


def _state_locked(station_id: int) -> LocalListState:
    """The station's LocalListState, created if missing, locked for update (caller is in a transaction)."""
    LocalListState.objects.get_or_create(station_id=station_id)
    return LocalListState.objects.select_for_update().get(station_id=station_id)


@transaction.atomic
def local_list_entries_forget(*, actor: User, entries: Iterable[LocalListEntry]) -> int:
    """Delete entries from our record of what stations hold (the admin's delete, superusers only). The
    stations still hold them: their next sync sends the full list. Returns how many were deleted."""
    if not actor.is_superuser:
        raise PermissionDenied("Only superusers may delete local list entries.")
    pks = [entry.pk for entry in entries]
    station_ids = set(LocalListEntry.objects.filter(pk__in=pks).values_list("station_id", flat=True))
    LocalListState.objects.filter(station_id__in=station_ids).update(last_error=LOCAL_LIST_STALE)
    return LocalListEntry.objects.filter(pk__in=pks).delete()[0]


# --- what chargers answer ---------------------------------------------------------------------------
def local_list_answered(
    *,
    station_id: int,
    version: int,
    update_type: str,
    items: Iterable[LocalListItem],
    status: str,
    now: datetime | None = None,
) -> None:
    """SendLocalList answered (inside the transaction recording the answer). Accepted: the station now holds
    `items` (the update as sent) at `version`, applied to its entries and version together. Anything else
    (Failed, VersionMismatch, NotSupported): we no longer know what it holds; the next sync is Full."""
    now = now or timezone.now()
    state = _state_locked(station_id)
    if status != ACCEPTED:
        state.last_error = (
            f"SendLocalList version {version} answered {status}: the next sync sends the full list."[:200]
        )
        state.save(update_fields=["last_error"])
        return
    # By value, the last one winning: a list sent by hand (the generic OCPP endpoint) may repeat a token.
    sent = {item.value: item for item in items}
    organisation_id = ChargingStation.objects.values_list("organisation_id", flat=True).get(pk=station_id)
    tokens = dict(
        IdToken.objects.filter(organisation_id=organisation_id, value__in=list(sent)).values_list(
            "value", "pk"
        )
    )
    entries = LocalListEntry.objects.filter(station_id=station_id)
    if update_type == FULL:
        entries.delete()
    else:
        entries.filter(id_token_id__in=[tokens[value] for value in sent if value in tokens]).delete()
    LocalListEntry.objects.bulk_create(
        [
            LocalListEntry(
                station_id=station_id,
                id_token_id=tokens[item.value],
                # A status we do not keep for tokens (2.0.1 NotAtThisLocation, NoCredit... in a list sent
                # by hand) refuses the token all the same.
                status=item.status if item.status in IdTokenStatus.values else IdTokenStatus.INVALID,
                expires_at=item.expires_at,
                group_value=item.group_value[:255],
            )
            for item in sent.values()
            # Removals are gone; tokens that are not ours (or deleted meanwhile) have no entry to keep.
            if item.status is not None and item.value in tokens
        ]
    )
    concurrent = update_type == DIFFERENTIAL and state.version != version - 1
    state.version = version
    state.reported_version = version
    state.synced_at = now
    state.last_error = CONCURRENT_UPDATE if concurrent else ""
    state.save(update_fields=["version", "reported_version", "synced_at", "last_error"])


def local_list_version_reported(*, station_id: int, version: int) -> None:
    """GetLocalListVersion answered: the version the station says it holds (1.6: -1 when local lists are
    disabled, 0 when it holds none). One that is not ours makes the next sync Full."""
    with transaction.atomic():
        state = _state_locked(station_id)
        state.reported_version = version
        fields = ["reported_version"]
        if version != state.version:
            state.last_error = (
                f"The station reports list version {version}, ours is {state.version}: "
                "the next sync sends the full list."
            )
            fields.append("last_error")
        state.save(update_fields=fields)
