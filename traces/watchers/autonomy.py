"""Earned autonomy: auto-approval of one agent's action (at one risk), proposed from its track record,
ratified by an Admin, lost at once on a rejection, an edit or an incident.

The record comes from human decisions (approvals ``Decision`` rows: approve = unedited, modify =
edited, reject) and the agent's incidents. A proposal is a *disabled* guardian rule saved through
``approvals.services.save_rule``; ratifying enables it, demotion disables it again.

Rule placement: the auto-approve rule goes right before the first enabled "ask" rule that routes
this agent's action to humans today, with that rule's conditions, so it covers exactly the
requests humans have been approving; with no such rule (an unmatched high or critical action) it
goes after every other rule, so deny rules still win.
"""

import fnmatch
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from console import audit
from console.roles import Role, has_role
from traces.incident_models import (
    AutonomyBar,
    AutonomyEvent,
    AutonomyGrant,
    GrantStatus,
    Incident,
    WatcherCursor,
)

ACTOR = "system:autonomy"
DECISION_CURSOR = "autonomy-decisions"


class GrantError(Exception):
    pass


def bar() -> AutonomyBar:
    row = AutonomyBar.objects.order_by("pk").first()
    return row or AutonomyBar.objects.create()


def update_bar(*, user, **values) -> AutonomyBar:
    if not has_role(user, Role.ADMIN):
        raise PermissionDenied("Only Admins set the autonomy bar.")
    with transaction.atomic():
        row = bar()
        before = {name: getattr(row, name) for name in values}
        for name, value in values.items():
            setattr(row, name, value)
        row.save()
        audit.record(actor=user, action="autonomy.bar_updated", target=row, before=before, after=values)
    return row


@dataclass
class Record:
    agent_id: int
    action: str
    risk: str
    total: int
    approved: int
    edited: int
    rejected: int
    rejected_recent: int = 0
    incidents_recent: int = 0
    last_decision_at: datetime | None = None

    @property
    def unedited_rate(self) -> float:
        return self.approved / self.total if self.total else 0.0

    def as_evidence(self, b: AutonomyBar) -> dict:
        return {"decisions": self.total, "approved_unedited": self.approved, "edited": self.edited,
                "rejected": self.rejected, "unedited_rate": round(self.unedited_rate, 4),
                "rejected_in_last": {"n": b.no_rejections_in_last, "rejected": self.rejected_recent},
                "incidents_in_days": {"days": b.incident_free_days, "incidents": self.incidents_recent},
                "bar": {"min_decisions": b.min_decisions, "min_unedited_rate": b.min_unedited_rate}}


def _decisions(since: datetime):
    from approvals.models import Decision

    return Decision.objects.filter(created_at__gte=since)


def track_records(*, now: datetime, agent_id: int | None = None) -> list[Record]:
    """Per (agent, action, risk): human decisions over the bar's lookback window."""
    from approvals.models import Verdict

    b = bar()
    qs = _decisions(now - timedelta(days=b.lookback_days))
    if agent_id is not None:
        qs = qs.filter(request__agent_id=agent_id)
    rows = (qs.values("request__agent_id", "request__action", "request__risk")
            .annotate(total=Count("id"), approved=Count("id", filter=Q(verdict=Verdict.APPROVE)),
                      edited=Count("id", filter=Q(verdict=Verdict.MODIFY)),
                      rejected=Count("id", filter=Q(verdict=Verdict.REJECT)), last=Max("created_at"))
            .order_by("request__agent_id", "request__action", "request__risk"))
    return [Record(agent_id=r["request__agent_id"], action=r["request__action"], risk=r["request__risk"],
                   total=r["total"], approved=r["approved"], edited=r["edited"], rejected=r["rejected"],
                   last_decision_at=r["last"]) for r in rows]


def _since_last_grant(agent_id: int, action: str, risk: str) -> datetime | None:
    last = AutonomyGrant.objects.filter(agent_id=agent_id, action=action, risk=risk).order_by("-id").first()
    if last is None:
        return None
    return last.demoted_at or last.decided_at or last.proposed_at


