"""Claims, decisions, expiry and the execution report: each a conditional UPDATE that arbitrates."""

from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F, Q
from django.http import Http404
from django.utils import timezone

from agents import services as agent_services
from approvals import live
from approvals.models import (
    ApprovalRequest,
    Decision,
    ReasonCategory,
    Status,
    Verdict,
    arguments_digest,
    canonical_json,
    escalation_steps,
)
from console import audit, metrics
from console.models import AuditEntry
from console.roles import Role, has_role

CLAIM_MINUTES = 10


class ApprovalError(Exception):
    """Base of the approvals domain errors; ``request`` is the row as it is now."""

    def __init__(self, request: ApprovalRequest | None = None, message: str = ""):
        self.request = request
        super().__init__(message or self.default_message())

    def default_message(self) -> str:
        return self.__doc__.strip().splitlines()[0] if self.__doc__ else "approval error"


class AlreadyDecided(ApprovalError):
    """Already decided."""

    def default_message(self) -> str:
        req = self.request
        who = req.decider or (req.decided_by.get_username() if req.decided_by_id else "the system")
        if req.status == Status.APPROVED and req.required_approvals > 1:
            names = [d.reviewer.get_username() for d in approvals_of(req) if d.reviewer_id]
            who = " and ".join(names) or who
        return f"Already {req.status} by {who}."

    @property
    def decided_by(self) -> str:
        return self.request.decider


class AlreadyClaimed(ApprovalError):
    def default_message(self) -> str:
        who = self.request.claimed_by.get_username() if self.request.claimed_by_id else "someone"
        return f"Already claimed by {who} until {self.request.claimed_until:%H:%M:%S} UTC."


class NotClaimant(ApprovalError):
    """You do not hold the claim on this request."""


class NotReviewer(ApprovalError, PermissionDenied):
    """Only a reviewer of this request's queue (or an Admin) may do this."""


class InvalidDecision(ApprovalError, ValueError):
    """The decision is incomplete."""


class NotApproved(ApprovalError):
    """The request was not approved; there is nothing to execute."""


class AlreadyExecuted(ApprovalError):
    """Execution was already reported."""


class DigestMismatch(ApprovalError):
    """The reported digest is not the digest of the approved arguments."""


class SameReviewer(ApprovalError):
    """You already decided this request; a different reviewer must give the other approval."""

    def default_message(self) -> str:
        return ("You already approved this request. It needs a second approval from a different reviewer; "
                "you cannot give both.")


class ArgumentsChanged(ApprovalError):
    """The arguments to approve changed since you looked; review them again."""

    def default_message(self) -> str:
        first = approvals_of(self.request)[:1] if self.request else []
        who = first[0].reviewer.get_username() if first and first[0].reviewer_id else "the first approver"
        return (f"The arguments to approve changed since you loaded this request: {who} approved them with "
                "edits. Review the edited arguments and decide again.")


class EditAfterApproval(ApprovalError):
    """The second approval cannot change the arguments the first approver approved."""

    def default_message(self) -> str:
        return ("The first approver approved exactly these arguments; the second approval cannot change them. "
                "Approve them as they are, or reject (the agent may ask again with other arguments).")


APPROVING = (Verdict.APPROVE, Verdict.MODIFY)


def approvals_of(req: ApprovalRequest) -> list[Decision]:
    """The approving decisions on ``req``, oldest first (at most ``required_approvals``)."""
    return list(req.decisions.filter(verdict__in=APPROVING).select_related("reviewer").order_by("created_at", "id"))


def proposed_arguments(req: ApprovalRequest, approvals: list[Decision] | None = None):
    """What the next approver approves: a previous approver's edit when there is one, else the request's.

    Four eyes and edits: the first approver may edit; the second approves (or
    rejects) exactly the first approver's arguments, so the final digest is
    the one both approved.
    """
    approvals = approvals_of(req) if approvals is None else approvals
    for decision in reversed(approvals):
        if decision.verdict == Verdict.MODIFY and decision.arguments is not None:
            return decision.arguments
    return req.arguments


