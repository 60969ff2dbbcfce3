from datetime import timedelta

import pytest

from agents import services as agent_services
from approvals.models import ApprovalRequest, BreachAction, SlaPolicy, Status, arguments_digest
from approvals.services import create_request, NewRequest
from console.models import AuditEntry
from tests.approvals.helpers import make_queue, make_request, make_rule

pytestmark = pytest.mark.django_db


def test_a_paused_agent_is_answered_at_once_with_the_reason(agent, fixed_now):
    agent_services.pause_agent(agent_id=agent.pk, actor="system:test", reason="loop detected")
    agent.refresh_from_db()
    req = make_request(agent=agent, risk="critical", now=fixed_now)
    assert req.status == Status.REJECTED
    assert req.reason == "paused: loop detected"
    assert req.decider == "system:paused"
    assert req.due_at is None and req.next_escalation_at is None


def test_a_deny_rule_rejects_at_once_naming_the_rule(agent, fixed_now):
    make_rule(name="no-prod-drops", action_pattern="sql.*", outcome="deny",
              conditions=[{"field": "sql", "op": "matches", "value": "(?i)drop"}])
    req = make_request(agent=agent, action="sql.run", arguments={"sql": "DROP TABLE users"}, now=fixed_now)
    assert (req.status, req.decider) == (Status.REJECTED, "rule:no-prod-drops")
    assert "no-prod-drops" in req.reason
    assert AuditEntry.objects.filter(action="approval.auto_decided", target_id=str(req.pk)).exists()


def test_an_allow_rule_approves_at_once_as_the_rule(agent, fixed_now):
    make_rule(name="small-refunds", action_pattern="refunds.*", outcome="allow",
              conditions=[{"field": "amount", "op": "<=", "value": 50}])
    req = make_request(agent=agent, arguments={"amount": 20}, now=fixed_now)
    assert (req.status, req.decider) == (Status.APPROVED, "rule:small-refunds")
    assert req.final_arguments == {"amount": 20}


@pytest.mark.parametrize("risk", ["high", "critical"])
def test_unmatched_high_and_critical_go_to_the_default_queue(agent, fixed_now, risk):
    req = make_request(agent=agent, risk=risk, now=fixed_now)
    assert req.status == Status.PENDING
    assert req.queue.name == "default"
    assert req.matched_rule is None


@pytest.mark.parametrize("risk", ["low", "medium"])
def test_unmatched_low_and_medium_are_allowed_by_the_default_policy(agent, fixed_now, risk):
    req = make_request(agent=agent, risk=risk, now=fixed_now)
    assert (req.status, req.decider) == (Status.APPROVED, "policy:default-allow")


def test_the_default_policy_for_low_risk_can_be_set_to_ask(agent, fixed_now, settings):
    settings.APPROVALS_UNMATCHED_LOW_MEDIUM = "ask"
    req = make_request(agent=agent, risk="low", now=fixed_now)
    assert req.status == Status.PENDING and req.queue.name == "default"


@pytest.mark.parametrize("risk, minutes", [("critical", 10), ("high", 30), ("medium", 240), ("low", 1440)])
def test_due_at_uses_the_default_sla(agent, fixed_now, settings, risk, minutes):
    settings.APPROVALS_UNMATCHED_LOW_MEDIUM = "ask"
    req = make_request(agent=agent, risk=risk, now=fixed_now)
    assert req.due_at == fixed_now + timedelta(minutes=minutes)


def test_due_at_uses_the_queue_sla_policy(agent, fixed_now):
    queue = make_queue("payments")
    SlaPolicy.objects.create(queue=queue, risk="high", minutes=5)
    make_rule(action_pattern="refunds.*", queue=queue)
    req = make_request(agent=agent, risk="high", now=fixed_now)
    assert req.queue == queue
    assert req.due_at == fixed_now + timedelta(minutes=5)


def test_a_request_keeps_a_snapshot_of_the_matrix(agent, fixed_now, admin_user):
    from approvals.services import update_matrix

    queue = make_queue("payments")
    make_rule(action_pattern="*", queue=queue)
    update_matrix(queue_id=queue.pk, breach_action=BreachAction.EXPIRE_REJECTED, actor=admin_user,
                  levels=[{"after_minutes": 2, "queue_reviewers": True}])
    req = make_request(agent=agent, now=fixed_now)
    update_matrix(queue_id=queue.pk, breach_action=BreachAction.KEEP_PENDING_AND_PAGE, actor=admin_user,
                  levels=[{"after_minutes": 7, "queue_reviewers": True}])
    req.refresh_from_db()
    assert req.escalation_snapshot["levels"][0]["after_minutes"] == 2
    assert req.breach_action == BreachAction.EXPIRE_REJECTED
    assert req.next_escalation_at == fixed_now + timedelta(minutes=2)


def test_the_same_idempotency_key_returns_the_same_request(agent, fixed_now):
    new = NewRequest(action="deploy", risk="high", arguments={"service": "api"})
    first, created = create_request(agent=agent, new=new, idempotency_key="k-1", now=fixed_now)
    again, created_again = create_request(agent=agent, new=new, idempotency_key="k-1", now=fixed_now)
    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    assert ApprovalRequest.objects.count() == 1


def test_the_digest_is_of_canonical_action_and_arguments(agent, fixed_now):
    req = make_request(agent=agent, arguments={"b": 1, "a": [1, 2]}, now=fixed_now)
    assert req.arguments_digest == arguments_digest("refunds.issue", {"a": [1, 2], "b": 1})
    assert len(req.arguments_digest) == 64
