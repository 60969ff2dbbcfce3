"""Every state change of the traces app. ``from traces import services``.

``ingest_spans`` stores a batch of decoded spans in one transaction:

1. lock (upsert) the batch's runs in trace-id order, so concurrent batches of one
   run serialize on its row and never deadlock; a trace id that belongs to another
   agent is rejected, never merged;
2. write the spans in bulk (PostgreSQL: read which of the batch's spans are stored
   already, then ``COPY`` the others straight into ``traces_span``; the run locks of
   step 1 make that read exact, as spans are only ever written under them; SQLite:
   ``bulk_create``);
3. add to each run only the spans really inserted, so duplicates, late and
   out-of-order spans leave the totals right; the status follows from order-free
   facts (a root span arrived, errors seen, approval pending).
"""

import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import orjson
import psycopg
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from console.db import binding_cursor
from traces import live, partitions, pricing, redaction, watchers
from traces.models import Run, RunStatus, Span, SpanKind, SpanStatus, run_status
from traces.otlp import SpanRecord

log = logging.getLogger(__name__)

FOREIGN_TRACE = "trace id belongs to another agent's run"


@dataclass
class IngestResult:
    stored: int = 0          # newly inserted spans
    new_runs: int = 0        # runs this batch stored the first spans of
    duplicates: int = 0      # already stored before (acknowledged, stored once)
    rejected: Counter = field(default_factory=Counter)
    run_ids: list = field(default_factory=list)
    seq_ranges: dict = field(default_factory=dict)  # run id -> (lo, hi] seqs this batch took
    facts: dict = field(default_factory=dict)  # run id -> (run row after the batch, spans inserted): for watchers


# --- preparation (outside the transaction) -----------------------------------------------


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # built once: json.dumps builds one a call


