"""Small filters for the trace views. They accept Span instances and ``values()`` dicts alike,
because the live pusher renders instances and the run page renders dicts (one slim query)."""

from datetime import datetime

from html import escape as _stdlib_escape

from django import template
from django.template.defaultfilters import truncatechars
from django.utils.safestring import mark_safe

from traces.models import SpanKind

register = template.Library()

KIND_ICONS = {"agent": "◆", "llm": "✦", "tool": "⚙", "retriever": "⌕", "decision": "⚖", "state": "▤", "other": "•"}
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


def _e(value) -> str:
    """Escape for HTML text and quoted attributes (& < > " ')."""
    return _stdlib_escape(str(value), quote=True)


@register.simple_tag
def span_row(span, run, run_id):
    """One row of the waterfall (the markup of traces/partials/span_rows.html, which loops over this).

    Built in Python because a run page renders hundreds of rows and the template engine
    costs about a millisecond a row here. Every text value goes through ``_e`` (html.escape,
    quotes included); numbers are formatted, never taken as markup.
    """
    get = (span.get if isinstance(span, dict) else lambda name, default=None: getattr(span, name, default))
    span_id, kind = _e(get("span_id")), _e(get("kind") or "other")
    is_error = get("status") == "error"
    hidden = int(get("hidden_descendants") or 0)
    children = int(get("child_count") or 0)
    depth = get("depth")
    depth = None if depth is None or depth == "" else int(depth)
    orphan = depth == 0 and bool(get("parent_span_id"))  # its parent has not arrived (yet)
    classes = (f"span-row span-kind-{kind}" + (" span-error" if is_error else "") + (" span-collapsed" if hidden else "")
               + (" span-detached" if orphan else ""))
    state = f' data-hidden="{hidden}"' if hidden else (' data-loaded="1"' if children else "")
    url = f"/runs/{_e(run.trace_id)}/spans/{span_id}/"
    extras = ""
    if get("model"):
        extras += f'<span class="span-model">{_e(get("model"))}</span>'
    if get("tool_name"):
        extras += f'<span class="span-tool">{_e(get("tool_name"))}</span>'
    if hidden:
        extras += f'<span class="span-hidden-count">+{hidden}</span>'
    status = ""
    if is_error:
        message = get("status_message") or ""
        status = (f'<span class="span-status" title="{_e(message)}">error'
                  f'{": " + _e(truncatechars(message, 80)) if message else ""}</span>')
    label = _e(kind_label(span))
    start, width = start_ms(span), bar_width(span)
    return mark_safe(
        f'<div id="span-{int(run_id)}-{span_id}" class="{classes}" data-seq="{int(get("seq") or 0)}" '
        f'data-span-id="{span_id}" data-parent-id="{_e(get("parent_span_id") or "")}" '
        f'data-depth="{"" if depth is None else depth}" data-start="{start:.3f}" data-dur="{width:.3f}" '
        f'data-children="{children or ""}"{state}>'
        f'<span class="span-label depth-{min(depth or 0, 24)}"><button type="button" class="span-toggle" '
        f'aria-label="expand or collapse"{"" if children else " hidden"}>{"▸" if hidden else "▾"}</button>'
        f'<span class="span-kind" title="{label}">{_e(kind_icon(span))} {label}</span>'
        f'<a class="span-name" href="{url}" hx-get="{url}" hx-target="#span-panel" hx-swap="innerHTML">'
        f'{_e(get("name") or "")}</a>{extras}</span>'
        f'<svg class="span-bar" viewBox="0 0 {run_scale_ms(run):.3f} 10" preserveAspectRatio="none" aria-hidden="true">'
        f'<rect x="{offset_ms(span, run):.3f}" y="1" width="{width:.3f}" height="8"/></svg>'
        f'<span class="span-duration">{_e(human_ms(get("duration_ms")))}</span>{status}</div>\n')
