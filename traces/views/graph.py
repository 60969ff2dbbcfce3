"""A run's causal graph: the span tree (parent → child) plus span links, laid out in
layers (depth → column, tree order → row) and drawn as SVG on the server.

The failing path (error spans and their ancestors) and the costly path (from the
root, always into the child subtree that cost most) are highlighted. Readable for
big runs: beyond ``SIBLINGS`` children (keeping those on a highlighted path) and
beyond ``MAX_NODES`` nodes, the rest of a parent's children become one "+k more" node.
"""

from decimal import Decimal

from django.shortcuts import render
from django.views.decorators.http import require_GET

from console.roles import STAFF_ROLES, role_required
from traces.charts import _join, format_html
from traces.models import SpanStatus
from traces.templatetags.traces_ui import KIND_ICONS, human_ms
from traces.views import tree as trees
from traces.views.timeline import get_run_or_404

SIBLINGS = 12
MAX_NODES = 600
COL_W, ROW_H, NODE_W, NODE_H = 210, 28, 180, 20


def failing_set(tree: trees.Tree) -> set[str]:
    failing = set()
    for sid, row in tree.spans.items():
        if row["status"] == SpanStatus.ERROR:
            while sid and sid not in failing:
                failing.add(sid)
                sid = tree.parent.get(sid, "")
    return failing


def costly_path(tree: trees.Tree) -> set[str]:
    """The chain from a root down through the costliest subtree at each step (empty when nothing cost)."""
    subtree: dict[str, Decimal] = {}
    order = []
    stack = list(tree.children.get("", []))
    while stack:
        sid = stack.pop()
        order.append(sid)
        stack.extend(tree.children.get(sid, ()))
    for sid in reversed(order):
        subtree[sid] = (tree.spans[sid]["cost"] or Decimal(0)) + sum(
            (subtree[c] for c in tree.children.get(sid, ())), Decimal(0))
    path = set()
    level = tree.children.get("", [])
    while level:
        best = max(level, key=lambda s: subtree[s])
        if subtree[best] <= 0:
            break
        path.add(best)
        level = tree.children.get(best, [])
    return path


def layout(tree: trees.Tree, failing: set[str], costly: set[str]) -> tuple[list[dict], list[dict]]:
    """Visible nodes with (col, row) and the parent edges; "+k more" nodes stand for the rest."""
    nodes, edges = [], []
    position: dict[str, dict] = {}
    stack: list = []

    def push_children(parent: str, depth: int):
        kept, more = _keep(tree.children.get(parent, []), failing, costly, depth, parent,
                           budget=MAX_NODES - len(nodes) - len(stack))
        stack.extend((parent, x) for x in reversed(kept + more))

    push_children("", 0)
    while stack:
        parent, item = stack.pop()
        if isinstance(item, dict):  # a "+k more" node
            node = item
        else:
            row = tree.spans[item]
            node = {"id": item, "col": tree.depth[item], "name": row["name"], "kind": row["kind"],
                    "error": row["status"] == SpanStatus.ERROR, "failing": item in failing,
                    "costly": item in costly, "duration": row["duration_ms"], "cost": row["cost"], "more": 0}
            position[item] = node
        node["row"] = len(nodes)
        nodes.append(node)
        if parent in position:
            edges.append({"from": position[parent], "to": node, "kind": "child"})
        if not isinstance(item, dict):
            push_children(item, tree.depth[item] + 1)
    for sid, row in tree.spans.items():
        for link in row.get("links") or []:
            target = link.get("span_id") if isinstance(link, dict) else None
            if sid in position and target in position and target != sid:
                edges.append({"from": position[target], "to": position[sid], "kind": "link"})
    return nodes, edges


