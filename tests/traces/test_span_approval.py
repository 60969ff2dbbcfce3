"""The trace page shows, on the action's span, the approval request, each decision and the execution report
(escaped and size-limited)."""

import pytest

from approvals.services import decide_request, record_execution
from tests.approvals.helpers import make_queue, make_request, make_reviewer, make_rule
from tests.traces.test_views import make_run, make_spans

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def action_span(agent):
    run = make_run(agent)
    _root, span = make_spans(run, 2)
    return run, span


def panel(client, run, span) -> str:
    response = client.get(f"/runs/{run.trace_id}/spans/{span.span_id}/", **HTMX)
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db
def test_the_action_span_shows_both_decisions_and_the_execution_report(operator_client, agent, action_span):
    run, span = action_span
    queue = make_queue("prod")
    make_rule(action_pattern="*", queue=queue, required_approvals=2)
    req = make_request(agent=agent, action="run_migration", risk="critical", arguments={"sql": "ALTER TABLE t"},
                       trace_id=run.trace_id, span_id=span.span_id)
    rita, rob = make_reviewer(queue, "rita"), make_reviewer(queue, "rob")

    html = panel(operator_client, run, span)
    assert "Asked for approval" in html and f"/approvals/{req.pk}/" in html
    assert "0 of 2 approvals" in html and "No decision yet." in html

    edited = {"sql": "ALTER TABLE t ADD COLUMN c int"}
    decide_request(request_id=req.pk, reviewer=rita, verdict="modify", reason="name the column", arguments=edited)
    decide_request(request_id=req.pk, reviewer=rob, verdict="approve", reason="looks right")
    html = panel(operator_client, run, span)
    assert "2 of 2 approvals" in html
    assert "Approve with edits by <strong>rita</strong>" in html and "name the column" in html
    assert "Approve by <strong>rob</strong>" in html and "looks right" in html
    assert "UTC" in html and "Not reported yet." in html
    assert "ADD COLUMN c int" in html  # the edited arguments that were approved

    approved = req.__class__.objects.get(pk=req.pk)
    record_execution(request_id=req.pk, agent=agent, result={"applied": True, "rows": 12},
                     digest=approved.final_digest)
    html = panel(operator_client, run, span)
    assert 'data-testid="span-approval-execution"' in html and "Ran" in html
    assert "Digest matches the approved arguments" in html
    assert "&quot;rows&quot;: 12" in html


@pytest.mark.django_db
def test_an_execution_reported_without_a_digest_says_it_was_not_checked(operator_client, agent, action_span):
    run, span = action_span
    req = make_request(agent=agent, action="notes.add", risk="low", trace_id=run.trace_id, span_id=span.span_id)
    assert req.status == "approved"  # low risk, no rule: allowed by default
    record_execution(request_id=req.pk, agent=agent, error="Timeout: the CRM did not answer")
    html = panel(operator_client, run, span)
    assert "Failed" in html and "Timeout: the CRM did not answer" in html
    assert "Not checked: the agent sent no digest" in html


@pytest.mark.django_db
def test_agent_and_reviewer_text_is_escaped_and_cut(operator_client, agent, action_span):
    run, span = action_span
    queue = make_queue("xss")
    make_rule(action_pattern="*", queue=queue)
    req = make_request(agent=agent, action="<script>alert(1)</script>", trace_id=run.trace_id, span_id=span.span_id)
    decide_request(request_id=req.pk, reviewer=make_reviewer(queue, "rita"), verdict="approve",
                   reason="<img src=x onerror=alert(2)>")
    record_execution(request_id=req.pk, agent=agent, result={"blob": "<b>" + "y" * 5000 + "</b>"})
    html = panel(operator_client, run, span)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<b>" not in html and "more characters)" in html and "y" * 5000 not in html
