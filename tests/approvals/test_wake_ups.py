"""A waiting agent never misses its decision, whatever the timing, on PostgreSQL + Redis.

Each test sets the waiters' safety-net re-read (``RECHECK_S``, and ``POLL_S`` where polling is not
what the test is about) far beyond the test's ``wait``: a lost wake-up then shows as the wait
ending with ``pending`` (or a hang caught by a generous timeout), never as a slow pass. Decisions
come "from another process" unless said otherwise: the in-process shortcut (``wake_local``) is
switched off, so only Redis pub/sub can carry them.
"""

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis
from asgiref.sync import sync_to_async
from django.db import connection, connections

from approvals import waiters
from approvals.asgi import long_poll
from approvals.models import ApprovalRequest, Status
from approvals.services import decide_request
from tests.approvals.helpers import make_request

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

NEVER = 300.0  # seconds: longer than HANG, so only a wake-up (or a hang) can end a wait
WAIT = NEVER
HANG = 90.0  # a test that takes this long has hung


@pytest.fixture(autouse=True)
async def _clean_waiters():
    await waiters.stop()
    yield
    await waiters.stop()
    await sync_to_async(lambda: connection.close())()


@pytest.fixture
def no_recheck(monkeypatch):
    monkeypatch.setattr(waiters, "RECHECK_S", NEVER)
    monkeypatch.setattr(waiters, "POLL_S", NEVER)
    monkeypatch.setattr(waiters, "SUBSCRIBE_WAIT_S", NEVER)


@pytest.fixture
def other_process(monkeypatch):
    """Decisions arrive only through Redis, as when another process makes them."""
    monkeypatch.setattr(waiters, "wake_local", lambda pk, message=None: None)


@pytest.fixture
def delivered(monkeypatch):
    """``delivered(pk)`` blocks (bounded) until this process's listener has received the message about ``pk``:
    a decision made inside a read has then reached the listener before the read returns."""
    received: dict[int, threading.Event] = {}
    lock = threading.Lock()

    def flag(pk: int) -> threading.Event:
        with lock:
            return received.setdefault(pk, threading.Event())

    monkeypatch.setattr(waiters, "observe", lambda pk, message: flag(pk).set())

    def wait_for(pk: int) -> None:
        assert flag(pk).wait(HANG), f"the listener never received the message about {pk}"

    return wait_for


def _status(pk: int) -> str:
    try:
        return ApprovalRequest.objects.get(pk=pk).status
    finally:
        connection.close()


def _decide(pk: int, reviewer, **decision) -> None:
    try:
        decide_request(request_id=pk, reviewer=reviewer, **decision)
    finally:
        connection.close()


def _subscribers() -> int:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        return dict(client.pubsub_numsub(waiters.decided_channel()))[waiters.decided_channel().encode()]
    finally:
        client.close()


async def _wait(pk: int, *, wait: float = WAIT, after_first_read=None) -> str:
    """``wait_until_decided`` on the row's status; ``after_first_read()`` runs once, right after the first read."""
    reads = 0

    def read():
        nonlocal reads
        reads += 1
        status = _status(pk)
        if reads == 1 and after_first_read is not None:
            after_first_read()
        return status

    return await asyncio.wait_for(
        waiters.wait_until_decided(pk, wait, sync_to_async(read, thread_sensitive=False),
                                   lambda status: status != Status.PENDING),
        timeout=HANG)


async def test_a_decision_made_right_after_the_waiters_first_read_wakes_it(agent, admin_user, no_recheck,
                                                                          other_process, delivered):
    req = await sync_to_async(make_request)(agent=agent, risk="high")

    def decide():
        _decide(req.pk, admin_user, verdict="approve", reason="ok")
        delivered(req.pk)

    # The first read saw "pending"; the decision is committed, published and received before that read returns.
    status = await _wait(req.pk, after_first_read=decide)

    assert status == Status.APPROVED


def _hold_listener_connections(monkeypatch) -> asyncio.Event:
    """The waiters' listener (re)connects only once the returned event is set."""
    gate = asyncio.Event()
    connect = waiters._Listener._connect

    async def held_connect(self):
        await gate.wait()
        return await connect(self)

    monkeypatch.setattr(waiters._Listener, "_connect", held_connect)
    return gate


async def test_a_decision_made_before_the_listener_has_subscribed_is_seen_by_the_read(agent, admin_user, no_recheck,
                                                                                    other_process, monkeypatch):
    """The row is read only once the subscription is confirmed: a decision published to nobody
    (the listener is still connecting) is seen by that read instead of being lost."""
    req = await sync_to_async(make_request)(agent=agent, risk="high")
    gate = _hold_listener_connections(monkeypatch)
    waiter = asyncio.create_task(_wait(req.pk))
    for _ in range(200):
        if req.pk in waiters._listener().events:
            break
        await asyncio.sleep(0.02)
    assert req.pk in waiters._listener().events
    assert await sync_to_async(_subscribers)() == 0
    await sync_to_async(_decide)(req.pk, admin_user, verdict="reject", reason="no")
    gate.set()

    assert await waiter == Status.REJECTED