def _dumps(value) -> str:
    """Compact JSON text: orjson (a fifth of the stdlib's time), the stdlib for what orjson refuses
    (integers past 64 bits, lone surrogates, non-string keys, nesting past 255 levels)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _ENCODER.encode(value)


def _without_nul(value):
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _json_text(value) -> str:
    text = _dumps(value)
    if "\\u0000" in text:  # PostgreSQL's jsonb refuses NUL; rare, so only then walk the value
        text = _dumps(_without_nul(value))
    return text


def _serialize(span: SpanRecord) -> None:
    span.attributes_json = _json_text(span.attributes)
    span.events_json = _json_text(span.events) if span.events else "[]"
    span.links_json = _json_text(span.links) if span.links else "[]"
    span.tool_arguments_json = None if span.tool_arguments is None else _json_text(span.tool_arguments)


def _redact(span: SpanRecord, redactor) -> Counter:
    counts = Counter()
    span.name = redactor.redact_text(span.name, counts)
    span.status_message = redactor.redact_text(span.status_message, counts)
    span.input_text = redactor.redact_text(span.input_text, counts)
    span.output_text = redactor.redact_text(span.output_text, counts)
    span.task = redactor.redact_text(span.task, counts)
    span.session_id = redactor.redact_text(span.session_id, counts)
    if span.tool_arguments is not None:
        span.tool_arguments = redactor.redact_value(span.tool_arguments, counts)
    span.attributes = redactor.redact_value(span.attributes, counts)
    if span.events:
        span.events = redactor.redact_value(span.events, counts)
    return counts


def prepare_spans(spans: list[SpanRecord]) -> Counter:
    """Redact, price and serialize spans in place; returns redactions per rule name.

    The usual span has nothing to redact: one cheap check over all its text
    (``Redactor.may_match``) skips the per-string walk for it.
    """
    redactor = redaction.get_redactor()
    total = Counter()
    for span in spans:
        strings = [span.name, span.status_message, span.input_text, span.output_text, span.task, span.session_id]
        redactor.strings_of(span.attributes, strings)
        if span.events:
            redactor.strings_of(span.events, strings)
        if span.tool_arguments is not None:
            redactor.strings_of(span.tool_arguments, strings)
        if redactor.may_match("\x00".join(strings)):
            counts = _redact(span, redactor)
            span.redaction_count = sum(counts.values())
            total.update(counts)
        _serialize(span)
        if not span.task and span.is_root and span.input_text:
            span.task = span.input_text[:500]  # already redacted
        span.cost = pricing.cost_of(model=span.model, input_tokens=span.input_tokens,
                                    output_tokens=span.output_tokens)
    return total


def _group_by_trace(spans: list[SpanRecord]) -> dict[str, list[SpanRecord]]:
    """Spans per trace id, a span sent twice in one batch kept once."""
    groups: dict[str, dict[str, SpanRecord]] = defaultdict(dict)
    for span in spans:
        groups[span.trace_id].setdefault(span.span_id, span)
    return {trace_id: list(by_id.values()) for trace_id, by_id in sorted(groups.items())}


# --- run aggregates ----------------------------------------------------------------------

_RUN_FIELDS = ("id", "trace_id", "agent_id", "name", "task", "status", "root_ended", "has_pending_approval",
               "session_id", "service_name", "started_at", "ended_at", "duration_ms", "span_count",
               "error_count", "input_tokens", "output_tokens", "total_tokens", "cost", "prompt_name",
               "prompt_version", "last_seq")


def _counts_tokens(span: SpanRecord) -> bool:
    # Agent spans usually repeat the sum of their LLM calls' usage: count each call once.
    return span.kind != SpanKind.AGENT


def apply_spans(run: dict, inserted: list[SpanRecord]) -> dict:
    """The run's new values after adding ``inserted`` (spans not stored before)."""
    run = dict(run)
    if inserted:
        ordered = sorted(inserted, key=lambda s: (s.start_ns, s.span_id))
        root = next((s for s in ordered if s.is_root), None)
        run["span_count"] += len(inserted)
        run["error_count"] += sum(1 for s in inserted if s.status == SpanStatus.ERROR)
        counted = [s for s in inserted if _counts_tokens(s)]
        input_tokens = sum(s.input_tokens for s in counted)
        output_tokens = sum(s.output_tokens for s in counted)
        run["input_tokens"] += input_tokens
        run["output_tokens"] += output_tokens
        run["total_tokens"] += input_tokens + output_tokens
        run["cost"] = Decimal(run["cost"]) + sum((s.cost for s in counted), Decimal(0))
        first_start = min(s.start_time for s in inserted)
        last_end = max(s.end_time for s in inserted)
        run["started_at"] = min(filter(None, [run["started_at"], first_start]))
        run["ended_at"] = max(filter(None, [run["ended_at"], last_end]))
        run["duration_ms"] = int((run["ended_at"] - run["started_at"]).total_seconds() * 1000)
        if root is not None:
            run["root_ended"] = True
            run["name"] = root.name
            run["task"] = root.task or run["task"]
        elif not run["name"]:
            run["name"] = ordered[0].name
        if not run["task"]:
            run["task"] = next((s.task for s in ordered if s.task), "")
        if not run["session_id"]:
            run["session_id"] = next((s.session_id for s in ordered if s.session_id), "")
        if not run["service_name"]:
            run["service_name"] = next((s.service_name for s in ordered if s.service_name), "")
        if root is not None and root.prompt_name:
            run["prompt_name"], run["prompt_version"] = root.prompt_name, root.prompt_version
        elif not run["prompt_name"]:
            prompted = [s for s in ordered if s.prompt_name]
            chosen = next((s for s in prompted if s.kind == SpanKind.LLM), prompted[0] if prompted else None)
            if chosen is not None:
                run["prompt_name"], run["prompt_version"] = chosen.prompt_name, chosen.prompt_version
    run["status"] = run_status(root_ended=run["root_ended"], error_count=run["error_count"],
                               waiting=run["has_pending_approval"])
    return run


# --- ingest --------------------------------------------------------------------------------


