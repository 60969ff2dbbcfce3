"""An agent cannot change another agent's run through the trace id of an approval request.

approvals.live.mark_run_waiting marked the run of a request's ``trace_id`` whatever agent owned it
(traces.services.set_run_waiting looked the run up by trace id alone). So agent A, asking for approval
with agent B's trace id, made B's running run say "Waiting for approval" (the runs page's filter and
the API's has_pending_approval matched it), and when A's request was decided, B's run went back to
Running although B's own request for it was still pending.
"""

import json
import uuid

import pytest
from django.utils import timezone

from approvals import services
from tests import factories
from tests.approvals.helpers import make_queue, make_reviewer
from traces.models import Run, RunStatus

pytestmark = pytest.mark.django_db


def _ask(client, key: str, trace_id: str, summary: str):
    return client.post("/api/v1/approvals", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}",
                       data=json.dumps({"action": "refunds.issue", "arguments": {"order": 42}, "risk": "high",
                                        "summary": summary, "trace_id": trace_id}))


def _status(run: Run) -> tuple[str, bool]:
    run.refresh_from_db()
    return run.status, run.has_pending_approval


def test_a_request_with_another_agents_trace_id_leaves_that_run_alone(client, django_capture_on_commit_callbacks):
    victim, attacker = factories.make_agent("victim-bot"), factories.make_agent("attacker-bot")
    _row, victim_key = factories.make_key(victim)
    _row, attacker_key = factories.make_key(attacker)
    reviewer = make_reviewer(make_queue("default"), "rita")
    run = Run.objects.create(agent=victim, trace_id=uuid.uuid4().hex, name="invoke_agent victim-bot",
                             status=RunStatus.RUNNING, started_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        foreign = _ask(client, attacker_key, run.trace_id, "not my run")
    assert foreign.status_code == 201, foreign.content
    assert _status(run) == (RunStatus.RUNNING, False)

    with django_capture_on_commit_callbacks(execute=True):
        own = _ask(client, victim_key, run.trace_id.upper(), "my run")
    assert own.status_code == 201, own.content
    assert _status(run) == (RunStatus.WAITING, True)

    with django_capture_on_commit_callbacks(execute=True):
        services.decide_request(request_id=foreign.json()["id"], reviewer=reviewer, verdict="reject",
                                reason="not yours", reason_category="other")
    assert _status(run) == (RunStatus.WAITING, True)  # the victim's own request is still pending