async def test_every_waiter_on_one_request_wakes_and_waiters_on_others_keep_waiting(agent, admin_user, no_recheck,
                                                                                   other_process):
    target = await sync_to_async(make_request)(agent=agent, risk="high")
    other = await sync_to_async(make_request)(agent=agent, risk="high")
    first_reads = asyncio.Semaphore(0)
    loop = asyncio.get_running_loop()

    def counted():
        loop.call_soon_threadsafe(first_reads.release)

    same = [asyncio.create_task(_wait(target.pk, after_first_read=counted)) for _ in range(20)]
    bystander = asyncio.create_task(_wait(other.pk, wait=2.0, after_first_read=counted))
    for _ in range(21):
        await asyncio.wait_for(first_reads.acquire(), timeout=HANG)
    await sync_to_async(_decide)(target.pk, admin_user, verdict="modify", reason="less", arguments={"amount": 1})

    assert await asyncio.gather(*same) == [Status.APPROVED] * 20
    assert await bystander == Status.PENDING


async def test_a_decision_published_while_the_listener_reconnects_still_reaches_the_waiter(agent, admin_user,
                                                                                         no_recheck, other_process,
                                                                                         monkeypatch):
    req = await sync_to_async(make_request)(agent=agent, risk="high")
    first_read = asyncio.Event()
    loop = asyncio.get_running_loop()
    waiter = asyncio.create_task(_wait(req.pk, after_first_read=lambda: loop.call_soon_threadsafe(first_read.set)))
    await asyncio.wait_for(first_read.wait(), timeout=HANG)
    listener = waiters._listener()
    assert listener.subscribed.is_set()

    gate = _hold_listener_connections(monkeypatch)  # until the decision has been published to nobody
    admin = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"])
    try:
        ids = [c["id"] for c in await admin.client_list() if c.get("name") == listener.name]
        assert len(ids) == 1
        await admin.client_kill_filter(_id=ids[0])
    finally:
        await admin.aclose()
    for _ in range(200):
        if not listener.subscribed.is_set():
            break
        await asyncio.sleep(0.02)
    assert not listener.subscribed.is_set()
    assert await sync_to_async(_subscribers)() == 0
    await sync_to_async(_decide)(req.pk, admin_user, verdict="approve", reason="ok")
    gate.set()

    assert await waiter == Status.APPROVED
    assert listener.subscribed.is_set()


def _decided_after_first_read(read, reads: list, reviewer, edited: dict, delivered):
    """``read`` (agent, pk) -> (status, ...) that records each status in ``reads`` and, right after the
    first, has ``reviewer`` approve the request with ``edited`` arguments and its message delivered."""
    def wrapped(agent, pk):
        found = read(agent, pk)
        reads.append(found[0])
        if len(reads) == 1:
            _decide(pk, reviewer, verdict="modify", reason="less", arguments=edited)
            delivered(pk)
        return found
    return wrapped


@pytest.mark.parametrize("edited, reads_after_wake", [
    ({"amount": 3}, 0),  # the message carries the answer: sent as is
    ({"amount": 3, "note": "x" * 20_000}, 1),  # too large to carry: read from the database
], ids=["answer carried", "answer read"])
async def test_the_fast_path_answers_a_decision_made_between_its_first_read_and_its_wait(
        agent, agent_key, admin_user, no_recheck, other_process, monkeypatch, delivered, edited, reads_after_wake):
    from approvals import asgi

    req = await sync_to_async(make_request)(agent=agent, risk="high")
    real_read = asgi._read
    reads = []
    monkeypatch.setattr(asgi, "_read", _decided_after_first_read(real_read, reads, admin_user, edited, delivered))
    monkeypatch.setattr("approvals.api.MAX_WAIT_S", NEVER)
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def inner(scope, receive, send):
        raise AssertionError("a waiting read must not reach Django")

    scope = {"type": "http", "method": "GET", "path": f"/api/v1/approvals/{req.pk}",
             "query_string": f"wait={NEVER}".encode(), "headers": [(b"authorization", f"Bearer {agent_key}".encode())]}
    await asyncio.wait_for(long_poll(inner)(scope, receive, send), timeout=HANG)

    assert reads[0] == Status.PENDING
    assert len(reads) == 1 + reads_after_wake
    assert sent[0]["status"] == 200
    body = json.loads(sent[1]["body"])
    assert (body["status"], body["arguments"]) == ("approved", edited)
    assert body["decided_by"] == admin_user.username
    assert body == json.loads((await asgi._released(real_read)(agent, req.pk))[1])  # what a read answers now