def may_decide(user, req: ApprovalRequest) -> bool:
    """Admins, and Reviewers who are members of the request's queue."""
    if has_role(user, Role.ADMIN):
        return True
    return bool(req.queue_id and has_role(user, Role.REVIEWER) and req.queue.members.filter(pk=user.pk).exists())


def get_request_for(user, pk: int) -> ApprovalRequest:
    """The request if ``user`` may see it; Http404 otherwise (also for queues they do not review)."""
    req = (ApprovalRequest.objects.visible_to(user).select_related("agent", "queue", "matched_rule",
                                                                   "claimed_by", "decided_by")
           .filter(pk=pk).first())
    if req is None:
        raise Http404("No such approval request.")
    return req


def _load(request_id: int) -> ApprovalRequest:
    return ApprovalRequest.objects.select_related("agent", "queue", "decided_by", "claimed_by").get(pk=request_id)


def decide_request(*, request_id: int, reviewer, verdict: str, reason: str = "", reason_category: str = "",
                   arguments: dict | None = None, digest: str | None = None,
                   now: datetime | None = None) -> ApprovalRequest:
    """Record a reviewer's decision; exactly one final decision ever wins.

    Four eyes: a request with ``required_approvals`` 2 stays pending after the
    first approval (a Decision row, audited, pushed live) and is approved by
    the second approval from a different reviewer; one reject ends it at once.
    The first approver may edit (``modify``); the second approves exactly those
    arguments (an edit then raises EditAfterApproval). ``digest``, when given,
    must be the digest of the arguments about to be approved (ArgumentsChanged
    otherwise), so a stale page never approves arguments its reviewer did not see.

    Raises AlreadyDecided (naming the winner), SameReviewer, NotReviewer,
    InvalidDecision. Safe under concurrency: the request row is locked
    (``SELECT ... FOR UPDATE``) for the whole decision, and the final state
    change is still a conditional UPDATE on ``status = pending``.
    """
    now = now or timezone.now()
    if verdict not in Verdict.values:
        raise InvalidDecision(None, f"decision must be one of {', '.join(Verdict.values)}")
    if verdict == Verdict.MODIFY and not isinstance(arguments, dict):
        raise InvalidDecision(None, "a modify decision needs the edited arguments (a JSON object)")
    if reason_category and reason_category not in ReasonCategory.values:
        raise InvalidDecision(None, f"reason_category must be one of {', '.join(ReasonCategory.values)}")
    req = _load(request_id)
    if not may_decide(reviewer, req):
        raise NotReviewer(req)
    with transaction.atomic():
        # The lock serialises every decision on this request: two approvals at once count to two, never to a
        # pair of "first" approvals, and a reject racing an approval is either first or told it lost.
        list(ApprovalRequest.objects.select_for_update().filter(pk=request_id).values_list("pk", flat=True))
        req = _load(request_id)
        if req.status != Status.PENDING:
            raise AlreadyDecided(req)
        from approvals.services.conflicts import refuse_approval_if_held  # issue 5 (conflicts): a held request

        refuse_approval_if_held(req, verdict)  # is not approved (reject is fine); the row lock orders it
        if req.decisions.filter(reviewer=reviewer).exists():
            raise SameReviewer(req)
        approvals = approvals_of(req)
        proposal = proposed_arguments(req, approvals)
        if verdict in APPROVING:
            if digest and digest != arguments_digest(req.action, proposal):
                raise ArgumentsChanged(req)
            if verdict == Verdict.MODIFY and approvals and canonical_json(arguments) != canonical_json(proposal):
                raise EditAfterApproval(req)
        decision = Decision.objects.create(
            request=req, reviewer=reviewer, verdict=verdict, reason=reason or "", reason_category=reason_category or "",
            arguments=arguments if verdict == Verdict.MODIFY else None, created_at=now)
        approved_arguments = arguments if verdict == Verdict.MODIFY else proposal
        if verdict in APPROVING and len(approvals) + 1 < req.required_approvals:
            return _record_partial_approval(req, decision, approved_arguments, now=now)
        status = Status.from_verdict(verdict)
        final = approved_arguments if status == Status.APPROVED else None
        won = ApprovalRequest.objects.filter(pk=request_id, status=Status.PENDING).update(
            status=status, decided_by=reviewer, decider=reviewer.get_username(), decided_at=now,
            reason=(reason or "")[:500], final_arguments=final,
            final_digest=arguments_digest(req.action, final) if final is not None else "",
            next_escalation_at=None, claimed_by=None, claimed_until=None,
        )
        if not won:  # unreachable while the row lock holds; kept so the invariant never rests on it alone
            raise AlreadyDecided(_load(request_id))
        req = _load(request_id)
        audit.record(actor=reviewer, action="approval.decided", target=req, at=now,
                     before={"status": Status.PENDING},
                     after={"status": status, "verdict": verdict, "reason_category": reason_category,
                            "reason": reason, "edited": req.final_arguments not in (None, req.arguments),
                            "digest": req.final_digest, "approvals": len(approvals) + (status == Status.APPROVED),
                            "required_approvals": req.required_approvals})
        # The decision is feedback on the prompt version that produced the action (no-op without one).
        agent_services.record_feedback(request=req)
        _observe_time_to_decision(req, now)
        _after_change(req)
    return req


