"""command_send through the transport interface (stations.services.commands.CommandTransport): what it records
and audits, what it tells the transport, how it waits, and which transport the setting picks. The real
transports: tests/ocpp/test_command_routing.py (channel layer and polling, through a consumer)."""

from dataclasses import dataclass, field

import pytest
from asgiref.sync import sync_to_async

from accounts.models import AuditAction, AuditRecord
from cpms.ocpp.transport import ChannelLayerTransport
from cpms.ocpp_wire.calls import Call
from stations.enums import CommandSource, CommandStatus
from stations.models import Command
from stations.services import commands
from stations.services.commands import PollingTransport, command_send


class WordNow:
    async def wait(self, timeout_s: float) -> None:
        return None

    def close(self) -> None:
        return None


@dataclass
class RecordingTransport:
    """Answers every command it is told about (as the process holding the station would) and keeps what it
    was told."""

    notified: list[tuple[str, int, bool]] = field(default_factory=list)
    seen_status: list[str] = field(default_factory=list)

    async def notify(self, *, identity: str, command_id: int, reply: bool) -> WordNow | None:
        self.notified.append((identity, command_id, reply))
        self.seen_status.append(await sync_to_async(self._answer)(command_id, reply))
        return WordNow() if reply else None

    @staticmethod
    def _answer(command_id: int, reply: bool) -> str:
        status = Command.objects.get(pk=command_id).status
        if reply:
            assert commands.command_claim(
                command_id=command_id,
                station_id=Command.objects.get(pk=command_id).station_id,
                unique_id="u-1",
            )
            commands.command_finish(
                command_id=command_id, status=CommandStatus.ANSWERED, response={"status": "Accepted"}
            )
        return status


@pytest.fixture
def transport(monkeypatch) -> RecordingTransport:
    fake = RecordingTransport()
    monkeypatch.setattr(commands, "command_transport", lambda: fake)
    return fake


@pytest.fixture
def online(world):
    world.station_a1.is_connected = True
    world.station_a1.protocol = "ocpp1.6"
    world.station_a1.save(update_fields=["is_connected", "protocol"])
    return world.station_a1


def test_a_sent_call_is_recorded_audited_told_and_waited_for(world, online, transport):
    command = command_send(
        station=online, call=Call("Reset", {"type": "Soft"}), requested_by=world.operator_a, timeout_s=12
    )
    assert (command.status, command.response, command.timeout_s) == (
        CommandStatus.ANSWERED,
        {"status": "Accepted"},
        12,
    )
    assert transport.notified == [(online.identity, command.pk, True)]
    assert transport.seen_status == [CommandStatus.PENDING]  # recorded and committed before the word
    assert (command.action, command.request, command.requested_by, command.source) == (
        "Reset",
        {"type": "Soft"},
        world.operator_a,
        CommandSource.API,
    )
    audit = AuditRecord.objects.get(action=AuditAction.COMMAND_SENT)
    assert audit.changes["action"] == "Reset" and audit.actor == world.operator_a


def test_without_wait_the_pending_record_comes_back_at_once(world, online, transport):
    command = command_send(station=online, call=Call("ClearCache", {}), requested_by=None, wait=False)
    assert command.status == CommandStatus.PENDING
    assert transport.notified == [(online.identity, command.pk, False)]
    assert Command.objects.get(pk=command.pk).status == CommandStatus.PENDING


def test_an_offline_station_is_not_told(world, transport):
    failed = command_send(station=world.station_a1, call=Call("ClearCache", {}), requested_by=None)
    queued = command_send(
        station=world.station_a1, call=Call("ClearCache", {}), requested_by=None, queue_for_s=60
    )
    assert (failed.status, failed.error_code) == (CommandStatus.FAILED, commands.NOT_CONNECTED)
    assert queued.status == CommandStatus.PENDING and queued.queued_until is not None
    assert transport.notified == []


def test_a_system_call_is_not_audited(world, online, transport):
    command_send(station=online, call=Call("ClearCache", {}), requested_by=None, source=CommandSource.SYSTEM)
    assert not AuditRecord.objects.filter(action=AuditAction.COMMAND_SENT).exists()


def test_the_setting_picks_the_transport(settings):
    settings.OCPP_COMMAND_TRANSPORT = "cpms.ocpp.transport.ChannelLayerTransport"
    assert isinstance(commands.command_transport(), ChannelLayerTransport)
    settings.OCPP_COMMAND_TRANSPORT = ""
    assert isinstance(commands.command_transport(), PollingTransport)


def test_without_a_transport_the_issuer_polls_the_record(world, online, settings, monkeypatch):
    """No word comes (PollingTransport): the record is re-read until the holder finished it."""
    settings.OCPP_COMMAND_TRANSPORT = ""
    reads = []
    reload = commands._command_reload

    def reload_and_answer(*, command):
        reads.append(command.pk)
        if len(reads) == 2:  # the holder's poller took it meanwhile
            commands.command_claim(command_id=command.pk, station_id=online.pk, unique_id="u-2")
            commands.command_finish(command_id=command.pk, status=CommandStatus.ANSWERED, response={})
        return reload(command=command)

    monkeypatch.setattr(commands, "_command_reload", reload_and_answer)
    command = command_send(station=online, call=Call("ClearCache", {}), requested_by=None)
    assert command.status == CommandStatus.ANSWERED and len(reads) == 2
