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
