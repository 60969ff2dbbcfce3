"""Ingest shows up in the Prometheus counters: spans stored per agent, requests per status, rejections."""

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
