"""The demo's restart lifts only pauses its playbooks made, never one a person made.

watchers.services.lift_playbook_pauses (run by ``manage.py demo`` on the demo agents) decided whose
pause it was from the agent's paused_reason text: one starting "incident #<n>:" counted as the
playbook's. A person who resumed the agent and paused it again, typing a reason that names the incident
("incident #12: keep it off until the loop is fixed"), had that pause lifted by the next demo start,
audited as if the playbook's pause had been undone. The pause is now the playbook's only if the
agent's latest pause in the audit log was made by the playbook.
"""

import io

import pytest
from django.test import Client

from agents.models import Agent
from console.models import AuditEntry
from console.roles import Role
from tests import factories
from traces.incident_models import ActionKind, ActionState, Incident
from traces.watchers import demo as watchers_demo
from traces.watchers import services

pytestmark = pytest.mark.django_db


def _loop_incident(agent: Agent) -> Incident:
    watchers_demo.seed(io.StringIO())  # the demo's detector settings: a loop pauses its agent
    return factories.open_loop_incident(agent)


def test_a_persons_pause_naming_the_incident_is_not_lifted():
    agent = factories.make_agent("support-bot")
    incident = _loop_incident(agent)
    operator = factories.make_user(Role.OPERATOR, username="olga")
    browser = Client()
    browser.force_login(operator)
    assert browser.post(f"/agents/{agent.pk}/resume/").status_code == 302
    reason = f"incident #{incident.pk}: keep it off until the loop is fixed"
    assert browser.post(f"/agents/{agent.pk}/pause/", {"reason": reason}).status_code == 302

    assert services.lift_playbook_pauses(agent_ids=[agent.pk], actor="system:demo") == []
    agent.refresh_from_db()
    assert agent.is_paused and agent.paused_reason == reason
    assert not AuditEntry.objects.filter(actor="system:demo").exists()


def test_the_playbooks_own_pause_is_still_lifted_and_audited():
    agent = factories.make_agent("support-bot")
    incident = _loop_incident(agent)

    lifted = services.lift_playbook_pauses(agent_ids=[agent.pk], actor="system:demo")
    assert [a.incident_id for a in lifted] == [incident.pk]
    agent.refresh_from_db()
    assert not agent.is_paused
    assert incident.actions.get(kind=ActionKind.PAUSE).state == ActionState.UNDONE
    assert AuditEntry.objects.filter(actor="system:demo", action="agent.resumed").count() == 1
    assert services.lift_playbook_pauses(agent_ids=[agent.pk], actor="system:demo") == []
