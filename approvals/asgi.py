"""A fast path for ``GET /api/v1/approvals/{id}?wait=N`` outside Django's request handler.

Django's ASGI handler gives every in-flight request its own executor thread
(asgiref's ThreadSensitiveContext, used by the ``request_started`` receivers
and by any sync-only middleware, where that thread stays blocked for the
whole request). For a long poll that means one thread per waiting agent.
This wrapper answers the waiting reads itself on the event loop: the key
check and the row reads run briefly in the shared default executor and hand
their DB connection back at once, and the wait itself is an
``asyncio.Event`` (``approvals.waiters``). The answer is the same JSON as
the django-ninja endpoint (``approvals.api.ApprovalOut``), which still
serves every other request (including ``wait=0`` and invalid ``wait``).
Once the first read has shown the request is the agent's own, the answer a
decision's message carries (rendered once from the committed row) is sent as
is: no second trip to the executor and the database.

Mount in ``console/asgi.py``: ``"http": approvals.asgi.long_poll(django_asgi_app)``.
"""

import json
import math
import re
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from django.db import connection

PATH = re.compile(r"^/api/v1/approvals/(\d{1,18})/?$")


def _wait_seconds(query_string: bytes) -> float | None:
    """The ``wait`` query value when it is a usable positive number; None sends the request to Django."""
    values = parse_qs(query_string.decode("latin-1")).get("wait")
    if not values:
        return None
    try:
        wait = float(values[-1])
    except ValueError:
        return None
    if not math.isfinite(wait) or wait <= 0:
        return None
    from approvals.api import MAX_WAIT_S

    return min(wait, MAX_WAIT_S)


def _bearer(scope) -> str:
    from console.api import bearer_token

    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return bearer_token(value.decode("latin-1"))
    return ""


def _released(fn):
    """Run ``fn`` in the shared executor and hand the thread's DB connection back afterwards."""

    def call(*args):
        try:
            return fn(*args)
        finally:
            connection.close()

    return sync_to_async(call, thread_sensitive=False)


def _authenticate(token: str):
    from agents import services as agent_services

    try:
        return agent_services.authenticate_key(token).agent
    except agent_services.InvalidKey:
        return None


def _answer_json(req) -> bytes:
    from approvals.api import ApprovalOut, answer

    return ApprovalOut(**answer(req)).model_dump_json().encode()


def _read(agent, pk: int) -> tuple[str | None, bytes]:
    """The request's status and its answer, in one trip to the executor (None: not this agent's request)."""
    from approvals.api import _own_request

    req = _own_request(agent, pk)
    return (None, b"") if req is None else (req.status, _answer_json(req))


def _carried_answer(message: dict) -> tuple[str, bytes] | None:
    """The answer a decision's message carries (``approvals.live.notify_waiters``), if any."""
    body = message.get("body")
    return (message.get("status"), body.encode()) if isinstance(body, str) else None


async def _respond(send, status: int, body: bytes, extra_headers=()) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"), *extra_headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve_wait(scope, send, pk: int, wait: float) -> None:
    from approvals import waiters
    from approvals.models import Status

    agent = await _released(_authenticate)(_bearer(scope))
    if agent is None:
        body = json.dumps({"detail": "Missing, malformed, unknown or revoked credentials."}).encode()
        await _respond(send, 401, body, [(b"www-authenticate", b"Bearer")])
        return
    read = _released(_read)
    status, body = await waiters.wait_until_decided(pk, wait, lambda: read(agent, pk),
                                                    lambda r: r[0] is None or r[0] != Status.PENDING,
                                                    from_message=_carried_answer)
    if status is None:
        await _respond(send, 404, json.dumps({"detail": "No such approval request for this agent."}).encode())
        return
    await _respond(send, 200, body)


def long_poll(app):
    """Wrap the project's HTTP ASGI app: waiting approval reads are served here, everything else by ``app``."""

    async def wrapper(scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET":
            match = PATH.match(scope["path"])
            if match:
                wait = _wait_seconds(scope.get("query_string", b""))
                if wait is not None:
                    await serve_wait(scope, send, int(match[1]), wait)
                    return
        await app(scope, receive, send)

    return wrapper


def with_long_poll():
    """ASGI factory (``uvicorn --factory approvals.asgi:with_long_poll``): the console with the fast path."""
    from channels.routing import ProtocolTypeRouter

    from console import asgi

    return ProtocolTypeRouter({
        "http": long_poll(asgi.django_asgi_app),
        "websocket": asgi.application.application_mapping["websocket"],
        "lifespan": asgi.lifespan,
    })
