"""Agents waiting for a decision, held on the event loop: no thread, no DB connection per waiter.

How a decision reaches a waiter, and why none is lost:

- Every status change of a request announces its id after commit
  (``approvals.live.notify_waiters``): one Redis ``PUBLISH`` on one channel per
  deployment (``decided_channel()``), and a direct wake-up of the waiters in the
  process that decided.
- Each server process (each event loop) has one listener: one Redis connection
  subscribed to that channel for as long as the process runs, and a registry
  ``request id -> Events`` of the agents waiting in this process. Nothing is
  subscribed per request, so a waiter costs no Redis round trip.
- A waiter registers its Event first, makes sure the listener's subscription is
  confirmed, and only then reads the row. A decision committed before that read
  is seen by it; one committed after it is published after the Event was
  registered, so the listener sets the Event.
- Messages published while the listener is disconnected are gone (pub/sub keeps
  nothing): once it has subscribed again it sets every registered Event, so
  every waiter re-reads its row.
- A slow re-read every ``RECHECK_S`` stays as the safety net (a connection that
  died silently), each time after a random part of it between half and all, so
  waiters that came together do not re-read together; without Redis, or while
  the listener cannot subscribe, waiters re-read every ``POLL_S``.
- A final decision's message may carry the answer itself (rendered from the
  committed row): a waiter whose first read showed the request is its own may
  answer with it (``from_message``) instead of reading the row again. Decisions
  are final, so such a message never goes stale.

Without ``REDIS_URL`` (the embedded mode, one process) only the direct wake-up runs.
"""

import asyncio
import json
import logging
import os
import random
import threading
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable

from django.conf import settings

log = logging.getLogger(__name__)

RECHECK_S = 10.0  # re-read the row this often even when no message came (safety net)
POLL_S = 1.0  # re-read this often while the listener is not subscribed
SUBSCRIBE_WAIT_S = 2.0  # how long a waiter waits for the listener's subscription before polling
RECONNECT_MAX_S = 2.0
IDLE_READ_S = 5.0  # the listener's blocking read returns this often to check its connection

# A hook for benchmarks: called as observe(request_id, message) when the listener receives a message.
observe: Callable[[int, dict], None] | None = None


def decided_channel() -> str:
    """The pub/sub channel of this deployment: every process of one console (one database) uses the same name.

    Pub/sub ignores Redis database numbers, so the name carries the database's, keeping two consoles
    (or two test runs) on one Redis server apart.
    """
    from django.db import connections

    db = connections["default"].settings_dict
    return f"console:approvals:decided:{db.get('HOST') or ''}:{db.get('PORT') or ''}:{db.get('NAME')}"