def evaluate(*, agent_id: int, action: str, risk: str, now: datetime) -> tuple[bool, Record]:
    """Does the record (counted since the last grant ended, if any) pass the bar?"""
    from approvals.models import Verdict

    b = bar()
    since = now - timedelta(days=b.lookback_days)
    previous = _since_last_grant(agent_id, action, risk)
    if previous and previous > since:
        since = previous
    qs = _decisions(since).filter(request__agent_id=agent_id, request__action=action, request__risk=risk)
    verdicts = list(qs.order_by("-created_at", "-id").values_list("verdict", flat=True))
    record = Record(agent_id=agent_id, action=action, risk=risk, total=len(verdicts),
                    approved=verdicts.count(Verdict.APPROVE), edited=verdicts.count(Verdict.MODIFY),
                    rejected=verdicts.count(Verdict.REJECT))
    record.rejected_recent = verdicts[:b.no_rejections_in_last].count(Verdict.REJECT)
    record.incidents_recent = Incident.objects.filter(
        agent_id=agent_id, opened_at__gte=now - timedelta(days=b.incident_free_days)).count()
    passes = (record.total >= b.min_decisions and record.unedited_rate >= b.min_unedited_rate
              and record.rejected_recent == 0 and record.incidents_recent == 0)
    return passes, record


def _event(grant: AutonomyGrant, event: str, actor, note: str, now: datetime) -> None:
    label = actor if isinstance(actor, str) else f"user:{actor.get_username()}"
    AutonomyEvent.objects.create(grant=grant, event=event, actor=label, note=note[:500], at=now)


def _rule_name(agent_name: str, action: str, risk: str, n: int) -> str:
    slug = re.sub(r"[^a-zA-Z0-9_-]+", "-", action).strip("-")[:40] or "action"
    return f"auto-{agent_name[:40]}-{slug}-{risk}-{n}"[:100]


def _placement(agent_id: int, action: str, risk: str) -> tuple[int, list, object]:
    from approvals.models import GuardianRule, Outcome

    rules = list(GuardianRule.objects.filter(enabled=True).order_by("order", "id"))
    for rule in rules:
        if rule.outcome != Outcome.ASK or (rule.agent_id is not None and rule.agent_id != agent_id):
            continue
        if fnmatch.fnmatchcase(action, rule.action_pattern) and (not rule.risks or risk in rule.risks):
            return rule.order - 1, list(rule.conditions or []), rule
    last = max((r.order for r in rules), default=100)
    return last + 1, [], None


def propose(*, agent_id: int, action: str, risk: str, record: Record, now: datetime) -> AutonomyGrant | None:
    """A disabled auto-approve rule and a proposed grant; None if one is already open."""
    from agents.models import Agent
    from approvals import services as approval_services
    from approvals.models import GuardianRule, Outcome

    if any(ch in action for ch in "*?[]"):
        return None  # a glob character would widen the rule beyond this action
    agent = Agent.objects.get(pk=agent_id)
    order, conditions, before_rule = _placement(agent_id, action, risk)
    b = bar()
    try:
        with transaction.atomic():
            n = AutonomyGrant.objects.filter(agent_id=agent_id, action=action, risk=risk).count() + 1
            grant = AutonomyGrant.objects.create(agent_id=agent_id, action=action, risk=risk, proposed_at=now,
                                                 evidence={**record.as_evidence(b),
                                                           "placed_before": before_rule.name if before_rule else None})
            rule = GuardianRule(name=_rule_name(agent.name, action, risk, n), order=order, enabled=False,
                                agent=agent, action_pattern=action, risks=[risk], conditions=conditions,
                                outcome=Outcome.ALLOW,
                                description=f"Earned autonomy for {agent.name}: {action} ({risk}); "
                                            f"proposed from {record.total} decisions")
            approval_services.save_rule(rule=rule, actor=ACTOR)
            grant.rule = rule
            grant.save(update_fields=["rule"])
            _event(grant, "proposed", ACTOR, f"{record.total} decisions, {record.unedited_rate:.1%} unedited", now)
            audit.record(actor=ACTOR, action="autonomy.proposed", target=grant, at=now, after=grant.evidence)
    except IntegrityError:
        return None  # an open grant exists already (unique), or a concurrent proposer won
    return grant


