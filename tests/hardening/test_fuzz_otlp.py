"""Fuzzing ``POST /v1/traces`` (protobuf and JSON) with hypothesis, bounded and derandomized.

Whatever arrives: a clear 4xx, or 200 with every accepted span stored; never a
5xx, and nothing written when the answer is not 200 or when every span was
rejected.
"""

import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tests.traces.helpers import JSON, PROTOBUF, protobuf_body, record_agent_run
from traces.models import Run, Span

pytestmark = pytest.mark.django_db

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
SMALL = settings(FUZZ, max_examples=40)
MEDIUM = settings(FUZZ, max_examples=80)

NOW_NS = 1_795_000_000 * 10**9  # 2026-11-18
TIMES = st.sampled_from([0, 1, 946_684_799 * 10**9, NOW_NS, NOW_NS + 10**9, 2**63 - 1, 2**64 - 1,
                         NOW_NS + 10 * 365 * 86400 * 10**9])
IDS = st.one_of(st.binary(min_size=0, max_size=20), st.just(b"\x00" * 16), st.just(b"\x00" * 8))


def send(body: bytes, key: str, content_type=PROTOBUF):
    return Client().generic("POST", "/v1/traces", body, content_type=content_type,
                            HTTP_AUTHORIZATION=f"Bearer {key}")


def rejected_of(response, content_type=PROTOBUF) -> int:
    if content_type == PROTOBUF:
        reply = ExportTraceServiceResponse()
        reply.ParseFromString(response.content)
        return reply.partial_success.rejected_spans
    return int(response.json().get("partialSuccess", {}).get("rejectedSpans", 0))


def check(response, before: int, *, content_type=PROTOBUF, sent: int | None = None):
    """The invariant every fuzz case ends with."""
    after = Span.objects.count()
    assert response.status_code < 500, (response.status_code, response.content[:300])
    if response.status_code != 200:
        assert 400 <= response.status_code < 500
        assert after == before, "a refused body wrote rows"
        assert response.content, "a 4xx must say why"
        return
    if sent is not None:
        rejected = rejected_of(response, content_type)
        assert after - before <= sent - rejected
        if rejected == sent:
            assert after == before, "an all-invalid body wrote rows"


# --- protobuf ----------------------------------------------------------------------------------


@MEDIUM
@given(body=st.binary(max_size=4096))
def test_random_bytes_as_protobuf(agent_key, body):
    before = Span.objects.count()
    check(send(body, agent_key), before)


@pytest.fixture(scope="module")
def valid_body():
    return protobuf_body(record_agent_run(n_tools=3))


@SMALL
@given(cut=st.integers(min_value=1, max_value=10_000), flip=st.integers(min_value=0, max_value=255))
def test_truncated_or_corrupted_protobuf(agent_key, valid_body, cut, flip):
    before = Span.objects.count()
    body = valid_body[: cut % len(valid_body)]
    check(send(body, agent_key), before)
    corrupted = bytearray(valid_body)
    corrupted[cut % len(valid_body)] ^= flip or 1
    check(send(bytes(corrupted), agent_key), Span.objects.count())


def nested_value(depth: int, kind: str) -> AnyValue:
    value = AnyValue(string_value="leaf")
    for _ in range(depth):
        outer = AnyValue()
        if kind == "array":
            outer.array_value.values.append(value)
        else:
            outer.kvlist_value.values.append(KeyValue(key="k", value=value))
        value = outer
    return value


def export_with(spans_fields: list[dict]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for fields in spans_fields:
        span = scope.spans.add()
        span.trace_id, span.span_id = fields["trace_id"], fields["span_id"]
        span.parent_span_id = fields.get("parent", b"")
        span.name = fields.get("name", "fuzz")
        span.start_time_unix_nano, span.end_time_unix_nano = fields["start"], fields["end"]
        for key, value in fields.get("attributes", []):
            span.attributes.append(KeyValue(key=key, value=value))
    return request


attribute_values = st.one_of(
    st.text(max_size=200).map(lambda s: AnyValue(string_value=s)),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda i: AnyValue(int_value=i)),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: AnyValue(double_value=f)),
    st.binary(max_size=100).map(lambda b: AnyValue(bytes_value=b)),
    st.integers(min_value=1, max_value=30).flatmap(
        lambda d: st.sampled_from(["array", "kvlist"]).map(lambda k: nested_value(d, k))),
    st.just(AnyValue(string_value="x" * 100_000)),
)
span_fields = st.fixed_dictionaries({
    "trace_id": IDS, "span_id": IDS, "start": TIMES, "end": TIMES,
    "parent": st.one_of(st.just(b""), IDS),
    "name": st.text(max_size=500),
    "attributes": st.lists(st.tuples(st.text(max_size=50), attribute_values), max_size=4),
})


@FUZZ
@given(spans=st.lists(span_fields, min_size=1, max_size=5))
def test_structured_protobuf_spans(agent_key, spans):
    before = Span.objects.count()
    body = export_with(spans).SerializeToString()
    check(send(body, agent_key), before, sent=len(spans))