def _record_partial_approval(req: ApprovalRequest, decision: Decision, approved_arguments, *,
                             now: datetime) -> ApprovalRequest:
    """One approval of several: the request stays pending; the approver's claim (if any) is let go."""
    ApprovalRequest.objects.filter(pk=req.pk, claimed_by=decision.reviewer).update(claimed_by=None,
                                                                                    claimed_until=None)
    req = _load(req.pk)
    given = len(approvals_of(req))
    audit.record(actor=decision.reviewer, action="approval.approval_given", target=req, at=now,
                 after={"status": Status.PENDING, "verdict": decision.verdict,
                        "reason_category": decision.reason_category, "reason": decision.reason,
                        "edited": decision.verdict == Verdict.MODIFY,
                        "digest": arguments_digest(req.action, approved_arguments),
                        "approvals": given, "required_approvals": req.required_approvals})
    agent_services.record_feedback(request=req)
    _after_change(req)
    return req


def _observe_time_to_decision(req: ApprovalRequest, now: datetime) -> None:
    queue = req.queue.name if req.queue_id else ""
    seconds = max((now - req.created_at).total_seconds(), 0.0)
    transaction.on_commit(lambda: metrics.DECISION_SECONDS.labels(queue=queue, risk=req.risk).observe(seconds))


def _after_change(req: ApprovalRequest) -> None:
    if req.status != Status.PENDING:
        live.notify_waiters_on_commit(req.pk, req.status)  # first: an agent is waiting; pages can wait a moment
    live.push_request_changed_on_commit(req.pk, req.queue_id)
    if req.status != Status.PENDING:
        from approvals.services.conflicts import release_after_finish  # issue 5 (conflicts): a finished request

        release_after_finish(req)  # lets the requests it held go (in this transaction; never waits for a lock)


def claim_request(*, request_id: int, reviewer, now: datetime | None = None,
                  minutes: int = CLAIM_MINUTES) -> ApprovalRequest:
    """Take (or extend your own) claim for ``minutes``; pauses escalation. Raises AlreadyClaimed/AlreadyDecided,
    and SameReviewer for a reviewer who already decided it (four eyes: their claim would only hold back the
    reminders to the reviewer who must give the other approval)."""
    now = now or timezone.now()
    req = _load(request_id)
    if not may_decide(reviewer, req):
        raise NotReviewer(req)
    free = Q(claimed_by__isnull=True) | Q(claimed_until__lte=now) | Q(claimed_by=reviewer)
    with transaction.atomic():
        # The row lock orders this against a decision in flight, so its Decision row is seen.
        list(ApprovalRequest.objects.select_for_update().filter(pk=request_id).values_list("pk", flat=True))
        if req.decisions.filter(reviewer=reviewer).exists():
            raise SameReviewer(req)
        won = ApprovalRequest.objects.filter(free, pk=request_id, status=Status.PENDING).update(
            claimed_by=reviewer, claimed_until=now + timedelta(minutes=minutes))
        req = _load(request_id)
        if not won:
            raise AlreadyDecided(req) if req.status != Status.PENDING else AlreadyClaimed(req)
        audit.record(actor=reviewer, action="approval.claimed", target=req, at=now,
                     after={"until": req.claimed_until})
        _after_change(req)
    return req


