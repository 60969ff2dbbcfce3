"""Server-rendered SVG charts: plain functions returning SVG markup.

Every label and value goes through ``format_html`` below (text escaped); the joined result is
therefore safe to emit. Geometry is in SVG attributes (CSP forbids style attributes).
"""

from collections.abc import Sequence

from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("series-0", "series-1", "series-2", "series-3")


def format_html(template: str, *args) -> SafeString:
    """Like django's format_html (text arguments escaped), but numbers keep format specs like {:.1f}."""
    return mark_safe(template.format(*[a if isinstance(a, (int, float)) and not isinstance(a, bool)
                                       else conditional_escape(a) for a in args]))


def _join(parts) -> SafeString:
    return mark_safe("".join(str(p) for p in parts))  # every part comes from format_html


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1) if value >= 1 else 1
    for step in (1, 2, 2.5, 5, 10):
        top = step * magnitude
        if top >= value:
            return float(top)
    return float(value)


def _fmt(value: float, unit: str = "") -> str:
    if unit == "$":
        return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"
    if unit == "%":  # axis ticks of a small rate are 0.25, 0.5...: rounding them to integers repeats labels
        return f"{value:.2f}".rstrip("0").rstrip(".") + "%"
    if unit == "ms":
        return f"{value / 1000:.1f}s" if value >= 1000 else f"{value:.0f}ms"
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


def line_chart(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], *,
               title: str, unit: str = "", width: int = 560, height: int = 180, bars: bool = False) -> SafeString:
    """One chart: x = ``labels`` (buckets), one line (or bar group) per series; None = no data."""
    left, right, top, bottom = 52, 10, 26, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _name, vs in series for v in vs if v is not None]
    y_max = _nice_max(max(values, default=0))
    n = max(len(labels), 1)
    step = plot_w / n
    parts = [format_html('<svg class="chart" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-label="{}">'
                         '<title>{}</title><text class="chart-title" x="{}" y="14">{}</text>',
                         width, height, width, height, title, title, left, title)]
    for i in range(5):  # grid and y labels
        y = top + plot_h - plot_h * i / 4
        parts.append(format_html('<line class="grid-line" x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}"/>'
                                 '<text class="axis" x="{}" y="{:.1f}" text-anchor="end">{}</text>',
                                 left, left + plot_w, y, y, left - 4, y + 4, _fmt(y_max * i / 4, unit)))
    every = max(1, n // 6)
    for i, label in enumerate(labels):
        if i % every == 0:
            parts.append(format_html('<text class="axis" x="{:.1f}" y="{}" text-anchor="middle">{}</text>',
                                     left + step * (i + 0.5), height - 8, label))
    for index, (name, vs) in enumerate(series):
        css = PALETTE[index % len(PALETTE)]
        if bars:
            group_w = step * 0.8 / max(len(series), 1)
            for i, v in enumerate(vs):
                if not v:
                    continue
                h = plot_h * v / y_max
                x = left + step * i + step * 0.1 + group_w * index
                parts.append(format_html('<rect class="bar {}" x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}">'
                                         '<title>{}: {} {}</title></rect>',
                                         css, x, top + plot_h - h, max(group_w, 1), h, labels[i], _fmt(v, unit), name))
        else:
            points = [(left + step * (i + 0.5), top + plot_h - plot_h * v / y_max, v, i)
                      for i, v in enumerate(vs) if v is not None]
            if points:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _v, _i in points)
                parts.append(format_html('<polyline class="line {}" points="{}" fill="none"/>', css, path))
                for x, y, v, i in points:
                    parts.append(format_html('<circle class="dot {}" cx="{:.1f}" cy="{:.1f}" r="2.5"><title>{}: {} {}'
                                             '</title></circle>', css, x, y, labels[i], _fmt(v, unit), name))
        legend_x = width - right - 78 * (len(series) - index)
        parts.append(format_html('<rect class="legend {}" x="{}" y="6" width="10" height="10"/>'
                                 '<text class="legend-label" x="{}" y="15">{}</text>',
                                 css, legend_x, legend_x + 14, name[:10]))
    parts.append(mark_safe("</svg>"))
    return _join(parts)


def bar_list(items: Sequence[tuple[str, float]], *, title: str, unit: str = "", width: int = 420,
             errors: Sequence[float] | None = None) -> SafeString:
    """Horizontal bars, one per (label, value); ``errors`` overlays a red part of each bar."""
    row_h, label_w = 20, 150
    height = 24 + row_h * max(len(items), 1)
    top = _nice_max(max((v for _l, v in items), default=0))
    parts = [format_html('<svg class="chart bars" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-label="{}">'
                         '<text class="chart-title" x="0" y="14">{}</text>', width, height, width, height, title, title)]
    for i, (label, value) in enumerate(items):
        y = 22 + i * row_h
        w = (width - label_w - 60) * value / top
        parts.append(format_html('<text class="axis" x="{}" y="{}" text-anchor="end">{}</text>'
                                 '<rect class="bar series-0" x="{}" y="{}" width="{:.1f}" height="{}"><title>{}: {}</title></rect>'
                                 '<text class="axis" x="{:.1f}" y="{}">{}</text>',
                                 label_w - 6, y + 13, label[:24], label_w, y + 3, max(w, 1), row_h - 6, label,
                                 _fmt(value, unit), label_w + w + 4, y + 13, _fmt(value, unit)))
        if errors and errors[i]:
            ew = (width - label_w - 60) * errors[i] / top
            parts.append(format_html('<rect class="bar series-err" x="{}" y="{}" width="{:.1f}" height="{}">'
                                     '<title>{}: {} errors</title></rect>',
                                     label_w, y + 3, max(ew, 1), row_h - 6, label, _fmt(errors[i])))
    if not items:
        parts.append(format_html('<text class="axis" x="0" y="38">{}</text>', "no data"))
    parts.append(mark_safe("</svg>"))
    return _join(parts)


def sparkline(values: Sequence[float], errors: Sequence[float] | None = None, *, width: int = 220,
              height: int = 44, title: str = "") -> SafeString:
    """A tiny bar chart (runs per bucket) with errors overlaid in red."""
    n = max(len(values), 1)
    top = max(max(values, default=0), 1)
    step = width / n
    parts = [format_html('<svg class="sparkline" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-label="{}">'
                         '<title>{}</title>', width, height, width, height, title, title)]
    for i, v in enumerate(values):
        h = (height - 2) * v / top
        parts.append(format_html('<rect class="bar series-0" x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}"/>',
                                 i * step + 1, height - h, max(step - 2, 1), h))
        if errors and errors[i]:
            eh = (height - 2) * errors[i] / top
            parts.append(format_html('<rect class="bar series-err" x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}"/>',
                                     i * step + 1, height - eh, max(step - 2, 1), eh))
    parts.append(mark_safe("</svg>"))
    return _join(parts)
