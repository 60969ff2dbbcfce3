"""Turning a span's stored content into readable pieces: conversation bubbles, formatted
JSON, a state diff. Returns plain strings and lists; the templates escape them."""

import difflib
import json
from datetime import UTC, datetime

from traces.models import SpanKind

MAX_BUBBLES = 200
STATE_KEYS = (("console.state.before", "console.state.after"), ("state.before", "state.after"))


def _loads(text):
    if not isinstance(text, str):
        return text
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{":
        return None
    try:
        return json.loads(stripped)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return None


def pretty(value) -> str:
    original = value
    if isinstance(value, str):
        parsed = _loads(value)
        if parsed is None:
            return value
        value = parsed
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    except (RecursionError, ValueError):  # nested too deep to lay out (an agent's JSON): shown as it came
        return original if isinstance(original, str) else str(original)


def _part_text(part) -> tuple[str, str]:
    """(kind, text) of one message part: text, a tool call, a tool result, or anything else as JSON."""
    if isinstance(part, str):
        return "text", part
    if not isinstance(part, dict):
        return "json", pretty(part)
    kind = part.get("type", "text")
    if kind == "text" and isinstance(part.get("content"), str):
        return "text", part["content"]
    if kind == "tool_call":
        args = part.get("arguments")
        return "tool_call", f"{part.get('name', 'tool')}({pretty(args) if args is not None else ''})"
    if kind == "tool_call_response":
        return "tool_result", pretty(part.get("response", part.get("result", "")))
    return "json", pretty(part)


def messages(text: str, default_role: str) -> list[dict]:
    """gen_ai messages JSON ([{role, parts|content}]) -> [{role, parts: [{kind, text}]}];
    anything else is one bubble with ``default_role``."""
    parsed = _loads(text)
    if isinstance(parsed, dict) and isinstance(parsed.get("messages"), list):
        parsed = parsed["messages"]
    if isinstance(parsed, dict) and "role" in parsed:
        parsed = [parsed]
    if not isinstance(parsed, list) or not all(isinstance(m, dict) for m in parsed):
        return [{"role": default_role, "parts": [{"kind": "json" if parsed is not None else "text",
                                                  "text": pretty(text) if parsed is not None else text}]}] if text else []
    bubbles = []
    for message in parsed[:MAX_BUBBLES]:
        role = str(message.get("role") or default_role)
        if isinstance(message.get("parts"), list):
            parts = [_part_text(p) for p in message["parts"]]
        elif "content" in message:
            content = message["content"]
            parts = [_part_text(p) for p in content] if isinstance(content, list) else [_part_text(content)]
        else:
            parts = [("json", pretty(message))]
        for call in message.get("tool_calls") or []:
            fn = call.get("function", call) if isinstance(call, dict) else {}
            parts.append(("tool_call", f"{fn.get('name', 'tool')}({pretty(fn.get('arguments', ''))})"))
        bubbles.append({"role": role, "parts": [{"kind": k, "text": t} for k, t in parts]})
    return bubbles


def state_diff(span) -> dict | None:
    """Before/after of a state span as lines marked '+', '-', ' '."""
    attrs = span.attributes or {}
    before = after = None
    for b_key, a_key in STATE_KEYS:
        if b_key in attrs or a_key in attrs:
            before, after = attrs.get(b_key, ""), attrs.get(a_key, "")
            break
    if before is None and span.kind == SpanKind.STATE and (span.input_text or span.output_text):
        before, after = span.input_text, span.output_text
    if before is None:
        return None
    lines = []
    for line in difflib.ndiff(pretty(before).splitlines(), pretty(after).splitlines()):
        if line.startswith("? "):
            continue
        lines.append({"op": {"+": "add", "-": "del"}.get(line[0], "same"), "text": line[2:]})
    return {"key": attrs.get("console.state.key", ""), "lines": lines}


def _ns_time(ns):
    try:
        return datetime.fromtimestamp(int(ns) / 1e9, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def panel_content(span) -> dict:
    attrs = span.attributes or {}
    skip = {k for pair in STATE_KEYS for k in pair}
    return {
        "input_messages": messages(span.input_text, "input") if span.kind != SpanKind.TOOL else [],
        "output_messages": messages(span.output_text, "output") if span.kind != SpanKind.TOOL else [],
        "tool_arguments": pretty(span.tool_arguments) if span.tool_arguments not in (None, "") else "",
        "tool_result": pretty(span.output_text) if span.kind == SpanKind.TOOL and span.output_text else "",
        "state": state_diff(span),
        "attributes": [{"key": k, "value": v if isinstance(v, str) else pretty(v)}
                       for k, v in sorted(attrs.items()) if k not in skip],
        "events": [{"name": e.get("name", ""), "time": _ns_time(e.get("time_unix_nano")),
                    "attributes": pretty(e.get("attributes") or {}) if e.get("attributes") else ""}
                   for e in (span.events or []) if isinstance(e, dict)],
    }


MAX_APPROVAL_TEXT = 2000
MAX_APPROVAL_DECISIONS = 10


def _short(value, limit: int = MAX_APPROVAL_TEXT) -> str:
    text = value if isinstance(value, str) else pretty(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"


def approvals_for(trace_id: str, span_id: str, user) -> list:
    """The approval requests asked from this span that ``user`` may see (a reviewer: their queues'), each with ``decision_rows`` (reviewer, verdict,
    reason, time) and ``execution`` (the report: result or error, time, whether a digest was checked).
    Agent- and reviewer-written text comes back as plain, size-limited strings; the template escapes it."""
    try:
        from approvals.models import ApprovalRequest
        from console.models import AuditEntry
    except ImportError:  # the approvals app is optional for this view
        return []
    requests = list(ApprovalRequest.objects.visible_to(user).filter(trace_id=trace_id, span_id=span_id)
                    .select_related("queue").order_by("pk")[:10])
    if not requests:
        return requests
    reports = {}
    for entry in (AuditEntry.objects.filter(target_type="approvals.approvalrequest", action="approval.executed",
                                            target_id__in=[str(r.pk) for r in requests]).order_by("id")):
        reports.setdefault(entry.target_id, entry.after or {})
    for req in requests:
        decisions = list(req.decisions.select_related("reviewer").order_by("created_at", "id")[:MAX_APPROVAL_DECISIONS])
        req.decision_rows = [{"reviewer": d.reviewer.get_username() if d.reviewer_id else "—",
                              "verdict": d.get_verdict_display(), "category": d.get_reason_category_display(),
                              "reason": _short(d.reason, 500), "at": d.created_at,
                              "arguments": _short(d.arguments) if d.arguments is not None else ""}
                             for d in decisions]
        req.approvals_given = sum(1 for d in decisions if d.verdict in ("approve", "modify"))
        req.execution = None
        if req.executed_at:
            report = reports.get(str(req.pk), {})
            reported = report.get("reported_digest")
            req.execution = {
                "at": req.executed_at, "ok": not req.execution_error,
                "result": _short(req.execution_result) if req.execution_result is not None else "",
                "error": _short(req.execution_error, 1000),
                "digest": req.answer_digest,
                "checked": bool(reported or report.get("arguments_checked")),
            }
        req.edited_text = (_short(req.final_arguments) if req.final_arguments is not None
                           and req.final_arguments != req.arguments else "")
    return requests


def linked_spans(run, span) -> list[dict]:
    links = []
    for link in span.links or []:
        if not isinstance(link, dict):
            continue
        same = link.get("trace_id") == run.trace_id
        links.append({"trace_id": link.get("trace_id", ""), "span_id": link.get("span_id", ""), "same_run": same})
    return links
