"""A run whose agent asked for approval shows "Waiting for approval" until the request is decided.

traces.services.set_run_waiting existed ("called by the approvals app") but nothing called it: runs
waiting for a reviewer said Running, the runs page's "waiting for approval" filter and the API's
has_pending_approval never matched, and a run waiting longer than the runaway detector's idle limit
was shown as Stalled.
"""

import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from approvals import services
from traces.models import Run, RunStatus
from tests.approvals.helpers import make_queue, make_request, make_rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(agent) -> Run:
    return Run.objects.create(agent=agent, trace_id=uuid.uuid4().hex, name="invoke_agent billing-bot",
                              status=RunStatus.RUNNING, started_at=timezone.now())


def _status(run: Run) -> tuple[str, bool]:
    run.refresh_from_db()
    return run.status, run.has_pending_approval


def test_asking_over_the_api_makes_the_run_wait_and_the_decision_lets_it_run(client, agent_headers, run, agent,
                                                                          reviewer_client, reviewer,
                                                                          django_capture_on_commit_callbacks):
    make_queue("default", members=[reviewer])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/approvals", content_type="application/json", **agent_headers,
                               data=json.dumps({"action": "refunds.issue", "arguments": {"order": 42}, "risk": "high",
                                                "summary": "Refund order 42", "trace_id": run.trace_id.upper()}))
    assert response.status_code == 201, response.content
    assert _status(run) == (RunStatus.WAITING, True)

    page = reviewer_client.get("/runs/?has_pending_approval=on").content.decode()
    assert f'id="run-row-{run.pk}"' in page and "Waiting for approval" in page
    api = client.get(f"/api/v1/runs/{run.trace_id}", **agent_headers).json()
    assert api["status"] == "waiting" and api["has_pending_approval"] is True

    with django_capture_on_commit_callbacks(execute=True):
        services.decide_request(request_id=response.json()["id"], reviewer=reviewer, verdict="reject",
                                reason="already refunded", reason_category="wrong_arguments")
    assert _status(run) == (RunStatus.RUNNING, False)


def test_the_run_waits_until_its_last_pending_request_is_done_and_an_expired_one_ends_the_wait(
        run, agent, reviewer, django_capture_on_commit_callbacks):
    queue = make_queue("payments", members=[reviewer])
    make_rule(action_pattern="*", queue=queue)
    with django_capture_on_commit_callbacks(execute=True):
        first = make_request(agent=agent, trace_id=run.trace_id)
        second = make_request(agent=agent, trace_id=run.trace_id, action="refunds.notify", timeout_s=60)
    assert _status(run) == (RunStatus.WAITING, True)

    with django_capture_on_commit_callbacks(execute=True):
        services.decide_request(request_id=first.pk, reviewer=reviewer, verdict="approve")
    assert _status(run) == (RunStatus.WAITING, True)

    with django_capture_on_commit_callbacks(execute=True):
        assert services.expire_overdue(now=timezone.now() + timedelta(seconds=61)) == 1
    second.refresh_from_db()
    assert second.status == "expired"
    assert _status(run) == (RunStatus.RUNNING, False)


def test_a_finished_run_stays_finished_and_a_request_without_a_run_changes_nothing(
        run, agent, reviewer, django_capture_on_commit_callbacks):
    make_queue("default", members=[reviewer])
    Run.objects.filter(pk=run.pk).update(status=RunStatus.OK, root_ended=True)
    with django_capture_on_commit_callbacks(execute=True):
        make_request(agent=agent, trace_id=run.trace_id)
        make_request(agent=agent, trace_id=uuid.uuid4().hex)
    run.refresh_from_db()
    assert run.status == RunStatus.OK and run.has_pending_approval is True
    assert Run.objects.count() == 1