def _restart_escalation(qs, req: ApprovalRequest, *, at: datetime) -> int:
    """Drop the claim and restart the snapshot's escalation from ``at`` (a new epoch)."""
    steps = escalation_steps(req.escalation_snapshot)
    return qs.update(claimed_by=None, claimed_until=None, escalation_epoch=F("escalation_epoch") + 1,
                     escalation_started_at=at, escalation_step=0,
                     next_escalation_at=at + timedelta(minutes=steps[0][0]) if steps else None)


def release_request(*, request_id: int, reviewer, now: datetime | None = None) -> ApprovalRequest:
    """Give up your claim; escalation restarts. Raises NotClaimant."""
    now = now or timezone.now()
    req = _load(request_id)
    with transaction.atomic():
        qs = ApprovalRequest.objects.filter(pk=request_id, status=Status.PENDING, claimed_by=reviewer)
        if not _restart_escalation(qs, req, at=now):
            raise NotClaimant(req)
        req = _load(request_id)
        audit.record(actor=reviewer, action="approval.released", target=req, at=now)
        _after_change(req)
    return req


def expire_claims(*, now: datetime, limit: int = 500) -> int:
    """Claims past ``claimed_until`` lapse and escalation restarts from the moment they lapsed. Idempotent."""
    rows = list(ApprovalRequest.objects.filter(status=Status.PENDING, claimed_until__lte=now)
                .order_by("claimed_until").only("pk", "claimed_until", "escalation_snapshot", "queue_id")[:limit])
    expired = 0
    for req in rows:
        qs = ApprovalRequest.objects.filter(pk=req.pk, status=Status.PENDING, claimed_until=req.claimed_until)
        if _restart_escalation(qs, req, at=req.claimed_until):
            expired += 1
            live.push_request_changed_on_commit(req.pk, req.queue_id)
    return expired


def _finish_by_system(req_id: int, *, qs, status: str, decider: str, reason: str, now: datetime,
                      audit_action: str, extra: dict | None = None) -> bool:
    with transaction.atomic():
        won = qs.update(status=status, decider=decider, reason=reason[:500], decided_at=now,
                        next_escalation_at=None, claimed_by=None, claimed_until=None, **(extra or {}))
        if not won:
            return False
        req = _load(req_id)
        audit.record(actor=decider, action=audit_action, target=req, at=now,
                     before={"status": Status.PENDING}, after={"status": status, "reason": reason})
        _after_change(req)
    return True


def expire_overdue(*, now: datetime, limit: int = 500) -> int:
    """Pending requests past their agent's ``timeout_s`` become expired ("timeout"). Idempotent."""
    ids = list(ApprovalRequest.objects.filter(status=Status.PENDING, expires_at__lte=now)
               .order_by("expires_at").values_list("pk", flat=True)[:limit])
    done = 0
    for pk in ids:
        qs = ApprovalRequest.objects.filter(pk=pk, status=Status.PENDING)
        done += _finish_by_system(pk, qs=qs, status=Status.EXPIRED, decider="system:timeout",
                                  reason="timeout: no decision within the agent's timeout_s",
                                  now=now, audit_action="approval.expired")
    return done


def expire_pending_of_agents(*, agent_ids: list[int], decider: str, reason: str, now: datetime | None = None,
                             keep_keys: tuple[str, ...] = ()) -> int:
    """Expire every pending request of these agents, by ``decider`` (a system actor), through the
    timeout's path: audited, waiters woken, escalation stopped, held conflicts released, runs no longer
    waiting. Requests with an idempotency key in ``keep_keys`` stay. Idempotent."""
    now = now or timezone.now()
    ids = list(ApprovalRequest.objects.filter(status=Status.PENDING, agent_id__in=agent_ids)
               .exclude(idempotency_key__in=keep_keys).order_by("pk").values_list("pk", flat=True))
    done = 0
    for pk in ids:
        qs = ApprovalRequest.objects.filter(pk=pk, status=Status.PENDING)
        done += _finish_by_system(pk, qs=qs, status=Status.EXPIRED, decider=decider, reason=reason, now=now,
                                  audit_action="approval.expired")
    return done


