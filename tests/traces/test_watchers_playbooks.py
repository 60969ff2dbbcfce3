"""Each playbook action's effect on what the agent sees, its undo, audit, and once-only firing."""

import json

import pytest
from django.utils import timezone

from agents import services as agent_services
from agents.models import Agent, AgentKey, LabelName, PromptLabel
from approvals.models import Channel, Delivery
from console.models import AuditEntry
from console.roles import Role
from tests import factories
from tests.traces import helpers
from tests.traces.test_watchers_support import send_committed, tool, watching  # noqa: F401
from traces import ingest
from traces.incident_models import ActionState, AgentHold, DetectorConfig, DetectorKind, Incident
from traces.watchers import detectors, services
from traces.watchers.detectors import Finding

pytestmark = pytest.mark.django_db

APPROVALS = "/api/v1/approvals"


def ask(client, headers, action="crm.note", risk="low", **extra):
    body = {"action": action, "risk": risk, "arguments": {"text": "hi"}, **extra}
    return client.post(APPROVALS, data=json.dumps(body), content_type="application/json", **headers)


def fire(agent, actions, *, kind=DetectorKind.LOOP, key="k1", params=None, evidence=None, run=None):
    DetectorConfig.objects.update_or_create(kind=kind, agent=None, defaults={"actions": actions,
                                                                             "params": params or {}})
    detectors.invalidate_cache()
    return services.open_incident(finding=Finding(kind=kind, agent_id=agent.pk, dedupe_key=key, title="test anomaly",
                                                  evidence=evidence or {}, run_id=run.pk if run else None,
                                                  trace_id=run.trace_id if run else ""))


def test_incident_always_opens_and_is_audited_even_with_an_empty_playbook(agent, watching):
    incident = fire(agent, [])
    assert incident.status == "open" and not incident.actions.exists()
    assert AuditEntry.objects.filter(action="incident.opened", target_id=str(incident.pk)).exists()


def test_same_anomaly_fires_its_playbook_once(agent, watching):
    first = fire(agent, ["pause", "require_approval"])
    assert fire(agent, ["pause", "require_approval"]) is None
    assert Incident.objects.count() == 1 and first.actions.count() == 2
    assert AgentHold.objects.count() == 1


def test_pause_answers_the_agents_approval_requests_paused_and_undo_resumes(client, agent, agent_headers,
                                                                           operator, watching):
    incident = fire(agent, ["pause"])
    assert Agent.objects.get(pk=agent.pk).is_paused
    response = ask(client, agent_headers)
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "rejected" and body["decided_by"] == "system:paused"
    assert "paused" in body["reason"]
    action = incident.actions.get(kind="pause")
    services.undo_action(action_id=action.pk, user=operator)
    assert not Agent.objects.get(pk=agent.pk).is_paused
    assert ask(client, agent_headers).json()["status"] == "approved"  # low risk, default allow again
    action.refresh_from_db()
    assert action.state == ActionState.UNDONE and action.undone_by == operator
    assert AuditEntry.objects.filter(action="incident.action_undone").count() == 1
    with pytest.raises(services.NotUndoable):
        services.undo_action(action_id=action.pk, user=operator)


def test_pause_keeps_ingest_accepted(client, agent, agent_key, watching, django_capture_on_commit_callbacks):
    fire(agent, ["pause"])
    response = send_committed(client, agent_key, django_capture_on_commit_callbacks,
                              helpers.make_span(helpers.new_trace_id()))
    assert response.status_code == 200


