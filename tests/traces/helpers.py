"""Spans made by the real OpenTelemetry SDK, and ways to send them to /v1/traces."""

import base64
import gzip
import json
from dataclasses import dataclass

from django.test import Client
from google.protobuf import json_format
from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def record_agent_run(*, task="Refund order 42", error=False, prompt=("refund-agent", "3"), n_tools=1,
                     input_text="Customer asks for a refund of order 42.", session="conv-1"):
    """Run a small agent under the real SDK tracer; returns its finished ReadableSpans (root last)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "billing-service"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.traces")
    with tracer.start_as_current_span("invoke_agent billing-bot") as root:
        root.set_attribute("gen_ai.operation.name", "invoke_agent")
        root.set_attribute("gen_ai.agent.name", "billing-bot")
        root.set_attribute("console.task", task)
        root.set_attribute("gen_ai.conversation.id", session)
        with tracer.start_as_current_span("chat gpt-4o") as llm:
            llm.set_attribute("gen_ai.operation.name", "chat")
            llm.set_attribute("gen_ai.provider.name", "openai")
            llm.set_attribute("gen_ai.request.model", "gpt-4o")
            llm.set_attribute("gen_ai.response.model", "gpt-4o-2024-08-06")
            llm.set_attribute("gen_ai.usage.input_tokens", 1200)
            llm.set_attribute("gen_ai.usage.output_tokens", 300)
            llm.set_attribute("gen_ai.usage.cache_read.input_tokens", 100)
            llm.set_attribute("gen_ai.usage.reasoning.output_tokens", 50)
            llm.set_attribute("gen_ai.input.messages", json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": input_text}]}]))
            llm.set_attribute("gen_ai.output.messages", json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": "I will refund it."}]}]))
            if prompt:
                llm.set_attribute("console.prompt.name", prompt[0])
                llm.set_attribute("console.prompt.version", prompt[1])
            llm.set_attribute("custom.flag", True)
        for i in range(n_tools):
            with tracer.start_as_current_span("execute_tool refund") as tool:
                tool.set_attribute("gen_ai.operation.name", "execute_tool")
                tool.set_attribute("gen_ai.tool.name", "refund")
                tool.set_attribute("gen_ai.tool.call.arguments", json.dumps({"order": 42, "amount": 10 + i}))
                if error:
                    tool.set_status(Status(StatusCode.ERROR, "payment gateway timeout"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def protobuf_body(spans) -> bytes:
    return encode_spans(spans).SerializeToString()


def otlp_json(spans) -> dict:
    """The OTLP JSON encoding of ``spans``: protobuf JSON mapping with hex ids."""
    data = json_format.MessageToDict(encode_spans(spans))
    for rs in data.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
                for link in span.get("links", []):
                    for key in ("traceId", "spanId"):
                        if key in link:
                            link[key] = base64.b64decode(link[key]).hex()
    return data


def post(client: Client, body: bytes, *, key: str | None, content_type=PROTOBUF, encoding=None, **extra):
    headers = {}
    if key is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    if encoding:
        headers["HTTP_CONTENT_ENCODING"] = encoding
    return client.generic("POST", "/v1/traces", body, content_type=content_type, **headers, **extra)


def post_json(client, data, *, key, content_type=JSON, **kw):
    return post(client, json.dumps(data).encode(), key=key, content_type=content_type, **kw)


def gzipped(body: bytes) -> bytes:
    return gzip.compress(body)


def parse_response(response) -> ExportTraceServiceRequest:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    reply = ExportTraceServiceResponse()
    reply.ParseFromString(response.content)
    return reply


@dataclass(frozen=True, slots=True)
class _Result(BaseHTTPResult):
    body: bytes = b""
    response_headers: dict | None = None

    def content(self) -> bytes:
        return self.body

    def headers(self):
        return {k.lower(): v for k, v in (self.response_headers or {}).items()}


class DjangoClientTransport(BaseHTTPTransport):
    """Lets the real OTLPSpanExporter talk to the Django test client instead of a socket."""

    def __init__(self, client: Client):
        self.client = client
        self.requests = []

    def request(self, method, url, *, headers=None, timeout=None, data=None):
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.requests.append(headers)
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "content-type"}
        response = self.client.generic(method, "/v1/traces", data or b"",
                                       content_type=headers.get("content-type", ""), **extra)
        return _Result(status_code=response.status_code, reason=response.reason_phrase, body=response.content,
                       response_headers=dict(response.items()))

    def is_connection_error(self, error):
        return False

    def close(self):
        pass


def sdk_exporter(client: Client, key: str, *, compression=Compression.NoCompression):
    transport = DjangoClientTransport(client)
    exporter = OTLPSpanExporter(endpoint="http://testserver/v1/traces", headers={"Authorization": f"Bearer {key}"},
                                compression=compression, _transport=transport)
    return exporter, transport


# --- hand-made spans for the edge cases the SDK never produces ------------------------------

import os  # noqa: E402
import time  # noqa: E402

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402
from opentelemetry.proto.trace.v1 import trace_pb2  # noqa: E402

NOW_NS = time.time_ns()


def new_trace_id() -> bytes:
    return os.urandom(16)


def new_span_id() -> bytes:
    return os.urandom(8)


def _any(value) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def make_span(trace_id: bytes, span_id: bytes | None = None, *, parent: bytes = b"", name="step",
              start_ns: int | None = None, duration_ns: int = 1_000_000, attrs: dict | None = None,
              error: bool = False) -> trace_pb2.Span:
    start = NOW_NS - 60 * 10**9 if start_ns is None else start_ns
    span = trace_pb2.Span(trace_id=trace_id, span_id=span_id or new_span_id(), parent_span_id=parent, name=name,
                          start_time_unix_nano=start, end_time_unix_nano=start + duration_ns)
    for key, value in (attrs or {}).items():
        span.attributes.append(KeyValue(key=key, value=_any(value)))
    if error:
        span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
        span.status.message = "failed"
    return span


def export_request(*spans, resource: dict | None = None) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    for key, value in (resource or {"service.name": "svc"}).items():
        rs.resource.attributes.append(KeyValue(key=key, value=_any(value)))
    rs.scope_spans.add().spans.extend(spans)
    return request


def body_of(*spans, **kw) -> bytes:
    return export_request(*spans, **kw).SerializeToString()
