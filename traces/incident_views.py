"""Incidents, detector settings and earned autonomy pages (traces/watchers).

Staff roles read; Operators and Admins act on incidents; Admins edit detectors,
ratify or decline autonomy and set its bar.
"""

import json

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from agents.models import Agent
from console.pagination import keyset_page
from console.roles import STAFF_ROLES, Role, has_role, role_required
from traces.incident_models import (
    ActionKind,
    AutonomyGrant,
    DetectorConfig,
    DetectorKind,
    Incident,
    IncidentAction,
    IncidentStatus,
)
from traces.templatetags.traces_ui import human_ms, money
from traces.watchers import autonomy, detectors, services

STATUS_FILTERS = {"unresolved": None, "open": IncidentStatus.OPEN, "acknowledged": IncidentStatus.ACKNOWLEDGED,
                  "resolved": IncidentStatus.RESOLVED, "all": None}


def tile_context(user=None) -> dict:
    unresolved = Incident.objects.unresolved()
    return {"incidents_open": unresolved.filter(status=IncidentStatus.OPEN).count(),
            "incidents_unresolved": unresolved.count(),
            "incidents_latest": list(unresolved.select_related("agent").order_by("-id")[:5])}


# --- incidents ------------------------------------------------------------------------------------


@require_GET
@role_required(*STAFF_ROLES)
def incidents_list(request):
    status = request.GET.get("status", "unresolved")
    if status not in STATUS_FILTERS:
        status = "unresolved"
    qs = Incident.objects.select_related("agent").order_by("-id")
    if status == "unresolved":
        qs = qs.unresolved()
    elif STATUS_FILTERS[status]:
        qs = qs.filter(status=STATUS_FILTERS[status])
    agent = request.GET.get("agent", "")
    if agent.isascii() and agent.isdigit():
        qs = qs.filter(agent_id=int(agent))
    page = keyset_page(qs, request, size=50)
    return render(request, "traces/incidents/list.html", {
        "page": page, "incidents": page.items, "status": status, "statuses": list(STATUS_FILTERS),
        "live": status in ("unresolved", "all", "open") and not agent and not request.GET.get("cursor")})


def _panel_context(request, incident: Incident) -> dict:
    actions = list(IncidentAction.objects.filter(incident=incident).select_related("undone_by"))
    may_act = has_role(request.user, Role.OPERATOR)
    is_admin = has_role(request.user, Role.ADMIN)
    for action in actions:
        action.may_undo = may_act and action.undoable and (action.kind != ActionKind.ROLLBACK_PROMPT or is_admin)
    return {"incident": incident, "actions": actions, "may_act": may_act}


@require_GET
@role_required(*STAFF_ROLES)
def incident_detail(request, pk: int):
    incident = services.get_incident_for(request.user, pk)
    ev = incident.evidence or {}
    context = _panel_context(request, incident)
    context.update({"ev": ev, "figures": evidence_figures(incident), "chart": chart_for(incident),
                    "span_ids": (ev.get("span_ids") or [])[:50],
                    "trace_ids": (ev.get("trace_ids") or [])[:20],
                    "evidence_json": json.dumps(ev, indent=2, sort_keys=True, default=str)})
    return render(request, "traces/incidents/detail.html", context)


@require_GET
@role_required(*STAFF_ROLES)
def incident_panel(request, pk: int):
    incident = services.get_incident_for(request.user, pk)
    return render(request, "traces/incidents/partials/panel.html", _panel_context(request, incident))


def _after_change(request, incident_id: int):
    incident = services.get_incident_for(request.user, incident_id)
    if request.htmx:
        return render(request, "traces/incidents/partials/panel.html", _panel_context(request, incident))
    return redirect("incident", pk=incident_id)


@require_POST
@role_required(Role.OPERATOR)
def incident_acknowledge(request, pk: int):
    incident = services.get_incident_for(request.user, pk)
    services.acknowledge_incident(incident_id=incident.pk, user=request.user)
    return _after_change(request, incident.pk)


@require_POST
@role_required(Role.OPERATOR)
def incident_resolve(request, pk: int):
    incident = services.get_incident_for(request.user, pk)
    note = (request.POST.get("note") or "").strip()
    if not note:
        response = render(request, "traces/incidents/partials/panel.html",
                          {**_panel_context(request, incident), "note_error": "Say how it was resolved."})
        response.status_code = 400
        return response
    try:
        services.resolve_incident(incident_id=incident.pk, user=request.user, note=note)
    except services.AlreadyResolved as exc:
        messages.info(request, str(exc))
    return _after_change(request, incident.pk)


