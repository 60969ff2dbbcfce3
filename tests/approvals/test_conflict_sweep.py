"""The sweep that releases held requests is not starved by requests legitimately held (waiting for a reviewer):
past its batch of them, one whose blocker finished is still released."""

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals.models import ApprovalRequest
from approvals.services import conflicts, decide_request
from approvals.services.conflicts import release_stale_holds
from tests import factories
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule


@pytest.mark.django_db
def test_many_held_requests_do_not_hide_one_whose_blocker_ran_past_the_bound():
    queue = make_queue("crm")
    make_rule(name="crm-ask", action_pattern="crm.*", queue=queue, order=10)
    rita = make_reviewer(queue, "rita")
    bot = factories.make_agent("support-bot")

    def ask(resource, n):
        return make_request(agent=bot, action="crm.update", risk="high", resource=resource, arguments={"n": n})

    hot_holder = ask("crm:customer:42", 0)  # stays pending: what waits on it is rightly held
    held_on_hot = [ask("crm:customer:42", n) for n in range(1, 4)]
    running = ask("crm:customer:7", 0)
    decide_request(request_id=running.pk, reviewer=rita, verdict="approve", reason="ok")
    later = ask("crm:customer:7", 1)
    assert all(ApprovalRequest.objects.get(pk=r.pk).is_held for r in [*held_on_hot, later])

    past_bound = timezone.now() + timedelta(seconds=conflicts.running_seconds() + 5)
    assert release_stale_holds(now=past_bound, limit=2) == 1
    assert ApprovalRequest.objects.get(pk=later.pk).conflict_state == "resolved"
    assert all(ApprovalRequest.objects.get(pk=r.pk).is_held for r in held_on_hot)
    assert ApprovalRequest.objects.get(pk=hot_holder.pk).is_pending


@pytest.mark.django_db
def test_a_request_held_by_one_since_deleted_is_released():
    queue = make_queue("crm")
    make_rule(name="crm-ask", action_pattern="crm.*", queue=queue, order=10)
    bot, other_bot = factories.make_agent("support-bot"), factories.make_agent("data-ops")
    first = make_request(agent=other_bot, action="crm.update", risk="high", resource="crm:customer:9")
    later = make_request(agent=bot, action="crm.update", risk="high", resource="crm:customer:9")
    assert ApprovalRequest.objects.get(pk=later.pk).is_held
    other_bot.delete()  # cascades to its requests: the blocker is gone, conflict_with becomes NULL
    assert ApprovalRequest.objects.get(pk=later.pk).conflict_with_id is None
    assert release_stale_holds(now=timezone.now()) == 1
    assert ApprovalRequest.objects.get(pk=later.pk).conflict_state == "resolved"
