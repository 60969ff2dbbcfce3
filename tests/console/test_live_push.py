"""send_to_group works from every kind of caller: a plain thread, the server loop's
own thread, and a thread beside a running server loop (the embedded scheduler)."""

import asyncio
import threading

import pytest
from channels.layers import get_channel_layer

from console import live


@pytest.fixture
def server_loop(fresh_channel_layer):
    """A running loop in a thread, standing in for the ASGI server's."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    live.bind_server_loop(loop)
    yield loop
    live.bind_server_loop(None)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)


def _subscribe(loop, group):
    layer = get_channel_layer()

    async def subscribe():
        channel = await layer.new_channel("test.")
        await layer.group_add(group, channel)
        return channel

    return layer, asyncio.run_coroutine_threadsafe(subscribe(), loop).result(5)


def _receive(loop, layer, channel):
    return asyncio.run_coroutine_threadsafe(asyncio.wait_for(layer.receive(channel), 5), loop).result(6)


def test_a_scheduler_thread_pushes_through_the_server_loop(server_loop):
    layer, channel = _subscribe(server_loop, "dashboard")
    results = []
    worker = threading.Thread(target=lambda: results.append(live.send_to_group("dashboard", "<p id=x>1</p>")))
    worker.start()
    worker.join(10)
    assert results == [True]
    assert _receive(server_loop, layer, channel)["html"] == "<p id=x>1</p>"


def test_a_push_from_inside_the_loop_is_scheduled_not_blocking(server_loop):
    layer, channel = _subscribe(server_loop, "dashboard")

    async def from_async_code():
        return live.send_to_group("dashboard", "<p id=y>2</p>")

    assert asyncio.run_coroutine_threadsafe(from_async_code(), server_loop).result(5) is True
    assert _receive(server_loop, layer, channel)["html"] == "<p id=y>2</p>"
