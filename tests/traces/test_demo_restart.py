"""Restarting ``manage.py demo`` brings back a working fleet.

A loop in an earlier demo session paused support-bot through its incident's playbook, and the pause
outlived the process: after a restart support-bot sent nothing and the fleet looked dead to whoever
started it. The demo now lifts pauses its own playbooks made (undone on the incident, audited as
system:demo); the incident stays; a pause a person made stays.
"""

import io

import pytest
from django.core.management import call_command
from django.test import Client

from agents import demo as agents_demo
from agents import services as agent_services
from agents.models import Agent
from console.models import AuditEntry
from console.roles import Role
from tests import factories
from traces.incident_models import ActionKind, ActionState, IncidentStatus

pytestmark = pytest.mark.django_db(transaction=True)


def _paused(name: str, client) -> bool:
    key = agents_demo.DEMO_KEYS[name]
    return client.get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {key}").json()["paused"]


def test_a_restarted_demo_resumes_the_agents_its_playbooks_paused_but_not_a_persons_pause(client):
    call_command("demo", no_serve=True, stdout=io.StringIO())
    support = Agent.objects.get(name="support-bot")
    incident = factories.open_loop_incident(support)
    operator = factories.make_user(Role.OPERATOR, username="olga")
    agent_services.pause_agent(agent_id=Agent.objects.get(name="deploy-bot").pk, actor=operator,
                               reason="maintenance window")

    out = io.StringIO()
    call_command("demo", no_serve=True, stdout=out)  # the restart (serving aside)

    assert not _paused("support-bot", client)
    assert _paused("deploy-bot", client)
    assert f"resumed support-bot, paused by incident #{incident.pk}" in out.getvalue()
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.OPEN
    pause = incident.actions.get(kind=ActionKind.PAUSE)
    assert pause.state == ActionState.UNDONE
    assert AuditEntry.objects.filter(actor="system:demo", action="agent.resumed").count() == 1
    assert AuditEntry.objects.filter(actor="system:demo", action="incident.action_undone").count() == 1

    operator_client = Client()
    operator_client.force_login(operator)
    panel = operator_client.get(f"/incidents/{incident.pk}/").content.decode()
    assert "by system:demo" in panel

    call_command("demo", no_serve=True, stdout=(again := io.StringIO()))
    assert "resumed" not in again.getvalue()
    assert AuditEntry.objects.filter(actor="system:demo", action="agent.resumed").count() == 1


def test_a_pause_made_again_after_the_incident_is_not_lifted(client):
    call_command("demo", no_serve=True, stdout=io.StringIO())
    support = Agent.objects.get(name="support-bot")
    factories.open_loop_incident(support)
    operator = factories.make_user(Role.OPERATOR, username="olga")
    agent_services.resume_agent(agent_id=support.pk, actor=operator)
    agent_services.pause_agent(agent_id=support.pk, actor=operator, reason="I want it off for now")

    call_command("demo", no_serve=True, stdout=io.StringIO())
    assert _paused("support-bot", client)
