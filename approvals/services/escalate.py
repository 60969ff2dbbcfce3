"""The escalation engine and matrix edits.

Each request carries a snapshot of its queue's matrix and a cursor
(``escalation_epoch``, ``escalation_step``, ``next_escalation_at``) into the
snapshot's steps. The sweep reads only due cursors through a partial index,
so 100,000 pending requests cost one index range scan, not a Python loop.
"""

from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from approvals.models import (
    ApprovalRequest,
    Delivery,
    BreachAction,
    EscalationFiring,
    EscalationLevel,
    EscalationMatrix,
    Queue,
    SlaPolicy,
    Status,
    escalation_steps,
)
from approvals.services import notify
from approvals.services.create import matrix_snapshot, start_escalation
from approvals.services.decide import _after_change, _finish_by_system
from console import audit


def _unclaimed(now: datetime) -> Q:
    return Q(claimed_until__isnull=True) | Q(claimed_until__lte=now)


def due_steps(now: datetime, *, limit: int = 500) -> list[tuple[int, int, int]]:
    """(request id, level, repeat) of the escalation steps due at ``now`` (a plain read, for display and tests)."""
    rows = (ApprovalRequest.objects.filter(_unclaimed(now), status=Status.PENDING, next_escalation_at__lte=now)
            .order_by("next_escalation_at").values_list("pk", "escalation_step", "escalation_snapshot")[:limit])
    steps = []
    for pk, index, snapshot in rows:
        plan = escalation_steps(snapshot)
        if index < len(plan):
            steps.append((pk, plan[index][1], plan[index][2]))
    return steps


def fire_due_escalations(*, now: datetime, limit: int = 500) -> int:
    """Fire each due (request, epoch, level, repeat) at most once; safe to run concurrently.

    One transaction per batch: the due requests are locked (``SKIP LOCKED``, so
    two workers take disjoint batches), their ledger rows (unique), pending
    deliveries (the outbox) and advanced cursors are written together. A
    duplicate ledger row, should one ever slip through, rolls the batch back.
    Batching rather than a transaction per step (STYLE's example) is what
    keeps a 500-step sweep to a handful of statements.
    """
    with transaction.atomic():
        requests = list(
            ApprovalRequest.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("agent", "queue")
            .filter(_unclaimed(now), status=Status.PENDING, next_escalation_at__lte=now)
            .order_by("next_escalation_at")[:limit]
        )
        firings, advanced, cache = [], [], {}
        for req in requests:
            plan = escalation_steps(req.escalation_snapshot)
            index = req.escalation_step
            if index >= len(plan):
                req.next_escalation_at = None
                advanced.append(req)
                continue
            _offset, level, repeat = plan[index]
            firings.append((req, EscalationFiring(request=req, epoch=req.escalation_epoch, level=level,
                                                  repeat=repeat, fired_at=now)))
            req.escalation_step = index + 1
            req.next_escalation_at = (req.escalation_started_at + timedelta(minutes=plan[index + 1][0])
                                      if index + 1 < len(plan) else None)
            advanced.append(req)
        EscalationFiring.objects.bulk_create([firing for _req, firing in firings])
        deliveries = []
        for req, firing in firings:
            level = req.escalation_snapshot["levels"][firing.level]
            deliveries += notify.build_deliveries(req=req, levels=[level], firing=firing,
                                                  event="approval.escalated", now=now, cache=cache)
        Delivery.objects.bulk_create(deliveries, batch_size=1000)
        _advance_cursors(advanced)
    return len(firings)


