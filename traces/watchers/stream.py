"""Detectors on the ingest stream.

Ingest hands over the run ids and the ``(lo, hi]`` seq range each batch wrote
(:func:`spans_ingested_on_commit`, called after commit), and with them the facts
it already holds in memory: each run's row after the batch and the spans it
inserted. A per-process worker thread coalesces them and, per dirty run, checks
those facts; only the loop check reads, in one query, a bounded window of the
latest spans of runs that got new tool calls, through the ``(run, seq)`` index.
Runs handed over without facts (and the catch-up sweep) read the run row and the
new spans from the database instead: never a scan of the spans table. ``settings.WATCHERS_MODE``: ``background`` (default),
``inline`` (in the committing thread; tests) or ``off``.
"""

import json
import logging
import threading
import time
from collections import OrderedDict
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from traces.incident_models import DetectorKind, ResourceTouch
from traces.models import Run, Span, SpanKind
from traces.templatetags.traces_ui import money  # titles show money as the pages do
from traces.watchers import baselines, detectors
from traces.watchers.detectors import Finding

log = logging.getLogger(__name__)

COALESCE_S = 0.02
SLOW_S = 0.5  # a stream check slower than this is logged
# Inserted spans held for the worker (ingest's facts). Past this, further runs are handed over without
# them and checked from the database, so a worker that falls behind ingest (a burst of incidents, a
# slow database) holds a bounded amount of memory instead of every span stored meanwhile.
FACTS_MAX_SPANS = 20_000
RESOURCE_ATTRIBUTES = ("resource", "console.resource")

_cond = threading.Condition()
_pending: dict[int, list[tuple[int, int]]] = {}
_facts: dict[int, tuple[dict, list] | None] = {}  # run id -> (run row, inserted spans); None: read the database
_facts_spans = 0  # inserted spans held in _facts
_thread: threading.Thread | None = None
_busy = False


def mode() -> str:
    return getattr(settings, "WATCHERS_MODE", "background")


def spans_ingested_on_commit(run_ids, seq_ranges: dict | None = None, facts: dict | None = None) -> None:
    """Called by ingest inside its transaction: look at these runs once it commits.

    ``facts`` maps a run id to (its row after this batch, the SpanRecords this batch inserted).
    """
    if mode() == "off":
        return
    ids, ranges = list(run_ids), dict(seq_ranges or {})
    transaction.on_commit(lambda: enqueue(ids, ranges, facts), robust=True)


def _merge_facts(run_id: int, facts: tuple[dict, list] | None) -> None:
    """Coalesce: the latest run row, every batch's spans; one batch without facts, or one past
    ``FACTS_MAX_SPANS`` held, sends the run to the database. Under ``_cond``."""
    global _facts_spans
    if facts is not None and _facts_spans + len(facts[1]) > FACTS_MAX_SPANS:
        facts = None
    if run_id not in _facts:
        _facts[run_id] = facts
        _facts_spans += len(facts[1]) if facts is not None else 0
        return
    held = _facts[run_id]
    if held is None or facts is None:
        _facts_spans -= len(held[1]) if held is not None else 0
        _facts[run_id] = None
        return
    run = facts[0] if facts[0]["last_seq"] >= held[0]["last_seq"] else held[0]
    _facts[run_id] = (run, held[1] + facts[1])
    _facts_spans += len(facts[1])


def enqueue(run_ids, seq_ranges: dict, facts: dict | None = None) -> None:
    facts = facts or {}
    if mode() == "inline":
        process({run_id: [seq_ranges[run_id]] if run_id in seq_ranges else [] for run_id in run_ids},
                facts=facts)
        return
    global _thread
    with _cond:
        for run_id in run_ids:
            _pending.setdefault(run_id, [])
            _merge_facts(run_id, facts.get(run_id))
        for run_id, rng in seq_ranges.items():
            _pending.setdefault(run_id, []).append(tuple(rng))
            if run_id not in run_ids:
                _merge_facts(run_id, None)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_work, name="watchers-stream", daemon=True)
            _thread.start()
        _cond.notify()


