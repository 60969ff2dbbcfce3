"""``POST /v1/traces``: the OTLP/HTTP trace endpoint.

Answers as the OTLP/HTTP specification says, in the request's content type:
200 (with ``partialSuccess`` when spans were rejected) only after the spans are
committed; 400 with a ``google.rpc.Status`` for an undecodable body; 401; 413
past ``OTLP_MAX_BODY_BYTES`` (checked while decompressing); 415; 429 with
``Retry-After`` for a key over its own ``rate_limit_per_s``; 503 with
``Retry-After`` when the database is unavailable or ``OTLP_MAX_CONCURRENT``
ingests are already running (the stock exporters retry 503).

Under the ASGI server, ``POST /v1/traces`` is answered by :func:`fast_path`
before Django's request handler (mounted in ``console/asgi.py``): the same
checks and the same :func:`handle_export`, without the middleware chain and
the executor thread Django's handler starts for each request. Everything else
(other methods, a host not in ``ALLOWED_HOSTS``, plain HTTP when
``SECURE_SSL_REDIRECT`` is on) goes on to Django and this module's view.
"""

import asyncio
import io
import logging
import threading
import time
import zlib

import psycopg
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError as DjangoDatabaseError
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpResponse
from django.http.request import split_domain_port, validate_host
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from agents import services as agent_services
from console import metrics
from console.api import bearer_token
from console.ratelimit import TokenBucketLimiter
from traces import live, otlp, services

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_CONTENT_TYPES = {"application/x-protobuf": PROTOBUF, "application/protobuf": PROTOBUF, "application/json": JSON}
_READ_CHUNK = 256 * 1024


class IngestError(Exception):
    def __init__(self, status: int, message: str, *, code: int = code_pb2.INVALID_ARGUMENT,
                 retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.retry_after = status, message, code, retry_after


# --- responses -----------------------------------------------------------------------------


def _status_response(fmt: str, error: IngestError) -> HttpResponse:
    status = status_pb2.Status(code=error.code, message=error.message)
    if fmt == PROTOBUF:
        response = HttpResponse(status.SerializeToString(), status=error.status, content_type=PROTOBUF)
    else:
        response = HttpResponse(json_format.MessageToJson(status, indent=None), status=error.status,
                                content_type=JSON)
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    if error.status == 401:
        response["WWW-Authenticate"] = "Bearer"
    return response


def _success_response(fmt: str, rejected: int, message: str) -> HttpResponse:
    reply = ExportTraceServiceResponse()
    if rejected or message:
        reply.partial_success.rejected_spans = rejected
        reply.partial_success.error_message = message
    if fmt == PROTOBUF:
        return HttpResponse(reply.SerializeToString(), content_type=PROTOBUF)
    return HttpResponse(json_format.MessageToJson(reply, indent=None), content_type=JSON)


# --- limits ---------------------------------------------------------------------------------


def _max_concurrent() -> int:
    return getattr(settings, "OTLP_MAX_CONCURRENT", 8)


_slots_lock = threading.Lock()
_slots: threading.BoundedSemaphore | None = None
_slots_size = 0


def _ingest_slots() -> threading.BoundedSemaphore:
    global _slots, _slots_size
    size = _max_concurrent()
    with _slots_lock:
        if _slots is None or _slots_size != size:
            _slots, _slots_size = threading.BoundedSemaphore(size), size
        return _slots


async def _acquire_slot(slots: threading.BoundedSemaphore) -> bool:
    """Wait up to OTLP_QUEUE_WAIT_S for an ingest slot without blocking the event loop."""
    deadline = time.monotonic() + getattr(settings, "OTLP_QUEUE_WAIT_S", 2.0)
    while not slots.acquire(blocking=False):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.005)
    return True


