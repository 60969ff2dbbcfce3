"""``POST /v1/traces`` under the ASGI server is answered before Django's handler (traces.ingest.fast_path):
the same answers as the Django view, and whatever Django must still see (other methods, unknown hosts,
plain HTTP under SECURE_SSL_REDIRECT) goes on to Django."""

import asyncio
import gzip
import json

import pytest
from asgiref.sync import async_to_sync
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from console import metrics
from tests.traces import helpers
from tests.traces.helpers import JSON, PROTOBUF
from traces import ingest
from traces.models import Run, Span

# The fast path runs the store in a shared executor thread with its own connection: rows must be committed.
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


class Answer:
    def __init__(self, status, headers, body):
        self.status_code, self.headers, self.content = status, headers, body


def asgi_post(body: bytes, *, key=None, content_type=PROTOBUF, encoding=None, host="testserver", method="POST",
              scheme="http", content_length: bytes | None = None) -> Answer:
    """One request through the project's ASGI application, as uvicorn would make it."""
    from console.asgi import application

    if content_length is None:
        content_length = str(len(body)).encode()
    headers = [(b"host", host.encode()), (b"content-length", content_length)]
    if content_type:
        headers.append((b"content-type", content_type.encode()))
    if key is not None:
        headers.append((b"authorization", f"Bearer {key}".encode()))
    if encoding:
        headers.append((b"content-encoding", encoding.encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": scheme, "path": "/v1/traces", "raw_path": b"/v1/traces", "query_string": b"",
             "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    chunks = [body[:len(body) // 2], body[len(body) // 2:]]  # two messages, as a large body arrives
    sent = {"status": None, "headers": {}, "body": b""}

    async def call():
        async def receive():
            if chunks:
                chunk = chunks.pop(0)
                return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
            await asyncio.Future()  # the client stays connected (Django listens for a disconnect)

        async def send(message):
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
                sent["headers"] = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
            elif message["type"] == "http.response.body":
                sent["body"] += message.get("body", b"")

        await application(scope, receive, send)

    async_to_sync(call)()
    return Answer(sent["status"], sent["headers"], sent["body"])


def _status(answer) -> status_pb2.Status:
    status = status_pb2.Status()
    status.ParseFromString(answer.content)
    return status


def test_sdk_run_is_stored_and_acknowledged_like_the_django_view(agent_key):
    spans = helpers.record_agent_run(n_tools=2)
    answer = asgi_post(helpers.protobuf_body(spans), key=agent_key)
    assert answer.status_code == 200 and answer.headers["content-type"] == PROTOBUF
    reply = ExportTraceServiceResponse()
    reply.ParseFromString(answer.content)
    assert not reply.HasField("partial_success")
    run = Run.objects.get()
    assert run.span_count == len(spans) == Span.objects.count()
    # Sent again (an exporter retry): acknowledged, stored once.
    assert asgi_post(helpers.protobuf_body(spans), key=agent_key).status_code == 200
    assert Span.objects.count() == len(spans)


def test_json_with_charset_and_gzip_are_accepted(agent_key):
    body = gzip.compress(json.dumps(helpers.otlp_json(helpers.record_agent_run())).encode())
    answer = asgi_post(body, key=agent_key, content_type="application/json; charset=utf-8", encoding="gzip")
    assert answer.status_code == 200 and answer.headers["content-type"] == JSON
    assert Span.objects.exists()


def test_missing_key_is_401_with_www_authenticate(agent):
    answer = asgi_post(helpers.protobuf_body(helpers.record_agent_run()))
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    assert asgi_post(b"x", key="aoc_not-a-real-key").status_code == 401
    assert not Span.objects.exists()


def test_unsupported_content_type_is_415_and_bad_bodies_400(agent_key):
    assert asgi_post(b"x", key=agent_key, content_type="text/plain").status_code == 415
    body = helpers.protobuf_body(helpers.record_agent_run())
    answer = asgi_post(body[: len(body) // 2], key=agent_key)
    assert answer.status_code == 400 and "Invalid protobuf" in _status(answer).message
    assert asgi_post(b"not gzip", key=agent_key, encoding="gzip").status_code == 400


def test_body_over_the_limit_is_413(agent_key, settings):
    settings.OTLP_MAX_BODY_BYTES = 100
    answer = asgi_post(helpers.protobuf_body(helpers.record_agent_run()), key=agent_key)
    assert answer.status_code == 413 and _status(answer).code == 8


@pytest.mark.parametrize("declared", ["\u00b2".encode("latin-1"), b"12\xb3", b"-5", b"1e3", b" 12"])
def test_a_content_length_that_is_not_a_byte_count_is_400_naming_it(agent_key, declared):
    # ASGI headers are raw bytes read as latin-1: b"\xb2" arrives as '\u00b2', which str.isdigit() accepts
    # and int() refuses; that was a 500 before the ingest even looked at the body.
    answer = asgi_post(helpers.protobuf_body(helpers.record_agent_run()), key=agent_key, content_length=declared)
    assert answer.status_code == 400 and "Content-Length" in _status(answer).message
    assert not Run.objects.exists()


def test_no_free_slot_is_503_and_a_database_error_503_with_retry_after(agent_key, settings, monkeypatch):
    settings.OTLP_MAX_CONCURRENT = 1
    settings.OTLP_QUEUE_WAIT_S = 0
    slots = ingest._ingest_slots()
    assert slots.acquire(blocking=False)
    try:
        answer = asgi_post(helpers.protobuf_body(helpers.record_agent_run()), key=agent_key)
    finally:
        slots.release()
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"

    from django.db import OperationalError

    from traces import services

    def down(**kwargs):
        raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")

    monkeypatch.setattr(services, "ingest_spans", down)
    answer = asgi_post(helpers.protobuf_body(helpers.record_agent_run()), key=agent_key)
    assert answer.status_code == 503 and answer.headers["retry-after"]
    assert not Span.objects.exists()


def test_requests_are_counted_in_metrics(agent_key):
    def served(status):
        return metrics.INGEST_REQUESTS.labels(status=status)._value.get()

    before = served("200"), served("401")
    asgi_post(helpers.protobuf_body(helpers.record_agent_run()), key=agent_key)
    asgi_post(b"x")
    assert (served("200"), served("401")) == (before[0] + 1, before[1] + 1)


def test_what_django_must_see_goes_to_django(agent_key, settings, monkeypatch):
    body = helpers.protobuf_body(helpers.record_agent_run())
    assert asgi_post(body, key=agent_key, method="GET").status_code == 405  # the view's answer
    assert asgi_post(body, key=agent_key, host="evil.example").status_code == 400  # DisallowedHost
    served_here = []
    serve = ingest.serve_export

    async def counting(*args, **kwargs):
        served_here.append(1)
        await serve(*args, **kwargs)

    monkeypatch.setattr(ingest, "serve_export", counting)
    settings.SECURE_SSL_REDIRECT = True  # plain HTTP must meet SecurityMiddleware's redirect, in Django
    asgi_post(body, key=agent_key)
    assert served_here == []
    assert asgi_post(body, key=agent_key, scheme="https").status_code == 200
    assert served_here == [1]
