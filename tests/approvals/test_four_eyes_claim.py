"""The first of two approvers cannot claim the request afterwards: a claim pauses escalation, so they could
hold back the second reviewer's reminders while unable to give the second approval themselves."""

import pytest
from django.test import Client

from approvals.models import ApprovalRequest
from approvals.services import SameReviewer, claim_request, decide_request
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def half_approved():
    queue = make_queue("prod")
    make_rule(name="two", action_pattern="db.*", queue=queue, required_approvals=2)
    rita, rob = make_reviewer(queue, "rita"), make_reviewer(queue, "rob")
    req = make_request(action="db.migrate", risk="critical")
    decide_request(request_id=req.pk, reviewer=rita, verdict="approve", reason="first")
    return req, rita, rob


def test_the_first_approver_cannot_claim_it(half_approved):
    req, rita, rob = half_approved
    with pytest.raises(SameReviewer):
        claim_request(request_id=req.pk, reviewer=rita)
    assert ApprovalRequest.objects.get(pk=req.pk).claimed_by_id is None
    assert claim_request(request_id=req.pk, reviewer=rob).claimed_by_id == rob.pk


def test_the_first_approver_claiming_over_http_is_told_why(half_approved):
    req, rita, _rob = half_approved
    client = Client()
    client.force_login(rita)
    response = client.post(f"/approvals/{req.pk}/claim/", {"ctx": "detail"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 409
    assert "different reviewer" in response.content.decode()
    assert ApprovalRequest.objects.get(pk=req.pk).claimed_by_id is None
