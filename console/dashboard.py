"""The home page's tiles. Each tile is one partial with a stable id.

Apps add tiles in their AppConfig.ready with ``register_tile(template, context_fn)``;
``context_fn(user)`` returns the partial's context. Tiles show aggregates that
are the same for every viewer: ``push_tiles`` (a periodic job) renders them once
with ``user=None`` and ``oob=True`` and pushes them to the ``dashboard`` group.
"""

from collections.abc import Callable

from django.template.loader import render_to_string

from agents.models import Agent

_TILES: list[tuple[int, str, Callable]] = []


def register_tile(template: str, context_fn: Callable, order: int = 50) -> None:
    if not any(t[1] == template for t in _TILES):
        _TILES.append((order, template, context_fn))


def agents_tile(user=None) -> dict:
    agents = list(Agent.objects.order_by("name").values("id", "name", "is_paused")[:50])
    total = Agent.objects.count()
    paused = Agent.objects.filter(is_paused=True).count()
    return {"agents": agents, "agent_count": total, "paused_count": paused, "active_count": total - paused}


def render_tile(template: str, context: dict, request=None) -> str:
    """The tile's HTML (already escaped by the template engine)."""
    return render_to_string(template, context, request=request)


def context_for(request) -> dict:
    tiles = [
        render_tile(template, context_fn(request.user), request)
        for _order, template, context_fn in sorted(_TILES, key=lambda t: t[0])
    ]
    return {"tiles": tiles, **agents_tile(request.user)}


def push_tiles(*, now=None) -> int:
    """Render every tile once and push it to the dashboard; returns the count pushed."""
    from console import live

    pushed = 0
    for _order, template, context_fn in sorted(_TILES, key=lambda t: t[0]):
        html = render_tile(template, {**context_fn(None), "oob": True})
        pushed += live.send_to_group("dashboard", html)
    return pushed
