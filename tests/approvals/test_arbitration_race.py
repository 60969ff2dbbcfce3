"""Arbitration reads which request the held one conflicts with under the resource lock, not before it.

If the other request finished and the held one was re-pointed to a new holder between the two, "let this
go first" must make the new holder wait; going by the stale one left two free requests on one resource.
"""

import pytest

from approvals.models import ApprovalRequest
from approvals.services import conflicts, decide_request
from approvals.services.conflicts import arbitrate_conflict
from tests import factories
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule

CUSTOMER = "crm:customer:42"


@pytest.mark.django_db
def test_this_first_after_a_repoint_makes_the_new_holder_wait(monkeypatch):
    queue = make_queue("crm")
    make_rule(name="crm-ask", action_pattern="crm.*", queue=queue, order=10)
    rita = make_reviewer(queue, "rita")
    bots = [factories.make_agent(f"bot-{i}") for i in range(3)]
    first, other, held = (make_request(agent=b, action="crm.update", resource=CUSTOMER) for b in bots)
    assert ApprovalRequest.objects.get(pk=held.pk).conflict_with_id == first.pk

    real_lock, raced = conflicts.lock_resource, []

    def lock_after_a_concurrent_release(resource, *, wait=True):
        if not raced:  # what another transaction commits just before arbitration gets the lock
            raced.append(True)
            decide_request(request_id=first.pk, reviewer=rita, verdict="reject", reason="no")
        return real_lock(resource, wait=wait)

    monkeypatch.setattr(conflicts, "lock_resource", lock_after_a_concurrent_release)
    arbitrate_conflict(request_id=held.pk, reviewer=rita, choice="this_first", reason="urgent")

    rows = {r.pk: r for r in ApprovalRequest.objects.filter(pk__in=[other.pk, held.pk])}
    free = [pk for pk, r in rows.items() if not r.is_held]
    assert free == [held.pk], {pk: (r.conflict_state, r.conflict_with_id) for pk, r in rows.items()}
    assert rows[other.pk].conflict_with_id == held.pk
