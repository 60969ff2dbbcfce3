"""Live pushes go out at once for a quiet run and are coalesced for a busy one, with nothing left behind.

Time is a controllable clock (``live._clock``): the tests step it and call
``live.flush_due(now)`` where the flusher would look, then count frames.
"""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from console import live as console_live
from tests.fake_clock import FakeClock
from tests.traces import helpers
from traces import live
from traces.models import Run

pytestmark = pytest.mark.django_db

STEP = live.FLUSH_INTERVAL / 10


@pytest.fixture
def clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(live, "_clock", clock)
    return clock


class Frames(list):
    """Frames sent, as (group, html); ``started`` holds when a flusher was asked for."""

    def __init__(self):
        super().__init__()
        self.started = []


@pytest.fixture
def frames(monkeypatch, clock):
    """No flusher runs by itself: the test calls ``flush_due`` where one would look."""
    sent = Frames()
    live.reset()
    monkeypatch.setattr(console_live, "send_to_group", lambda group, html: sent.append((group, html)) or True)
    monkeypatch.setattr(live, "_start_flusher", lambda: sent.started.append(clock.now))

    async def everyone_watches(groups):
        return set(groups)

    monkeypatch.setattr(live, "watched_groups", everyone_watches)
    yield sent
    live.reset()


def _send(client, key, *spans):
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):  # the ingest commits: its hook runs
        helpers.post(client, helpers.body_of(*spans), key=key)


def _span_frames(sent, run):
    return [html for group, html in sent if group == f"run-{run.pk}" and 'class="span-row' in html]


def test_first_span_of_a_quiet_run_is_pushed_without_waiting(client, agent_key, frames, clock):
    trace = helpers.new_trace_id()
    _send(client, agent_key, helpers.make_span(trace, name="first step"))
    assert frames.started == [clock.now]  # a flusher is started at once, not after a window
    assert live.flush_due(clock.now) == 3  # at the same instant: rows and header for the run page, the list row
    run = Run.objects.get()
    assert [group for group, _ in frames] == [f"run-{run.pk}", f"run-{run.pk}", "runs"]
    assert "first step" in frames[0][1]
    frames.clear()
    clock.now += 10 * live.FLUSH_INTERVAL  # quiet again
    _send(client, agent_key, helpers.make_span(trace, name="much later"))
    live.flush_due(clock.now)
    assert len(_span_frames(frames, run)) == 1 and "much later" in _span_frames(frames, run)[0]


def test_a_waiting_flusher_is_nudged_for_a_quiet_run_only(frames, clock, monkeypatch):
    nudges = []
    live.mark_dirty([1], {1: (0, 1)})
    assert frames.started == [clock.now]
    monkeypatch.setattr(live, "_wake", lambda: nudges.append(clock.now) or True)
    batch, _ = live.take_due(clock.now)  # the flusher takes run 1 and pushes it
    assert list(batch.runs) == [1]
    clock.now += STEP
    live.mark_dirty([1], {1: (1, 2)})  # while it pushes: it looks again when done
    batch, next_due = live.take_due(clock.now)
    assert not batch.runs and next_due == pytest.approx(clock.now - STEP + live.FLUSH_INTERVAL)  # it waits
    clock.now += STEP
    live.mark_dirty([1], {1: (2, 3)})  # run 1 is not due before the flusher wakes anyway
    assert nudges == []
    live.mark_dirty([2], {2: (0, 1)})  # a quiet run is due now: wake up
    assert nudges == [clock.now] and frames.started == [clock.now - 2 * STEP]
    batch, _ = live.take_due(clock.now)
    assert list(batch.runs) == [2]  # only the quiet one; run 1 waits for the end of its interval


def test_a_burst_on_one_run_coalesces_into_few_frames_and_loses_nothing(client, agent_key, frames, clock):
    trace = helpers.new_trace_id()
    posts = 40
    started = clock.now
    for i in range(posts):  # one span per request, a new request every STEP
        clock.now = started + i * STEP
        _send(client, agent_key, helpers.make_span(trace, name=f"burst step {i:02d}"))
        live.flush_due(clock.now)  # an eager flusher looks after every commit
    clock.now += live.FLUSH_INTERVAL  # after the burst: the trailing push
    live.flush_due(clock.now)
    run = Run.objects.get()
    pushed = _span_frames(frames, run)
    burst = (posts - 1) * STEP
    assert len(pushed) <= 2 + burst / live.FLUSH_INTERVAL  # one per interval plus the leading and trailing ones
    assert len(pushed) < posts / 5
    text = "".join(pushed)
    positions = [text.index(f"burst step {i:02d}") for i in range(posts)]
    assert positions == sorted(positions)  # every span once, in order
    assert all(text.count(f"burst step {i:02d}") == 1 for i in range(posts))


