"""Queue health for Operators and Admins: grouped aggregate queries, never a loop over rows.

- depth: pending requests per queue and risk;
- SLA attainment: requests finished in the window that a human decided by
  ``due_at``, over all finished in the window;
- time to decision: p50/p95 of ``decided_at - created_at`` for human decisions
  (``percentile_cont`` on PostgreSQL; nearest rank by OFFSET elsewhere);
- held: pending requests held back by a conflict on their resource;
- breaches: requests whose ``due_at`` fell in the window while still pending,
  or that were finished after it;
- reviewer load: live claims now, and decisions today.
"""

from collections import defaultdict
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Aggregate, Count, DurationField, ExpressionWrapper, F, FloatField, Func, Min, Q
from django.utils import timezone

from approvals.models import CONFLICT_WAITING_STATES, ApprovalRequest, Decision, Queue, Risk, Status

RISKS = [Risk.CRITICAL, Risk.HIGH, Risk.MEDIUM, Risk.LOW]


class _Seconds(Func):
    """Seconds from the second expression to the first (PostgreSQL)."""

    template = "EXTRACT(EPOCH FROM (%(expressions)s))"
    arg_joiner = " - "
    output_field = FloatField()


class _PercentileCont(Aggregate):
    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


def day_start(now: datetime) -> datetime:
    return timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)


def _finished():
    return ApprovalRequest.objects.filter(queue__isnull=False, decided_at__isnull=False).exclude(
        status=Status.PENDING)


def attainment_by_queue(since: datetime) -> dict:
    rows = (_finished().filter(decided_at__gte=since).values("queue_id")
            .annotate(total=Count("id"),
                      in_time=Count("id", filter=Q(decided_by__isnull=False, decided_at__lte=F("due_at")))))
    return {r["queue_id"]: r for r in rows}


def breaches_by_queue(since: datetime, now: datetime) -> dict:
    rows = (ApprovalRequest.objects.filter(queue__isnull=False, due_at__gte=since, due_at__lte=now)
            .filter(Q(status=Status.PENDING) | Q(decided_at__gt=F("due_at")))
            .values("queue_id").annotate(n=Count("id")))
    return {r["queue_id"]: r["n"] for r in rows}


def percentiles_by_queue(since: datetime) -> dict:
    """{queue_id: (p50 seconds, p95 seconds)} of human decisions finished since ``since``."""
    human = _finished().filter(decided_at__gte=since, decided_by__isnull=False)
    if connection.vendor == "postgresql":
        seconds = _Seconds(F("decided_at"), F("created_at"))
        rows = human.values("queue_id").annotate(p50=_PercentileCont(seconds, fraction=0.5),
                                                 p95=_PercentileCont(seconds, fraction=0.95))
        return {r["queue_id"]: (r["p50"], r["p95"]) for r in rows}
    result = {}
    took = ExpressionWrapper(F("decided_at") - F("created_at"), output_field=DurationField())
    for row in human.values("queue_id").annotate(n=Count("id")):
        ordered = human.filter(queue_id=row["queue_id"]).annotate(took=took).order_by("took")
        values = []
        for fraction in (0.5, 0.95):
            index = max(0, min(row["n"] - 1, int(round(fraction * row["n"] + 0.5)) - 1))
            value = ordered.values_list("took", flat=True)[index]
            values.append(value.total_seconds() if value is not None else None)
        result[row["queue_id"]] = tuple(values)
    return result


def overview(now: datetime | None = None) -> dict:
    now = now or timezone.now()
    today, week = day_start(now), now - timedelta(days=7)
    depth = defaultdict(dict)
    for r in (ApprovalRequest.objects.filter(status=Status.PENDING, queue__isnull=False)
              .values("queue_id", "risk").annotate(n=Count("id"), overdue=Count("id", filter=Q(due_at__lte=now)),
                                                   nearest=Min("due_at"))):
        depth[r["queue_id"]][r["risk"]] = r
    held = dict(ApprovalRequest.objects.filter(status=Status.PENDING, queue__isnull=False,
                                               conflict_state__in=CONFLICT_WAITING_STATES)
                .values("queue_id").annotate(n=Count("id")).values_list("queue_id", "n"))
    att_today, att_week = attainment_by_queue(today), attainment_by_queue(week)
    br_today, br_week = breaches_by_queue(today, now), breaches_by_queue(week, now)
    pct = percentiles_by_queue(week)
    queues = []
    for q in Queue.objects.order_by("name").annotate(member_count=Count("members", distinct=True)):
        by_risk = [{"risk": risk, "n": depth[q.pk].get(risk, {}).get("n", 0),
                    "overdue": depth[q.pk].get(risk, {}).get("overdue", 0)} for risk in RISKS]
        queues.append({
            "queue": q,
            "depth": by_risk,
            "pending": sum(d["n"] for d in by_risk),
            "overdue": sum(d["overdue"] for d in by_risk),
            "held": held.get(q.pk, 0),
            "today": _rate(att_today.get(q.pk)),
            "week": _rate(att_week.get(q.pk)),
            "p50": pct.get(q.pk, (None, None))[0],
            "p95": pct.get(q.pk, (None, None))[1],
            "breaches_today": br_today.get(q.pk, 0),
            "breaches_week": br_week.get(q.pk, 0),
        })
    return {"queues": queues, "reviewers": reviewer_load(now, today), "now": now, "risks": RISKS}


def _rate(row) -> dict:
    if not row or not row["total"]:
        return {"total": 0, "in_time": 0, "percent": None}
    return {"total": row["total"], "in_time": row["in_time"], "percent": round(100 * row["in_time"] / row["total"])}


def reviewer_load(now: datetime, since: datetime) -> list[dict]:
    load = defaultdict(lambda: {"claimed": 0, "decided": 0})
    for r in (ApprovalRequest.objects.filter(status=Status.PENDING, claimed_by__isnull=False, claimed_until__gt=now)
              .values("claimed_by__username").annotate(n=Count("id"))):
        load[r["claimed_by__username"]]["claimed"] = r["n"]
    for r in (Decision.objects.filter(created_at__gte=since, reviewer__isnull=False)
              .values("reviewer__username").annotate(n=Count("id"))):
        load[r["reviewer__username"]]["decided"] = r["n"]
    return [{"username": name, **counts} for name, counts in sorted(load.items())]


def tile_context(user=None) -> dict:
    """The dashboard tile: the same for every viewer (pushed once to all)."""
    now = timezone.now()
    today = day_start(now)
    rows = {r["risk"]: r for r in ApprovalRequest.objects.filter(status=Status.PENDING, queue__isnull=False)
            .values("risk").annotate(n=Count("id"), nearest=Min("due_at"))}
    by_risk = [{"risk": risk, "n": rows.get(risk, {}).get("n", 0), "nearest": rows.get(risk, {}).get("nearest")}
               for risk in RISKS]
    totals = _finished().filter(decided_at__gte=today).aggregate(
        total=Count("id"), in_time=Count("id", filter=Q(decided_by__isnull=False, decided_at__lte=F("due_at"))))
    breaches = (ApprovalRequest.objects.filter(queue__isnull=False, due_at__gte=today, due_at__lte=now)
                .filter(Q(status=Status.PENDING) | Q(decided_at__gt=F("due_at"))).count())
    return {"approvals_by_risk": by_risk, "approvals_pending": sum(r["n"] for r in by_risk),
            "approvals_today": _rate(totals), "approvals_breaches": breaches}