def _work() -> None:
    global _busy, _facts_spans
    while True:
        with _cond:
            while not _pending:
                _cond.wait()
            _busy = True
        time.sleep(COALESCE_S)  # let a burst of batches gather
        with _cond:
            batch, facts = dict(_pending), dict(_facts)
            _pending.clear()
            _facts.clear()
            _facts_spans = 0
        started = time.monotonic()
        try:
            opened = process(batch, facts=facts)
            took = time.monotonic() - started
            if took > SLOW_S:
                log.warning("watchers: %d runs took %.0f ms (%d incidents)", len(batch), took * 1000, len(opened))
        except Exception:  # noqa: BLE001 - the periodic jobs catch up on anything missed
            log.exception("watchers: stream check failed")
        finally:
            batch = facts = None  # an idle worker holds no spans of its last batch either
            # Django keeps the last error rolled back in an atomic block (an incident's dedupe
            # IntegrityError) on this thread's connection, and with its traceback every frame of the
            # round: the batch, its spans and windows, until the next such error.
            connection.rollback_exc = None
            connection.close()  # back to the pool (or closed): an idle worker holds no connection
            with _cond:
                _busy = False
                _cond.notify_all()


def drain(timeout: float = 10.0) -> bool:
    """Wait until the background worker has nothing pending (tests, benchmarks)."""
    deadline = time.monotonic() + timeout
    with _cond:
        while _pending or _busy:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _cond.wait(left)
    return True


# --- the checks -----------------------------------------------------------------------------------

_RUN_COLUMNS = ("id", "trace_id", "agent_id", "span_count", "root_ended", "cost", "started_at", "prompt_name",
                "prompt_version")


def process(batch: dict[int, list[tuple[int, int]]], *, now: datetime | None = None,
            facts: dict | None = None) -> list:
    """Run the stream detectors over each run's new spans; returns the incidents opened.

    Runs with ``facts`` (run id -> (run row, inserted SpanRecords), from ingest) are checked
    from them. For the others it reads: the runs (one query), which of their new spans are
    tool spans (one query over the ``(run, seq)`` ranges), attributes only of new spans that
    carry a named score or a ``resource`` (one query each, filtered in the database). Then,
    for all, a bounded window of the latest spans of runs that got new tool calls (one query).
    """
    from traces.watchers import services

    now = now or timezone.now()
    opened = []
    facts = {run_id: held for run_id, held in (facts or {}).items() if held is not None and run_id in batch}
    runs = [held[0] for held in facts.values()]
    unknown = [run_id for run_id in batch if run_id not in facts]
    if unknown:
        runs += list(Run.objects.filter(pk__in=unknown).values(*_RUN_COLUMNS))
    if not runs:
        return opened
    new = NewSpans.load(batch, runs, facts=facts)
    for run in runs:
        try:
            for finding in check_run(run, batch.get(run["id"]) or [], now=now, new=new):
                incident = services.open_incident(finding=finding, now=now)
                if incident is not None:
                    opened.append(incident)
        except Exception:  # noqa: BLE001 - one bad run must not hide the others
            log.exception("watchers: checking run %s failed", run["id"])
    return opened


def _ranges_q(batch: dict) -> Q:
    where = Q(pk__in=[])
    for run_id, ranges in batch.items():
        for lo, hi in ranges:
            where |= Q(run_id=run_id, seq__gt=lo, seq__lte=hi)
    return where


