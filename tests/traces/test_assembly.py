"""Spans arrive out of order, late, duplicated and split across requests: runs still add up."""

import random
from decimal import Decimal

import pytest

from traces.models import ModelPrice, Run, RunStatus, Span
from tests import factories
from tests.traces import helpers

pytestmark = pytest.mark.django_db


def _run_spans(trace, *, n_children=6, error_child=None):
    root_id = helpers.new_span_id()
    start = helpers.NOW_NS - 120 * 10**9
    root = helpers.make_span(trace, root_id, name="agent run", start_ns=start, duration_ns=10 * 10**9,
                             attrs={"gen_ai.operation.name": "invoke_agent", "console.task": "triage ticket"})
    children = [
        helpers.make_span(trace, parent=root_id, name=f"chat {i}", start_ns=start + (i + 1) * 10**9,
                          duration_ns=5 * 10**8, error=(i == error_child),
                          attrs={"gen_ai.operation.name": "chat", "gen_ai.request.model": "m-1",
                                 "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 10})
        for i in range(n_children)
    ]
    return root, children


def _expected(run):
    assert run.span_count == 7
    assert (run.input_tokens, run.output_tokens, run.total_tokens) == (600, 60, 660)
    assert run.cost == Decimal("0.001200")  # 600 * 1/1M + 60 * 10/1M
    assert run.duration_ms == 10_000
    assert run.name == "agent run" and run.task == "triage ticket"


@pytest.fixture(autouse=True)
def price(db):
    ModelPrice.objects.create(model="m-1", input_per_million=1, output_per_million=10)


def test_children_before_root_then_root_late(client, agent_key):
    trace = helpers.new_trace_id()
    root, children = _run_spans(trace)
    assert helpers.post(client, helpers.body_of(*children[3:]), key=agent_key).status_code == 200
    run = Run.objects.get()
    assert run.status == RunStatus.RUNNING and run.span_count == 3
    assert helpers.post(client, helpers.body_of(*children[:3]), key=agent_key).status_code == 200
    assert Run.objects.get().status == RunStatus.RUNNING
    assert helpers.post(client, helpers.body_of(root), key=agent_key).status_code == 200
    run = Run.objects.get()
    assert run.status == RunStatus.OK
    _expected(run)


def test_duplicates_within_and_across_requests_are_stored_once(client, agent_key):
    trace = helpers.new_trace_id()
    root, children = _run_spans(trace)
    everything = [root, *children]
    assert helpers.post(client, helpers.body_of(*everything, *children[:2]), key=agent_key).status_code == 200
    for _ in range(2):  # the exporter resends the whole batch
        response = helpers.post(client, helpers.body_of(*reversed(everything)), key=agent_key)
        assert response.status_code == 200
        assert helpers.parse_response(response).partial_success.rejected_spans == 0
    assert Span.objects.count() == 7
    _expected(Run.objects.get())


def test_any_order_and_split_gives_the_same_totals(client, agent_key):
    rng = random.Random(7)
    trace = helpers.new_trace_id()
    root, children = _run_spans(trace, error_child=2)
    spans = [root, *children, children[0], root]
    rng.shuffle(spans)
    for chunk in (spans[:3], spans[3:4], spans[4:]):
        assert helpers.post(client, helpers.body_of(*chunk), key=agent_key).status_code == 200
    run = Run.objects.get()
    _expected(run)
    assert run.error_count == 1 and run.status == RunStatus.ERROR


def test_late_error_turns_a_finished_run_into_error(client, agent_key):
    trace = helpers.new_trace_id()
    root, children = _run_spans(trace, error_child=5)
    helpers.post(client, helpers.body_of(root, *children[:5]), key=agent_key)
    assert Run.objects.get().status == RunStatus.OK
    helpers.post(client, helpers.body_of(children[5]), key=agent_key)
    assert Run.objects.get().status == RunStatus.ERROR


def test_seq_grows_per_run_for_live_cursors(client, agent_key):
    trace = helpers.new_trace_id()
    root, children = _run_spans(trace)
    helpers.post(client, helpers.body_of(*children[:3]), key=agent_key)
    helpers.post(client, helpers.body_of(*children[:3], *children[3:], root), key=agent_key)
    seqs = list(Span.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == sorted(set(seqs)) and len(seqs) == 7
    assert Run.objects.get().last_seq >= max(seqs)


def test_a_key_cannot_write_into_another_agents_run(client, agent_key):
    trace = helpers.new_trace_id()
    root, children = _run_spans(trace)
    helpers.post(client, helpers.body_of(root), key=agent_key)
    _k, other_key = factories.make_key(factories.make_agent("intruder"))
    response = helpers.post(client, helpers.body_of(*children), key=other_key)
    assert response.status_code == 200
    partial = helpers.parse_response(response).partial_success
    assert partial.rejected_spans == 6 and "another agent" in partial.error_message
    run = Run.objects.get()
    assert run.agent.name == "billing-bot" and run.span_count == 1
    assert Span.objects.count() == 1


def test_one_request_may_carry_several_traces(client, agent_key):
    a, b = helpers.new_trace_id(), helpers.new_trace_id()
    body = helpers.body_of(*_run_spans(a)[1], _run_spans(b)[0])
    assert helpers.post(client, body, key=agent_key).status_code == 200
    assert Run.objects.count() == 2


def test_set_run_waiting_marks_and_clears_waiting(client, agent, agent_key):
    from traces import services

    trace = helpers.new_trace_id()
    root, children = _run_spans(trace)
    helpers.post(client, helpers.body_of(*children), key=agent_key)
    assert services.set_run_waiting(trace.hex(), True, agent_id=agent.pk) is True
    assert Run.objects.get().status == RunStatus.WAITING
    assert services.set_run_waiting(trace.hex(), False, agent_id=agent.pk) is True
    assert Run.objects.get().status == RunStatus.RUNNING
    assert services.set_run_waiting("0" * 32, True, agent_id=agent.pk) is False


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_of_one_run_add_up(agent_key):
    """Threads post overlapping halves of one run at once; every span counted exactly once."""
    import threading

    from django.db import connection
    from django.test import Client

    ModelPrice.objects.get_or_create(model="m-1", defaults={"input_per_million": 1, "output_per_million": 10})
    trace = helpers.new_trace_id()
    root, children = _run_spans(trace)
    bodies = [helpers.body_of(root, *children[:4]), helpers.body_of(*children[2:]),
              helpers.body_of(*children), helpers.body_of(root, children[5])]
    statuses = []

    def send(body):
        try:
            statuses.append(helpers.post(Client(), body, key=agent_key).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(body,)) for body in bodies * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 8
    assert Span.objects.count() == 7
    _expected(Run.objects.get())