def ingest_spans(*, agent, spans: list[SpanRecord], now: datetime | None = None) -> IngestResult:
    """Store ``spans`` as ``agent``'s; durable when this returns. Idempotent per span.

    Redaction happens here, before anything is written. Spans of a trace that
    belongs to another agent are rejected (counted in ``result.rejected``).
    Live pushes are handed run ids after commit.
    """
    now = now or timezone.now()
    hits = prepare_spans(spans)
    groups = _group_by_trace(spans)
    result = IngestResult()
    if not groups:
        return result
    nested = connection.in_atomic_block  # an outer transaction: a failed batch cannot be retried here
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                if connection.vendor == "postgresql":
                    _store_postgresql(agent=agent, groups=groups, now=now, result=result)
                else:
                    _store_generic(agent=agent, groups=groups, now=now, result=result)
                if result.run_ids:
                    live.spans_ingested_on_commit(result.run_ids, result.seq_ranges)
                    # anomaly detectors (traces/watchers), from the facts in hand instead of re-reading them
                    watchers.spans_ingested_on_commit(result.run_ids, result.seq_ranges, result.facts)
            break
        except (psycopg.errors.CheckViolation, IntegrityError) as exc:
            # Run ids past the last day partition (the retention job has not run for days):
            # create the partitions and store the batch once more.
            if attempt == 2 or nested or "no partition" not in str(exc):
                raise
            partitions.ensure_partitions(now=now)
            result = IngestResult()
    redaction.record_hits(hits)
    return result


def _assign_seq(runs: dict[str, dict], groups: dict[str, list[SpanRecord]], result: IngestResult) -> None:
    for trace_id, run in runs.items():
        if run["last_seq"] == 0:  # read under the run's lock: one batch per run sees it first
            result.new_runs += 1
        batch = groups[trace_id]
        for offset, span in enumerate(batch, start=1):
            span.seq = run["last_seq"] + offset
        result.seq_ranges[run["id"]] = (run["last_seq"], run["last_seq"] + len(batch))


def _split_foreign(agent, runs: dict[str, dict], groups, result: IngestResult) -> dict[str, dict]:
    own = {}
    for trace_id, run in runs.items():
        if run["agent_id"] == agent.pk:
            own[trace_id] = run
        else:
            result.rejected[FOREIGN_TRACE] += len(groups[trace_id])
    return own


_SPAN_COLUMNS = ("run_id", "span_id", "parent_span_id", "name", "kind", "status", "status_message", "start_time",
                 "end_time", "duration_ms", "operation", "model", "provider", "input_tokens", "output_tokens",
                 "cache_tokens", "reasoning_tokens", "cost", "tool_name", "tool_arguments", "input_text",
                 "output_text", "attributes", "events", "links", "prompt_name", "prompt_version",
                 "redaction_count", "seq", "received_at")


def _span_row(run_id: int, s: SpanRecord, now: datetime) -> tuple:
    return (run_id, s.span_id, s.parent_span_id, s.name, s.kind, s.status, s.status_message, s.start_time,
            s.end_time, s.duration_ms, s.operation, s.model, s.provider, s.input_tokens, s.output_tokens,
            s.cache_tokens, s.reasoning_tokens, s.cost, s.tool_name, s.tool_arguments_json,
            s.input_text, s.output_text, s.attributes_json, s.events_json, s.links_json,
            s.prompt_name, s.prompt_version, s.redaction_count, s.seq, now)


def _esc(value: str) -> str:
    """A string in PostgreSQL's COPY text format (NUL, which text cannot hold, dropped)."""
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\n" in value or "\t" in value or "\r" in value:
        value = value.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    if "\x00" in value:
        value = value.replace("\x00", "")
    return value


def copy_line(run_id: int, s: SpanRecord, received: str) -> str:
    """One span as a COPY text line, columns in ``_SPAN_COLUMNS`` order.

    Ids, kinds, statuses and numbers never need escaping; free text and JSON do.
    """
    args = "\\N" if s.tool_arguments_json is None else _esc(s.tool_arguments_json)
    return (f"{run_id}\t{s.span_id}\t{s.parent_span_id}\t{_esc(s.name)}\t{s.kind}\t{s.status}\t"
            f"{_esc(s.status_message)}\t{s.start_time.isoformat()}\t{s.end_time.isoformat()}\t{s.duration_ms!r}\t"
            f"{_esc(s.operation)}\t{_esc(s.model)}\t{_esc(s.provider)}\t{s.input_tokens}\t{s.output_tokens}\t"
            f"{s.cache_tokens}\t{s.reasoning_tokens}\t{s.cost}\t{_esc(s.tool_name)}\t{args}\t"
            f"{_esc(s.input_text)}\t{_esc(s.output_text)}\t{_esc(s.attributes_json)}\t{_esc(s.events_json)}\t"
            f"{_esc(s.links_json)}\t{_esc(s.prompt_name)}\t{_esc(s.prompt_version)}\t{s.redaction_count}\t"
            f"{s.seq}\t{received}\n")


