"""Decode OTLP/HTTP trace exports and map spans onto the console's model.

Protobuf bodies are parsed with ``opentelemetry-proto``; JSON bodies follow the
OTLP JSON mapping (hex trace and span ids, case-insensitive; 64-bit integers as
strings or numbers; enums as integers; unknown fields ignored), converted to the
same protobuf message so both take one path. An undecodable body raises
:class:`DecodeError` (HTTP 400); a span that fails validation is rejected alone
(partial success) with a reason.

Attributes are read per the OpenTelemetry GenAI conventions (``gen_ai.*``) and
OpenInference (``openinference.span.kind``, ``llm.*``, ``tool.*``, ``input.value``
...). Every attribute not moved into a column is kept in ``attributes``.
"""

import base64
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from traces.models import SpanKind, SpanStatus

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_TIME_NS = int((datetime(2000, 1, 1, tzinfo=UTC) - EPOCH).total_seconds()) * 10**9
MAX_ATTRIBUTE_CHARS = 16 * 1024


class DecodeError(Exception):
    """The body as a whole cannot be decoded: HTTP 400 with this message."""


class _computed_once:
    """``functools.cached_property`` without the lock Python 3.11 takes on each first read (a third
    of its cost): the value is stored on the instance, which later reads find without calling this."""

    def __init__(self, function):
        self.function, self.name = function, function.__name__
        self.__doc__ = function.__doc__

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.function(instance)
        return value


@dataclass
class SpanRecord:
    """One validated span, mapped to Span columns (plus its trace id)."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    status: str
    status_message: str
    start_ns: int
    end_ns: int
    operation: str = ""
    model: str = ""
    provider: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_tokens: int = 0
    reasoning_tokens: int = 0
    tool_name: str = ""
    tool_arguments: object = None
    input_text: str = ""
    output_text: str = ""
    attributes: dict = field(default_factory=dict)
    events: list = field(default_factory=list)
    links: list = field(default_factory=list)
    prompt_name: str = ""
    prompt_version: str = ""
    session_id: str = ""
    agent_name: str = ""
    task: str = ""
    service_name: str = ""
    redaction_count: int = 0
    cost: Decimal = Decimal(0)
    seq: int = 0
    # JSON text of the structured fields, made (after redaction) by traces.services.prepare_spans
    attributes_json: str = "{}"
    events_json: str = "[]"
    links_json: str = "[]"
    tool_arguments_json: str | None = None

    @property
    def is_root(self) -> bool:
        return not self.parent_span_id

    # Read by the COPY line, the run aggregates and the watchers: made once (times never change).
    @_computed_once
    def start_time(self) -> datetime:
        return EPOCH + timedelta(microseconds=self.start_ns // 1000)

    @_computed_once
    def end_time(self) -> datetime:
        return EPOCH + timedelta(microseconds=self.end_ns // 1000)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass
class Decoded:
    spans: list[SpanRecord]
    rejected: Counter  # reason -> count

    @property
    def rejected_count(self) -> int:
        return sum(self.rejected.values())


# --- bodies -------------------------------------------------------------------------------


def parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (ProtobufDecodeError, ValueError) as exc:
        raise DecodeError(f"Invalid protobuf ExportTraceServiceRequest: {exc}") from exc
    return request


_ID_KEYS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")


def _hex_to_base64(value):
    if not isinstance(value, str):
        return value
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b"\xff"  # not hex: becomes an id of the wrong length, rejected per span with a reason
    return base64.b64encode(raw).decode()


def _convert_ids(obj: dict) -> None:
    for key in _ID_KEYS:
        if key in obj:
            obj[key] = _hex_to_base64(obj[key])


def _items(obj, *names):
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else None
        if isinstance(value, list):
            return value
    return []


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    """OTLP JSON: ids are hex, not the base64 protobuf's JSON mapping expects."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"Invalid JSON: {exc}") from exc
    except RecursionError as exc:  # hostile nesting: a 400, never a 500
        raise DecodeError("Invalid JSON: nested too deeply") from exc
    if not isinstance(data, dict):
        raise DecodeError("Invalid OTLP JSON: the body must be an object with resourceSpans")
    for resource_spans in _items(data, "resourceSpans", "resource_spans"):
        for scope_spans in _items(resource_spans, "scopeSpans", "scope_spans"):
            for span in _items(scope_spans, "spans"):
                if not isinstance(span, dict):
                    continue
                _convert_ids(span)
                for link in _items(span, "links"):
                    if isinstance(link, dict):
                        _convert_ids(link)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise DecodeError(f"Invalid OTLP JSON: {exc}") from exc
    except RecursionError as exc:
        raise DecodeError("Invalid OTLP JSON: values nested too deeply") from exc
    return request