def _keep(children: list[str], failing, costly, depth: int, parent: str, budget: int = MAX_NODES):
    """(children shown, [one "+k more" node]): highlighted ones always, then the first in order up to the limits."""
    limit = max(0, min(SIBLINGS, budget))
    if len(children) <= limit:
        return list(children), []
    marked = [c for c in children if c in failing or c in costly][:max(limit, SIBLINGS * 3)]
    plain = [c for c in children if c not in failing and c not in costly][:max(0, limit - len(marked))]
    keep = set(marked) | set(plain)
    shown = [c for c in children if c in keep]
    hidden = len(children) - len(shown)
    more = [{"id": f"more-{parent}", "col": depth, "name": f"+{hidden} more", "kind": "more", "error": False,
             "failing": False, "costly": False, "duration": None, "cost": None, "more": hidden}] if hidden else []
    return shown, more


def svg(run, nodes: list[dict], edges: list[dict]):
    cols = max((n["col"] for n in nodes), default=0) + 1
    width, height = 20 + cols * COL_W, 20 + max(len(nodes), 1) * ROW_H
    parts = [format_html('<svg class="causal-graph" viewBox="0 0 {} {}" width="{}" height="{}" role="img" '
                         'aria-label="{}">', width, height, width, height, "causal graph of the run")]
    for edge in edges:
        a, b = edge["from"], edge["to"]
        x1, y1 = 10 + a["col"] * COL_W + (NODE_W if edge["kind"] == "link" else 12), 10 + a["row"] * ROW_H + NODE_H
        x2, y2 = 10 + b["col"] * COL_W, 10 + b["row"] * ROW_H + NODE_H / 2
        if edge["kind"] == "child":
            d = f"M{x1},{y1} V{y2} H{x2}"
        else:
            d = f"M{x1},{y1 - NODE_H / 2} C{x1 + 60},{y1 - NODE_H / 2} {x2 + NODE_W + 60},{y2} {x2 + NODE_W},{y2}"
        cls = "edge edge-" + edge["kind"]
        if edge["kind"] == "child" and b.get("failing") and a.get("failing"):
            cls += " edge-failing"
        if edge["kind"] == "child" and b.get("costly") and a.get("costly"):
            cls += " edge-costly"
        parts.append(format_html('<path class="{}" d="{}" fill="none"/>', cls, d))
    for node in nodes:
        x, y = 10 + node["col"] * COL_W, 10 + node["row"] * ROW_H
        cls = "node kind-" + node["kind"]
        for flag in ("error", "failing", "costly"):
            if node[flag]:
                cls += " node-" + flag
        label = (KIND_ICONS.get(node["kind"], "") + " " + node["name"]).strip()
        label = label if len(label) <= 26 else label[:25] + "…"
        tip = f"{node['name']}"
        if node["duration"] is not None:
            tip += f" · {human_ms(node['duration'])}"
        if node["cost"]:
            tip += f" · ${float(node['cost']):.4f}"
        if node["more"]:
            parts.append(format_html('<g class="{}"><rect x="{}" y="{}" width="{}" height="{}" rx="4"/>'
                                     '<text x="{}" y="{}">{}</text></g>', cls, x, y, NODE_W, NODE_H, x + 6, y + 14,
                                     label))
            continue
        href = f"/runs/{run.trace_id}/spans/{node['id']}/"
        parts.append(format_html('<a href="{}" class="node-link"><g class="{}"><title>{}</title>'
                                 '<rect x="{}" y="{}" width="{}" height="{}" rx="4"/><text x="{}" y="{}">{}</text></g></a>',
                                 href, cls, tip, x, y, NODE_W, NODE_H, x + 6, y + 14, label))
    parts.append(format_html("</svg>"))
    return _join(parts)


@require_GET
@role_required(*STAFF_ROLES)
def run_graph(request, trace_id):
    run = get_run_or_404(trace_id)
    tree = trees.load_tree(run, fields=(*trees.ROW_FIELDS, "links"))
    failing, costly = failing_set(tree), costly_path(tree)
    nodes, edges = layout(tree, failing, costly)
    return render(request, "traces/graph.html", {
        "run": run, "graph": svg(run, nodes, edges), "node_count": len(nodes), "span_count": len(tree),
        "failing_count": len(failing), "costly_count": len(costly),
        "link_count": sum(1 for e in edges if e["kind"] == "link"),
    })
