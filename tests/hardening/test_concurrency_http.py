"""The exactly-once guarantees through HTTP, with real threads on PostgreSQL.

tests/approvals/test_decide.py proves them at the service level; here the same races go through the
public endpoints (header parsing, auth, response mapping included): concurrent retries of
``POST /api/v1/approvals`` with one ``Idempotency-Key``, and twenty reviewers posting a decision at once.
"""

import threading

import pytest
from django.db import connection
from django.test import Client

from approvals.models import ApprovalRequest, Decision, Status
from console.roles import Role
from tests import factories
from tests.hardening.conftest import pending_request

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run_at_once(n: int, call) -> list:
    barrier, results, errors = threading.Barrier(n), [None] * n, []

    def worker(i):
        try:
            barrier.wait(timeout=15)
            results[i] = call(i)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def test_concurrent_retries_with_one_idempotency_key_make_one_request_over_http():
    agent = factories.make_agent("retry-bot")
    _key, plain = factories.make_key(agent)
    body = {"action": "deploy.prod", "risk": "high", "arguments": {"sha": "abc"}}

    def call(_i):
        response = Client().post("/api/v1/approvals", body, content_type="application/json",
                                 HTTP_AUTHORIZATION=f"Bearer {plain}", HTTP_IDEMPOTENCY_KEY="deploy-abc-1")
        return response.status_code, response.json()["id"]

    results = run_at_once(10, call)
    assert {status for status, _ in results} == {201}
    assert len({pk for _, pk in results}) == 1
    assert ApprovalRequest.objects.filter(agent=agent).count() == 1


def test_twenty_reviewers_posting_at_once_make_one_decision_over_http():
    from approvals.models import GuardianRule, Outcome, Queue

    agent = factories.make_agent("race-bot")
    queue = Queue.objects.create(name="race")
    GuardianRule.objects.create(name="to-race", action_pattern="race.*", outcome=Outcome.ASK, queue=queue, order=1)
    reviewers = [factories.make_user(Role.REVIEWER, username=f"rev{i}") for i in range(20)]
    queue.members.add(*reviewers)
    req = pending_request(agent, queue)
    clients = []
    for user in reviewers:
        client = Client()
        client.force_login(user)
        clients.append(client)

    def call(i):
        verdict = "approve" if i % 2 else "reject"
        response = clients[i].post(f"/api/v1/approvals/{req.pk}/decision", {"decision": verdict, "reason": f"r{i}"},
                                   content_type="application/json")
        return response.status_code, response.json()

    results = run_at_once(20, call)
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [409] * 19, statuses
    winner = next(body for status, body in results if status == 200)
    assert all(body["decided_by"] == winner["decided_by"] for status, body in results if status == 409)
    req.refresh_from_db()
    assert req.status in (Status.APPROVED, Status.REJECTED)
    assert Decision.objects.filter(request=req).count() == 1
