"""Every state change of the watchers: incidents, their playbooks, holds, detector settings.

``from traces.watchers import services``. Other apps call only ``agent_requires_human``.
"""

import logging
from datetime import datetime

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone

from console import audit
from console.roles import STAFF_ROLES, Role, has_role
from traces.incident_models import (
    ActionKind,
    ActionState,
    AgentHold,
    DetectorConfig,
    DetectorKind,
    Incident,
    IncidentAction,
    IncidentStatus,
)
from traces.watchers import detectors, live, playbooks
from traces.watchers.detectors import Finding

log = logging.getLogger(__name__)

ACTOR = playbooks.ACTOR


class IncidentError(Exception):
    pass


class AlreadyResolved(IncidentError):
    pass


class NotUndoable(IncidentError):
    pass


def agent_requires_human(agent_id: int) -> bool:
    """True while an uncleared hold (a ``require_approval`` playbook action) covers the agent."""
    return AgentHold.objects.filter(agent_id=agent_id, cleared_at__isnull=True).exists()


def get_incident_for(user, pk: int) -> Incident:
    if not has_role(user, *STAFF_ROLES):
        raise PermissionDenied("Your role does not allow incidents.")
    return get_object_or_404(Incident.objects.select_related("agent", "run"), pk=pk)


# --- opening: the ledger row, then the playbook, in one transaction ------------------------------


def open_incident(*, finding: Finding, now: datetime | None = None) -> Incident | None:
    """Open the incident for ``finding`` and run its playbook; None if this anomaly already has one.

    Exactly once under concurrency: the unique (kind, dedupe_key) decides, and the playbook's
    actions are written in the same transaction as the incident row. An action that fails is
    recorded as failed; it never prevents the incident.
    """
    now = now or timezone.now()
    conf = detectors.settings_for(finding.kind, finding.agent_id)
    evidence = dict(finding.evidence)
    evidence.setdefault("config_id", conf.config_id)
    try:
        with transaction.atomic():
            incident = Incident.objects.create(
                kind=finding.kind, dedupe_key=finding.dedupe_key[:300], agent_id=finding.agent_id,
                run_id=finding.run_id, trace_id=finding.trace_id or "", title=finding.title[:300],
                evidence=evidence, opened_at=now)
            audit.record(actor=ACTOR, action="incident.opened", target=incident, at=now,
                         after={"kind": finding.kind, "agent_id": finding.agent_id, "trace_id": finding.trace_id,
                                "key": finding.dedupe_key, "actions": conf.actions})
            for kind in conf.actions:
                _run_action(incident, kind, conf.params, now)
            from traces.watchers import autonomy

            autonomy.demote_for_incident(incident=incident, now=now)
            live.push_incident_on_commit(incident.pk, created=True)
    except IntegrityError:
        return None  # this anomaly already has its incident (another worker won)
    return incident


def _run_action(incident: Incident, kind: str, params: dict, now: datetime) -> IncidentAction:
    handler = playbooks.ACTIONS[kind]
    state, detail, error = ActionState.DONE, {}, ""
    try:
        with transaction.atomic():
            detail = handler(incident, params, now) or {}
    except playbooks.NothingToDo as exc:
        state, error = ActionState.SKIPPED, str(exc)
    except IntegrityError:
        raise  # the ledger (or a concurrent writer) decides: let the incident roll back too
    except Exception as exc:  # noqa: BLE001 - one failing action must not stop the others
        log.exception("playbook action %s failed for incident %s", kind, incident.pk)
        state, error = ActionState.FAILED, f"{type(exc).__name__}: {exc}"
    action = IncidentAction.objects.create(incident=incident, kind=kind, state=state, detail=detail,
                                           error=error[:500], created_at=now)
    audit.record(actor=ACTOR, action=f"incident.action.{kind}", target=incident, at=now,
                 after={"state": state, "detail": detail, "error": error[:500]})
    return action


# --- people acting on an incident -----------------------------------------------------------------


def _require_actor(user) -> None:
    if not has_role(user, Role.OPERATOR):
        raise PermissionDenied("Only Operators and Admins act on incidents.")


def acknowledge_incident(*, incident_id: int, user, now: datetime | None = None) -> Incident:
    """Open -> acknowledged; idempotent (a second acknowledge changes nothing)."""
    _require_actor(user)
    now = now or timezone.now()
    with transaction.atomic():
        changed = Incident.objects.filter(pk=incident_id, status=IncidentStatus.OPEN).update(
            status=IncidentStatus.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=user, updated_at=now)
        incident = Incident.objects.get(pk=incident_id)
        if changed:
            audit.record(actor=user, action="incident.acknowledged", target=incident, at=now,
                         before={"status": IncidentStatus.OPEN}, after={"status": incident.status})
            live.push_incident_on_commit(incident.pk)
    return incident


