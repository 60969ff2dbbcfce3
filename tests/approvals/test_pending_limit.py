"""An agent cannot pile up pending approval requests without bound (APPROVALS_MAX_PENDING_PER_AGENT).

Each pending request is a row, an audit entry and a line in a reviewer's queue; without a bound an agent
key with no rate limit could create them without end.
"""

import json
import threading

import pytest
from django.db import connection

from approvals import services
from approvals.models import ApprovalRequest, Status
from console.models import AuditEntry
from tests import factories

URL = "/api/v1/approvals"


def _ask(client, headers, n: int, *, risk="high", key=None):
    body = {"action": "refunds.issue", "arguments": {"n": n}, "risk": risk, "summary": f"refund {n}"}
    if key:
        headers = {**headers, "HTTP_IDEMPOTENCY_KEY": key}
    return client.post(URL, data=json.dumps(body), content_type="application/json", **headers)


@pytest.mark.django_db
def test_one_request_over_the_limit_is_429_and_creates_nothing(client, agent, agent_headers, settings, admin_user):
    settings.APPROVALS_MAX_PENDING_PER_AGENT = 3
    for n in range(3):
        assert _ask(client, agent_headers, n, key=f"k{n}").status_code == 201
    requests, audited = ApprovalRequest.objects.count(), AuditEntry.objects.count()

    refused = _ask(client, agent_headers, 99)
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert "3 pending approval requests" in refused.json()["detail"]
    assert "APPROVALS_MAX_PENDING_PER_AGENT" in refused.json()["detail"]
    assert (ApprovalRequest.objects.count(), AuditEntry.objects.count()) == (requests, audited)

    # a retry of a request the agent already has still answers with it
    retry = _ask(client, agent_headers, 0, key="k0")
    assert retry.status_code == 201 and retry["Idempotent-Replayed"] == "true"
    # an action decided at once (low risk, allowed by default) does not wait in a queue: not limited
    allowed = _ask(client, agent_headers, 100, risk="low")
    assert allowed.status_code == 201 and allowed.json()["status"] == "approved"
    # another agent has its own limit
    _other_key, other_plain = factories.make_key(factories.make_agent("other-bot"))
    assert _ask(client, {"HTTP_AUTHORIZATION": f"Bearer {other_plain}"}, 1).status_code == 201

    # once a reviewer decides one, the agent may ask again
    first = ApprovalRequest.objects.filter(agent=agent, status=Status.PENDING).order_by("pk").first()
    services.decide_request(request_id=first.pk, reviewer=admin_user, verdict="approve", reason="ok")
    assert _ask(client, agent_headers, 101).status_code == 201
    assert _ask(client, agent_headers, 102).status_code == 429


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_never_pass_the_limit():
    limit, threads_n = 4, 12
    agent = factories.make_agent("burst-bot")
    start = threading.Barrier(threads_n)
    outcomes, lock = [], threading.Lock()

    def ask(n):
        try:
            start.wait()
            try:
                services.create_request(agent=agent, new=services.NewRequest(
                    action="refunds.issue", risk="high", arguments={"n": n}))
                outcome = "created"
            except services.TooManyPending:
                outcome = "refused"
            except Exception as exc:  # noqa: BLE001 - reported in the assertion below
                outcome = repr(exc)
            with lock:
                outcomes.append(outcome)
        finally:
            connection.close()

    from django.test import override_settings

    with override_settings(APPROVALS_MAX_PENDING_PER_AGENT=limit):
        threads = [threading.Thread(target=ask, args=(n,)) for n in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert sorted(outcomes) == ["created"] * limit + ["refused"] * (threads_n - limit)
    assert ApprovalRequest.objects.filter(agent=agent, status=Status.PENDING).count() == limit
    assert AuditEntry.objects.filter(action="approval.requested").count() == limit


@pytest.mark.django_db
def test_refusals_at_the_limit_are_counted_and_logged_once_per_agent_and_minute(
        client, agent, agent_headers, settings, caplog):
    """Ops see an agent stuck at its limit: a metric counts each refusal, the log says it once a minute."""
    from prometheus_client import REGISTRY

    from approvals import api

    def count(outcome):
        return REGISTRY.get_sample_value("console_approval_requests_total",
                                         {"agent": agent.name, "outcome": outcome}) or 0.0

    settings.APPROVALS_MAX_PENDING_PER_AGENT = 1
    api._pending_limit_logged.clear()
    pending_before, refused_before = count("pending"), count("refused_pending_limit")
    assert _ask(client, agent_headers, 1).status_code == 201
    with caplog.at_level("WARNING", logger="approvals.api"):
        assert [_ask(client, agent_headers, n).status_code for n in (2, 3, 4)] == [429, 429, 429]
    assert count("pending") - pending_before == 1
    assert count("refused_pending_limit") - refused_before == 3
    lines = [r.getMessage() for r in caplog.records if "APPROVALS_MAX_PENDING_PER_AGENT" in r.getMessage()]
    assert len(lines) == 1 and agent.name in lines[0]
