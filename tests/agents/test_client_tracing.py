"""setup_tracing exports to the real console's /v1/traces; spans land with kinds, tokens and prompt version."""

import json

import pytest
from opentelemetry.trace import SpanKind as OtelKind

from agents.client import Console, use_prompt
from tests import factories


@pytest.fixture
def traced(asgi_server):
    agent = factories.make_agent("support-bot")
    _key, plain = factories.make_key(agent)
    console = Console(asgi_server.url, plain)
    provider = console.setup_tracing("support-bot", set_global=False, export_delay_s=0.1)
    yield console, provider, agent
    provider.shutdown()
    console.close()


def test_spans_land_in_the_console_with_kinds_tokens_and_the_prompt_version(traced):
    from traces.models import Run, Span

    console, provider, agent = traced
    tracer = provider.get_tracer("test")
    with use_prompt("support-reply", 3), tracer.start_as_current_span(
            "invoke_agent support-bot", attributes={"gen_ai.operation.name": "invoke_agent",
                                                    "console.task": "Answer ticket T-1"}) as root:
        with tracer.start_as_current_span("chat gpt-4o-mini", kind=OtelKind.CLIENT, attributes={
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300}):
            pass
        with tracer.start_as_current_span("execute_tool lookup_order", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order",
                "gen_ai.tool.call.arguments": json.dumps({"order_id": "NW-1"})}):
            pass
    assert provider.force_flush(timeout_millis=30_000)
    trace_id = format(root.get_span_context().trace_id, "032x")
    run = Run.objects.get(trace_id=trace_id)
    assert run.agent == agent and run.task == "Answer ticket T-1"
    spans = {s.name: s for s in Span.objects.filter(run=run)}
    assert set(spans) == {"invoke_agent support-bot", "chat gpt-4o-mini", "execute_tool lookup_order"}
    assert spans["chat gpt-4o-mini"].kind == "llm" and spans["chat gpt-4o-mini"].input_tokens == 1200
    assert spans["execute_tool lookup_order"].kind == "tool"
    assert spans["execute_tool lookup_order"].tool_arguments == {"order_id": "NW-1"}
    assert {(s.prompt_name, s.prompt_version) for s in spans.values()} == {("support-reply", "3")}


def test_an_approval_asked_inside_a_span_is_linked_to_it(traced):
    from approvals.models import ApprovalRequest

    console, provider, agent = traced
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("approval refund") as span:
        decision = console.request_approval("notes.add", {"text": "x"}, "low")
    row = ApprovalRequest.objects.get(pk=decision.id)
    ctx = span.get_span_context()
    assert (row.trace_id, row.span_id) == (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))
