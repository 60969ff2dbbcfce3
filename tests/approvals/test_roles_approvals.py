"""Who may decide through the API: one parametrized role-by-request test."""

import json

import pytest
from django.test import Client

from approvals.models import ApprovalRequest, Status
from console.roles import Role
from tests import factories
from tests.approvals.helpers import make_queue, make_request, make_rule

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("who, expected", [
    ("anonymous", 401),
    ("no_role", 403),
    ("operator", 403),
    ("reviewer_elsewhere", 404),  # outside their queues: as if it did not exist
    ("reviewer_member", 200),
    ("operator_member", 403),   # membership without the Reviewer role does not make a reviewer
    ("admin", 200),
])
def test_who_may_decide(agent, who, expected):
    queue = make_queue("payments")
    make_rule(action_pattern="*", queue=queue)
    req = make_request(agent=agent)
    users = {
        "no_role": factories.make_user(None),
        "operator": factories.make_user(Role.OPERATOR),
        "reviewer_elsewhere": factories.make_user(Role.REVIEWER),
        "reviewer_member": factories.make_user(Role.REVIEWER),
        "operator_member": factories.make_user(Role.OPERATOR),
        "admin": factories.make_user(Role.ADMIN),
    }
    queue.members.add(users["reviewer_member"], users["operator_member"])
    make_queue("other", members=[users["reviewer_elsewhere"]])
    client = Client()
    if who != "anonymous":
        client.force_login(users[who])
    response = client.post(f"/api/v1/approvals/{req.pk}/decision", content_type="application/json",
                           data=json.dumps({"decision": "approve", "reason": "ok"}))
    assert response.status_code == expected, response.content
    decided = ApprovalRequest.objects.get(pk=req.pk).status == Status.APPROVED
    assert decided is (expected == 200)
