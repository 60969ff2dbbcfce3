"""Plain factory functions returning saved rows with sensible defaults."""

import itertools

from django.contrib.auth import get_user_model

from agents import services as agent_services
from agents.models import Agent
from console.roles import grant_role

_seq = itertools.count(1)

PASSWORD = "correct-horse-battery"


def make_user(role: str | None = None, *, username: str | None = None, **fields):
    User = get_user_model()
    username = username or f"user{next(_seq)}"
    user = User.objects.create_user(username=username, password=PASSWORD,
                                    email=f"{username}@example.test", **fields)
    if role:
        grant_role(user, role)
    return user


def make_agent(name: str | None = None, **fields) -> Agent:
    return agent_services.create_agent(name=name or f"agent-{next(_seq)}", actor="system:test", **fields)


def make_key(agent: Agent | None = None) -> tuple:
    """(key row, plain key) for ``agent`` (a new agent by default)."""
    agent = agent or make_agent()
    return agent_services.issue_key(agent=agent, actor="system:test")


def open_loop_incident(agent: Agent):
    """A loop incident on ``agent`` whose playbook paused it (the loop detector's settings must pause,
    as the demo's do)."""
    from traces.incident_models import ActionKind, ActionState, DetectorKind
    from traces.watchers import detectors, services
    from traces.watchers.detectors import Finding

    detectors.invalidate_cache()
    incident = services.open_incident(finding=Finding(
        kind=DetectorKind.LOOP, agent_id=agent.pk, dedupe_key=f"a{agent.pk}:loop:test",
        title='Loop: lookup_order({"order_id": "nw-1"}) repeated 5 times'))
    assert incident.actions.get(kind=ActionKind.PAUSE).state == ActionState.DONE
    return incident