_UPSERT_RUNS = f"""
INSERT INTO traces_run (trace_id, agent_id, name, task, status, root_ended, has_pending_approval, session_id,
    service_name, span_count, error_count, input_tokens, output_tokens, total_tokens, cost, prompt_name,
    prompt_version, last_seq, created_at, updated_at)
SELECT t, %s::bigint, '', '', 'running', false, false, '', '', 0, 0, 0, 0, 0, 0, '', '', 0, %s::timestamptz,
    %s::timestamptz
FROM unnest(%s::text[]) AS t ORDER BY t
ON CONFLICT (trace_id) DO UPDATE SET trace_id = EXCLUDED.trace_id
RETURNING {", ".join(_RUN_FIELDS)}
"""

# Spans are only written under their run's lock (taken by _UPSERT_RUNS until commit), so what this reads
# is exactly what is stored. Prepared, it is pruned to the runs' partitions when it runs.
_STORED_SPANS = ("SELECT run_id, span_id FROM traces_span WHERE run_id = ANY(%s::bigint[]) "
                 "AND span_id = ANY(%s::text[])")
_COPY_SPANS = f"COPY traces_span ({', '.join(_SPAN_COLUMNS)}) FROM STDIN"

# What the stream detectors read of a run (traces.watchers.stream._RUN_COLUMNS, plus last_seq to coalesce).
_WATCHED_RUN_FIELDS = ("id", "trace_id", "agent_id", "span_count", "root_ended", "cost", "started_at", "prompt_name",
                       "prompt_version", "last_seq")

_UPDATED_RUN_FIELDS = ("name", "task", "status", "root_ended", "session_id", "service_name", "started_at",
                       "ended_at", "duration_ms", "span_count", "error_count", "input_tokens", "output_tokens",
                       "total_tokens", "cost", "prompt_name", "prompt_version", "last_seq")
_RUN_TYPES = {"name": "text", "task": "text", "status": "text", "root_ended": "boolean", "session_id": "text",
              "service_name": "text", "started_at": "timestamptz", "ended_at": "timestamptz",
              "duration_ms": "bigint", "span_count": "integer", "error_count": "integer",
              "input_tokens": "bigint", "output_tokens": "bigint", "total_tokens": "bigint", "cost": "numeric",
              "prompt_name": "text", "prompt_version": "text", "last_seq": "bigint"}
# One JSON parameter instead of an array per column: the client formats it with one json.dumps.
_UPDATE_RUNS = (
    "UPDATE traces_run AS r SET "
    + ", ".join(f"{name} = v.{name}" for name in _UPDATED_RUN_FIELDS)
    + ", updated_at = %s::timestamptz FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, "
    + ", ".join(f"{name} {_RUN_TYPES[name]}" for name in _UPDATED_RUN_FIELDS)
    + ") WHERE r.id = v.id"
)


