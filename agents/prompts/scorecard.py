"""The scorecard of a prompt version, and a side-by-side comparison with significance tests.

Definitions (shown on the page too):
- approval rate: decided requests approved, as proposed or with edits / decided requests
- edit rate: decided requests approved with edits / decided requests
- task success: runs with status ok / finished runs (ok or error)
- cost and latency: per finished run
- incidents: finished runs that opened an incident / finished runs (when the incidents model exists)
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from django.apps import apps

from agents.models import Feedback, FeedbackVerdict, PromptVersion
from agents.prompts import stats

ALPHA = 0.05
MAX_RUNS = 5000  # the newest runs of a version; enough for tight intervals, bounded work


@dataclass
class Metric:
    key: str
    label: str
    kind: str  # "rate" or "mean"
    interval: stats.Interval
    successes: int = 0
    values: list = field(default_factory=list, repr=False)
    unit: str = ""

    @property
    def n(self) -> int:
        return self.interval.n

    @property
    def shown(self) -> str:
        return _fmt(self, self.interval.value)

    @property
    def shown_interval(self) -> str:
        if self.interval.low is None:
            return "–"
        return f"{_fmt(self, self.interval.low)} – {_fmt(self, self.interval.high)}"

    @property
    def bar(self) -> dict | None:
        """SVG coordinates (0-100) of a rate's value and interval, for a tiny inline chart."""
        if self.kind != "rate" or self.interval.value is None:
            return None
        low = self.interval.low if self.interval.low is not None else self.interval.value
        high = self.interval.high if self.interval.high is not None else self.interval.value
        return {"value": round(self.interval.value * 100, 1), "low": round(low * 100, 1),
                "width": round((high - low) * 100, 1)}


@dataclass
class Scorecard:
    version: PromptVersion
    metrics: dict  # key -> Metric
    rejection_reasons: list  # [(category, count)], most frequent first
    notes: list


@dataclass
class Comparison:
    key: str
    label: str
    a: Metric
    b: Metric
    test: str
    statistic: float | None
    p_value: float | None
    significant: bool
    statement: str


def decision_counts(version: PromptVersion, *, since: datetime | None = None,
                    until: datetime | None = None) -> Counter:
    rows = Feedback.objects.decisions().filter(version=version)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    return Counter(rows.values_list("verdict", flat=True))


def approval_counts(counts: Counter) -> tuple[int, int]:
    """(approved as proposed or with edits, decided)."""
    n = sum(counts[v] for v in (FeedbackVerdict.APPROVE, FeedbackVerdict.REJECT, FeedbackVerdict.MODIFY))
    return counts[FeedbackVerdict.APPROVE] + counts[FeedbackVerdict.MODIFY], n


def _runs_of(version: PromptVersion, since, until):
    try:
        Run = apps.get_model("traces", "Run")
    except LookupError:
        return None
    runs = Run.objects.filter(prompt_name=version.prompt.name, prompt_version=str(version.number),
                              status__in=["ok", "error"])
    if since is not None:
        runs = runs.filter(started_at__gte=since)
    if until is not None:
        runs = runs.filter(started_at__lt=until)
    return list(runs.order_by("-id").values_list("status", "cost", "duration_ms")[:MAX_RUNS])


def finished_runs(version: PromptVersion, since=None, until=None) -> int:
    runs = _runs_of(version, since, until)
    return len(runs) if runs else 0


def recent_runs(version: PromptVersion, limit: int = 20) -> list:
    """The newest runs whose spans named this version (empty without the traces app)."""
    try:
        Run = apps.get_model("traces", "Run")
    except LookupError:
        return []
    return list(Run.objects.filter(prompt_name=version.prompt.name, prompt_version=str(version.number))
                .order_by("-id")[:limit])


def incident_runs(version: PromptVersion, since=None, until=None) -> int | None:
    """Finished runs of this version that opened at least one incident; None without an incidents model."""
    try:
        Incident = apps.get_model("traces", "Incident")
    except LookupError:
        return None
    if "run" not in {f.name for f in Incident._meta.get_fields()}:
        return None
    rows = Incident.objects.filter(run__prompt_name=version.prompt.name, run__prompt_version=str(version.number),
                                   run__status__in=["ok", "error"])
    if since is not None:
        rows = rows.filter(run__started_at__gte=since)
    if until is not None:
        rows = rows.filter(run__started_at__lt=until)
    return rows.values("run").distinct().count()


