from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from console import live, metrics


class LiveConsumer(AsyncWebsocketConsumer):
    """Forwards ``fragment`` events of one topic to the browser.

    Permission is checked once, on connect; no queries per message.
    """

    async def connect(self):
        self.topic = self.scope["url_route"]["kwargs"]["topic"]
        user = self.scope.get("user")
        allowed = await database_sync_to_async(live.may_subscribe)(user, self.topic)
        if not allowed:
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(self.topic, self.channel_name)
        await self.accept()
        self.counted = True
        metrics.WEBSOCKETS.inc()

    async def disconnect(self, code):
        if getattr(self, "counted", False):
            metrics.WEBSOCKETS.dec()
            self.counted = False
        if getattr(self, "topic", None) and self.channel_layer is not None:
            await self.channel_layer.group_discard(self.topic, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        return  # the browser only listens

    async def fragment(self, event):
        await self.send(text_data=event["html"])
