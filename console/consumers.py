import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from console import live, metrics

log = logging.getLogger(__name__)


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
        try:
            await self.channel_layer.group_add(self.topic, self.channel_name)
        except Exception:  # noqa: BLE001 - layer down (Redis outage): refuse cleanly, the page retries
            log.warning("live: cannot join %s, channel layer unavailable", self.topic, exc_info=True)
            await self.close(code=1011)
            return
        await self.accept()
        self.counted = True
        metrics.WEBSOCKETS.inc()

    async def disconnect(self, code):
        joined = getattr(self, "counted", False)
        if not joined:
            return
        self.counted = False
        metrics.WEBSOCKETS.dec()
        if self.channel_layer is not None:
            try:
                await self.channel_layer.group_discard(self.topic, self.channel_name)
            except Exception:  # noqa: BLE001 - the group entry expires on its own
                log.debug("live: group_discard failed", exc_info=True)

    async def receive(self, text_data=None, bytes_data=None):
        return  # the browser only listens

    async def fragment(self, event):
        await self.send(text_data=event["html"])