class NewSpans:
    """What the detectors need from a batch's new spans, read in a few set-wise queries."""

    def __init__(self):
        self.tool_runs: set[int] = set()
        self.scored: dict[int, list[dict]] = {}
        self.touched: dict[int, list[dict]] = {}
        self.windows: dict[int, list[dict]] = {}

    @classmethod
    def load(cls, batch: dict, runs: list[dict], *, facts: dict | None = None) -> "NewSpans":
        """``batch``: each run's new seq ranges; ``facts``: runs whose new spans are in memory (the
        others' are read from the database)."""
        found = cls()
        facts = facts or {}
        ranged = {run_id: ranges for run_id, ranges in batch.items() if ranges and run_id not in facts}
        if not ranged and not facts:
            return found
        names = set()
        for run in runs:
            conf = detectors.settings_for(DetectorKind.SCORE, run["agent_id"])
            if conf.enabled:
                names |= {c.get("attribute") for c in conf.params.get("checks") or [] if c.get("attribute")}
        if facts:
            found._from_memory(facts, names)
        if ranged:
            found._from_database(ranged, names)
        if found.tool_runs:
            found.windows = _windows(sorted(found.tool_runs), runs, batch, facts)
        return found

    def _from_database(self, ranged: dict, names: set) -> None:
        spans = Span.objects.filter(_ranges_q(ranged))
        tool_runs = set(spans.filter(kind=SpanKind.TOOL).order_by().values_list("run_id", flat=True).distinct())
        self.tool_runs |= tool_runs
        if names:
            for row in spans.filter(attributes__has_any_keys=sorted(names)).values("run_id", *_SPAN_COLUMNS)[:5000]:
                self.scored.setdefault(row["run_id"], []).append(row)
        if tool_runs:
            touched = spans.filter(kind=SpanKind.TOOL, attributes__has_any_keys=list(RESOURCE_ATTRIBUTES))
            for row in touched.values("run_id", *_SPAN_COLUMNS)[:5000]:
                self.touched.setdefault(row["run_id"], []).append(row)

    def _from_memory(self, facts: dict, names: set) -> None:
        """The same selections as ``_from_database``, over the inserted spans ingest handed over."""
        scored = touched = 0
        for run_id, (_run, spans) in facts.items():
            for span in spans:
                attributes = span.attributes
                if span.kind == SpanKind.TOOL:
                    self.tool_runs.add(run_id)
                    if touched < 5000 and any(name in attributes for name in RESOURCE_ATTRIBUTES):
                        self.touched.setdefault(run_id, []).append(_row_of(span))
                        touched += 1
                if names and scored < 5000 and any(name in attributes for name in names):
                    self.scored.setdefault(run_id, []).append(_row_of(span))
                    scored += 1


def _row_of(span) -> dict:
    """A SpanRecord as the rows ``_from_database`` reads (``_SPAN_COLUMNS``)."""
    return {"span_id": span.span_id, "kind": span.kind, "attributes": span.attributes, "seq": span.seq,
            "start_time": span.start_time}


_SPAN_COLUMNS = ("span_id", "kind", "attributes", "seq", "start_time")
_WINDOW_COLUMNS = ("span_id", "kind", "tool_name", "tool_arguments", "start_time", "seq")


def _window_size(agent_id: int) -> int:
    p = detectors.settings_for(DetectorKind.LOOP, agent_id).params
    return max(int(p["window"]), int(p["repeats"]) * int(p["max_cycle"]))


# --- loop windows, kept per process between batches ----------------------------------------------

WINDOW_CACHE_RUNS = 1024


class _Window:
    """The latest spans of one run as of seq ``hi``: every stored span with seq <= hi is either in
    ``spans`` (oldest first) or older than the ``capacity`` latest."""

    def __init__(self, *, hi: int, capacity: int, spans: list[dict]):
        self.hi, self.capacity, self.spans = hi, capacity, spans[-capacity:]

    def extend(self, ranges, spans, size: int) -> bool:
        """Add the spans of ``ranges`` (ingest's in-memory SpanRecords); False, unchanged, when the
        ranges do not follow on from ``hi`` (another process stored some) or ``size`` is too big."""
        if size > self.capacity:
            return False
        new = sorted(rng for rng in ranges if rng[1] > self.hi)
        hi = self.hi
        for lo, top in new:
            if lo != hi:
                return False
            hi = top
        self.spans += sorted((_window_row(s) for s in spans if s.seq > self.hi), key=lambda row: row["seq"])
        del self.spans[:-self.capacity]
        self.hi = hi
        return True

    def latest(self) -> list[dict]:
        return self.spans[::-1]


_window_lock = threading.Lock()
_window_cache: "OrderedDict[tuple[int, str], _Window]" = OrderedDict()


