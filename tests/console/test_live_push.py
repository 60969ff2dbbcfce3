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


def test_an_outage_logs_one_traceback_then_one_line_per_failed_push(monkeypatch, caplog):
    import logging

    from console import live

    class Broken:
        async def group_send(self, group, message):
            raise ConnectionError("channel layer down")

    monkeypatch.setattr(live, "get_channel_layer", lambda: Broken())
    monkeypatch.setattr(live, "_last_traceback", 0.0)
    with caplog.at_level(logging.WARNING, logger="console.live"):
        results = [live.send_to_group("dashboard", "<p>x</p>") for _ in range(5)]
    assert results == [False] * 5
    failures = [r for r in caplog.records if "live push to dashboard failed" in r.getMessage()]
    assert len(failures) == 5
    assert sum(1 for r in failures if r.exc_info) == 1
    assert "ConnectionError('channel layer down')" in failures[-1].getMessage()


def _block(loop) -> threading.Event:
    """Hold the server loop busy (as under load) until the returned event is set."""
    release = threading.Event()
    loop.call_soon_threadsafe(release.wait, 30)
    return release


def test_a_thread_beside_a_busy_server_loop_is_not_held_and_its_pushes_arrive_in_order(server_loop):
    """The stream detectors push incidents from their own thread: they used to wait for the server loop
    on every push (up to 5 s each), so under load a round of incidents took minutes."""
    layer, channel = _subscribe(server_loop, "incidents")
    release = _block(server_loop)
    results = []
    worker = threading.Thread(target=lambda: results.extend(
        live.send_to_group("incidents", f"<p>{n}</p>") for n in range(3)))
    worker.start()
    worker.join(10)
    finished_while_loop_busy = not worker.is_alive() and not release.is_set()
    release.set()
    assert finished_while_loop_busy and results == [True, True, True]
    assert [_receive(server_loop, layer, channel)["html"] for _ in range(3)] == ["<p>0</p>", "<p>1</p>", "<p>2</p>"]


def test_pushes_past_the_outbox_bound_are_dropped_and_logged_not_held(server_loop, monkeypatch, caplog):
    import logging

    monkeypatch.setattr(live, "OUTBOX_MAX", 2)
    layer, channel = _subscribe(server_loop, "incidents")
    release = _block(server_loop)
    with caplog.at_level(logging.WARNING, logger="console.live"):
        results = [live.send_to_group("incidents", f"<p>{n}</p>") for n in range(4)]
    release.set()
    assert results == [True, True, False, False]
    assert [_receive(server_loop, layer, channel)["html"] for _ in range(2)] == ["<p>0</p>", "<p>1</p>"]
    assert any("wait for the server loop" in r.getMessage() for r in caplog.records)
    # the sender drained: the next push goes out again
    assert live.send_to_group("incidents", "<p>after</p>") is True
    assert _receive(server_loop, layer, channel)["html"] == "<p>after</p>"
