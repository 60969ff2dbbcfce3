"""The Django admin site cannot decide, approve or re-attribute an approval: only the services do, audited."""

import pytest
from django.contrib import admin

from approvals.models import ApprovalRequest, Decision, Status
from approvals.services import SameReviewer, decide_request
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def four_eyes_request():
    queue = make_queue("prod")
    make_rule(name="two", action_pattern="db.*", queue=queue, required_approvals=2)
    return make_request(action="db.migrate", risk="critical", arguments={"table": "orders"}), queue


def test_admin_site_cannot_approve_a_request_or_change_its_arguments(superuser_client, four_eyes_request, rf):
    client, user = superuser_client
    req, _queue = four_eyes_request
    url = f"/django-admin/approvals/approvalrequest/{req.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200  # still there to look at
    assert b'name="_save"' not in page.content and b'name="status"' not in page.content
    request = rf.get(url)
    request.user = user
    model_admin = admin.site._registry[ApprovalRequest]
    assert not model_admin.has_change_permission(request, req)
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_delete_permission(request, req)
    client.post(url, {"status": "approved", "final_arguments": '{"table": "users"}', "required_approvals": 1})
    req.refresh_from_db()
    assert req.status == Status.PENDING and req.final_arguments is None and req.required_approvals == 2


def test_admin_site_cannot_reattribute_a_first_approval_to_give_the_second(superuser_client, four_eyes_request):
    client, _user = superuser_client
    req, queue = four_eyes_request
    first, other = make_reviewer(queue, "first"), make_reviewer(queue, "other")
    decide_request(request_id=req.pk, reviewer=first, verdict="approve", reason="ok")
    decision = Decision.objects.get(request=req)
    url = f"/django-admin/approvals/decision/{decision.pk}/change/"
    client.post(url, {"request": req.pk, "reviewer": other.pk, "verdict": "approve", "reason": "ok",
                      "created_at_0": "2026-11-25", "created_at_1": "12:00:00"})
    client.post(f"/django-admin/approvals/decision/{decision.pk}/delete/", {"post": "yes"})
    client.post("/django-admin/approvals/decision/add/", {"request": req.pk, "reviewer": other.pk,
                                                           "verdict": "approve", "created_at_0": "2026-11-25",
                                                           "created_at_1": "12:00:00"})
    assert list(Decision.objects.filter(request=req).values_list("reviewer__username", flat=True)) == ["first"]
    with pytest.raises(SameReviewer):
        decide_request(request_id=req.pk, reviewer=first, verdict="approve", reason="again")
    assert ApprovalRequest.objects.get(pk=req.pk).status == Status.PENDING


def test_admin_site_cannot_drop_a_four_eyes_policy_unaudited(superuser_client):
    from approvals.models import GuardianRule, Queue, SlaPolicy
    from approvals.services import set_sla_policy

    client, user = superuser_client
    queue = make_queue("payments")
    policy = set_sla_policy(queue_id=queue.pk, risk="critical", minutes=10, actor="admin", required_approvals=2)
    rule = make_rule(name="two", action_pattern="refund", queue=queue, required_approvals=2)
    client.post(f"/django-admin/approvals/slapolicy/{policy.pk}/change/",
                {"queue": queue.pk, "risk": "critical", "minutes": 10, "required_approvals": 1})
    client.post(f"/django-admin/approvals/guardianrule/{rule.pk}/delete/", {"post": "yes"})
    client.post(f"/django-admin/approvals/queue/{queue.pk}/delete/", {"post": "yes"})
    assert SlaPolicy.objects.get(pk=policy.pk).required_approvals == 2
    assert GuardianRule.objects.filter(pk=rule.pk, required_approvals=2).exists()
    assert Queue.objects.filter(pk=queue.pk).exists()
