"""The dashboard tile: runs in flight, spans/s, cost today by agent, runs/errors per hour.

``tile_context(user)`` is the same for every viewer (``user`` may be None: the
dashboard job renders it once and pushes it to everyone)."""

from datetime import timedelta

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from traces import charts
from traces.models import Run, RunStatus, Span

HOURS = 12


def tile_context(user=None, *, now=None) -> dict:
    now = now or timezone.now()
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    in_flight = Run.objects.filter(status__in=[RunStatus.RUNNING, RunStatus.WAITING]).count()
    # spans by start time (indexed) rather than arrival time: the same figure for a live system
    last_minute = Span.objects.filter(start_time__gte=now - timedelta(minutes=1), start_time__lte=now).count()
    cost_today = list(Run.objects.filter(started_at__gte=midnight).values("agent__name")
                      .annotate(cost=Sum("cost"), runs=Count("id")).order_by("-cost", "agent__name")[:5])
    since = (now - timedelta(hours=HOURS - 1)).replace(minute=0, second=0, microsecond=0)
    hourly = {row["hour"]: row for row in Run.objects.filter(started_at__gte=since)
              .annotate(hour=TruncHour("started_at")).values("hour")
              .annotate(runs=Count("id"), errors=Count("id", filter=Q(error_count__gt=0)))}
    hours = [timezone.localtime(since + timedelta(hours=i)) for i in range(HOURS)]
    runs_per_hour = [hourly.get(h, {}).get("runs", 0) for h in hours]
    errors_per_hour = [hourly.get(h, {}).get("errors", 0) for h in hours]
    return {
        "runs_in_flight": in_flight,
        "spans_per_s": round(last_minute / 60, 1),
        "cost_today": cost_today,
        "cost_today_total": sum((row["cost"] or 0) for row in cost_today),
        "runs_chart": charts.sparkline(runs_per_hour, errors_per_hour,
                                       title=f"runs (errors in red) per hour, last {HOURS} hours"),
        "runs_last_hours": sum(runs_per_hour),
        "errors_last_hours": sum(errors_per_hour),
    }