def _jsonable(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _store_postgresql(*, agent, groups, now, result: IngestResult) -> None:
    with binding_cursor() as cur:  # the fixed statements below are prepared once per pooled connection
        cur.execute(_UPSERT_RUNS, (agent.pk, now, now, list(groups)), prepare=True)
        runs = {row[1]: dict(zip(_RUN_FIELDS, row)) for row in cur.fetchall()}
        runs = _split_foreign(agent, runs, groups, result)
        if not runs:
            return
        _assign_seq(runs, groups, result)
        cur.execute(_STORED_SPANS, ([run["id"] for run in runs.values()],
                                    [span.span_id for trace_id in runs for span in groups[trace_id]]), prepare=True)
        stored = set(cur.fetchall())
        received = now.isoformat()
        lines, updates = [], []
        for trace_id, run in runs.items():
            run_id, batch = run["id"], groups[trace_id]
            inserted = [s for s in batch if (run_id, s.span_id) not in stored] if stored else batch
            lines += [copy_line(run_id, span, received) for span in inserted]
            result.stored += len(inserted)
            result.duplicates += len(batch) - len(inserted)
            new = apply_spans(run, inserted)
            new["last_seq"] = run["last_seq"] + len(batch)
            updates.append({name: _jsonable(new[name]) for name in ("id", *_UPDATED_RUN_FIELDS)})
            result.run_ids.append(run_id)
            result.facts[run_id] = ({name: new[name] for name in _WATCHED_RUN_FIELDS}, inserted)
        if lines:
            with cur.copy(_COPY_SPANS) as copy:
                copy.write("".join(lines).encode())
        cur.execute(_UPDATE_RUNS, (now, _json_text(updates)), prepare=True)


def _store_generic(*, agent, groups, now, result: IngestResult) -> None:
    """SQLite (and any other database): ORM bulk writes; SQLite serializes writers."""
    trace_ids = list(groups)
    Run.objects.bulk_create(
        [Run(trace_id=t, agent=agent, status=RunStatus.RUNNING) for t in trace_ids], ignore_conflicts=True)
    runs = {row["trace_id"]: row for row in
            Run.objects.select_for_update().filter(trace_id__in=trace_ids).values(*_RUN_FIELDS)}
    runs = _split_foreign(agent, dict(sorted(runs.items())), groups, result)
    if not runs:
        return
    _assign_seq(runs, groups, result)
    run_ids = [run["id"] for run in runs.values()]
    existing = set(Span.objects.filter(run_id__in=run_ids).filter(
        span_id__in=[s.span_id for t in runs for s in groups[t]]).values_list("run_id", "span_id"))
    to_create = []
    for trace_id, run in runs.items():
        batch = groups[trace_id]
        inserted = [s for s in batch if (run["id"], s.span_id) not in existing]
        result.stored += len(inserted)
        result.duplicates += len(batch) - len(inserted)
        to_create += [Span(**dict(zip(_SPAN_COLUMNS, _orm_row(run["id"], s, now)))) for s in inserted]
        new = apply_spans(run, inserted)
        new["last_seq"] = run["last_seq"] + len(batch)
        Run.objects.filter(pk=run["id"]).update(updated_at=now, **{name: new[name] for name in _UPDATED_RUN_FIELDS})
        result.run_ids.append(run["id"])
        result.facts[run["id"]] = ({name: new[name] for name in _WATCHED_RUN_FIELDS}, inserted)
    Span.objects.bulk_create(to_create, ignore_conflicts=True, batch_size=500)


def _orm_row(run_id: int, s: SpanRecord, now: datetime) -> tuple:
    row = list(_span_row(run_id, s, now))
    for name in ("tool_arguments", "attributes", "events", "links"):
        index = _SPAN_COLUMNS.index(name)
        row[index] = getattr(s, name)
    return tuple(row)


# --- approvals -----------------------------------------------------------------------------


def set_run_waiting(trace_id: str, waiting: bool, *, agent_id: int) -> bool:
    """Mark the run of ``trace_id`` as waiting for (or no longer waiting for) an approval.

    Called by the approvals app. Only ``agent_id``'s own run is touched: a trace id is just a string
    an agent sends, and another agent's run is not its to mark. Returns False when that agent has no
    such run (yet). Idempotent; the status is recomputed from the run's order-free facts.
    """
    trace_id = (trace_id or "").lower()
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(trace_id=trace_id, agent_id=agent_id).first()
        if run is None:
            return False
        status = run_status(root_ended=run.root_ended, error_count=run.error_count, waiting=waiting)
        if run.has_pending_approval != waiting or run.status != status:
            Run.objects.filter(pk=run.pk).update(has_pending_approval=waiting, status=status,
                                                 updated_at=timezone.now())
            live.spans_ingested_on_commit([run.pk])
    return True
