"""Ingest shows up in the Prometheus counters: spans stored per agent, requests per status, rejections."""

import uuid

import pytest
from prometheus_client import REGISTRY

from tests.traces import helpers

pytestmark = pytest.mark.django_db


def _value(name, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_stored_spans_requests_and_rejections_are_counted(client, agent, agent_key):
    spans_before = _value("console_ingest_spans_total", agent="billing-bot")
    ok_before = _value("console_ingest_requests_total", status="200")
    unauth_before = _value("console_ingest_requests_total", status="401")
    trace = helpers.new_trace_id()
    good = [helpers.make_span(trace, name=f"step {i}") for i in range(3)]
    bad = helpers.make_span(trace, name="too early", start_ns=1)  # an absurd timestamp is rejected alone

    response = helpers.post(client, helpers.body_of(*good, bad), key=agent_key)
    assert response.status_code == 200
    helpers.post(client, helpers.body_of(*good), key="aoc_not-a-key")

    assert _value("console_ingest_spans_total", agent="billing-bot") - spans_before == 3
    assert _value("console_ingest_requests_total", status="200") - ok_before == 1
    assert _value("console_ingest_requests_total", status="401") - unauth_before == 1
    rejected = [s for m in REGISTRY.collect() if m.name == "console_ingest_rejected_spans"
                for s in m.samples if s.name.endswith("_total")]
    assert sum(s.value for s in rejected) >= 1


def test_tokens_and_cost_of_newly_stored_spans_are_counted_once(client, agent, agent_key):
    labels = {"agent": "billing-bot", "model": "gpt-4o"}
    tokens_in = _value("console_tokens_total", direction="input", **labels)
    tokens_out = _value("console_tokens_total", direction="output", **labels)
    cost = _value("console_cost_usd_total", **labels)
    trace = helpers.new_trace_id()
    llm = helpers.make_span(trace, name="chat gpt-4o", attrs={
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 200})
    body = helpers.body_of(llm)

    assert helpers.post(client, body, key=agent_key).status_code == 200
    assert helpers.post(client, body, key=agent_key).status_code == 200  # a retry stores nothing new

    assert _value("console_tokens_total", direction="input", **labels) - tokens_in == 1000
    assert _value("console_tokens_total", direction="output", **labels) - tokens_out == 200
    # list price of gpt-4o: 2.50 USD per 1M input tokens, 10.00 per 1M output tokens
    assert _value("console_cost_usd_total", **labels) - cost == pytest.approx(0.0025 + 0.002)


def test_runs_started_counts_each_run_once_whatever_the_batches(client, agent, agent_key):
    """console_runs_started_total was exported but never counted: a run counts when its first spans are
    stored, not again for its later batches, a re-sent batch or a batch refused for another agent's trace."""
    before = _value("console_runs_started_total", agent="billing-bot")
    first, second = helpers.new_trace_id(), helpers.new_trace_id()
    batch = helpers.body_of(helpers.make_span(first, name="a"), helpers.make_span(second, name="b"))
    assert helpers.post(client, batch, key=agent_key).status_code == 200
    assert helpers.post(client, batch, key=agent_key).status_code == 200  # the exporter retried
    assert helpers.post(client, helpers.body_of(helpers.make_span(first, name="c")), key=agent_key).status_code == 200
    assert _value("console_runs_started_total", agent="billing-bot") - before == 2


def test_model_labels_stay_bounded_whatever_models_agents_name(client, agent, agent_key, monkeypatch):
    """Each model name an agent sends became a label set of the token and cost counters, kept for the
    life of the process: an agent naming a new model per span grew /metrics (and memory) without end."""
    from traces import ingest

    monkeypatch.setattr(ingest, "MODEL_LABELS_MAX", 3)
    monkeypatch.setattr(ingest, "_model_labels", set())
    other = _value("console_tokens_total", agent="billing-bot", model="other", direction="input")
    trace = helpers.new_trace_id()
    names = [f"made-up-model-{uuid.uuid4().hex[:8]}" for _ in range(6)]
    spans = [helpers.make_span(trace, name=f"chat {name}", attrs={
        "gen_ai.operation.name": "chat", "gen_ai.request.model": name, "gen_ai.usage.input_tokens": 10})
        for name in names]
    assert helpers.post(client, helpers.body_of(*spans), key=agent_key).status_code == 200

    labelled = {s.labels["model"] for m in REGISTRY.collect() if m.name == "console_tokens"
                for s in m.samples if s.labels.get("model", "").startswith("made-up-model-")
                and s.labels["model"] in names}
    assert len(labelled) == 3
    assert _value("console_tokens_total", agent="billing-bot", model="other", direction="input") - other == 30