# --- values ---------------------------------------------------------------------------------


def _clean_str(value: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL.
    return value.replace("\x00", "") if "\x00" in value else value


def any_value(value):
    """An OTLP AnyValue as plain JSON-able Python (NUL is removed when it is written)."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        number = value.double_value
        return number if number == number and abs(number) != float("inf") else str(number)
    if which == "bool_value":
        return value.bool_value
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None


def attributes_of(key_values, limit: int = MAX_ATTRIBUTE_CHARS) -> dict:
    attrs = {}
    for kv in key_values:  # the hot loop of decoding: strings and ints inline, the rest through any_value
        value = kv.value
        # A non-empty string_value can only be the set member of the oneof: most values are strings, and
        # reading it first spares them WhichOneof (a third of this loop's time)
        text = value.string_value
        if text:
            attrs[kv.key] = text if len(text) <= limit else _limit(text, limit)
            continue
        which = value.WhichOneof("value")
        if which == "int_value":
            attrs[kv.key] = value.int_value
        elif which == "string_value":
            attrs[kv.key] = text
        else:
            attrs[kv.key] = any_value(value)
    return attrs


def _str(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _int(value) -> int:
    if value is None:  # the usual case on most spans: no exception raised and caught
        return 0
    if type(value) is int:
        return value if value > 0 else 0
    try:
        return max(0, int(value))
    except (TypeError, ValueError, OverflowError):
        return 0


def _first(attrs: dict, *keys):
    for key in keys:
        value = attrs.get(key)
        if value not in (None, ""):
            return value
    return None


def _limit(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"… [truncated {len(text) - limit} characters]"


# --- kinds ----------------------------------------------------------------------------------

_OPENINFERENCE_KINDS = {
    "LLM": SpanKind.LLM, "EMBEDDING": SpanKind.LLM, "TOOL": SpanKind.TOOL, "RETRIEVER": SpanKind.RETRIEVER,
    "RERANKER": SpanKind.RETRIEVER, "AGENT": SpanKind.AGENT, "GUARDRAIL": SpanKind.DECISION,
    "EVALUATOR": SpanKind.DECISION, "CHAIN": SpanKind.OTHER,
}
_GENAI_OPERATIONS = {
    "chat": SpanKind.LLM, "text_completion": SpanKind.LLM, "generate_content": SpanKind.LLM,
    "embeddings": SpanKind.LLM, "invoke_agent": SpanKind.AGENT, "create_agent": SpanKind.AGENT,
    "execute_tool": SpanKind.TOOL, "retrieval": SpanKind.RETRIEVER, "retrieve": SpanKind.RETRIEVER,
}


_KIND_VALUES = frozenset(SpanKind.values)  # SpanKind.values builds its list anew on each read (~9 us)


def span_kind(attrs: dict, *, is_root: bool) -> str:
    explicit = attrs.get("console.span.kind")
    if isinstance(explicit, str) and explicit.lower() in _KIND_VALUES:
        return explicit.lower()
    oi = attrs.get("openinference.span.kind")
    if isinstance(oi, str) and oi.upper() in _OPENINFERENCE_KINDS:
        kind = _OPENINFERENCE_KINDS[oi.upper()]
        return SpanKind.AGENT if kind == SpanKind.OTHER and is_root else kind
    operation = attrs.get("gen_ai.operation.name")
    if isinstance(operation, str) and operation in _GENAI_OPERATIONS:
        return _GENAI_OPERATIONS[operation]
    if _first(attrs, "gen_ai.request.model", "gen_ai.response.model", "llm.model_name"):
        return SpanKind.LLM
    if _first(attrs, "gen_ai.tool.name", "tool.name"):
        return SpanKind.TOOL
    return SpanKind.AGENT if is_root else SpanKind.OTHER


# Content moved into columns; removed from ``attributes`` so it is not stored twice.
_INPUT_KEYS = ("gen_ai.input.messages", "gen_ai.prompt", "input.value")
_OUTPUT_KEYS = ("gen_ai.output.messages", "gen_ai.completion", "output.value")
_TOOL_ARGUMENT_KEYS = ("gen_ai.tool.call.arguments", "tool.parameters", "tool_call.function.arguments")


# Columns read from attributes: each from the first of its keys (the conventions' names, in order of
# preference) whose value is set, i.e. neither None nor "". The content keys are also removed from
# ``attributes``.
_COLUMN_KEYS = {
    "model": ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name"),
    "provider": ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system"),
    "input_tokens": ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt"),
    "output_tokens": ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.token_count.completion"),
    "cache_tokens": ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens",
                     "gen_ai.usage.cached_tokens", "llm.token_count.prompt_details.cache_read"),
    "reasoning_tokens": ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens",
                         "llm.token_count.completion_details.reasoning"),
    "tool_name": ("gen_ai.tool.name", "tool.name"),
    "session_id": ("gen_ai.conversation.id", "session.id"),
    "agent_name": ("gen_ai.agent.name",),
    "task": ("console.task", "gen_ai.agent.description"),
    "input": _INPUT_KEYS,
    "output": _OUTPUT_KEYS,
    "tool_arguments": _TOOL_ARGUMENT_KEYS,
}
_MOVED_COLUMNS = ("input", "output", "tool_arguments")
_KEY_COLUMN = {key: (column, rank, column in _MOVED_COLUMNS)
               for column, keys in _COLUMN_KEYS.items() for rank, key in enumerate(keys)}


def _columns(attrs: dict) -> dict:
    """Column -> the value of its first key that is set (``_COLUMN_KEYS``); content keys are popped.

    One pass over the span's few attributes instead of a lookup for every convention's key,
    most of which a span does not carry.
    """
    found, ranks, moved = {}, {}, []
    for key, value in attrs.items():
        entry = _KEY_COLUMN.get(key)
        if entry is None:
            continue
        column, rank, is_moved = entry
        if is_moved:
            moved.append(key)
        if value is None or value == "":
            continue
        if rank < ranks.get(column, rank + 1):
            found[column], ranks[column] = value, rank
    for key in moved:
        del attrs[key]
    return found


def _tool_arguments(value):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            return value
    return value


# Read once here: a TextChoices member read off its class costs a tenth of a microsecond, every time.
_UNSET, _OK, _ERROR, _TOOL = SpanStatus.UNSET, SpanStatus.OK, SpanStatus.ERROR, SpanKind.TOOL


def map_span(span, *, resource: dict, text_limit: int) -> SpanRecord:
    """Map one already-validated protobuf span.

    Most columns are absent from most spans: an absent one is "" or 0 at once, without a call.
    """
    attrs = attributes_of(span.attributes, max(text_limit, MAX_ATTRIBUTE_CHARS))
    parent = span.parent_span_id.hex()
    kind = span_kind(attrs, is_root=not parent)

    span_status = span.status
    code = span_status.code
    status = _ERROR if code == 2 else _OK if code == 1 else _UNSET
    if status is _UNSET and attrs.get("error.type"):
        status = _ERROR

    columns = _columns(attrs)
    column = columns.get
    input_value = column("input")
    output_value = column("output")
    tool_args = column("tool_arguments")
    if tool_args is None and kind == _TOOL and input_value is not None:
        tool_args = input_value

    events = []
    for event in span.events or ():
        event_attrs = attributes_of(event.attributes)
        events.append({"name": _clean_str(event.name), "time_unix_nano": event.time_unix_nano,
                       "attributes": event_attrs})
        if event.name == "exception" and status is _UNSET:
            status = _ERROR
    links = [{"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
              "attributes": attributes_of(link.attributes)} for link in span.links] if span.links else []

    operation, prompt_name, prompt_version = (attrs.get("gen_ai.operation.name"), attrs.get("console.prompt.name"),
                                              attrs.get("console.prompt.version"))
    model, provider, tool_name, task = column("model"), column("provider"), column("tool_name"), column("task")
    session_id = column("session_id") or _first(resource, *_COLUMN_KEYS["session_id"])
    agent_name = column("agent_name") or resource.get("gen_ai.agent.name")
    service_name = resource.get("service.name")
    input_tokens, output_tokens = column("input_tokens"), column("output_tokens")
    cache_tokens, reasoning_tokens = column("cache_tokens"), column("reasoning_tokens")
    return SpanRecord(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=parent,
        name=_clean_str(span.name)[:300],
        kind=kind,
        status=status,
        status_message=_clean_str(span_status.message)[:1000],
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        operation="" if operation is None else _str(operation)[:50],
        model="" if model is None else _str(model)[:200],
        provider="" if provider is None else _str(provider)[:100],
        input_tokens=0 if input_tokens is None else _int(input_tokens),
        output_tokens=0 if output_tokens is None else _int(output_tokens),
        cache_tokens=0 if cache_tokens is None else _int(cache_tokens),
        reasoning_tokens=0 if reasoning_tokens is None else _int(reasoning_tokens),
        tool_name="" if tool_name is None else _str(tool_name)[:200],
        tool_arguments=None if tool_args is None else _tool_arguments(tool_args),
        input_text="" if input_value is None else _limit(_str(input_value), text_limit),
        output_text="" if output_value is None else _limit(_str(output_value), text_limit),
        attributes=attrs,
        events=events,
        links=links,
        prompt_name="" if prompt_name is None else _str(prompt_name)[:200],
        prompt_version="" if prompt_version is None else _str(prompt_version)[:50],
        session_id="" if session_id is None else _str(session_id)[:200],
        agent_name="" if agent_name is None else _str(agent_name)[:300],
        task="" if task is None else _str(task)[:500],
        service_name="" if service_name is None else _str(service_name)[:200],
    )


def validation_error(span, *, max_ns: int) -> str | None:
    """Why this span cannot be stored, or None."""
    if len(span.trace_id) != 16 or not any(span.trace_id):
        return "trace id must be 16 bytes (32 hex characters) and not all zero"
    if len(span.span_id) != 8 or not any(span.span_id):
        return "span id must be 8 bytes (16 hex characters) and not all zero"
    if span.parent_span_id and len(span.parent_span_id) != 8:
        return "parent span id must be empty or 8 bytes (16 hex characters)"
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if start < MIN_TIME_NS or end < MIN_TIME_NS:
        return "start or end time is zero or before the year 2000"
    if start > max_ns or end > max_ns:
        return "start or end time is too far in the future"
    if end < start:
        return "end time is before start time"
    return None


def decode(request: ExportTraceServiceRequest, *, now: datetime, max_future: timedelta,
           text_limit: int) -> Decoded:
    max_ns = int((now + max_future - EPOCH).total_seconds() * 1e9)
    spans, rejected = [], Counter()
    for resource_spans in request.resource_spans:
        resource = attributes_of(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                reason = validation_error(span, max_ns=max_ns)
                if reason:
                    rejected[reason] += 1
                    continue
                spans.append(map_span(span, resource=resource, text_limit=text_limit))
    return Decoded(spans=spans, rejected=rejected)


def rejection_message(rejected: Counter) -> str:
    total = sum(rejected.values())
    parts = [f"{count} × {reason}" for reason, count in rejected.most_common()]
    return f"{total} span{'s' if total != 1 else ''} rejected: " + "; ".join(parts)
