"""Conflicts: two pending or running actions on the same ``resource``; the later one waits.

A request is *active* on its resource while it is pending, or approved and not
yet executed for at most ``APPROVALS_CONFLICT_RUNNING_S`` seconds after its
decision (default 600): an agent that never reports its execution must not hold
a record forever. A new request whose resource has an active request is marked
``conflict_with`` the *holder* (the earliest active request not itself held),
and its queue's ``conflict_rule`` arbitrates:

- ``first_wins``: the later one is rejected at once, reason
  ``conflict: #N holds <resource>``.
- ``higher_risk_waits``: the higher-risk one waits (ties: the later one) until
  the other finishes; a lower-risk newcomer goes first and a still-undecided
  holder waits for it. A running holder is never made to wait.
- ``ask_human`` (default): the later one is held until a reviewer lets it go
  first, lets the other go first, or rejects it; if the other finishes first,
  the held one is released.

A held or waiting request stays ``pending`` for the agent (the API adds a
``conflict`` object) and cannot be approved until released. When a request
finishes (rejected, expired, execution reported, or running past the bound),
the requests waiting on it are released in id order: the first re-enters
routing (a rule may approve it at once; otherwise its queue decides it), the
later ones wait on it in turn.

Race-free on PostgreSQL: detection, release and arbitration take a
transaction-scoped advisory lock on a hash of the resource, so of two agents
creating requests on one resource at once exactly one is held. SQLite (the
embedded mode) serializes writers anyway.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from approvals import live
from approvals.models import (
    CONFLICT_WAITING_STATES,
    RISK_RANK,
    ApprovalRequest,
    Arbitration,
    ConflictRule,
    ConflictState,
    Outcome,
    Queue,
    Status,
)
from approvals.services.decide import ApprovalError, InvalidDecision, NotReviewer, may_decide
from console import audit

DEFAULT_RUNNING_S = 600
CONFLICT_DECIDER = "system:conflict"
HOLD, WAIT, FIRST, REJECT = "hold", "wait", "first", "reject"


class HeldForConflict(InvalidDecision):
    """The request is held by a conflict; arbitrate it (or reject it) first."""


class AlreadyArbitrated(ApprovalError):
    """The conflict is no longer held for a reviewer."""

    def default_message(self) -> str:
        req = self.request
        if req.arbitrated_by_id:
            return (f"Already arbitrated by {req.arbitrated_by.get_username()}: "
                    f"{req.get_arbitration_display()}.")
        if not req.is_pending:
            return f"No longer held: the request is {req.status}."
        state = req.get_conflict_state_display() if req.conflict_state else "not in conflict"
        return f"No longer held for a reviewer ({state})."


class CannotGoFirst(ApprovalError):
    """The other request is already approved and running; this one can only wait or be rejected."""


CHOICES = {
    "this_first": "Let this one go first",
    "other_first": "Let the other go first",
    "reject": "Reject this one",
}


@dataclass
class Conflict:
    holder: ApprovalRequest
    rule: str
    verdict: str  # hold, wait, first (the newcomer goes first) or reject


# --- reads ---------------------------------------------------------------------------------------


def running_seconds() -> int:
    return int(getattr(settings, "APPROVALS_CONFLICT_RUNNING_S", DEFAULT_RUNNING_S))


def active_q(now: datetime) -> Q:
    """Pending, or approved and not executed within the running bound."""
    cutoff = now - timedelta(seconds=running_seconds())
    return Q(status=Status.PENDING) | Q(status=Status.APPROVED, executed_at__isnull=True, decided_at__gte=cutoff)


def is_active(req: ApprovalRequest, *, now: datetime) -> bool:
    if req.status == Status.PENDING:
        return True
    cutoff = now - timedelta(seconds=running_seconds())
    return (req.status == Status.APPROVED and req.executed_at is None and req.decided_at is not None
            and req.decided_at >= cutoff)


def holder_of(resource: str, *, now: datetime, exclude_pk: int | None = None) -> ApprovalRequest | None:
    """The request that has ``resource`` now: the earliest active one not held; else the earliest held one."""
    qs = ApprovalRequest.objects.filter(active_q(now), resource=resource).select_related("queue")
    if exclude_pk is not None:
        qs = qs.exclude(pk=exclude_pk)
    free = qs.exclude(status=Status.PENDING, conflict_state__in=CONFLICT_WAITING_STATES).order_by("pk").first()
    return free or qs.order_by("pk").first()


def waiting_on(req: ApprovalRequest):
    """Requests held or waiting because of ``req``."""
    return ApprovalRequest.objects.filter(conflict_with=req, status=Status.PENDING,
                                          conflict_state__in=CONFLICT_WAITING_STATES).order_by("pk")


def conflict_info(req: ApprovalRequest) -> dict | None:
    """What the agent sees: ``{"with", "state", "resource", "rule", "arbitration"}``, or None."""
    if not req.conflict_state:
        return None
    return {"with": req.conflict_with_id, "state": req.conflict_shown_state, "resource": req.resource,
            "rule": req.conflict_rule or None, "arbitration": req.arbitration or None}


def lock_resource(resource: str, *, wait: bool = True) -> bool:
    """Serialize conflict work on ``resource`` until the transaction ends; False if ``wait`` is off and another
    transaction has it. PostgreSQL only (SQLite serializes writers anyway).

    Lock order: every path that waits for this lock takes it before any row
    lock; paths that already hold rows (a decision, an execution report) only
    try it, and leave a release they could not do to ``release_stale_holds``.
    """
    if connection.vendor != "postgresql":
        return True
    key = int.from_bytes(hashlib.sha256(f"approvals.resource:{resource}".encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
            return True
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [key])
        return bool(cursor.fetchone()[0])


def key_share(pk: int, *, wait: bool = True) -> bool:
    """Take ``FOR KEY SHARE`` on a request row another row will point at (``conflict_with``).

    Django's foreign keys are checked at commit; taken then, after the audit
    log's lock, that check could wait for a decision that holds the row and
    waits for the audit lock. Taken here, first, it cannot. False if the row is
    locked and ``wait`` is off (or gone).
    """
    if connection.vendor != "postgresql":
        return True
    table = ApprovalRequest._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT id FROM "{table}" WHERE id = %s FOR KEY SHARE{"" if wait else " SKIP LOCKED"}', [pk])
        return cursor.fetchone() is not None


def _lock_row(pk: int, *, wait: bool) -> bool:
    """``FOR UPDATE`` on a request this transaction will change; False if it is busy and ``wait`` is off."""
    return bool(list(ApprovalRequest.objects.select_for_update(skip_locked=not wait).filter(pk=pk)
                     .values_list("pk", flat=True)))


def _rule_of_queue(queue: Queue | None) -> str:
    return queue.conflict_rule if queue is not None and queue.conflict_rule else ConflictRule.ASK_HUMAN


# --- detection (called by create_request inside its transaction) ----------------------------------


def detect(req: ApprovalRequest, *, now: datetime) -> Conflict | None:
    """The conflict of the new, unsaved ``req``, or None. Must run in a transaction: locks the resource.

    A request rejected at once never runs, so it conflicts with nothing. For a
    newcomer that goes first the holder is already marked waiting here (a
    conditional UPDATE: if the holder was approved meanwhile, the newcomer waits).
    """
    if not req.resource or req.status == Status.REJECTED:
        return None
    lock_resource(req.resource)
    holder = _stable_holder(req.resource, now=now)
    if holder is None:
        return None
    queue = req.queue
    if queue is None:
        from approvals.services.create import queue_for

        queue = queue_for(req.matched_rule)
    rule = _rule_of_queue(queue)
    if rule == ConflictRule.FIRST_WINS:
        return Conflict(holder, rule, REJECT)
    if rule == ConflictRule.ASK_HUMAN:
        return Conflict(holder, rule, HOLD)
    if RISK_RANK[req.risk] < RISK_RANK[holder.risk] and _make_wait(holder, rule=rule):
        return Conflict(holder, rule, FIRST)
    return Conflict(holder, rule, WAIT)


def _stable_holder(resource: str, *, now: datetime) -> ApprovalRequest | None:
    """The holder, with its row key-share locked: a decision in flight on it finishes first, then we look again."""
    holder = holder_of(resource, now=now)
    for _attempt in range(5):
        if holder is None:
            return None
        key_share(holder.pk)
        again = holder_of(resource, now=now)
        if again is not None and again.pk == holder.pk:
            return again
        holder = again
    if holder is not None:
        key_share(holder.pk)  # still moving after five looks: lock the last one seen, as every other path does
    return holder


def _make_wait(other: ApprovalRequest, *, rule: str, arbitration: str = Arbitration.YIELDED,
               behind: ApprovalRequest | None = None) -> bool:
    """Mark a pending, not-held request as waiting, unless a decision has its row right now (never waits for it)."""
    qs = ApprovalRequest.objects.filter(pk=other.pk, status=Status.PENDING).exclude(
        conflict_state__in=CONFLICT_WAITING_STATES)
    if not list(qs.select_for_update(skip_locked=True).values_list("pk", flat=True)):
        return False
    return bool(qs.update(conflict_state=ConflictState.WAITING, conflict_rule=rule, arbitration=arbitration,
                        conflict_with=behind))


def mark_new(req: ApprovalRequest, conflict: Conflict, *, now: datetime) -> None:
    """Set the conflict fields of the unsaved request; first-wins rejects it, hold/wait keep it pending in a queue."""
    from approvals.services import create

    req.conflict_with, req.conflict_rule = conflict.holder, conflict.rule
    holder = conflict.holder
    if conflict.verdict == REJECT:
        req.status, req.decider, req.decided_at = Status.REJECTED, CONFLICT_DECIDER, now
        req.reason = f"conflict: #{holder.pk} holds {req.resource}"[:500]
        req.final_arguments, req.final_digest, req.next_escalation_at = None, "", None
        req.conflict_state, req.arbitration = ConflictState.RESOLVED, Arbitration.FIRST_WINS
        return
    if conflict.verdict == FIRST:
        req.conflict_state, req.arbitration = ConflictState.RESOLVED, Arbitration.LOWER_RISK_FIRST
        return
    if req.status != Status.PENDING:  # allowed at once by a rule, but it would run on a busy resource
        create.undo_decision(req)
        create.enqueue(req, queue=create.queue_for(req.matched_rule), rule=req.matched_rule, now=now)
    if conflict.verdict == WAIT:
        req.conflict_state, req.arbitration = ConflictState.WAITING, Arbitration.HIGHER_RISK_WAITS
    else:
        req.conflict_state = ConflictState.HELD


def after_create(req: ApprovalRequest, conflict: Conflict, *, now: datetime) -> None:
    """Point a holder that waits for the newcomer at it; audit the conflict; push both cards."""
    holder = conflict.holder
    if conflict.verdict == FIRST:
        ApprovalRequest.objects.filter(pk=holder.pk).update(conflict_with=req)
        live.push_request_changed_on_commit(holder.pk, holder.queue_id)
    audit.record(actor=CONFLICT_DECIDER, action="approval.conflict_detected", target=req, at=now,
                 after={"resource": req.resource, "with": holder.pk, "rule": conflict.rule,
                        "outcome": conflict.verdict, "state": req.conflict_state})


# --- approval guard (called by decide_request inside its transaction) -----------------------------


def refuse_approval_if_held(req: ApprovalRequest, verdict: str) -> None:
    """Raise HeldForConflict when ``req`` (re-read after the decision's UPDATE) is held and the verdict approves.

    Runs after the conditional UPDATE in the same transaction, so a conflict
    marked concurrently is seen (the row lock orders the two) and the approval
    rolls back. A reject is always allowed.
    """
    if verdict != "reject" and req.conflict_state in CONFLICT_WAITING_STATES:
        other = f"#{req.conflict_with_id}" if req.conflict_with_id else "another request"
        raise HeldForConflict(req, f"Held: {other} also acts on {req.resource}. Arbitrate the conflict "
                                   "(or reject this request) first.")


# --- release --------------------------------------------------------------------------------------


def release_after_finish(req: ApprovalRequest, *, now: datetime | None = None) -> int:
    """``req`` finished (rejected, expired, executed): release or re-point what waited on it. In its transaction."""
    if not req.resource or req.status == Status.PENDING:
        return 0
    now = now or req.executed_at or req.decided_at or timezone.now()
    if is_active(req, now=now):
        return 0  # approved and not yet executed: still running
    if not lock_resource(req.resource, wait=False):
        return 0  # busy: the sweep's release_stale_holds releases them in a moment
    # The caller holds row and audit locks already: never wait for another row (the sweep does what is skipped).
    return sum(_release_or_repoint(w, now=now, wait=False) for w in list(waiting_on(req)))


def _release_or_repoint(req: ApprovalRequest, *, now: datetime, wait: bool = True) -> int:
    """Wait on the resource's new holder if there is one; else release ``req`` into routing. 1 if released.

    Row locks come first (before any audit entry); with ``wait`` off a busy row is skipped.
    """
    if not _lock_row(req.pk, wait=wait):
        return 0
    holder = holder_of(req.resource, now=now, exclude_pk=req.pk)
    if holder is not None and not holder.is_held:
        if holder.pk != req.conflict_with_id:
            if not key_share(holder.pk, wait=wait):
                return 0
            ApprovalRequest.objects.filter(pk=req.pk).update(conflict_with=holder)
            audit.record(actor=CONFLICT_DECIDER, action="approval.conflict_repointed", target=req, at=now,
                         before={"with": req.conflict_with_id}, after={"with": holder.pk})
            live.push_request_changed_on_commit(req.pk, req.queue_id)
        return 0
    won = (ApprovalRequest.objects.filter(pk=req.pk, status=Status.PENDING,
                                          conflict_state__in=CONFLICT_WAITING_STATES)
           .update(conflict_state=ConflictState.RESOLVED, arbitration=req.arbitration or Arbitration.RELEASED))
    if not won:
        return 0
    audit.record(actor=CONFLICT_DECIDER, action="approval.conflict_released", target=req, at=now,
                 before={"state": req.conflict_state, "with": req.conflict_with_id},
                 after={"state": ConflictState.RESOLVED})
    _reenter_routing(req.pk, now=now)
    return 1


def _reenter_routing(pk: int, *, now: datetime) -> None:
    """A released request meets the rules again: allow or deny decide it now; ask leaves it to its queue."""
    from approvals.services.create import DEFAULT_ALLOW_DECIDER, PAUSED_DECIDER, routing_outcome

    req = ApprovalRequest.objects.select_related("agent", "queue").get(pk=pk)
    if req.agent.is_paused:
        outcome, decider, reason = Outcome.DENY, PAUSED_DECIDER, "paused: the agent is paused"
    else:
        outcome, rule = routing_outcome(req, agent=req.agent)
        name = f"rule:{rule.name}" if rule else DEFAULT_ALLOW_DECIDER
        decider = name
        reason = (f"{'allowed' if outcome == Outcome.ALLOW else 'denied'} by "
                  f"{'rule ' + rule.name if rule else 'the default policy'} once the conflict was released")
    if outcome == Outcome.ASK:
        live.push_request_changed_on_commit(req.pk, req.queue_id)
        return
    status = Status.APPROVED if outcome == Outcome.ALLOW else Status.REJECTED
    approved = status == Status.APPROVED
    won = ApprovalRequest.objects.filter(pk=pk, status=Status.PENDING).update(
        status=status, decider=decider, reason=reason[:500], decided_at=now,
        final_arguments=req.arguments if approved else None, final_digest=req.arguments_digest if approved else "",
        next_escalation_at=None, claimed_by=None, claimed_until=None)
    if won:
        audit.record(actor=decider, action="approval.auto_decided", target=req, at=now,
                     before={"status": Status.PENDING}, after={"status": status, "reason": reason})
        live.push_request_changed_on_commit(req.pk, req.queue_id)
        live.notify_waiters_on_commit(req.pk, status)


def release_stale_holds(*, now: datetime, limit: int = 200) -> int:
    """Release requests whose blocker is no longer active (finished by a path without a hook, or running
    past the bound). Idempotent; the sweep runs it every tick."""
    # Skip rightly held rows in SQL: with a Python filter, a batch full of them hid any release past it.
    active_blockers = ApprovalRequest.objects.filter(active_q(now)).values("pk")
    rows = list(ApprovalRequest.objects.filter(status=Status.PENDING, conflict_state__in=CONFLICT_WAITING_STATES)
                .exclude(conflict_with__in=active_blockers)
                .select_related("conflict_with").order_by("pk")[:limit])
    released = 0
    for req in rows:
        blocker = req.conflict_with
        if blocker is not None and is_active(blocker, now=now):
            continue
        with transaction.atomic():
            lock_resource(req.resource)
            fresh = ApprovalRequest.objects.filter(pk=req.pk).select_related("conflict_with").first()
            if fresh is None or not fresh.is_held:
                continue
            if fresh.conflict_with is not None and is_active(fresh.conflict_with, now=now):
                continue
            released += _release_or_repoint(fresh, now=now)
    return released


# --- a reviewer arbitrates -------------------------------------------------------------------------


def may_arbitrate(user, req: ApprovalRequest) -> bool:
    """Who may decide the held request (its queue's reviewers, Admins) may arbitrate its conflict."""
    return may_decide(user, req)


def arbitrate_conflict(*, request_id: int, reviewer, choice: str, reason: str,
                       now: datetime | None = None) -> ApprovalRequest:
    """Resolve a held request's conflict: ``this_first``, ``other_first`` or ``reject``, with a reason.

    Exactly once: a conditional UPDATE on the held state wins; a second
    arbitration raises AlreadyArbitrated. ``this_first`` makes the other
    request wait (CannotGoFirst when it already runs) and sends this one into
    routing. Audited as ``approval.conflict_arbitrated``.
    """
    now = now or timezone.now()
    reason = (reason or "").strip()
    if choice not in CHOICES:
        raise InvalidDecision(None, f"choice must be one of {', '.join(CHOICES)}")
    if not reason:
        raise InvalidDecision(None, "reason: say why you arbitrate this way")
    req = ApprovalRequest.objects.select_related("queue", "conflict_with").get(pk=request_id)
    if not may_arbitrate(reviewer, req):
        raise NotReviewer(req)
    with transaction.atomic():
        if req.resource:
            lock_resource(req.resource)
            # Under the lock: a release committed meanwhile may have re-pointed it to another holder.
            req = ApprovalRequest.objects.select_related("queue", "conflict_with").get(pk=request_id)
        held = ApprovalRequest.objects.filter(pk=request_id, status=Status.PENDING,
                                              conflict_state=ConflictState.HELD)
        other = ApprovalRequest.objects.filter(pk=req.conflict_with_id).first() if req.conflict_with_id else None
        stamp = {"arbitrated_by": reviewer, "arbitrated_at": now, "arbitration_reason": reason[:500]}
        if choice == "reject":
            text = f"conflict: #{req.conflict_with_id} holds {req.resource} — {reason}"
            won = held.update(status=Status.REJECTED, decided_by=reviewer, decider=reviewer.get_username(),
                              decided_at=now, reason=text[:500], conflict_state=ConflictState.RESOLVED,
                              arbitration=Arbitration.REJECTED, next_escalation_at=None, claimed_by=None,
                              claimed_until=None, **stamp)
        elif choice == "other_first":
            won = held.update(conflict_state=ConflictState.WAITING, arbitration=Arbitration.OTHER_FIRST, **stamp)
        else:
            won = held.update(conflict_state=ConflictState.RESOLVED, arbitration=Arbitration.THIS_FIRST, **stamp)
        req = ApprovalRequest.objects.select_related("queue", "arbitrated_by", "conflict_with").get(pk=request_id)
        if not won:
            raise AlreadyArbitrated(req)
        if choice == "this_first" and other is not None and is_active(other, now=now):
            if other.status != Status.PENDING or not _make_wait(other, rule=ConflictRule.ASK_HUMAN, behind=req):
                why = ("is already approved and running" if other.status != Status.PENDING
                       else "is being decided right now")
                raise CannotGoFirst(req, f"#{other.pk} {why}; this one can only wait or be rejected.")
            audit.record(actor=reviewer, action="approval.conflict_yielded", target=other, at=now,
                         after={"waits_for": req.pk, "reason": reason})
            live.push_request_changed_on_commit(other.pk, other.queue_id)
        audit.record(actor=reviewer, action="approval.conflict_arbitrated", target=req, at=now,
                     before={"state": ConflictState.HELD},
                     after={"choice": choice, "with": req.conflict_with_id, "reason": reason,
                            "state": req.conflict_state, "status": req.status})
        live.push_request_changed_on_commit(req.pk, req.queue_id)
        if choice == "reject":
            live.notify_waiters_on_commit(req.pk, req.status)
            release_after_finish(req, now=now)
        elif choice == "this_first":
            _reenter_routing(req.pk, now=now)
        elif other is None or not is_active(other, now=now):
            _release_or_repoint(req, now=now, wait=False)  # the other finished meanwhile: nothing to wait for
    return ApprovalRequest.objects.select_related("queue", "arbitrated_by", "conflict_with").get(pk=request_id)


def conflicts_count() -> int:
    """Requests held or waiting because of a conflict now (the overview shows it)."""
    return ApprovalRequest.objects.filter(status=Status.PENDING, conflict_state__in=CONFLICT_WAITING_STATES).count()


def set_conflict_rule(*, queue_id: int, rule: str, actor) -> Queue:
    """How ``queue`` arbitrates conflicts from now on (ValidationError naming ``conflict_rule``); audited."""
    from django.core.exceptions import ValidationError

    if rule not in ConflictRule.values:
        raise ValidationError({"conflict_rule": f"Choose one of {', '.join(ConflictRule.values)}."})
    with transaction.atomic():
        # NO KEY: a request committing into this queue checks its foreign key (FOR KEY SHARE) after taking the
        # audit lock we are about to wait for; a plain FOR UPDATE here deadlocked with it.
        queue = Queue.objects.select_for_update(no_key=True).get(pk=queue_id)
        before = queue.conflict_rule
        if before == rule:
            return queue
        queue.conflict_rule = rule
        queue.save(update_fields=["conflict_rule"])
        audit.record(actor=actor, action="queue.conflict_rule_changed", target=queue,
                     before={"conflict_rule": before}, after={"conflict_rule": rule})
    return queue
