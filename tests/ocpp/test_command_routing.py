"""Remote commands through a real consumer (channels WebsocketCommunicator): the command record's life,
the fast path through the channel layer (Redis in CI), the database poller without one, the outbox, and
the timeout / CALLERROR / disconnect / offline paths. Across two server processes: tests/e2e."""

import asyncio
import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from cpms.ocpp_wire.calls import Call
from stations.enums import CommandStatus
from stations.models import ChargingStation, Command, DeviceVariable
from stations.services.commands import command_send_async, commands_expire
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory
from tests.ocpp.test_consumer import basic, communicator, handshake

pytestmark = pytest.mark.django_db(transaction=True)


async def connect(identity: str, protocol: str = "ocpp1.6"):
    comm = communicator(
        identity, headers=[basic(identity, DEFAULT_STATION_PASSWORD)], subprotocols=(protocol,)
    )
    assert await handshake(comm) == ("accepted", protocol)
    station = await database_sync_to_async(ChargingStation.objects.get)(identity=identity)
    return comm, station


async def next_call(comm) -> list:
    frame = json.loads(await comm.receive_from(timeout=5))
    assert frame[0] == 2, frame
    return frame


async def answer(comm, frame: list, payload: dict) -> None:
    await comm.send_to(text_data=json.dumps([3, frame[1], payload]))


def started(coro) -> asyncio.Task:
    return asyncio.ensure_future(coro)


def test_answered_command_is_recorded_with_its_wire_id_and_times(world):
    ChargingStationFactory(identity="CMD-1", site=world.site_a1)

    async def scenario():
        comm, station = await connect("CMD-1")
        task = started(
            command_send_async(
                station=station, call=Call("Reset", {"type": "Soft"}), requested_by=world.operator_a
            )
        )
        frame = await next_call(comm)
        await answer(comm, frame, {"status": "Accepted"})
        command = await asyncio.wait_for(task, 10)
        await comm.disconnect()
        return frame, command

    frame, command = asyncio.run(scenario())
    assert frame[2:] == ["Reset", {"type": "Soft"}]
    command = Command.objects.get(pk=command.pk)
    assert (command.status, command.response, command.error_code) == ("answered", {"status": "Accepted"}, "")
    assert command.unique_id == frame[1]
    assert command.requested_by == world.operator_a
    assert command.created_at <= command.sent_at <= command.finished_at


def test_answer_hook_runs_in_the_recording_transaction(world):
    """1.6 GetConfiguration answers land in the device model (the hook registered for it)."""
    ChargingStationFactory(identity="CMD-CFG", site=world.site_a1)

    async def scenario():
        comm, station = await connect("CMD-CFG")
        task = started(
            command_send_async(station=station, call=Call("GetConfiguration", {}), requested_by=None)
        )
        frame = await next_call(comm)
        await answer(
            comm,
            frame,
            {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]},
        )
        command = await asyncio.wait_for(task, 10)
        await comm.disconnect()
        return command

    command = asyncio.run(scenario())
    assert command.status == CommandStatus.ANSWERED
    variable = DeviceVariable.objects.get(station__identity="CMD-CFG", variable="HeartbeatInterval")
    assert (variable.component, variable.value) == ("OCPP16", "300")


def test_callerror_fails_the_command_with_the_chargers_code(world):
    ChargingStationFactory(identity="CMD-ERR", site=world.site_a1)

    async def scenario():
        comm, station = await connect("CMD-ERR")
        task = started(command_send_async(station=station, call=Call("ClearCache", {}), requested_by=None))
        frame = await next_call(comm)
        await comm.send_to(text_data=json.dumps([4, frame[1], "NotSupported", "no cache here", {"x": 1}]))
        command = await asyncio.wait_for(task, 10)
        await comm.disconnect()
        return command

    command = asyncio.run(scenario())
    assert (command.status, command.error_code, command.error_description) == (
        "failed",
        "NotSupported",
        "no cache here",
    )
    assert command.response == {
        "errorCode": "NotSupported",
        "errorDescription": "no cache here",
        "errorDetails": {"x": 1},
    }


