"""The live layer: ids after commit, one coalesced fragment per run and one for the list."""

import pytest

from console import live as console_live
from traces import live
from traces.models import Run
from tests.traces import helpers

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    messages = []
    monkeypatch.setattr(console_live, "send_to_group", lambda group, html: messages.append((group, html)) or True)
    monkeypatch.setattr(live, "_start_flusher", lambda: None)  # flush by hand, deterministically
    live._take_all()
    return messages


def test_ingest_marks_runs_dirty_only_after_commit(client, agent_key, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        helpers.post(client, helpers.protobuf_body(helpers.record_agent_run()), key=agent_key)
    assert live.flush() == 0  # nothing before commit
    for callback in callbacks:
        callback()
    run = Run.objects.get()
    assert live.flush() == 3
    groups = [group for group, _ in sent]
    assert groups == [f"run-{run.pk}", f"run-{run.pk}", "runs"]
    spans_html = sent[0][1]
    assert f'hx-swap-oob="beforeend:#spans-{run.pk}"' in spans_html
    assert spans_html.count('class="span-row') == 3
    assert f'id="run-row-{run.pk}"' in sent[1][1] and 'hx-swap-oob="true"' in sent[1][1]
    assert 'hx-swap-oob="afterbegin:#runs-rows"' in sent[2][1]  # a new run goes on top of the list


def test_many_batches_coalesce_into_one_push_with_only_new_rows(client, agent_key, sent,
                                                                django_capture_on_commit_callbacks):
    trace = helpers.new_trace_id()
    spans = [helpers.make_span(trace, name=f"step {i}") for i in range(6)]
    with django_capture_on_commit_callbacks(execute=True):
        helpers.post(client, helpers.body_of(*spans[:2]), key=agent_key)
    live.flush()
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        for span in spans[2:]:
            helpers.post(client, helpers.body_of(span), key=agent_key)
    live.flush()
    run = Run.objects.get()
    assert [group for group, _ in sent] == [f"run-{run.pk}", f"run-{run.pk}", "runs"]
    html = sent[0][1]
    assert html.count('class="span-row') == 4 and "step 0" not in html and "step 5" in html
    assert "afterbegin" not in sent[2][1]  # no longer new: replaced in place


def test_agent_text_in_fragments_is_escaped(client, agent_key, sent, django_capture_on_commit_callbacks):
    trace = helpers.new_trace_id()
    span = helpers.make_span(trace, name='<script>alert(1)</script><b hx-get="/x">')
    with django_capture_on_commit_callbacks(execute=True):
        helpers.post(client, helpers.body_of(span), key=agent_key)
    live.flush()
    everything = "".join(html for _, html in sent)
    assert "<script>" not in everything and "&lt;script&gt;" in everything
    assert '<b hx-get' not in everything


def test_run_topics_are_for_staff_only(reviewer, operator, admin_user, nobody):
    for user in (reviewer, operator, admin_user):
        assert console_live.may_subscribe(user, "runs") and console_live.may_subscribe(user, "run-5")
    assert not console_live.may_subscribe(nobody, "runs")
    assert not console_live.may_subscribe(nobody, "run-5")


def test_runs_nobody_watches_are_not_rendered(client, agent_key, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        helpers.post(client, helpers.protobuf_body(helpers.record_agent_run()), key=agent_key)
    run = Run.objects.get()
    messages = live.collect(watched={"runs"})
    assert [group for group, _ in messages] == ["runs"]
    with django_capture_on_commit_callbacks(execute=True):
        helpers.post(client, helpers.protobuf_body(helpers.record_agent_run()), key=agent_key)
    assert live.collect(watched=set()) == []
    assert run.pk  # the first run's spans were never rendered for an empty run-<id> group


def test_in_memory_layer_membership_is_read(settings):
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    async_to_sync(layer.group_add)("run-77", "test-channel")
    assert async_to_sync(live.watched_groups)({"run-77", "run-78", "runs"}) == {"run-77"}


@pytest.mark.redis
def test_redis_layer_membership_is_read(settings):
    import os
    import uuid

    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [os.environ["REDIS_URL"]],
                                                      "prefix": f"test-{uuid.uuid4().hex[:8]}"}}}
    layer = get_channel_layer()

    async def scenario():
        await layer.group_add("run-91", "specific.test!channel")
        try:
            return await live.watched_groups({"run-91", "run-92", "runs"})
        finally:
            await layer.group_discard("run-91", "specific.test!channel")

    assert async_to_sync(scenario)() == {"run-91"}


def test_a_flusher_lost_with_its_stopped_loop_does_not_silence_later_pushes(monkeypatch):
    """A flusher whose server loop stopped (a restart, a test server's teardown) is replaced by the next push."""
    import asyncio

    started = []
    monkeypatch.setattr(live, "_start_flusher", lambda: started.append(1))
    monkeypatch.setattr(live, "_dirty", {})
    monkeypatch.setattr(live, "_listed", {})
    monkeypatch.setattr(live, "_pushed_at", {})
    stopped = asyncio.new_event_loop()
    stopped.close()
    monkeypatch.setattr(live, "_flusher_loop", stopped)  # left behind by a loop that stopped
    monkeypatch.setattr(live, "_scheduled", True)
    monkeypatch.setattr(live, "_wake_at", float("-inf"))
    live.mark_dirty([1], {1: (0, 3)})
    assert started == [1]
    monkeypatch.setattr(live, "_flusher_loop", None)  # the new one (a thread here) is alive and pushing
    live.mark_dirty([1], {1: (3, 4)})  # coalesced: it takes this when it looks again
    assert started == [1]
