"""docs/reliability.md case 43: "the handshake never waits on the channel layer". Found by the reconnect-storm
drill (tests/drills/test_rel_34_reconnect_storm.py): with Redis healthy but busy (hundreds of chargers
connecting to one web process, every channel-layer call queued behind the RedisPubSubChannelLayer's shard
lock), the handshake's layer calls waited up to LAYER_TIMEOUT_S each, then the consumer logged ERROR "channel
layer unavailable; serving the charger without it" and that charger could not get commands from other
processes. Since issue 13 a connection has no channel of its own: its process has one, in the group of all
server processes (cpms.ocpp.process_link), made in the background once the first charger is accepted.

Here the same in-process and deterministic: a channel layer that is healthy but slow (each call the link makes
waits until released). LAYER_TIMEOUT_S is raised so that "waits on the layer" means a minute, far beyond the
handshake's 5 s here, whatever the machine's speed. Then what the background link must keep true while it is
pending and once it completes late: commands still arrive (the poller), never twice, an older connection in
another process is still closed, and nothing is logged as an error. "Another process" is a registry of its own
(ProcessConnections), with its own channel.
"""

import asyncio
import json
import logging

import pytest
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer

from cpms.ocpp import consumers, process_link, transport
from cpms.ocpp.chargepoint import run_db
from cpms.ocpp.process_link import SERVERS_GROUP, ProcessConnections
from cpms.ocpp_wire.calls import Call
from stations.models import ChargingStation
from stations.services.commands import command_create, command_send_async
from tests.factories import DEFAULT_STATION_PASSWORD, ChargingStationFactory
from tests.ocpp.test_consumer import basic, communicator, handshake

pytestmark = pytest.mark.django_db(transaction=True)


class SlowLayer(InMemoryChannelLayer):
    """Every call the link makes waits until `released` is set: a busy Redis pub/sub shard. `calls` counts
    them by name (started, whether or not they completed)."""

    released: asyncio.Event | None = None
    calls: dict[str, int] = {}

    async def _wait(self, name: str) -> None:
        type(self).calls[name] = type(self).calls.get(name, 0) + 1
        await type(self).released.wait()

    async def new_channel(self, prefix="specific."):
        await self._wait("new_channel")
        return await super().new_channel(prefix)

    async def group_add(self, group, channel):
        await self._wait("group_add")
        return await super().group_add(group, channel)

    async def group_send(self, group, message):
        await self._wait("group_send")
        return await super().group_send(group, message)


class FailingLayer(InMemoryChannelLayer):
    """A layer whose calls fail (Redis down) until `healed`."""

    healed = False

    async def new_channel(self, prefix="specific."):
        if not type(self).healed:
            raise ConnectionError("Redis is down")
        return await super().new_channel(prefix)


@pytest.fixture
def slow_layer(settings, monkeypatch):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": f"{__name__}.SlowLayer"}}
    SlowLayer.calls = {}
    # A fresh process registry: no consumer of an earlier test is held in it.
    another_process(monkeypatch)
    monkeypatch.setattr(process_link, "layer_health", process_link.LayerHealth())
    return SlowLayer


def another_process(monkeypatch) -> ProcessConnections:
    """From now on, connections are accepted by a new server process (a registry and link of its own)."""
    registry = ProcessConnections()
    monkeypatch.setattr(consumers, "held", registry)
    return registry


def hold_layer() -> None:
    """Called inside the test's event loop: every link call waits from now on."""
    SlowLayer.released = asyncio.Event()


def auth(identity: str) -> list:
    return [basic(identity, DEFAULT_STATION_PASSWORD)]


async def heartbeat(comm, message_id: str = "h") -> list:
    await comm.send_to(text_data=f'[2,"{message_id}","Heartbeat",{{}}]')
    return (await comm.receive_json_from(timeout=5))[:2]


async def members(*_) -> int:
    """How many processes' channels are in the servers' group of the in-memory layer."""
    return len(get_channel_layer().groups.get(SERVERS_GROUP, {}))


def word(identity: str, command_id: int, reply_to: str | None) -> dict:
    return {"type": "ocpp.command", "identity": identity, "command_id": command_id, "reply_to": reply_to}


