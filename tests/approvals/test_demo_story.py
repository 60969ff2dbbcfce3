"""``manage.py demo`` seeds one finished four-eyes story: a critical prod migration that needed two
reviewers, edited by the first, run once with the edit, visible on its decision page and its trace."""

import io

import pytest

from approvals.models import ApprovalRequest, Status
from console.models import AuditEntry
from console.roles import Role
from tests import factories

pytestmark = pytest.mark.django_db


def seed_demo():
    from agents import demo as agents_demo
    from approvals import demo

    agents_demo.seed(io.StringIO())
    out = io.StringIO()
    demo.seed(out)
    return out.getvalue()


def test_the_demo_story_needed_two_reviewers_and_ran_the_edit_once(operator_client):
    from traces.models import Span

    factories.make_user(Role.REVIEWER, username="reviewer")
    factories.make_user(Role.ADMIN, username="admin")
    out = seed_demo()
    seed_demo()  # idempotent: one story
    story = ApprovalRequest.objects.get(idempotency_key="demo-story-four-eyes")
    assert f"approval #{story.pk}" in out
    assert (story.status, story.risk, story.required_approvals) == (Status.APPROVED, "critical", 2)
    assert story.matched_rule.name == "prod-migrations"
    assert [(d.reviewer.username, d.verdict) for d in story.decisions.all()] == [("reviewer", "modify"),
                                                                                 ("admin", "approve")]
    assert story.final_arguments != story.arguments and "lock_timeout" in story.final_arguments["sql"]
    assert story.executed_at is not None
    assert AuditEntry.objects.filter(action="approval.executed", target_id=str(story.pk)).count() == 1

    tool = Span.objects.get(run__trace_id=story.trace_id, name="execute_tool run_migration")
    assert tool.tool_arguments == story.final_arguments
    html = operator_client.get(f"/runs/{story.trace_id}/spans/{story.span_id}/", HTTP_HX_REQUEST="true")
    text = html.content.decode()
    assert "2 of 2 approvals" in text and "Approve with edits by <strong>reviewer</strong>" in text
    assert "Approve by <strong>admin</strong>" in text and "Digest matches the approved arguments" in text

    page = operator_client.get(f"/approvals/{story.pk}/").content.decode()
    assert "2 of 2 approvals" in page and "lock_timeout" in page


def test_no_story_without_the_demo_reviewers():
    seed_demo()
    assert not ApprovalRequest.objects.filter(idempotency_key="demo-story-four-eyes").exists()
