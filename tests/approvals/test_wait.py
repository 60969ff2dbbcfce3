"""``GET /api/v1/approvals/{id}?wait=N`` on PostgreSQL + Redis: a decision made elsewhere wakes the waiter."""

import threading
import time

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test import AsyncClient

from approvals.services import decide_request
from tests.approvals.helpers import make_request

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
async def _close_async_connections():
    yield
    from approvals import waiters

    await waiters.stop()
    # The ORM ran in asgiref's thread; close that thread's connection so the test DB can be dropped.
    await sync_to_async(lambda: connection.close())()


def _decide_once_someone_waits(request_id: int, reviewer, **decision):
    """Wait (bounded) until an agent waits in this process, then decide."""
    from approvals import waiters

    try:
        for _ in range(400):
            if waiters.waiting_count():
                break
            time.sleep(0.025)
        decide_request(request_id=request_id, reviewer=reviewer, **decision)
    finally:
        connection.close()


async def test_wait_returns_the_edit_when_a_reviewer_decides_from_another_thread(agent, agent_key, admin_user,
                                                                               settings):
    req = await sync_to_async(make_request)(agent=agent, risk="critical")
    thread = threading.Thread(target=_decide_once_someone_waits, args=(req.pk, admin_user),
                              kwargs={"verdict": "modify", "reason": "smaller", "arguments": {"amount": 1}})
    thread.start()
    response = await AsyncClient().get(f"/api/v1/approvals/{req.pk}?wait=30",
                                       headers={"Authorization": f"Bearer {agent_key}"})
    thread.join(timeout=30)
    data = response.json()
    assert response.status_code == 200
    assert data["status"] == "approved"
    assert data["arguments"] == {"amount": 1}
    assert data["decided_by"] == admin_user.username


async def test_wait_on_a_decided_request_answers_at_once(agent, agent_key, admin_user):
    req = await sync_to_async(make_request)(agent=agent, risk="high")
    await sync_to_async(decide_request)(request_id=req.pk, reviewer=admin_user, verdict="reject", reason="no")
    response = await AsyncClient().get(f"/api/v1/approvals/{req.pk}?wait=60",
                                       headers={"Authorization": f"Bearer {agent_key}"})
    assert response.json()["status"] == "rejected"
    assert response.json()["reason"] == "no"


async def test_wait_ends_with_pending_when_nobody_decides(agent, agent_key):
    req = await sync_to_async(make_request)(agent=agent, risk="high")
    response = await AsyncClient().get(f"/api/v1/approvals/{req.pk}?wait=0.3",
                                       headers={"Authorization": f"Bearer {agent_key}"})
    assert response.status_code == 200
    assert response.json()["status"] == "pending"


async def test_wait_on_another_agents_request_is_404(agent, admin_user):
    from tests import factories

    req = await sync_to_async(make_request)(agent=agent, risk="high")
    _key, other_plain = await sync_to_async(factories.make_key)(await sync_to_async(factories.make_agent)("x-bot"))
    response = await AsyncClient().get(f"/api/v1/approvals/{req.pk}?wait=0.2",
                                       headers={"Authorization": f"Bearer {other_plain}"})
    assert response.status_code == 404


async def test_a_waiter_that_gives_up_does_not_disturb_another(agent, agent_key, admin_user):
    first = await sync_to_async(make_request)(agent=agent, risk="high")
    second = await sync_to_async(make_request)(agent=agent, risk="high")
    client = AsyncClient()
    headers = {"Authorization": f"Bearer {agent_key}"}
    gives_up = await client.get(f"/api/v1/approvals/{first.pk}?wait=0.2", headers=headers)
    assert gives_up.json()["status"] == "pending"
    thread = threading.Thread(target=_decide_once_someone_waits, args=(second.pk, admin_user),
                              kwargs={"verdict": "approve", "reason": "ok"})
    thread.start()
    response = await client.get(f"/api/v1/approvals/{second.pk}?wait=30", headers=headers)
    thread.join(timeout=30)
    assert response.json()["status"] == "approved"