def test_throttle_makes_ingest_answer_429_with_retry_after_and_undo_restores(client, agent, agent_key, operator,
                                                                              watching):
    ingest.rate_limiter.reset()
    incident = fire(agent, ["throttle"], params={"throttle_per_s": 1})
    assert AgentKey.objects.get(agent=agent).rate_limit_per_s == 1
    body = helpers.body_of(helpers.make_span(helpers.new_trace_id()))
    statuses = [helpers.post(client, body, key=agent_key) for _ in range(3)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited and limited[0]["Retry-After"]
    services.undo_action(action_id=incident.actions.get(kind="throttle").pk, user=operator)
    assert AgentKey.objects.get(agent=agent).rate_limit_per_s is None
    ingest.rate_limiter.reset()


def test_throttle_undo_leaves_a_rate_an_admin_set_since(agent, operator, watching):
    _key, _plain = factories.make_key(agent)
    incident = fire(agent, ["throttle"], params={"throttle_per_s": 2})
    AgentKey.objects.filter(agent=agent).update(rate_limit_per_s=50)
    services.undo_action(action_id=incident.actions.get(kind="throttle").pk, user=operator)
    assert AgentKey.objects.get(agent=agent).rate_limit_per_s == 50


def test_require_approval_sends_a_low_risk_action_to_a_human_until_cleared(client, agent, agent_headers, operator,
                                                                           watching):
    assert ask(client, agent_headers).json()["status"] == "approved"  # default allow before
    incident = fire(agent, ["require_approval"])
    assert services.agent_requires_human(agent.pk)
    held = ask(client, agent_headers).json()
    assert held["status"] == "pending" and held["due_at"]
    other = factories.make_agent("other-bot")
    _k, other_key = factories.make_key(other)
    assert ask(client, {"HTTP_AUTHORIZATION": f"Bearer {other_key}"}).json()["status"] == "approved"  # only this agent
    services.undo_action(action_id=incident.actions.get(kind="require_approval").pk, user=operator)
    assert not services.agent_requires_human(agent.pk)
    assert ask(client, agent_headers).json()["status"] == "approved"


def test_require_approval_keeps_a_deny_rule_denying(client, agent, agent_headers, watching):
    from tests.approvals.helpers import make_rule

    make_rule(action_pattern="crm.delete", outcome="deny")
    fire(agent, ["require_approval"])
    assert ask(client, agent_headers, action="crm.delete").json()["status"] == "rejected"


def test_notify_writes_in_app_and_email_outbox_rows_for_operators_admins_and_the_owner(agent, watching):
    owner = factories.make_user(None, username="owner")
    Agent.objects.filter(pk=agent.pk).update(owner=owner)
    agent.refresh_from_db()
    factories.make_user(Role.OPERATOR, username="otto")
    factories.make_user(Role.ADMIN, username="ada")
    factories.make_user(Role.REVIEWER, username="rita")
    incident = fire(agent, ["notify"])
    rows = Delivery.objects.all()
    assert {d.recipient for d in rows if d.channel == Channel.IN_APP} == {"owner", "otto", "ada"}
    assert {d.channel for d in rows} == {Channel.IN_APP, Channel.EMAIL}
    assert all(d.payload["request"]["url"].endswith(f"/incidents/{incident.pk}/") for d in rows)


def test_rollback_moves_the_prompt_label_back_and_admin_undo_moves_it_forward(agent, admin_user, operator, watching):
    prompt = agent_services.create_prompt(name="refund-agent", actor=admin_user, template="v1 text")
    v2 = agent_services.create_version(prompt=prompt, author=admin_user, template="v2 text")
    v1 = prompt.versions.get(number=1)
    agent_services.move_label(prompt=prompt, label=LabelName.PRODUCTION, version=v1, actor=admin_user)
    agent_services.move_label(prompt=prompt, label=LabelName.PRODUCTION, version=v2, actor=admin_user)
    incident = fire(agent, ["rollback_prompt"], evidence={"prompt_name": "refund-agent", "prompt_version": "2"})
    assert PromptLabel.objects.get(prompt=prompt, name="production").version == v1
    action = incident.actions.get(kind="rollback_prompt")
    assert action.state == ActionState.DONE and action.detail["to_version"] == 1
    with pytest.raises(Exception, match="Admin"):
        services.undo_action(action_id=action.pk, user=operator)
    services.undo_action(action_id=action.pk, user=admin_user)
    assert PromptLabel.objects.get(prompt=prompt, name="production").version == v2


def test_rollback_without_a_prompt_is_skipped_not_failed(agent, watching):
    incident = fire(agent, ["rollback_prompt", "require_approval"])
    states = dict(incident.actions.values_list("kind", "state"))
    assert states == {"rollback_prompt": ActionState.SKIPPED, "require_approval": ActionState.DONE}


def test_acknowledge_and_resolve_are_audited_and_resolve_needs_the_role(agent, operator, reviewer, watching):
    incident = fire(agent, [])
    with pytest.raises(Exception):
        services.acknowledge_incident(incident_id=incident.pk, user=reviewer)
    services.acknowledge_incident(incident_id=incident.pk, user=operator)
    services.acknowledge_incident(incident_id=incident.pk, user=operator)  # idempotent
    services.resolve_incident(incident_id=incident.pk, user=operator, note="fixed the tool")
    with pytest.raises(services.AlreadyResolved):
        services.resolve_incident(incident_id=incident.pk, user=operator, note="again")
    incident.refresh_from_db()
    assert incident.status == "resolved" and incident.resolution_note == "fixed the tool"
    actions = list(AuditEntry.objects.filter(target_id=str(incident.pk), target_type="traces.incident")
                   .values_list("action", flat=True))
    assert actions.count("incident.acknowledged") == 1 and "incident.resolved" in actions


def test_incident_pushes_its_row_and_a_signal_after_commit(agent, watching, monkeypatch,
                                                           django_capture_on_commit_callbacks):
    from console import live as console_live

    sent = []
    monkeypatch.setattr(console_live, "send_to_group", lambda group, html: sent.append((group, html)) or True)
    with django_capture_on_commit_callbacks(execute=True):
        incident = fire(agent, [])
    groups = [g for g, _ in sent]
    assert groups == ["incidents", f"incident-{incident.pk}"]
    assert 'hx-swap-oob="afterbegin:#incident-rows"' in sent[0][1] and f"incident-row-{incident.pk}" in sent[0][1]


def test_loop_on_the_stream_pauses_the_agent_end_to_end(client, agent, agent_key, agent_headers, watching,
                                                        django_capture_on_commit_callbacks):
    trace = helpers.new_trace_id()
    spans = [tool(trace, "lookup_order", {"order": 42}, parent=b"\x01" * 8) for _ in range(5)]
    send_committed(client, agent_key, django_capture_on_commit_callbacks, *spans)
    assert Agent.objects.get(pk=agent.pk).is_paused
    assert ask(client, agent_headers).json()["decided_by"] == "system:paused"
    assert timezone.now() >= Incident.objects.get().opened_at
