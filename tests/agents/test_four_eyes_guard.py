"""The client's guard against the real console on a request needing two reviewers: it waits through the
first approval, then runs exactly the arguments both approved (the first approver's edit), once."""

import threading
import time

import pytest

from agents.client import ApprovalRejected, Console
from approvals import services as approval_services
from approvals.models import ApprovalRequest, Queue
from approvals.services import SameReviewer
from tests import factories
from tests.approvals.helpers import make_reviewer, make_rule


@pytest.fixture
def four_eyes(asgi_server):
    queue = Queue.objects.create(name="payments")
    make_rule(name="refunds-four-eyes", action_pattern="refund", queue=queue, required_approvals=2)
    agent = factories.make_agent("support-bot")
    _key, plain = factories.make_key(agent)
    console = Console(asgi_server.url, plain, max_retries=2, backoff_s=0.05)
    yield console, make_reviewer(queue, "rita"), make_reviewer(queue, "rob")
    console.close()


def wait_for_request(limit_s: float = 30) -> ApprovalRequest:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        req = ApprovalRequest.objects.filter(action="refund").first()
        if req is not None:
            return req
        time.sleep(0.1)
    raise AssertionError("the guard never asked")


def run_guarded(console, calls, outcome):
    @console.guarded("refund", risk="high", summary=lambda a: f"Refund {a['amount']} EUR")
    def refund(order: str, amount: int):
        calls.append({"order": order, "amount": amount})
        return {"refunded": amount}

    try:
        outcome.append(refund("NW-9", 900))
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        outcome.append(exc)


def test_the_guard_waits_for_both_approvals_then_runs_the_edited_arguments_once(four_eyes):
    console, rita, rob = four_eyes
    calls, outcome = [], []
    agent_thread = threading.Thread(target=run_guarded, args=(console, calls, outcome), daemon=True)
    agent_thread.start()
    req = wait_for_request()
    approval_services.decide_request(request_id=req.pk, reviewer=rita, verdict="modify", reason="cap at paid",
                                     arguments={"order": "NW-9", "amount": 640})
    with pytest.raises(SameReviewer):
        approval_services.decide_request(request_id=req.pk, reviewer=rita, verdict="approve")
    agent_thread.join(timeout=1.5)
    assert agent_thread.is_alive() and calls == []  # one approval of two: nothing runs
    approval_services.decide_request(request_id=req.pk, reviewer=rob, verdict="approve", reason="agreed")
    agent_thread.join(timeout=60)
    assert outcome == [{"refunded": 640}]
    assert calls == [{"order": "NW-9", "amount": 640}]
    row = ApprovalRequest.objects.get(pk=req.pk)
    assert row.execution_result == {"refunded": 640} and row.executed_at is not None
    assert row.decisions.count() == 2


def test_the_guard_never_runs_when_the_second_reviewer_rejects(four_eyes):
    console, rita, rob = four_eyes
    calls, outcome = [], []
    agent_thread = threading.Thread(target=run_guarded, args=(console, calls, outcome), daemon=True)
    agent_thread.start()
    req = wait_for_request()
    approval_services.decide_request(request_id=req.pk, reviewer=rita, verdict="approve", reason="fine")
    approval_services.decide_request(request_id=req.pk, reviewer=rob, verdict="reject", reason="already refunded",
                                     reason_category="wrong_action")
    agent_thread.join(timeout=60)
    assert calls == [] and len(outcome) == 1 and isinstance(outcome[0], ApprovalRejected)
    assert ApprovalRequest.objects.get(pk=req.pk).executed_at is None