rate_limiter = TokenBucketLimiter()


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Inflate gzip or deflate, stopping as soon as the output passes ``limit``."""
    if encoding in ("", "identity"):
        if len(body) > limit:
            raise IngestError(413, f"Request body exceeds {limit} bytes.", code=code_pb2.RESOURCE_EXHAUSTED)
        return body
    if encoding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        # RFC 9110 deflate is zlib-wrapped; some clients send raw deflate.
        wbits = zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS
    else:
        raise IngestError(415, f"Unsupported Content-Encoding {encoding!r}; use gzip, deflate or none.",
                          code=code_pb2.INVALID_ARGUMENT)
    inflater = zlib.decompressobj(wbits)
    out, size, data = [], 0, body
    try:
        while data:
            chunk = inflater.decompress(data, limit + 1 - size)
            size += len(chunk)
            out.append(chunk)
            if size > limit:
                raise IngestError(413, f"Decompressed body exceeds {limit} bytes.",
                                  code=code_pb2.RESOURCE_EXHAUSTED)
            data = inflater.unconsumed_tail
            if inflater.eof:
                break
        out.append(inflater.flush())
    except zlib.error as exc:
        raise IngestError(400, f"Body is not valid {encoding}: {exc}") from exc
    if not inflater.eof:
        raise IngestError(400, f"Body is not valid {encoding}: truncated stream")
    result = b"".join(out)
    if len(result) > limit:
        raise IngestError(413, f"Decompressed body exceeds {limit} bytes.", code=code_pb2.RESOURCE_EXHAUSTED)
    return result


# --- the view ---------------------------------------------------------------------------------


def _bearer(request) -> str:
    token = bearer_token(request.headers.get("Authorization", ""))
    if not token:
        raise IngestError(401, "Missing or malformed Authorization: Bearer <agent key>.",
                          code=code_pb2.UNAUTHENTICATED)
    return token


def _read_body(request, limit: int) -> bytes:
    parts, size = [], 0
    while True:
        chunk = request.read(_READ_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise IngestError(413, f"Request body exceeds {limit} bytes.", code=code_pb2.RESOURCE_EXHAUSTED)
        parts.append(chunk)
    return b"".join(parts)


def _retry_after() -> int:
    return getattr(settings, "OTLP_RETRY_AFTER_S", 1)


def handle_export(request, *, fmt: str, token: str) -> HttpResponse:
    """The synchronous part: authenticate, decode, store. Raises IngestError."""
    limit = settings.OTLP_MAX_BODY_BYTES
    try:
        key = agent_services.authenticate_key(token)
    except agent_services.InvalidKey as exc:
        raise IngestError(401, "Unknown, malformed or revoked agent key.", code=code_pb2.UNAUTHENTICATED) from exc
    if key.rate_limit_per_s and not rate_limiter.allow(key.pk, key.rate_limit_per_s):
        raise IngestError(429, f"This key is over its limit of {key.rate_limit_per_s} requests per second.",
                          code=code_pb2.RESOURCE_EXHAUSTED, retry_after=1)
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    body = decompress(_read_body(request, limit), encoding, limit)
    try:
        export = otlp.parse_protobuf(body) if fmt == PROTOBUF else otlp.parse_json(body)
        decoded = otlp.decode(export, now=timezone.now(), max_future=_max_future(),
                              text_limit=getattr(settings, "TRACE_MAX_TEXT_CHARS", 32 * 1024))
    except otlp.DecodeError as exc:
        raise IngestError(400, str(exc)) from exc
    result = services.ingest_spans(agent=key.agent, spans=decoded.spans)
    rejected = decoded.rejected + result.rejected
    total = sum(rejected.values())
    _count(agent=key.agent.name, stored=result.stored, rejected=rejected, facts=result.facts, new_runs=result.new_runs)
    return _success_response(fmt, total, otlp.rejection_message(rejected) if total else "")


def _max_future():
    from datetime import timedelta

    return timedelta(seconds=getattr(settings, "TRACE_MAX_FUTURE_SKEW_S", 3600))


def _handle_in_thread(request, fmt: str, token: str) -> HttpResponse:
    try:
        return handle_export(request, fmt=fmt, token=token)
    except IngestError as error:
        return _status_response(fmt, error)
    except (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError):
        log.warning("trace ingest: database unavailable", exc_info=True)
        return _status_response(fmt, IngestError(503, "The console cannot store traces right now; retry later.",
                                                 code=code_pb2.UNAVAILABLE, retry_after=_retry_after()))
    except DjangoDatabaseError:
        log.exception("trace ingest: database error")
        return _status_response(fmt, IngestError(503, "The console could not store this batch; retry later.",
                                                 code=code_pb2.UNAVAILABLE, retry_after=_retry_after()))


MODEL_LABELS_MAX = 200  # distinct model label values per process
_model_labels: set[str] = set()
_model_labels_lock = threading.Lock()


def _model_label(model: str) -> str:
    """The model as a metric label. Agents name models freely and a label set lives as long as the
    process, so past MODEL_LABELS_MAX distinct names further ones count as "other"."""
    model = model[:100] or "unknown"
    if model in _model_labels:
        return model
    with _model_labels_lock:
        if len(_model_labels) < MODEL_LABELS_MAX:
            _model_labels.add(model)
            return model
    return "other"


def _count(*, agent: str, stored: int, rejected, facts=None, new_runs: int = 0) -> None:
    """Prometheus counters for a stored batch (multiprocess-safe, see console.metrics).

    Tokens and cost count the newly stored spans only, so a re-sent batch adds nothing.
    """
    if stored:
        metrics.INGEST_SPANS.labels(agent=agent).inc(stored)
    if new_runs:
        metrics.RUNS_STARTED.labels(agent=agent).inc(new_runs)
    for reason, count in rejected.items():
        metrics.INGEST_REJECTED.labels(reason=str(reason)[:60]).inc(count)
    usage = {}
    for _run, inserted in (facts or {}).values():
        for span in inserted:
            if span.input_tokens or span.output_tokens or span.cost:
                tokens_in, tokens_out, cost = usage.get(span.model, (0, 0, 0))
                usage[span.model] = (tokens_in + span.input_tokens, tokens_out + span.output_tokens,
                                     cost + span.cost)
    for model, (tokens_in, tokens_out, cost) in usage.items():
        model = _model_label(model)
        if tokens_in:
            metrics.TOKENS.labels(agent=agent, model=model, direction="input").inc(tokens_in)
        if tokens_out:
            metrics.TOKENS.labels(agent=agent, model=model, direction="output").inc(tokens_out)
        if cost:
            metrics.COST.labels(agent=agent, model=model).inc(float(cost))


@csrf_exempt
async def otlp_traces(request):
    """OTLP/HTTP ``ExportTraceServiceRequest`` (protobuf or JSON, optionally gzip/deflate)."""
    response = await _otlp_traces(request)
    metrics.INGEST_REQUESTS.labels(status=str(response.status_code)).inc()
    return response


async def _otlp_traces(request):
    fmt = _CONTENT_TYPES.get(request.content_type or "")
    if request.method != "POST":
        response = _status_response(fmt or JSON, IngestError(405, "Use POST.", code=code_pb2.UNIMPLEMENTED))
        response["Allow"] = "POST"
        return response
    if fmt is None:
        return _status_response(JSON, IngestError(
            415, f"Unsupported Content-Type {request.content_type!r}; use application/x-protobuf or application/json.",
        ))
    try:
        token = _checked_token(request, request.META.get("CONTENT_LENGTH") or "")
    except IngestError as error:
        return _status_response(fmt, error)
    return await _in_ingest_slot(fmt, lambda: sync_to_async(_handle_in_thread, thread_sensitive=True)(
        request, fmt, token))


def _checked_token(request, declared_length: str) -> str:
    """The bearer token (401 without one); 400 for a Content-Length that is not a byte count (str.isdigit
    accepts '²', which int() refuses); 413 at once when the declared body size is over the limit."""
    token = _bearer(request)
    if declared_length and not (declared_length.isascii() and declared_length.isdigit()):
        raise IngestError(400, f"Content-Length must be a number of bytes, not {declared_length[:20]!r}.")
    if declared_length and int(declared_length) > settings.OTLP_MAX_BODY_BYTES:
        raise IngestError(413, f"Request body exceeds {settings.OTLP_MAX_BODY_BYTES} bytes.",
                          code=code_pb2.RESOURCE_EXHAUSTED)
    return token


async def _in_ingest_slot(fmt: str, store):
    """Run ``store()`` holding one of this process's ingest slots; 503 with Retry-After when none frees up."""
    live.use_event_loop(asyncio.get_running_loop())
    slots = _ingest_slots()
    if not await _acquire_slot(slots):
        return _status_response(fmt, IngestError(503, "The console is at its ingest capacity; retry later.",
                                                 code=code_pb2.UNAVAILABLE, retry_after=_retry_after()))
    try:
        return await store()
    finally:
        slots.release()


