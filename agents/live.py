"""Live pushes for agents.

- ``dashboard``: the agents tile.
- ``agent-<id>``: a tiny signal that makes the agent page re-GET its status section from the
  normal view, where the role check decides whether Pause/Resume shows.
"""

from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html

from console import live


def push_agents_tile_on_commit() -> None:
    live.on_commit(_push_agents_tile)


def _push_agents_tile() -> None:
    from console import dashboard

    html = render_to_string("console/partials/tile_agents.html", {**dashboard.agents_tile(), "oob": True})
    live.send_to_group("dashboard", html)


def agent_signal(agent_id: int) -> str:
    return format_html(
        '<div hx-swap-oob="innerHTML:#agent-signals"><div hx-get="{}" hx-select="#agent-status-{}" '
        'hx-trigger="load" hx-target="#agent-status-{}" hx-swap="outerHTML"></div></div>',
        reverse("agents:detail", args=[int(agent_id)]), int(agent_id), int(agent_id))


def push_agent_status_on_commit(agent_id: int) -> None:
    live.on_commit(lambda: live.send_to_group(f"agent-{int(agent_id)}", agent_signal(agent_id)))
