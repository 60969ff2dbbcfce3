"""A reviewer's decision becomes feedback on the prompt version that produced the action."""

import pytest

from agents import services as agent_services
from agents.models import Feedback
from approvals.services import NewRequest, create_request, decide_request
from console.roles import Role
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_rejection_through_decide_request_lands_on_the_prompt_version(agent):
    agent_services.create_prompt(name="refund-decision", actor="system:test", template="Decide {order}")
    reviewer = factories.make_user(Role.ADMIN, username="root-reviewer")
    req, _ = create_request(agent=agent, new=NewRequest(
        action="refund", risk="high", arguments={"amount": 900}, summary="Refund 900",
        prompt_name="refund-decision", prompt_version="1"))
    decide_request(request_id=req.pk, reviewer=reviewer, verdict="reject", reason="no receipt",
                   reason_category=_a_category())
    feedback = Feedback.objects.get()
    assert (feedback.version.prompt.name, feedback.version.number) == ("refund-decision", 1)
    assert feedback.verdict == "reject" and feedback.text == "no receipt"


def test_a_request_without_a_prompt_gives_no_feedback(agent):
    reviewer = factories.make_user(Role.ADMIN, username="root-reviewer")
    req, _ = create_request(agent=agent, new=NewRequest(action="deploy", risk="high", arguments={}))
    decide_request(request_id=req.pk, reviewer=reviewer, verdict="approve")
    assert not Feedback.objects.exists()


def _a_category() -> str:
    from approvals.models import ReasonCategory

    return ReasonCategory.values[0]


def test_time_to_decision_is_observed_in_metrics(agent, django_capture_on_commit_callbacks):
    from prometheus_client import REGISTRY

    def count():
        return REGISTRY.get_sample_value("console_approval_time_to_decision_seconds_count",
                                         {"queue": "default", "risk": "critical"}) or 0.0

    reviewer = factories.make_user(Role.ADMIN, username="root-reviewer")
    req, _ = create_request(agent=agent, new=NewRequest(action="drop", risk="critical", arguments={}))
    before = count()
    with django_capture_on_commit_callbacks(execute=True):
        decide_request(request_id=req.pk, reviewer=reviewer, verdict="approve")
    assert count() - before == 1
