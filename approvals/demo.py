"""Demo data for ``manage.py demo``: queues, SLAs, escalation matrices and guardian rules
that fit the demo fleet (support-bot refunds, data-ops migrations, deploy-bot deploys). Idempotent."""

from django.contrib.auth import get_user_model

from approvals.models import EscalationMatrix, GuardianRule, Queue, SlaPolicy
from approvals.services import escalate, rules

ACTOR = "system:demo"

QUEUES = {
    # name: (description, {risk: SLA minutes}, breach action)
    "payments": ("Refunds and payouts", {"high": 30, "critical": 10}, "keep_pending_and_page"),
    "deployments": ("Production deploys", {"high": 15, "critical": 10}, "expire_rejected"),
    "data": ("Migrations and data fixes", {"critical": 20, "high": 60}, "keep_pending_and_page"),
    "default": ("Requests no rule sent elsewhere", {}, "keep_pending_and_page"),
}

RULES = [
    # name, agent, action pattern, risks, conditions, outcome, queue[, approvals required]
    ("deny-drop-table", "data-ops", "run_migration", None,
     [{"field": "sql", "op": "matches", "value": r"(?i)\bdrop\s+(table|database)\b"}], "deny", None),
    # Four eyes: a critical change in production needs two different reviewers (demo: reviewer and admin).
    ("prod-migrations", "data-ops", "run_migration", ["critical", "high"],
     [{"field": "environment", "op": "==", "value": "prod"}], "ask", "data", 2),
    ("big-refunds", "support-bot", "refund", None,
     [{"field": "amount", "op": ">", "value": 500}], "ask", "payments"),
    ("refunds", "support-bot", "refund", None, [], "ask", "payments"),
    ("prod-deploys", "deploy-bot", "deploy", None,
     [{"field": "environment", "op": "==", "value": "prod"}], "ask", "deployments"),
    ("staging-deploys", "deploy-bot", "deploy", None,
     [{"field": "environment", "op": "in", "value": ["staging", "dev"]}], "allow", None),
]


def seed(stdout) -> None:
    from agents.models import Agent

    User = get_user_model()
    members = list(User.objects.filter(username__in=["reviewer", "admin"]))
    admin = User.objects.filter(username="admin").first()
    for name, (description, slas, breach_action) in QUEUES.items():
        queue, _ = Queue.objects.get_or_create(name=name, defaults={"description": description})
        queue.members.add(*members)
        for risk, minutes in slas.items():
            if not SlaPolicy.objects.filter(queue=queue, risk=risk).exists():
                escalate.set_sla_policy(queue_id=queue.pk, risk=risk, minutes=minutes, actor=ACTOR)
        if not EscalationMatrix.objects.filter(queue=queue, levels__isnull=False).exists():
            levels = [{"after_minutes": 0, "queue_reviewers": True, "email": False}]
            if admin:
                levels.append({"after_minutes": 5, "user_ids": [admin.pk], "repeat_count": 2,
                               "repeat_interval_minutes": 5, "email": True})
            escalate.update_matrix(queue_id=queue.pk, breach_action=breach_action, levels=levels, actor=ACTOR)
    for order, (name, agent_name, pattern, risks, conditions, outcome, queue_name, *required) in enumerate(
            RULES, start=1):
        if GuardianRule.objects.filter(name=name).exists():
            continue
        rule = GuardianRule(name=name, order=order * 10, agent=Agent.objects.filter(name=agent_name).first(),
                            action_pattern=pattern, risks=risks, conditions=conditions, outcome=outcome,
                            queue=Queue.objects.get(name=queue_name) if queue_name else None,
                            required_approvals=required[0] if required else 1)
        rules.save_rule(rule=rule, actor=ACTOR)
    stdout.write(f"Approval queues: {', '.join(QUEUES)}; guardian rules: {', '.join(r[0] for r in RULES)}")