# --- the ASGI fast path ------------------------------------------------------------------------

PATH = "/v1/traces"


class _Headers(dict):
    """Request headers by lower-case name; ``get`` takes any case, as Django's ``request.headers``."""

    def get(self, name, default=None):
        return super().get(name.lower(), default)


class _AsgiRequest:
    """What :func:`handle_export` reads of a request: ``headers`` and ``read``."""

    def __init__(self, headers: _Headers, body: bytes):
        self.headers, self._body = headers, io.BytesIO(body)

    def read(self, size: int = -1) -> bytes:
        return self._body.read(size)


def _served_here(scope, headers: _Headers) -> bool:
    """Only requests Django would let through to the view unchanged; the rest go to Django."""
    if settings.SECURE_SSL_REDIRECT and scope.get("scheme") != "https":
        return False
    host, _port = split_domain_port(headers.get("host", ""))
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(host) and validate_host(host, allowed)


async def _send(send, response: HttpResponse) -> None:
    headers = [(b"content-type", response["Content-Type"].encode("latin-1")),
               (b"content-length", str(len(response.content)).encode()),
               (b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]
    for name in ("Retry-After", "WWW-Authenticate"):
        if name in response:
            headers.append((name.lower().encode(), response[name].encode("latin-1")))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})


async def _receive_body(receive, limit: int) -> bytes | None:
    """The whole body, or None once it passes ``limit`` (or the client went away)."""
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