@require_POST
@role_required(Role.OPERATOR)
def incident_undo(request, pk: int, action_id: int):
    incident = services.get_incident_for(request.user, pk)
    action = get_object_or_404(IncidentAction, pk=action_id, incident=incident)
    try:
        services.undo_action(action_id=action.pk, user=request.user)
    except services.NotUndoable as exc:
        if request.htmx:
            response = render(request, "traces/incidents/partials/panel.html",
                              {**_panel_context(request, incident), "undo_error": str(exc)})
            response.status_code = 409
            return response
        messages.error(request, str(exc))
    return _after_change(request, incident.pk)


# --- the evidence's numbers, with their unit ---------------------------------------------------------


def _unit_of(incident: Incident):
    """How this kind's observed/threshold/baseline numbers read (cost in money, latency in ms, ...)."""
    ev = incident.evidence or {}
    kind = incident.kind
    if kind in (DetectorKind.RUN_COST, DetectorKind.BUDGET):
        return money
    if kind == DetectorKind.LATENCY:
        return human_ms
    if kind == DetectorKind.ERROR_RATE:
        return lambda v: f"{float(v):.0%}"
    if kind == DetectorKind.RUNAWAY and ev.get("measure") == "seconds":
        return lambda v: human_ms(float(v) * 1000)
    if kind == DetectorKind.RUNAWAY:
        return lambda v: f"{v} spans"
    if kind == DetectorKind.LOOP:
        return lambda v: f"{v} repeats"
    return lambda v: f"{v:g}" if isinstance(v, float) else str(v)


def evidence_figures(incident: Incident) -> dict:
    """observed, threshold, baseline (those present and numeric) as text with the kind's unit."""
    ev = incident.evidence or {}
    unit = _unit_of(incident)
    keys = {"observed": "observed", "threshold": "threshold", "baseline": "baseline", "baseline_p99": "baseline_p99"}
    return {name: unit(ev[key]) for name, key in keys.items()
            if isinstance(ev.get(key), int | float) and not isinstance(ev.get(key), bool)}


# --- the chart ------------------------------------------------------------------------------------

CHART_W, CHART_H = 320, 90


def chart_for(incident: Incident) -> dict | None:
    """Either a series with its baseline line, or two bars: observed against the baseline/threshold."""
    ev = incident.evidence or {}
    series = [float(v) for v in (ev.get("series") or []) if isinstance(v, int | float)]
    base = ev.get("baseline", ev.get("baseline_p99", ev.get("threshold")))
    observed = ev.get("observed")
    if len(series) >= 2:
        top = max(max(series), float(base or 0)) or 1.0
        step = CHART_W / (len(series) - 1)
        points = " ".join(f"{i * step:.1f},{CHART_H - v / top * (CHART_H - 10):.1f}" for i, v in enumerate(series))
        base_y = CHART_H - float(base or 0) / top * (CHART_H - 10)
        return {"kind": "series", "w": CHART_W, "h": CHART_H, "points": points, "base_y": round(base_y, 1),
                "base": base, "observed": observed}
    if isinstance(observed, int | float) and isinstance(base, int | float):
        top = max(float(observed), float(base)) or 1.0
        bar_h = lambda v: round(float(v) / top * (CHART_H - 20), 1)  # noqa: E731
        unit = _unit_of(incident)
        return {"kind": "bars", "w": CHART_W, "h": CHART_H, "base": base, "observed": observed,
                "base_text": unit(base), "observed_text": unit(observed),
                "base_h": bar_h(base), "observed_h": bar_h(observed),
                "base_y": round(CHART_H - bar_h(base), 1), "observed_y": round(CHART_H - bar_h(observed), 1),
                "base_label": "baseline" if "baseline" in ev or "baseline_p99" in ev else "threshold"}
    return None


# --- detector settings ------------------------------------------------------------------------------


