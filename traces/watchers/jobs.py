"""Periodic watchers: plain idempotent functions taking ``now`` (settings.CONSOLE_JOBS).

Window detectors key their incidents by a fixed time bucket, so running a job
twice, on two workers, or again after a restart opens each incident once.
"""

import logging
from datetime import datetime, timedelta

from django.db.models import Count, Q, Sum

from traces.incident_models import DetectorKind, ResourceTouch
from traces.models import Run, RunStatus
from traces.templatetags.traces_ui import money  # titles show money as the pages do
from traces.watchers import baselines, detectors, services, stream
from traces.watchers.detectors import Finding

log = logging.getLogger(__name__)

ACTIVE_WINDOW_S = 3600
TOUCH_RETENTION = timedelta(days=1)


def _bucket(now: datetime, window_s: int) -> str:
    start = int(now.timestamp()) // window_s * window_s
    return datetime.fromtimestamp(start, tz=now.tzinfo).isoformat()


def _open(findings: list[Finding], now: datetime) -> int:
    opened = 0
    for finding in findings:
        try:
            if services.open_incident(finding=finding, now=now):
                opened += 1
        except Exception:  # noqa: BLE001
            log.exception("watchers: opening %s failed", finding.dedupe_key)
    return opened


def check_windows(*, now: datetime) -> int:
    """Budget, latency, error-rate, runaway duration and approval conflicts; returns incidents opened."""
    if stream.mode() == "off":
        return 0
    findings = []
    agent_ids = baselines.agents_active_since(now - timedelta(seconds=ACTIVE_WINDOW_S))
    for agent_id in agent_ids:
        for check in (check_budget, check_latency, check_error_rate):
            try:
                finding = check(agent_id=agent_id, now=now)
            except Exception:  # noqa: BLE001
                log.exception("watchers: %s for agent %s failed", check.__name__, agent_id)
                continue
            if finding:
                findings.append(finding)
    findings += check_runaway_durations(now=now)
    findings += check_approval_conflicts(now=now)
    ResourceTouch.objects.filter(pk__in=ResourceTouch.objects.filter(at__lt=now - TOUCH_RETENTION)
                                 .values("pk")[:5000]).delete()
    return _open(findings, now)


def check_budget(*, agent_id: int, now: datetime) -> Finding | None:
    conf = detectors.settings_for(DetectorKind.BUDGET, agent_id)
    budget = conf.params.get("budget")
    if not conf.enabled or budget is None:
        return None
    window_s = int(conf.params["window_s"])
    bucket = _bucket(now, window_s)
    start = datetime.fromisoformat(bucket)
    spent = float(Run.objects.filter(agent_id=agent_id, started_at__gte=start).aggregate(s=Sum("cost"))["s"] or 0)
    if spent <= float(budget):
        return None
    return Finding(kind=DetectorKind.BUDGET, agent_id=agent_id, dedupe_key=f"a{agent_id}:budget:{bucket}",
                   title=f"Spend {money(spent)} over budget {money(budget)} since {start:%H:%M}",
                   evidence={"observed": spent, "threshold": float(budget), "window_start": bucket,
                             "window_s": window_s})


def _window_runs(agent_id: int, now: datetime, window_s: int) -> list[dict]:
    return list(Run.objects.filter(agent_id=agent_id, root_ended=True,
                                   started_at__gte=now - timedelta(seconds=window_s))
                .order_by("-started_at").values("trace_id", "duration_ms", "error_count", "prompt_name",
                                                "prompt_version")[:1000])


def check_latency(*, agent_id: int, now: datetime) -> Finding | None:
    conf = detectors.settings_for(DetectorKind.LATENCY, agent_id)
    base = baselines.get_baseline(agent_id)
    p = conf.params
    if not conf.enabled or base is None or base.runs < int(p["min_baseline_runs"]):
        return None
    window_s = int(p["window_s"])
    runs = _window_runs(agent_id, now, window_s)
    hit = detectors.latency_regressed([float(r["duration_ms"] or 0) for r in runs],
                                      base_median=base.duration_median_ms, base_mad=base.duration_mad_ms,
                                      z=float(p["z"]), min_ratio=float(p["min_ratio"]), min_runs=int(p["min_runs"]))
    if not hit:
        return None
    bucket = _bucket(now, window_s)
    slowest = sorted(runs, key=lambda r: -(r["duration_ms"] or 0))[:10]
    return Finding(kind=DetectorKind.LATENCY, agent_id=agent_id, dedupe_key=f"a{agent_id}:latency:{bucket}",
                   title=f"Latency regression: median {hit['observed_median_ms']:.0f} ms vs "
                         f"{hit['baseline_median_ms']:.0f} ms baseline",
                   evidence={**hit, "observed": hit["observed_median_ms"], "baseline": hit["baseline_median_ms"],
                             "trace_ids": [r["trace_id"] for r in slowest],
                             "series": [float(r["duration_ms"] or 0) for r in reversed(runs[:60])],
                             **_prompt_of(runs)})


def _prompt_of(runs: list[dict]) -> dict:
    prompted = [r for r in runs if r["prompt_name"]]
    if not prompted:
        return {}
    return {"prompt_name": prompted[0]["prompt_name"], "prompt_version": prompted[0]["prompt_version"]}


