from django.db import IntegrityError, transaction
from django.utils import timezone

from agents import live
from agents.models import Agent
from console import audit


class AgentNameTaken(Exception):
    def __init__(self, name: str):
        super().__init__(f"An agent named {name!r} already exists.")
        self.name = name


def create_agent(*, name: str, actor, description: str = "", owner=None) -> Agent:
    """Register an agent; audited. Raises AgentNameTaken (names are case-insensitive)."""
    try:
        with transaction.atomic():
            agent = Agent.objects.create(name=name, description=description, owner=owner)
            audit.record(actor=actor, action="agent.created", target=agent,
                         after={"name": name, "description": description})
    except IntegrityError as exc:
        raise AgentNameTaken(name) from exc
    live.push_agents_tile_on_commit()
    return agent


def pause_agent(*, agent_id: int, actor, reason: str = "") -> Agent:
    """Pause an agent: its approval requests are answered "paused". Idempotent."""
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent_id)
        if not agent.is_paused:
            agent.is_paused, agent.paused_reason, agent.paused_at = True, reason[:500], timezone.now()
            agent.save(update_fields=["is_paused", "paused_reason", "paused_at"])
            audit.record(actor=actor, action="agent.paused", target=agent,
                         before={"paused": False}, after={"paused": True, "reason": reason})
            live.push_agents_tile_on_commit()
            live.push_agent_status_on_commit(agent.pk)
    return agent


def resume_agent(*, agent_id: int, actor) -> Agent:
    """Resume a paused agent. Idempotent."""
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent_id)
        if agent.is_paused:
            before = {"paused": True, "reason": agent.paused_reason}
            agent.is_paused, agent.paused_reason, agent.paused_at = False, "", None
            agent.save(update_fields=["is_paused", "paused_reason", "paused_at"])
            audit.record(actor=actor, action="agent.resumed", target=agent, before=before,
                         after={"paused": False})
            live.push_agents_tile_on_commit()
            live.push_agent_status_on_commit(agent.pk)
    return agent