def _advance_cursors(requests: list[ApprovalRequest]) -> None:
    """Write each request's new (escalation_step, next_escalation_at) in one statement on PostgreSQL.

    ``bulk_update`` builds a CASE per row in Python, which cost more than the whole rest of the sweep.
    """
    if not requests:
        return
    if connection.vendor != "postgresql":
        for req in requests:  # the embedded mode's batches are small
            ApprovalRequest.objects.filter(pk=req.pk).update(escalation_step=req.escalation_step,
                                                             next_escalation_at=req.next_escalation_at)
        return
    table = ApprovalRequest._meta.db_table
    rows = ", ".join(["(%s::bigint, %s::integer, %s::timestamptz)"] * len(requests))
    params = [value for req in requests for value in (req.pk, req.escalation_step, req.next_escalation_at)]
    with connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE "{table}" AS r SET escalation_step = v.step, next_escalation_at = v.next_at '
            f"FROM (VALUES {rows}) AS v(id, step, next_at) WHERE r.id = v.id", params)


class _Moved(Exception):
    pass


def handle_breaches(*, now: datetime, limit: int = 500) -> int:
    """Requests past ``due_at``: expire as rejected, or keep pending and page everyone in the matrix once."""
    rows = list(ApprovalRequest.objects.filter(status=Status.PENDING, due_at__lte=now, breached_at__isnull=True)
                .order_by("due_at").values_list("pk", "breach_action")[:limit])
    handled = 0
    for pk, action in rows:
        if action == BreachAction.EXPIRE_REJECTED:
            qs = ApprovalRequest.objects.filter(pk=pk, status=Status.PENDING, breached_at__isnull=True)
            handled += _finish_by_system(pk, qs=qs, status=Status.EXPIRED, decider="system:sla",
                                         reason="SLA breached: expired as rejected", now=now,
                                         audit_action="approval.expired", extra={"breached_at": now})
            continue
        try:
            with transaction.atomic():
                firing = EscalationFiring.objects.create(request_id=pk, epoch=0, level=EscalationFiring.BREACH_LEVEL,
                                                         repeat=0, fired_at=now)
                if not ApprovalRequest.objects.filter(pk=pk, status=Status.PENDING,
                                                      breached_at__isnull=True).update(breached_at=now):
                    raise _Moved
                req = ApprovalRequest.objects.select_related("agent", "queue").get(pk=pk)
                levels = req.escalation_snapshot.get("levels") or [{"queue_reviewers": True}]
                notify.create_deliveries(req=req, levels=levels, firing=firing, event="approval.breached", now=now)
                audit.record(actor="system:sla", action="approval.breached", target=req, at=now,
                             after={"due_at": req.due_at})
                _after_change(req)
        except (IntegrityError, _Moved):
            continue
        handled += 1
    return handled


# --- matrix and SLA edits (Admin) -----------------------------------------------------------


def validate_levels(levels: list[dict]) -> None:
    """No level without recipients; delays strictly increasing. Raises ValidationError naming the level."""
    if not levels:
        raise ValidationError("A matrix needs at least one level.")
    previous = None
    for number, level in enumerate(levels, start=1):
        if not (level.get("user_ids") or level.get("group_ids") or level.get("queue_reviewers")
                or level.get("webhook_url")):
            raise ValidationError(f"Level {number} has no recipients: name users, groups, the queue's reviewers "
                                  "or a webhook.")
        after = level.get("after_minutes")
        if not isinstance(after, int) or after < 0:
            raise ValidationError(f"Level {number}: after_minutes must be a whole number of minutes, 0 or more.")
        if previous is not None and after <= previous:
            raise ValidationError(f"Level {number} fires after {after} min, not later than level {number - 1} "
                                  f"({previous} min); delays must increase.")
        if int(level.get("repeat_count", 0)) > 0 and int(level.get("repeat_interval_minutes", 0)) < 1:
            raise ValidationError(f"Level {number}: a repeating level needs a repeat interval of 1 minute or more.")
        previous = after


