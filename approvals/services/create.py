"""An agent asks to act: guardian rules decide at once or send it to a queue with an SLA."""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from approvals import live
from approvals.models import (
    DEFAULT_MATRIX_SNAPSHOT,
    ApprovalRequest,
    EscalationMatrix,
    GuardianRule,
    Outcome,
    Queue,
    SlaPolicy,
    Status,
    arguments_digest,
    escalation_steps,
    sla_minutes,
)
from approvals.services import conflicts
from approvals.services import rules as rule_engine
from console import audit

DEFAULT_QUEUE = "default"
PAUSED_DECIDER = "system:paused"
DEFAULT_ALLOW_DECIDER = "policy:default-allow"


class TooManyPending(Exception):
    """The agent already has ``limit`` pending requests (settings.APPROVALS_MAX_PENDING_PER_AGENT)."""

    def __init__(self, limit: int):
        super().__init__(f"This agent already has {limit} pending approval requests "
                         f"(APPROVALS_MAX_PENDING_PER_AGENT); wait for decisions before asking again.")
        self.limit = limit


@dataclass
class NewRequest:
    """What an agent sends (already validated for shape and size by the API)."""

    action: str
    risk: str
    arguments: dict
    summary: str = ""
    trace_id: str = ""
    span_id: str = ""
    resource: str = ""
    prompt_name: str = ""
    prompt_version: str = ""
    context: dict | None = None
    timeout_s: int | None = None


def default_queue() -> Queue:
    queue, _ = Queue.objects.get_or_create(name=DEFAULT_QUEUE,
                                           defaults={"description": "Requests no rule sent elsewhere"})
    return queue


def matrix_snapshot(queue: Queue) -> dict:
    matrix = EscalationMatrix.objects.filter(queue=queue).first()
    if matrix is None or not matrix.levels.exists():
        snapshot = dict(DEFAULT_MATRIX_SNAPSHOT)
        if matrix is not None:
            snapshot["breach_action"] = matrix.breach_action
        return snapshot
    return matrix.snapshot()


def start_escalation(req: ApprovalRequest, *, at: datetime) -> None:
    """Point the escalation cursor at the first step of the request's snapshot, counting from ``at``."""
    steps = escalation_steps(req.escalation_snapshot)
    req.escalation_started_at = at
    req.escalation_step = 0
    req.next_escalation_at = at + timedelta(minutes=steps[0][0]) if steps else None


def _decide_now(req: ApprovalRequest, *, status: str, decider: str, reason: str, now: datetime) -> None:
    req.status, req.decider, req.reason, req.decided_at = status, decider, reason[:500], now
    if status == Status.APPROVED:
        req.final_arguments, req.final_digest = req.arguments, req.arguments_digest


def create_request(*, agent, new: NewRequest, idempotency_key: str | None = None,
                   now: datetime | None = None) -> tuple[ApprovalRequest, bool]:
    """Create (or, for a known ``idempotency_key``, return) the agent's request: (request, created).

    Decided at once when the agent is paused (rejected, reason "paused"), a
    rule denies (rejected) or allows (approved, decider ``rule:<name>``), or an
    unmatched low/medium action meets the default policy. Everything else is
    pending in a queue with ``due_at`` from the SLA and a snapshot of the
    queue's escalation matrix. Unmatched high/critical always asks a human.

    Safe under concurrent retries: the unique (agent, idempotency_key) decides.
    Raises TooManyPending, creating and auditing nothing, when the request would
    be pending and the agent already has its limit of pending requests.
    """
    if idempotency_key:
        existing = ApprovalRequest.objects.filter(agent=agent, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    now = now or timezone.now()
    req = ApprovalRequest(
        agent=agent, action=new.action, arguments=new.arguments, risk=new.risk,
        arguments_digest=arguments_digest(new.action, new.arguments), summary=new.summary,
        trace_id=new.trace_id or "", span_id=new.span_id or "", resource=new.resource or "",
        prompt_name=new.prompt_name or "", prompt_version=str(new.prompt_version or ""), context=new.context,
        timeout_s=new.timeout_s, idempotency_key=idempotency_key or None, created_at=now,
        expires_at=now + timedelta(seconds=new.timeout_s) if new.timeout_s else None,
    )
    try:
        with transaction.atomic():
            _route(req, agent=agent, now=now)
            # Issue 5: a busy resource holds (or, first-wins, rejects) the later request. Locks the resource.
            conflict = conflicts.detect(req, now=now)
            if conflict is not None:
                conflicts.mark_new(req, conflict, now=now)
            if req.status == Status.PENDING:
                _check_pending_limit(agent)
            req.save()
            if conflict is not None:
                conflicts.after_create(req, conflict, now=now)
            if req.status == Status.PENDING:
                audit.record(actor=agent, action="approval.requested", target=req, at=now,
                             after={"action": req.action, "risk": req.risk, "queue": req.queue.name,
                                    "rule": req.matched_rule.name if req.matched_rule else None,
                                    "digest": req.arguments_digest})
                live.push_request_created_on_commit(req.pk, req.queue_id)
            else:
                audit.record(actor=req.decider, action="approval.auto_decided", target=req, at=now,
                             after={"status": req.status, "reason": req.reason, "agent": agent.name,
                                    "action": req.action, "risk": req.risk})
    except IntegrityError:
        if not idempotency_key:
            raise
        # A concurrent retry with the same key won; give back its request.
        return ApprovalRequest.objects.get(agent=agent, idempotency_key=idempotency_key), False
    return req, True


def _check_pending_limit(agent) -> None:
    """Raise TooManyPending when ``agent`` has its limit of pending requests. Must run in a transaction.

    On PostgreSQL a per-agent advisory lock, held until commit, makes concurrent creates
    count one after another, so they cannot together pass the limit. Lock order: after the
    resource lock (conflicts.detect), before the audit log's; nothing else takes this lock.
    """
    limit = settings.APPROVALS_MAX_PENDING_PER_AGENT
    if limit <= 0:
        return
    if connection.vendor == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"approvals.pending:{agent.pk}".encode()).digest()[:8], "big",
                             signed=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
    if ApprovalRequest.objects.filter(agent=agent, status=Status.PENDING)[:limit].count() >= limit:
        raise TooManyPending(limit)


