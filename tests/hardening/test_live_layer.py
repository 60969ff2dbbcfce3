"""Live sockets on the real Redis channel layer, in one process as under the ASGI server.

- A waiting agent (the approval waiters' Redis pub/sub listener) and browser sockets (the
  channels_redis receive loop) run in one process: neither may starve the other of messages.
- A socket whose group membership the layer lost (Redis restarted without its data) is closed
  with a code the htmx ws extension reconnects on, so the page re-subscribes and catches up;
  a socket whose membership is intact stays open.
"""

import asyncio
import os

import pytest
import redis.asyncio as aioredis
from channels.testing import WebsocketCommunicator

from approvals import waiters
from console import consumers, live
from console.consumers import LiveConsumer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def layer(fresh_channel_layer):
    yield fresh_channel_layer
    await waiters.stop()


def _socket(user, topic="dashboard") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), f"/ws/live/{topic}/")
    communicator.scope["user"] = user
    communicator.scope["url_route"] = {"kwargs": {"topic": topic}}
    return communicator


async def _start_waiting_agent(pk: int) -> asyncio.Task:
    """An agent in ``GET /api/v1/approvals/{pk}?wait=30``, as the ASGI fast path holds it."""
    loaded = asyncio.Event()

    async def load():
        loaded.set()
        return "pending"

    task = asyncio.create_task(waiters.wait_until_decided(pk, 30, load, lambda state: state != "pending"))
    await asyncio.wait_for(loaded.wait(), timeout=15)  # subscribed (or polling) and read once
    return task


@pytest.mark.redis
async def test_a_live_socket_gets_pushes_while_an_agent_waits_for_a_decision(layer, reviewer):
    waiting = await _start_waiting_agent(4241)  # the agent first, as when the sockets reconnect after an outage
    socket = _socket(reviewer)
    connected, _ = await socket.connect(timeout=10)
    assert connected
    try:
        assert await live.asend_to_group("dashboard", "<div id='approval-signals'>new</div>")
        assert await socket.receive_from(timeout=15) == "<div id='approval-signals'>new</div>"
    finally:
        await socket.disconnect()
        waiting.cancel()


@pytest.mark.redis
async def test_a_socket_whose_subscription_was_lost_is_closed_for_the_browser_to_reconnect(layer, reviewer,
                                                                                          monkeypatch):
    monkeypatch.setattr(consumers, "SUBSCRIPTION_CHECK_S", 0.2)
    socket = _socket(reviewer)
    connected, _ = await socket.connect(timeout=10)
    assert connected
    client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        await client.delete(layer._group_key("dashboard"))  # what a Redis restart without persistence does
    finally:
        await client.aclose()
    closed = await socket.receive_output(timeout=15)
    assert closed == {"type": "websocket.close", "code": 1012}
    await socket.disconnect()
    # the reconnect subscribes again and gets pushes
    again = _socket(reviewer)
    connected, _ = await again.connect(timeout=10)
    assert connected
    try:
        assert await live.asend_to_group("dashboard", "<p id='x'>after</p>")
        assert await again.receive_from(timeout=15) == "<p id='x'>after</p>"
    finally:
        await again.disconnect()


@pytest.mark.redis
async def test_a_socket_with_its_subscription_intact_stays_open(layer, reviewer, monkeypatch):
    monkeypatch.setattr(consumers, "SUBSCRIPTION_CHECK_S", 0.1)
    socket = _socket(reviewer)
    connected, _ = await socket.connect(timeout=10)
    assert connected
    try:
        assert await socket.receive_nothing(timeout=1.0)  # several renewals happen meanwhile
        assert await live.asend_to_group("dashboard", "<p id='y'>still here</p>")
        assert await socket.receive_from(timeout=15) == "<p id='y'>still here</p>"
    finally:
        await socket.disconnect()


async def test_the_in_memory_layer_reports_a_lost_subscription_too(settings):
    from channels.layers import channel_layers, get_channel_layer

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    try:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add("dashboard", channel)
        assert await live.renew_subscription("dashboard", channel) is True
        layer.groups.pop("dashboard")  # expired
        assert await live.renew_subscription("dashboard", channel) is False
        assert channel in layer.groups["dashboard"]  # and subscribed again
    finally:
        channel_layers.backends.clear()
