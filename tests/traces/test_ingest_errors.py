"""Bad bodies, limits and auth: each gets the status and message the OTLP spec asks for."""

import gzip
import json
import zlib

import pytest
from google.rpc import status_pb2

from traces import ingest
from traces.models import Run, Span
from tests.traces import helpers
from tests.traces.helpers import JSON, PROTOBUF

pytestmark = pytest.mark.django_db


def _status(response) -> status_pb2.Status:
    status = status_pb2.Status()
    status.ParseFromString(response.content)
    return status


def test_truncated_protobuf_is_400_with_a_google_rpc_status(client, agent_key):
    body = helpers.protobuf_body(helpers.record_agent_run())
    response = helpers.post(client, body[: len(body) // 2], key=agent_key)
    assert response.status_code == 400
    assert response["Content-Type"] == PROTOBUF
    status = _status(response)
    assert status.code == 3 and "Invalid protobuf" in status.message
    assert Span.objects.count() == 0


def test_invalid_json_is_400_in_json(client, agent_key):
    response = helpers.post(client, b'{"resourceSpans": [', key=agent_key, content_type=JSON)
    assert response.status_code == 400
    assert response["Content-Type"].startswith(JSON)
    assert response.json()["code"] == 3 and "Invalid JSON" in response.json()["message"]


def test_json_of_the_wrong_shape_is_400(client, agent_key):
    response = helpers.post_json(client, {"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5,
                                 "startTimeUnixNano": "soon"}]}]}]}, key=agent_key)
    assert response.status_code == 400
    assert "Invalid OTLP JSON" in response.json()["message"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", ""])
def test_unsupported_content_type_is_415(client, agent_key, content_type):
    response = helpers.post(client, b"x", key=agent_key, content_type=content_type)
    assert response.status_code == 415
    assert "Unsupported Content-Type" in response.json()["message"]


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer aoc_not-a-real-key"])
def test_missing_or_wrong_key_is_401(client, agent, header):
    body = helpers.protobuf_body(helpers.record_agent_run())
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.generic("POST", "/v1/traces", body, content_type=PROTOBUF, **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert _status(response).code == 16
    assert Run.objects.count() == 0


def test_revoked_key_is_401(client, agent, admin_user):
    from agents import services as agent_services

    key, plain = agent_services.issue_key(agent=agent, actor=admin_user)
    agent_services.revoke_key(key_id=key.pk, actor=admin_user)
    response = helpers.post(client, helpers.protobuf_body(helpers.record_agent_run()), key=plain)
    assert response.status_code == 401


def test_spans_with_wrong_id_lengths_or_absurd_times_are_rejected_alone(client, agent_key):
    trace = helpers.new_trace_id()
    good = helpers.make_span(trace, name="good")
    body = helpers.body_of(
        good,
        helpers.make_span(trace[:8], name="short trace id"),
        helpers.make_span(trace, b"\x01\x02\x03", name="short span id"),
        helpers.make_span(trace, name="zero start", start_ns=0),
        helpers.make_span(trace, name="far future", start_ns=helpers.NOW_NS + 10 * 365 * 86400 * 10**9),
        helpers.make_span(trace, name="ends before it starts", duration_ns=-5),
    )
    response = helpers.post(client, body, key=agent_key)
    assert response.status_code == 200
    reply = helpers.parse_response(response)
    assert reply.partial_success.rejected_spans == 5
    message = reply.partial_success.error_message
    for reason in ("trace id must be 16 bytes", "span id must be 8 bytes", "before the year 2000",
                   "too far in the future", "end time is before start time"):
        assert reason in message
    assert list(Span.objects.values_list("name", flat=True)) == ["good"]


def test_json_ids_that_are_not_hex_are_rejected_per_span(client, agent_key):
    data = helpers.otlp_json(helpers.record_agent_run())
    spans = data["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[0]["spanId"] = "zz" * 8
    response = helpers.post_json(client, data, key=agent_key)
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 1 and "span id must be 8 bytes" in partial["errorMessage"]
    assert Span.objects.count() == 2


def test_deflate_is_accepted(client, agent_key):
    body = zlib.compress(helpers.protobuf_body(helpers.record_agent_run()))
    response = helpers.post(client, body, key=agent_key, encoding="deflate")
    assert response.status_code == 200
    assert Span.objects.count() == 3


def test_corrupt_gzip_is_400(client, agent_key):
    response = helpers.post(client, b"\x1f\x8b\x08\x00garbage", key=agent_key, encoding="gzip")
    assert response.status_code == 400
    assert "not valid gzip" in _status(response).message


def test_gzip_bomb_is_413_without_inflating_it(client, agent_key, settings, monkeypatch):
    settings.OTLP_MAX_BODY_BYTES = 1024 * 1024
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))  # 50 MiB of zeros in ~50 KB
    assert len(bomb) < settings.OTLP_MAX_BODY_BYTES
    produced = []
    real = ingest.zlib.decompressobj

    class Spy:
        def __init__(self, wbits):
            self.inner = real(wbits)

        def decompress(self, data, max_length=0):
            out = self.inner.decompress(data, max_length)
            produced.append(len(out))
            return out

        def __getattr__(self, name):
            return getattr(self.inner, name)

    monkeypatch.setattr(ingest.zlib, "decompressobj", Spy)
    response = helpers.post(client, bomb, key=agent_key, encoding="gzip")
    assert response.status_code == 413
    assert "exceeds" in _status(response).message
    assert sum(produced) <= settings.OTLP_MAX_BODY_BYTES + 1


def test_raw_body_over_the_limit_is_413(client, agent_key, settings):
    settings.OTLP_MAX_BODY_BYTES = 1000
    response = helpers.post(client, b"\0" * 5000, key=agent_key)
    assert response.status_code == 413


def test_a_content_length_that_is_not_a_byte_count_is_400_naming_it(client, agent_key):
    # '\u00b2' passes str.isdigit() but not int(): it was a 500.
    response = helpers.post(client, b"\0" * 10, key=agent_key, CONTENT_LENGTH="\u00b2")
    assert response.status_code == 400
    assert "Content-Length" in _status(response).message


def test_unknown_content_encoding_is_415(client, agent_key):
    response = helpers.post(client, b"abc", key=agent_key, encoding="br")
    assert response.status_code == 415


def test_key_over_its_rate_limit_gets_429_with_retry_after(client, agent):
    from tests import factories

    key, plain = factories.make_key(agent)
    key.rate_limit_per_s = 2
    key.save()
    ingest.rate_limiter.reset()
    body = helpers.protobuf_body(helpers.record_agent_run())
    statuses = [helpers.post(client, body, key=plain).status_code for _ in range(5)]
    assert statuses[:2] == [200, 200]
    assert 429 in statuses
    response = helpers.post(client, body, key=plain)
    if response.status_code == 429:
        assert response["Retry-After"] == "1"
    ingest.rate_limiter.reset()


def test_no_free_ingest_slot_is_503_with_retry_after(client, agent_key, settings):
    settings.OTLP_MAX_CONCURRENT = 1
    settings.OTLP_QUEUE_WAIT_S = 0
    slots = ingest._ingest_slots()
    assert slots.acquire(blocking=False)
    try:
        response = helpers.post(client, helpers.protobuf_body(helpers.record_agent_run()), key=agent_key)
    finally:
        slots.release()
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert _status(response).code == 14
    assert Span.objects.count() == 0


def test_database_unavailable_is_503_never_200(client, agent_key, monkeypatch):
    from django.db import OperationalError

    from traces import services

    def down(**kwargs):
        raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")

    monkeypatch.setattr(services, "ingest_spans", down)
    response = helpers.post(client, helpers.protobuf_body(helpers.record_agent_run()), key=agent_key)
    assert response.status_code == 503
    assert response["Retry-After"]


def test_get_is_405(client):
    response = client.get("/v1/traces")
    assert response.status_code == 405
    assert json.loads(response.content)["code"] == 12


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_dropped_database_connection_is_503_and_nothing_half_stored(agent_key):
    """The server side of the connection is killed, as when PostgreSQL restarts."""
    import psycopg
    from django.db import connection
    from django.test import Client

    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    response = helpers.post(Client(), helpers.protobuf_body(helpers.record_agent_run()), key=agent_key)
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    connection.close()  # what request_finished does in the server (the test client skips it)
    assert Span.objects.count() == 0


def test_tool_arguments_nested_past_the_recursion_limit_are_kept_as_text(client, agent_key):
    """Python's JSON parser raises RecursionError (not ValueError) for '[[[[...]]]]' thousands deep: an agent's
    tool arguments like that answered 500 and the whole batch was lost."""
    trace = helpers.new_trace_id()
    deep = "[" * 5000 + "]" * 5000
    tool = helpers.make_span(trace, name="execute_tool deep", attrs={
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "deep", "gen_ai.tool.call.arguments": deep})
    other = helpers.make_span(trace, name="next step")
    response = helpers.post(client, helpers.body_of(tool, other), key=agent_key)
    assert response.status_code == 200
    stored = Span.objects.get(name="execute_tool deep")
    assert stored.tool_arguments == deep and Span.objects.filter(name="next step").exists()
