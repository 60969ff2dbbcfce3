"""Playbook actions and their undo. Each action uses the owning app's service where there is one
(``agents.services.pause_agent``/``resume_agent``, ``rollback_label``/``move_label``); the
notification outbox rows are the approvals app's ``Delivery`` rows, sent by its delivery job.

Every function here runs inside the caller's transaction (``services``).
"""

from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q

from agents import services as agent_services
from agents.models import Agent, AgentKey, LabelName, Prompt, PromptLabel, PromptVersion
from console import audit
from console.roles import Role
from traces.incident_models import ActionKind, AgentHold, Incident, IncidentAction

ACTOR = "system:watchers"


class NothingToDo(Exception):
    """The action does not apply (already paused, no keys, no prompt label to roll back)."""


def recipients(agent: Agent) -> list:
    """The agent's owner and every active Operator and Admin."""
    users = get_user_model().objects.filter(is_active=True)
    who = Q(groups__name__in=[Role.OPERATOR, Role.ADMIN]) | Q(is_superuser=True)
    if agent.owner_id:
        who |= Q(pk=agent.owner_id)
    return list(users.filter(who).distinct().order_by("pk"))


def notify_users(*, users, title: str, url_path: str, summary: str, event: str, now: datetime) -> int:
    """In-app and e-mail outbox rows (the approvals delivery job sends them and pushes in-app live)."""
    from approvals.models import Channel, Delivery

    payload = {"event": event, "request": {"url": settings.CONSOLE_BASE_URL + url_path, "summary": summary[:500],
                                           "resource": "", "due_at": None}}
    rows = []
    for user in users:
        rows.append(Delivery(channel=Channel.IN_APP, user=user, recipient=user.get_username(), title=title[:300],
                             payload=payload, next_attempt_at=now))
        if user.email:
            rows.append(Delivery(channel=Channel.EMAIL, user=user, recipient=user.email, title=title[:300],
                                 payload=payload, next_attempt_at=now))
    return len(Delivery.objects.bulk_create(rows))


# --- actions: (incident, params, now) -> detail ---------------------------------------------------


def _notify(incident: Incident, params: dict, now: datetime) -> dict:
    users = recipients(incident.agent)
    sent = notify_users(users=users, title=f"Incident: {incident.title}", url_path=incident.url_path,
                        summary=incident.title, event="incident.opened", now=now)
    return {"recipients": [u.get_username() for u in users], "deliveries": sent}


def _require_approval(incident: Incident, params: dict, now: datetime) -> dict:
    hold = AgentHold.objects.create(agent=incident.agent, incident=incident, created_at=now,
                                    reason=f"incident #{incident.pk}: {incident.title}"[:300])
    return {"hold_id": hold.pk}


def _pause(incident: Incident, params: dict, now: datetime) -> dict:
    agent = Agent.objects.get(pk=incident.agent_id)
    if agent.is_paused:
        raise NothingToDo("the agent was already paused")
    agent_services.pause_agent(agent_id=agent.pk, actor=ACTOR, reason=f"incident #{incident.pk}: {incident.title}")
    return {}


def _throttle(incident: Incident, params: dict, now: datetime) -> dict:
    rate = max(int(params.get("throttle_per_s") or 1), 1)
    keys = list(AgentKey.objects.active().select_for_update().filter(agent_id=incident.agent_id))
    before = {}
    for key in keys:
        if key.rate_limit_per_s is not None and key.rate_limit_per_s <= rate:
            continue
        before[str(key.pk)] = key.rate_limit_per_s
        AgentKey.objects.filter(pk=key.pk).update(rate_limit_per_s=rate)
    if not before:
        raise NothingToDo("no active key above the throttle rate")
    audit.record(actor=ACTOR, action="agent_key.throttled", target=incident.agent,
                 before={"rate_limit_per_s": before}, after={"rate_limit_per_s": rate, "incident": incident.pk})
    return {"rate": rate, "keys": before}


def _prompt_label_of(incident: Incident) -> tuple[Prompt, PromptLabel]:
    name = incident.evidence.get("prompt_name") or (incident.run.prompt_name if incident.run else "")
    version = str(incident.evidence.get("prompt_version") or (incident.run.prompt_version if incident.run else ""))
    prompt = Prompt.objects.filter(name=name).first() if name else None
    if prompt is None:
        raise NothingToDo("the run named no known prompt")
    labels = {lab.name: lab for lab in PromptLabel.objects.filter(prompt=prompt).select_related("version")}
    for label_name in (LabelName.CANARY, LabelName.PRODUCTION):
        label = labels.get(label_name)
        if label and (not version or str(label.version.number) == version):
            return prompt, label
    raise NothingToDo(f"no label of {name} points at version {version}")


def _rollback_prompt(incident: Incident, params: dict, now: datetime) -> dict:
    prompt, label = _prompt_label_of(incident)
    try:
        move = agent_services.rollback_label(prompt=prompt, label=label.name, actor=ACTOR,
                                             reason=f"incident #{incident.pk}: {incident.title}"[:500])
    except agent_services.NothingToRollBack as exc:
        raise NothingToDo(str(exc)) from exc
    return {"prompt": prompt.name, "label": label.name, "from_version_id": label.version_id,
            "from_version": label.version.number, "share": label.share,
            "to_version": move.to_version.number if move and move.to_version_id else None}


ACTIONS = {
    ActionKind.NOTIFY: _notify,
    ActionKind.REQUIRE_APPROVAL: _require_approval,
    ActionKind.PAUSE: _pause,
    ActionKind.THROTTLE: _throttle,
    ActionKind.ROLLBACK_PROMPT: _rollback_prompt,
}


# --- undo -----------------------------------------------------------------------------------------


def undo(action: IncidentAction, *, user, now: datetime) -> dict:
    """Reverse ``action``'s effect where it is still ours to reverse; returns what was done."""
    incident = action.incident
    detail = action.detail or {}
    if action.kind == ActionKind.REQUIRE_APPROVAL:
        cleared = AgentHold.objects.filter(pk=detail.get("hold_id"), cleared_at__isnull=True).update(cleared_at=now)
        return {"hold_cleared": bool(cleared)}
    if action.kind == ActionKind.PAUSE:
        agent_services.resume_agent(agent_id=incident.agent_id, actor=user)
        return {"resumed": True}
    if action.kind == ActionKind.THROTTLE:
        restored = {}
        for key_id, before in (detail.get("keys") or {}).items():
            # Only a key still at our rate: an Admin's later change wins.
            if AgentKey.objects.filter(pk=int(key_id), rate_limit_per_s=detail.get("rate")).update(
                    rate_limit_per_s=before):
                restored[key_id] = before
        audit.record(actor=user, action="agent_key.unthrottled", target=incident.agent,
                     after={"rate_limit_per_s": restored, "incident": incident.pk})
        return {"restored": restored}
    if action.kind == ActionKind.ROLLBACK_PROMPT:
        prompt = Prompt.objects.get(name=detail["prompt"])
        version = PromptVersion.objects.get(pk=detail["from_version_id"])
        # move_label admits Admins and system actors; the view lets only Admins undo a rollback.
        agent_services.move_label(prompt=prompt, label=detail["label"], version=version, actor=user,
                                  share=detail.get("share") if detail["label"] == LabelName.CANARY else None,
                                  reason=f"undo of incident #{incident.pk} rollback")
        return {"label": detail["label"], "version": version.number}
    raise NothingToDo(f"{action.kind} cannot be undone")
