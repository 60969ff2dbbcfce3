from django.template.loader import render_to_string

from console import live


def push_agents_tile_on_commit() -> None:
    live.on_commit(_push_agents_tile)


def _push_agents_tile() -> None:
    from console import dashboard

    html = render_to_string("console/partials/tile_agents.html", {**dashboard.agents_tile(), "oob": True})
    live.send_to_group("dashboard", html)
