"""The charger connections a server process holds, and the process's one presence on the channel layer.

Issue 13: the cost of a connected charger must be close to the transport's. Channels' usual pattern, a
channel and a group membership per connection, costs a pub/sub subscription, a receive task and three
channel-layer round trips per charger (a storm of 10,000 is 30,000 calls queued behind the layer's lock). Here
a process has one channel, joined once to the group of all OCPP server processes (SERVERS_GROUP), and routes
what arrives to the connection it names, from the in-memory registry below:

- `ocpp.command` (identity, command id, reply_to): a remote command for a charger; the process holding it
  sends it (stations.services.commands; issued by cpms.ocpp.transport). Every process hears every command
  and all but the holder ignore it: one publish per command whatever the number of processes.
- `ocpp.connections` (a list of identity, connection id, connected-at): the connections this process
  accepted lately, announced together every LINK_BATCH_S. A process holding an older connection of one of
  those chargers closes it (docs/reliability.md case 6); one holding a newer one announces it again, so that an
  older connection announced late still hears of the newer (OcppConsumer.heard).

Nothing of this is on the handshake's path (docs/reliability.md case 43): the link is made in the background,
retried while the layer is slow or down, and until it is in place commands reach the process's chargers by the
database: `_poll` sends every OCPP_COMMAND_POLL_S the pending commands of the stations held here, and
`command_claim` keeps a command from being sent twice when the word of the layer comes too. Announcements
wait for the link (a process announces only once it can hear the others).
"""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from channels.layers import get_channel_layer
from django.conf import settings

from cpms.ocpp.chargepoint import run_db
from stations.services.commands import command_pending_for

if TYPE_CHECKING:
    from cpms.ocpp.consumers import OcppConsumer

logger = logging.getLogger(__name__)

# The group every OCPP server process joins (one member per process).
SERVERS_GROUP = "ocpp.servers"
# Connections accepted within this long are announced in one message.
LINK_BATCH_S = 0.05
# One call of the link (new_channel, group_add, group_send) may take this long before it is given up (a layer
# that hangs) and tried again after a pause that starts at LAYER_RETRY_S and doubles up to LAYER_RETRY_MAX_S
# (jittered). A call that is merely slow is waited for.
LAYER_TIMEOUT_S = 60.0
LAYER_RETRY_S = 1.0
LAYER_RETRY_MAX_S = 60.0
# A link still not in place after this long is worth a WARNING (at most one per LAYER_SLOW_S per process).
LAYER_SLOW_S = 30.0


class LayerHealth:
    """What this process says about its channel layer, said once rather than per connection: an ERROR with
    the traceback when a call fails, and nothing more until a call succeeds again (then an INFO); a WARNING
    when the link has waited LAYER_SLOW_S, at most once per LAYER_SLOW_S. A layer that is merely busy (calls
    that take long but succeed) logs nothing before that: the chargers are served meanwhile and their commands
    go by the database."""

    def __init__(self):
        self.failing = False
        self._slow_said_at: float | None = None

    def ok(self) -> None:
        if self.failing:
            self.failing = False
            logger.info("channel layer answering again")

    def failed(self, what: str, exc: BaseException) -> None:
        if self.failing:
            logger.debug("channel layer still failing (%s): %r", what, exc)
            return
        self.failing = True
        logger.error(
            "channel layer failed (%s); the chargers are served and their commands go by the database "
            "until it answers again",
            what,
            exc_info=exc,
        )

    def slow(self, what: str, waited_s: float) -> None:
        if waited_s < LAYER_SLOW_S:
            return
        now = asyncio.get_running_loop().time()
        if self._slow_said_at is not None and now - self._slow_said_at < LAYER_SLOW_S:
            return
        self._slow_said_at = now
        logger.warning(
            "channel layer slow: %s still not done after %.0f s (retrying); commands reach this process's "
            "chargers through the database meanwhile",
            what,
            waited_s,
        )


layer_health = LayerHealth()


def _backoff(delay: float) -> tuple[float, float]:
    """The jittered pause before the next attempt, and the delay after it."""
    return random.uniform(0.5, 1.5) * delay, min(2 * delay, LAYER_RETRY_MAX_S)