def _window_row(span) -> dict:
    """A SpanRecord as the rows ``_latest_spans`` reads (``_WINDOW_COLUMNS``)."""
    return {"span_id": span.span_id, "kind": span.kind, "tool_name": span.tool_name,
            "tool_arguments": span.tool_arguments, "start_time": span.start_time, "seq": span.seq}


def _windows(run_ids: list[int], runs: list[dict], batch: dict, facts: dict) -> dict[int, list[dict]]:
    """Each run's loop window, newest first: from this process's window of the run when the batch's
    spans follow on from it, else read (``_latest_spans``) and kept for the next batch."""
    run_of = {run["id"]: run for run in runs}
    windows, missing = {}, []
    with _window_lock:
        for run_id in run_ids:
            key = (run_id, run_of[run_id]["trace_id"])
            held, window = facts.get(run_id), _window_cache.get(key)
            size = _window_size(run_of[run_id]["agent_id"])
            if held is not None and window is None and min(batch.get(run_id) or [(1, 1)])[0] == 0:
                window = _window_cache[key] = _Window(hi=0, capacity=size, spans=[])  # a new run: nothing before
            if held is not None and window is not None and window.extend(batch.get(run_id) or [], held[1], size):
                _window_cache.move_to_end(key)
                windows[run_id] = window.latest()
            else:
                missing.append(run_id)
        _trim_windows()
    if not missing:
        return windows
    read = _latest_spans(missing, runs)
    capacity = max(_window_size(run_of[run_id]["agent_id"]) for run_id in missing)  # what the query read
    with _window_lock:
        for run_id in missing:
            windows[run_id] = read[run_id]
            key = (run_id, run_of[run_id]["trace_id"])
            if run_id not in facts:  # a catch-up or a batch without facts: its ranges are not all known
                _window_cache.pop(key, None)
                continue
            hi = max([top for _, top in batch.get(run_id) or []] + [row["seq"] for row in read[run_id]], default=0)
            _window_cache[key] = _Window(hi=hi, capacity=capacity, spans=read[run_id][::-1])
            _window_cache.move_to_end(key)
        _trim_windows()
    return windows


def _trim_windows() -> None:
    while len(_window_cache) > WINDOW_CACHE_RUNS:
        _window_cache.popitem(last=False)


def forget_windows() -> None:
    with _window_lock:
        _window_cache.clear()


def _latest_spans(run_ids: list[int], runs: list[dict]) -> dict[int, list[dict]]:
    """Each run's latest spans (its loop window), newest first: one LATERAL query on PostgreSQL,
    each branch an index range scan of ``(run, seq)`` that stops at the window."""
    agent_of = {run["id"]: run["agent_id"] for run in runs}
    size = max(_window_size(agent_of[run_id]) for run_id in run_ids)
    if connection.vendor != "postgresql":
        return {run_id: list(Span.objects.filter(run_id=run_id).order_by("-seq").values(*_WINDOW_COLUMNS)[:size])
                for run_id in run_ids}
    sql = (f"SELECT s.run_id, {', '.join('s.' + c for c in _WINDOW_COLUMNS)} FROM unnest(%s::bigint[]) AS r(id) "
           f"CROSS JOIN LATERAL (SELECT run_id, {', '.join(_WINDOW_COLUMNS)} FROM traces_span "
           f"WHERE run_id = r.id ORDER BY seq DESC LIMIT %s) s")
    windows: dict[int, list[dict]] = {run_id: [] for run_id in run_ids}
    with connection.cursor() as cursor:
        cursor.execute(sql, [run_ids, size])
        for row in cursor.fetchall():
            span = dict(zip(_WINDOW_COLUMNS, row[1:]))
            if isinstance(span["tool_arguments"], str):
                span["tool_arguments"] = json.loads(span["tool_arguments"])
            windows[row[0]].append(span)
    return windows


