import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from console import dashboard, jobs
from tests import factories

pytestmark = pytest.mark.django_db


def test_push_dashboard_tiles_sends_each_registered_tile_to_the_dashboard_group(fixed_now):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)("test.")
    async_to_sync(layer.group_add)("dashboard", channel)
    factories.make_agent("tile-bot")

    def tile_context(user):
        assert user is None  # pushed tiles are the same for every viewer
        return {"agents": [], "agent_count": 7, "paused_count": 2, "active_count": 5}

    dashboard.register_tile("console/partials/tile_agents.html", tile_context)
    try:
        pushed = jobs.push_dashboard_tiles(now=fixed_now)
        messages = [async_to_sync(layer.receive)(channel) for _ in range(pushed)]
    finally:
        dashboard._TILES[:] = [t for t in dashboard._TILES if t[1] != "console/partials/tile_agents.html"]
        async_to_sync(layer.group_discard)("dashboard", channel)
    assert pushed >= 1
    message = next(m for m in messages if 'id="tile-agents"' in m["html"])
    assert message["type"] == "fragment"
    assert 'id="tile-agents"' in message["html"] and 'hx-swap-oob="true"' in message["html"]
    assert '<span data-testid="agents-active">5</span>' in message["html"]