class ProcessConnections:
    """Per server process (per event loop): the consumers holding this process's chargers, by station and by
    identity; the command poller; the link."""

    def __init__(self):
        self.by_station: dict[int, OcppConsumer] = {}
        self.by_identity: dict[str, OcppConsumer] = {}
        self.channel_name = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        # The announcements waiting for the next batch: identity -> (connection id, connected at).
        self._announce: dict[str, tuple[str, float]] = {}
        self._linked = asyncio.Event()
        self._flush_due = False

    # --- the registry ------------------------------------------------------------------------------
    def hold(self, consumer: "OcppConsumer") -> None:
        """`consumer` holds its station from now on. An older connection of the same station in this process
        is closed at once (docs/reliability.md case 6); other processes hear of the new one by the link."""
        self._start()
        assert consumer.cp is not None
        station_id = consumer.cp.station.station_id
        previous = self.by_station.get(station_id)
        self.by_station[station_id] = consumer
        self.by_identity[consumer.identity] = consumer
        if previous is not None and previous is not consumer:
            if previous.identity != consumer.identity:
                self.by_identity.pop(previous.identity, None)
            previous.supersede()
        self.announce(consumer)

    def release(self, consumer: "OcppConsumer") -> None:
        assert consumer.cp is not None
        if self.by_station.get(consumer.cp.station.station_id) is consumer:
            del self.by_station[consumer.cp.station.station_id]
        if self.by_identity.get(consumer.identity) is consumer:
            del self.by_identity[consumer.identity]

    def announce(self, consumer: "OcppConsumer") -> None:
        """Tell the other processes, with the next batch, that `consumer` is the connection of its charger."""
        if get_channel_layer() is None:
            return
        self._announce[consumer.identity] = (consumer.connection_id, consumer.connected_at)
        if self._linked.is_set() and not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_later(LINK_BATCH_S, self._flush_start)

    # --- the tasks of this process's loop ------------------------------------------------------------
    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop and all(not task.done() for task in self._tasks):
            return
        # A loop that ended (a test's) is replaced: each loop has its own channel and tasks.
        for task in self._tasks:
            if not task.get_loop().is_closed():  # a closed loop's tasks are gone with it
                task.cancel()
        self._loop = loop
        self._linked = asyncio.Event()
        self._flush_due = False
        self.channel_name = ""
        self._tasks = [loop.create_task(self._poll())]
        if get_channel_layer() is not None:
            self._tasks.append(loop.create_task(self._link()))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(settings.OCPP_COMMAND_POLL_S)
            if not self.by_station:
                continue
            try:
                pending = await run_db(command_pending_for, station_ids=list(self.by_station))
            except Exception:
                logger.exception("looking for pending commands failed")
                continue
            for command_id, station_id in pending:
                consumer = self.by_station.get(station_id)
                if consumer is not None:
                    consumer.command_start(command_id, reply_to=None)

    async def _link(self) -> None:
        layer = get_channel_layer()
        assert layer is not None  # started only with a layer (_start)
        started_at = asyncio.get_running_loop().time()
        self.channel_name = await self._retry("new_channel", layer.new_channel, started_at)
        await self._retry("group_add", lambda: layer.group_add(SERVERS_GROUP, self.channel_name), started_at)
        self._linked.set()
        if self._announce:
            self._flush_due = True
            self._flush_start()
        delay = LAYER_RETRY_S
        while True:
            try:
                message = await layer.receive(self.channel_name)
            except Exception as exc:
                layer_health.failed("receive", exc)
                pause, delay = _backoff(delay)
                await asyncio.sleep(pause)
                continue
            delay = LAYER_RETRY_S
            layer_health.ok()
            try:
                self._dispatch(message)
            except Exception:
                logger.exception("channel-layer message %r not handled", message.get("type"))

    def _dispatch(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "ocpp.command":
            consumer = self.by_identity.get(message["identity"])
            if consumer is not None:
                consumer.command_start(message["command_id"], reply_to=message.get("reply_to"))
        elif kind == "ocpp.connections":
            for identity, connection_id, connected_at in message["connections"]:
                consumer = self.by_identity.get(identity)
                if consumer is not None:
                    consumer.heard(connection_id=connection_id, connected_at=connected_at)

    def _flush_start(self) -> None:
        task = asyncio.get_running_loop().create_task(self._flush())
        self._tasks.append(task)
        task.add_done_callback(self._tasks_prune)

    def _tasks_prune(self, task: asyncio.Task) -> None:
        if task in self._tasks:
            self._tasks.remove(task)

    async def _flush(self) -> None:
        """Send the waiting announcements as one message (retried until the layer takes it)."""
        self._flush_due = False
        if not self._announce:
            return
        batch, self._announce = self._announce, {}
        message = {
            "type": "ocpp.connections",
            "connections": [[identity, *connection] for identity, connection in batch.items()],
        }
        layer = get_channel_layer()
        assert layer is not None  # announcements wait for the link, made only with a layer
        await self._retry(
            "group_send", lambda: layer.group_send(SERVERS_GROUP, message), asyncio.get_running_loop().time()
        )

    @staticmethod
    async def _retry(what: str, call: Callable[[], Awaitable], started_at: float):
        """`call()` until it succeeds. A slow attempt is waited for, not cancelled early: the pub/sub layer
        serves a process's calls in turn behind one lock, and a cancelled call would lose its place. It is
        given up after LAYER_TIMEOUT_S (a layer that hangs), and a failed or given-up attempt is tried again
        after a growing, jittered pause."""
        loop = asyncio.get_running_loop()
        delay = LAYER_RETRY_S
        while True:
            attempt = asyncio.ensure_future(call())
            deadline = loop.time() + LAYER_TIMEOUT_S
            try:
                while not attempt.done() and loop.time() < deadline:
                    await asyncio.wait({attempt}, timeout=min(LAYER_SLOW_S, deadline - loop.time()))
                    if not attempt.done():
                        layer_health.slow(what, loop.time() - started_at)
            except asyncio.CancelledError:
                attempt.cancel()
                raise
            if not attempt.done():
                attempt.cancel()
            elif (failure := attempt.exception()) is None:
                layer_health.ok()
                return attempt.result()
            else:
                layer_health.failed(what, failure)
            pause, delay = _backoff(delay)
            await asyncio.sleep(pause)


held = ProcessConnections()