def check_run(run: dict, ranges, *, now: datetime, new: NewSpans | None = None) -> list[Finding]:
    if new is None:
        new = NewSpans.load({run["id"]: ranges}, [run])
    findings = []
    for check in (_check_runaway_spans, _check_run_cost):
        finding = check(run)
        if finding:
            findings.append(finding)
    if not ranges or run["id"] in new.tool_runs:  # no ranges: a catch-up sweep
        finding = _check_loop(run, new.windows.get(run["id"]))
        if finding:
            findings.append(finding)
        findings += _check_resource_conflicts(run, new.touched.get(run["id"], []))
    findings += _check_scores(run, new.scored.get(run["id"], []))
    return findings


def _run_key(run: dict) -> str:
    return f"a{run['agent_id']}:run:{run['trace_id']}"


def _check_loop(run: dict, latest: list[dict] | None = None) -> Finding | None:
    conf = detectors.settings_for(DetectorKind.LOOP, run["agent_id"])
    if not conf.enabled:
        return None
    p = conf.params
    repeats, max_cycle = int(p["repeats"]), int(p["max_cycle"])
    window = _window_size(run["agent_id"])
    if latest is None:
        latest = list(Span.objects.filter(run_id=run["id"]).order_by("-seq").values(*_WINDOW_COLUMNS)[:window])
    latest = latest[:window]
    tools = sorted((s for s in latest if s["kind"] == SpanKind.TOOL), key=lambda s: (s["start_time"], s["seq"]))
    ignore = frozenset(p.get("ignore_keys") or [])
    steps = [(_signature(s, ignore), s["span_id"]) for s in tools]
    loop = detectors.find_loop(steps, repeats=repeats, max_cycle=max_cycle)
    if not loop:
        return None
    what = loop["pattern"][0] if len(loop["pattern"]) == 1 else " → ".join(loop["pattern"])
    return Finding(kind=DetectorKind.LOOP, agent_id=run["agent_id"], dedupe_key=_run_key(run),
                   run_id=run["id"], trace_id=run["trace_id"],
                   title=f"Loop: {what[:200]} repeated {loop['repeats']} times",
                   evidence={**loop, "observed": loop["repeats"], "threshold": repeats,
                             "prompt_name": run["prompt_name"], "prompt_version": run["prompt_version"]})


def _signature(span: dict, ignore: frozenset) -> str:
    """The step signature, computed once per span while its window is kept (``_windows``)."""
    held = span.get("signature")
    if held is not None and held[0] == ignore:
        return held[1]
    signature = detectors.step_signature(span["tool_name"], span["tool_arguments"], ignore)
    span["signature"] = (ignore, signature)
    return signature


def _check_runaway_spans(run: dict) -> Finding | None:
    if run["root_ended"]:
        return None
    conf = detectors.settings_for(DetectorKind.RUNAWAY, run["agent_id"])
    limit = int(conf.params["max_spans"])
    if not conf.enabled or run["span_count"] <= limit:
        return None
    return Finding(kind=DetectorKind.RUNAWAY, agent_id=run["agent_id"], dedupe_key=_run_key(run),
                   run_id=run["id"], trace_id=run["trace_id"],
                   title=f"Runaway run: {run['span_count']} spans without finishing (limit {limit})",
                   evidence={"observed": run["span_count"], "threshold": limit, "measure": "spans",
                             "prompt_name": run["prompt_name"], "prompt_version": run["prompt_version"]})


def _check_run_cost(run: dict) -> Finding | None:
    cost = float(run["cost"] or 0)
    if cost <= 0:
        return None
    conf = detectors.settings_for(DetectorKind.RUN_COST, run["agent_id"])
    if not conf.enabled:
        return None
    p = conf.params
    limit, basis = None, {}
    if p.get("max_cost") is not None:
        limit, basis = float(p["max_cost"]), {"max_cost": float(p["max_cost"])}
    base = baselines.get_baseline(run["agent_id"])
    if base is not None and base.runs >= int(p["min_runs"]) and base.cost_p99 > 0:
        relative = base.cost_p99 * float(p["k"])
        if limit is None or relative < limit:
            limit = relative
        basis.update({"baseline_p99": base.cost_p99, "baseline_median": base.cost_median, "k": float(p["k"]),
                      "baseline_runs": base.runs})
    if limit is None or cost <= limit:
        return None
    return Finding(kind=DetectorKind.RUN_COST, agent_id=run["agent_id"], dedupe_key=_run_key(run),
                   run_id=run["id"], trace_id=run["trace_id"],
                   title=f"Run cost {money(cost)} above {money(limit)}",
                   evidence={"observed": cost, "threshold": limit, **basis,
                             "prompt_name": run["prompt_name"], "prompt_version": run["prompt_version"]})


