"""Demo data for ``manage.py demo``: queues, SLAs, escalation matrices and guardian rules
that fit the demo fleet (support-bot refunds, data-ops migrations, deploy-bot deploys), and one
finished four-eyes story to look at before anyone has decided anything. Idempotent."""

import json
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from approvals.models import ApprovalRequest, EscalationMatrix, GuardianRule, Queue, SlaPolicy
from approvals.services import create, decide, escalate, rules

ACTOR = "system:demo"
STORY_KEY = "demo-story-four-eyes"
STORY_SQL = "ALTER TABLE customers ADD COLUMN loyalty_tier text;"
STORY_EDITED_SQL = "SET lock_timeout = '2s';\nALTER TABLE customers ADD COLUMN loyalty_tier text;"

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
    members = list(User.objects.filter(username__in=["reviewer", "reviewer2", "admin"]))
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
    _expire_earlier_sessions_requests(stdout)
    story = seed_four_eyes_story()
    if story is not None:
        stdout.write(f"Four-eyes story: approval #{story.pk} (a prod migration edited by reviewer, approved by "
                     f"admin, run once with the edit) on run /runs/{story.trace_id}/")


def _expire_earlier_sessions_requests(stdout) -> None:
    """A restarted demo starts with an empty queue.

    The demo agents that asked in an earlier session died with it (seeding runs before this session's
    fleet starts): nobody waits for those answers, yet they stayed in the queue and their runs said
    Waiting for approval. They expire by system:demo through the timeout's path (audited, escalation
    stopped, runs no longer waiting); the finished four-eyes story is left alone.
    """
    from agents.demo import DEMO_AGENTS
    from agents.models import Agent

    agent_ids = list(Agent.objects.filter(name__in=[name for name, _ in DEMO_AGENTS]).values_list("pk", flat=True))
    expired = decide.expire_pending_of_agents(agent_ids=agent_ids, decider=ACTOR, keep_keys=(STORY_KEY,),
                                              reason="demo restarted: the agent that asked is gone")
    if expired:
        stdout.write(f"Approvals: expired {expired} request{'s' if expired != 1 else ''} left pending by an "
                     "earlier demo session (its agents are gone)")


def seed_four_eyes_story(*, now=None) -> ApprovalRequest | None:
    """A finished example, 20 minutes old: data-ops asked to run a critical migration on prod (trace
    ingested as OTLP JSON, the format the fleet exports), rule prod-migrations wanted two reviewers,
    ``reviewer`` approved it with an edit (a lock timeout), ``admin`` approved exactly that, and the
    agent ran the edited SQL once and reported it. Made once; None when it exists or cannot be made
    (no demo agent or reviewers)."""
    from agents.models import Agent

    User = get_user_model()
    agent = Agent.objects.filter(name="data-ops").first()
    first, second = User.objects.filter(username="reviewer").first(), User.objects.filter(username="admin").first()
    if agent is None or first is None or second is None:
        return None
    if ApprovalRequest.objects.filter(agent=agent, idempotency_key=STORY_KEY).exists():
        return None
    now = now or timezone.now()
    start = now - timedelta(minutes=20)
    trace_id, (root_id, plan_id, ask_id, run_id) = secrets.token_hex(16), [secrets.token_hex(8) for _ in range(4)]
    arguments = {"sql": STORY_SQL, "environment": "prod", "database": "prod-main"}
    edited = {**arguments, "sql": STORY_EDITED_SQL}
    new = create.NewRequest(action="run_migration", risk="critical", arguments=arguments,
                            summary="Run migration on prod: add column customers.loyalty_tier",
                            trace_id=trace_id, span_id=ask_id, resource="db:prod-main:customers")
    req, _ = create.create_request(agent=agent, new=new, idempotency_key=STORY_KEY, now=start + timedelta(seconds=3))
    if req.status != "pending" or req.required_approvals != 2:
        return req  # the rules were changed by an Admin: leave it as they decided
    try:
        decide.decide_request(request_id=req.pk, reviewer=first, verdict="modify", reason_category="wrong_arguments",
                              reason="set a lock timeout: customers is hot at this hour", arguments=edited,
                              now=start + timedelta(minutes=4))
        decide.decide_request(request_id=req.pk, reviewer=second, verdict="approve", reason_category="ok",
                              reason="edited version is safe", now=start + timedelta(minutes=7))
        req = ApprovalRequest.objects.get(pk=req.pk)
        decide.record_execution(request_id=req.pk, agent=agent, result={"applied": True, "rows": 0},
                                digest=req.final_digest, arguments=edited, now=start + timedelta(minutes=7, seconds=9))
    except decide.ApprovalError:
        return ApprovalRequest.objects.get(pk=req.pk)
    _ingest_story_trace(agent, trace_id, (root_id, plan_id, ask_id, run_id), arguments, edited, start, now)
    return ApprovalRequest.objects.get(pk=req.pk)


def _ingest_story_trace(agent, trace_id, ids, arguments, edited, start, now) -> None:
    from traces import otlp
    from traces import services as trace_services

    root_id, plan_id, ask_id, run_id = ids

    def at(seconds: float) -> str:
        return str(int((start + timedelta(seconds=seconds)).timestamp() * 1e9))

    def attrs(**values) -> list:
        return [{"key": k.replace("__", "."), "value": {"intValue": str(v)} if isinstance(v, int)
                 else {"stringValue": str(v)}} for k, v in values.items()]

    def span(span_id, parent, name, begin, end, **values) -> dict:
        return {"traceId": trace_id, "spanId": span_id, "parentSpanId": parent, "name": name, "kind": 1,
                "startTimeUnixNano": at(begin), "endTimeUnixNano": at(end), "status": {"code": 1},
                "attributes": attrs(**values)}

    spans = [
        span(root_id, "", "invoke_agent data-ops", 0, 440, gen_ai__operation__name="invoke_agent",
             gen_ai__agent__name="data-ops", console__task="Migrate: add column customers.loyalty_tier (prod)",
             input__value="Migrate: add column customers.loyalty_tier (prod)", output__value="applied on prod"),
        span(plan_id, root_id, "chat claude-sonnet-4", 0.5, 2.5, gen_ai__operation__name="chat",
             gen_ai__request__model="claude-sonnet-4", gen_ai__provider__name="anthropic",
             gen_ai__usage__input_tokens=412, gen_ai__usage__output_tokens=38,
             output__value=STORY_SQL + "\nRisk: low lock time."),
        span(ask_id, root_id, "approval run_migration", 3, 429, console__span__kind="decision",
             console__approval__action="run_migration", console__approval__risk="critical",
             console__approval__status="approved", input__value=json.dumps(arguments)),
        span(run_id, root_id, "execute_tool run_migration", 429.5, 438, gen_ai__operation__name="execute_tool",
             gen_ai__tool__name="run_migration", gen_ai__tool__call__arguments=json.dumps(edited),
             console__resource="db:prod-main:customers", output__value=json.dumps({"applied": True, "rows": 0})),
    ]
    body = json.dumps({"resourceSpans": [{
        "resource": {"attributes": attrs(service__name="data-ops", gen_ai__agent__name="data-ops")},
        "scopeSpans": [{"scope": {"name": "agents.fleet"}, "spans": spans}]}]}).encode()
    decoded = otlp.decode(otlp.parse_json(body), now=now, max_future=timedelta(minutes=5), text_limit=100_000)
    trace_services.ingest_spans(agent=agent, spans=decoded.spans, now=now)