def _handle_released(request, fmt: str, token: str) -> HttpResponse:
    """``_handle_in_thread`` in a shared executor thread, its DB connection handed back afterwards."""
    try:
        return _handle_in_thread(request, fmt, token)
    finally:
        try:
            connection.close()  # back to the pool; Django's handler would do this at request end
        except Exception:  # noqa: BLE001 - a broken connection is dropped either way
            log.debug("trace ingest: closing the connection failed", exc_info=True)


async def serve_export(scope, receive, send, headers: _Headers) -> None:
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    fmt = _CONTENT_TYPES.get(content_type)
    try:
        response = await _export(scope, receive, headers, fmt, content_type)
    except Exception:  # noqa: BLE001 - as Django's handler: logged, a 500 without details
        log.exception("trace ingest: unexpected error")
        response = HttpResponse(b"Server error", status=500, content_type="text/plain")
    metrics.INGEST_REQUESTS.labels(status=str(response.status_code)).inc()
    await _send(send, response)


async def _export(scope, receive, headers: _Headers, fmt: str | None, content_type: str) -> HttpResponse:
    if fmt is None:
        return _status_response(JSON, IngestError(
            415, f"Unsupported Content-Type {content_type!r}; use application/x-protobuf or application/json.",
        ))
    limit = settings.OTLP_MAX_BODY_BYTES
    too_large = IngestError(413, f"Request body exceeds {limit} bytes.", code=code_pb2.RESOURCE_EXHAUSTED)
    try:
        token = _checked_token(_AsgiRequest(headers, b""), headers.get("content-length", ""))
    except IngestError as error:
        return _status_response(fmt, error)
    body = await _receive_body(receive, limit)
    if body is None:
        return _status_response(fmt, too_large)
    return await _in_ingest_slot(fmt, lambda: sync_to_async(_handle_released, thread_sensitive=False)(
        _AsgiRequest(headers, body), fmt, token))


def fast_path(app):
    """Wrap the project's HTTP ASGI app: ``POST /v1/traces`` is served here, everything else by ``app``."""

    async def wrapper(scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == PATH:
            headers = _Headers((name.decode("latin-1").lower(), value.decode("latin-1"))
                               for name, value in scope.get("headers", ()))
            if _served_here(scope, headers):
                await serve_export(scope, receive, send, headers)
                return
        await app(scope, receive, send)

    return wrapper