@pytest.mark.parametrize("depth", [10, 99, 100, 101, 150, 1000])
@pytest.mark.parametrize("kind", ["array", "kvlist"])
def test_deeply_nested_attribute_values_in_protobuf(agent_key, depth, kind):
    body = _deep_body_by_hand(depth, kind)  # the protobuf library itself refuses to build these
    before = Span.objects.count()
    response = send(body, agent_key)
    check(response, before, sent=1)
    if depth == 10:  # the hand-made body is a real export: it is stored
        assert response.status_code == 200 and Span.objects.count() == before + 1


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    length, out = len(payload), bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([(number << 3) | 2]) + bytes(out) + payload


def _deep_body_by_hand(depth: int, kind: str) -> bytes:
    value = _field(1, b"leaf")  # AnyValue.string_value
    for _ in range(depth):
        if kind == "array":
            value = _field(5, _field(1, value))  # AnyValue.array_value -> ArrayValue.values
        else:
            value = _field(6, _field(1, _field(1, b"k") + _field(2, value)))  # kvlist -> KeyValue(key, value)
    span = export_with([{"trace_id": b"\x01" * 16, "span_id": b"\x02" * 8, "start": NOW_NS,
                         "end": NOW_NS + 1000}]).resource_spans[0].scope_spans[0].spans[0].SerializeToString()
    span += _field(9, _field(1, b"deep") + _field(2, value))  # Span.attributes
    return _field(1, _field(2, _field(2, span)))  # request.resource_spans -> scope_spans -> spans


def test_invalid_utf8_in_a_protobuf_string_is_400_not_500(agent_key):
    good = export_with([{"trace_id": b"\x01" * 16, "span_id": b"\x02" * 8, "start": NOW_NS,
                         "end": NOW_NS + 1000, "name": "NAMEMARK"}]).SerializeToString()
    body = good.replace(b"NAMEMARK", b"NAME\xff\xfeRK")
    before = Span.objects.count()
    response = send(body, agent_key)
    check(response, before, sent=1)


def test_an_all_invalid_batch_writes_nothing_and_says_why(agent_key):
    spans = [{"trace_id": b"\x01" * 15, "span_id": b"\x02" * 8, "start": NOW_NS, "end": NOW_NS},
             {"trace_id": b"\x01" * 16, "span_id": b"\x02" * 8, "start": 0, "end": 0},
             {"trace_id": b"\x01" * 16, "span_id": b"\x02" * 8, "start": 2**64 - 1, "end": 2**64 - 1}]
    runs, before = Run.objects.count(), Span.objects.count()
    response = send(export_with(spans).SerializeToString(), agent_key)
    assert response.status_code == 200
    assert rejected_of(response) == 3
    assert (Run.objects.count(), Span.objects.count()) == (runs, before)


# --- JSON ---------------------------------------------------------------------------------------

json_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30))
json_values = st.recursive(json_leaves, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)), max_leaves=20)
otlp_keys = st.sampled_from(["traceId", "spanId", "parentSpanId", "name", "startTimeUnixNano", "endTimeUnixNano",
                             "attributes", "events", "links", "status", "kind"])
json_spans = st.lists(st.dictionaries(otlp_keys, json_values, max_size=8), max_size=4)


@MEDIUM
@given(spans=json_spans)
def test_json_spans_of_any_shape(agent_key, spans):
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}).encode()
    before = Span.objects.count()
    check(send(body, agent_key, JSON), before, content_type=JSON, sent=len(spans))


@SMALL
@given(body=st.binary(max_size=2048))
def test_json_random_bytes_and_invalid_utf8(agent_key, body):
    before = Span.objects.count()
    check(send(body, agent_key, JSON), before, content_type=JSON)


@pytest.mark.parametrize("depth", [100, 1000, 100_000])
def test_deeply_nested_json_bodies(agent_key, depth):
    before = Span.objects.count()
    body = ('{"resourceSpans": ' + "[" * depth + "]" * depth + "}").encode()
    check(send(body, agent_key, JSON), before, content_type=JSON)


@pytest.mark.parametrize("depth", [30, 110, 200])
def test_deeply_nested_json_attribute_values(agent_key, depth):
    value = {"stringValue": "leaf"}
    for _ in range(depth):
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    span = {"traceId": "01" * 16, "spanId": "02" * 8, "name": "deep", "startTimeUnixNano": str(NOW_NS),
            "endTimeUnixNano": str(NOW_NS + 1000), "attributes": [{"key": "deep", "value": value}]}
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()
    before = Span.objects.count()
    check(send(body, agent_key, JSON), before, content_type=JSON, sent=1)


def test_invalid_utf8_inside_a_json_string_is_400(agent_key):
    body = b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "\xff\xfe"}]}]}]}'
    before = Span.objects.count()
    response = send(body, agent_key, JSON)
    assert response.status_code == 400
    check(response, before, content_type=JSON)


def test_a_huge_attribute_value_is_stored_truncated(agent_key):
    span = {"traceId": "0a" * 16, "spanId": "0b" * 8, "name": "huge", "startTimeUnixNano": str(NOW_NS),
            "endTimeUnixNano": str(NOW_NS + 1000),
            "attributes": [{"key": "blob", "value": {"stringValue": "y" * 3_000_000}}]}
    response = send(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode(), agent_key, JSON)
    assert response.status_code == 200
    stored = Span.objects.get(name="huge")
    assert len(stored.attributes["blob"]) < 40_000 and "truncated" in stored.attributes["blob"]