def propose_grants(*, now: datetime | None = None) -> list[AutonomyGrant]:
    """Propose every (agent, action, risk) that passes the bar and has no open grant. Idempotent."""
    now = now or timezone.now()
    b = bar()
    open_triples = set(AutonomyGrant.objects.filter(status__in=[GrantStatus.PROPOSED, GrantStatus.ACTIVE])
                       .values_list("agent_id", "action", "risk"))
    proposed = []
    for rec in track_records(now=now):
        if (rec.agent_id, rec.action, rec.risk) in open_triples or rec.total < b.min_decisions:
            continue
        declined = AutonomyGrant.objects.filter(agent_id=rec.agent_id, action=rec.action, risk=rec.risk,
                                                status=GrantStatus.DECLINED,
                                                decided_at__gte=now - timedelta(days=b.incident_free_days))
        if declined.exists():
            continue  # an Admin said no lately: wait before asking again
        passes, record = evaluate(agent_id=rec.agent_id, action=rec.action, risk=rec.risk, now=now)
        if passes:
            grant = propose(agent_id=rec.agent_id, action=rec.action, risk=rec.risk, record=record, now=now)
            if grant:
                proposed.append(grant)
    return proposed


def _set_rule_enabled(grant: AutonomyGrant, enabled: bool, actor) -> None:
    from approvals import services as approval_services
    from approvals.models import GuardianRule

    rule = GuardianRule.objects.filter(pk=grant.rule_id).first()
    if rule is not None and rule.enabled != enabled:
        rule.enabled = enabled
        approval_services.save_rule(rule=rule, actor=actor)


def ratify(*, grant_id: int, user, note: str = "", now: datetime | None = None) -> AutonomyGrant:
    """An Admin turns a proposal into auto-approval (the rule is enabled). Audited."""
    if not has_role(user, Role.ADMIN):
        raise PermissionDenied("Only Admins ratify autonomy.")
    now = now or timezone.now()
    with transaction.atomic():
        if not AutonomyGrant.objects.filter(pk=grant_id, status=GrantStatus.PROPOSED).update(
                status=GrantStatus.ACTIVE, decided_at=now, decided_by=user):
            raise GrantError("This proposal was already decided.")
        grant = AutonomyGrant.objects.select_related("agent").get(pk=grant_id)
        _set_rule_enabled(grant, True, user)
        _event(grant, "ratified", user, note, now)
        audit.record(actor=user, action="autonomy.ratified", target=grant, at=now,
                     after={"rule_id": grant.rule_id, "note": note})
    return grant


def decline(*, grant_id: int, user, note: str = "", now: datetime | None = None) -> AutonomyGrant:
    if not has_role(user, Role.ADMIN):
        raise PermissionDenied("Only Admins decline autonomy.")
    now = now or timezone.now()
    with transaction.atomic():
        if not AutonomyGrant.objects.filter(pk=grant_id, status=GrantStatus.PROPOSED).update(
                status=GrantStatus.DECLINED, decided_at=now, decided_by=user):
            raise GrantError("This proposal was already decided.")
        grant = AutonomyGrant.objects.select_related("agent").get(pk=grant_id)
        _event(grant, "declined", user, note, now)
        audit.record(actor=user, action="autonomy.declined", target=grant, at=now, after={"note": note})
    return grant


