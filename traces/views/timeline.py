"""A run's page: header metrics, the waterfall (collapsed for big runs), span rows
after a cursor or under a parent, and the span panel."""

import json

from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from console.roles import STAFF_ROLES, role_required
from traces.models import Run, Span, SpanKind, SpanStatus
from traces.views import content, tree as trees

AFTER_LIMIT = 500  # rows per "after cursor" answer; the page asks again while more remain


def get_run_or_404(trace_id: str) -> Run:
    return get_object_or_404(Run.objects.select_related("agent"), trace_id=trace_id.lower())


def run_summary(tree: trees.Tree) -> dict:
    """Per-run figures the header shows beyond the run row: computed from the slim rows in memory."""
    by_kind: dict[str, int] = {}
    durations = []
    tools: dict[str, int] = {}
    for row in tree.spans.values():
        by_kind[row["kind"]] = by_kind.get(row["kind"], 0) + 1
        if row["kind"] == SpanKind.LLM:
            durations.append(row["duration_ms"])
        if row["tool_name"]:
            tools[row["tool_name"]] = tools.get(row["tool_name"], 0) + 1
    durations.sort()

    def pct(p):
        return durations[min(len(durations) - 1, int(p * len(durations)))] if durations else None

    return {"by_kind": sorted(by_kind.items()), "llm_p50": pct(0.5), "llm_p95": pct(0.95),
            "tools": sorted(tools.items(), key=lambda kv: -kv[1])[:8]}


@require_GET
@role_required(*STAFF_ROLES)
def run_detail(request, trace_id):
    run = get_run_or_404(trace_id)
    tree = trees.load_tree(run, fields=trees.TREE_FIELDS)
    depth = trees.page_depth(tree)
    rows, more = trees.slice_rows(tree, expand_depth=depth)
    trees.add_details(run, rows)
    cursor = max((row["seq"] for row in tree.spans.values()), default=0)
    return render(request, "traces/run.html", {
        "run": run, "spans": rows, "more": more, "run_id": run.pk, "cursor": cursor,
        "collapsed": depth != trees.ALL, "summary": run_summary(tree), "total_spans": len(tree),
    })


@require_GET
@role_required(*STAFF_ROLES)
def run_spans(request, trace_id):
    """Span rows for the page: ``after=<seq>`` (catch-up, seq order), ``under=<span id>`` (expand),
    or ``from=<span id>&within=<span id>&depth=<n>`` (the next slice after a "more" marker)."""
    run = get_run_or_404(trace_id)
    context = {"run": run, "run_id": run.pk, "more": None}
    if "after" in request.GET:
        after = request.GET["after"]
        if not (after.isascii() and after.isdigit()):
            raise Http404("after must be a seq number")
        tree = trees.load_tree(run, fields=("span_id", "parent_span_id", "seq"))
        rows = trees.slim_rows(Span.objects.filter(run_id=run.pk, seq__gt=int(after)), limit=AFTER_LIMIT + 1)
        context["after_more"] = len(rows) > AFTER_LIMIT
        rows = rows[:AFTER_LIMIT]
        for row in rows:  # depth is known here (the push does not know it; the browser works it out)
            row["depth"] = tree.depth.get(row["span_id"], 0)
            row["child_count"] = 0
        context["spans"] = rows
        context["after_cursor"] = rows[-1]["seq"] if rows else int(after)
        return render(request, "traces/partials/span_chunk.html", context)
    tree = trees.load_tree(run, fields=trees.TREE_FIELDS)
    if "from" in request.GET:
        within = request.GET.get("within", "")
        depth = request.GET.get("depth", "")
        expand_depth = int(depth) if depth.isascii() and depth.isdigit() else trees.ALL
        if within and within not in tree.spans:
            raise Http404("no such span")
        rows, more = trees.slice_rows(tree, within=within, start=request.GET["from"], expand_depth=expand_depth)
    else:
        under = request.GET.get("under", "")
        if under not in tree.spans:
            raise Http404("no such span")
        rows, more = trees.slice_rows(tree, within=under, expand_depth=trees.expansion_depth(tree, under))
    context.update(spans=trees.add_details(run, rows), more=more)
    return render(request, "traces/partials/span_chunk.html", context)


@require_GET
@role_required(*STAFF_ROLES)
def span_panel(request, trace_id, span_id):
    run = get_run_or_404(trace_id)
    span = get_object_or_404(Span, run_id=run.pk, span_id=span_id.lower())
    context = {"run": run, "span": span, "is_error": span.status == SpanStatus.ERROR,
               **content.panel_content(span)}
    context["approvals"] = content.approvals_for(run.trace_id, span.span_id, request.user)
    context["linked"] = content.linked_spans(run, span)
    if not request.htmx:
        return render(request, "traces/span_page.html", context)
    return render(request, "traces/partials/span_panel.html", context)


def pretty_json(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