async def until(predicate, timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await predicate():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


def errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_rel_43_handshake_and_first_answer_do_not_wait_for_a_slow_channel_layer(
    slow_layer, monkeypatch, caplog
):
    monkeypatch.setattr(process_link, "LAYER_TIMEOUT_S", 60.0)
    ChargingStationFactory(identity="CP-SLOW")

    async def scenario():
        hold_layer()
        comm = communicator("CP-SLOW", headers=auth("CP-SLOW"))
        try:
            accepted = await handshake(comm)
            answer = await heartbeat(comm)
            calls = SlowLayer.calls
            pending = (calls.get("new_channel"), calls.get("group_add", 0), await members("CP-SLOW"))
            SlowLayer.released.set()  # the layer catches up; the connection then joins its group
            await until(lambda: members("CP-SLOW"))
        finally:
            SlowLayer.released.set()
            await comm.disconnect(timeout=10)
        return accepted, answer, pending

    with caplog.at_level(logging.DEBUG, logger="cpms.ocpp"):
        accepted, answer, pending = asyncio.run(scenario())
    assert (accepted, answer) == (("accepted", "ocpp1.6"), [3, "h"])
    # The link had started (its channel was being created) and was not in place when the charger was served.
    assert pending == (1, 0, 0)
    assert errors(caplog) == []
    assert ChargingStation.objects.get(identity="CP-SLOW").is_connected is False


def test_rel_43_refused_handshake_costs_the_layer_nothing(slow_layer):
    ChargingStationFactory(identity="CP-NOPE")

    async def scenario():
        hold_layer()
        refused = await handshake(communicator("CP-NOPE", headers=[basic("CP-NOPE", "wrong-password")]))
        await asyncio.sleep(0.1)
        return refused

    assert asyncio.run(scenario()) == ("refused", 401)
    assert SlowLayer.calls == {}


def test_rel_43_command_reaches_a_charger_whose_membership_is_pending_through_the_poller(
    world, slow_layer, settings, monkeypatch, caplog
):
    """The issuer's word cannot reach the charger (its connection is not in the group yet, and the issuer's
    own layer call is slow too): the holder's poller finds the command in the database and sends it."""
    settings.OCPP_COMMAND_POLL_S = 0.05
    monkeypatch.setattr(transport, "LAYER_TIMEOUT_S", 0.2)
    ChargingStationFactory(identity="CP-WAIT", site=world.site_a1)

    async def scenario():
        hold_layer()
        comm = communicator("CP-WAIT", headers=auth("CP-WAIT"))
        try:
            assert await handshake(comm) == ("accepted", "ocpp1.6")
            station = await database_sync_to_async(ChargingStation.objects.get)(identity="CP-WAIT")
            issued = asyncio.ensure_future(
                command_send_async(station=station, call=Call("ClearCache", {}), requested_by=None)
            )
            frame = json.loads(await comm.receive_from(timeout=5))
            membership = await members("CP-WAIT")
            await comm.send_to(text_data=json.dumps([3, frame[1], {"status": "Accepted"}]))
            command = await asyncio.wait_for(issued, 10)
        finally:
            SlowLayer.released.set()
            await comm.disconnect(timeout=10)
        return frame, membership, command

    with caplog.at_level(logging.WARNING):
        frame, membership, command = asyncio.run(scenario())
    assert (frame[0], frame[2:], membership) == (2, ["ClearCache", {}], 0)
    assert (command.status, command.response, command.unique_id) == (
        "answered",
        {"status": "Accepted"},
        frame[1],
    )
    assert errors(caplog) == []


def test_rel_43_word_and_poller_together_send_a_command_once(world, slow_layer, settings):
    """The poller sent the command while the membership was pending; the issuer's word then arrives through
    the layer, first while the call runs (its reply_to is told when the call ends), then after it ended: the
    charger gets one CALL, the record keeps that CALL's id."""
    settings.OCPP_COMMAND_POLL_S = 0.05
    ChargingStationFactory(identity="CP-ONCE", site=world.site_a1)

    async def scenario():
        hold_layer()
        comm = communicator("CP-ONCE", headers=auth("CP-ONCE"))
        try:
            assert await handshake(comm) == ("accepted", "ocpp1.6")
            station = await database_sync_to_async(ChargingStation.objects.get)(identity="CP-ONCE")
            command = await run_db(
                command_create, station=station, action="ClearCache", request={}, timeout_s=30
            )
            frame = json.loads(await comm.receive_from(timeout=5))
            SlowLayer.released.set()
            await until(lambda: members("CP-ONCE"))
            layer = get_channel_layer()
            reply_to = await layer.new_channel()
            await layer.group_send(SERVERS_GROUP, word("CP-ONCE", command.pk, reply_to))
            second_while_running = await comm.receive_nothing(timeout=0.5)
            await comm.send_to(text_data=json.dumps([3, frame[1], {"status": "Accepted"}]))
            done = await asyncio.wait_for(layer.receive(reply_to), 5)
            await layer.group_send(SERVERS_GROUP, word("CP-ONCE", command.pk, None))
            second_after = await comm.receive_nothing(timeout=0.5)
        finally:
            SlowLayer.released.set()
            await comm.disconnect(timeout=10)
        return command, frame, second_while_running, done, second_after

    command, frame, second_while_running, done, second_after = asyncio.run(scenario())
    assert (frame[0], frame[2]) == (2, "ClearCache")
    assert (second_while_running, second_after) == (True, True)
    assert done == {"type": "ocpp.command.done", "command_id": command.pk}
    command.refresh_from_db()
    assert (command.status, command.unique_id) == ("answered", frame[1])


def test_rel_43_older_connection_in_another_process_closed_when_the_broadcast_goes_out_late(
    slow_layer, monkeypatch, caplog
):
    """The old connection is held by "another process" (a registry of its own, so that the new one cannot
    close it locally): it stays open while the new one's broadcast is held, and closes when it goes out. Its
    late disconnect leaves the station connected (station_disconnected's connection_id guard)."""
    station = ChargingStationFactory(identity="CP-OLD")

    async def scenario():
        SlowLayer.released = asyncio.Event()
        SlowLayer.released.set()
        old = communicator("CP-OLD", headers=auth("CP-OLD"))
        assert await handshake(old) == ("accepted", "ocpp1.6")
        await until(lambda: members("CP-OLD"))
        another_process(monkeypatch)
        hold_layer()
        new = communicator("CP-OLD", headers=auth("CP-OLD"))
        try:
            assert await handshake(new) == ("accepted", "ocpp1.6")
            assert await heartbeat(new) == [3, "h"]
            open_while_held = await old.receive_nothing(timeout=0.5)
            holder = await run_db(
                lambda: ChargingStation.objects.values_list("connection_id", flat=True).get()
            )
            SlowLayer.released.set()
            closed = await old.receive_output(timeout=5)
            await old.send_input({"type": "websocket.disconnect", "code": 1006})
            await old.wait(timeout=5)
            still_connected = await run_db(
                lambda: ChargingStation.objects.values_list("is_connected", flat=True).get()
            )
            answer = await heartbeat(new, "h2")
        finally:
            SlowLayer.released.set()
            await new.disconnect(timeout=10)
        return open_while_held, holder, closed, still_connected, answer

    with caplog.at_level(logging.INFO, logger="cpms.ocpp"):
        open_while_held, holder, closed, still_connected, answer = asyncio.run(scenario())
    assert open_while_held is True
    assert holder != ""
    assert closed == {"type": "websocket.close", "code": 1000}
    assert (still_connected, answer) == (True, [3, "h2"])
    assert [r.getMessage() for r in caplog.records if "replaced" in r.getMessage()] == [
        "CP-OLD: replaced by a newer connection"
    ]
    assert errors(caplog) == []
    station.refresh_from_db()
    assert station.is_connected is False  # the new one disconnected last, cleanly


def test_rel_43_older_connections_late_broadcast_never_closes_the_newer_one(slow_layer, monkeypatch):
    """Two connections of one charger in two processes, both linking late (released together, in any
    order): the older closes and the newer stays, whichever announcement goes out first."""
    ChargingStationFactory(identity="CP-RACE")

    async def scenario():
        hold_layer()
        older = communicator("CP-RACE", headers=auth("CP-RACE"))
        assert await handshake(older) == ("accepted", "ocpp1.6")
        another_process(monkeypatch)
        newer = communicator("CP-RACE", headers=auth("CP-RACE"))
        try:
            assert await handshake(newer) == ("accepted", "ocpp1.6")
            SlowLayer.released.set()
            closed = await older.receive_output(timeout=5)
            await older.send_input({"type": "websocket.disconnect", "code": 1006})
            await older.wait(timeout=5)
            await until(lambda: members("CP-RACE"))
            newer_left_open = await newer.receive_nothing(timeout=0.5)
            answer = await heartbeat(newer)
        finally:
            SlowLayer.released.set()
            await newer.disconnect(timeout=10)
        return closed, newer_left_open, answer

    assert asyncio.run(scenario()) == ({"type": "websocket.close", "code": 1000}, True, [3, "h"])


def test_rel_43_newer_connection_reannounces_when_an_older_ones_broadcast_arrives_last(slow_layer):
    """The order the previous test may or may not hit, forced: the older connection's announcement reaches
    the newer one (it joined too late to hear the newer's). The newer announces again, the older closes."""
    ChargingStationFactory(identity="CP-LATE")

    async def scenario():
        SlowLayer.released = asyncio.Event()
        SlowLayer.released.set()
        newer = communicator("CP-LATE", headers=auth("CP-LATE"))
        assert await handshake(newer) == ("accepted", "ocpp1.6")
        await until(lambda: members("CP-LATE"))
        layer = get_channel_layer()
        older = await layer.new_channel()  # the process of the older connection, joining now
        await layer.group_add(SERVERS_GROUP, older)
        await layer.group_send(
            SERVERS_GROUP, {"type": "ocpp.connections", "connections": [["CP-LATE", "0" * 32, 1.0]]}
        )
        heard = await asyncio.wait_for(layer.receive(older), 5)
        while heard["connections"][0][1] == "0" * 32:  # its own announcement comes back first
            heard = await asyncio.wait_for(layer.receive(older), 5)
        newer_left_open = await newer.receive_nothing(timeout=0.3)
        await newer.disconnect(timeout=10)
        return heard, newer_left_open

    heard, newer_left_open = asyncio.run(scenario())
    station = ChargingStation.objects.get(identity="CP-LATE")
    assert heard["type"] == "ocpp.connections"
    assert [(identity, at > 1.0) for identity, _, at in heard["connections"]] == [("CP-LATE", True)]
    assert newer_left_open is True
    assert station.is_connected is False


def test_rel_43_slow_layer_logs_one_warning_after_long_and_never_an_error(slow_layer, monkeypatch, caplog):
    monkeypatch.setattr(process_link, "LAYER_TIMEOUT_S", 0.05)
    monkeypatch.setattr(process_link, "LAYER_RETRY_S", 0.01)
    monkeypatch.setattr(process_link, "LAYER_RETRY_MAX_S", 0.02)
    monkeypatch.setattr(process_link, "LAYER_SLOW_S", 1.0)
    for n in range(3):
        ChargingStationFactory(identity=f"CP-BUSY-{n}")

    def slow_warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    async def scenario():
        hold_layer()
        comms = [communicator(f"CP-BUSY-{n}", headers=auth(f"CP-BUSY-{n}")) for n in range(3)]
        try:
            for comm in comms:
                assert await handshake(comm) == ("accepted", "ocpp1.6")
                assert await heartbeat(comm) == [3, "h"]

            async def warned() -> bool:
                return bool(slow_warnings())

            await until(warned, timeout_s=10)
            await asyncio.sleep(0.3)  # the three links keep retrying, well under LAYER_SLOW_S more
            SlowLayer.released.set()
            for n in range(3):
                await until(lambda n=n: members(f"CP-BUSY-{n}"))
        finally:
            SlowLayer.released.set()
            for comm in comms:
                await comm.disconnect(timeout=10)
        return SlowLayer.calls["new_channel"]

    with caplog.at_level(logging.INFO, logger="cpms.ocpp"):
        attempts = asyncio.run(scenario())
    assert attempts > 3  # retried, bounded attempts
    assert len(slow_warnings()) == 1
    assert slow_warnings()[0].startswith("channel layer slow: new_channel still not done after")
    assert errors(caplog) == []


def test_rel_43_failing_layer_logs_one_error_then_says_when_it_is_back(settings, monkeypatch, caplog):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": f"{__name__}.FailingLayer"}}
    FailingLayer.healed = False
    another_process(monkeypatch)
    monkeypatch.setattr(process_link, "layer_health", process_link.LayerHealth())
    monkeypatch.setattr(process_link, "LAYER_RETRY_S", 0.01)
    monkeypatch.setattr(process_link, "LAYER_RETRY_MAX_S", 0.02)
    for n in range(2):
        ChargingStationFactory(identity=f"CP-DOWN-{n}")

    async def scenario():
        comms = [communicator(f"CP-DOWN-{n}", headers=auth(f"CP-DOWN-{n}")) for n in range(2)]
        try:
            for comm in comms:
                assert await handshake(comm) == ("accepted", "ocpp1.6")
                assert await heartbeat(comm) == [3, "h"]
            await asyncio.sleep(0.2)  # both links fail again and again
            FailingLayer.healed = True
            for n in range(2):
                await until(lambda n=n: members(f"CP-DOWN-{n}"))
        finally:
            for comm in comms:
                await comm.disconnect(timeout=10)

    with caplog.at_level(logging.INFO, logger="cpms.ocpp"):
        asyncio.run(scenario())
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "channel layer" in r.getMessage()]
    assert said[0][0] == "ERROR"
    assert said[0][1].startswith("channel layer failed (new_channel)")
    assert said[1:] == [("INFO", "channel layer answering again")]