def build_scorecard(version: PromptVersion, *, since: datetime | None = None,
                    until: datetime | None = None) -> Scorecard:
    counts = decision_counts(version, since=since, until=until)
    approved, decided = approval_counts(counts)
    edited = counts[FeedbackVerdict.MODIFY]
    metrics = {
        "approval": Metric("approval", "Approval rate", "rate", stats.wilson(approved, decided), approved, unit="%"),
        "edit": Metric("edit", "Edit rate", "rate", stats.wilson(edited, decided), edited, unit="%"),
    }
    notes = []
    reasons_qs = Feedback.objects.decisions().filter(version=version, verdict=FeedbackVerdict.REJECT)
    if since is not None:
        reasons_qs = reasons_qs.filter(created_at__gte=since)
    if until is not None:
        reasons_qs = reasons_qs.filter(created_at__lt=until)
    reasons = Counter((c or "unspecified") for c in reasons_qs.values_list("category", flat=True))
    runs = _runs_of(version, since, until)
    if runs is None:
        notes.append("No traces app: task success, cost and latency are not measured.")
        runs = []
    ok = sum(1 for status, _c, _d in runs if status == "ok")
    costs = [float(c or 0) for _s, c, _d in runs]
    latencies = [float(d) for _s, _c, d in runs if d is not None]
    metrics["success"] = Metric("success", "Task success", "rate", stats.wilson(ok, len(runs)), ok, unit="%")
    metrics["cost"] = Metric("cost", "Cost per run", "mean", stats.mean_interval(costs), values=costs, unit="$")
    metrics["latency"] = Metric("latency", "Latency per run", "mean", stats.mean_interval(latencies),
                                values=latencies, unit="ms")
    incidents = incident_runs(version, since, until)
    if incidents is None:
        notes.append("Incidents are not counted: no incidents model linked to runs exists.")
    else:
        k = min(incidents, len(runs))  # the run list is capped at MAX_RUNS
        metrics["incidents"] = Metric("incidents", "Runs with an incident", "rate", stats.wilson(k, len(runs)), k,
                                      unit="%")
    return Scorecard(version, metrics, reasons.most_common(), notes)


def _fmt(metric: Metric, value) -> str:
    if value is None:
        return "–"
    if metric.unit == "%":
        return f"{value * 100:.1f}%"
    if metric.unit == "$":
        return f"${value:.4f}"
    return f"{value:.0f} ms"


def compare_metric(a: Metric, b: Metric, name_a: str, name_b: str) -> Comparison:
    """Test a against b: two-proportion z for rates, Welch's t for means."""
    if a.kind == "rate":
        test_name = "two-proportion z-test"
        result = stats.two_proportion_z(a.successes, a.n, b.successes, b.n)
        statistic, p = (result if result else (None, None))
    else:
        test_name = "Welch t-test"
        result = stats.welch_t(a.values, b.values)
        statistic, p = ((result[0], result[2]) if result else (None, None))
    va, vb = a.interval.value, b.interval.value
    head = f"{a.label}: {name_a} {_fmt(a, va)} (n={a.n}) vs {name_b} {_fmt(b, vb)} (n={b.n})"
    if p is None:
        if a.n == 0 or b.n == 0 or (a.kind == "mean" and (a.n < 2 or b.n < 2)):
            return Comparison(a.key, a.label, a, b, test_name, None, None, False,
                              f"{head}: not enough data to compare.")
        return Comparison(a.key, a.label, a, b, test_name, None, None, False,
                          f"{head}: no variation in either sample, so nothing to test.")
    significant = p < ALPHA
    if significant:
        direction = "higher" if va > vb else "lower"
        statement = f"{head}: {name_a} is significantly {direction} ({test_name}, p = {p:.3f})."
    else:
        statement = f"{head}: the difference is within noise ({test_name}, p = {p:.3f}, not significant)."
    return Comparison(a.key, a.label, a, b, test_name, statistic, p, significant, statement)


def compare(card_a: Scorecard, card_b: Scorecard) -> list[Comparison]:
    name_a, name_b = f"v{card_a.version.number}", f"v{card_b.version.number}"
    return [compare_metric(card_a.metrics[key], card_b.metrics[key], name_a, name_b)
            for key in card_a.metrics if key in card_b.metrics]
