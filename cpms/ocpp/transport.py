"""The channel-layer transport of remote commands (stations.services.commands.CommandTransport).

Every server process adds the consumer of a station's connection to the station's group
(`station_group`); an issuer sends `{"type": "ocpp.command", "command_id", "reply_to"}` to that group, and
the consumer that holds the connection claims the command, sends it, records the outcome and sends
`ocpp.command.done` to `reply_to` (consumers.OcppConsumer.ocpp_command). Without a channel layer, or when
it fails, the issuer falls back to polling the record (the Command row is the outbox either way).

A word can also reach nobody while the layer works: a connection joins its group in the background, after
the charger is accepted (docs/reliability.md case 43), and Redis pub/sub keeps nothing for a group with no
member. The holder's poller (consumers.CommandPoller, every OCPP_COMMAND_POLL_S) sends such a command from
the record, and the issuer, hearing nothing, re-reads it; `command_claim` sends it once whichever comes first.
"""

import asyncio
import hashlib
import logging

from channels.layers import BaseChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)

LAYER_TIMEOUT_S = 3.0


def station_group(identity: str) -> str:
    """Channel-layer group of a station. Group names allow only [A-Za-z0-9._-] and < 100 characters,
    identities allow more, so the group is named by a hash of the identity."""
    return "ocpp.station." + hashlib.sha256(identity.encode()).hexdigest()[:40]


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
                    station_group(identity),
                    {"type": "ocpp.command", "command_id": command_id, "reply_to": reply_to},
                ),
                LAYER_TIMEOUT_S,
            )
        except Exception:
            logger.warning(
                "channel layer unavailable; command %s goes by the database", command_id, exc_info=True
            )
            return None
        return ChannelReply(layer, reply_to) if reply_to else None