def test_schema_invalid_answer_fails_the_command_and_keeps_the_answer(world):
    ChargingStationFactory(identity="CMD-BAD", site=world.site_a1)

    async def scenario():
        comm, station = await connect("CMD-BAD")
        task = started(command_send_async(station=station, call=Call("ClearCache", {}), requested_by=None))
        frame = await next_call(comm)
        await answer(comm, frame, {"status": "Maybe"})
        command = await asyncio.wait_for(task, 10)
        await comm.disconnect()
        return command

    command = asyncio.run(scenario())
    assert (command.status, command.error_code, command.response) == (
        "failed",
        "InvalidResponse",
        {"status": "Maybe"},
    )


def test_no_answer_times_out(world):
    ChargingStationFactory(identity="CMD-SLOW", site=world.site_a1)

    async def scenario():
        comm, station = await connect("CMD-SLOW")
        task = started(
            command_send_async(station=station, call=Call("ClearCache", {}), requested_by=None, timeout_s=0.3)
        )
        await next_call(comm)
        command = await asyncio.wait_for(task, 10)
        await comm.disconnect()
        return command

    command = asyncio.run(scenario())
    assert (command.status, command.error_code) == ("timed_out", "Timeout")


def test_connection_lost_mid_call_fails_the_command_visibly(world):
    """docs/reliability.md case 33: pending commands fail visibly when the charger goes."""
    ChargingStationFactory(identity="CMD-GONE", site=world.site_a1)

    async def scenario():
        comm, station = await connect("CMD-GONE")
        task = started(command_send_async(station=station, call=Call("ClearCache", {}), requested_by=None))
        await next_call(comm)
        await comm.disconnect()
        return await asyncio.wait_for(task, 10)

    command = asyncio.run(scenario())
    assert (command.status, command.error_code) == ("failed", "Disconnected")


def test_offline_station_fails_at_once_and_nothing_is_sent(world):
    station = ChargingStationFactory(identity="CMD-OFF", site=world.site_a1, is_connected=False)
    command = asyncio.run(command_send_async(station=station, call=Call("ClearCache", {}), requested_by=None))
    assert (command.status, command.error_code) == ("failed", "NotConnected")
    assert command.sent_at is None


def test_marked_connected_but_held_by_no_process_is_not_delivered(world, settings):
    settings.OCPP_COMMAND_DELIVERY_S = 0.3
    station = ChargingStationFactory(identity="CMD-STALE", site=world.site_a1, is_connected=True)
    command = asyncio.run(command_send_async(station=station, call=Call("ClearCache", {}), requested_by=None))
    assert (command.status, command.error_code) == ("failed", "NotDelivered")


def test_without_a_channel_layer_the_poller_delivers(world, settings):
    """A Celery worker in embedded mode has no shared channel layer: the server process finds the
    command in the database."""
    settings.CHANNEL_LAYERS = {}
    settings.OCPP_COMMAND_POLL_S = 0.05
    ChargingStationFactory(identity="CMD-POLL", site=world.site_a1)

    async def scenario():
        comm, station = await connect("CMD-POLL")
        task = started(command_send_async(station=station, call=Call("ClearCache", {}), requested_by=None))
        frame = await next_call(comm)
        await answer(comm, frame, {"status": "Accepted"})
        command = await asyncio.wait_for(task, 10)
        await comm.disconnect()
        return command

    assert asyncio.run(scenario()).status == CommandStatus.ANSWERED


def test_outbox_command_waits_for_the_station_and_is_sent_once_it_connects(world, settings):
    settings.OCPP_COMMAND_POLL_S = 0.05
    station = ChargingStationFactory(identity="CMD-LATER", site=world.site_a1, is_connected=False)
    queued = asyncio.run(
        command_send_async(station=station, call=Call("ClearCache", {}), requested_by=None, queue_for_s=600)
    )
    assert (queued.status, queued.sent_at) == ("pending", None)

    async def scenario():
        comm, _ = await connect("CMD-LATER")
        frame = await next_call(comm)
        await answer(comm, frame, {"status": "Accepted"})
        for _ in range(100):
            command = await database_sync_to_async(Command.objects.get)(pk=queued.pk)
            if command.status != CommandStatus.SENT:
                break
            await asyncio.sleep(0.05)
        await comm.disconnect()
        return frame

    frame = asyncio.run(scenario())
    command = Command.objects.get(pk=queued.pk)
    assert (frame[2], command.status, command.unique_id) == ("ClearCache", "answered", frame[1])