def check_error_rate(*, agent_id: int, now: datetime) -> Finding | None:
    conf = detectors.settings_for(DetectorKind.ERROR_RATE, agent_id)
    base = baselines.get_baseline(agent_id)
    p = conf.params
    if not conf.enabled or base is None or base.runs < int(p["min_baseline_runs"]):
        return None
    window_s = int(p["window_s"])
    runs = _window_runs(agent_id, now, window_s)
    errors = sum(1 for r in runs if r["error_count"])
    hit = detectors.error_rate_regressed(errors, len(runs), base_rate=base.error_rate, margin=float(p["margin"]),
                                         sigmas=float(p["sigmas"]), min_runs=int(p["min_runs"]))
    if not hit:
        return None
    bucket = _bucket(now, window_s)
    return Finding(kind=DetectorKind.ERROR_RATE, agent_id=agent_id, dedupe_key=f"a{agent_id}:errors:{bucket}",
                   title=f"Error rate {hit['observed_rate']:.0%} vs {hit['baseline_rate']:.0%} baseline",
                   evidence={**hit, "observed": hit["observed_rate"], "baseline": hit["baseline_rate"],
                             "trace_ids": [r["trace_id"] for r in runs if r["error_count"]][:10],
                             "series": [1.0 if r["error_count"] else 0.0 for r in reversed(runs[:60])],
                             **_prompt_of(runs)})


def check_runaway_durations(*, now: datetime, limit: int = 500) -> list[Finding]:
    """Unfinished runs older than their agent's ``max_seconds`` that are still active.

    Still active: a span (or a waiting/resumed mark) arrived within ``max_idle_seconds``
    (``updated_at``, written by every ingest). A run silent for longer is abandoned, its agent
    crashed or restarted (e.g. ``manage.py demo`` restarted); pausing that agent would punish a
    healthy successor, so such runs open no incident. The (status, -id) index bounds the read.
    """
    findings = []
    unfinished = (Run.objects.filter(status__in=[RunStatus.RUNNING, RunStatus.WAITING])
                  .order_by("-id").values("id", "trace_id", "agent_id", "started_at", "updated_at", "span_count",
                                          "prompt_name", "prompt_version")[:limit])
    for run in unfinished:
        if run["started_at"] is None:
            continue
        conf = detectors.settings_for(DetectorKind.RUNAWAY, run["agent_id"])
        max_s = int(conf.params["max_seconds"])
        age = (now - run["started_at"]).total_seconds()
        if not conf.enabled or age <= max_s:
            continue
        idle = (now - run["updated_at"]).total_seconds()
        if idle > int(conf.params["max_idle_seconds"]):
            continue
        findings.append(Finding(kind=DetectorKind.RUNAWAY, agent_id=run["agent_id"],
                                dedupe_key=f"a{run['agent_id']}:run:{run['trace_id']}", run_id=run["id"],
                                trace_id=run["trace_id"],
                                title=f"Runaway run: running {age / 60:.0f} min without finishing "
                                      f"(limit {max_s / 60:.0f} min)",
                                evidence={"observed": age, "threshold": max_s, "measure": "seconds",
                                          "idle_seconds": max(idle, 0.0),
                                          "spans": run["span_count"], "prompt_name": run["prompt_name"],
                                          "prompt_version": run["prompt_version"]}))
    return findings


def check_approval_conflicts(*, now: datetime) -> list[Finding]:
    """Pending or approved-but-not-executed requests from different agents on the same resource."""
    from approvals.models import ApprovalRequest, Status

    window_s = int(detectors.settings_for(DetectorKind.CONFLICT, None).params["window_s"])
    since = now - timedelta(seconds=window_s)
    # Ids grow with time: walking the primary key back from the newest row to the first one older than
    # the window bounds the read to the window (created_at has no index of its own).
    boundary = ApprovalRequest.objects.filter(created_at__lt=since).order_by("-id").values_list("id", flat=True).first()
    live_requests = (ApprovalRequest.objects.exclude(resource="").filter(id__gt=boundary or 0, created_at__gte=since)
                     .filter(Q(status=Status.PENDING) | Q(status=Status.APPROVED, executed_at__isnull=True)))
    contested = (live_requests.values("resource").annotate(agents=Count("agent", distinct=True))
                 .filter(agents__gte=2).values_list("resource", flat=True)[:100])
    findings = []
    for resource in contested:
        rows = list(live_requests.filter(resource=resource).order_by("created_at", "id")
                    .values("id", "agent_id", "created_at", "trace_id", "status"))
        first, later = rows[0], next(r for r in rows if r["agent_id"] != rows[0]["agent_id"])
        conf = detectors.settings_for(DetectorKind.CONFLICT, later["agent_id"])
        if not conf.enabled:
            continue
        findings.append(stream.conflict_finding(
            resource=resource, agent_id=later["agent_id"], other_agent_id=first["agent_id"], at=later["created_at"],
            window_s=window_s, evidence={"source": "approvals", "request_ids": [r["id"] for r in rows][:20],
                                         "statuses": {str(r["id"]): r["status"] for r in rows[:20]}}))
    return findings


def refresh_baselines(*, now: datetime) -> int:
    if stream.mode() == "off":
        return 0
    return baselines.refresh_all(now=now)


def sweep_streams(*, now: datetime) -> int:
    """Catch up on stream checks a crashed worker may have missed: the latest unfinished runs."""
    if stream.mode() == "off":
        return 0
    ids = list(Run.objects.filter(status__in=[RunStatus.RUNNING, RunStatus.WAITING])
               .order_by("-id").values_list("id", flat=True)[:200])
    recent = {run_id: [] for run_id in ids}
    return len(stream.process(recent, now=now)) if recent else 0


def watch_decisions(*, now: datetime) -> int:
    if stream.mode() == "off":
        return 0
    from traces.watchers import autonomy

    return autonomy.demote_from_decisions(now=now)


def propose_autonomy(*, now: datetime) -> int:
    if stream.mode() == "off":
        return 0
    from traces.watchers import autonomy

    return len(autonomy.propose_grants(now=now))
