"""Small filters for the trace views. They accept Span instances and ``values()`` dicts alike,
because the live pusher renders instances and the run page renders dicts (one slim query)."""

from datetime import datetime

from django import template

from traces.models import SpanKind

register = template.Library()

KIND_ICONS = {"agent": "◆", "llm": "✦", "tool": "⚙", "retriever": "⌕", "decision": "⑂", "state": "▤", "other": "•"}
_KIND_LABELS = dict(SpanKind.choices)


def _get(obj, name, default=None):
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def epoch_ms(value: datetime | None) -> int:
    return int(value.timestamp() * 1000) if value else 0


@register.filter
def kind_label(span) -> str:
    kind = _get(span, "kind", "other")
    return _KIND_LABELS.get(kind, kind)


@register.filter
def kind_icon(span) -> str:
    return KIND_ICONS.get(_get(span, "kind", "other"), "•")


@register.filter
def start_ms(span) -> int:
    """Epoch milliseconds of the span's start (the browser rescales bars from these)."""
    return epoch_ms(_get(span, "start_time"))


@register.filter
def offset_ms(span, run) -> float:
    """Milliseconds from the run's start to the span's start, never negative."""
    start = _get(span, "start_time")
    origin = _get(run, "started_at") or start
    if not start or not origin:
        return 0
    return max(0.0, round((start - origin).total_seconds() * 1000, 3))


@register.filter
def bar_width(span) -> float:
    return max(float(_get(span, "duration_ms", 0) or 0), 0.0)


@register.filter
def run_scale_ms(run) -> float:
    """Width of the timeline in ms: the run's span so far (at least 1 ms)."""
    started, ended = _get(run, "started_at"), _get(run, "ended_at")
    if started and ended:
        return max(1.0, round((ended - started).total_seconds() * 1000, 3))
    return max(1.0, float(_get(run, "duration_ms") or 1))


@register.filter
def human_ms(value) -> str:
    """1234.5 -> '1.23 s'; 0.4 -> '0.4 ms'; None -> ''."""
    if value is None or value == "":
        return ""
    ms = float(value)
    if ms < 1000:
        return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    minutes, seconds = divmod(ms / 1000, 60)
    if minutes < 60:
        return f"{int(minutes)}m {int(seconds)}s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)}h {int(minutes)}m"


@register.filter
def money(value) -> str:
    if value in (None, ""):
        return ""
    value = float(value)
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"
