"""The channel-layer transport of remote commands (stations.services.commands.CommandTransport).

Every OCPP server process has one channel in the group of all of them (cpms.ocpp.process_link.SERVERS_GROUP);
an issuer sends `{"type": "ocpp.command", "identity", "command_id", "reply_to"}` to that group, and the process
holding the charger's connection claims the command, sends it, records the outcome and sends
`ocpp.command.done` to `reply_to` (consumers.OcppConsumer.command_start). One publish per command, whatever
the number of processes. Without a channel layer, or when it fails, the issuer falls back to polling the record
(the Command row is the outbox either way).

A word can also reach nobody while the layer works: a process joins the group in the background (docs/
reliability.md case 43), and Redis pub/sub keeps nothing for a group with no member. The holder's poller (every
OCPP_COMMAND_POLL_S) sends such a command from the record, and the issuer, hearing nothing, re-reads it;
`command_claim` sends it once whichever comes first.
"""

import asyncio
import logging

from channels.layers import BaseChannelLayer, get_channel_layer

from cpms.ocpp.process_link import SERVERS_GROUP

logger = logging.getLogger(__name__)

LAYER_TIMEOUT_S = 3.0


class ChannelReply:
    """The issuer's reply channel. One long-lived receive: cancelling a pubsub receive would unsubscribe
    the channel, so a receive that outlives one `wait` is awaited again by the next."""

    def __init__(self, layer: BaseChannelLayer, channel: str):
        self.layer = layer
        self.channel = channel
        self._word: asyncio.Future | None = None

    async def wait(self, timeout_s: float) -> None:
        if self._word is None:
            self._word = asyncio.ensure_future(self.layer.receive(self.channel))
        done, _ = await asyncio.wait({self._word}, timeout=timeout_s)
        if done:
            word, self._word = self._word, None
            failure = word.exception()
            if failure is not None:
                raise failure

    def close(self) -> None:
        if self._word is not None:
            self._word.cancel()
            self._word = None


class ChannelLayerTransport:
    async def notify(self, *, identity: str, command_id: int, reply: bool) -> ChannelReply | None:
        layer = get_channel_layer()
        if layer is None:
            return None
        try:
            reply_to = await asyncio.wait_for(layer.new_channel(), LAYER_TIMEOUT_S) if reply else None
            await asyncio.wait_for(
                layer.group_send(
                    SERVERS_GROUP,
                    {
                        "type": "ocpp.command",
                        "identity": identity,
                        "command_id": command_id,
                        "reply_to": reply_to,
                    },
                ),
                LAYER_TIMEOUT_S,
            )
        except Exception:
            logger.warning(
                "channel layer unavailable; command %s goes by the database", command_id, exc_info=True
            )
            return None
        return ChannelReply(layer, reply_to) if reply_to else None