def _check_scores(run: dict, new: list[dict]) -> list[Finding]:
    conf = detectors.settings_for(DetectorKind.SCORE, run["agent_id"])
    checks = conf.params.get("checks") or []
    if not conf.enabled or not checks:
        return []
    findings, seen = [], set()
    for span in new:
        for hit in detectors.score_crossings(span["attributes"], checks):
            if hit["attribute"] in seen:
                continue
            seen.add(hit["attribute"])
            findings.append(Finding(
                kind=DetectorKind.SCORE, agent_id=run["agent_id"],
                dedupe_key=f"{_run_key(run)}:{hit['attribute']}", run_id=run["id"], trace_id=run["trace_id"],
                title=f"Score {hit['attribute']} = {hit['value']:g} ({hit['op']} {hit['threshold']:g})",
                evidence={**hit, "observed": hit["value"], "span_ids": [span["span_id"]],
                          "prompt_name": run["prompt_name"], "prompt_version": run["prompt_version"]}))
    return findings


def _resource_of(span: dict) -> str:
    attrs = span["attributes"] or {}
    for name in RESOURCE_ATTRIBUTES:
        value = attrs.get(name)
        if isinstance(value, str) and value.strip():
            return value.replace("\x00", "").strip()[:300]  # from memory, NUL is not yet dropped
    return ""


def _check_resource_conflicts(run: dict, new: list[dict]) -> list[Finding]:
    touches = [(res, span) for span in new if span["kind"] == SpanKind.TOOL and (res := _resource_of(span))]
    if not touches:
        return []
    conf = detectors.settings_for(DetectorKind.CONFLICT, run["agent_id"])
    ResourceTouch.objects.bulk_create([ResourceTouch(resource=res, agent_id=run["agent_id"], run_id=run["id"],
                                                     span_id=span["span_id"], at=span["start_time"])
                                       for res, span in touches])
    if not conf.enabled:
        return []
    window = timedelta(seconds=int(conf.params["window_s"]))
    findings, seen = [], set()
    for res, span in touches:
        if res in seen:
            continue
        seen.add(res)
        other = (ResourceTouch.objects.filter(resource=res, at__gte=span["start_time"] - window,
                                              at__lte=span["start_time"] + window)
                 .exclude(agent_id=run["agent_id"]).order_by("-at").first())
        if other is None:
            continue
        findings.append(conflict_finding(resource=res, agent_id=run["agent_id"], other_agent_id=other.agent_id,
                                         at=span["start_time"], window_s=int(conf.params["window_s"]),
                                         evidence={"source": "tool spans", "span_ids": [span["span_id"]],
                                                   "other_span_id": other.span_id, "other_run_id": other.run_id},
                                         run=run))
    return findings


def conflict_finding(*, resource: str, agent_id: int, other_agent_id: int, at: datetime, window_s: int,
                     evidence: dict, run: dict | None = None) -> Finding:
    """One incident per resource, pair of agents and time bucket, whichever source saw it first."""
    pair = "-".join(str(a) for a in sorted((agent_id, other_agent_id)))
    bucket = int(at.timestamp()) // max(window_s, 1)
    return Finding(kind=DetectorKind.CONFLICT, agent_id=agent_id,
                   dedupe_key=f"conflict:{resource}:{pair}:{bucket}", run_id=run["id"] if run else None,
                   trace_id=run["trace_id"] if run else "",
                   title=f"Conflict: two agents acting on {resource}",
                   evidence={"resource": resource, "agents": sorted((agent_id, other_agent_id)), **evidence})