@pytest.mark.parametrize("edited, reads_after_wake", [
    ({"amount": 4}, 0),  # the message carries the answer: no second read
    ({"amount": 4, "note": "x" * 20_000}, 1),  # too large to carry: read from the database
], ids=["answer carried", "answer read"])
async def test_djangos_handler_answers_a_woken_waiter_as_a_fresh_read_would(
        agent, agent_key, admin_user, no_recheck, other_process, monkeypatch, delivered, edited, reads_after_wake):
    """Without the long-poll fast path (a deployment mounting Django's app alone), a woken waiter answers with
    what the decision's message carries: the same JSON as a read, without a second trip to the database."""
    from django.test import AsyncClient

    from approvals import api

    req = await sync_to_async(make_request)(agent=agent, risk="high")
    real_read = api._own_answer_released
    reads = []
    monkeypatch.setattr(api, "_own_answer_released",
                        _decided_after_first_read(real_read, reads, admin_user, edited, delivered))
    monkeypatch.setattr(api, "MAX_WAIT_S", NEVER)
    auth = {"Authorization": f"Bearer {agent_key}"}
    response = await asyncio.wait_for(AsyncClient().get(f"/api/v1/approvals/{req.pk}?wait={NEVER}", headers=auth),
                                      timeout=HANG)

    assert reads[0] == Status.PENDING
    assert len(reads) == 1 + reads_after_wake
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["arguments"]) == ("approved", edited)
    assert body["decided_by"] == admin_user.username
    monkeypatch.setattr(api, "_own_answer_released", real_read)
    assert body == (await AsyncClient().get(f"/api/v1/approvals/{req.pk}", headers=auth)).json()  # a read now


async def test_a_decision_made_in_this_process_wakes_its_waiter_without_redis(agent, admin_user, no_recheck,
                                                                            settings):
    """The embedded mode (no REDIS_URL): the deciding thread wakes the waiters on the server's loop."""
    settings.REDIS_URL = None
    req = await sync_to_async(make_request)(agent=agent, risk="high")
    decider = []

    def decide_in_a_thread():
        thread = threading.Thread(target=_decide, args=(req.pk, admin_user), kwargs={"verdict": "approve",
                                                                                        "reason": "ok"})
        thread.start()
        decider.append(thread)

    status = await _wait(req.pk, after_first_read=decide_in_a_thread)
    await sync_to_async(decider[0].join)(HANG)

    assert status == Status.APPROVED


async def test_without_a_reachable_redis_waiters_poll_and_still_get_the_decision(agent, admin_user, settings,
                                                                                monkeypatch, other_process):
    monkeypatch.setattr(waiters, "RECHECK_S", NEVER)
    monkeypatch.setattr(waiters, "SUBSCRIBE_WAIT_S", 0.2)
    monkeypatch.setattr(waiters, "POLL_S", 0.2)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    req = await sync_to_async(make_request)(agent=agent, risk="high")

    status = await _wait(req.pk, after_first_read=lambda: _decide(req.pk, admin_user, verdict="approve",
                                                                  reason="ok"))

    assert status == Status.APPROVED


DECIDE_ELSEWHERE = """
import sys
from django.contrib.auth import get_user_model
from approvals.services import decide_request
decide_request(request_id=int(sys.argv[-2]), reviewer=get_user_model().objects.get(pk=int(sys.argv[-1])),
               verdict="modify", reason="from another process", arguments={"amount": 7})
"""


def _decide_in_another_process(pk: int, reviewer_pk: int) -> subprocess.CompletedProcess:
    db = connections["default"].settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "console.settings",
           "CONSOLE_TESTING": "1"}
    root = Path(__file__).resolve().parents[2]
    script = f"import django; django.setup()\n{DECIDE_ELSEWHERE}"
    return subprocess.run([sys.executable, "-c", script, str(pk), str(reviewer_pk)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=HANG)


async def test_a_decision_made_by_another_process_wakes_the_waiter(agent, admin_user, no_recheck, delivered):
    req = await sync_to_async(make_request)(agent=agent, risk="high")
    done = []

    def decide_elsewhere():
        done.append(_decide_in_another_process(req.pk, admin_user.pk))
        if done[0].returncode == 0:
            delivered(req.pk)

    status = await _wait(req.pk, after_first_read=decide_elsewhere)

    assert done[0].returncode == 0, done[0].stderr[-2000:]
    assert status == Status.APPROVED