class _Listener:
    """One per event loop: the registry of this loop's waiters and the task that wakes them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, redis_url: str | None):
        self.loop, self.redis_url = loop, redis_url
        self.events: dict[int, set[asyncio.Event]] = defaultdict(set)
        self.messages: dict[int, dict] = {}  # the last message about each request someone here waits on
        self.subscribed = asyncio.Event()
        self.subscriptions = 0  # confirmed subscriptions so far (1 + reconnections)
        self.name = f"console-approval-waiters-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if redis_url:
            self.task = loop.create_task(self._listen(), name="approval-waiters")
        else:
            self.task = None
            self.subscribed.set()  # nothing to subscribe to: only direct wake-ups

    def alive(self) -> bool:
        return not self.loop.is_closed() and (self.task is None or not self.task.done())

    # -- the registry (event loop only) --

    def register(self, pk: int) -> asyncio.Event:
        event = asyncio.Event()
        self.events[pk].add(event)
        return event

    def unregister(self, pk: int, event: asyncio.Event) -> None:
        events = self.events.get(pk)
        if events is not None:
            events.discard(event)
            if not events:
                del self.events[pk]
                self.messages.pop(pk, None)

    def wake(self, pk: int, message: dict | None = None) -> None:
        events = self.events.get(pk)
        if not events:
            return
        if message is not None:
            self.messages[pk] = message
        for event in events:
            event.set()

    def wake_all(self) -> None:
        for events in self.events.values():
            for event in events:
                event.set()

    # -- the Redis side --

    async def _connect(self):
        import redis.asyncio as redis

        client = redis.Redis.from_url(self.redis_url, client_name=self.name, socket_connect_timeout=5,
                                      socket_keepalive=True)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(decided_channel())
        except BaseException:
            await _quietly(pubsub.aclose())
            await _quietly(client.aclose())
            raise
        return client, pubsub

    async def _listen(self) -> None:
        delay = 0.05
        while True:
            client = pubsub = None
            try:
                client, pubsub = await self._connect()
                while True:
                    message = await pubsub.get_message(timeout=IDLE_READ_S)
                    if message is None:
                        await pubsub.ping()  # an idle connection still answers (a dead one raises)
                        continue
                    if message["type"] == "subscribe":
                        self._on_subscribed()
                        delay = 0.05
                    elif message["type"] == "message":
                        self._on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - reconnect; waiters re-read their rows meanwhile
                log.warning("approval waiters: Redis listener lost its connection; reconnecting", exc_info=True)
            finally:
                self.subscribed.clear()
                if pubsub is not None:
                    await _quietly(pubsub.aclose())
                if client is not None:
                    await _quietly(client.aclose())
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _on_subscribed(self) -> None:
        self.subscriptions += 1
        self.subscribed.set()
        if self.subscriptions > 1:
            # Anything published while we were away is lost: every waiter re-reads its row.
            self.wake_all()

    def _on_message(self, data: bytes) -> None:
        try:
            message = json.loads(data)
            pk = int(message["id"])
        except (ValueError, KeyError, TypeError):
            log.warning("approval waiters: ignored a malformed message %r", data[:200])
            return
        if observe is not None:
            observe(pk, message)
        self.wake(pk, message)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await _quietly(self.task)


async def _quietly(awaitable) -> None:
    try:
        await awaitable
    except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing is best effort
        pass


_listeners: dict[int, _Listener] = {}  # id(loop) -> the loop's listener
_listeners_lock = threading.Lock()


def _listener() -> _Listener:
    """This loop's listener, started on first use; a dead one (closed loop, crashed task) is replaced."""
    loop = asyncio.get_running_loop()
    listener = _listeners.get(id(loop))
    if listener is None or listener.loop is not loop or not listener.alive():
        fresh = _Listener(loop, getattr(settings, "REDIS_URL", None) or None)
        if listener is not None and listener.loop is loop:
            fresh.events = listener.events  # waiters of a crashed listener move over
            fresh.loop.call_soon(fresh.wake_all)
        with _listeners_lock:
            _listeners[id(loop)] = listener = fresh
    return listener


def wake_local(pk: int, message: dict | None = None) -> None:
    """Wake this process's waiters on ``pk`` at once, from any thread (the decision was made here)."""
    with _listeners_lock:
        listeners = list(_listeners.values())
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for listener in listeners:
        if pk not in listener.events:
            continue
        if listener.loop is running:
            listener.wake(pk, message)
        else:
            try:
                listener.loop.call_soon_threadsafe(listener.wake, pk, message)
            except RuntimeError:  # that loop is closed
                pass


async def wait_until_decided(pk: int, wait: float, load: Callable[[], Awaitable], is_final: Callable,
                             from_message: Callable[[dict], object] | None = None) -> object:
    """``load()`` once, then again after each wake-up until ``is_final(result)`` or ``wait`` seconds end.

    Never misses a decision: the wake-up is registered before the first ``load()``, and a waiter
    re-reads at least every RECHECK_S (every POLL_S while the listener is not subscribed).
    ``from_message(message)`` may turn the message that woke the waiter into the result (None: read
    instead); it is asked only after a first ``load()`` that was not final.
    """
    if wait <= 0:
        return await load()
    listener = _listener()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    event = listener.register(pk)
    try:
        if not listener.subscribed.is_set():
            try:
                await asyncio.wait_for(listener.subscribed.wait(), timeout=min(SUBSCRIBE_WAIT_S, wait))
            except TimeoutError:
                log.warning("approval waiters: not subscribed after %.1f s; polling", SUBSCRIBE_WAIT_S)
        current = await load()
        while not is_final(current) and (left := deadline - loop.time()) > 0:
            # Spread over (RECHECK_S/2, RECHECK_S]: agents that arrived together do not all re-read together.
            recheck = RECHECK_S * (1 - random.random() / 2) if listener.subscribed.is_set() else POLL_S
            try:
                await asyncio.wait_for(event.wait(), timeout=min(left, recheck))
            except TimeoutError:
                pass
            event.clear()  # before the read: a wake-up arriving during the read is kept
            message = listener.messages.get(pk) if from_message is not None else None
            carried = from_message(message) if message is not None else None
            current = carried if carried is not None and is_final(carried) else await load()
        return current
    finally:
        listener.unregister(pk, event)


def waiting_count() -> int:
    """Requests with at least one waiter in this process (all loops)."""
    with _listeners_lock:
        return sum(len(listener.events) for listener in _listeners.values())


async def stop() -> None:
    """Stop this loop's listener (tests, shutdown)."""
    with _listeners_lock:
        listener = _listeners.pop(id(asyncio.get_running_loop()), None)
    if listener is not None:
        await listener.stop()