# Refused reports of one request kept in the audit log; past this a hostile or broken agent's retries are
# still refused but no longer audited (one entry says so), so it cannot grow the log without bound.
MAX_AUDITED_REFUSALS = 10
REFUSED, REFUSALS_CAPPED = "approval.execution_refused", "approval.execution_refusals_capped"


def _refuse_execution(req: ApprovalRequest, agent, now: datetime, error: ApprovalError, digest: str | None):
    """Audit a refused execution report (an agent about to run, or that ran, what nobody approved), then raise.

    Evidence is kept, bounded: a report refused like an earlier one of the same request is not audited
    again, and after MAX_AUDITED_REFUSALS entries for the request only a final "capped" entry is written.
    """
    after = {"why": type(error).__name__, "message": str(error)[:300], "reported_digest": digest or None,
             "approved_digest": req.answer_digest if req.status == Status.APPROVED else None}
    with transaction.atomic():
        audit.lock_chain()  # the look at earlier entries and the append are one step under concurrency
        earlier = list(AuditEntry.objects.filter(target_type="approvals.approvalrequest", target_id=str(req.pk),
                                                 action__in=(REFUSED, REFUSALS_CAPPED))
                       .values_list("action", "after")[:MAX_AUDITED_REFUSALS + 1])
        if (REFUSED, after) in earlier or any(action == REFUSALS_CAPPED for action, _after in earlier):
            pass
        elif len(earlier) < MAX_AUDITED_REFUSALS:
            audit.record(actor=agent, action=REFUSED, target=req, at=now, after=after)
        else:
            audit.record(actor=agent, action=REFUSALS_CAPPED, target=req, at=now,
                         after={"limit": MAX_AUDITED_REFUSALS, "note": "later refused execution reports of this "
                                                                      "request are refused but not audited"})
    raise error


def record_execution(*, request_id: int, agent, result=None, error: str = "", digest: str | None = None,
                     arguments: dict | None = None, now: datetime | None = None) -> ApprovalRequest:
    """Record, once, that the agent ran the approved arguments. A second report raises AlreadyExecuted.

    ``digest``, when given, must be the approved (or edited) arguments' digest;
    ``arguments``, when given, must be exactly the approved ones (DigestMismatch
    otherwise). Safe under concurrent retries: the conditional UPDATE on
    ``executed_at IS NULL`` lets exactly one report through.
    """
    now = now or timezone.now()
    req = ApprovalRequest.objects.select_related("agent", "queue").filter(pk=request_id, agent=agent).first()
    if req is None:
        raise Http404("No such approval request.")
    if req.status != Status.APPROVED:
        _refuse_execution(req, agent, now, NotApproved(
            req, f"The request is {req.status}, not approved; it must not be executed."), digest)
    if digest and digest != req.answer_digest:
        _refuse_execution(req, agent, now, DigestMismatch(req), digest)
    if arguments is not None and arguments_digest(req.action, arguments) != req.answer_digest:
        _refuse_execution(req, agent, now, DigestMismatch(
            req, "The reported arguments are not the approved ones; nobody approved them."), digest)
    with transaction.atomic():
        won = ApprovalRequest.objects.filter(pk=request_id, status=Status.APPROVED, executed_at__isnull=True).update(
            executed_at=now, execution_result=result, execution_error=(error or "")[:10000])
        req = _load(request_id)
        if won:
            audit.record(actor=agent, action="approval.executed", target=req, at=now,
                         after={"ok": not error, "digest": req.answer_digest, "reported_digest": digest or None,
                                "arguments_checked": arguments is not None})
            live.push_request_changed_on_commit(req.pk, req.queue_id)
            from approvals.services.conflicts import release_after_finish  # issue 5 (conflicts): executed, so

            release_after_finish(req, now=now)  # the requests it held may go
    if not won:
        _refuse_execution(req, agent, now, AlreadyExecuted(
            req, f"Execution was already reported at {req.executed_at:%Y-%m-%d %H:%M:%S} UTC."), digest)
    return req
