"""The demo's conflict story with the real fleet over HTTP: support-bot and data-ops both act on
crm:customer:42; the later one is held, and arbitration (the queue's rule or a reviewer) resolves it."""

import random

from agents.fleet.sim import Mischief
from approvals.models import ApprovalRequest, Queue, Status
from approvals.services import decide_request
from approvals.services.conflicts import arbitrate_conflict
from tests.browser.conftest import asgi_server  # noqa: F401 - the real console on uvicorn in a thread
from tests.fleet_helpers import demo_fleet, seed_demo, wait_until

CUSTOMER = "crm:customer:42"


def _held_pair():
    """(the held or waiting request, the one it waits for) once a refund and a migration conflict."""
    for req in ApprovalRequest.objects.filter(resource=CUSTOMER, status=Status.PENDING,
                                              conflict_state__in=["held", "waiting"]).select_related("conflict_with"):
        other = req.conflict_with
        if other is not None and {req.action, other.action} == {"refund", "run_migration"}:
            return req, other
    return None


def test_two_demo_agents_conflicting_on_one_customer_are_resolved_by_arbitration(asgi_server):
    reviewer, _admin = seed_demo(conflicts=True)
    assert Queue.objects.get(name="data").conflict_rule == "higher_risk_waits"
    mischief = Mischief(random.Random(5), 8, enabled=False, always=("shared_resource",))
    with demo_fleet(asgi_server.url, ["support-bot", "data-ops"], rate=8, seed=5, mischief=mischief):
        pair = wait_until(_held_pair)
        assert pair is not None, "support-bot and data-ops never conflicted on " + CUSTOMER
        later, first = pair
        if later.action == "run_migration":
            # data: higher risk waits. The critical migration waits for the refund; approving the refund lets
            # support-bot run it and report it, which releases the migration into its queue.
            assert later.conflict_state == "waiting" and later.arbitration == "higher_risk_waits"
            decide_request(request_id=first.pk, reviewer=reviewer, verdict="approve", reason="refund is fine")
            released = wait_until(lambda: ApprovalRequest.objects.filter(pk=later.pk, conflict_state="resolved")
                                  .first())
            assert released is not None, "the migration was not released after the refund ran"
            assert ApprovalRequest.objects.get(pk=first.pk).executed_at is not None
        else:
            # payments: ask a human. The refund is held; a reviewer rejects it, naming the migration.
            assert later.conflict_state == "held"
            arbitrate_conflict(request_id=later.pk, reviewer=reviewer, choice="reject",
                               reason="the migration rewrites this customer first")
            done = ApprovalRequest.objects.get(pk=later.pk)
            assert done.status == Status.REJECTED
            assert done.reason.startswith(f"conflict: #{first.pk} holds {CUSTOMER}")
