"""Live fragments over WebSocket.

Apps push rendered partials to groups (``dashboard``, ``run-<id>``,
``queue-<id>``); the one consumer forwards them to browsers, where the htmx
WebSocket extension swaps them in by id. Pushes never raise: a broken channel
layer degrades live updates, never the request that triggered them.
"""

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from console.roles import STAFF_ROLES, has_role

log = logging.getLogger(__name__)

# topic prefix -> check(user, rest) -> bool, evaluated once on connect
_TOPICS: dict[str, Callable] = {}


def register_topic(prefix: str, check: Callable) -> None:
    _TOPICS[prefix] = check


def any_role(user, rest: str) -> bool:
    return has_role(user, *STAFF_ROLES)


def may_subscribe(user, topic: str) -> bool:
    """``topic`` is ``name`` or ``name-<rest>``; unknown topics are refused."""
    if not getattr(user, "is_authenticated", False):
        return False
    name, _, rest = topic.partition("-")
    check = _TOPICS.get(name)
    return bool(check and check(user, rest))


_server_loop: asyncio.AbstractEventLoop | None = None
_pending_sends: set[asyncio.Task] = set()  # keeps scheduled sends alive until done


def bind_server_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    """Remember the ASGI server's loop (set at lifespan startup).

    The in-memory layer's queues belong to that loop, so pushes from other
    threads (the embedded scheduler) must run there, not in a loop of their own.
    """
    global _server_loop, _outbox_draining
    _server_loop = loop
    with _outbox_lock:
        _outbox.clear()
        _outbox_draining = False


_TRACEBACK_EVERY_S = 30.0
_last_traceback = 0.0


def _push_failed(group: str, exc: BaseException) -> None:
    """One line per failed push; the full traceback at most every 30 s, so an outage of the
    channel layer does not bury the log under identical tracebacks."""
    global _last_traceback
    now = time.monotonic()
    if now - _last_traceback >= _TRACEBACK_EVERY_S:
        _last_traceback = now
        log.warning("live push to %s failed", group, exc_info=exc)
    else:
        log.warning("live push to %s failed: %r", group, exc)


# Pushes from other threads (stream detectors, job runners) beside a running server loop wait here, in
# order, for that loop's one sender task: the thread goes on at once. It waited for each send before,
# so a busy loop held the detectors for up to 5 s per incident (rounds of 300 s under load).
OUTBOX_MAX = 1000  # past this many unsent pushes, more are dropped (logged): the pages catch up over HTTP
_outbox: deque[tuple[str, str]] = deque()
_outbox_lock = threading.Lock()
_outbox_draining = False  # a sender task is scheduled or running on the server loop


def _hand_to_server_loop(loop: asyncio.AbstractEventLoop, group: str, html: str) -> bool:
    global _outbox_draining
    with _outbox_lock:
        if len(_outbox) >= OUTBOX_MAX:
            full = True
        else:
            full = False
            _outbox.append((group, html))
            start, _outbox_draining = not _outbox_draining, True
    if full:
        _push_failed(group, OverflowError(f"{OUTBOX_MAX} pushes wait for the server loop; this one is dropped"))
        return False
    if start:
        try:
            loop.call_soon_threadsafe(_start_outbox_sender, loop)
        except RuntimeError as exc:  # the loop closed meanwhile
            with _outbox_lock:
                _outbox.clear()
                _outbox_draining = False
            _push_failed(group, exc)
            return False
    return True


def _start_outbox_sender(loop: asyncio.AbstractEventLoop) -> None:
    task = loop.create_task(_send_outbox())
    _pending_sends.add(task)
    task.add_done_callback(_pending_sends.discard)


async def _send_outbox() -> None:
    global _outbox_draining
    while True:
        with _outbox_lock:
            if not _outbox:
                _outbox_draining = False
                return
            group, html = _outbox.popleft()
        await asend_to_group(group, html)  # logs its own failure


def send_to_group(group: str, html: str) -> bool:
    """Send a fragment to every browser subscribed to ``group``; False if it failed.

    Callable from any thread, never waiting on the server loop. From inside a running loop it
    schedules the send; from a thread beside the server's loop it queues it for that loop
    (True: queued, in order; a failed send is logged); elsewhere it sends at once.
    """
    layer = get_channel_layer()
    if layer is None:
        return False
    message = {"type": "fragment", "html": html}
    try:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            task = running.create_task(asend_to_group(group, html))
            _pending_sends.add(task)
            task.add_done_callback(_pending_sends.discard)
        elif _server_loop is not None and _server_loop.is_running():
            return _hand_to_server_loop(_server_loop, group, html)
        else:
            async_to_sync(layer.group_send)(group, message)
    except Exception as exc:  # noqa: BLE001 - live updates are best effort by design
        _push_failed(group, exc)
        return False
    return True


async def asend_to_group(group: str, html: str) -> bool:
    layer = get_channel_layer()
    if layer is None:
        return False
    try:
        await layer.group_send(group, {"type": "fragment", "html": html})
    except Exception as exc:  # noqa: BLE001
        _push_failed(group, exc)
        return False
    return True


async def renew_subscription(group: str, channel: str) -> bool:
    """Re-add ``channel`` to ``group``; False if it had been dropped meanwhile.

    A Redis restart (or failover) forgets every group, and channels_redis drops
    members older than its ``group_expiry``: either way the socket would stay
    open and silently receive nothing. Renewing also resets that age. Raises
    when the channel layer is unreachable.
    """
    layer = get_channel_layer()
    if hasattr(layer, "_group_key") and hasattr(layer, "consistent_hash"):  # channels_redis
        key = layer._group_key(group)
        connection = layer.connection(layer.consistent_hash(group))
        async with connection.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {channel: time.time()})
            pipe.expire(key, layer.group_expiry)
            added, _ = await pipe.execute()
        return not added
    known = isinstance(getattr(layer, "groups", None), dict)  # the in-memory layer
    was_member = channel in layer.groups.get(group, {}) if known else True
    await layer.group_add(group, channel)
    return was_member


def on_commit(fn: Callable[[], object]) -> None:
    """Run a push after the surrounding transaction commits (at once outside one)."""
    transaction.on_commit(fn, robust=True)