def update_matrix(*, queue_id: int, breach_action: str, levels: list[dict], actor) -> EscalationMatrix:
    """Replace a queue's matrix (levels as dicts: after_minutes, repeat_count, repeat_interval_minutes,
    user_ids, group_ids, queue_reviewers, email, webhook_url, webhook_format). Validated, audited.

    Requests already pending keep their snapshot; see ``reapply_matrix``.
    """
    if breach_action not in BreachAction.values:
        raise ValidationError(f"breach_action must be one of {', '.join(BreachAction.values)}.")
    validate_levels(levels)
    with transaction.atomic():
        queue = Queue.objects.select_for_update(no_key=True).get(pk=queue_id)  # no_key: see set_conflict_rule
        matrix, _ = EscalationMatrix.objects.get_or_create(queue=queue)
        before = matrix.snapshot() if matrix.pk else None
        matrix.breach_action = breach_action
        matrix.updated_by = actor if getattr(actor, "is_authenticated", False) else None
        matrix.save()
        matrix.levels.all().delete()
        for order, spec in enumerate(levels):
            level = EscalationLevel(matrix=matrix, order=order, after_minutes=spec["after_minutes"],
                                    repeat_count=int(spec.get("repeat_count", 0)),
                                    repeat_interval_minutes=int(spec.get("repeat_interval_minutes", 10) or 10),
                                    notify_queue_reviewers=bool(spec.get("queue_reviewers")),
                                    email=bool(spec.get("email", True)), webhook_url=spec.get("webhook_url") or "",
                                    webhook_format=spec.get("webhook_format") or "generic")
            level.full_clean(exclude=["matrix"])
            level.save()
            level.users.set(spec.get("user_ids") or [])
            level.groups.set(spec.get("group_ids") or [])
        after = matrix.snapshot()
        audit.record(actor=actor, action="escalation_matrix.updated", target=matrix, before=before, after=after)
    return matrix


def reapply_matrix(*, queue_id: int, actor, now: datetime) -> int:
    """Give the queue's pending requests the current matrix; their escalation restarts from ``now``. Audited."""
    queue = Queue.objects.get(pk=queue_id)
    snapshot = matrix_snapshot(queue)
    count = 0
    with transaction.atomic():
        for req in ApprovalRequest.objects.select_for_update().filter(queue=queue, status=Status.PENDING):
            req.escalation_snapshot = snapshot
            req.breach_action = snapshot["breach_action"]
            req.escalation_epoch += 1
            start_escalation(req, at=now)
            req.save(update_fields=["escalation_snapshot", "breach_action", "escalation_epoch",
                                    "escalation_started_at", "escalation_step", "next_escalation_at"])
            count += 1
        audit.record(actor=actor, action="escalation_matrix.reapplied", target=queue, at=now,
                     after={"requests": count, "matrix": snapshot})
    return count


def set_sla_policy(*, queue_id: int, risk: str, minutes: int, actor,
                   required_approvals: int | None = None) -> SlaPolicy:
    """Create or change the SLA of a queue and risk; audited. New requests use it.

    ``required_approvals`` None keeps the policy's current value (1 for a new
    policy), so changing the minutes never silently drops a four-eyes policy.
    """
    if minutes < 1:
        raise ValidationError("An SLA needs at least 1 minute.")
    if required_approvals is not None and required_approvals not in (1, 2):
        raise ValidationError({"required_approvals": "One or two approvals."})
    with transaction.atomic():
        old = SlaPolicy.objects.filter(queue_id=queue_id, risk=risk).first()
        if required_approvals is None:
            required_approvals = old.required_approvals if old else 1
        policy, _ = SlaPolicy.objects.update_or_create(
            queue_id=queue_id, risk=risk, defaults={"minutes": minutes, "required_approvals": required_approvals})
        audit.record(actor=actor, action="sla_policy.updated", target=policy,
                     before={"minutes": old.minutes, "required_approvals": old.required_approvals} if old else None,
                     after={"minutes": minutes, "risk": risk, "required_approvals": required_approvals})
    return policy


def set_queue_members(*, queue_id: int, user_ids: list[int], actor) -> Queue:
    with transaction.atomic():
        queue = Queue.objects.select_for_update(no_key=True).get(pk=queue_id)  # no_key: see set_conflict_rule
        before = sorted(queue.members.values_list("pk", flat=True))
        queue.members.set(user_ids)
        audit.record(actor=actor, action="queue.members_changed", target=queue, before={"members": before},
                     after={"members": sorted(user_ids)})
    return queue


