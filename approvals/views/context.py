"""What the decision page shows around a request: why (the run), the rule, neighbours, history.

The traces and prompts apps are read through their models only when their
tables exist, so this page works before (or without) them.
"""

import json

from django.db import connection

from approvals.models import ApprovalRequest, Delivery, EscalationFiring, Status
from console.models import AuditEntry

RECENT_SPANS = 12
_TABLES_SEEN: set[str] = set()


def _table_exists(model) -> bool:
    table = model._meta.db_table
    if table in _TABLES_SEEN:
        return True
    if table in connection.introspection.table_names():
        _TABLES_SEEN.add(table)
        return True
    return False


def run_context(req) -> dict:
    """The run's most recent spans (oldest first) when the traces app has the run; else nothing."""
    if not req.trace_id:
        return {"run": None, "spans": []}
    try:
        from traces.models import Run, Span
    except ImportError:
        return {"run": None, "spans": []}
    if not (_table_exists(Run) and _table_exists(Span)):
        return {"run": None, "spans": []}
    run = Run.objects.filter(trace_id=req.trace_id).first()
    if run is None:
        return {"run": None, "spans": []}
    spans = list(Span.objects.filter(run=run).order_by("-start_time", "-seq")[:RECENT_SPANS])
    spans.reverse()
    return {"run": run, "spans": spans}


def prompt_exists(name: str) -> bool:
    if not name:
        return False
    try:
        from agents.models import Prompt
    except ImportError:
        return False
    return _table_exists(Prompt) and Prompt.objects.filter(name=name).exists()


def pretty_json(value) -> str:
    """Indented JSON text; the template escapes it."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def detail_context(user, req) -> dict:
    same_resource = []
    if req.resource:
        same_resource = list(ApprovalRequest.objects.visible_to(user)
                             .filter(status=Status.PENDING, resource=req.resource).exclude(pk=req.pk)
                             .select_related("agent").order_by("due_at", "pk")[:20])
    decisions = list(req.decisions.select_related("reviewer").order_by("created_at", "id"))
    for d in decisions:
        d.arguments_text = pretty_json(d.arguments) if d.arguments is not None else ""
    firings = list(EscalationFiring.objects.filter(request=req).order_by("fired_at", "id"))
    deliveries = list(Delivery.objects.filter(request=req).order_by("-id")[:50])
    audit = list(AuditEntry.objects.filter(target_type="approvals.approvalrequest", target_id=str(req.pk))
                 .order_by("id")[:100])
    rule = req.matched_rule
    return {
        **run_context(req),
        "arguments_text": pretty_json(req.arguments),
        "final_text": pretty_json(req.final_arguments) if req.final_arguments is not None else "",
        "edited": req.final_arguments is not None and req.final_arguments != req.arguments,
        "context_text": pretty_json(req.context) if req.context else "",
        "rule": rule,
        "rule_conditions": [f"{c.get('field')} {c.get('op')} {json.dumps(c.get('value'))}"
                            for c in (rule.conditions or [])] if rule else [],
        "same_resource": same_resource,
        "prompt_link": prompt_exists(req.prompt_name),
        "decisions": decisions,
        "firings": firings,
        "deliveries": deliveries,
        "audit_entries": audit,
    }