@role_required(*STAFF_ROLES)
def detector_settings(request):
    error, form = "", {}
    if request.method == "POST":
        if not has_role(request.user, Role.ADMIN):
            raise PermissionDenied("Only Admins edit detectors.")
        form = request.POST
        kind = form.get("kind", "")
        agent = form.get("agent", "")
        agent_id = int(agent) if agent.isascii() and agent.isdigit() else None
        try:
            params = json.loads(form.get("params") or "{}")
            if not isinstance(params, dict):
                raise ValueError("params must be a JSON object")
            services.save_detector_config(kind=kind, agent_id=agent_id, enabled=form.get("enabled") == "on",
                                          params=params, actions=form.getlist("actions"), user=request.user)
        except (ValueError, json.JSONDecodeError) as exc:
            error = str(exc)
        else:
            messages.success(request, "Detector saved.")
            return redirect("incident-detectors")
    else:
        form = _saved_detector_form(request.GET.get("kind", ""), request.GET.get("agent", ""))
    rows = []
    for kind in DetectorKind:
        eff = detectors.settings_for(kind, None)
        rows.append({"kind": kind, "settings": eff, "params_json": json.dumps(eff.params, sort_keys=True),
                     "overrides": DetectorConfig.objects.filter(kind=kind, agent__isnull=False).select_related("agent")})
    response = render(request, "traces/incidents/detectors.html", {
        "rows": rows, "agents": Agent.objects.order_by("name"), "action_kinds": ActionKind.choices,
        "error": error, "form": form,
        "chosen_actions": form.getlist("actions") if error else form.get("actions", []),
        "may_edit": has_role(request.user, Role.ADMIN)})
    if error:
        response.status_code = 400
    return response


def _saved_detector_form(kind: str, agent: str) -> dict:
    """The form filled with what is in force for (kind, agent), so saving it unchanged changes nothing.

    Parameters are the row's own (the rest stays inherited); the playbook and the enabled flag are
    the effective ones, because saving replaces them.
    """
    kind = kind if kind in DetectorKind.values else DetectorKind.values[0]
    agent_id = int(agent) if agent.isascii() and agent.isdigit() else None
    if agent_id is not None and not Agent.objects.filter(pk=agent_id).exists():
        agent_id = None
    row = DetectorConfig.objects.filter(kind=kind, agent_id=agent_id).first()
    eff = detectors.settings_for(kind, agent_id)
    return {"kind": kind, "agent": "" if agent_id is None else str(agent_id),
            "enabled": "on" if eff.enabled else "",
            "params": json.dumps(row.params if row and row.params else {}, sort_keys=True),
            "actions": list(eff.actions)}


# --- autonomy -------------------------------------------------------------------------------------


@require_GET
@role_required(*STAFF_ROLES)
def autonomy_page(request):
    return render(request, "traces/incidents/autonomy.html", {
        "rows": autonomy.levels(), "bar": autonomy.bar(), "is_admin": has_role(request.user, Role.ADMIN)})


@require_POST
@role_required(Role.ADMIN)
def autonomy_decide(request, pk: int, verdict: str):
    grant = get_object_or_404(AutonomyGrant, pk=pk)
    note = (request.POST.get("note") or "").strip()
    try:
        if verdict == "ratify":
            autonomy.ratify(grant_id=grant.pk, user=request.user, note=note)
            messages.success(request, f"Auto-approval of {grant.action} ({grant.risk}) is on.")
        elif verdict == "decline":
            autonomy.decline(grant_id=grant.pk, user=request.user, note=note)
            messages.success(request, "Proposal declined.")
        else:
            return HttpResponse(status=404)
    except autonomy.GrantError as exc:
        messages.error(request, str(exc))
    return redirect("autonomy")


@require_POST
@role_required(Role.ADMIN)
def autonomy_bar(request):
    try:
        values = {"min_decisions": int(request.POST["min_decisions"]),
                  "min_unedited_rate": float(request.POST["min_unedited_rate"]),
                  "no_rejections_in_last": int(request.POST["no_rejections_in_last"]),
                  "incident_free_days": int(request.POST["incident_free_days"])}
        if not 0 <= values["min_unedited_rate"] <= 1 or min(values["min_decisions"], values["no_rejections_in_last"],
                                                            values["incident_free_days"]) < 0:
            raise ValueError
    except (KeyError, ValueError):
        messages.error(request, "The bar needs whole numbers and a rate between 0 and 1.")
        return redirect("autonomy")
    autonomy.update_bar(user=request.user, **values)
    messages.success(request, "Autonomy bar saved.")
    return redirect("autonomy")