def routing_outcome(req: ApprovalRequest, *, agent) -> tuple[str, GuardianRule | None]:
    """(allow/deny/ask, the matching rule or None) for the request as the rules stand now."""
    rule = rule_engine.first_matching_rule(agent_id=agent.pk, action=req.action, risk=req.risk,
                                           arguments=req.arguments)
    outcome = rule.outcome if rule else rule_engine.unmatched_outcome(req.risk)
    # traces.watchers: an incident's playbook may hold every action of this agent for a human until cleared.
    from traces.watchers.services import agent_requires_human

    if outcome == Outcome.ALLOW and agent_requires_human(agent.pk):
        outcome = Outcome.ASK
    return outcome, rule


def queue_for(rule: GuardianRule | None) -> Queue:
    return rule.queue if rule and rule.queue_id else default_queue()


def enqueue(req: ApprovalRequest, *, queue: Queue, rule: GuardianRule | None, now: datetime) -> None:
    """Make the (unsaved) request pending in ``queue``: due time, approvals needed, escalation from ``now``."""
    req.status = Status.PENDING
    req.queue = queue
    req.due_at = now + timedelta(minutes=sla_minutes(queue.pk, req.risk))
    sla_required = SlaPolicy.objects.filter(queue=queue, risk=req.risk).values_list(
        "required_approvals", flat=True).first() or 1
    req.required_approvals = max(sla_required, rule.required_approvals if rule else 1)
    req.escalation_snapshot = matrix_snapshot(queue)
    req.breach_action = req.escalation_snapshot.get("breach_action") or req.breach_action
    start_escalation(req, at=now)


def undo_decision(req: ApprovalRequest) -> None:
    """Take back an unsaved at-once decision (a conflict holds the request instead)."""
    req.status, req.decider, req.reason, req.decided_at = Status.PENDING, "", "", None
    req.final_arguments, req.final_digest = None, ""


def _route(req: ApprovalRequest, *, agent, now: datetime) -> None:
    if agent.is_paused:
        why = f"paused: {agent.paused_reason}" if agent.paused_reason else "paused: the agent is paused"
        _decide_now(req, status=Status.REJECTED, decider=PAUSED_DECIDER, reason=why, now=now)
        return
    outcome, rule = routing_outcome(req, agent=agent)
    req.matched_rule = rule
    if outcome == Outcome.DENY:
        _decide_now(req, status=Status.REJECTED, decider=f"rule:{rule.name}",
                    reason=f"denied by rule {rule.name}", now=now)
    elif outcome == Outcome.ALLOW:
        if rule:
            _decide_now(req, status=Status.APPROVED, decider=f"rule:{rule.name}",
                        reason=f"allowed by rule {rule.name}", now=now)
        else:
            _decide_now(req, status=Status.APPROVED, decider=DEFAULT_ALLOW_DECIDER,
                        reason=f"no rule matched; {req.risk} risk actions are allowed by default", now=now)
    else:
        enqueue(req, queue=queue_for(rule), rule=rule, now=now)
