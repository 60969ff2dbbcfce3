"""Small filters for the trace views. They accept Span instances and ``values()`` dicts alike,
because the live pusher renders instances and the run page renders dicts (one slim query)."""

from datetime import datetime

from django import template
from django.template.defaultfilters import truncatechars
from django.utils.html import format_html
from django.utils.safestring import mark_safe

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
def start_ms(span) -> float:
    """Epoch milliseconds of the span's start (the browser rescales bars from these)."""
    value = _get(span, "start_ms")
    if value is not None:
        return round(float(value), 3)
    start = _get(span, "start_time")
    return round(start.timestamp() * 1000, 3) if start else 0


@register.filter
def offset_ms(span, run) -> float:
    """Milliseconds from the run's start to the span's start, never negative."""
    started = _get(run, "started_at")
    if not started:
        return 0
    return max(0.0, round(start_ms(span) - started.timestamp() * 1000, 3))


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


def _n(value: float) -> str:
    return f"{value:.3f}"


@register.simple_tag
def span_row(span, run, run_id):
    """One row of the waterfall (the markup of traces/partials/span_rows.html, which loops over this).

    Built in Python with format_html (every value escaped) because a run page renders
    hundreds of rows and the template engine costs about a millisecond a row here.
    """
    get = (span.get if isinstance(span, dict) else lambda name, default=None: getattr(span, name, default))
    span_id, kind = get("span_id"), get("kind") or "other"
    is_error = get("status") == "error"
    hidden = get("hidden_descendants") or 0
    children = get("child_count") or 0
    depth = get("depth")
    orphan = depth == 0 and bool(get("parent_span_id"))  # its parent has not arrived (yet)
    classes = (f"span-row span-kind-{kind}" + (" span-error" if is_error else "") + (" span-collapsed" if hidden else "")
               + (" span-detached" if orphan else ""))
    state = format_html(' data-hidden="{}"', hidden) if hidden else (mark_safe(' data-loaded="1"') if children else "")
    url = f"/runs/{run.trace_id}/spans/{span_id}/"
    extras = []
    if get("model"):
        extras.append(format_html('<span class="span-model">{}</span>', get("model")))
    if get("tool_name"):
        extras.append(format_html('<span class="span-tool">{}</span>', get("tool_name")))
    if hidden:
        extras.append(format_html('<span class="span-hidden-count">+{}</span>', hidden))
    status = ""
    if is_error:
        message = get("status_message") or ""
        status = format_html('<span class="span-status" title="{}">error{}{}</span>', message, ": " if message else "",
                             truncatechars(message, 80))
    return format_html(
        '<div id="span-{}-{}" class="{}" data-seq="{}" data-span-id="{}" data-parent-id="{}" data-depth="{}" '
        'data-start="{}" data-dur="{}" data-children="{}"{}>'
        '<span class="span-label depth-{}"><button type="button" class="span-toggle" aria-label="expand or collapse"{}>'
        '{}</button><span class="span-kind" title="{}">{} {}</span>'
        '<a class="span-name" href="{}" hx-get="{}" hx-target="#span-panel" hx-swap="innerHTML">{}</a>{}</span>'
        '<svg class="span-bar" viewBox="0 0 {} 10" preserveAspectRatio="none" aria-hidden="true">'
        '<rect x="{}" y="1" width="{}" height="8"/></svg>'
        '<span class="span-duration">{}</span>{}</div>\n',
        run_id, span_id, classes, get("seq"), span_id, get("parent_span_id") or "", "" if depth is None else depth,
        _n(start_ms(span)), _n(bar_width(span)), children or "", state,
        min(depth or 0, 24), "" if children else mark_safe(" hidden"), "▸" if hidden else "▾",
        kind_label(span), kind_icon(span), kind_label(span),
        url, url, get("name") or "", mark_safe("".join(str(e) for e in extras)),
        _n(run_scale_ms(run)), _n(offset_ms(span, run)), _n(bar_width(span)),
        human_ms(get("duration_ms")), status)