def test_the_end_of_a_burst_is_pushed_when_its_interval_ends(client, agent_key, frames, clock):
    trace = helpers.new_trace_id()
    _send(client, agent_key, helpers.make_span(trace, name="leading"))
    live.flush_due(clock.now)
    run = Run.objects.get()
    assert len(_span_frames(frames, run)) == 1
    pushed_at = clock.now
    for name in ("trailing a", "trailing b"):
        clock.now += STEP
        _send(client, agent_key, helpers.make_span(trace, name=name))
        assert live.flush_due(clock.now) == 0  # inside the interval: held back
    batch, next_due = live.take_due(clock.now)
    assert not batch and next_due == pytest.approx(pushed_at + live.FLUSH_INTERVAL)
    clock.now = next_due
    live.flush_due(clock.now)
    pushed = _span_frames(frames, run)
    assert len(pushed) == 2
    assert "trailing a" in pushed[1] and "trailing b" in pushed[1] and "leading" not in pushed[1]
    clock.now += live.LIST_INTERVAL
    live.flush_due(clock.now)  # the list's own trailing push
    clock.now += live.LIST_INTERVAL
    assert live.take_due(clock.now) == (live.Batch(), None)  # nothing left: the flusher ends
    assert live._scheduled is False


def test_the_runs_list_coalesces_many_runs_into_one_frame_per_interval(client, agent_key, frames, clock):
    started = clock.now
    for i in range(10):
        clock.now = started + i * STEP
        _send(client, agent_key, helpers.make_span(helpers.new_trace_id(), name=f"run {i}"))
        live.flush_due(clock.now)
    clock.now = started + live.LIST_INTERVAL
    live.flush_due(clock.now)
    runs = list(Run.objects.order_by("id"))
    list_frames = [html for group, html in frames if group == "runs"]
    assert len(list_frames) == 2  # the first run at once, the nine others together
    assert "".join(list_frames).count('class="run-row') == 10
    for run in runs:  # each run page got its row at once: every run was quiet
        assert len(_span_frames(frames, run)) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("backend", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_the_server_loop_flusher_delivers_to_a_subscribed_channel(client, agent_key, settings, backend):
    """End to end on an event loop, as under the ASGI server: ingest in a thread, frames on the channel layer."""
    import os
    import uuid

    if backend == "memory":
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    else:
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                               "CONFIG": {"hosts": [os.environ["REDIS_URL"]],
                                                          "prefix": f"test-{uuid.uuid4().hex[:8]}"}}}
    from channels.layers import channel_layers

    channel_layers.backends.pop("default", None)
    live.reset()
    trace, root = helpers.new_trace_id(), helpers.new_span_id()
    helpers.post(client, helpers.body_of(helpers.make_span(trace, root, name="root")), key=agent_key)
    run = Run.objects.get()
    live.reset()
    names = [f"live step {i:02d}" for i in range(12)]

    def ingest():
        from django.db import connection

        try:
            for name in names:
                helpers.post(client, helpers.body_of(helpers.make_span(trace, parent=root, name=name)), key=agent_key)
        finally:
            connection.close()  # this worker thread's own

    async def scenario():
        layer = channel_layers["default"]
        channel = await layer.new_channel()
        await layer.group_add(f"run-{run.pk}", channel)
        live.use_event_loop(asyncio.get_running_loop())
        await sync_to_async(ingest, thread_sensitive=False)()
        received = ""
        while not all(name in received for name in names):
            message = await asyncio.wait_for(layer.receive(channel), timeout=30)
            received += message["html"]
        await layer.group_discard(f"run-{run.pk}", channel)
        return received

    try:
        received = asyncio.run(scenario())
    finally:
        live.use_event_loop(None)
        live.reset()
        channel_layers.backends.pop("default", None)
    assert all(received.count(name) == 1 for name in names)


def test_the_list_push_in_flight_holds_the_next_one_but_not_the_run_pages(frames, clock):
    live.mark_dirty([1], {1: (0, 2)})
    batch, _ = live.take_due(clock.now, list_lane=True)  # the server's flusher sends the list on its own
    assert list(batch.runs) == [1] and batch.listed == {1: True}
    clock.now += 2 * live.LIST_INTERVAL
    live.mark_dirty([2], {2: (0, 1)})
    batch, next_due = live.take_due(clock.now, list_lane=True)
    assert list(batch.runs) == [2] and batch.listed is None  # the run page goes; the list waits for the first
    live._list_done()
    batch, _ = live.take_due(clock.now, list_lane=True)
    assert batch.listed == {2: True} and not batch.runs


def test_a_flusher_that_fails_is_replaced_by_the_next_change(frames, clock, monkeypatch):
    def broken(now, generation=None, **kwargs):
        raise RuntimeError("bug")

    live.mark_dirty([1], {1: (0, 1)})
    assert len(frames.started) == 1
    monkeypatch.setattr(live, "take_due", broken)
    with pytest.raises(RuntimeError):
        live._thread_flusher(live._generation)
    clock.now += live.FLUSH_INTERVAL
    live.mark_dirty([1], {1: (1, 2)})
    assert len(frames.started) == 2  # not left waiting for a flusher that is gone
