import asyncio

import pytest
from asgiref.sync import sync_to_async

from console import dashboard, jobs

TILE = "console/partials/tile_agents.html"


@pytest.mark.django_db(transaction=True)
async def test_push_dashboard_tiles_sends_each_registered_tile_to_the_dashboard_group(fixed_now, fresh_channel_layer):
    layer = fresh_channel_layer
    channel = await layer.new_channel("test.")
    await layer.group_add("dashboard", channel)

    def tile_context(user):
        assert user is None  # pushed tiles are the same for every viewer
        return {"agents": [], "agent_count": 7, "paused_count": 2, "active_count": 5}

    dashboard.register_tile(TILE, tile_context)
    try:
        pushed = await sync_to_async(jobs.push_dashboard_tiles)(now=fixed_now)
        messages = [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(pushed)]
    finally:
        dashboard._TILES[:] = [t for t in dashboard._TILES if t[1] != TILE]
        await layer.group_discard("dashboard", channel)
    assert pushed == len(dashboard._TILES) + 1
    ours = [m for m in messages if 'id="tile-agents"' in m["html"]]
    assert len(ours) == 1
    assert ours[0]["type"] == "fragment"
    assert 'hx-swap-oob="true"' in ours[0]["html"]
    assert '<span data-testid="agents-active">5</span>' in ours[0]["html"]
