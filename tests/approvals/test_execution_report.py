"""The execution report binds to the approved call: exactly once under concurrent retries, and never for
arguments nobody approved (``POST /api/v1/approvals/{id}/execution``)."""

import json
import threading

import pytest
from django.db import connection
from django.test import Client

from approvals.models import ApprovalRequest
from approvals.services import decide_request
from console.models import AuditEntry
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule

ARGS = {"amount": 900, "order": "A-7"}
EDITED = {"amount": 450, "order": "A-7"}


@pytest.fixture
def edited(agent):
    queue = make_queue("payments")
    make_rule(action_pattern="*", queue=queue)
    req = make_request(agent=agent, arguments=dict(ARGS))
    decide_request(request_id=req.pk, reviewer=make_reviewer(queue, "rita"), verdict="modify", reason="half",
                   arguments=dict(EDITED))
    return ApprovalRequest.objects.get(pk=req.pk)


def report(agent_key, pk, body):
    return Client().post(f"/api/v1/approvals/{pk}/execution", data=json.dumps(body), content_type="application/json",
                         HTTP_AUTHORIZATION=f"Bearer {agent_key}")


@pytest.mark.django_db
def test_a_report_for_the_requested_arguments_after_an_edit_is_refused(edited, agent_key):
    refused = report(agent_key, edited.pk, {"result": {"ok": True}, "arguments": ARGS})
    assert refused.status_code == 409 and "not the approved ones" in refused.json()["detail"]
    refused_digest = report(agent_key, edited.pk, {"result": {"ok": True}, "digest": edited.arguments_digest})
    assert refused_digest.status_code == 409
    assert ApprovalRequest.objects.get(pk=edited.pk).executed_at is None

    accepted = report(agent_key, edited.pk, {"result": {"refunded": 450}, "arguments": EDITED,
                                             "digest": edited.final_digest})
    assert accepted.status_code == 200 and accepted.json()["executed_at"]
    entry = AuditEntry.objects.get(action="approval.executed", target_id=str(edited.pk))
    assert entry.after["reported_digest"] == edited.final_digest and entry.after["arguments_checked"] is True
    refusals = AuditEntry.objects.filter(action="approval.execution_refused", target_id=str(edited.pk)).order_by("id")
    assert [e.after["why"] for e in refusals] == ["DigestMismatch", "DigestMismatch"]
    assert refusals[1].after["reported_digest"] == edited.arguments_digest
    assert refusals[1].after["approved_digest"] == edited.final_digest

    again = report(agent_key, edited.pk, {"result": {"refunded": 450}, "digest": edited.final_digest})
    assert again.status_code == 409 and "already reported" in again.json()["detail"]
    refusals = refusals.all()  # a fresh query, not the list read above
    assert refusals.count() == 3 and refusals.last().after["why"] == "AlreadyExecuted"
    assert AuditEntry.objects.filter(action="approval.executed", target_id=str(edited.pk)).count() == 1


@pytest.mark.django_db
def test_a_report_carrying_too_large_arguments_names_the_field(edited, agent_key):
    response = report(agent_key, edited.pk, {"arguments": {"blob": "x" * (70 * 1024)}})
    assert response.status_code in (400, 422)
    assert "arguments" in response.content.decode()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_the_execution_report_store_exactly_one(edited, agent_key):
    n = 8
    barrier, statuses = threading.Barrier(n), [None] * n

    def post(i):
        try:
            barrier.wait(timeout=30)
            statuses[i] = report(agent_key, edited.pk, {"result": {"try": i}, "digest": edited.final_digest}).status_code
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [200] + [409] * (n - 1), statuses
    row = ApprovalRequest.objects.get(pk=edited.pk)
    assert row.executed_at is not None and set(row.execution_result) == {"try"}
    assert AuditEntry.objects.filter(action="approval.executed", target_id=str(edited.pk)).count() == 1


@pytest.mark.django_db
def test_a_hostile_agent_cannot_grow_the_audit_log_with_refused_reports(agent, agent_key):
    """Refusals are evidence, so the first ones are kept; but repeats collapse and each request's refusals
    stop being audited past a bound (one entry says so), while every report is still refused."""
    queue = make_queue("payments")
    make_rule(action_pattern="*", queue=queue)
    pending = make_request(agent=agent, arguments=dict(ARGS))

    def refusals():
        return AuditEntry.objects.filter(target_id=str(pending.pk), action__startswith="approval.execution_refus")

    for _ in range(30):  # the same refused report again and again
        assert report(agent_key, pending.pk, {"result": {"ok": True}}).status_code == 409
    assert refusals().count() == 1

    for i in range(200):  # a different (made-up) digest each time
        response = report(agent_key, pending.pk, {"result": {"ok": True}, "digest": f"{i:064x}"})
        assert response.status_code == 409
    entries = list(refusals().order_by("id"))
    assert len(entries) <= 12, len(entries)
    assert entries[0].after["why"] == "NotApproved" and entries[1].after["reported_digest"] == f"{0:064x}"
    assert entries[-1].action == "approval.execution_refusals_capped"
    assert ApprovalRequest.objects.get(pk=pending.pk).executed_at is None