def resolve_incident(*, incident_id: int, user, note: str, now: datetime | None = None) -> Incident:
    """Resolve with a note; raises AlreadyResolved. Actions still in effect stay until undone."""
    _require_actor(user)
    now = now or timezone.now()
    with transaction.atomic():
        before = Incident.objects.filter(pk=incident_id).values_list("status", flat=True).first()
        changed = Incident.objects.filter(pk=incident_id).exclude(status=IncidentStatus.RESOLVED).update(
            status=IncidentStatus.RESOLVED, resolved_at=now, resolved_by=user, resolution_note=note[:5000],
            updated_at=now)
        incident = Incident.objects.get(pk=incident_id)
        if not changed:
            raise AlreadyResolved(f"Incident #{incident_id} is already resolved.")
        audit.record(actor=user, action="incident.resolved", target=incident, at=now,
                     before={"status": before}, after={"status": IncidentStatus.RESOLVED, "note": note[:500]})
        live.push_incident_on_commit(incident.pk)
    return incident


def undo_action(*, action_id: int, user, now: datetime | None = None) -> IncidentAction:
    """Reverse one playbook action, once; raises NotUndoable. Rolling a prompt back is undone by Admins only."""
    _require_actor(user)
    now = now or timezone.now()
    with transaction.atomic():
        action = IncidentAction.objects.select_for_update().select_related("incident__agent").get(pk=action_id)
        if not action.undoable:
            raise NotUndoable(f"This action is {action.get_state_display().lower()}; there is nothing to undo.")
        if action.kind == ActionKind.ROLLBACK_PROMPT and not has_role(user, Role.ADMIN):
            raise PermissionDenied("Only an Admin may move a prompt label back.")
        result = playbooks.undo(action, user=user, now=now)
        IncidentAction.objects.filter(pk=action.pk).update(state=ActionState.UNDONE, undone_at=now, undone_by=user)
        action.refresh_from_db()
        audit.record(actor=user, action="incident.action_undone", target=action.incident, at=now,
                     before={"action": action.kind, "state": ActionState.DONE},
                     after={"action": action.kind, "state": ActionState.UNDONE, "result": result})
        live.push_incident_on_commit(action.incident_id)
    return action


def lift_playbook_pauses(*, agent_ids: list[int], actor: str, now: datetime | None = None) -> list[IncidentAction]:
    """Resume each of these agents whose current pause is a playbook's, and mark that pause action
    undone by ``actor`` (a system actor: the demo on restart), audited. A pause a person made is left
    alone; the incidents stay as they are. Idempotent: a second call finds nothing to do.
    """
    from agents import services as agent_services
    from agents.models import Agent

    now = now or timezone.now()
    lifted = []
    candidates = (IncidentAction.objects.filter(kind=ActionKind.PAUSE, state=ActionState.DONE,
                                                incident__agent_id__in=agent_ids, incident__agent__is_paused=True)
                  .select_related("incident__agent"))
    for action in candidates:
        with transaction.atomic():
            agent = Agent.objects.select_for_update().get(pk=action.incident.agent_id)
            if not (agent.is_paused and _paused_by_playbook(agent, action.incident_id)):
                continue  # resumed, or paused again since by someone else
            if not IncidentAction.objects.filter(pk=action.pk, state=ActionState.DONE).update(
                    state=ActionState.UNDONE, undone_at=now, detail={**(action.detail or {}), "undone_by": actor}):
                continue
            agent_services.resume_agent(agent_id=agent.pk, actor=actor)
            audit.record(actor=actor, action="incident.action_undone", target=action.incident, at=now,
                         before={"action": action.kind, "state": ActionState.DONE},
                         after={"action": action.kind, "state": ActionState.UNDONE, "result": {"resumed": True}})
            live.push_incident_on_commit(action.incident_id)
        lifted.append(action)
    return lifted


def _paused_by_playbook(agent, incident_id: int) -> bool:
    """Whether the agent's current pause is the one the playbook of ``incident_id`` made: its latest
    pause in the audit log is the playbook's. The reason text alone would not do: a person pausing the
    agent again may well type "incident #12: ..." too. Call with the agent row locked."""
    from console.models import AuditEntry

    latest = (AuditEntry.objects.filter(action="agent.paused", target_type="agents.agent", target_id=str(agent.pk))
              .order_by("-id").values("actor").first())
    return (latest is not None and latest["actor"] == ACTOR
            and agent.paused_reason.startswith(f"incident #{incident_id}:"))


# --- detector settings (Admin) ----------------------------------------------------------------------


def save_detector_config(*, kind: str, agent_id: int | None, enabled: bool, params: dict,
                         actions: list[str] | None, user) -> DetectorConfig:
    """Create or update the (kind, agent) row; audited with before/after. Admins only."""
    if not has_role(user, Role.ADMIN):
        raise PermissionDenied("Only Admins edit detectors.")
    if kind not in DetectorKind.values:
        raise ValueError(f"unknown detector {kind!r}")
    unknown = [a for a in (actions or []) if a not in ActionKind.values]
    if unknown:
        raise ValueError(f"unknown playbook actions: {', '.join(unknown)}")
    detectors.check_params(kind, params)
    with transaction.atomic():
        row = DetectorConfig.objects.select_for_update().filter(kind=kind, agent_id=agent_id).first()
        before = None if row is None else {"enabled": row.enabled, "params": row.params, "actions": row.actions}
        row = row or DetectorConfig(kind=kind, agent_id=agent_id)
        row.enabled, row.params, row.actions = enabled, params, actions
        row.save()
        audit.record(actor=user, action="detector.configured", target=row, before=before,
                     after={"enabled": enabled, "params": params, "actions": actions})
    transaction.on_commit(detectors.invalidate_cache)
    return row
