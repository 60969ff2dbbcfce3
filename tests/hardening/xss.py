"""Hostile agent content: one payload per agent-supplied field, sent through the public interfaces.

Each payload carries three ways to run code (a script element, an event
handler, an htmx attribute that would fetch ``/__xss__/<field>`` on load) and
quotes to break out of attributes. Rendered safely, none of them is markup.
"""

import json
from dataclasses import dataclass, replace

from django.test import Client
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from tests.traces.helpers import PROTOBUF, protobuf_body

RAW_MARKERS = ("<script>window.__xss", "<img src=x onerror", 'hx-get="/__xss__', "<svg onload")


def payload(field: str) -> str:
    return (f"<script>window.__xss='{field}'</script><img src=x onerror=\"window.__xss='{field}'\">"
            f"<b hx-get=\"/__xss__/{field}\" hx-trigger=\"load\">{field}</b>\"'>")


def short_payload(field: str) -> str:
    """For fields of at most 64 characters."""
    return f"\"><svg onload=alert(1)><b hx-get=\"/__xss__/{field}\" hx-trigger=load>"


SPAN_FIELDS = ["span_name", "input", "output", "tool_name", "tool_args", "attr_key", "attr_value", "agent_name",
               "task", "status_message", "event_name", "service", "prompt_name", "model", "session"]
REQUEST_FIELDS = ["action", "summary", "arg_key", "arg_value", "resource", "context", "req_prompt", "trace_ref"]
ALL_FIELDS = SPAN_FIELDS + REQUEST_FIELDS


def hostile_spans():
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": payload("service"),
                                                        "session.id": payload("session")}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.hardening")
    with tracer.start_as_current_span(payload("span_name")) as root:
        root.set_attribute("gen_ai.operation.name", "invoke_agent")
        root.set_attribute("gen_ai.agent.name", payload("agent_name"))
        root.set_attribute("console.task", payload("task"))
        root.set_attribute("console.prompt.name", payload("prompt_name"))
        root.set_attribute("console.prompt.version", "1")
        root.set_attribute(payload("attr_key"), payload("attr_value"))
        with tracer.start_as_current_span("chat") as llm:
            llm.set_attribute("gen_ai.operation.name", "chat")
            llm.set_attribute("gen_ai.request.model", payload("model"))
            llm.set_attribute("gen_ai.input.messages", json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": payload("input")}]}]))
            llm.set_attribute("gen_ai.output.messages", payload("output"))
            llm.add_event(payload("event_name"), {"detail": payload("event_name")})
        with tracer.start_as_current_span("execute_tool") as tool:
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_attribute("gen_ai.tool.name", payload("tool_name"))
            tool.set_attribute("gen_ai.tool.call.arguments", json.dumps({"query": payload("tool_args")}))
            tool.set_status(Status(StatusCode.ERROR, payload("status_message")))
    provider.shutdown()
    return list(memory.get_finished_spans())


@dataclass
class Hostile:
    world: object        # a tests.hardening.conftest.World pointing at the hostile rows
    trace_id: str
    request_ids: list


def plant(world, base_url: str | None = None) -> Hostile:
    """Send the hostile run and approval requests as ``world.agent`` through /v1/traces and the API
    (of the test client, or over HTTP to ``base_url``, a live server)."""
    from approvals.models import ApprovalRequest
    from traces.models import Run, Span

    headers = {"Authorization": f"Bearer {world.key}"}
    if base_url:
        import httpx

        http = httpx.Client(base_url=base_url, headers=headers, timeout=30)

        def post(path, body, content_type):
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            response = http.post(path, content=content, headers={"Content-Type": content_type})
            return response.status_code, response.content, response.json
    else:
        client = Client(HTTP_AUTHORIZATION=headers["Authorization"])

        def post(path, body, content_type):
            response = client.post(path, body, content_type=content_type)
            return response.status_code, response.content, response.json

    spans = hostile_spans()
    status, content, _json = post("/v1/traces", protobuf_body(spans), PROTOBUF)
    assert status == 200, content
    trace_id = format(spans[0].context.trace_id, "032x")
    run = Run.objects.get(trace_id=trace_id)
    ids = []
    bodies = [
        {"action": "billing." + payload("action"), "summary": payload("summary"), "risk": "high",
         "arguments": {payload("arg_key"): payload("arg_value")}, "resource": payload("resource"),
         "context": {"why": payload("context")}, "trace_id": trace_id,
         "prompt": {"name": payload("req_prompt"), "version": short_payload("req_prompt")[:50]}},
        {"action": "billing.refund", "summary": "second", "risk": "critical",
         "trace_id": short_payload("trace_ref")[:64], "span_id": short_payload("trace_ref")[:32],
         "resource": payload("resource")},
    ]
    for body in bodies:
        status, content, as_json = post("/api/v1/approvals", body, "application/json")
        assert status == 201, content
        ids.append(as_json()["id"])
    request = ApprovalRequest.objects.get(pk=ids[0])
    span_id = Span.objects.filter(run=run, tool_name__contains="__xss__").values_list("span_id", flat=True).first()
    return Hostile(world=replace(world, request=request, run=run, span_id=span_id), trace_id=trace_id,
                   request_ids=ids)


def raw_markers_in(html: str) -> list[str]:
    return [marker for marker in RAW_MARKERS if marker in html]
