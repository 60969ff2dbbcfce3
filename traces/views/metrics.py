"""Metrics over runs: tokens, cost, latency percentiles, error rate and tool usage, per time
bucket, for all agents or one. Aggregate queries; on PostgreSQL percentiles by
``percentile_cont``, elsewhere in Python over a bounded sample."""

from datetime import timedelta

from django.db import connection
from django.db.models import Aggregate, Count, FloatField, Q, Sum
from django.db.models.functions import Trunc
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from agents.models import Agent
from console.roles import STAFF_ROLES, role_required
from traces import charts
from traces.models import Run, Span, SpanKind, SpanStatus

RANGES = {"1h": (timedelta(hours=1), "minute"), "24h": (timedelta(hours=24), "hour"),
          "7d": (timedelta(days=7), "day"), "30d": (timedelta(days=30), "day")}
SAMPLE = 20_000  # rows per percentile computation outside PostgreSQL


class PercentileCont(Aggregate):
    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction: float, **extra):
        super().__init__(expression, fraction=float(fraction), **extra)


def buckets(since, until, kind: str) -> list:
    step = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}[kind]
    tz = timezone.get_current_timezone()
    start = timezone.localtime(since, tz).replace(second=0, microsecond=0)
    if kind in ("hour", "day"):
        start = start.replace(minute=0)
    if kind == "day":
        start = start.replace(hour=0)
    out = []
    while start <= until:
        out.append(start)
        start += step
    return out


def _label(moment, kind: str) -> str:
    moment = timezone.localtime(moment)
    return moment.strftime({"minute": "%H:%M", "hour": "%H:00", "day": "%m-%d"}[kind])


def _percentiles(values: list[float]) -> dict:
    values = sorted(values)
    if not values:
        return {"p50": None, "p95": None, "p99": None}

    def at(p):  # linear interpolation, as percentile_cont
        pos = p * (len(values) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(values) - 1)
        return values[lo] + (values[hi] - values[lo]) * (pos - lo)

    return {"p50": at(0.5), "p95": at(0.95), "p99": at(0.99)}


def run_stats(runs, kind: str) -> dict:
    """Per-bucket figures {bucket: {...}} and totals, with one or two aggregate queries."""
    bucketed = runs.annotate(bucket=Trunc("started_at", kind)).values("bucket")
    figures = {"runs": Count("id"), "errors": Count("id", filter=Q(error_count__gt=0)),
               "tokens": Sum("total_tokens"), "cost": Sum("cost")}
    ended = Q(root_ended=True, duration_ms__isnull=False)
    postgres = connection.vendor == "postgresql"
    if postgres:
        for name, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            figures[name] = PercentileCont("duration_ms", p, filter=ended)
    rows = {row["bucket"]: row for row in bucketed.annotate(**figures).order_by("bucket")}
    totals = runs.aggregate(**figures)
    if not postgres:
        sample = list(runs.filter(ended).annotate(bucket=Trunc("started_at", kind))
                      .order_by("-id").values_list("bucket", "duration_ms")[:SAMPLE])
        per_bucket: dict = {}
        for bucket, ms in sample:
            per_bucket.setdefault(bucket, []).append(float(ms))
        for bucket, values in per_bucket.items():
            rows.setdefault(bucket, {}).update(_percentiles(values))
        totals.update(_percentiles([float(ms) for _b, ms in sample]))
    return {"rows": rows, "totals": totals}


def tool_usage(spans, limit: int = 15) -> list[dict]:
    return list(spans.filter(kind=SpanKind.TOOL).exclude(tool_name="").values("tool_name")
                .annotate(calls=Count("id"), errors=Count("id", filter=Q(status=SpanStatus.ERROR)))
                .order_by("-calls", "tool_name")[:limit])


def _f(value):
    return float(value) if value is not None else None


@require_GET
@role_required(*STAFF_ROLES)
def metrics_page(request):
    now = timezone.now()
    range_key = request.GET.get("range") if request.GET.get("range") in RANGES else "24h"
    span, kind = RANGES[range_key]
    since = now - span
    agent = Agent.objects.filter(name=request.GET.get("agent", "")).first()
    runs = Run.objects.filter(started_at__gte=since)
    spans = Span.objects.filter(start_time__gte=since)
    if agent:
        runs = runs.filter(agent=agent)
        spans = spans.filter(run__agent=agent)
    stats = run_stats(runs, kind)
    keys = buckets(since, now, kind)
    by_bucket = {}
    for bucket, row in stats["rows"].items():
        by_bucket[timezone.localtime(bucket).replace(tzinfo=None) if bucket else None] = row
    series = [by_bucket.get(timezone.localtime(k).replace(tzinfo=None), {}) for k in keys]
    labels = [_label(k, kind) for k in keys]
    runs_n = [r.get("runs") or 0 for r in series]
    errors_n = [r.get("errors") or 0 for r in series]
    error_rate = [(100.0 * e / n) if n else None for e, n in zip(errors_n, runs_n)]
    tools = tool_usage(spans)
    chart_list = [
        charts.line_chart(labels, [("runs", runs_n), ("with errors", errors_n)], title="Runs", bars=True),
        charts.line_chart(labels, [("error rate", error_rate)], title="Error rate", unit="%"),
        charts.line_chart(labels, [("p50", [_f(r.get("p50")) for r in series]),
                                   ("p95", [_f(r.get("p95")) for r in series]),
                                   ("p99", [_f(r.get("p99")) for r in series])],
                          title="Run latency percentiles", unit="ms"),
        charts.line_chart(labels, [("tokens", [_f(r.get("tokens")) or 0 for r in series])], title="Tokens", bars=True),
        charts.line_chart(labels, [("cost", [_f(r.get("cost")) or 0 for r in series])], title="Cost", unit="$",
                          bars=True),
        charts.bar_list([(t["tool_name"], t["calls"]) for t in tools], title="Tool calls (errors in red)",
                        errors=[t["errors"] for t in tools]),
    ]
    totals = stats["totals"]
    per_agent = []
    if not agent:
        per_agent = list(runs.values("agent__name").annotate(
            runs=Count("id"), errors=Count("id", filter=Q(error_count__gt=0)), tokens=Sum("total_tokens"),
            cost=Sum("cost")).order_by("-cost", "agent__name")[:50])
    return render(request, "traces/metrics.html", {
        "agent": agent, "agents": Agent.objects.order_by("name").values_list("name", flat=True),
        "range_key": range_key, "ranges": list(RANGES), "charts": chart_list, "totals": totals,
        "error_rate": (100.0 * (totals["errors"] or 0) / totals["runs"]) if totals["runs"] else None,
        "per_agent": per_agent, "tools": tools, "since": since,
    })
