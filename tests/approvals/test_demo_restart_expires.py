"""Restarting ``manage.py demo`` expires the requests its earlier session left pending.

The demo agents that asked died with the earlier session, so nobody waited for those answers, yet
they stayed in the queue and their runs said Waiting for approval. The demo now expires them by
system:demo, through the timeout's path (audited, run no longer waiting); another agent's request and
the finished four-eyes story are left alone.
"""

import io
import uuid

import pytest
from django.core.management import call_command

from agents import demo as agents_demo
from agents.models import Agent
from approvals.models import ApprovalRequest, Status
from console.models import AuditEntry
from tests import factories
from traces.models import Run, RunStatus

pytestmark = pytest.mark.django_db(transaction=True)


def _ask(client, key: str, trace_id: str, **body) -> ApprovalRequest:
    payload = {"action": "refund", "risk": "high", "summary": "Refund order 42", "trace_id": trace_id,
               "arguments": {"order": 42, "amount": 900}, **body}
    response = client.post("/api/v1/approvals", payload, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 201, response.content
    return ApprovalRequest.objects.get(pk=response.json()["id"])


def test_a_restarted_demo_expires_its_earlier_sessions_pending_requests(client, django_capture_on_commit_callbacks):
    call_command("demo", no_serve=True, stdout=io.StringIO())
    support = Agent.objects.get(name="support-bot")
    trace = uuid.uuid4().hex
    run = Run.objects.create(agent=support, trace_id=trace, name="ticket", status=RunStatus.RUNNING)
    with django_capture_on_commit_callbacks(execute=True):
        left = _ask(client, agents_demo.DEMO_KEYS["support-bot"], trace)
    assert left.status == Status.PENDING
    run.refresh_from_db()
    assert run.status == RunStatus.WAITING
    other_agent = factories.make_agent("not-a-demo-agent")
    _row, other_key = factories.make_key(other_agent)
    others = _ask(client, other_key, uuid.uuid4().hex, action="wire_transfer")
    story_status = ApprovalRequest.objects.get(idempotency_key="demo-story-four-eyes").status

    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("demo", no_serve=True, stdout=out)  # the restart (serving aside)

    left.refresh_from_db()
    assert (left.status, left.decider) == (Status.EXPIRED, "system:demo") and "demo restarted" in left.reason
    assert AuditEntry.objects.filter(actor="system:demo", action="approval.expired",
                                     target_id=str(left.pk)).count() == 1
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING  # no longer waiting for an answer nobody will act on
    assert "expired 1 request left pending by an earlier demo session" in out.getvalue()
    others.refresh_from_db()
    assert others.status == Status.PENDING
    assert ApprovalRequest.objects.get(idempotency_key="demo-story-four-eyes").status == story_status

    call_command("demo", no_serve=True, stdout=(again := io.StringIO()))
    assert "expired" not in again.getvalue()