def test_expiry_gives_up_what_nobody_will_finish(world):
    station = ChargingStationFactory(identity="CMD-EXP", site=world.site_a1)
    now = timezone.now()
    old = now - timedelta(minutes=10)
    common = {"station": station, "action": "ClearCache", "request": {}, "timeout_s": 30}
    outbox = Command.objects.create(**common, created_at=old, queued_until=now - timedelta(seconds=1))
    waiting = Command.objects.create(**common, created_at=now, queued_until=now + timedelta(hours=1))
    orphan = Command.objects.create(**common, created_at=old)
    lost = Command.objects.create(**common, created_at=old, status="sent", sent_at=old)
    running = Command.objects.create(**common, created_at=now, status="sent", sent_at=now)

    assert commands_expire(now=now) == 3
    states = {c.pk: (c.status, c.error_code) for c in Command.objects.all()}
    assert states == {
        outbox.pk: ("failed", "NotDelivered"),
        waiting.pk: ("pending", ""),
        orphan.pk: ("failed", "NotDelivered"),
        lost.pk: ("timed_out", "Lost"),
        running.pk: ("sent", ""),
    }
    assert commands_expire(now=now) == 0


def test_rel_32_redis_down_commands_still_reach_the_charger_through_the_database(world, settings):
    """docs/reliability.md case 32: with the channel layer unreachable, the command record is the outbox and
    the server process holding the charger finds it there; nothing is lost silently."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1/0", "socket_timeout": 1}]},
        }
    }
    settings.OCPP_COMMAND_POLL_S = 0.1
    ChargingStationFactory(identity="CMD-NOREDIS", site=world.site_a1)

    async def scenario():
        comm, station = await connect("CMD-NOREDIS")
        task = started(command_send_async(station=station, call=Call("ClearCache", {}), requested_by=None))
        frame = await next_call(comm)
        await answer(comm, frame, {"status": "Accepted"})
        command = await asyncio.wait_for(task, 15)
        await comm.disconnect()
        return command

    command = asyncio.run(scenario())
    assert (command.status, command.response) == ("answered", {"status": "Accepted"})


def test_secrets_sent_to_a_charger_are_masked_in_the_record_the_log_and_the_api(world, settings):
    """A 1.6 AuthorizationKey (the station's Basic-auth password) goes to the charger as is, but the command
    history, the OCPP message log and the API only ever show it masked once it was sent."""
    from cpms.ocpp.message_log import message_log
    from stations.models import OcppMessage

    settings.OCPP_MESSAGE_LOG = "all"
    ChargingStationFactory(identity="CMD-KEY", site=world.site_a1)
    secret = {"key": "AuthorizationKey", "value": "0123456789abcdef0123456789abcdef01234567"}

    async def scenario():
        comm, station = await connect("CMD-KEY")
        task = started(
            command_send_async(station=station, call=Call("ChangeConfiguration", secret), requested_by=None)
        )
        frame = await next_call(comm)
        await answer(comm, frame, {"status": "Accepted"})
        command = await asyncio.wait_for(task, 10)
        await message_log.flush()
        await comm.disconnect()
        return frame, command

    frame, command = asyncio.run(scenario())
    assert frame[3] == secret  # the charger gets the real value
    masked = {"key": "AuthorizationKey", "value": "********"}
    assert Command.objects.get(pk=command.pk).request == masked
    logged = OcppMessage.objects.get(unique_id=frame[1], direction="out")
    assert secret["value"] not in logged.payload and "********" in logged.payload


def test_request_redaction_rules():
    from cpms.ocpp_wire.redaction import request_redacted

    assert request_redacted("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}) == {
        "key": "HeartbeatInterval",
        "value": "60",
    }
    data = {
        "setVariableData": [
            {
                "attributeValue": "s3cret-s3cret-s3",
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"},
            },
            {
                "attributeValue": "60",
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
            },
        ]
    }
    shown = request_redacted("SetVariables", data)
    assert [item["attributeValue"] for item in shown["setVariableData"]] == ["********", "60"]
    assert data["setVariableData"][0]["attributeValue"] == "s3cret-s3cret-s3"  # the original is untouched
    profile = {
        "configurationSlot": 1,
        "connectionData": {
            "apn": {"apn": "x", "apnPassword": "p"},
            "vpn": {"server": "v", "password": "q", "key": "k"},
        },
    }
    network = request_redacted("SetNetworkProfile", profile)["connectionData"]
    assert (
        network["apn"]["apnPassword"],
        network["vpn"]["password"],
        network["vpn"]["key"],
        network["apn"]["apn"],
    ) == (
        "********",
        "********",
        "********",
        "x",
    )
