"""The long-poll fast path answers waiting reads itself, exactly like the ninja endpoint."""

import json
import threading

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from approvals.asgi import long_poll
from tests.approvals.helpers import make_request
from tests.approvals.test_wait import _decide_once_someone_waits

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
async def _close_async_connections():
    yield
    from approvals import waiters

    await waiters.stop()
    await sync_to_async(lambda: connection.close())()


async def call(app, path: str, query: str = "", key: str | None = None):
    headers = [(b"authorization", f"Bearer {key}".encode())] if key else []
    scope = {"type": "http", "method": "GET", "path": path, "query_string": query.encode(), "headers": headers}
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent


def fallback():
    calls = []

    async def app(scope, receive, send):
        calls.append(scope["path"])
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app, calls


async def test_a_waiting_read_is_answered_with_the_decision(agent, agent_key, admin_user):
    inner, calls = fallback()
    req = await sync_to_async(make_request)(agent=agent, risk="high")
    thread = threading.Thread(target=_decide_once_someone_waits, args=(req.pk, admin_user),
                              kwargs={"verdict": "modify", "reason": "less", "arguments": {"amount": 2}})
    thread.start()
    sent = await call(long_poll(inner), f"/api/v1/approvals/{req.pk}", "wait=30", agent_key)
    thread.join(timeout=30)
    assert sent[0]["status"] == 200
    body = json.loads(sent[1]["body"])
    assert (body["status"], body["arguments"], body["edited"]) == ("approved", {"amount": 2}, True)
    assert calls == []


async def test_unknown_keys_and_other_agents_requests_are_refused(agent, agent_key):
    from tests import factories

    inner, _calls = fallback()
    req = await sync_to_async(make_request)(agent=agent, risk="high")
    _key, other = await sync_to_async(factories.make_key)(await sync_to_async(factories.make_agent)("x-bot"))
    app = long_poll(inner)
    assert (await call(app, f"/api/v1/approvals/{req.pk}", "wait=1"))[0]["status"] == 401
    assert (await call(app, f"/api/v1/approvals/{req.pk}", "wait=1", "aoc_nope"))[0]["status"] == 401
    assert (await call(app, f"/api/v1/approvals/{req.pk}", "wait=0.2", other))[0]["status"] == 404


@pytest.mark.parametrize("path, query", [
    ("/api/v1/approvals/1", ""), ("/api/v1/approvals/1", "wait=0"), ("/api/v1/approvals/1", "wait=-3"),
    ("/api/v1/approvals/1", "wait=abc"), ("/api/v1/approvals/1/execution", "wait=5"), ("/healthz", "wait=5"),
])
async def test_everything_else_goes_to_django(path, query):
    inner, calls = fallback()
    await call(long_poll(inner), path, query)
    assert calls == [path]
