import json
from decimal import Decimal

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.sdk.trace.export import SpanExportResult

from traces.models import ModelPrice, Run, RunStatus, Span, SpanKind
from tests.traces import helpers
from tests.traces.helpers import JSON, PROTOBUF

pytestmark = pytest.mark.django_db


def test_sdk_exporter_protobuf_run_is_stored_with_genai_mapping(client, agent, agent_key):
    ModelPrice.objects.update_or_create(model="gpt-4o", defaults={"input_per_million": Decimal("2.5"), "output_per_million": Decimal("10")})
    spans = helpers.record_agent_run(task="Refund order 42")
    exporter, transport = helpers.sdk_exporter(client, agent_key)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert transport.requests[0]["content-type"] == PROTOBUF

    run = Run.objects.get()
    assert run.agent == agent
    assert run.trace_id == format(spans[0].context.trace_id, "032x")
    assert run.status == RunStatus.OK
    assert run.name == "invoke_agent billing-bot"
    assert run.task == "Refund order 42"
    assert run.session_id == "conv-1"
    assert run.service_name == "billing-service"
    assert run.span_count == 3 and run.error_count == 0
    assert (run.input_tokens, run.output_tokens, run.total_tokens) == (1200, 300, 1500)
    assert run.cost == Decimal("0.006000")  # 1200 * 2.5/1M + 300 * 10/1M
    assert (run.prompt_name, run.prompt_version) == ("refund-agent", "3")
    assert run.started_at is not None and run.duration_ms is not None

    llm = Span.objects.get(kind=SpanKind.LLM)
    assert llm.model == "gpt-4o-2024-08-06" and llm.provider == "openai" and llm.operation == "chat"
    assert (llm.input_tokens, llm.output_tokens, llm.cache_tokens, llm.reasoning_tokens) == (1200, 300, 100, 50)
    assert "Customer asks for a refund" in llm.input_text and "I will refund it." in llm.output_text
    assert llm.attributes["custom.flag"] is True
    assert "gen_ai.input.messages" not in llm.attributes
    tool = Span.objects.get(kind=SpanKind.TOOL)
    assert tool.tool_name == "refund" and tool.tool_arguments == {"order": 42, "amount": 10}
    root = Span.objects.get(kind=SpanKind.AGENT)
    assert root.parent_span_id == "" and tool.parent_span_id == root.span_id


def test_sdk_exporter_gzip_is_accepted(client, agent_key):
    exporter, transport = helpers.sdk_exporter(client, agent_key, compression=Compression.Gzip)
    assert exporter.export(helpers.record_agent_run()) == SpanExportResult.SUCCESS
    assert transport.requests[0]["content-encoding"] == "gzip"
    assert Span.objects.count() == 3


def test_json_body_with_hex_ids_and_charset_parameter(client, agent_key):
    spans = helpers.record_agent_run()
    data = helpers.otlp_json(spans)
    for rs in data["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                span["traceId"] = span["traceId"].upper()  # hex is case-insensitive
                span["startTimeUnixNano"] = int(span["startTimeUnixNano"])  # numbers or strings
                span["kind"] = 1  # enums as integers
                span["someFutureField"] = {"x": 1}  # unknown fields are ignored
    response = helpers.post_json(client, data, key=agent_key, content_type="application/json; charset=utf-8")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith(JSON)
    assert response.json() == {}
    assert Run.objects.get().trace_id == format(spans[0].context.trace_id, "032x")
    assert Span.objects.count() == 3


def test_awkward_characters_survive_the_copy_path(client, agent_key):
    trace = helpers.new_trace_id()
    name = 'tab\there, newline\nthere, back\\slash \\N, "quotes", ünïcödé ✓'
    span = helpers.make_span(trace, name=name, attrs={
        "input.value": "line1\r\nline2\t\\t literal", "weird": "nul\x00byte", "nested\\key": "a\\nb"})
    response = helpers.post(client, helpers.body_of(span), key=agent_key)
    assert response.status_code == 200, response.content
    stored = Span.objects.get()
    assert stored.name == name
    assert stored.input_text == "line1\r\nline2\t\\t literal"
    from django.db import connection

    # PostgreSQL text and jsonb cannot hold NUL, so it is dropped there; SQLite keeps it.
    assert stored.attributes["weird"] == ("nulbyte" if connection.vendor == "postgresql" else "nul\x00byte")
    assert stored.attributes["nested\\key"] == "a\\nb"


def test_nul_in_a_root_span_input_does_not_break_the_run(client, agent_key):
    trace = helpers.new_trace_id()
    span = helpers.make_span(trace, name="root\x00name", attrs={"input.value": "do\x00it"})
    assert helpers.post(client, helpers.body_of(span), key=agent_key).status_code == 200
    run = Run.objects.get()
    assert run.task.replace("\x00", "") == "doit" and run.span_count == 1
