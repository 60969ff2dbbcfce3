"""A resumed agent (same Idempotency-Key after a restart) gets its approved request back already executed:
the guard must not run the action a second time."""

import pytest

from agents.client import ApprovalError, Console
from approvals import services as approval_services
from approvals.models import ApprovalRequest, Queue
from tests import factories
from tests.approvals.helpers import make_reviewer, make_rule


@pytest.fixture
def console_and_reviewer(asgi_server):
    queue = Queue.objects.create(name="payments")
    make_rule(name="refunds-ask", action_pattern="refund", queue=queue)
    agent = factories.make_agent("support-bot")
    _key, plain = factories.make_key(agent)
    console = Console(asgi_server.url, plain, max_retries=2, backoff_s=0.05)
    yield console, make_reviewer(queue, "rita")
    console.close()


def test_a_resumed_agent_never_runs_an_executed_approval_again(console_and_reviewer):
    console, rita = console_and_reviewer
    calls = []

    def refund_guarded():
        @console.guarded("refund", risk="high", idempotency_key="run-7:refund", wait=False)
        def refund(order: str, amount: int):
            calls.append(amount)
            return {"refunded": amount}

        return refund("NW-9", 900)

    with pytest.raises(ApprovalError):  # pending: nothing runs yet
        refund_guarded()
    req = ApprovalRequest.objects.get(action="refund")
    approval_services.decide_request(request_id=req.pk, reviewer=rita, verdict="approve", reason="ok")
    assert refund_guarded() == {"refunded": 900}
    assert calls == [900]

    with pytest.raises(ApprovalError) as refused:  # the agent restarts and asks again with the same key
        refund_guarded()
    assert "already" in str(refused.value) and "executed" in str(refused.value)
    assert calls == [900]
    assert ApprovalRequest.objects.count() == 1