def demote(*, grant_id: int, reason: str, now: datetime, actor=ACTOR) -> bool:
    """Active (or proposed) -> demoted at once: the rule is disabled and the owners are told. Once."""
    from traces.watchers import playbooks

    with transaction.atomic():
        if not AutonomyGrant.objects.filter(pk=grant_id, status__in=[GrantStatus.ACTIVE, GrantStatus.PROPOSED]).update(
                status=GrantStatus.DEMOTED, demoted_at=now, demoted_reason=reason[:500]):
            return False
        grant = AutonomyGrant.objects.select_related("agent").get(pk=grant_id)
        _set_rule_enabled(grant, False, ACTOR)
        _event(grant, "demoted", actor, reason, now)
        audit.record(actor=actor, action="autonomy.demoted", target=grant, at=now, after={"reason": reason})
        users = playbooks.recipients(grant.agent)
        playbooks.notify_users(users=users, title=f"Autonomy withdrawn: {grant.agent.name} {grant.action} "
                                                  f"({grant.risk}) back to human review",
                               url_path="/autonomy/", summary=reason, event="autonomy.demoted", now=now)
    return True


def demote_for_incident(*, incident: Incident, now: datetime) -> int:
    """Every open grant of the incident's agent goes back to human review (inside the incident's transaction)."""
    ids = list(AutonomyGrant.objects.filter(agent_id=incident.agent_id,
                                            status__in=[GrantStatus.ACTIVE, GrantStatus.PROPOSED])
               .values_list("pk", flat=True))
    return sum(1 for pk in ids if demote(grant_id=pk, reason=f"incident #{incident.pk}: {incident.title}", now=now))


def demote_from_decisions(*, now: datetime, limit: int = 1000) -> int:
    """Read decisions after the cursor; a rejection or an edit on an open grant's action demotes it.

    Safe to run twice or concurrently: demotion is a conditional update, the cursor only moves forward.
    """
    from approvals.models import Decision, Verdict

    cursor, _ = WatcherCursor.objects.get_or_create(name=DECISION_CURSOR)
    rows = list(Decision.objects.filter(pk__gt=cursor.position).order_by("pk")
                .values("pk", "verdict", "created_at", "request_id", "request__agent_id", "request__action",
                        "request__risk")[:limit])
    if not rows:
        return 0
    demoted = 0
    open_grants = {(g.agent_id, g.action, g.risk): (g.pk, g.proposed_at) for g in AutonomyGrant.objects.filter(
        status__in=[GrantStatus.ACTIVE, GrantStatus.PROPOSED])}
    for row in rows:
        if row["verdict"] == Verdict.APPROVE:
            continue
        key = (row["request__agent_id"], row["request__action"], row["request__risk"])
        grant_id, proposed_at = open_grants.get(key, (None, None))
        if grant_id and row["created_at"] > proposed_at and demote(grant_id=grant_id, now=now,
                               reason=f"{'rejected' if row['verdict'] == Verdict.REJECT else 'edited'} "
                                      f"by a reviewer (request #{row['request_id']})"):
            demoted += 1
    WatcherCursor.objects.filter(name=DECISION_CURSOR, position__lt=rows[-1]["pk"]).update(position=rows[-1]["pk"])
    return demoted


def levels(*, now: datetime | None = None) -> list[dict]:
    """Every agent's level per (action, risk): human review, proposed, auto-approved, with the record."""
    now = now or timezone.now()
    grants: dict[tuple, list[AutonomyGrant]] = {}
    for g in AutonomyGrant.objects.select_related("agent", "rule", "decided_by").prefetch_related("events"):
        grants.setdefault((g.agent_id, g.action, g.risk), []).append(g)
    rows = []
    records = {(r.agent_id, r.action, r.risk): r for r in track_records(now=now)}
    from agents.models import Agent

    names = dict(Agent.objects.values_list("pk", "name"))
    for key in sorted(set(records) | set(grants), key=lambda k: (names.get(k[0], ""), k[1], k[2])):
        history = sorted(grants.get(key, []), key=lambda g: -g.pk)
        current = history[0] if history else None
        level = "human review"
        if current and current.status == GrantStatus.ACTIVE:
            level = "auto-approved"
        elif current and current.status == GrantStatus.PROPOSED:
            level = "proposed"
        rows.append({"agent_id": key[0], "agent": names.get(key[0], "?"), "action": key[1], "risk": key[2],
                     "level": level, "record": records.get(key), "grant": current, "history": history})
    return rows
