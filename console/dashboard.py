"""The home page's tiles. Each tile is one partial with a stable id."""

from agents.models import Agent


def agents_tile() -> dict:
    agents = list(Agent.objects.order_by("name").values("id", "name", "is_paused")[:50])
    total = Agent.objects.count()
    paused = Agent.objects.filter(is_paused=True).count()
    return {"agents": agents, "agent_count": total, "paused_count": paused, "active_count": total - paused}


def context_for(user) -> dict:
    return {**agents_tile()}
