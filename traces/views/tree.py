"""A run's span tree, built from one slim query, and the slices of it a page shows.

Big runs are shown collapsed: a page gets at most ``PAGE_ROWS`` rows; deeper
subtrees are folded ("+k") and fetched when expanded; a parent with more children
than fit gets a "more" marker that fetches the next slice.
"""

from dataclasses import dataclass, field

from django.db import connection
from django.db.models import FloatField
from django.db.models.expressions import RawSQL

from traces.models import Span

PAGE_ROWS = 250  # rows per page or expansion: keeps server and browser time flat for any run size
AUTO_DEPTH = 1  # in a big run, spans at depth 0..AUTO_DEPTH start expanded (their children shown)

ROW_FIELDS = ("span_id", "parent_span_id", "name", "kind", "status", "status_message", "duration_ms", "model",
              "tool_name", "seq", "cost", "input_tokens", "output_tokens")
# What the whole tree needs (structure, bars, the header's figures); the rest is read for shown rows only.
TREE_FIELDS = ("span_id", "parent_span_id", "kind", "status", "duration_ms", "tool_name", "seq")
DETAIL_FIELDS = ("span_id", "name", "status_message", "model")


def add_details(run, rows: list[dict]) -> list[dict]:
    """Fill name, model and status message into ``rows`` (the shown ones) with one query."""
    if rows:
        details = {d["span_id"]: d for d in Span.objects.filter(run_id=run.pk, span_id__in=[r["span_id"] for r in rows])
                   .values(*DETAIL_FIELDS)}
        for row in rows:
            row.update(details.get(row["span_id"], {}))
    return rows


def slim_rows(queryset, fields=ROW_FIELDS, *, limit: int | None = None) -> list[dict]:
    """``values(*fields)`` plus ``start_ms`` (epoch ms), in seq order (the (run, seq) index).

    Timestamps come as plain numbers from PostgreSQL: converting thousands of
    timestamptz values to aware datetimes costs more than the query itself.
    """
    queryset = queryset.order_by("seq")
    if connection.vendor == "postgresql":
        queryset = queryset.annotate(start_ms=RawSQL("extract(epoch from traces_span.start_time) * 1000", (),
                                                     output_field=FloatField())).values(*fields, "start_ms")
        return list(queryset[:limit] if limit is not None else queryset)
    queryset = queryset.values(*fields, "start_time")
    rows = list(queryset[:limit] if limit is not None else queryset)
    for row in rows:
        row["start_ms"] = row.pop("start_time").timestamp() * 1000
    return rows


@dataclass
class Tree:
    spans: dict[str, dict]
    children: dict[str, list[str]]  # "" -> roots (and orphans whose parent never arrived)
    parent: dict[str, str] = field(default_factory=dict)  # effective parent ("" for roots and orphans)
    descendants: dict[str, int] = field(default_factory=dict)
    depth: dict[str, int] = field(default_factory=dict)

    def __len__(self):
        return len(self.spans)


def load_tree(run, fields=ROW_FIELDS) -> Tree:
    """One query for the whole run (``values()``, no model instances), then pure Python."""
    rows = slim_rows(Span.objects.filter(run_id=run.pk), fields)
    rows.sort(key=lambda row: (row["start_ms"], row["seq"]))
    spans = {row["span_id"]: row for row in rows}
    children: dict[str, list[str]] = {"": []}
    for span_id, row in spans.items():
        parent = row["parent_span_id"]
        if parent not in spans or parent == span_id:
            parent = ""  # a root, or an orphan shown at top level until its parent arrives
        children.setdefault(parent, []).append(span_id)
    tree = Tree(spans=spans, children=children,
                parent={sid: (row["parent_span_id"] if row["parent_span_id"] in spans
                              and row["parent_span_id"] != sid else "") for sid, row in spans.items()})
    # depth and descendant counts without recursion (runs can be thousands deep)
    order = []
    stack = [(sid, 0) for sid in reversed(children[""])]
    while stack:
        sid, d = stack.pop()
        tree.depth[sid] = d
        order.append(sid)
        stack.extend((c, d + 1) for c in reversed(children.get(sid, ())))
    for sid in reversed(order):
        tree.descendants[sid] = sum(1 + tree.descendants[c] for c in children.get(sid, ()))
    return tree


ALL = 10**9  # expand_depth meaning "everything"


@dataclass
class More:
    """Where a page or expansion stopped: continue the walk at ``start`` inside ``within``."""

    start: str
    within: str
    expand_depth: int
    depth: int = 0


def page_depth(tree: Tree) -> int:
    return ALL if len(tree) <= PAGE_ROWS else AUTO_DEPTH + 1


def expansion_depth(tree: Tree, span_id: str) -> int:
    return ALL if tree.descendants.get(span_id, 0) <= PAGE_ROWS else tree.depth[span_id] + 1


def _stack_from(tree: Tree, start: str, within: str) -> list[str]:
    """A walk stack whose pops give ``start`` and then what follows it in tree order inside ``within``."""
    chain = [start]
    while tree.parent[chain[-1]] not in (within, ""):
        chain.append(tree.parent[chain[-1]])
    stack = []
    for node in reversed(chain):
        siblings = tree.children[tree.parent[node]]
        stack.extend(reversed(siblings[siblings.index(node) + 1:]))
    stack.append(start)
    return stack


def slice_rows(tree: Tree, *, within: str = "", start: str | None = None, expand_depth: int = ALL,
               budget: int = PAGE_ROWS) -> tuple[list[dict], More | None]:
    """Rows in tree order inside ``within``'s subtree (from ``start`` if given), at most ``budget``.

    A node deeper than ``expand_depth`` - 1 is folded: shown with its hidden descendant count.
    """
    if start is not None and start in tree.spans:
        stack = _stack_from(tree, start, within)
    else:
        stack = list(reversed(tree.children.get(within, [])))
    out: list[dict] = []
    while stack:
        sid = stack.pop()
        if len(out) >= budget:
            return out, More(start=sid, within=within, expand_depth=expand_depth, depth=tree.depth[sid])
        row = dict(tree.spans[sid])
        kids = tree.children.get(sid)
        row["depth"] = tree.depth[sid]
        row["child_count"] = len(kids) if kids else 0
        row["hidden_descendants"] = 0
        out.append(row)
        if kids:
            if tree.depth[sid] < expand_depth:
                stack.extend(reversed(kids))
            else:
                row["hidden_descendants"] = tree.descendants[sid]
    return out, None
