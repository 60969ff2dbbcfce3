"""Per-agent baselines from the agent's own history (robust: medians, MAD, p99).

A baseline comes from the agent's latest ``HISTORY_RUNS`` finished runs that
started before ``now - EXCLUDE_RECENT_S``, so a regression under way does not
pull its own baseline up. Reads go through a small per-process cache.
"""

import threading
import time
from datetime import datetime, timedelta

from traces.incident_models import AgentBaseline
from traces.models import Run
from traces.watchers.detectors import median_mad, quantile

HISTORY_RUNS = 200
EXCLUDE_RECENT_S = 120  # the latest runs (a regression under way) stay out of the baseline
CACHE_TTL_S = 30.0

_lock = threading.Lock()
_cache: dict[int, tuple[float, AgentBaseline | None]] = {}


def invalidate_cache() -> None:
    with _lock:
        _cache.clear()


def get_baseline(agent_id: int) -> AgentBaseline | None:
    with _lock:
        hit = _cache.get(agent_id)
        if hit and time.monotonic() - hit[0] < CACHE_TTL_S:
            return hit[1]
    row = AgentBaseline.objects.filter(agent_id=agent_id).first()
    with _lock:
        _cache[agent_id] = (time.monotonic(), row)
    return row


def refresh_agent(*, agent_id: int, now: datetime, exclude_recent_s: int = EXCLUDE_RECENT_S) -> AgentBaseline | None:
    """Recompute one agent's baseline (upsert). None when it has no finished runs yet."""
    rows = list(Run.objects.filter(agent_id=agent_id, root_ended=True,
                                   started_at__lt=now - timedelta(seconds=exclude_recent_s))
                .order_by("-started_at").values_list("cost", "duration_ms", "error_count")[:HISTORY_RUNS])
    if not rows:
        return None
    costs = [float(c or 0) for c, _d, _e in rows]
    durations = [float(d or 0) for _c, d, _e in rows]
    cost_median, _ = median_mad(costs)
    duration_median, duration_mad = median_mad(durations)
    values = {"runs": len(rows), "cost_median": cost_median, "cost_p99": quantile(costs, 0.99),
              "duration_median_ms": duration_median, "duration_mad_ms": duration_mad,
              "error_rate": sum(1 for _c, _d, e in rows if e) / len(rows), "computed_at": now}
    baseline, _ = AgentBaseline.objects.update_or_create(agent_id=agent_id, defaults=values)
    with _lock:
        _cache.pop(agent_id, None)
    return baseline


def refresh_all(*, now: datetime, active_within_s: int = 86400) -> int:
    """Refresh agents that ran lately; returns how many were refreshed."""
    agent_ids = agents_active_since(now - timedelta(seconds=active_within_s))
    return sum(1 for agent_id in agent_ids if refresh_agent(agent_id=agent_id, now=now))


def agents_active_since(since: datetime) -> list[int]:
    """Agents with a run started since ``since``: one index probe per agent, not a scan of the runs."""
    from django.db.models import Exists, OuterRef

    from agents.models import Agent

    recent = Run.objects.filter(agent=OuterRef("pk"), started_at__gte=since)
    return list(Agent.objects.filter(Exists(recent)).order_by("pk").values_list("pk", flat=True))
