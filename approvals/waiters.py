"""Agents waiting for a decision, held on the event loop: no thread, no DB connection per waiter.

One listener task per process (per event loop) receives on one channel-layer
channel and sets an ``asyncio.Event`` per waiting request. The channel joins
the group ``approval-<id>`` while anyone in this process waits on that
request; ``decide_request`` (any process) notifies the group after commit.
Waiters cancel only their Event wait, never a channel-layer receive, so a
timed-out waiter cannot disturb the shared receive loop. A slow DB re-check
every ``RECHECK_S`` bounds the effect of a lost message.
"""

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable

from channels.layers import get_channel_layer

from approvals.live import WAITER_GROUP

log = logging.getLogger(__name__)

RECHECK_S = 10.0
SAFE_BLOCK_S = 2
SUBSCRIBE_CONCURRENCY = 20


class _Registry:
    def __init__(self, loop: asyncio.AbstractEventLoop, layer, channel: str):
        self.loop, self.layer, self.channel = loop, layer, channel
        self.events: dict[int, set[asyncio.Event]] = defaultdict(set)
        # Hundreds of agents arriving at once must not open hundreds of Redis connections.
        self.subscribing = asyncio.Semaphore(SUBSCRIBE_CONCURRENCY)
        self.task = loop.create_task(self._listen(), name="approval-waiters")

    async def _listen(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep listening; waiters re-check the DB anyway
                if "Timeout" in type(exc).__name__:
                    continue  # an idle blocking read timed out (redis); messages wait in the channel
                log.warning("approval waiter listener: receive failed", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            for event in list(self.events.get(message.get("id"), ())):
                event.set()

    async def join(self, pk: int, event: asyncio.Event) -> None:
        first = not self.events.get(pk)
        self.events[pk].add(event)
        if first:
            async with self.subscribing:
                await self.layer.group_add(WAITER_GROUP.format(pk), self.channel)

    async def leave(self, pk: int, event: asyncio.Event) -> None:
        events = self.events.get(pk)
        if events is None:
            return
        events.discard(event)
        if not events:
            del self.events[pk]
            try:
                async with self.subscribing:
                    await self.layer.group_discard(WAITER_GROUP.format(pk), self.channel)
                    if self.events.get(pk):  # someone joined while we left: keep the channel in the group
                        await self.layer.group_add(WAITER_GROUP.format(pk), self.channel)
            except Exception:  # noqa: BLE001 - the group entry expires on its own
                pass


_registries: dict[int, _Registry] = {}


async def _registry() -> _Registry | None:
    layer = get_channel_layer()
    if layer is None:
        return None
    if getattr(layer, "brpop_timeout", 0) >= SAFE_BLOCK_S + 1:
        # channels_redis blocks 5 s in BZPOPMIN while redis-py 8 reads with a default 5 s socket
        # timeout: a message popped as the read times out is lost (seen as "Timeout reading from
        # redis" and multi-second wake-ups in bench_approvals). Block for less than the socket timeout.
        # The proper fix is a socket_timeout above brpop_timeout in CHANNEL_LAYERS (console/settings.py).
        layer.brpop_timeout = SAFE_BLOCK_S
    loop = asyncio.get_running_loop()
    registry = _registries.get(id(loop))
    if registry is None or registry.loop is not loop or registry.task.done():
        channel = await layer.new_channel("approval-waiters.")
        registry = _registries[id(loop)] = _Registry(loop, layer, channel)
    return registry


async def wait_until_decided(pk: int, wait: float, load: Callable[[], Awaitable], is_final: Callable) -> object:
    """``load()`` once, then again after each wake-up (and every RECHECK_S) until ``is_final`` or ``wait`` ends."""
    registry = await _registry() if wait > 0 else None
    if registry is None:
        return await load()
    event = asyncio.Event()
    recheck = RECHECK_S
    try:
        await registry.join(pk, event)
    except Exception:  # noqa: BLE001 - without the channel layer, fall back to reading the row every second
        log.warning("approval waiter: could not join the group of %s; polling", pk, exc_info=True)
        recheck = 1.0
    try:
        current = await load()  # after joining: a decision committed meanwhile is seen here
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not is_final(current) and (left := deadline - loop.time()) > 0:
            try:
                await asyncio.wait_for(event.wait(), timeout=min(left, recheck))
            except TimeoutError:
                pass
            event.clear()
            current = await load()
        return current
    finally:
        await registry.leave(pk, event)


async def stop() -> None:
    """Stop this loop's listener (tests, shutdown)."""
    registry = _registries.pop(id(asyncio.get_running_loop()), None)
    if registry is not None:
        registry.task.cancel()
        try:
            await registry.task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001
            pass
