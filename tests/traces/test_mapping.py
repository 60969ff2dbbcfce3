"""Attribute conventions onto span kinds and columns: OpenInference, older GenAI names, evaluations."""

import json

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from traces.models import Run, Span, SpanKind
from tests.traces import helpers

pytestmark = pytest.mark.django_db


def _post(client, key, *spans, resource=None):
    response = helpers.post(client, helpers.body_of(*spans, resource=resource), key=key)
    assert response.status_code == 200, response.content


def test_openinference_spans(client, agent_key):
    trace, root_id = helpers.new_trace_id(), helpers.new_span_id()
    root = helpers.make_span(trace, root_id, name="agent", attrs={
        "openinference.span.kind": "AGENT", "session.id": "sess-9", "input.value": "Find the invoice"})
    llm = helpers.make_span(trace, parent=root_id, name="llm", attrs={
        "openinference.span.kind": "LLM", "llm.model_name": "claude-x", "llm.provider": "anthropic",
        "llm.token_count.prompt": 50, "llm.token_count.completion": 7,
        "llm.token_count.prompt_details.cache_read": 20, "llm.token_count.completion_details.reasoning": 3,
        "input.value": "What is 2+2?", "output.value": "4", "llm.invocation_parameters": '{"temperature": 0}'})
    tool = helpers.make_span(trace, parent=root_id, name="tool", attrs={
        "openinference.span.kind": "TOOL", "tool.name": "search", "tool.parameters": '{"q": "invoice 7"}'})
    retriever = helpers.make_span(trace, parent=root_id, name="kb", attrs={"openinference.span.kind": "RETRIEVER"})
    guard = helpers.make_span(trace, parent=root_id, name="guard", attrs={"openinference.span.kind": "GUARDRAIL"})
    _post(client, agent_key, root, llm, tool, retriever, guard)
    kinds = dict(Span.objects.values_list("name", "kind"))
    assert kinds == {"agent": SpanKind.AGENT, "llm": SpanKind.LLM, "tool": SpanKind.TOOL,
                     "kb": SpanKind.RETRIEVER, "guard": SpanKind.DECISION}
    stored = Span.objects.get(name="llm")
    assert (stored.model, stored.provider) == ("claude-x", "anthropic")
    assert (stored.input_tokens, stored.output_tokens, stored.cache_tokens, stored.reasoning_tokens) == (50, 7, 20, 3)
    assert (stored.input_text, stored.output_text) == ("What is 2+2?", "4")
    assert stored.attributes["llm.invocation_parameters"] == '{"temperature": 0}'  # everything else is kept
    assert Span.objects.get(name="tool").tool_arguments == {"q": "invoice 7"}
    run = Run.objects.get()
    assert run.session_id == "sess-9" and run.task == "Find the invoice"


def test_older_genai_names_and_explicit_kinds(client, agent_key):
    trace = helpers.new_trace_id()
    old = helpers.make_span(trace, name="completion", attrs={
        "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4", "gen_ai.usage.prompt_tokens": 11,
        "gen_ai.usage.completion_tokens": 5, "gen_ai.prompt": "Hi", "gen_ai.completion": "Hello"})
    decision = helpers.make_span(trace, name="route", attrs={"console.span.kind": "decision"})
    state = helpers.make_span(trace, name="memory", attrs={"console.span.kind": "state"})
    _post(client, agent_key, old, decision, state)
    stored = Span.objects.get(name="completion")
    assert stored.kind == SpanKind.LLM and stored.provider == "openai" and stored.model == "gpt-4"
    assert (stored.input_tokens, stored.output_tokens) == (11, 5)
    assert (stored.input_text, stored.output_text) == ("Hi", "Hello")
    assert Span.objects.get(name="route").kind == SpanKind.DECISION
    assert Span.objects.get(name="memory").kind == SpanKind.STATE


def test_evaluation_events_links_and_resource_are_kept(client, agent_key):
    trace = helpers.new_trace_id()
    span = helpers.make_span(trace, name="chat", attrs={"gen_ai.operation.name": "chat"})
    event = span.events.add(name="gen_ai.evaluation.result", time_unix_nano=span.start_time_unix_nano)
    event.attributes.extend([KeyValue(key="gen_ai.evaluation.name", value=AnyValue(string_value="relevance")),
                             KeyValue(key="gen_ai.evaluation.score.value", value=AnyValue(double_value=0.25))])
    link = span.links.add(trace_id=helpers.new_trace_id(), span_id=helpers.new_span_id())
    link.attributes.append(KeyValue(key="why", value=AnyValue(string_value="caused by")))
    _post(client, agent_key, span, resource={"service.name": "svc-a", "gen_ai.conversation.id": "c-1"})
    stored = Span.objects.get()
    assert stored.events[0]["name"] == "gen_ai.evaluation.result"
    assert stored.events[0]["attributes"] == {"gen_ai.evaluation.name": "relevance",
                                              "gen_ai.evaluation.score.value": 0.25}
    assert stored.links[0]["attributes"] == {"why": "caused by"} and len(stored.links[0]["trace_id"]) == 32
    run = Run.objects.get()
    assert run.service_name == "svc-a" and run.session_id == "c-1"


def test_exception_event_marks_the_span_as_error(client, agent_key):
    trace = helpers.new_trace_id()
    span = helpers.make_span(trace, name="boom")
    span.events.add(name="exception", time_unix_nano=span.start_time_unix_nano)
    _post(client, agent_key, span)
    assert Span.objects.get().status == "error"
    assert Run.objects.get().status == "error"


def test_long_content_is_truncated_with_a_marker(client, agent_key, settings):
    settings.TRACE_MAX_TEXT_CHARS = 1000
    trace = helpers.new_trace_id()
    span = helpers.make_span(trace, attrs={"input.value": "x" * 5000, "other": json.dumps(["y" * 50])})
    _post(client, agent_key, span)
    stored = Span.objects.get()
    assert stored.input_text.startswith("x" * 1000) and "truncated 4000 characters" in stored.input_text
