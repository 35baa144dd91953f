"""The portal's live-status websocket (`/ws/live/`): browsers, not chargers.

The ASGI router wraps it in an Origin check (only pages served from our ALLOWED_HOSTS may open it: a foreign page
cannot ride the user's session cookie) and the session middleware. An anonymous user's handshake is refused;
a logged-in user's socket joins only the groups of what they may see (cpms.portal.live.user_live_groups) and is
read-only: whatever the browser sends is ignored.
"""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from cpms.portal.live import user_live_groups


class LiveStatusConsumer(AsyncJsonWebsocketConsumer):
    groups_joined: list[str]

    async def connect(self):
        self.groups_joined = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)  # before accept: the handshake is refused (HTTP 403)
            return
        self.groups_joined = await database_sync_to_async(user_live_groups)(user=user)
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "groups": len(self.groups_joined)})

    async def disconnect(self, code):
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """Browsers have nothing to say on this socket: anything they send (binary frames, text that is not
        JSON) is ignored without being parsed (the JSON consumer's own receive raises on both;
        docs/reliability.md case 46)."""

    async def live_event(self, message):
        await self.send_json(message["event"])

    async def live_events(self, message):
        """A batch of a group's events (cpms/portal/live.py): to the browser one by one, as they happened."""
        for event in message["events"]:
            await self.send_json(event)
