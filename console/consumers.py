import asyncio
import logging
import random

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from console import live, metrics

log = logging.getLogger(__name__)

# How long a socket may sit on a subscription the channel layer lost (Redis restarted) before it
# is closed; the htmx ws extension then reconnects and the page catches up over HTTP.
SUBSCRIPTION_CHECK_S = 15.0
CLOSE_LAYER_FAILED = 1011  # codes the vendored htmx ws extension reconnects on: 1006, 1011, 1012, 1013
CLOSE_SUBSCRIPTION_LOST = 1012


def _is_outage(exc: BaseException) -> bool:
    """A connection-level failure of the channel layer (Redis down or restarting), not a bug."""
    return isinstance(exc, (OSError, ConnectionError, TimeoutError)) or type(exc).__module__.startswith("redis")


class LiveConsumer(AsyncWebsocketConsumer):
    """Forwards ``fragment`` events of one topic to the browser.

    Permission is checked once, on connect; no queries per message. A socket
    whose group membership was lost, or whose channel layer fails, is closed
    with a code the browser reconnects on: a silent socket is never left open.
    """

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        except Exception as exc:  # noqa: BLE001 - e.g. the layer's receive failed (Redis down)
            topic = scope.get("url_route", {}).get("kwargs", {}).get("topic")
            if _is_outage(exc):
                log.warning("live: closing a %s socket, channel layer failed: %r", topic, exc)
            else:
                log.exception("live: closing a %s socket after an error", topic)
            try:
                await send({"type": "websocket.close", "code": CLOSE_LAYER_FAILED})  # the page reconnects
            except Exception:  # noqa: BLE001 - the browser is gone already
                pass
            await self._leave()
        finally:
            self._stop_watching()
            if getattr(self, "counted", False):  # cancelled without a disconnect (server shutdown)
                self.counted = False
                metrics.WEBSOCKETS.dec()

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
            await self.close(code=CLOSE_LAYER_FAILED)
            return
        await self.accept()
        self.counted = True
        metrics.WEBSOCKETS.inc()
        self.watcher = asyncio.create_task(self._watch_subscription(), name=f"live-watch-{self.topic}")

    async def _watch_subscription(self):
        while True:
            # spread over the interval so a thousand sockets do not renew in the same instant
            await asyncio.sleep(SUBSCRIPTION_CHECK_S * random.uniform(0.5, 1.0))
            try:
                kept = await live.renew_subscription(self.topic, self.channel_name)
            except Exception as exc:  # noqa: BLE001
                log.warning("live: closing a %s socket, channel layer unavailable: %r", self.topic, exc)
                await self.close(code=CLOSE_LAYER_FAILED)
                return
            if not kept:
                log.warning("live: closing a %s socket, its subscription was lost (channel layer restarted?)",
                            self.topic)
                await self.close(code=CLOSE_SUBSCRIPTION_LOST)
                return

    async def disconnect(self, code):
        await self._leave()

    def _stop_watching(self):
        watcher = getattr(self, "watcher", None)
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()

    async def _leave(self):
        self._stop_watching()
        if not getattr(self, "counted", False):
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
